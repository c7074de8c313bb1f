"""The RUL networks: the per-condition input features, one training member, and the exported ensemble whose graph
returns ``rul``, ``lower``, ``upper`` and ``spread``."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..windows import ConditionNormalizer


class WindowFeatures(nn.Module):
    """Raw input (batch, k + window, features) -> model input (batch, channels, window).

    Sensors are standardised per operating condition. With ``baseline_rows`` = k > 0 the first k rows
    are the unit's own first readings (see :func:`make_windows`): each sensor's deviation from their
    mean is appended as a second set of channels, which removes the unit-to-unit offsets (manufacturing
    variation, initial wear) that otherwise look like degradation.
    """

    def __init__(self, normalizer: ConditionNormalizer, baseline_rows: int = 0):
        super().__init__()
        self.normalizer = normalizer
        self.baseline_rows = baseline_rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.normalizer(x)
        k = self.baseline_rows
        if k:
            reference = z[:, :k].mean(dim=1, keepdim=True)
            z = z[:, k:]
            z = torch.cat([z, z - reference], dim=2)
        return z.transpose(1, 2)


class WindowRegressor(nn.Module):
    """Raw input -> :class:`WindowFeatures` -> one sequence model -> RUL (batch,).

    The model predicts RUL in units of ``rul_scale`` (the cap), so its outputs start near the right range;
    this is the training wrapper of one ensemble member. ``input_noise``: std of Gaussian noise added to
    the normalised inputs in training mode only (augmentation against over-fitting to sensor noise).
    """

    def __init__(self, features: WindowFeatures, model: nn.Module, rul_scale: float, input_noise: float = 0.0):
        super().__init__()
        self.features = features
        self.model = model
        self.input_noise = input_noise
        self.register_buffer("rul_scale", torch.tensor(float(rul_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.features(x)
        if self.training and self.input_noise > 0:
            z = z + self.input_noise * torch.randn_like(z)
        return self.model(z).reshape(-1) * self.rul_scale


class RULEnsemble(nn.Module):
    """The exported RUL model: raw input (batch, k + window, features) -> (rul, lower, upper, spread).

    ``rul`` is the members' mean, clipped at 0; ``spread`` their standard deviation; the interval is
    ``rul +- interval_scale * (spread_weight * spread + interval_offset)``, scale and offset fitted on
    held-out units; ``spread_weight`` 0 gives every unit the same width (a configuration constant).
    """

    def __init__(self, features: WindowFeatures, members: Sequence[nn.Module], rul_scale: float,
                 spread_weight: float = 1.0):
        super().__init__()
        self.spread_weight = float(spread_weight)
        self.features = features
        self.members = nn.ModuleList(members)
        self.register_buffer("rul_scale", torch.tensor(float(rul_scale)))
        self.register_buffer("interval_scale", torch.tensor(1.645))
        self.register_buffer("interval_offset", torch.tensor(1.0))

    def member_predictions(self, x: torch.Tensor) -> torch.Tensor:
        z = self.features(x)
        return torch.stack([m(z).reshape(-1) for m in self.members], dim=1) * self.rul_scale

    def mean_rul(self, x: torch.Tensor) -> torch.Tensor:
        """The point prediction alone (what attributions explain)."""
        return self.member_predictions(x).mean(dim=1)

    def forward(self, x: torch.Tensor):
        preds = self.member_predictions(x)
        mean = preds.mean(dim=1)
        spread = ((preds - mean.unsqueeze(1)) ** 2).mean(dim=1).sqrt()
        half = self.interval_scale * (self.spread_weight * spread + self.interval_offset)
        return torch.clamp(mean, min=0.0), torch.clamp(mean - half, min=0.0), mean + half, spread
