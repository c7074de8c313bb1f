"""Synthetic machine sounds for tests, the demo and checks of the default model: a rotating machine as a
fundamental with harmonics, slow wow, and broadband noise, with injected faults: ``click`` (sparse impulses),
``harmonic`` (one harmonic shifted in frequency), ``rattle`` (bursts of band-passed noise at a rattling rate).

Each machine instance draws its own fundamental, harmonic weights and noise level; ``domain="target"`` moves the
fundamental (another speed) as a domain shift does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FAULTS = ("click", "harmonic", "rattle")


def machine_sound(seconds: float = 2.0, rate: int = 16000, seed: int = 0, fault: str | None = None,
                  domain: str = "source", severity: float = 1.0, machine_seed: int = 1234) -> np.ndarray:
    """One clip (float32, peak below 1): the machine ``machine_seed`` in ``domain``, with ``fault`` or normal."""
    machine = np.random.default_rng(machine_seed)
    if fault not in (None, *FAULTS):
        raise ValueError(f"unknown fault {fault!r}; choose one of {FAULTS}")
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    f0 = machine.uniform(90, 160) * (1.35 if domain == "target" else 1.0) * rng.uniform(0.98, 1.02)
    weights = machine.uniform(0.2, 1.0, 8) / np.arange(1, 9)
    wow = 1 + 0.004 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t + rng.uniform(0, 6.3))
    phase = 2 * np.pi * f0 * np.cumsum(wow) / rate
    x = np.zeros(n)
    for h, w in enumerate(weights, start=1):
        freq_shift = 1.0
        if fault == "harmonic" and h == 3:
            freq_shift = 1 + 0.06 * severity
        x += w * np.sin(h * freq_shift * phase + rng.uniform(0, 6.3))
    noise_level = machine.uniform(0.05, 0.15) * rng.uniform(0.9, 1.1)
    x += noise_level * rng.standard_normal(n)
    gain = 0.25 / np.abs(x).max()  # from the normal sound, so a fault adds to it at the same level
    if fault == "click":
        for start in rng.choice(n - 64, size=max(1, int(3 * seconds)), replace=False):
            x[start:start + 64] += 2.0 * severity * rng.standard_normal(64) * np.exp(-np.arange(64) / 10)
    elif fault == "rattle":
        from scipy.signal import butter, sosfilt

        rate_hz = rng.uniform(6, 12)
        gate = (np.sin(2 * np.pi * rate_hz * t) > 0.7).astype(float)
        band = sosfilt(butter(4, [2500, 5000], "bandpass", fs=rate, output="sos"), rng.standard_normal(n))
        x += 1.2 * severity * gate * band
    return np.clip(gain * x, -1, 1).astype(np.float32)


def machine_recording(seconds: float, fault: str, fault_start: float, fault_end: float, rate: int = 16000,
                      seed: int = 0, machine_seed: int = 1234) -> np.ndarray:
    """A continuous recording of ``seconds`` that is normal except from ``fault_start`` to ``fault_end`` (s)."""
    normal = machine_sound(seconds, rate, seed=seed, machine_seed=machine_seed)
    faulty = machine_sound(seconds, rate, seed=seed, fault=fault, machine_seed=machine_seed)
    a, b = int(fault_start * rate), int(fault_end * rate)
    return np.concatenate([normal[:a], faulty[a:b], normal[b:]])


def write_machine_dataset(root: str | Path, n_train: int = 16, n_test_normal: int = 6, n_test_fault: int = 3,
                          seconds: float = 2.0, rate: int = 16000, seed: int = 0, n_target: int = 0,
                          machine_seed: int = 1234, severity: float = 1.0) -> Path:
    """A DCASE-style folder: ``train/`` normal clips (``n_target`` of them in the target domain), ``test/`` normal
    clips and ``n_test_fault`` clips of every fault, named ``section_00_<domain>_<split>_<label>_NNNN_f0_<x>.wav``."""
    import soundfile

    root = Path(root)
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "test").mkdir(parents=True, exist_ok=True)
    k = seed * 10_000

    def write(split: str, label: str, index: int, domain: str, fault: str | None) -> None:
        nonlocal k
        k += 1
        clip = machine_sound(seconds, rate, seed=k, fault=fault, domain=domain, severity=severity,
                             machine_seed=machine_seed)
        attr = "hi" if domain == "target" else "lo"
        name = f"section_00_{domain}_{split}_{label}_{index:04d}_f0_{attr}{'_' + fault if fault else ''}.wav"
        soundfile.write(root / split / name, clip, rate)

    for i in range(n_train):
        write("train", "normal", i, "target" if i < n_target else "source", None)
    index = 0
    for i in range(n_test_normal):
        write("test", "normal", index, "source", None)
        index += 1
    for fault in FAULTS:
        for i in range(n_test_fault):
            write("test", "anomaly", index, "source", fault)
            index += 1
    return root
