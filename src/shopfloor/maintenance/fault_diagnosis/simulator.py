"""Seeded bearing-vibration simulator for demos and tests.

A localised bearing fault strikes once per passage of a rolling element, at a characteristic
frequency fixed by the bearing geometry and the shaft speed fr:

- outer race, BPFO = n/2 · fr · (1 − d/D · cos φ)
- inner race, BPFI = n/2 · fr · (1 + d/D · cos φ)
- ball,       BSF  = D/(2d) · fr · (1 − (d/D · cos φ)²)  (a ball hits both races: impacts at 2·BSF)

Each impact rings a structural resonance (an exponentially decaying sine). Inner-race impacts are
amplitude-modulated by the shaft rotation (the fault passes in and out of the load zone) and ball
impacts by the cage (FTF = fr/2 · (1 − d/D · cos φ)). Impact times jitter by ~1% (slip). Shaft
harmonics and white noise complete the signal. Defaults are the SKF 6205 of the CWRU rig.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

FAULTS = ("normal", "outer_race", "inner_race", "ball")


@dataclass(frozen=True)
class BearingGeometry:
    """Rolling-element bearing geometry (defaults: SKF 6205-2RS, the CWRU drive-end bearing)."""

    n_balls: int = 9
    ball_diameter_mm: float = 7.94
    pitch_diameter_mm: float = 39.04
    contact_angle_deg: float = 0.0

    def frequencies(self, shaft_hz: float) -> dict[str, float]:
        """Characteristic fault frequencies (Hz) at shaft speed ``shaft_hz``: bpfo, bpfi, bsf, ftf."""
        ratio = self.ball_diameter_mm / self.pitch_diameter_mm * np.cos(np.radians(self.contact_angle_deg))
        return {
            "bpfo": self.n_balls / 2 * shaft_hz * (1 - ratio),
            "bpfi": self.n_balls / 2 * shaft_hz * (1 + ratio),
            "bsf": self.pitch_diameter_mm / (2 * self.ball_diameter_mm) * shaft_hz * (1 - ratio ** 2),
            "ftf": shaft_hz / 2 * (1 - ratio),
        }


def simulate_bearing_signal(fault: str, duration_s: float = 2.0, sampling_rate: float = 12_000.0,
                            rpm: float = 1797.0, severity: float = 1.0, noise_std: float = 0.05,
                            resonance_hz: float = 3_000.0, damping: float = 800.0,
                            geometry: BearingGeometry = BearingGeometry(), seed: int = 0) -> np.ndarray:
    """One float32 vibration signal (samples,) for ``fault`` in :data:`FAULTS`."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; use one of {FAULTS}")
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sampling_rate))
    t = np.arange(n) / sampling_rate
    shaft = rpm / 60.0
    phase = rng.uniform(0, 2 * np.pi, 3)
    signal = 0.02 * np.sin(2 * np.pi * shaft * t + phase[0]) + 0.01 * np.sin(4 * np.pi * shaft * t + phase[1])
    signal += noise_std * rng.standard_normal(n)
    if fault == "normal":
        return signal.astype(np.float32)
    freqs = geometry.frequencies(shaft)
    rate, modulation_hz = {"outer_race": (freqs["bpfo"], 0.0), "inner_race": (freqs["bpfi"], shaft),
                           "ball": (2 * freqs["bsf"], freqs["ftf"])}[fault]
    period = 1.0 / rate
    times = np.arange(rng.uniform(0, period), duration_s, period)
    times = times + rng.normal(0, 0.01 * period, len(times))
    ring_len = int(min(period, 8 / damping) * sampling_rate)
    tau = np.arange(ring_len) / sampling_rate
    ring = np.exp(-damping * tau) * np.sin(2 * np.pi * resonance_hz * tau)
    for when in times:
        start = int(when * sampling_rate)
        if start < 0 or start >= n:
            continue
        amplitude = severity * 0.5 * rng.uniform(0.8, 1.2)
        if modulation_hz:
            amplitude *= 0.6 + 0.4 * np.cos(2 * np.pi * modulation_hz * when + phase[2])
        stop = min(n, start + ring_len)
        signal[start:stop] += amplitude * ring[: stop - start]
    return signal.astype(np.float32)


def write_bearing_dataset(out_dir: str | Path, recordings_per_class: int = 2, duration_s: float = 2.0,
                          sampling_rate: float = 12_000.0, faults: tuple[str, ...] = FAULTS,
                          fmt: str = "npy", seed: int = 0) -> Path:
    """Write ``out_dir/<fault>/rec<i>.<fmt>`` (npy, csv or wav) for the folder-per-class reader.

    Shaft speed and severity vary a little between recordings so that the classes are not single
    waveforms. Returns ``out_dir``.
    """
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    for k, fault in enumerate(faults):
        folder = out / fault
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(recordings_per_class):
            sig = simulate_bearing_signal(fault, duration_s, sampling_rate, rpm=float(rng.uniform(1720, 1800)),
                                          severity=float(rng.uniform(0.6, 1.2)), seed=seed * 1000 + k * 100 + i)
            path = folder / f"rec{i}.{fmt}"
            if fmt == "npy":
                np.save(path, sig)
            elif fmt == "csv":
                np.savetxt(path, sig[:, None], delimiter=",", header="acceleration", comments="", fmt="%.6f")
            elif fmt == "wav":
                from scipy.io import wavfile

                wavfile.write(path, int(sampling_rate), sig)
            else:
                raise ValueError(f"unknown format {fmt!r}; use npy, csv or wav")
    return out
