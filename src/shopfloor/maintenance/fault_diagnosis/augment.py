"""Signal augmentation for training batches: white noise at a random SNR and amplitude scaling.

:func:`add_noise_at_snr` is also what ``fault-diagnosis evaluate --snr-db`` uses to re-score
under noise, so training augmentation and the noise test share one definition of SNR: the noise
power is the segment's own mean power (per channel) divided by 10^(SNR/10).
"""

from __future__ import annotations

import torch


def add_noise_at_snr(x: torch.Tensor, snr_db: torch.Tensor | float,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """``x`` (batch, channels, samples) plus white Gaussian noise at ``snr_db`` (scalar or per-example)."""
    snr = torch.as_tensor(snr_db, dtype=x.dtype, device=x.device)
    if snr.ndim == 1:
        snr = snr.view(-1, *([1] * (x.ndim - 1)))
    power = x.pow(2).mean(dim=-1, keepdim=True)
    noise_std = torch.sqrt(power / torch.pow(10.0, snr / 10.0))
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x + noise * noise_std


class SignalAugment:
    """Random white noise (SNR uniform in ``snr_db_range``, applied with probability ``noise_p``)
    and random amplitude scaling (uniform in ``scale_range``), per example; for training batches only."""

    def __init__(self, snr_db_range: tuple[float, float] = (-6.0, 20.0), noise_p: float = 0.8,
                 scale_range: tuple[float, float] = (0.8, 1.2)):
        self.snr_db_range = snr_db_range
        self.noise_p = noise_p
        self.scale_range = scale_range

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        low, high = self.scale_range
        scale = torch.empty(n, 1, 1, device=x.device).uniform_(low, high)
        x = x * scale
        if self.noise_p > 0:
            lo, hi = self.snr_db_range
            snr = torch.empty(n, device=x.device).uniform_(lo, hi)
            noisy = add_noise_at_snr(x, snr)
            keep = (torch.rand(n, 1, 1, device=x.device) < self.noise_p).to(x.dtype)
            x = keep * noisy + (1 - keep) * x
        return x
