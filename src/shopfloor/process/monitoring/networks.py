"""The monitoring graph: standardisation, PCA T2/SPE, a window autoencoder and a fault classifier in one module.

Everything the deployed model needs is a buffer, so the exported ONNX graph carries it: the normal-operation mean
and standard deviation, the PCA loadings and eigenvalues, and the control limits. Scores leave the graph already
divided by their limit (1.0 = limit), with per-variable contributions that sum to the score.

>>> import torch
>>> graph = MonitoringGraph(5, n_components=2, window=8, detector="conv")
>>> out = graph(torch.zeros(3, 8, 5))
>>> [tuple(o.shape) for o in out]
[(3,), (3,), (3, 5), (3,), (3,), (3, 5), (3, 5)]
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

DETECTORS = ("conv", "dense", "gru")
STATISTICS = ("residual_features", "reconstruction")
FEATURES_PER_VARIABLE = 3  # residual mean, log standard deviation, log mean absolute step


class Standardizer(nn.Module):
    """(x - mean) / std with the normal-operation statistics as buffers."""

    def __init__(self, n_variables: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_variables))
        self.register_buffer("std", torch.ones(n_variables))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class PCAMonitor(nn.Module):
    """Hotelling T2 and SPE (Q) of one standardised sample, each with per-variable contributions that sum to it."""

    def __init__(self, n_variables: int, n_components: int):
        super().__init__()
        self.register_buffer("loadings", torch.zeros(n_variables, n_components))
        self.register_buffer("eigenvalues", torch.ones(n_components))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        scores = z @ self.loadings
        residual = z - scores @ self.loadings.T
        weighted = (scores / self.eigenvalues) @ self.loadings.T  # P diag(1/lambda) P^T z
        t2_parts = z * weighted
        spe_parts = residual ** 2
        return t2_parts.sum(-1), spe_parts.sum(-1), t2_parts, spe_parts


class ConvAutoencoder(nn.Module):
    """1D-CNN autoencoder over a window (batch, window, variables) -> its reconstruction."""

    def __init__(self, n_variables: int, window: int, hidden: int = 32, latent: int = 8):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv1d(n_variables, hidden, 3, padding=1), nn.GELU(),
            nn.Conv1d(hidden, hidden, 3, padding=1, stride=2), nn.GELU(),
            nn.Conv1d(hidden, latent, 1))
        self.decoder = nn.Sequential(
            nn.Conv1d(latent, hidden, 1), nn.GELU(),
            nn.Upsample(size=window), nn.Conv1d(hidden, hidden, 3, padding=1), nn.GELU(),
            nn.Conv1d(hidden, n_variables, 3, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(z.transpose(1, 2))).transpose(1, 2)


class DenseAutoencoder(nn.Module):
    """Fully connected autoencoder over the flattened window."""

    def __init__(self, n_variables: int, window: int, hidden: int = 64, latent: int = 8):
        super().__init__()
        size = n_variables * window
        self.shape = (window, n_variables)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(size, hidden), nn.GELU(), nn.Linear(hidden, latent),
                                 nn.GELU(), nn.Linear(latent, hidden), nn.GELU(), nn.Linear(hidden, size))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).reshape(-1, *self.shape)


class GRUAutoencoder(nn.Module):
    """GRU encoder to a latent vector, GRU decoder back over the window."""

    def __init__(self, n_variables: int, window: int, hidden: int = 32, latent: int = 8):
        super().__init__()
        self.window = window
        self.encoder = nn.GRU(n_variables, hidden, batch_first=True)
        self.to_latent = nn.Linear(hidden, latent)
        self.decoder = nn.GRU(latent, hidden, batch_first=True)
        self.out = nn.Linear(hidden, n_variables)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        _, h = self.encoder(z)
        latent = self.to_latent(h[-1])
        steps = latent.unsqueeze(1).expand(-1, self.window, -1)
        decoded, _ = self.decoder(steps)
        return self.out(decoded)


def build_autoencoder(kind: str, n_variables: int, window: int, hidden: int, latent: int) -> nn.Module:
    classes = {"conv": ConvAutoencoder, "dense": DenseAutoencoder, "gru": GRUAutoencoder}
    return classes[kind](n_variables, window, hidden=hidden, latent=latent)


class ResidualFeatures(nn.Module):
    """Per-variable dynamics of a residual window (batch, window, variables) -> (batch, 3, variables): the mean (a
    shift), the log standard deviation (a change of spread) and the log mean absolute step (a change of the fast
    dynamics, e.g. a sticking valve), each standardised by its normal-operation mean and spread (buffers)."""

    def __init__(self, n_variables: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(FEATURES_PER_VARIABLE, n_variables))
        self.register_buffer("std", torch.ones(FEATURES_PER_VARIABLE, n_variables))

    @staticmethod
    def raw(residual: torch.Tensor) -> torch.Tensor:
        """The unstandardised features (batch, 3, variables)."""
        mean = residual.mean(1)
        spread = torch.log(residual.std(1, unbiased=False) + 1e-3)
        step = torch.log((residual[:, 1:] - residual[:, :-1]).abs().mean(1) + 1e-3)
        return torch.stack([mean, spread, step], dim=1)

    def standardise(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw features (batch, 3, variables) in units of their normal-operation spread."""
        return (raw - self.mean) / self.std

    def forward(self, residual: torch.Tensor) -> torch.Tensor:
        return self.standardise(self.raw(residual))


class WindowClassifier(nn.Module):
    """Dilated 1D-CNN over a standardised window -> fault class logits. The input is log-compressed
    (sign(z)·log(1 + |z|)), so a fault that drives variables further from normal than the training runs did still
    looks like itself; dilations 1, 2, 4, 8 see 31 samples of dynamics."""

    def __init__(self, n_variables: int, n_classes: int, hidden: int = 64, dilations: tuple[int, ...] = (1, 2, 4, 8)):
        super().__init__()
        layers: list[nn.Module] = []
        channels = n_variables
        for dilation in dilations:
            layers += [nn.Conv1d(channels, hidden, 3, padding=dilation, dilation=dilation), nn.BatchNorm1d(hidden),
                       nn.GELU()]
            channels = hidden
        self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Dropout(0.2),
                                 nn.Linear(hidden, n_classes))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        compressed = torch.sign(z) * torch.log1p(z.abs())
        return self.net(compressed.transpose(1, 2))


class MonitoringGraph(nn.Module):
    """Raw window (batch, window, variables) -> ``score``, ``alarm``, ``contributions`` (the autoencoder's),
    ``t2``, ``spe``, ``t2_contributions``, ``spe_contributions`` and, with a classifier, ``fault_probabilities``.
    Scores and contributions are divided by their control limit (buffers), so 1.0 is the limit; PCA reads the
    window's last sample, the autoencoder the whole window.

    The autoencoder's statistic: ``residual_features`` (default): the largest standardised residual feature
    (:class:`ResidualFeatures`) over all variables, its contributions the score shared by each variable's largest
    feature to the 4th power; ``reconstruction``: the mean squared reconstruction error summed over variables."""

    def __init__(self, n_variables: int, n_components: int, window: int,
                 detector: Literal["conv", "dense", "gru"] = "conv", hidden: int = 32, latent: int = 8,
                 n_classes: int = 0, statistic: Literal["residual_features", "reconstruction"] = "residual_features"):
        super().__init__()
        self.statistic, self.window = statistic, window
        self.standardize = Standardizer(n_variables)
        self.pca = PCAMonitor(n_variables, n_components)
        self.autoencoder = build_autoencoder(detector, n_variables, window, hidden, latent)
        self.features = ResidualFeatures(n_variables)
        self.classifier = WindowClassifier(n_variables, n_classes) if n_classes else None
        self.register_buffer("limits", torch.ones(3))  # autoencoder, T2, SPE

    def reconstruction_parts(self, z: torch.Tensor) -> torch.Tensor:
        """Per-variable squared reconstruction error, averaged over the window: (batch, variables)."""
        return ((z - self.autoencoder(z)) ** 2).mean(1)

    def residual(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised window minus its reconstruction (batch, window, variables)."""
        return z - self.autoencoder(z)

    def unscaled_score(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The detector's statistic before division by its limit, and its per-variable parts (summing to it)."""
        if self.statistic == "reconstruction":
            parts = self.reconstruction_parts(z)
            return parts.sum(-1), parts
        per_variable = self.features(self.residual(z)).abs().amax(1)  # (batch, variables)
        score = per_variable.amax(-1)
        weights = per_variable ** 4
        return score, score.unsqueeze(-1) * weights / weights.sum(-1, keepdim=True).clamp_min(1e-12)

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, ...]:
        z = self.standardize(window)
        raw_score, raw_parts = self.unscaled_score(z)
        score, parts = raw_score / self.limits[0], raw_parts / self.limits[0]
        t2, spe, t2_parts, spe_parts = self.pca(z[:, -1])
        outputs = (score, score > 1.0, parts, t2 / self.limits[1], spe / self.limits[2],
                   t2_parts / self.limits[1], spe_parts / self.limits[2])
        if self.classifier is not None:
            outputs = outputs + (torch.softmax(self.classifier(z), dim=-1),)
        return outputs


OUTPUTS = ["score", "alarm", "contributions", "t2", "spe", "t2_contributions", "spe_contributions"]
CLASSIFIER_OUTPUT = "fault_probabilities"

__all__ = ["CLASSIFIER_OUTPUT", "DETECTORS", "OUTPUTS", "STATISTICS", "MonitoringGraph", "PCAMonitor",
           "ResidualFeatures", "Standardizer",
           "WindowClassifier", "build_autoencoder"]
