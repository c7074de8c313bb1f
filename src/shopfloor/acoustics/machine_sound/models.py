"""The exported machine-sound graph: raw samples of one window -> log-mel -> a scorer -> the normalised score.

Scorers (plain ``nn.Module``, fitted state in buffers, so the export carries it):

- :class:`StatsKNN` (default, ``knn-stats``): each window summarised by per-band statistics of its log-mel frames
  (``mean``: the stationary spectrum; ``max``: transients such as clicks and impacts), each statistic standardised
  and compared with its nearest normal training window (k-NN, Euclidean); each distance is put on the scale of
  the normal windows' own leave-one-clip-out distances (z-score), and the score is the largest of them, so a
  shift seen by one statistic is not diluted by the others.
- :class:`DenseAutoencoder` (``dcase-ae``): the DCASE 2020 Task 2 baseline, a dense autoencoder on 5 stacked
  log-mel frames x 128 bands (640 -> 128x4 -> 8 -> 128x4 -> 640, BatchNorm + ReLU); the score is the mean squared
  reconstruction error.

:class:`MachineSoundModel` wraps front end and scorer and normalises: ``score = sigmoid((raw - threshold) /
scale)``, so 0.5 is the decision threshold (set from normal clips at a target false-alarm rate).

>>> import torch
>>> from shopfloor.acoustics.frontend import LogMel
>>> frontend = LogMel(16000, 1024, 512, 128)
>>> model = MachineSoundModel(frontend, StatsKNN(128, 3, ("mean", "max")))
>>> out = model(torch.randn(2, 16000))
>>> out[0].shape, out[1].shape, out[2].shape
(torch.Size([2]), torch.Size([2]), torch.Size([2, 128, 32]))
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..frontend import LogMel, stack_frames

MODELS = ("knn-stats", "dcase-ae")
STATISTICS = ("mean", "max")


def window_statistic(logmel: torch.Tensor, name: str) -> torch.Tensor:
    """Per-band statistic of ``(batch, n_mels, frames)`` over time: ``(batch, n_mels)``."""
    if name == "mean":
        return logmel.mean(dim=2)
    if name == "max":
        return logmel.amax(dim=2)
    raise ValueError(f"unknown statistic {name!r}; choose from {STATISTICS}")


class StatsKNN(nn.Module):
    """Nearest-normal distance on per-band window statistics (see module docstring).

    Buffers per statistic ``s``: ``mean_s``/``std_s`` (n_mels) standardise, ``bank_s`` (n_bank, n_mels) holds the
    standardised normal windows, ``loo_s`` (2,) the mean and standard deviation of their leave-one-clip-out
    nearest distances. ``forward(logmel)`` -> (raw score (batch,), map (batch, n_mels, frames)): the map is how
    far each cell stands above its nearest normal window's band maximum, or from its band mean, in standard
    deviations (the larger).
    """

    def __init__(self, n_mels: int, n_bank: int, statistics: Sequence[str] = STATISTICS):
        super().__init__()
        self.statistics = tuple(statistics)
        for name in self.statistics:
            self.register_buffer(f"mean_{name}", torch.zeros(n_mels))
            self.register_buffer(f"std_{name}", torch.ones(n_mels))
            self.register_buffer(f"bank_{name}", torch.zeros(n_bank, n_mels))
            self.register_buffer(f"loo_{name}", torch.tensor([0.0, 1.0]))

    def standardised(self, logmel: torch.Tensor, name: str) -> torch.Tensor:
        return (window_statistic(logmel, name) - getattr(self, f"mean_{name}")) / getattr(self, f"std_{name}")

    @staticmethod
    def distances(x: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        """Euclidean distances ``(batch, n_bank)`` (matmul form, exports to ONNX)."""
        squared = (x * x).sum(1, keepdim=True) - 2 * x @ bank.T + (bank * bank).sum(1)[None]
        return squared.clamp_min(0).sqrt()

    def forward(self, logmel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zs, maps = [], []
        for name in self.statistics:
            bank, loo = getattr(self, f"bank_{name}"), getattr(self, f"loo_{name}")
            x = self.standardised(logmel, name)
            distance, nearest = self.distances(x, bank).min(dim=1)
            zs.append((distance - loo[0]) / loo[1])
            cells = (logmel - getattr(self, f"mean_{name}")[None, :, None]) / getattr(self, f"std_{name}")[None, :, None]
            deviation = cells - bank[nearest][:, :, None]
            maps.append(deviation.clamp_min(0) if name == "max" else deviation.abs())
        raw = torch.stack(zs, dim=1).amax(dim=1)
        return raw, torch.stack(maps, dim=0).amax(dim=0)


class DenseAutoencoder(nn.Module):
    """The DCASE 2020 Task 2 baseline autoencoder on ``n_frames`` stacked frames (see module docstring).
    ``forward(logmel)`` -> (mean squared error per window (batch,), error map (batch, n_mels, frames))."""

    def __init__(self, n_mels: int = 128, n_frames: int = 5, hidden: int = 128, bottleneck: int = 8):
        super().__init__()
        self.n_mels, self.n_frames = n_mels, n_frames
        sizes = [n_mels * n_frames, hidden, hidden, hidden, hidden, bottleneck, hidden, hidden, hidden, hidden]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
        layers.append(nn.Linear(hidden, n_mels * n_frames))
        self.net = nn.Sequential(*layers)

    def reconstruct(self, vectors: torch.Tensor) -> torch.Tensor:
        """``(n, n_frames * n_mels)`` -> its reconstruction."""
        return self.net(vectors)

    def forward(self, logmel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vectors = stack_frames(logmel, self.n_frames)  # (B, T', F*M)
        batch, steps, width = vectors.shape
        error = (self.net(vectors.reshape(batch * steps, width)).reshape(batch, steps, width) - vectors) ** 2
        raw = error.mean(dim=(1, 2))
        per_frame = error.reshape(batch, steps, self.n_frames, self.n_mels)
        total = logmel.shape[2]
        cells = sum(nn.functional.pad(per_frame[:, :, k].transpose(1, 2), (k, total - steps - k))
                    for k in range(self.n_frames))
        return raw, cells / self.n_frames


class MachineSoundModel(nn.Module):
    """Raw window ``(batch, samples)`` -> (normalised score, raw score, anomaly map ``(batch, n_mels, frames)``);
    score >= 0.5 means anomalous (see module docstring)."""

    def __init__(self, frontend: LogMel, scorer: nn.Module):
        super().__init__()
        self.frontend = frontend
        self.scorer = scorer
        self.register_buffer("threshold", torch.tensor(0.0))
        self.register_buffer("scale", torch.tensor(1.0))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raw, cells = self.scorer(self.frontend(audio))
        return torch.sigmoid((raw - self.threshold) / self.scale), raw, cells


def fit_stats_knn(logmels: np.ndarray, groups: np.ndarray, statistics: Sequence[str]) -> StatsKNN:
    """A :class:`StatsKNN` fitted on normal windows' log-mels ``(n, n_mels, frames)``; ``groups`` names the clip of
    each window, so the leave-one-clip-out distances never match a window with its own clip."""
    if len(np.unique(groups)) < 2:
        raise ValueError("k-NN scoring needs windows from at least 2 clips")
    x = torch.from_numpy(np.ascontiguousarray(logmels, dtype=np.float32))
    scorer = StatsKNN(x.shape[1], len(x), statistics)
    same = torch.from_numpy(groups[:, None] == groups[None, :])
    for name in scorer.statistics:
        values = window_statistic(x, name)
        mean, std = values.mean(0), values.std(0).clamp_min(1e-3)
        bank = (values - mean) / std
        d = StatsKNN.distances(bank, bank).masked_fill(same, float("inf")).min(dim=1).values
        getattr(scorer, f"mean_{name}").copy_(mean)
        getattr(scorer, f"std_{name}").copy_(std)
        getattr(scorer, f"bank_{name}").copy_(bank)
        getattr(scorer, f"loo_{name}").copy_(torch.stack([d.mean(), d.std().clamp_min(1e-6)]))
    return scorer


def train_autoencoder(logmels: np.ndarray, n_frames: int, epochs: int, batch_size: int, learning_rate: float,
                      seed: int, progress=None) -> DenseAutoencoder:
    """The DCASE baseline trained on every stacked-frame vector of the normal windows (Adam, MSE, fixed epochs,
    as the baseline does)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(logmels, dtype=np.float32))
    vectors = stack_frames(x, n_frames).reshape(-1, n_frames * x.shape[1])
    model = DenseAutoencoder(x.shape[1], n_frames)
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(vectors), generator=generator)
        for start in range(0, len(vectors), batch_size):
            batch = vectors[order[start:start + batch_size]]
            if len(batch) < 2:
                continue  # BatchNorm needs two rows
            loss = ((model.reconstruct(batch) - batch) ** 2).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        if progress is not None:
            progress(epoch + 1, epochs, float(loss))
    return model.eval()
