"""Keyword-spotting networks over log-mel frames, and the exported model that wraps them with the front end.

- ``ds-cnn``: a depthwise-separable CNN (Zhang et al. 2017, "Hello Edge", DS-CNN-S shape): one strided 10x4
  convolution, four depthwise 3x3 + pointwise blocks, global average pooling.
- ``gru``: two GRU layers over the frames, mean-pooled over time.

:class:`KeywordModel` takes raw samples: log-mel (:class:`~shopfloor.acoustics.frontend.LogMel`, inside the graph),
per-band standardisation with training statistics (buffers), SpecAugment masks in training mode only, the network,
logits. The exported graph is the model in eval mode under a softmax.

>>> import torch
>>> from shopfloor.acoustics.frontend import LogMel
>>> model = KeywordModel(LogMel(16000, 512, 160, 40), build_network("ds-cnn", 40, 12)).eval()
>>> model(torch.zeros(3, 16000)).shape
torch.Size([3, 12])
"""

from __future__ import annotations

import torch
from torch import nn

from ..augment import spec_augment
from ..frontend import LogMel

NETWORKS = ("ds-cnn", "gru")


class DSCNN(nn.Module):
    """Log-mel ``(batch, n_mels, frames)`` -> logits ``(batch, n_classes)``."""

    def __init__(self, n_mels: int, n_classes: int, channels: int = 64, blocks: int = 4, dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, channels, (10, 4), stride=(2, 2), padding=(5, 1), bias=False),
                                   nn.BatchNorm2d(channels), nn.ReLU()]
        for _ in range(blocks):
            layers += [nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
                       nn.BatchNorm2d(channels), nn.ReLU(),
                       nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, n_classes))

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(logmel.unsqueeze(1)).mean(dim=(2, 3)))


class GRUNet(nn.Module):
    """Log-mel ``(batch, n_mels, frames)`` -> logits: two GRU layers, mean over time, a linear layer."""

    def __init__(self, n_mels: int, n_classes: int, hidden: int = 128, layers: int = 2, dropout: float = 0.2):
        super().__init__()
        self.gru = nn.GRU(n_mels, hidden, num_layers=layers, batch_first=True, dropout=dropout)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_classes))

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(logmel.transpose(1, 2))
        return self.head(out.mean(dim=1))


def build_network(name: str, n_mels: int, n_classes: int) -> nn.Module:
    """One of :data:`NETWORKS` for ``n_mels`` bands and ``n_classes`` classes."""
    if name == "ds-cnn":
        return DSCNN(n_mels, n_classes)
    if name == "gru":
        return GRUNet(n_mels, n_classes)
    raise ValueError(f"unknown network {name!r}; choose one of {NETWORKS}")


class SpecAugment(nn.Module):
    """Training-time SpecAugment masks (:func:`shopfloor.acoustics.augment.spec_augment`) on the standardised
    log-mel, with the module's own seeded generator; absent from the exported graph (eval mode)."""

    def __init__(self, time_masks: int = 2, time_width: int = 10, freq_masks: int = 2, freq_width: int = 5,
                 seed: int = 0):
        super().__init__()
        self.masks = {"time_masks": time_masks, "time_width": time_width, "freq_masks": freq_masks,
                      "freq_width": freq_width}
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return spec_augment(z, self.generator, **self.masks)


class KeywordModel(nn.Module):
    """Raw samples ``(batch, samples)`` -> logits: log-mel, standardisation, SpecAugment (training only), network."""

    def __init__(self, frontend: LogMel, network: nn.Module, spec_augment: SpecAugment | None = None):
        super().__init__()
        self.frontend = frontend
        self.network = network
        self.spec_augment = spec_augment
        self.register_buffer("band_mean", torch.zeros(frontend.n_mels, 1))
        self.register_buffer("band_std", torch.ones(frontend.n_mels, 1))

    def features(self, samples: torch.Tensor) -> torch.Tensor:
        """Standardised log-mel ``(batch, n_mels, frames)``."""
        return (self.frontend(samples) - self.band_mean) / self.band_std

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        z = self.features(samples)
        if self.training and self.spec_augment is not None:
            z = self.spec_augment(z)
        return self.network(z)
