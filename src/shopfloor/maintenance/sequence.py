"""Sequence models for sensor histories and signals: LSTM, GRU, 1D CNN and Transformer encoder.

Every model is a plain ``nn.Module`` that maps a batch laid out like ``nn.Conv1d`` input,
``(batch, channels, time)``, to ``(batch, out_features)``: regression outputs or class logits.
They hold no training logic and export to ONNX with a dynamic batch axis. Build one by name with
:func:`build_sequence_model` (the names in :data:`SEQUENCE_MODELS` are the ``--model`` choices).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from shopfloor.core.custom import ModelContract, build_user_model, is_user_model
from shopfloor.core.errors import ConfigError


def _head(in_features: int, hidden: int, out_features: int, dropout: float,
          activation: type[nn.Module]) -> nn.Sequential:
    """Dropout -> Linear(hidden) -> activation -> Linear(out); the shared output block."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, hidden), activation(),
                         nn.Linear(hidden, out_features))


class RecurrentNet(nn.Module):
    """Stacked LSTM or GRU; the last layer's final hidden state (both directions) feeds an MLP head."""

    def __init__(self, in_channels: int, out_features: int, cell: str = "lstm", hidden_size: int = 64,
                 num_layers: int = 2, dropout: float = 0.2, bidirectional: bool = False, head_hidden: int = 64):
        super().__init__()
        rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU}.get(cell)
        if rnn_cls is None:
            raise ConfigError(f"unknown recurrent cell {cell!r}; use lstm or gru")
        self.rnn = rnn_cls(in_channels, hidden_size, num_layers=num_layers, batch_first=True,
                           dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional)
        self.directions = 2 if bidirectional else 1
        self.head = _head(hidden_size * self.directions, head_hidden, out_features, dropout, nn.ReLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x.transpose(1, 2))  # (batch, time, directions * hidden)
        hidden = out.shape[-1] // self.directions
        last = out[:, -1, :hidden]  # forward direction after the whole sequence
        if self.directions == 2:
            last = torch.cat([last, out[:, 0, hidden:]], dim=1)  # backward direction after the whole sequence
        return self.head(last)


class ConvNet1d(nn.Module):
    """1D CNN after Li, Ding & Sun (2018), "Remaining useful life estimation in prognostics using deep
    convolution neural networks": ``num_layers`` same-padded convolutions along time (``filters`` each,
    kernel ``kernel_size``), a 1-filter convolution (kernel 3), then flatten -> dropout -> FC -> output.

    ``batch_norm`` adds batch normalisation after each of those convolutions (faster convergence).
    ``pooling="flatten"`` (the paper) needs the sequence length ``seq_len``; ``pooling="avg"`` averages
    over time instead and accepts any length (useful for long vibration segments).
    """

    def __init__(self, in_channels: int, out_features: int, seq_len: int | None = None, filters: int = 10,
                 kernel_size: int = 10, num_layers: int = 4, head_hidden: int = 100, dropout: float = 0.5,
                 activation: str = "tanh", pooling: str = "flatten", batch_norm: bool = False):
        super().__init__()
        act = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU}.get(activation)
        if act is None:
            raise ConfigError(f"unknown activation {activation!r}; use tanh, relu or gelu")
        if pooling not in ("flatten", "avg"):
            raise ConfigError(f"unknown pooling {pooling!r}; use flatten or avg")
        if pooling == "flatten" and not seq_len:
            raise ConfigError("ConvNet1d with pooling='flatten' needs seq_len (the window length)")
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(num_layers):
            layers.append(nn.Conv1d(channels, filters, kernel_size, padding="same"))
            layers += [nn.BatchNorm1d(filters), act()] if batch_norm else [act()]
            channels = filters
        layers += [nn.Conv1d(channels, 1 if pooling == "flatten" else filters, 3, padding="same"), act()]
        self.features = nn.Sequential(*layers)
        self.pooling = pooling
        flat = seq_len if pooling == "flatten" else filters
        self.head = _head(int(flat), head_hidden, out_features, dropout, act)
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Linear)):
                nn.init.xavier_normal_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.features(x)
        z = z.flatten(1) if self.pooling == "flatten" else z.mean(dim=2)
        return self.head(z)


class PositionalEncoding(nn.Module):
    """Fixed sinusoidal positions added to a (batch, time, d_model) sequence."""

    def __init__(self, d_model: int, max_len: int = 4096):
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(position * div)
        pe[:, 1::2] = torch.cos(position * div)[:, : d_model // 2]
        self.register_buffer("pe", pe, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[: x.shape[1]].unsqueeze(0)


class EncoderLayer(nn.Module):
    """Pre-norm Transformer encoder layer with explicit attention arithmetic.

    Written out (rather than ``nn.TransformerEncoderLayer``) because torch's fused inference fast path
    has no ONNX export.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.nhead = nhead
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.feedforward = nn.Sequential(nn.Linear(d_model, dim_feedforward), nn.GELU(), nn.Dropout(dropout),
                                         nn.Linear(dim_feedforward, d_model))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, time, d_model = x.shape
        head_dim = d_model // self.nhead
        q, k, v = self.qkv(self.norm1(x)).reshape(batch, time, 3, self.nhead, head_dim).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(head_dim), dim=-1)
        attended = (self.dropout(weights) @ v).transpose(1, 2).reshape(batch, time, d_model)
        x = x + self.dropout(self.out(attended))
        return x + self.dropout(self.feedforward(self.norm2(x)))


class TransformerNet(nn.Module):
    """Transformer encoder: linear projection, sinusoidal positions, ``num_layers`` encoder layers,
    then the mean over time and the last step, concatenated, into an MLP head."""

    def __init__(self, in_channels: int, out_features: int, d_model: int = 64, nhead: int = 4,
                 num_layers: int = 2, dim_feedforward: int = 128, dropout: float = 0.1, head_hidden: int = 64,
                 max_len: int = 4096):
        super().__init__()
        if d_model % nhead:
            raise ConfigError(f"d_model ({d_model}) must be divisible by nhead ({nhead})")
        self.project = nn.Linear(in_channels, d_model)
        self.position = PositionalEncoding(d_model, max_len)
        self.layers = nn.ModuleList(EncoderLayer(d_model, nhead, dim_feedforward, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = _head(2 * d_model, head_hidden, out_features, dropout, nn.GELU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.position(self.project(x.transpose(1, 2)))
        for layer in self.layers:
            z = layer(z)
        z = self.norm(z)
        return self.head(torch.cat([z.mean(dim=1), z[:, -1]], dim=1))


# --model name -> constructor(in_channels, out_features, seq_len, **options)
SEQUENCE_MODELS: dict[str, Callable[..., nn.Module]] = {
    "cnn1d": lambda c, o, seq_len=None, **kw: ConvNet1d(c, o, seq_len=seq_len, **kw),
    "lstm": lambda c, o, seq_len=None, **kw: RecurrentNet(c, o, cell="lstm", **kw),
    "gru": lambda c, o, seq_len=None, **kw: RecurrentNet(c, o, cell="gru", **kw),
    "transformer": lambda c, o, seq_len=None, **kw: TransformerNet(c, o, **kw),
}


def build_sequence_model(name: str, in_channels: int, out_features: int, seq_len: int | None = None,
                         **options: Any) -> nn.Module:
    """Construct a sequence model by ``--model`` name; ``options`` go to its class (e.g. ``dropout``).

    Input ``(batch, in_channels, seq_len)``, output ``(batch, out_features)``. A user model (``--model
    package.module:Class`` or a .yaml layer list) is built and checked against that contract.
    """
    if is_user_model(name) and seq_len:
        contract = ModelContract((in_channels, seq_len), out_features, "channels x time, standardised")
        return build_user_model(name, options, contract)
    if name not in SEQUENCE_MODELS:
        raise ConfigError(f"unknown sequence model {name!r}; choose one of: {', '.join(SEQUENCE_MODELS)}")
    try:
        return SEQUENCE_MODELS[name](in_channels, out_features, seq_len=seq_len, **options)
    except TypeError as exc:
        raise ConfigError(f"invalid option for model {name!r}: {exc}") from exc


__all__ = ["ConvNet1d", "EncoderLayer", "PositionalEncoding", "RecurrentNet", "SEQUENCE_MODELS", "TransformerNet",
           "build_sequence_model"]
