"""Task registry: every application task is one class registered under its CLI name.

Applications declare their tasks as entry points in the ``shopfloor.tasks`` group (see ``pyproject.toml``), so
``core`` finds them without importing any application package, and a plug-in distribution can add its own tasks
the same way. A name declared twice is refused (a plug-in cannot silently replace a built-in task and then open
its saved models). :func:`register` adds one at run time (tests, notebooks).
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
    found: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found and found[ep.name] != ep.value:
            raise ConfigError(f"task {ep.name!r} is declared twice, by {found[ep.name]} and {ep.value}: uninstall "
                              "one of the packages that declare it (pip list) or rename its task")
        found[ep.name] = ep.value
    if not found and not _REGISTERED:
        raise ConfigError("no tasks are registered: the shopfloor package metadata is missing or stale "
                          "(reinstall it: `pip install -e .` in the project, or `make setup`)")
    return found | _REGISTERED


def register(name: str, target: str) -> None:
    """Register a task class given as ``"package.module:ClassName"``."""
    if ":" not in target:
        raise ConfigError(f"register({name!r}, {target!r}): give the class as 'package.module:ClassName'")
    _REGISTERED[name] = target


def task_names() -> list[str]:
    """The CLI names of every registered task, sorted."""
    return sorted(_targets())


def get_task(name: str) -> type[Task]:
    """The task class registered as ``name``; imported only when asked for, so ``shopfloor --help`` stays fast."""
    targets = _targets()
    if name not in targets:
        raise ConfigError(f"unknown task {name!r}; choose one of: {', '.join(sorted(targets))}")
    module_name, _, attribute = targets[name].partition(":")
    try:
        cls = importlib.import_module(module_name.strip())
        for part in attribute.split("[")[0].strip().split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"task {name!r} is declared as {targets[name]} but cannot be imported ({exc}); "
                          "reinstall the package that provides it") from exc
    if not (isinstance(cls, type) and issubclass(cls, Task)) or getattr(cls, "name", None) != name:
        raise ConfigError(f"task {name!r} is declared as {targets[name]}, which is not a shopfloor Task named "
                          f"{name!r}; fix the entry point of the package that declares it")
    return cls


def load(path: str | Path, device: str = "auto", strict: bool = False, key_file: str | Path | None = None,
         precision: str = "auto") -> Task:
    """Open any saved model directory as its task.

    ``device``: execution provider (auto, cpu, cuda, tensorrt, openvino); ``precision``: auto (int8 when the
    directory holds an int8 graph that passed its accuracy gate), fp32 or int8.

    ``strict``: refuse inputs far outside the training ranges instead of warning. ``key_file`` (or the environment
    variable ``SHOPFLOOR_KEY_FILE``): refuse the directory unless its signature verifies with that key.
    """
    artifact = read_artifact(path, key_file=key_file)
    return get_task(artifact.task).load(path, device=device, strict=strict, key_file=key_file, precision=precision)


__all__ = ["ENTRY_POINT_GROUP", "Task", "get_task", "load", "register", "task_names"]
