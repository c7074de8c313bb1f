"""The public task facade: ``shopfloor.tasks.load(model_dir)`` opens any saved model as its task.

The registry itself lives in :mod:`shopfloor.core.registry`; the task classes live in their application packages
(``shopfloor.inspection.classification.DefectClassification``, ``shopfloor.maintenance.rul.RemainingUsefulLife``
...). The module paths of earlier releases (``shopfloor.tasks.rul``, ``shopfloor.tasks.base``...) keep working:
importing one gives the module it moved to, with every name it had.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

from shopfloor.core.registry import get_task, load, register, task_names
from shopfloor.core.task import Task

# earlier module under shopfloor.tasks -> where it lives now
MOVED = {
    "base": "shopfloor.core.task",
    "defect_classification": "shopfloor.inspection.classification.task",
    "anomaly_detection": "shopfloor.inspection.anomaly.task",
    "rul": "shopfloor.maintenance.rul.task",
    "fault_diagnosis": "shopfloor.maintenance.fault_diagnosis.task",
    "failure_prediction": "shopfloor.maintenance.failure_prediction.task",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers ``import shopfloor.tasks.<old name>`` with the module it moved to (imported on first use)."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001
        package, _, name = fullname.rpartition(".")
        if package == __name__ and name in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):  # noqa: ANN001
        module = importlib.import_module(MOVED[spec.name.rpartition(".")[2]])
        spec.loader_state = (module.__spec__, getattr(module, "__loader__", None))
        return module

    def exec_module(self, module) -> None:  # noqa: ANN001
        """The module it moved to is already executed; give it back its own spec, which importing set."""
        module.__spec__, module.__loader__ = module.__spec__.loader_state


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())

__all__ = ["MOVED", "Task", "get_task", "load", "register", "task_names"]
