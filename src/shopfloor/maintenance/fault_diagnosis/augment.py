"""Signal augmentation for training batches: white noise at a random SNR, amplitude scaling, and optionally a
random smooth equaliser (another transfer path or resonance, as a different load or mounting gives) and a random
change of speed (time stretch: fault frequencies move with shaft speed, which drops with load).

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


def random_equalizer(x: torch.Tensor, max_db: float) -> torch.Tensor:
    """``x`` (batch, channels, samples) through a random smooth gain curve per example: the sum of three cosines
    over frequency with random phases, within +-``max_db`` dB in all."""
    spectrum = torch.fft.rfft(x, dim=-1)
    n, bins = x.shape[0], spectrum.shape[-1]
    f = torch.linspace(0, 1, bins, device=x.device)
    k = torch.arange(1, 4, device=x.device, dtype=x.dtype)
    amplitude = torch.empty(n, 3, 1, device=x.device).uniform_(-max_db / 3, max_db / 3)
    phase = torch.empty(n, 3, 1, device=x.device).uniform_(0, 2 * torch.pi)
    gain_db = (amplitude * torch.cos(torch.pi * k.view(1, 3, 1) * f.view(1, 1, -1) + phase)).sum(dim=1)
    return torch.fft.irfft(spectrum * torch.pow(10.0, gain_db / 20).unsqueeze(1), n=x.shape[-1], dim=-1)


def random_speed(x: torch.Tensor, max_change: float) -> torch.Tensor:
    """``x`` (batch, channels, samples) played at a random speed in 1 +- ``max_change`` per example (linear
    interpolation about the segment's centre, mirrored at its ends)."""
    n, length = x.shape[0], x.shape[-1]
    rate = torch.empty(n, 1, device=x.device).uniform_(1 - max_change, 1 + max_change)
    centre = (length - 1) / 2
    position = centre + (torch.arange(length, device=x.device, dtype=x.dtype) - centre) * rate
    position = (length - 1) - ((length - 1) - position.abs()).abs()  # mirror into [0, length - 1]
    low = position.floor().clamp(0, length - 2).long()
    frac = (position - low).unsqueeze(1)
    index = low.unsqueeze(1).expand(-1, x.shape[1], -1)
    return torch.gather(x, 2, index) * (1 - frac) + torch.gather(x, 2, index + 1) * frac


class SignalAugment:
    """Random white noise (SNR uniform in ``snr_db_range``, applied with probability ``noise_p``), random amplitude
    scaling (uniform in ``scale_range``), and with ``equalizer_db`` / ``speed_change`` > 0 a random equaliser and
    speed, each applied to an example with probability ``distort_p`` (the others stay as recorded); per example,
    for training batches only."""

    def __init__(self, snr_db_range: tuple[float, float] = (-6.0, 20.0), noise_p: float = 0.8,
                 scale_range: tuple[float, float] = (0.8, 1.2), equalizer_db: float = 0.0, speed_change: float = 0.0,
                 distort_p: float = 1.0):
        self.snr_db_range = snr_db_range
        self.noise_p = noise_p
        self.scale_range = scale_range
        self.equalizer_db = equalizer_db
        self.speed_change = speed_change
        self.distort_p = distort_p

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for change, strength in ((random_speed, self.speed_change), (random_equalizer, self.equalizer_db)):
            if strength > 0:
                keep = (torch.rand(x.shape[0], 1, 1, device=x.device) >= self.distort_p).to(x.dtype)
                x = keep * x + (1 - keep) * change(x, strength)
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
