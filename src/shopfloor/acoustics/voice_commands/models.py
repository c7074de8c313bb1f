"""Keyword-spotting networks over log-mel frames, and the exported model that wraps them with the front end.

- ``bc-resnet``: broadcasted residual learning (Kim et al. 2021, "Broadcasted Residual Learning for Efficient
  Keyword Spotting"): frequency-wise depthwise convolutions with sub-spectral normalisation, whose output is
  averaged over frequency, convolved in time (dilated) and broadcast back; ``width`` is the paper's BC-ResNet-k.
- ``ds-cnn``: a depthwise-separable CNN (Zhang et al. 2017, "Hello Edge", DS-CNN-S shape): one strided 10x4
  convolution, four depthwise 3x3 + pointwise blocks, global average pooling.
- ``gru``: a strided 1-D convolution over the frames (halves the sequence) and two GRU layers, mean-pooled over
  time.

:class:`KeywordModel` takes raw samples: log-mel (:class:`~shopfloor.acoustics.frontend.LogMel`, inside the graph),
per-band standardisation with training statistics (buffers), the network, logits. Training may enter at the
log-mel (:meth:`KeywordModel.classify`, with SpecAugment masks drawn by the caller); the exported graph is the model
in eval mode under a softmax.

>>> import torch
>>> from shopfloor.acoustics.frontend import LogMel
>>> model = KeywordModel(LogMel(16000, 512, 160, 40), build_network("bc-resnet", 40, 12)).eval()
>>> model(torch.zeros(3, 16000)).shape
torch.Size([3, 12])
"""

from __future__ import annotations

import torch
from torch import nn

from ..frontend import LogMel

NETWORKS = ("bc-resnet", "ds-cnn", "gru")


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
    """Log-mel ``(batch, n_mels, frames)`` -> logits: a strided convolution over frames, two GRU layers, mean over
    time, a linear layer."""

    def __init__(self, n_mels: int, n_classes: int, hidden: int = 96, layers: int = 2, dropout: float = 0.2):
        super().__init__()
        self.subsample = nn.Sequential(nn.Conv1d(n_mels, hidden, 3, stride=2, padding=1, bias=False),
                                       nn.BatchNorm1d(hidden), nn.ReLU())
        self.gru = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True, dropout=dropout)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_classes))

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(self.subsample(logmel).transpose(1, 2))
        return self.head(out.mean(dim=1))


class SubSpectralNorm(nn.Module):
    """Batch normalisation per channel *and* frequency sub-band (``groups`` bands; 1 when the bands don't divide)."""

    def __init__(self, channels: int, n_freq: int, groups: int = 5):
        super().__init__()
        self.groups = groups if n_freq % groups == 0 else 1
        self.norm = nn.BatchNorm2d(channels * self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, t = x.shape
        return self.norm(x.reshape(b, c * self.groups, f // self.groups, t)).reshape(b, c, f, t)


class BCResBlock(nn.Module):
    """One broadcasted residual block: ``f2`` (frequency depthwise conv + sub-spectral norm) on the 2-D map, ``f1``
    (temporal dilated depthwise conv, swish, pointwise conv) on its frequency average, broadcast and added. A block
    that changes the width starts with a pointwise conv and has no identity shortcut."""

    def __init__(self, c_in: int, c_out: int, n_freq: int, freq_stride: int, dilation: int, dropout: float):
        super().__init__()
        self.transition = c_in != c_out
        pre: list[nn.Module] = [nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()] \
            if self.transition else []
        out_freq = (n_freq + freq_stride - 1) // freq_stride
        self.f2 = nn.Sequential(*pre, nn.Conv2d(c_out, c_out, (3, 1), stride=(freq_stride, 1), padding=(1, 0),
                                                groups=c_out, bias=False), SubSpectralNorm(c_out, out_freq))
        self.f1 = nn.Sequential(nn.Conv2d(c_out, c_out, (1, 3), padding=(0, dilation), dilation=(1, dilation),
                                          groups=c_out, bias=False), nn.BatchNorm2d(c_out), nn.SiLU(),
                                nn.Conv2d(c_out, c_out, 1, bias=False), nn.Dropout2d(dropout))
        self.out_freq = out_freq

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.f2(x)
        y = y + self.f1(y.mean(dim=2, keepdim=True))
        if not self.transition:
            y = y + x
        return torch.relu(y)


class BCResNet(nn.Module):
    """Log-mel ``(batch, n_mels, frames)`` -> logits: BC-ResNet-``width`` (stages of 2, 2, 4, 4 blocks; the
    frequency axis halved by the stem and the first blocks of stages 2 and 3; time dilation 1, 2, 4, 8)."""

    def __init__(self, n_mels: int, n_classes: int, width: int = 3, dropout: float = 0.1):
        super().__init__()
        base = 8 * width
        channels = [2 * base, base, int(1.5 * base), 2 * base, int(2.5 * base), 4 * base]
        self.stem = nn.Sequential(nn.Conv2d(1, channels[0], 5, stride=(2, 1), padding=2, bias=False),
                                  nn.BatchNorm2d(channels[0]), nn.ReLU())
        n_freq = (n_mels + 1) // 2
        blocks: list[nn.Module] = []
        c_in = channels[0]
        for stage, repeats in enumerate((2, 2, 4, 4)):
            for i in range(repeats):
                block = BCResBlock(c_in, channels[stage + 1], n_freq, 2 if stage in (1, 2) and i == 0 else 1,
                                   2 ** stage, dropout)
                blocks.append(block)
                c_in, n_freq = channels[stage + 1], block.out_freq
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Conv2d(c_in, c_in, (min(5, n_freq), 5), padding=(0, 2), groups=c_in,
                                            bias=False),
                                  nn.Conv2d(c_in, channels[-1], 1, bias=False), nn.BatchNorm2d(channels[-1]),
                                  nn.ReLU())
        self.classifier = nn.Linear(channels[-1], n_classes)

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(logmel.unsqueeze(1))))
        return self.classifier(x.mean(dim=(2, 3)))


def build_network(name: str, n_mels: int, n_classes: int, width: int = 3) -> nn.Module:
    """One of :data:`NETWORKS` for ``n_mels`` bands and ``n_classes`` classes (``width``: BC-ResNet's k)."""
    if name == "bc-resnet":
        return BCResNet(n_mels, n_classes, width=width)
    if name == "ds-cnn":
        return DSCNN(n_mels, n_classes)
    if name == "gru":
        return GRUNet(n_mels, n_classes)
    raise ValueError(f"unknown network {name!r}; choose one of {NETWORKS}")


class KeywordModel(nn.Module):
    """Raw samples ``(batch, samples)`` -> logits: log-mel, standardisation, network."""

    def __init__(self, frontend: LogMel, network: nn.Module):
        super().__init__()
        self.frontend = frontend
        self.network = network
        self.register_buffer("band_mean", torch.zeros(frontend.n_mels, 1))
        self.register_buffer("band_std", torch.ones(frontend.n_mels, 1))

    def standardise(self, logmel: torch.Tensor) -> torch.Tensor:
        """Log-mel standardised per band with the training statistics."""
        return (logmel - self.band_mean) / self.band_std

    def features(self, samples: torch.Tensor) -> torch.Tensor:
        """Standardised log-mel ``(batch, n_mels, frames)``."""
        return self.standardise(self.frontend(samples))

    def classify(self, logmel: torch.Tensor) -> torch.Tensor:
        """Logits from a (possibly augmented) log-mel ``(batch, n_mels, frames)`` as the front end computes it."""
        return self.network(self.standardise(logmel))

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        return self.classify(self.frontend(samples))


class LogMelClassifier(nn.Module):
    """The training view of a :class:`KeywordModel` (same parameters): log-mel in (augmented outside), logits out."""

    def __init__(self, model: KeywordModel):
        super().__init__()
        self.model = model

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.model.classify(logmel)
