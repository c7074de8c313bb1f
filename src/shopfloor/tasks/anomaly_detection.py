"""Earlier import path of :mod:`shopfloor.inspection.anomaly.task`, kept so existing scripts keep working; every name of that module
is available here. New code imports from the application package."""

from importlib import import_module as _import_module
from typing import Any as _Any

_module = _import_module("shopfloor.inspection.anomaly.task")
__all__ = list(getattr(_module, "__all__", ()))
globals().update({name: getattr(_module, name) for name in __all__})


def __getattr__(name: str) -> _Any:
    return getattr(_module, name)
