"""Vibration classifiers: the WDCNN wide-first-kernel 1D CNN and the exportable signal classifier.

WDCNN after Zhang, Peng, Li, Chen & Zhang (2017), "A new deep learning model for fault diagnosis
with good anti-noise and domain adaptation ability on raw vibration signals": a first convolution
with a wide kernel (64) and large stride (16) acts as a learned, noise-suppressing filter bank,
followed by small-kernel convolutions with batch normalisation and max pooling.
"""

from __future__ import annotations

import torch
from torch import nn

from shopfloor.core.custom import is_user_model
from shopfloor.core.errors import ConfigError

from ..sequence import SEQUENCE_MODELS, build_sequence_model


class WDCNN(nn.Module):
    """Wide first-layer kernel 1D CNN: (batch, channels, samples) -> (batch, n_classes) logits.

    ``width`` multiplies the filter counts (16, 32, 64, 64, 64 in the paper); the head averages
    over time, so any segment length of at least ``first_stride * 16`` samples works.
    """

    def __init__(self, in_channels: int, n_classes: int, width: float = 1.0, first_kernel: int = 64,
                 first_stride: int = 16, hidden: int = 100, dropout: float = 0.3):
        super().__init__()
        filters = [max(4, int(round(f * width))) for f in (16, 32, 64, 64, 64)]
        layers: list[nn.Module] = [
            nn.Conv1d(in_channels, filters[0], first_kernel, stride=first_stride, padding=(first_kernel - first_stride) // 2),
            nn.BatchNorm1d(filters[0]), nn.ReLU(), nn.MaxPool1d(2),
        ]
        for c_in, c_out in zip(filters[:-1], filters[1:]):
            layers += [nn.Conv1d(c_in, c_out, 3, padding=1), nn.BatchNorm1d(c_out), nn.ReLU(), nn.MaxPool1d(2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(filters[-1] * 2, hidden), nn.BatchNorm1d(hidden),
                                  nn.ReLU(), nn.Linear(hidden, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.features(x)
        return self.head(torch.cat([z.mean(dim=2), z.amax(dim=2)], dim=1))


VIBRATION_MODELS = ("wdcnn", *SEQUENCE_MODELS)


NORMALIZATIONS = ("dataset", "segment")


class SignalClassifier(nn.Module):
    """Raw segments in, class logits out: per-channel standardisation, optional framing for sequence models,
    then the backbone.

    ``normalization``: ``dataset`` subtracts and divides by fitted buffers (``mean``/``std``: the training
    windows' per-channel statistics, re-estimated on the target data by :func:`~.adapt.adapt_batchnorm`);
    ``segment`` standardises every segment by its own per-channel mean and standard deviation, which removes
    gain and load-dependent amplitude differences (the buffers are then unused but kept for one weight layout).

    ``frame`` > 1 folds each run of ``frame`` samples into channels ((C, L) -> (C*frame, L/frame)),
    which lets recurrent and attention models see a short sequence instead of thousands of steps.
    """

    def __init__(self, backbone: nn.Module, in_channels: int, frame: int = 1, normalization: str = "dataset"):
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ConfigError(f"unknown normalization {normalization!r}; choose one of: {', '.join(NORMALIZATIONS)}")
        self.backbone = backbone
        self.frame = frame
        self.normalization = normalization
        self.register_buffer("mean", torch.zeros(1, in_channels, 1))
        self.register_buffer("std", torch.ones(1, in_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalization == "segment":
            z = (x - x.mean(dim=2, keepdim=True)) / (x.std(dim=2, keepdim=True) + 1e-8)
        else:
            z = (x - self.mean) / self.std
        if self.frame > 1:
            b, c, length = z.shape
            z = z.reshape(b, c, length // self.frame, self.frame).permute(0, 1, 3, 2).reshape(b, c * self.frame, -1)
        return self.backbone(z)


def build_vibration_model(name: str, in_channels: int, n_classes: int, segment_length: int, frame: int = 1,
                          normalization: str = "dataset", **options) -> SignalClassifier:
    """A :class:`SignalClassifier` around ``wdcnn`` or a shared sequence model (lstm, gru, cnn1d, transformer)."""
    if name == "wdcnn":
        try:
            backbone: nn.Module = WDCNN(in_channels, n_classes, **options)
        except TypeError as exc:
            raise ConfigError(f"invalid option for model 'wdcnn': {exc}") from exc
        return SignalClassifier(backbone, in_channels, frame=1, normalization=normalization)
    if name not in SEQUENCE_MODELS and not is_user_model(name):
        raise ConfigError(f"unknown vibration model {name!r}; choose one of: {', '.join(VIBRATION_MODELS)}")
    if segment_length % frame:
        raise ConfigError(f"segment_length {segment_length} must be a multiple of frame {frame}")
    if name == "cnn1d":
        options = {"pooling": "avg", "activation": "relu", **options}
    backbone = build_sequence_model(name, in_channels * frame, n_classes, seq_len=segment_length // frame, **options)
    return SignalClassifier(backbone, in_channels, frame=frame, normalization=normalization)
