"""Seeded synthetic process records with rule-driven failure modes (demo and tests).

The columns follow the AI4I 2020 layout so the failure-prediction defaults apply unchanged; the
failure rules are the published AI4I ones:

- HDF heat dissipation: process − air temperature < 8.6 K and speed < 1380 rpm
- PWF power: torque · angular speed outside [3500, 9000] W
- OSF overstrain: tool wear · torque above 11,000 / 12,000 / 13,000 min·Nm for quality L / M / H
- TWF tool wear: at a random wear between 200 and 240 min (a minority of such records)
- RNF random: 0.1 % of records, regardless of the process
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_process_records(n: int = 5000, seed: int = 0) -> pd.DataFrame:
    """``n`` records: UDI, Product ID, Type, temperatures, speed, torque, tool wear, failure and modes."""
    rng = np.random.default_rng(seed)
    quality = rng.choice(["L", "M", "H"], size=n, p=[0.5, 0.3, 0.2])
    air = 300 + np.cumsum(rng.normal(0, 0.05, n)) + rng.normal(0, 0.3, n)
    air = (air - air.mean() + 300 + 2 * np.sin(np.linspace(0, 6 * np.pi, n))).round(1)
    process = (air + 10 + rng.normal(0, 1.0, n)).round(1)
    power = rng.normal(6300, 1000, n)  # W
    speed = np.clip(rng.normal(1540, 180, n), 1150, 2900).round()
    torque = np.clip(power / (speed * 2 * np.pi / 60) + rng.normal(0, 4, n), 3, 80).round(1)
    wear = np.zeros(n)
    increment = {"L": 5.0, "M": 3.0, "H": 2.0}
    current = 0.0
    replace_at = rng.uniform(200, 240)
    twf = np.zeros(n, dtype=np.uint8)
    for i in range(n):
        current += increment[quality[i]] * rng.uniform(0.2, 1.0)
        if current >= replace_at:
            twf[i] = rng.random() < 0.35
            current, replace_at = 0.0, rng.uniform(200, 240)
        wear[i] = round(current)
    watts = torque * speed * 2 * np.pi / 60
    hdf = ((process - air) < 8.6) & (speed < 1380)
    pwf = (watts < 3500) | (watts > 9000)
    limit = np.select([quality == "L", quality == "M"], [11_000, 12_000], 13_000)
    osf = wear * torque > limit
    rnf = rng.random(n) < 0.001
    modes = {"TWF": twf.astype(bool), "HDF": hdf, "PWF": pwf, "OSF": osf, "RNF": rnf}
    failure = np.any(np.stack(list(modes.values())), axis=0)
    return pd.DataFrame({
        "UDI": np.arange(1, n + 1),
        "Product ID": [f"{q}{10000 + i}" for i, q in enumerate(quality)],
        "Type": quality,
        "Air temperature [K]": air,
        "Process temperature [K]": process,
        "Rotational speed [rpm]": speed.astype(int),
        "Torque [Nm]": torque,
        "Tool wear [min]": wear.astype(int),
        "Machine failure": failure.astype(np.uint8),
        **{k: v.astype(np.uint8) for k, v in modes.items()},
    })
