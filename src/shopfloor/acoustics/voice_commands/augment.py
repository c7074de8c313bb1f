"""Waveform augmentation of voice-command training batches: time shift, gain and speed (the shared steps of
:mod:`shopfloor.acoustics.augment`), and background noise from the training ``_silence_`` clips at a random SNR."""

from __future__ import annotations

import numpy as np
import torch

from ..augment import random_gain, speed_perturb


class WaveformAugment:
    """Applied to each training batch ``(batch, samples)`` (seeded): every clip is shifted by up to
    ``shift_seconds`` (zero-filled, so a word never wraps around), scaled by up to +-``gain_db``, played up to
    ``speed_change`` faster or slower, and with ``noise_probability`` mixed with a background at an SNR drawn from
    ``snr_db`` — a random clip of ``background`` (the training ``_silence_`` clips: real room and machine noise) or,
    without those, white noise."""

    def __init__(self, sampling_rate: int, shift_seconds: float, gain_db: float, noise_probability: float,
                 snr_db: tuple[float, float], background: np.ndarray | None = None, speed_change: float = 0.0,
                 seed: int = 0):
        self.shift = int(round(shift_seconds * sampling_rate))
        self.gain_db, self.noise_probability, self.snr_db = gain_db, noise_probability, snr_db
        self.speed_change = speed_change
        self.background = torch.from_numpy(np.asarray(background, np.float32)) \
            if background is not None and len(background) else None
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        batch, n = x.shape
        if self.shift:
            offset = torch.randint(-self.shift, self.shift + 1, (batch, 1), generator=self.generator)
            source = torch.arange(n).unsqueeze(0) - offset
            inside = (source >= 0) & (source < n)
            x = torch.gather(x, 1, source.clamp(0, n - 1)) * inside
        x = speed_perturb(random_gain(x, self.gain_db, self.generator), self.speed_change, self.generator)
        if self.noise_probability:
            if self.background is not None:
                pick = torch.randint(0, len(self.background), (batch,), generator=self.generator)
                noise = torch.nn.functional.pad(self.background[pick, :n], (0, max(0, n - self.background.shape[1])))
            else:
                noise = torch.randn(batch, n, generator=self.generator)
            signal_rms = x.pow(2).mean(dim=1, keepdim=True).sqrt()
            noise_rms = noise.pow(2).mean(dim=1, keepdim=True).sqrt() + 1e-8
            low, high = self.snr_db
            snr = low + (high - low) * torch.rand(batch, 1, generator=self.generator)
            mixed = torch.rand(batch, 1, generator=self.generator) < self.noise_probability
            x = x + noise * (signal_rms / noise_rms / 10 ** (snr / 20)) * mixed
        return x.clamp(-1.0, 1.0)
