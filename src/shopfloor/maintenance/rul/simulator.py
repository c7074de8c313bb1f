"""Seeded synthetic run-to-failure sensor histories, for the demo and the tests.

Each unit runs from a random initial wear to failure. Its health degrades slowly, then faster after a
random fault onset (an exponential damage curve reaching 1 at failure). Every cycle the unit runs in
one of several operating conditions (given by the operating settings), which shift every sensor's
baseline strongly; informative sensors also drift with the damage, others are pure noise and one is
constant (the readers drop it). Output is the long format that :func:`read_sensor_table` reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def simulate_degradation(n_units: int = 40, seed: int = 0, n_conditions: int = 3, n_sensors: int = 8,
                         life_range: tuple[int, int] = (90, 200), truncate: bool = False,
                         noise: float = 0.3, unit_offset: int = 1) -> pd.DataFrame:
    """Sensor histories as a DataFrame with columns unit, time, setting_1, setting_2, sensor_1.. and rul.

    ``truncate=True`` cuts each unit at a random cycle before failure (a test set); ``rul`` is then the
    true remaining life at every row. The same ``seed`` gives the same fleet physics (condition baselines
    and sensor sensitivities), so training and test sets from different unit draws are compatible when
    they share ``seed`` and differ in ``unit_offset``.
    """
    physics = np.random.default_rng(seed)
    centers = physics.uniform([0.0, 20.0], [40.0, 100.0], size=(n_conditions, 2))  # setting values per condition
    baselines = physics.normal(0.0, 1.0, size=(n_conditions, n_sensors)) * 20 + physics.uniform(50, 500, n_sensors)
    n_informative = max(1, (2 * n_sensors) // 3)
    sensitivity = np.zeros(n_sensors)
    sensitivity[:n_informative] = physics.choice([-1.0, 1.0], n_informative) * physics.uniform(2.0, 6.0, n_informative)
    sensitivity = physics.permutation(sensitivity)
    constant_sensor = n_sensors - 1
    sensitivity[constant_sensor] = 0.0

    units = np.random.default_rng([seed, unit_offset])
    rows = []
    for u in range(n_units):
        life = int(units.integers(life_range[0], life_range[1] + 1))
        onset = units.uniform(0.2, 0.6) * life
        wear = units.uniform(0.0, 0.15)
        rate = units.uniform(2.0, 4.0)
        t = np.arange(1, life + 1, dtype=float)
        after = np.clip((t - onset) / (life - onset), 0.0, None)
        damage = wear + 0.1 * t / life + (1 - 0.1 - wear) * np.expm1(rate * after) / np.expm1(rate)
        condition = units.integers(0, n_conditions, size=life)
        settings = centers[condition] + units.normal(0, 0.05, size=(life, 2))
        sensors = (baselines[condition] + damage[:, None] * sensitivity[None, :]
                   + units.normal(0.0, noise, size=(life, n_sensors)) * np.maximum(np.abs(sensitivity), 1.0) * 0.3)
        sensors[:, constant_sensor] = round(float(baselines[0, constant_sensor]), 2)
        rul = life - t
        end = life
        if truncate:
            end = int(units.integers(max(10, life // 4), life - 5))
        unit_frame = pd.DataFrame({"unit": u + unit_offset, "time": t[:end].astype(int)})
        unit_frame[["setting_1", "setting_2"]] = settings[:end]
        unit_frame[[f"sensor_{i + 1}" for i in range(n_sensors)]] = sensors[:end]
        unit_frame["rul"] = rul[:end]
        rows.append(unit_frame)
    return pd.concat(rows, ignore_index=True)


def write_degradation_dataset(out_dir: str | Path, n_train: int = 40, n_test: int = 20, seed: int = 0,
                              **options) -> dict[str, Path]:
    """Write ``train.csv`` (run to failure), ``test.csv`` (truncated, with true RUL) and
    ``recent_cycles.csv`` (the test units without the RUL column, as a plant would send them)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = simulate_degradation(n_train, seed=seed, unit_offset=1, **options)
    test = simulate_degradation(n_test, seed=seed, unit_offset=1000, truncate=True, **options)
    paths = {"train": out / "train.csv", "test": out / "test.csv", "recent": out / "recent_cycles.csv"}
    train.to_csv(paths["train"], index=False)
    test.to_csv(paths["test"], index=False)
    test.drop(columns=["rul"]).to_csv(paths["recent"], index=False)
    return paths


__all__ = ["simulate_degradation", "write_degradation_dataset"]
