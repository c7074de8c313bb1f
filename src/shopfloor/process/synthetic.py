"""A built-in multivariate process with injected faults, for the demo and the tests.

Four latent drivers follow slow AR(1) dynamics; twelve measured variables mix them (two through a square and a
product: the process is mildly nonlinear), one lags another (dynamics a single sample does not show), and each
has sensor noise. Faults start at ``onset`` and touch one variable (or a driver):

- ``step``: a driver steps by 3 of its standard deviations (every variable it feeds moves together);
- ``drift``: a sensor drifts linearly, reaching 3 noise-free standard deviations after 150 samples;
- ``variance``: a sensor gets extra noise of 1.5 times its normal standard deviation;
- ``freeze``: a sensor sticks at its reading at the onset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FAULTS = ("step", "drift", "variance", "freeze")
N_VARIABLES = 12
N_DRIVERS = 4


def _mixing(seed: int = 7) -> np.ndarray:
    """The plant's fixed mixing matrix (the same for every run of the built-in process)."""
    return np.random.default_rng(seed).normal(0, 1, (N_VARIABLES, N_DRIVERS))


def simulate_process(n_samples: int, seed: int = 0, fault: str | None = None, onset: int = 0,
                     run: str = "run_1") -> pd.DataFrame:
    """One run of the built-in process: columns ``run``, ``time``, ``fault`` (``normal`` before the onset, the
    fault's name after) and ``x01`` .. ``x12``."""
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; choose one of {FAULTS}")
    rng = np.random.default_rng(seed)
    drivers = np.zeros((n_samples, N_DRIVERS))
    phi = np.array([0.95, 0.9, 0.8, 0.6])
    state = rng.normal(0, 1, N_DRIVERS)
    shocks = rng.normal(0, 1, (n_samples, N_DRIVERS)) * np.sqrt(1 - phi ** 2)
    after = np.arange(n_samples) >= onset if fault else np.zeros(n_samples, dtype=bool)
    for t in range(n_samples):
        state = phi * state + shocks[t]
        drivers[t] = state
    if fault == "step":
        drivers[after, 1] += 3.0
    clean = drivers @ _mixing().T
    clean[:, 3] += 0.6 * drivers[:, 0] ** 2
    clean[:, 7] += 0.5 * drivers[:, 1] * drivers[:, 2]
    clean[1:, 9] = 0.7 * clean[:-1, 9] + 0.3 * clean[:-1, 4]  # x10 follows x05 with a lag
    noise_scale = np.full(N_VARIABLES, 0.2)
    noise = rng.normal(0, 1, (n_samples, N_VARIABLES)) * noise_scale
    values = clean + noise
    if fault == "variance":
        values[after, 5] += rng.normal(0, 1.5 * clean[:, 5].std(), after.sum())
    if fault == "drift":
        spread = clean[:, 8].std()
        values[after, 8] += 3.0 * spread * np.arange(after.sum()) / 150.0
    if fault == "freeze" and after.any():
        values[after, 2] = values[np.flatnonzero(after)[0], 2]
    values = values * np.linspace(1, 5, N_VARIABLES) + np.arange(N_VARIABLES) * 10.0  # engineering units
    frame = pd.DataFrame(values, columns=[f"x{i + 1:02d}" for i in range(N_VARIABLES)])
    labels = np.where(after, fault or "normal", "normal")
    frame.insert(0, "fault", labels)
    frame.insert(0, "time", np.arange(1, n_samples + 1, dtype=float))
    frame.insert(0, "run", run)
    return frame


def write_process_dataset(out_dir: str | Path, seed: int = 0, n_normal: int = 1500, n_fault: int = 500,
                          onset: int = 100) -> dict[str, Any]:
    """Write ``train.csv`` (two normal runs and one run per fault: training data for detection and, through the
    labelled faulty runs, for classification), ``test.csv`` (a normal run and a fresh run per fault, onset at
    ``onset``) and ``recent.csv`` (the last samples of a faulty run, as a live feed would deliver them)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = [simulate_process(n_normal, seed, run="normal_a"), simulate_process(n_normal, seed + 1, run="normal_b")]
    train += [simulate_process(n_fault, seed + 10 + i, f, onset, run=f"{f}_train") for i, f in enumerate(FAULTS)]
    test = [simulate_process(n_normal, seed + 100, run="normal_test")]
    test += [simulate_process(n_fault + onset, seed + 110 + i, f, onset, run=f"{f}_test")
             for i, f in enumerate(FAULTS)]
    paths = {"train": out / "train.csv", "test": out / "test.csv", "recent": out / "recent.csv"}
    pd.concat(train, ignore_index=True).to_csv(paths["train"], index=False)
    test_frame = pd.concat(test, ignore_index=True)
    test_frame.to_csv(paths["test"], index=False)
    recent = test_frame[test_frame.run == "drift_test"].iloc[onset + 100: onset + 160]
    recent.drop(columns=["fault"]).to_csv(paths["recent"], index=False)
    return paths


__all__ = ["FAULTS", "simulate_process", "write_process_dataset"]
