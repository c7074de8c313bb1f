"""Task registry: every application task is one class registered under its CLI name."""

from __future__ import annotations

import importlib
from pathlib import Path

from ..artifact import read_artifact
from ..errors import ConfigError
from .base import Task

# CLI name -> "module:Class"; imported lazily so `shopfloor --help` stays fast.
_REGISTRY: dict[str, str] = {
    "defect-classification": "shopfloor.tasks.defect_classification:DefectClassification",
    "anomaly-detection": "shopfloor.tasks.anomaly_detection:AnomalyDetection",
    "fault-diagnosis": "shopfloor.tasks.fault_diagnosis:FaultDiagnosis",
    "failure-prediction": "shopfloor.tasks.failure_prediction:FailurePrediction",
    "rul": "shopfloor.tasks.rul:RemainingUsefulLife",
}


def register(name: str, target: str) -> None:
    """Register a task class given as ``"package.module:ClassName"``."""
    _REGISTRY[name] = target


def task_names() -> list[str]:
    return sorted(_REGISTRY)


def get_task(name: str) -> type[Task]:
    """The task class registered as ``name``."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown task {name!r}; choose one of: {', '.join(task_names())}")
    module_name, cls_name = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), cls_name)


def load(path: str | Path, device: str = "auto") -> Task:
    """Open any saved model directory as its task."""
    artifact = read_artifact(path)
    return get_task(artifact.task).load(path, device=device)


__all__ = ["Task", "get_task", "load", "register", "task_names"]
