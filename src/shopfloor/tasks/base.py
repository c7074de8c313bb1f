"""Earlier import path of the task base class; kept so existing scripts keep working. New code imports
:mod:`shopfloor.core.task`."""

from shopfloor.core.task import NoOptions, OnnxSignature, Task, batched, to_jsonable  # noqa: F401
