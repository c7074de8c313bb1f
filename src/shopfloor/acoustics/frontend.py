"""The log-mel front end, a plain ``nn.Module`` that lives inside every exported acoustics graph, so the model
that is evaluated and deployed takes raw samples and computes its own spectrogram.

The short-time Fourier transform is a strided ``conv1d`` with a Hann-windowed DFT basis (exports to ONNX opset 17
and runs in ONNX Runtime with no STFT operator), zero-padded by ``n_fft // 2`` at both ends like librosa's
``center=True``; the mel filterbank is ``librosa.filters.mel`` (Slaney), computed when the module is built and
kept in a buffer (loading a saved model needs no librosa). The output is ``10 * log10(mel_power + eps)``, which
matches ``librosa.power_to_db(librosa.feature.melspectrogram(...), ref=1.0, amin=eps, top_db=None)`` (see
tests/acoustics/test_frontend.py for the tolerance).

>>> import torch
>>> frontend = LogMel(sampling_rate=16000, n_fft=1024, hop_length=512, n_mels=128)
>>> frontend(torch.zeros(2, 16000)).shape
torch.Size([2, 128, 32])
>>> frontend.n_frames(16000)
32
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

LOG_EPS = 1e-10  # power floor before the log (-100 dB)


def power_to_db(power: torch.Tensor) -> torch.Tensor:
    """``10 * log10(power + eps)``: the one dB conversion of the front end (graph and training augmentation)."""
    return 10.0 * torch.log10(power + LOG_EPS)


def mel_filterbank(sampling_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """librosa's Slaney mel filterbank ``(n_mels, n_fft // 2 + 1)`` (float32)."""
    import librosa

    return librosa.filters.mel(sr=sampling_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).astype(np.float32)


def dft_basis(n_fft: int) -> np.ndarray:
    """Hann-windowed (periodic) cosine and sine rows of the real DFT: ``(2 * (n_fft // 2 + 1), 1, n_fft)``."""
    n_freq = n_fft // 2 + 1
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    phase = 2 * np.pi * np.outer(np.arange(n_freq), np.arange(n_fft)) / n_fft
    basis = np.concatenate([np.cos(phase), -np.sin(phase)]) * window
    return basis[:, None, :].astype(np.float32)


class LogMel(nn.Module):
    """Raw samples ``(batch, samples)`` -> log-mel power ``(batch, n_mels, frames)`` in dB (see module docstring).

    ``filterbank`` may be given (a saved model's buffer is loaded over it anyway); by default it is computed with
    librosa from ``sampling_rate``, ``n_fft``, ``n_mels``, ``fmin`` and ``fmax``.
    """

    def __init__(self, sampling_rate: int = 16000, n_fft: int = 1024, hop_length: int = 512, n_mels: int = 128,
                 fmin: float = 0.0, fmax: float | None = None, filterbank: np.ndarray | None = None):
        super().__init__()
        self.sampling_rate, self.n_fft, self.hop_length, self.n_mels = sampling_rate, n_fft, hop_length, n_mels
        if filterbank is None:
            filterbank = mel_filterbank(sampling_rate, n_fft, n_mels, fmin, fmax)
        self.register_buffer("basis", torch.from_numpy(dft_basis(n_fft)))
        self.register_buffer("filterbank", torch.as_tensor(np.asarray(filterbank, np.float32)))

    def n_frames(self, n_samples: int) -> int:
        """Frames the module gives for ``n_samples`` samples (centred frames: ``1 + n_samples // hop``)."""
        return 1 + n_samples // self.hop_length

    def power(self, samples: torch.Tensor) -> torch.Tensor:
        """Power spectrogram ``(batch, n_fft // 2 + 1, frames)``."""
        pad = self.n_fft // 2
        x = nn.functional.pad(samples.unsqueeze(1), (pad, pad))
        spec = nn.functional.conv1d(x, self.basis, stride=self.hop_length)
        n_freq = self.n_fft // 2 + 1
        return spec[:, :n_freq] ** 2 + spec[:, n_freq:] ** 2

    def from_power(self, power: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(batch, n_mels, frames)`` of a power spectrogram: what :meth:`forward` does after the STFT."""
        return power_to_db(torch.matmul(self.filterbank, power))

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        return self.from_power(self.power(samples))

    def frame_seconds(self) -> float:
        """Seconds between frames."""
        return self.hop_length / self.sampling_rate

    def band_edges_hz(self) -> np.ndarray:
        """Approximate centre frequency of each mel band (Hz), for plots."""
        freqs = np.linspace(0, self.sampling_rate / 2, self.n_fft // 2 + 1)
        weights = self.filterbank.detach().cpu().numpy()
        return (weights * freqs).sum(1) / np.maximum(weights.sum(1), 1e-12)


def stack_frames(logmel: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Consecutive frames stacked as vectors: ``(batch, n_mels, T)`` -> ``(batch, T - n_frames + 1,
    n_frames * n_mels)`` (frame-major, as the DCASE baseline).

    >>> stack_frames(torch.zeros(2, 128, 32), 5).shape
    torch.Size([2, 28, 640])
    """
    steps = logmel.shape[2] - n_frames + 1
    parts = [logmel[:, :, k:k + steps] for k in range(n_frames)]
    return torch.cat(parts, dim=1).transpose(1, 2)


def seconds_to_frames(seconds: float, sampling_rate: int, hop_length: int) -> int:
    """Whole frames covering ``seconds``."""
    return max(1, math.ceil(seconds * sampling_rate / hop_length))
