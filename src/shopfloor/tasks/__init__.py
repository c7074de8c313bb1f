"""The public task facade: ``shopfloor.tasks.load(model_dir)`` opens any saved model as its task.

The registry itself lives in :mod:`shopfloor.core.registry`; the task classes live in their application packages
(``shopfloor.inspection.classification.DefectClassification``, ``shopfloor.maintenance.rul.RemainingUsefulLife``
...). The modules under ``shopfloor.tasks`` keep the import paths of earlier releases working.
"""

from shopfloor.core.registry import get_task, load, register, task_names
from shopfloor.core.task import Task

__all__ = ["Task", "get_task", "load", "register", "task_names"]
