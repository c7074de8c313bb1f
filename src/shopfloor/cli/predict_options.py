"""Task-specific options of `shopfloor predict`: a task that declares ``PredictOptions`` (a generator, which takes
no inputs) gets ``--n 100 --class scratches`` validated against them; any other task refuses them."""

from __future__ import annotations

from typing import Any

from shopfloor.core.config import build_config
from shopfloor.core.errors import ConfigError

CLI_NAMES = {"n": "--n", "class_name": "--class"}


def predict_options(task: Any, options: dict[str, Any], has_inputs: bool) -> dict[str, Any]:
    """The given (not None) ``options`` validated against the task's ``PredictOptions``; a task without them
    accepts none of these options, and needs inputs."""
    given = {key: value for key, value in options.items() if value is not None}
    model = getattr(task, "PredictOptions", None)
    if model is None:
        if given:
            names = ", ".join(CLI_NAMES.get(key, key) for key in given)
            raise ConfigError(f"{names}: only for generator models (defect-synthesis); {task.name} predict takes "
                              "INPUTS (files or folders)")
        if not has_inputs:
            raise ConfigError(f"{task.name} predict needs INPUTS: the files or folders to score")
        return {}
    checked = build_config(model, given)
    return {key: getattr(checked, key) for key in given}
