"""Seeded training augmentation for audio: on waveforms (time shift, gain, additive noise at a random SNR, speed
perturbation) and on log-mel spectrograms (SpecAugment time and frequency masks).

Every function takes a ``torch.Generator``, so a seed gives the same batches again. Shapes are kept:

>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> WaveAugment()(torch.randn(4, 16000), g).shape
torch.Size([4, 16000])
>>> spec_augment(torch.randn(4, 64, 32), g).shape
torch.Size([4, 64, 32])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def time_shift(x: torch.Tensor, max_fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Roll each row circularly by up to ``max_fraction`` of its length either way."""
    if max_fraction <= 0:
        return x
    limit = int(max_fraction * x.shape[-1])
    shifts = torch.randint(-limit, limit + 1, (x.shape[0],), generator=generator)
    return torch.stack([torch.roll(row, int(s)) for row, s in zip(x, shifts)])


def random_gain(x: torch.Tensor, db: float, generator: torch.Generator) -> torch.Tensor:
    """Scale each row by a gain drawn uniformly within +-``db`` decibels."""
    if db <= 0:
        return x
    gains = 10 ** (_uniform(x.shape[0], -db, db, generator) / 20)
    return x * gains.view(-1, *([1] * (x.ndim - 1)))


def add_noise(x: torch.Tensor, snr_db: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """White noise at an SNR drawn uniformly from ``snr_db`` (dB, relative to each row's own power)."""
    snr = _uniform(x.shape[0], *snr_db, generator)
    power = x.pow(2).mean(dim=-1, keepdim=True).clamp_min(1e-12)
    scale = (power / 10 ** (snr.view(-1, 1) / 10)).sqrt()
    return x + scale * torch.randn(x.shape, generator=generator)


def speed_perturb(x: torch.Tensor, max_change: float, generator: torch.Generator) -> torch.Tensor:
    """Play each row faster or slower by up to ``max_change`` (pitch moves with it, as a machine's speed does):
    linear resampling, cropped or wrapped back to the same length."""
    if max_change <= 0:
        return x
    n = x.shape[-1]
    rates = _uniform(x.shape[0], 1 - max_change, 1 + max_change, generator)
    out = torch.empty_like(x)
    for i, rate in enumerate(rates):
        positions = (torch.arange(n, dtype=torch.float32) * rate) % (n - 1)
        left = positions.floor().long()
        frac = positions - left
        out[i] = x[i, left] * (1 - frac) + x[i, left + 1] * frac
    return out


@dataclass
class WaveAugment:
    """Waveform augmentation of a batch ``(batch, samples)``: each step applied to a row with ``probability``."""

    shift_fraction: float = 0.1
    gain_db: float = 6.0
    snr_db: tuple[float, float] = (10.0, 40.0)
    speed_change: float = 0.05
    probability: float = 0.5

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        steps = [lambda v: time_shift(v, self.shift_fraction, generator),
                 lambda v: random_gain(v, self.gain_db, generator),
                 lambda v: add_noise(v, self.snr_db, generator),
                 lambda v: speed_perturb(v, self.speed_change, generator)]
        for step in steps:
            chosen = torch.rand(x.shape[0], generator=generator) < self.probability
            if chosen.any():
                x = x.clone()
                x[chosen] = step(x[chosen])
        return x


def spec_augment(spec: torch.Tensor, generator: torch.Generator, freq_masks: int = 2, freq_width: int = 8,
                 time_masks: int = 2, time_width: int = 10) -> torch.Tensor:
    """SpecAugment on ``(batch, n_mels, frames)``: up to ``freq_width`` bands and ``time_width`` frames set to each
    example's mean, ``freq_masks``/``time_masks`` times."""
    out = spec.clone()
    batch, n_mels, n_frames = spec.shape
    fill = spec.mean(dim=(1, 2))
    for i in range(batch):
        for size, count, axis in ((n_mels, freq_masks, 1), (n_frames, time_masks, 2)):
            width_limit = freq_width if axis == 1 else time_width
            for _ in range(count):
                width = int(torch.randint(0, min(width_limit, size) + 1, (1,), generator=generator))
                start = int(torch.randint(0, size - width + 1, (1,), generator=generator))
                if axis == 1:
                    out[i, start:start + width, :] = fill[i]
                else:
                    out[i, :, start:start + width] = fill[i]
    return out
