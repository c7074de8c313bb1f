"""Histories as they arrive in the field: too short, started mid-life, with gaps, or at an unseen condition.

None of these refuses a prediction by default; each is handled, marked as a caveat on the unit's estimate and
widens its interval (:func:`widen_interval`, applied after :func:`~.task.combine_recent`, the one place per-window
outputs become a unit's estimate):

- **missing readings** — a unit shorter than the window (padded with its first reading) or a last window that
  spans gaps in the cycles: the estimate rests on fewer readings than a window of consecutive cycles, so the
  half-width grows by ``sqrt(expected / present)`` readings (the standard error of a mean over fewer points).
- **estimated baseline** — a unit whose history starts later than any training unit's did (mid-life): its own
  first readings are no healthy reference, so the fleet's average early-life reading in normalised units
  (:func:`fleet_reference`, stored at fit) stands in for it (:func:`substitute_reference`). The widening factor
  is calibrated at fit on held-out units estimated both ways (``state["interval"]["estimated_baseline_factor"]``).
- **unseen operating condition** — settings farther from every condition centre than twice the farthest
  training row (:func:`condition_distance`): the per-condition normalisation does not hold there and no held-out
  data says how wrong it is, so the interval opens to ``[0, max(upper, rul_cap)]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..histories import TIME, UNIT, SensorHistories
from ..windows import ConditionNormalizer

UNSEEN_CONDITION_FACTOR = 2.0  # a row counts as unseen beyond this many times the farthest training distance
UNCALIBRATED_BASELINE_FACTOR = 2.0  # models saved before the factor was calibrated


def normalised_rows(rows: np.ndarray, normalizer: ConditionNormalizer) -> np.ndarray:
    """Raw rows (n, settings + sensors) -> sensors standardised per operating condition (n, sensors)."""
    with torch.no_grad():
        return normalizer(torch.as_tensor(rows, dtype=torch.float32)[None])[0].numpy()


def fleet_reference(histories: SensorHistories, features: list[str], normalizer: ConditionNormalizer,
                    k: int) -> np.ndarray:
    """The average over units of each unit's mean normalised first ``k`` readings: (sensors,)."""
    frame = histories.frame
    first = frame.groupby(UNIT, sort=False).head(k)
    z = normalised_rows(first[features].to_numpy(dtype=np.float32), normalizer)
    per_unit = pd.DataFrame(z).groupby(first[UNIT].to_numpy(), sort=False).mean()
    return per_unit.mean(axis=0).to_numpy(dtype=np.float64)


def substitute_reference(x: np.ndarray, k: int, normalizer: ConditionNormalizer, reference: np.ndarray) -> np.ndarray:
    """Windows (n, k + window, features) whose first ``k`` rows (the unit's reference) are replaced by raw rows
    that normalise to ``reference``, each in the operating condition of the row it replaces."""
    x = np.array(x, dtype=np.float32, copy=True)
    with torch.no_grad():
        conditions = normalizer.conditions(torch.as_tensor(x[:, :k])).numpy()  # (n, k)
        mean, std = normalizer.sensor_mean.numpy(), normalizer.sensor_std.numpy()
    x[:, :k, normalizer.n_settings:] = mean[conditions] + std[conditions] * reference.astype(np.float32)
    return x


def condition_distance(settings: np.ndarray, normalizer: ConditionNormalizer) -> np.ndarray:
    """Distance of each row's standardised settings to the nearest condition centre (0 without settings)."""
    if normalizer.n_settings == 0:
        return np.zeros(len(settings))
    z = (np.asarray(settings, dtype=np.float64) - normalizer.setting_mean.numpy()) / normalizer.setting_scale.numpy()
    return np.sqrt(((z[:, None, :] - normalizer.centers.numpy()[None]) ** 2).sum(-1).min(axis=1))


def missing_readings(histories: SensorHistories, units: np.ndarray, window: int) -> np.ndarray:
    """Per unit (in ``units`` order): readings a window of consecutive cycles ending at its last row should hold,
    over those present (>= 1; > 1 for units shorter than the window or whose last window spans gaps)."""
    frame = histories.frame
    steps = frame.groupby(UNIT, sort=False)[TIME].diff()
    positive = steps[steps > 0]
    step = float(positive.median()) if len(positive) else 1.0
    tail = frame.groupby(UNIT, sort=False)[TIME].apply(lambda t: (len(t.tail(window)), float(t.tail(window).iloc[-1]
                                                                                             - t.tail(window).iloc[0])))
    ratio = {u: max(window / n, (span / step + 1) / n) if n else 1.0 for u, (n, span) in tail.items()}
    return np.array([max(ratio.get(u, 1.0), 1.0) for u in units])


def widen_interval(out: dict[str, np.ndarray], factor: np.ndarray, open_upper: np.ndarray, cap: float) -> None:
    """Scale each unit's distances from its estimate to the interval's bounds by ``factor``, in place (each side
    on its own: an interval need not be symmetric, and a factor of 1 leaves it exactly as it was); where
    ``open_upper``, the interval becomes ``[0, max(upper, cap)]``."""
    rul, widened = out["rul"], factor != 1
    upper = np.where(widened, rul + np.maximum(out["upper"] - rul, 0.0) * factor, out["upper"])
    lower = np.where(widened, np.maximum(rul - np.maximum(rul - out["lower"], 0.0) * factor, 0.0), out["lower"])
    out["upper"] = np.where(open_upper, np.maximum(upper, cap), upper)
    out["lower"] = np.where(open_upper, 0.0, lower)


def baseline_factor(y: np.ndarray, own: np.ndarray, estimated: np.ndarray, level: float) -> float:
    """How much larger the ``level`` quantile of the absolute error is with an estimated baseline than with the
    unit's own (at least 1)."""
    a = np.quantile(np.abs(y - own), level)
    b = np.quantile(np.abs(y - estimated), level)
    return float(max(b / max(a, 1e-9), 1.0))


__all__ = ["baseline_factor", "condition_distance", "fleet_reference", "missing_readings", "normalised_rows",
           "substitute_reference", "widen_interval"]
