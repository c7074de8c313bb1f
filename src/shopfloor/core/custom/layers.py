"""A network from a layer list, in the spirit of Keras ``Sequential``: YAML in, a plain ``nn.Sequential`` out.

Each entry is a layer name (``- flatten``), or a one-key mapping whose value is the layer's main argument
(``- dense: 64``, ``- dropout: 0.25``) or its options (``- conv: {filters: 32, kernel: 3, activation: relu}``).
Layouts are PyTorch's, channels first: images ``(N, C, H, W)``, sequences and signals ``(N, C, T)``, features
``(N, F)``. Input sizes are never written: each layer is built for the shape the previous one produces (found by
running a dummy batch of the task's input through the layers built so far), so a layer list written for one image
size works at another as long as the shapes still fit. ``units: outputs`` is the task's output size (number of
classes, or of regression outputs).

>>> net = build_layers([{"conv": {"filters": 8, "kernel": 3}}, "relu", {"pool": 2}, "flatten", {"dense": "outputs"}],
...                    input_shape=(1, 28, 28), num_outputs=10)
>>> net(torch.zeros(4, 1, 28, 28)).shape
torch.Size([4, 10])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..errors import ConfigError

OUTPUTS = "outputs"  # ``units: outputs``: the task's output size

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "silu": nn.SiLU, "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU, "selu": nn.SELU, "softplus": nn.Softplus,
}


@dataclass(frozen=True)
class LayerKind:
    """One layer name: its main argument, its options with defaults, and what it does (for messages and docs)."""

    main: str | None
    options: dict[str, Any]
    doc: str


LAYERS: dict[str, LayerKind] = {
    "conv": LayerKind("filters", {"filters": None, "kernel": 3, "stride": 1, "padding": "valid", "dilation": 1,
                                  "activation": None},
                      "convolution over (N, C, T) or (N, C, H, W); padding valid | same | a number"),
    "pool": LayerKind("size", {"size": 2, "stride": None, "type": "max"}, "max (or avg) pooling, window `size`"),
    "maxpool": LayerKind("size", {"size": 2, "stride": None}, "max pooling"),
    "avgpool": LayerKind("size", {"size": 2, "stride": None}, "average pooling"),
    "global_pool": LayerKind("type", {"type": "avg"}, "average (or max) over time / space -> (N, C)"),
    "flatten": LayerKind(None, {}, "(N, ...) -> (N, features)"),
    "dense": LayerKind("units", {"units": None, "activation": None, "bias": True},
                       "fully connected on (N, features); units: outputs = the task's output size"),
    "dropout": LayerKind("rate", {"rate": 0.5}, "dropout (training only)"),
    "batchnorm": LayerKind(None, {"momentum": 0.1}, "batch normalisation over channels / features"),
    "lstm": LayerKind("units", {"units": None, "layers": 1, "bidirectional": False, "return_sequences": False,
                                "dropout": 0.0},
                      "LSTM over the time axis of (N, C, T) -> (N, units) (return_sequences: (N, units, T))"),
    "gru": LayerKind("units", {"units": None, "layers": 1, "bidirectional": False, "return_sequences": False,
                               "dropout": 0.0}, "GRU, like lstm"),
    "grayscale": LayerKind(None, {}, "mean over the channels of (N, C, H, W) -> (N, 1, H, W)"),
    "activation": LayerKind("name", {"name": None}, f"an activation: {', '.join(ACTIVATIONS)}"),
    **{name: LayerKind(None, {}, f"{name} activation") for name in ACTIVATIONS},
}


def shape_text(shape: Sequence[int]) -> str:
    """``(N, 64, 5, 5)`` for a batch shape: the batch axis shown as N."""
    return "(" + ", ".join(["N", *(str(s) for s in shape[1:])]) + ")"


# ----------------------------------------------------------------------------- parsing (no shapes needed)
def parse_layers(layers: Any) -> list[tuple[str, dict[str, Any]]]:
    """Check a layer list and return ``[(name, options with defaults)]``; every problem is listed in one
    :class:`ConfigError` (unknown layers, unknown options, a missing main argument)."""
    if not isinstance(layers, list) or not layers:
        raise ConfigError("a layer list must be a non-empty YAML list, e.g.\n  layers:\n    - conv: {filters: 32}\n"
                          f"    - relu\n    - flatten\n    - dense: outputs\ngot {type(layers).__name__}: {layers!r}")
    parsed, problems = [], []
    for index, entry in enumerate(layers, start=1):
        try:
            parsed.append(_parse_entry(entry))
        except ConfigError as exc:
            problems.append(f"layer {index}: {exc}")
    if problems:
        raise ConfigError("the layer list has problems:\n  " + "\n  ".join(problems) + "\nKnown layers: "
                          + ", ".join(sorted(LAYERS)))
    return parsed


def _parse_entry(entry: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(entry, str):
        name, value = entry, None
    elif isinstance(entry, dict) and len(entry) == 1:
        name, value = next(iter(entry.items()))
    else:
        raise ConfigError(f"{entry!r} is not a layer: write a name (- flatten) or one name: value (- dense: 64)")
    name = str(name).strip().lower()
    if name == "softmax":
        raise ConfigError("softmax: leave it out; the task applies softmax (or sigmoid) to the model's outputs "
                          "inside the exported graph, so the last layer gives raw scores (logits)")
    kind = LAYERS.get(name)
    if kind is None:
        raise ConfigError(f"unknown layer {name!r}")
    options = dict(kind.options)
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(kind.options))
        if unknown:
            takes = ", ".join(kind.options) or "no options"
            raise ConfigError(f"{name}: unknown option(s) {', '.join(map(str, unknown))}; {name} takes {takes}")
        options.update(value)
    elif value is not None:
        if kind.main is None:
            raise ConfigError(f"{name} takes no value (got {value!r}); write - {name}")
        options[kind.main] = value
    if kind.main is not None and kind.options.get(kind.main, 0) is None and options[kind.main] is None:
        raise ConfigError(f"{name} needs {kind.main} (e.g. - {name}: {_example(name)})")
    if options.get("activation") is not None and str(options["activation"]).lower() not in ACTIVATIONS:
        raise ConfigError(f"{name}: unknown activation {options['activation']!r}; use {', '.join(ACTIVATIONS)}")
    if name == "activation" and str(options["name"]).lower() not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {options['name']!r}; use {', '.join(ACTIVATIONS)}")
    return name, options


def _example(name: str) -> str:
    return {"conv": "32", "dense": "64", "lstm": "64", "gru": "64", "activation": "relu"}.get(name, "2")


# ----------------------------------------------------------------------------- building with shape inference
class Recurrent(nn.Module):
    """LSTM/GRU on a channels-first sequence (N, C, T): the last step's state (N, units x directions), or with
    ``return_sequences`` every step, channels first again (N, units x directions, T)."""

    def __init__(self, cell: str, in_channels: int, units: int, layers: int = 1, bidirectional: bool = False,
                 return_sequences: bool = False, dropout: float = 0.0):
        super().__init__()
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(in_channels, units, num_layers=layers, batch_first=True, bidirectional=bidirectional,
                       dropout=dropout if layers > 1 else 0.0)
        self.bidirectional = bidirectional
        self.return_sequences = return_sequences
        self.units = units

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x.transpose(1, 2))
        if self.return_sequences:
            return out.transpose(1, 2)
        last = out[:, -1, : self.units]
        if self.bidirectional:  # the backward direction has read the whole sequence at step 0
            last = torch.cat([last, out[:, 0, self.units:]], dim=1)
        return last


class Grayscale(nn.Module):
    """Mean over the channel axis, kept: (N, C, H, W) -> (N, 1, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1, keepdim=True)


class GlobalPool(nn.Module):
    """Average or max over every axis after the channels: (N, C, ...) -> (N, C)."""

    def __init__(self, kind: str = "avg"):
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        return flat.amax(dim=2) if self.kind == "max" else flat.mean(dim=2)


class LayerStack(nn.Sequential):
    """The network a layer list builds (a plain ``nn.Sequential``); ``layer_list`` keeps the list it came from."""

    def __init__(self, modules: Sequence[nn.Module], layer_list: list):
        super().__init__(*modules)
        self.layer_list = layer_list


def build_layers(layers: Any, input_shape: Sequence[int], num_outputs: int) -> LayerStack:
    """Build ``layers`` for inputs of ``input_shape`` (without the batch axis); ``units: outputs`` becomes
    ``num_outputs``. A layer that does not fit the shape it receives is a :class:`ConfigError` naming the layer,
    the shape it got and what to change."""
    parsed = parse_layers(layers)
    x = torch.zeros(2, *input_shape)
    built: list[nn.Module] = []
    for index, (name, options) in enumerate(parsed, start=1):
        where = f"layer {index} ({name})"
        modules = _make(name, options, x.shape, num_outputs, where)
        block = nn.Sequential(*modules)
        block.eval()
        try:
            with torch.no_grad():
                x = block(x)
        except RuntimeError as exc:
            detail = str(exc).splitlines()[0]
            raise ConfigError(f"{where} cannot run on its input {shape_text(x.shape)}: {detail}. The input is too "
                              "small or of the wrong kind by then: use fewer or smaller pooling/stride steps, "
                              "padding: same, or a larger input") from None
        built.extend(modules)
    return LayerStack(built, list(layers))


def _make(name: str, o: dict[str, Any], shape: torch.Size, num_outputs: int, where: str) -> list[nn.Module]:
    rank = len(shape)
    spatial = {3: "(N, C, T)", 4: "(N, C, H, W)"}

    def need(ranks: tuple[int, ...], fix: str) -> None:
        if rank not in ranks:
            raise ConfigError(f"{where} gets {shape_text(shape)}, but {name} needs "
                              f"{' or '.join(spatial.get(r, '(N, features)') for r in ranks)}: {fix}")

    def act() -> list[nn.Module]:
        return [ACTIVATIONS[str(o["activation"]).lower()]()] if o.get("activation") else []

    try:
        if name in ACTIVATIONS:
            return [ACTIVATIONS[name]()]
        if name == "activation":
            return [ACTIVATIONS[str(o["name"]).lower()]()]
        if name == "conv":
            need((3, 4), "a conv follows images or sequences; put it before flatten / global_pool")
            conv = nn.Conv1d if rank == 3 else nn.Conv2d
            return [conv(shape[1], int(o["filters"]), o["kernel"], stride=o["stride"], padding=o["padding"],
                         dilation=o["dilation"]), *act()]
        if name in ("pool", "maxpool", "avgpool"):
            need((3, 4), "pool after conv layers, before flatten")
            kind = {"maxpool": "max", "avgpool": "avg"}.get(name, o.get("type", "max"))
            if kind not in ("max", "avg"):
                raise ConfigError(f"{where}: type must be max or avg, not {kind!r}")
            pool = {(3, "max"): nn.MaxPool1d, (3, "avg"): nn.AvgPool1d, (4, "max"): nn.MaxPool2d,
                    (4, "avg"): nn.AvgPool2d}[(rank, kind)]
            return [pool(o["size"], stride=o["stride"])]
        if name == "global_pool":
            need((3, 4), "global_pool follows conv / recurrent layers with return_sequences")
            if o["type"] not in ("avg", "max"):
                raise ConfigError(f"{where}: type must be avg or max, not {o['type']!r}")
            return [GlobalPool(o["type"])]
        if name == "flatten":
            return [nn.Flatten()]
        if name == "grayscale":
            need((4,), "grayscale is for images")
            return [Grayscale()]
        if name == "dropout":
            return [nn.Dropout(float(o["rate"]))]
        if name == "batchnorm":
            norm = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d}.get(rank)
            if norm is None:
                raise ConfigError(f"{where} gets {shape_text(shape)}; batchnorm needs 2 to 4 dimensions")
            return [norm(shape[1], momentum=float(o["momentum"]))]
        if name == "dense":
            need((2,), "put - flatten (or - global_pool) before it")
            units = num_outputs if o["units"] == OUTPUTS else o["units"]
            if not isinstance(units, int) or isinstance(units, bool) or units < 1:
                raise ConfigError(f"{where}: units must be a positive whole number or '{OUTPUTS}', "
                                  f"got {o['units']!r}")
            return [nn.Linear(shape[1], units, bias=bool(o["bias"])), *act()]
        if name in ("lstm", "gru"):
            need((3,), "recurrent layers read sequences (N, C, T); images need flatten into a sequence first")
            return [Recurrent(name, shape[1], int(o["units"]), int(o["layers"]), bool(o["bidirectional"]),
                              bool(o["return_sequences"]), float(o["dropout"]))]
    except ConfigError:
        raise
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"{where}: invalid options {o}: {exc}") from None
    raise ConfigError(f"{where}: unknown layer")  # parse_layers lets only known names through
