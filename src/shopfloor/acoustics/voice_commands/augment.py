"""Training augmentation of voice commands on power spectrograms: the clips' STFT power is computed once with the
model's own front end, and every batch is varied in that domain (cheap: the network is the only per-batch cost).

Per clip, seeded: a time shift and a tempo change (the frame axis resampled, zero-filled outside), a gain, a
random microphone colouring (a spectral tilt and smooth bumps within +-``eq_db``, sometimes band-limited like a
phone or a cheap headset), synthetic room reverberation (each frequency's power smeared forward in time by an
exponential decay of random RT60 and direct-to-reverberant ratio: the power-domain form of a synthetic room impulse
response), a background from a bank of noise spectrograms (the training ``_silence_`` clips and generated noise)
at a random SNR (powers add), vocal-tract length perturbation (the mel filterbank warped along frequency by a
random factor), the log, and SpecAugment time and frequency masks. With every step off, the output is exactly the
front end's log-mel of the clip.

>>> import torch
>>> from shopfloor.acoustics.frontend import LogMel
>>> frontend = LogMel(16000, 512, 320, 40)
>>> spectra = power_spectra(frontend, torch.randn(3, 16000).numpy() * 0.1)
>>> augment = SpectralAugment(spectra, None, frontend.filterbank, AugmentSettings(), seed=0)
>>> augment(torch.tensor([0, 2])).shape
torch.Size([2, 40, 51])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..frontend import LogMel, power_to_db


@dataclass(frozen=True)
class AugmentSettings:
    """How far each step goes (0 turns it off); ``frame_seconds`` is the front end's hop in seconds."""

    frame_seconds: float = 0.02
    shift_seconds: float = 0.1
    tempo_change: float = 0.1  # +-fraction
    gain_db: float = 6.0
    eq_db: float = 6.0
    band_limit_probability: float = 0.2
    reverb_probability: float = 0.3
    rt60_seconds: tuple[float, float] = (0.1, 0.8)
    noise_probability: float = 0.8
    snr_db: tuple[float, float] = (0.0, 30.0)
    vtlp: float = 0.1  # warp factors within 1 +- this
    freq_masks: int = 2
    freq_width: int = 6
    time_masks: int = 2
    time_width: int = 8


def power_spectra(frontend: LogMel, audio: np.ndarray, batch: int = 256) -> torch.Tensor:
    """STFT power of ``audio`` ``(n, samples)`` in dB as float16 ``(n, n_fft // 2 + 1, frames)`` (compact: the
    bank of clips that :class:`SpectralAugment` draws from)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(audio), batch):
            power = frontend.power(torch.from_numpy(np.ascontiguousarray(audio[start:start + batch],
                                                                         dtype=np.float32)))
            out.append(power_to_db(power).half())
    n_freq = frontend.n_fft // 2 + 1
    return torch.cat(out) if out else torch.zeros(0, n_freq, frontend.n_frames(audio.shape[-1]), dtype=torch.half)


def warped_filterbanks(filterbank: torch.Tensor, factors: np.ndarray) -> torch.Tensor:
    """``filterbank`` ``(n_mels, n_freq)`` with each filter's frequency axis scaled by each factor: a filter that
    looked at frequency f now looks at f * factor (a shorter or longer vocal tract). ``(len(factors), n_mels,
    n_freq)``."""
    fb = filterbank.detach().cpu().numpy()
    bins = np.arange(fb.shape[1], dtype=np.float64)
    out = np.stack([np.stack([np.interp(bins / factor, bins, row, right=0.0) for row in fb]) for factor in factors])
    return torch.from_numpy(out.astype(np.float32))


class SpectralAugment:
    """Augmented log-mel ``(batch, n_mels, frames)`` for a batch of clip indices into ``spectra`` (the
    :func:`power_spectra` of the training clips); ``noise`` is a bank of background power spectra of the same shape
    (None: no noise step); ``fill`` ``(n_mels, 1)`` is the value masks write (the training band means)."""

    def __init__(self, spectra: torch.Tensor, noise: torch.Tensor | None, filterbank: torch.Tensor,
                 settings: AugmentSettings, seed: int = 0, fill: torch.Tensor | None = None, n_warps: int = 9):
        self.spectra, self.noise, self.settings = spectra, noise, settings
        self.filterbank = filterbank.detach().float()
        factors = 1 + np.linspace(-settings.vtlp, settings.vtlp, n_warps) if settings.vtlp > 0 else np.ones(1)
        self.warps = warped_filterbanks(self.filterbank, factors)
        self.fill = fill if fill is not None else torch.zeros(self.filterbank.shape[0], 1)
        self.generator = torch.Generator().manual_seed(seed)

    def _uniform(self, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, generator=self.generator)

    def _chance(self, batch: int, probability: float) -> torch.Tensor:
        return (torch.rand(batch, 1, 1, generator=self.generator) < probability).float()

    def __call__(self, index: torch.Tensor) -> torch.Tensor:
        s = self.settings
        power = 10 ** (self.spectra[index.long()].float() / 10)
        batch, n_freq, n_frames = power.shape
        power = self._time_warp(power)
        if s.gain_db > 0:
            power = power * 10 ** (self._uniform((batch, 1, 1), -s.gain_db, s.gain_db) / 10)
        if s.eq_db > 0 or s.band_limit_probability > 0:
            power = power * 10 ** (self._colouring(batch, n_freq) / 10)
        if s.reverb_probability > 0:
            power = self._reverb(power)
        if self.noise is not None and len(self.noise) and s.noise_probability > 0:
            noise = 10 ** (self.noise[torch.randint(0, len(self.noise), (batch,), generator=self.generator)]
                           .float() / 10)
            noise = torch.roll(noise, int(torch.randint(0, n_frames, (1,), generator=self.generator)), dims=2)
            snr = self._uniform((batch, 1, 1), *s.snr_db)
            scale = power.mean(dim=(1, 2), keepdim=True) / noise.mean(dim=(1, 2), keepdim=True).clamp_min(1e-12)
            power = power + noise * scale / 10 ** (snr / 10) * self._chance(batch, s.noise_probability)
        warp = torch.randint(0, len(self.warps), (batch,), generator=self.generator)
        logmel = power_to_db(torch.bmm(self.warps[warp], power))
        return self._masks(logmel)

    def _time_warp(self, power: torch.Tensor) -> torch.Tensor:
        s = self.settings
        batch, n_freq, n_frames = power.shape
        shift = s.shift_seconds / s.frame_seconds
        if shift <= 0 and s.tempo_change <= 0:
            return power
        rate = self._uniform((batch, 1), 1 - s.tempo_change, 1 + s.tempo_change)
        offset = self._uniform((batch, 1), -shift, shift)
        centre = (n_frames - 1) / 2
        source = (torch.arange(n_frames, dtype=torch.float32) - centre) * rate + centre - offset
        left = source.floor().long()
        frac = (source - left).unsqueeze(1)
        inside = lambda i: ((i >= 0) & (i < n_frames)).float().unsqueeze(1)  # noqa: E731

        def take(i: torch.Tensor) -> torch.Tensor:
            return torch.gather(power, 2, i.clamp(0, n_frames - 1).unsqueeze(1).expand(-1, n_freq, -1)) * inside(i)

        return take(left) * (1 - frac) + take(left + 1) * frac

    def _colouring(self, batch: int, n_freq: int) -> torch.Tensor:
        """A random response in dB ``(batch, n_freq, 1)``: tilt, three smooth bumps, sometimes a band limit."""
        s = self.settings
        f = torch.linspace(0, 1, n_freq).view(1, -1)
        db = self._uniform((batch, 1), -s.eq_db, s.eq_db) * (f - 0.5) * 2
        for _ in range(3):
            centre, width = self._uniform((batch, 1), 0, 1), self._uniform((batch, 1), 0.05, 0.3)
            db = db + self._uniform((batch, 1), -s.eq_db / 2, s.eq_db / 2) * torch.exp(-((f - centre) / width) ** 2)
        limited = (torch.rand(batch, 1, generator=self.generator) < s.band_limit_probability).float()
        cutoff = self._uniform((batch, 1), 0.4, 0.9)  # of Nyquist: 3.2-7.2 kHz at 16 kHz
        low_cut = self._uniform((batch, 1), 0.005, 0.04)  # 40-320 Hz
        stop = (torch.relu(f - cutoff) * 400).clamp(max=50) + (torch.relu(low_cut - f) * 2000).clamp(max=30)
        return (db - limited * stop).unsqueeze(2)

    def _reverb(self, power: torch.Tensor) -> torch.Tensor:
        s = self.settings
        batch, n_freq, n_frames = power.shape
        length = max(2, int(np.ceil(s.rt60_seconds[1] / s.frame_seconds)))
        rt60 = self._uniform((batch, 1), *s.rt60_seconds)
        k = torch.arange(length, dtype=torch.float32).view(1, -1)
        tail = 10 ** (-6 * k * s.frame_seconds / rt60) * (k > 0)  # 60 dB down after rt60
        direct_to_reverb = 10 ** (self._uniform((batch, 1), -5.0, 10.0) / 10)
        kernel = (k == 0).float() + tail / tail.sum(1, keepdim=True) / direct_to_reverb
        kernel = torch.where(self._chance(batch, s.reverb_probability).view(batch, 1) > 0, kernel,
                             (k == 0).float().expand(batch, -1))
        weight = kernel.flip(1).repeat_interleave(n_freq, dim=0).unsqueeze(1)  # (batch * n_freq, 1, length)
        x = torch.nn.functional.pad(power.reshape(1, batch * n_freq, n_frames), (length - 1, 0))
        return torch.nn.functional.conv1d(x, weight, groups=batch * n_freq).reshape(batch, n_freq, n_frames)

    def _masks(self, logmel: torch.Tensor) -> torch.Tensor:
        s = self.settings
        batch, n_mels, n_frames = logmel.shape
        masked = torch.zeros(batch, n_mels, n_frames, dtype=torch.bool)
        for count, width, size, axis in ((s.freq_masks, s.freq_width, n_mels, 1),
                                         (s.time_masks, s.time_width, n_frames, 2)):
            position = torch.arange(size).view(1, -1)
            for _ in range(count):
                w = torch.randint(0, min(width, size) + 1, (batch, 1), generator=self.generator)
                start = (torch.rand(batch, 1, generator=self.generator) * (size - w + 1)).floor().long()
                hit = (position >= start) & (position < start + w)
                masked |= hit.unsqueeze(2) if axis == 1 else hit.unsqueeze(1)
        return torch.where(masked, self.fill.view(1, -1, 1).expand_as(logmel), logmel)
