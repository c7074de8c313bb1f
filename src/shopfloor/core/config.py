"""Typed configuration shared by every task: strict pydantic models, YAML loading and CLI overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError


class StrictModel(BaseModel):
    """Base for every config: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class TrainingConfig(StrictModel):
    """Knobs of the training engine, the same for every task."""

    epochs: int = Field(10, ge=1, description="maximum number of epochs")
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(3, ge=1, description="early-stopping patience in epochs on the validation metric")
    val_fraction: float = Field(0.2, gt=0, lt=0.9, description="share of the training data held out for validation")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    devices: int | str = Field(1, description="devices per node for Lightning (int or 'auto')")
    num_nodes: int = Field(1, ge=1)
    strategy: str = Field("auto", description="Lightning strategy, e.g. ddp")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    precision: str = "32-true"
    progress: bool = True


def load_yaml(path: str | Path | None) -> dict[str, Any]:
    """Read a YAML config file into a dict; an absent path gives an empty dict."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing YAML file to --config")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option: value at the top level")
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge nested dicts, values in ``override`` winning."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def build_config(model_cls: type[StrictModel], *layers: dict[str, Any]) -> StrictModel:
    """Validate the merged ``layers`` (later wins) into ``model_cls`` with a readable error."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = deep_merge(merged, {k: v for k, v in layer.items() if v is not None})
    try:
        return model_cls.model_validate(merged)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = "unknown option" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"  {where}: {msg}")
        raise ConfigError("invalid configuration:\n" + "\n".join(problems)) from None


def parse_cli_overrides(args: list[str], model_cls: type[StrictModel]) -> dict[str, Any]:
    """Turn extra CLI arguments ``--some-key value`` / ``--flag`` into a nested override dict.

    A key is looked up first at the top level of ``model_cls`` and then inside its nested
    sub-configs (``--patience 5`` sets ``training.patience``), so every config field is a CLI option.
    """
    overrides: dict[str, Any] = {}
    i = 0
    while i < len(args):
        token = args[i]
        if not token.startswith("--"):
            raise ConfigError(f"unexpected argument {token!r}; options look like --name value")
        key = token[2:]
        value: Any = True
        if "=" in key:
            key, value = key.split("=", 1)
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            value = args[i + 1]
            i += 1
        key = key.replace("-", "_")
        path = _locate_field(key, model_cls)
        target = overrides
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = _coerce_cli_value(value)
        i += 1
    return overrides


def _locate_field(key: str, model_cls: type[StrictModel]) -> list[str]:
    if key in model_cls.model_fields:
        return [key]
    for name, field in model_cls.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel) and key in sub.model_fields:
            return [name, key]
    known = sorted(model_cls.model_fields)
    raise ConfigError(f"unknown option --{key.replace('_', '-')}; this task accepts: {', '.join(known)} "
                      "(and the training options; `shopfloor train TASK --help` lists them all)")


def describe_options(model_cls: type[StrictModel]) -> list[dict[str, str]]:
    """Every CLI option of a config, nested sub-configs flattened as ``parse_cli_overrides`` reads them:
    ``[{"option", "type", "default", "help", "group"}]``."""
    rows: list[dict[str, str]] = []
    defaults = model_cls().model_dump(mode="json")
    for name, field in model_cls.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            nested = type(getattr(model_cls(), name))
            for key, row in _field_rows(nested, defaults.get(name, {}), group=name):
                rows.append(row)
            continue
        rows.extend(row for _, row in _field_rows(model_cls, defaults, group="", only=name))
    return rows


def _field_rows(model_cls: type[BaseModel], defaults: dict[str, Any], group: str, only: str | None = None):
    for key, field in model_cls.model_fields.items():
        if only is not None and key != only:
            continue
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            continue
        yield key, {"option": "--" + key.replace("_", "-"), "type": _type_name(field.annotation), "default": repr(defaults.get(key)),
                    "help": field.description or "", "group": group}


def _coerce_cli_value(value: Any) -> Any:
    """A CLI value: ``{...}`` / ``[...]`` as YAML (mappings, lists), ``a,b`` as a list, else a YAML scalar."""
    if not isinstance(value, str):
        return value
    if value.strip()[:1] in ("{", "["):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"cannot read {value!r} as a YAML/JSON mapping or list: {exc}") from exc
    if "," in value:
        return [_coerce_cli_value(v) for v in value.split(",") if v != ""]
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def _type_name(annotation: Any) -> str:
    """``int``, ``a|b|c`` for a Literal, ``int | str`` for a union."""
    if get_origin(annotation) is Literal:
        return "|".join(map(str, get_args(annotation)))
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
