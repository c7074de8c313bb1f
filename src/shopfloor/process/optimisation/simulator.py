"""A built-in moulding-like process with a known optimum, for the demo and the tests.

Four settings (``melt_temp``, ``mould_temp``, ``hold_pressure`` on 10-bar machine steps, ``cooling_time``), one
context column (``wall_thickness``, fixed for a job) and three smooth nonlinear results with interactions and
noise: ``warpage`` (to minimise), ``part_weight`` (bounded by a constraint) and ``cycle_time``. The noise-free
responses (:func:`true_quality`) are known, so a recommendation can be scored by its **regret**: its true quality
minus the true optimum (:func:`true_optimum`, a dense grid search), as a share of the response range.

>>> frame = simulate_records(5, seed=0)
>>> sorted(frame.columns)
['cooling_time', 'cycle_time', 'hold_pressure', 'melt_temp', 'mould_temp', 'part_weight', 'wall_thickness', 'warpage']
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

SETTINGS = {"melt_temp": (200.0, 260.0), "mould_temp": (20.0, 80.0), "hold_pressure": (300.0, 900.0),
            "cooling_time": (5.0, 30.0)}
CONTEXT = {"wall_thickness": (1.0, 4.0)}
RESULTS = ("warpage", "part_weight", "cycle_time")
STEPS = {"hold_pressure": 10.0}  # the machine sets the holding pressure in 10-bar steps
NOISE = {"warpage": 0.02, "part_weight": 0.05, "cycle_time": 0.1}


def _unit(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    columns = {**SETTINGS, **CONTEXT}
    return {name: (np.asarray(frame[name], dtype=np.float64) - low) / (high - low)
            for name, (low, high) in columns.items()}


def true_quality(frame: pd.DataFrame) -> pd.DataFrame:
    """The noise-free results of settings + context rows (columns of :data:`SETTINGS` and :data:`CONTEXT`)."""
    u = _unit(frame)
    melt, mould, hold, cool, wall = u["melt_temp"], u["mould_temp"], u["hold_pressure"], u["cooling_time"], u["wall_thickness"]
    best_melt = 0.55 + 0.2 * wall  # thicker walls want a hotter melt: the optimum moves with the context
    warpage = (0.3 + 0.4 * wall + 1.6 * (melt - best_melt) ** 2 + 1.2 * (mould - 0.35) ** 2
               + 1.0 * (hold - 0.75) ** 2 + 0.8 * (melt - best_melt) * (hold - 0.75)
               + 0.6 * np.exp(-4.0 * cool) + 0.3 * np.sin(3.0 * mould) * wall)
    part_weight = 10.0 + 3.0 * wall + 2.0 * hold + 0.6 * melt - 0.4 * mould + 0.5 * hold * wall
    cycle_time = 8.0 + 25.0 * cool * (0.5 + 0.5 * wall) + 6.0 * mould + 2.0 * hold
    return pd.DataFrame({"warpage": warpage, "part_weight": part_weight, "cycle_time": cycle_time})


def snap_to_steps(frame: pd.DataFrame) -> pd.DataFrame:
    """Round the stepped settings (:data:`STEPS`) to the machine's steps."""
    frame = frame.copy()
    for name, step in STEPS.items():
        low = SETTINGS[name][0]
        frame[name] = low + np.round((frame[name] - low) / step) * step
    return frame


def simulate_records(n: int, seed: int = 0, wall_thickness: float | None = None) -> pd.DataFrame:
    """``n`` records: uniform random settings (stepped ones on their steps), random or given wall thickness, and
    the noisy results."""
    rng = np.random.default_rng(seed)
    columns = {name: rng.uniform(low, high, n) for name, (low, high) in SETTINGS.items()}
    low, high = CONTEXT["wall_thickness"]
    columns["wall_thickness"] = (np.full(n, float(wall_thickness)) if wall_thickness is not None
                                 else np.round(rng.uniform(low, high, n), 1))
    frame = snap_to_steps(pd.DataFrame(columns))
    quality = true_quality(frame)
    for name in RESULTS:
        frame[name] = quality[name] + rng.normal(0.0, NOISE[name], n)
    return frame


def settings_grid(points: int = 21) -> pd.DataFrame:
    """A dense grid over the settings box (stepped settings on their steps)."""
    axes = [np.linspace(low, high, points) for low, high in SETTINGS.values()]
    grid = pd.DataFrame(list(itertools.product(*axes)), columns=list(SETTINGS))
    return snap_to_steps(grid)


def true_optimum(wall_thickness: float, max_part_weight: float | None = None, points: int = 21) -> dict[str, float]:
    """The lowest true warpage for ``wall_thickness`` (with ``part_weight <= max_part_weight``), and the range of
    the true warpage over the settings box (the scale regret is measured against)."""
    grid = settings_grid(points)
    grid["wall_thickness"] = float(wall_thickness)
    quality = true_quality(grid)
    feasible = np.ones(len(grid), dtype=bool) if max_part_weight is None else quality["part_weight"].to_numpy() <= max_part_weight
    warpage = quality["warpage"].to_numpy()
    best = int(np.argmin(np.where(feasible, warpage, np.inf)))
    return {"warpage": float(warpage[best]), "range": float(warpage.max() - warpage.min()),
            **{name: float(grid[name].iloc[best]) for name in SETTINGS}}


def regret(settings: dict[str, float], wall_thickness: float, max_part_weight: float | None = None) -> float:
    """True warpage of ``settings`` minus the true optimum, as a share of the warpage range (0 = optimal)."""
    row = pd.DataFrame([{**settings, "wall_thickness": wall_thickness}])
    optimum = true_optimum(wall_thickness, max_part_weight)
    return (float(true_quality(row)["warpage"].iloc[0]) - optimum["warpage"]) / optimum["range"]
