"""shopfloor: deep learning for the factory floor.

>>> import shopfloor
>>> task = shopfloor.load("model/")                 # any saved model directory, verified  # doctest: +SKIP
>>> shopfloor.DefectClassification(image_size=224)  # the task classes, by name            # doctest: +SKIP

Layers, top to bottom (checked by import-linter in ``make test``; see ``docs/architecture.md``):

- ``cli``, ``demo``, ``tasks``: entry points and the public task facade (``shopfloor.tasks.load``);
- application packages, which never import each other: ``inspection`` (defect classification, anomaly
  detection), ``maintenance`` (remaining useful life, fault diagnosis, failure prediction) and ``process``
  (process monitoring);
- ``core``: what every application uses (task base and registry, config, errors, artifact, the one ONNX
  inference path, Lightning glue, reports, generic metrics and explanations). It imports no application.

Importing ``shopfloor`` is cheap: ``load``, ``get_task``, the errors and the task classes are resolved on
first use.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("shopfloor")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.1.0"

_CORE = {
    "load": "shopfloor.core.registry", "get_task": "shopfloor.core.registry",
    "task_names": "shopfloor.core.registry", "Task": "shopfloor.core.task",
    "ShopfloorError": "shopfloor.core.errors", "DataError": "shopfloor.core.errors",
    "ConfigError": "shopfloor.core.errors", "ArtifactError": "shopfloor.core.errors",
    "NotFittedError": "shopfloor.core.errors", "OutOfRangeWarning": "shopfloor.core.errors",
}


def _task_classes() -> dict[str, str]:
    """Class name -> "module:Class" of every registered task (from the entry points)."""
    from shopfloor.core.registry import _targets

    return {target.split(":")[1]: target for target in _targets().values()}


_SUBPACKAGES = ("tasks", "core", "inspection", "maintenance", "process")


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return import_module(f"shopfloor.{name}")
    if name in _CORE:
        return getattr(import_module(_CORE[name]), name)
    target = _task_classes().get(name)
    if target is not None:
        module, cls = target.split(":")
        return getattr(import_module(module), cls)
    raise AttributeError(f"module 'shopfloor' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_CORE, *_task_classes()])
