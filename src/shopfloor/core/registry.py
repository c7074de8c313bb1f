"""Task registry: every application task is one class registered under its CLI name.

Applications declare their tasks as entry points in the ``shopfloor.tasks`` group (see ``pyproject.toml``), so
``core`` finds them without importing any application package, and a plug-in package can add its own tasks the
same way. :func:`register` adds one at run time (tests, notebooks).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path

from .artifact import read_artifact
from .errors import ConfigError
from .task import Task

ENTRY_POINT_GROUP = "shopfloor.tasks"

# added at run time with register(): CLI name -> "module:Class"
_REGISTERED: dict[str, str] = {}


def _targets() -> dict[str, str]:
    """CLI name -> "module:Class", from the installed entry points and register()."""
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return found | _REGISTERED


def register(name: str, target: str) -> None:
    """Register a task class given as ``"package.module:ClassName"``."""
    _REGISTERED[name] = target


def task_names() -> list[str]:
    """The CLI names of every registered task, sorted."""
    return sorted(_targets())


def get_task(name: str) -> type[Task]:
    """The task class registered as ``name``; imported only when asked for, so ``shopfloor --help`` stays fast."""
    targets = _targets()
    if not targets:
        raise ConfigError("no tasks are registered: shopfloor is not installed as a package "
                          "(run `pip install -e .` in the project, or `make setup`)")
    if name not in targets:
        raise ConfigError(f"unknown task {name!r}; choose one of: {', '.join(sorted(targets))}")
    module_name, cls_name = targets[name].split(":")
    return getattr(importlib.import_module(module_name), cls_name)


def load(path: str | Path, device: str = "auto", strict: bool = False, key_file: str | Path | None = None) -> Task:
    """Open any saved model directory as its task (``strict``: refuse inputs far outside the training ranges).

    ``key_file`` (or the environment variable ``SHOPFLOOR_KEY_FILE``): refuse the directory unless its signature
    verifies under that key; without a key an existing signature is not checked (see
    :func:`shopfloor.core.artifact.read_artifact`)."""
    artifact = read_artifact(path, key_file=key_file)
    return get_task(artifact.task).load(path, device=device, strict=strict, key_file=key_file)


__all__ = ["ENTRY_POINT_GROUP", "Task", "get_task", "load", "register", "task_names"]
