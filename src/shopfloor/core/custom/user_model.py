"""A user's own network inside a task: a class path (``mypkg.nets:MyNet``) or a layer list (:mod:`.layers`).

A task that accepts user models describes the part of its network a user may replace with a
:class:`ModelContract` (the input one example has, without the batch axis, and the number of outputs) and calls
:func:`build_user_model`; everything around it (normalisation, softmax, thresholds, ensembles) stays the task's,
inside the same exported graph, trained by the same Lightning glue.

``--model`` takes, besides the task's built-in names:

- ``package.module:ClassName``: an ``nn.Module`` subclass, constructed with ``model_options`` as keyword
  arguments. A constructor that takes ``num_outputs`` and/or ``input_shape`` gets them from the task unless
  ``model_options`` sets them. Importing the class runs its module: it is user code, as trusted as the user's own
  script. A saved model stores only the class path and options (the weights are safetensors), so loading it needs
  the module importable again; without it loading fails with an error saying so.
- a ``.yaml``/``.yml`` file holding ``layers: [...]`` (see :mod:`.layers`): read once when the config is built and
  stored in the config as ``model: layers`` with ``model_options: {layers: [...]}``, so a saved model rebuilds from
  its own directory with no user code and no file.

Every user model is checked against the contract before training (:func:`check_model_contract`): it must run on a
batch of the task's input, return one float tensor of shape (N, outputs) for any batch size, and export to ONNX
with outputs equal to torch's. All problems are listed together, expected vs got.
"""

from __future__ import annotations

import importlib
import inspect
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import yaml
from pydantic import Field, field_validator, model_validator
from torch import nn

from ..config import StrictModel
from ..errors import ConfigError
from .layers import build_layers, parse_layers, shape_text

LAYERS_MODEL = "layers"  # ``model: layers``: the network is ``model_options["layers"]``
MODEL_FILE_SUFFIXES = (".yaml", ".yml")
_CLASS_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


@dataclass(frozen=True)
class ModelContract:
    """What a task feeds the user's network and expects back.

    ``input_shape``: one example, without the batch axis (e.g. ``(3, 224, 224)``); ``num_outputs``: the width of
    the (N, num_outputs) float output (class logits, or regression outputs); ``input_meaning`` /
    ``output_meaning``: words for the messages (what the axes and values are).
    """

    input_shape: tuple[int, ...]
    num_outputs: int
    input_meaning: str = ""
    output_meaning: str = ""

    def describe(self) -> str:
        """``input (N, 3, 28, 28) float32 (...), output (N, 10) (...)``."""
        def meaning(text: str) -> str:
            return f" ({text})" if text else ""

        return (f"input {shape_text((0, *self.input_shape))} float32{meaning(self.input_meaning)}, output "
                f"(N, {self.num_outputs}){meaning(self.output_meaning)}")


def is_user_model(name: Any) -> bool:
    """Whether a ``model`` value names a user model (a class path or ``layers``) rather than a built-in."""
    return isinstance(name, str) and (name == LAYERS_MODEL or ":" in name)


def is_model_file(name: Any) -> bool:
    """Whether a ``model`` value is a YAML layer file to read."""
    return isinstance(name, (str, Path)) and str(name).lower().endswith(MODEL_FILE_SUFFIXES) and ":" not in str(name)


# ----------------------------------------------------------------------------- config
def read_model_file(path: str | Path) -> dict[str, Any]:
    """A YAML layer file (``layers: [...]``, or the bare list) -> ``model_options`` (``{"layers": [...]}``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"model file {path} does not exist; --model takes a built-in name, package.module:Class, "
                          "or an existing .yaml layer file")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"model file {path} is not valid YAML: {exc}") from None
    if isinstance(data, list):
        data = {"layers": data}
    if not isinstance(data, dict) or "layers" not in data:
        raise ConfigError(f"model file {path} must hold `layers:` with a list of layers (e.g. `- conv: 32`)")
    unknown = sorted(set(data) - {"layers"})
    if unknown:
        raise ConfigError(f"model file {path}: unknown key(s) {', '.join(map(str, unknown))}; it holds `layers:` "
                          "only (comments are free)")
    parse_layers(data["layers"])  # refuse a bad list now, before any data is read
    return {"layers": data["layers"]}


def check_model_name(value: Any, builtins: tuple[str, ...]) -> str:
    """``value`` if it is a built-in name, a well-formed class path, or ``layers``; else a ConfigError."""
    if isinstance(value, type) and issubclass(value, nn.Module):
        return class_path_of(value)
    if not isinstance(value, str):
        raise ConfigError(f"model must be a name, got {type(value).__name__}")
    if value in builtins or value == LAYERS_MODEL:
        return value
    if ":" in value:
        if not _CLASS_PATH.match(value):
            raise ConfigError(f"{value!r} is not a class path; write package.module:ClassName (e.g. mypkg.nets:MyNet)")
        return value
    choices = f"a built-in ({', '.join(builtins)}), " if builtins else ""
    raise ConfigError(f"unknown model {value!r}; choose {choices}a class path package.module:ClassName, or a .yaml "
                      "layer file")


def class_path_of(cls: type) -> str:
    """``module:QualName`` of a class, refusing classes that cannot be imported again (``__main__``, locals)."""
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        raise ConfigError(f"{cls.__qualname__} is defined in a script or a function, so a saved model could not "
                          "import it again: move it into a module and pass package.module:ClassName")
    return f"{cls.__module__}:{cls.__qualname__}"


class UserModelConfig(StrictModel):
    """Base of a task config whose ``model`` may be a user model (see the module docstring).

    The subclass declares ``model: str`` (its default a built-in) and ``builtin_models``; this base adds
    ``model_options``, reads a ``.yaml`` model file into them and checks the name.
    """

    builtin_models: ClassVar[tuple[str, ...]] = ()
    builtin_options: ClassVar[bool] = True  # whether the built-ins take model_options (else they are refused)
    model_options: dict[str, Any] = Field(
        default_factory=dict, description="keyword options of the model class (a built-in or --model "
        "package.module:Class); with --model layers, {layers: [...]}")

    @model_validator(mode="before")
    @classmethod
    def _read_model_file(cls, data: Any) -> Any:
        if isinstance(data, dict) and is_model_file(data.get("model")):
            if data.get("model_options"):
                raise ConfigError("a .yaml model file holds the whole network: drop model_options "
                                  "(--model-options), or put the options into the file")
            return {**data, "model": LAYERS_MODEL, "model_options": read_model_file(data["model"])}
        return data

    @field_validator("model", mode="before", check_fields=False)
    @classmethod
    def _check_model(cls, value: Any) -> Any:
        return check_model_name(value, cls.builtin_models)

    @model_validator(mode="after")
    def _check_layers(self) -> "UserModelConfig":
        model = getattr(self, "model", None)
        if not self.builtin_options and self.model_options and not is_user_model(model):
            raise ConfigError(f"model_options are for your own model (package.module:Class or a layer list); the "
                              f"built-in {model!r} takes none: drop --model-options")
        if model == LAYERS_MODEL:
            options = self.model_options
            unknown = sorted(set(options) - {"layers"})
            if "layers" not in options or unknown:
                raise ConfigError("model 'layers' takes model_options {layers: [...]} and nothing else"
                                  + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
            parse_layers(options["layers"])
        return self


def model_field(default: str, builtins: tuple[str, ...], what: str = "network") -> Any:
    """The ``model`` field of a :class:`UserModelConfig`: its description lists the built-ins and the user forms."""
    return Field(default, description=f"{what}: {'|'.join(builtins)}, or your own: package.module:Class "
                 "(with --model-options) or a .yaml layer file (README: Your own architecture)")


# ----------------------------------------------------------------------------- class paths
def import_model_class(path: str) -> type[nn.Module]:
    """The ``nn.Module`` subclass named by ``package.module:ClassName``, with an error saying what is missing."""
    check_model_name(path, ())
    module_name, _, qualname = path.partition(":")
    fix = ("A model built on a user class needs its module importable wherever it is trained or loaded: install "
           "the package, or put its folder on PYTHONPATH (e.g. PYTHONPATH=/path/to/project shopfloor ...)")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigError(f"cannot import the model class {path}: no module named {exc.name!r}. {fix}") from None
        raise ConfigError(f"importing {module_name} for the model class {path} failed inside that module: {exc}. "
                          "Install what it imports") from None
    except Exception as exc:  # user code: any error while importing it is theirs to fix
        raise ConfigError(f"importing {module_name} for the model class {path} failed inside that module: "
                          f"{type(exc).__name__}: {exc}") from None
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part, None)
        if target is None:
            found = sorted(name for name, obj in vars(module).items()
                           if isinstance(obj, type) and issubclass(obj, nn.Module))
            listed = ", ".join(found[:15]) + (f" ... ({len(found)} in all)" if len(found) > 15 else "")
            raise ConfigError(f"module {module_name} has no class {qualname!r}; nn.Module classes in it: "
                              f"{listed or 'none'}")
    if not (isinstance(target, type) and issubclass(target, nn.Module)):
        raise ConfigError(f"{path} is a {type(target).__name__}, not an nn.Module subclass; --model names a class "
                          "whose instances are torch modules")
    return target


def instantiate(cls: type[nn.Module], options: dict[str, Any], contract: ModelContract, name: str | None = None
                ) -> nn.Module:
    """``cls(**options)``, plus ``num_outputs`` / ``input_shape`` from the contract where the constructor takes
    them and ``options`` does not set them; a wrong option names the ones the class takes."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    known = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    kwargs = dict(options)
    injected = {"num_outputs": contract.num_outputs, "input_shape": tuple(contract.input_shape)}
    for key, value in injected.items():
        if key in known and key not in kwargs:
            kwargs[key] = value
    name = name or f"{cls.__module__}:{cls.__qualname__}"
    if params and not takes_any:
        unknown = sorted(set(kwargs) - set(known))
        if unknown:
            raise ConfigError(f"{name} takes no option(s) {', '.join(unknown)}; its constructor takes: "
                              f"{', '.join(known) or 'nothing'} (--model-options '{{...}}')")
        missing = [n for n in known if params[n].default is inspect.Parameter.empty and n not in kwargs]
        if missing:
            raise ConfigError(f"{name} needs option(s) {', '.join(missing)}: pass them with --model-options "
                              f"'{{{missing[0]}: ...}}' (a constructor argument named num_outputs or input_shape "
                              f"is filled in by the task)")
    try:
        model = cls(**kwargs)
    except Exception as exc:  # user code
        raise ConfigError(f"{name}(**{kwargs}) raised {type(exc).__name__}: {exc}") from None
    return model


# ----------------------------------------------------------------------------- contract
def check_model_contract(model: nn.Module, contract: ModelContract, name: str, export: bool = True,
                         layer_list: bool = False) -> None:
    """Run ``model`` on dummy batches of the contract's input and list every mismatch in one ConfigError:
    the forward pass fails, the output is not one float32 tensor of shape (N, num_outputs) for batches of 2 and 3,
    it is not finite, there is nothing to train, or (``export``) the ONNX export fails or disagrees with torch."""
    problems: list[str] = []
    expected = f"(N, {contract.num_outputs})"
    was_training = model.training
    model.eval()
    try:
        if not any(p.requires_grad for p in model.parameters()):
            problems.append("it has no trainable parameters")
        outputs = {}
        for batch in (2, 3):
            x = torch.randn(batch, *contract.input_shape)
            try:
                with torch.no_grad():
                    out = model(x)
            except Exception as exc:  # user code
                detail = str(exc).splitlines()[0] if str(exc) else ""
                problems.append(f"forward on a batch {shape_text(x.shape)} = {tuple(x.shape)} failed: "
                                f"{type(exc).__name__}: {detail}")
                break
            if not isinstance(out, torch.Tensor):
                problems.append(f"forward returns a {type(out).__name__}; it must return one tensor {expected}")
                break
            if tuple(out.shape) != (batch, contract.num_outputs):
                problems.append(f"output shape: expected {expected} = {(batch, contract.num_outputs)} for a batch "
                                f"of {batch}, got {tuple(out.shape)}" + _output_hint(out, contract, layer_list))
                break
            if out.dtype != torch.float32:
                problems.append(f"output dtype: expected float32, got {str(out.dtype).removeprefix('torch.')}")
                break
            if not torch.isfinite(out).all():
                problems.append("output holds NaN or infinite values on a random input")
                break
            outputs[batch] = (x, out)
        if export and not problems:
            problems.extend(_export_problems(model, *outputs[3]))
    finally:
        model.train(was_training)
    if problems:
        raise ConfigError(f"the model {name} does not fit this task, which feeds it {contract.describe()}:\n  "
                          + "\n  ".join(problems))


def _output_hint(out: torch.Tensor, contract: ModelContract, layer_list: bool) -> str:
    if out.dim() > 2:
        return " (flatten or pool before the last layer)"
    if out.dim() == 2:
        return (f" (the last layer must give {contract.num_outputs} values" +
                (": end with - dense: outputs)" if layer_list else ")"))
    return ""


def _export_problems(model: nn.Module, x: torch.Tensor, expected: torch.Tensor) -> list[str]:
    """ONNX export (the task's exporter) and a run through ONNX Runtime, compared with torch on the same batch."""
    from ..runtime import OnnxModel, export_onnx

    try:
        with warnings.catch_warnings():  # the exporter warns about recurrent layers with a batch over 1: checked here
            warnings.simplefilter("ignore")
            graph = export_onnx(model, (x,), ["input"], ["output"])
        got = OnnxModel(graph, device="cpu").run(input=x.numpy())["output"]
    except Exception as exc:  # the exporter's and ORT's errors vary by operator
        detail = str(exc).splitlines()[0] if str(exc) else ""
        return [f"ONNX export (opset 17) failed: {type(exc).__name__}: {detail}; every shopfloor model is "
                "deployed as ONNX: use operators the exporter supports"]
    diff = float(np.max(np.abs(got - expected.numpy()))) if got.size else 0.0
    scale = max(1.0, float(expected.abs().max()))
    if diff > 1e-3 * scale:
        return [f"the ONNX export gives outputs up to {diff:.3g} away from torch on the same batch: the model does "
                "something the export does not capture (Python control flow on values, randomness in eval mode)"]
    return []


def build_user_model(name: str, options: dict[str, Any], contract: ModelContract, export_check: bool = True
                     ) -> nn.Module:
    """The user's network for ``--model name`` with ``options``, checked against ``contract``.

    ``name`` is ``layers`` (``options["layers"]``, see :mod:`.layers`) or ``package.module:ClassName``.
    """
    if name == LAYERS_MODEL:
        model: nn.Module = build_layers(options.get("layers"), contract.input_shape, contract.num_outputs)
        label = "given as a layer list"
    else:
        model = instantiate(import_model_class(name), dict(options), contract, name)
        label = name
    check_model_contract(model, contract, label, export=export_check, layer_list=name == LAYERS_MODEL)
    return model
