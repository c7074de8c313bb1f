"""Your own architecture: a user's network (a class path or a YAML layer list) inside a task, checked against
the task's input/output contract (see :mod:`.user_model` and :mod:`.layers`)."""

from .layers import LAYERS, build_layers, parse_layers
from .user_model import (
    LAYERS_MODEL,
    ModelContract,
    UserModelConfig,
    build_user_model,
    check_model_contract,
    import_model_class,
    is_user_model,
    model_field,
    read_model_file,
)

__all__ = ["LAYERS", "LAYERS_MODEL", "ModelContract", "UserModelConfig", "build_layers", "build_user_model",
           "check_model_contract", "import_model_class", "is_user_model", "model_field", "parse_layers",
           "read_model_file"]
