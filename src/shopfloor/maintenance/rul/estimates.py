"""From per-window outputs to a unit's estimate: the conformal interval calibration, the combination of a unit's
most recent windows, and which window is each unit's last."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..histories import TIME, UNIT, SensorHistories


def calibrate_interval(y: np.ndarray, mean: np.ndarray, spread: np.ndarray, level: float) -> tuple[float, float]:
    """Normalised split-conformal calibration: (scale, offset) such that ``|y - mean| <= scale * (spread +
    offset)`` holds for a ``level`` share of the calibration windows (finite-sample corrected)."""
    offset = max(float(np.median(spread)), 1e-3)
    scores = np.abs(y - mean) / (spread + offset)
    rank = min(math.ceil((len(scores) + 1) * level) / len(scores), 1.0)
    return float(np.quantile(scores, rank, method="higher")), offset


def combine_recent(unit: np.ndarray, end_time: np.ndarray, outputs: dict[str, np.ndarray],
                   n: int) -> dict[str, np.ndarray]:
    """The estimate at each window's end from the windows ending at that unit's last ``n`` steps.

    A window ending ``lag`` steps earlier estimated the RUL at its end, so it says ``rul - lag`` about now;
    ``rul``, ``lower`` and ``upper`` are averaged that way, ``spread`` plainly. Windows must be ordered by unit
    and time (as :func:`make_windows` returns them). This is the one place the per-window outputs of the ONNX
    graph are turned into a unit's estimate (evaluate, predict, report and interval calibration all use it).
    """
    t = pd.Series(np.asarray(end_time, dtype=np.float64))
    groups = pd.Series(unit).to_numpy()

    def rolling(values: np.ndarray) -> np.ndarray:
        series = pd.Series(np.asarray(values, dtype=np.float64))
        return series.groupby(groups, sort=False).transform(lambda s: s.rolling(n, min_periods=1).mean()).to_numpy()

    combined = {key: rolling(outputs[key] + t.to_numpy()) - t.to_numpy() for key in ("rul", "lower", "upper")}
    combined["rul"] = np.maximum(combined["rul"], 0.0)
    combined["lower"] = np.maximum(combined["lower"], 0.0)
    combined["spread"] = rolling(outputs["spread"])
    return combined


def history_starts(histories: SensorHistories) -> pd.Series:
    """Each unit's first time value (where the rows given for it begin)."""
    return histories.frame.groupby(UNIT, sort=False)[TIME].min()


def last_per_unit(unit: np.ndarray) -> np.ndarray:
    """Boolean mask of each unit's last window (windows ordered by unit and time)."""
    unit = pd.Series(unit).to_numpy()
    return np.r_[unit[1:] != unit[:-1], True]
