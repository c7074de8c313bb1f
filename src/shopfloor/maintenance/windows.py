"""From sensor histories to model windows: RUL target, unit-wise split, sliding windows, normalisation.

- :func:`piecewise_rul`: the piecewise-linear target, RUL capped at ``cap`` (125 by default).
- :func:`split_units`: seeded train/validation split by unit, so no unit is on both sides.
- :func:`make_windows`: sliding windows of raw values (the last window of each unit always included),
  with an explicit policy for units shorter than the window.
- :func:`fit_condition_normalizer`: clusters the operating settings into operating conditions
  (C-MAPSS FD002 has six), drops sensors that are constant within every condition, and returns a
  :class:`ConditionNormalizer` module holding every fitted statistic as a buffer, so the exported
  graph maps raw readings to model input by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from shopfloor.core.errors import DataError

from .histories import RUL, TIME, UNIT, SensorHistories, plain

DEFAULT_RUL_CAP = 125.0


def piecewise_rul(rul: np.ndarray, cap: float = DEFAULT_RUL_CAP) -> np.ndarray:
    """Piecewise-linear RUL target: constant ``cap`` early in life, then falling linearly to 0."""
    return np.minimum(np.asarray(rul, dtype=np.float64), cap)


def split_units(units, val_fraction: float, seed: int, block: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of unit ids into (train, validation); each unit lands on exactly one side.

    ``block`` k takes the k-th consecutive block of ``val_fraction`` of the units (of one seeded
    permutation, wrapping around) as validation, so blocks 0, 1, ... hold out different units until
    they wrap (more blocks than ``1 / val_fraction``), after which blocks overlap.
    """
    units = np.asarray(sorted(set(np.asarray(units).tolist())), dtype=object)
    if len(units) < 2:
        raise DataError(f"{len(units)} unit(s) cannot be split into training and validation; provide at least 2 units")
    n_val = min(max(1, int(round(val_fraction * len(units)))), len(units) - 1)
    order = np.random.default_rng(seed).permutation(len(units))
    held = np.zeros(len(units), dtype=bool)
    held[order[(block * n_val + np.arange(n_val)) % len(units)]] = True
    return units[~held], units[held]


@dataclass
class Windows:
    """Windows of raw input values ending at one time step each.

    ``x``: (n, window, features) float32; ``rul``: true RUL at the window's last step (NaN when unknown);
    ``unit``, ``end_time``: where each window ends; ``padded``: the unit was shorter than the window and
    its first reading was repeated in front.
    """

    x: np.ndarray
    rul: np.ndarray
    unit: np.ndarray
    end_time: np.ndarray
    padded: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def target(self, cap: float) -> np.ndarray:
        """The capped (piecewise-linear) training target, float32."""
        return piecewise_rul(self.rul, cap).astype(np.float32)


def pad_front(rows: np.ndarray, length: int) -> np.ndarray:
    """``rows`` with its first row repeated in front up to ``length`` rows (unchanged when long enough)."""
    return np.concatenate([np.repeat(rows[:1], max(length - len(rows), 0), axis=0), rows])


def make_windows(histories: SensorHistories, features: list[str], window: int, stride: int = 1,
                 last_n: int | None = None, short_units: Literal["error", "pad", "skip"] = "error",
                 baseline_rows: int = 0) -> Windows:
    """Sliding windows over each unit, ending at its last row and every ``stride`` rows before it.

    ``last_n`` keeps only the final ``last_n`` windows of each unit (``1``: the test protocol's last window).
    Units shorter than ``window``: ``error`` names them, ``pad`` repeats the unit's first reading in
    front, ``skip`` leaves them out. ``baseline_rows`` = k > 0 puts the unit's first k rows (its own
    early-life reference; the first reading repeated in front when the unit has fewer) ahead of every
    window: ``x`` is then (n, k + window, features).
    """
    if window < 1 or stride < 1:
        raise DataError(f"window ({window}) and stride ({stride}) must be at least 1")
    frame = histories.frame
    values = frame[features].to_numpy(dtype=np.float32)
    rul = frame[RUL].to_numpy(dtype=np.float64) if RUL in frame.columns else np.full(len(frame), np.nan)
    times = frame[TIME].to_numpy()
    unit_ids = frame[UNIT].to_numpy()
    starts = np.flatnonzero(np.r_[True, unit_ids[1:] != unit_ids[:-1]])
    ends = np.r_[starts[1:], len(frame)]
    short = [(plain(unit_ids[s]), e - s) for s, e in zip(starts, ends) if e - s < window]
    if short and short_units == "error":
        listed = ", ".join(f"{u!r} ({n} rows)" for u, n in short[:8])
        raise DataError(f"{histories.source}: {len(short)} unit(s) have fewer rows than the window of {window}: "
                        f"{listed}{' ...' if len(short) > 8 else ''}. Use a shorter --window, or --short-units pad "
                        "(repeat each such unit's first reading in front) or skip")
    xs, ys, us, ts, pads = [], [], [], [], []
    for s, e in zip(starts, ends):
        n = e - s
        if n < window and short_units == "skip":
            continue
        block = values[s:e]
        padded = n < window
        if padded:
            block = pad_front(block, window)
        last = len(block) - 1
        stops = list(range(last, window - 2, -stride))[::-1]
        if last_n:
            stops = stops[-last_n:]
        stops_arr = np.asarray(stops)
        view = np.lib.stride_tricks.sliding_window_view(block, window, axis=0)  # (n - window + 1, F, window)
        chosen = view[stops_arr - window + 1].transpose(0, 2, 1)
        if baseline_rows:
            # the unit's own first rows only (a unit shorter than the reference repeats its first reading;
            # it never borrows the next unit's rows)
            first = pad_front(values[s:min(s + baseline_rows, e)], baseline_rows)
            chosen = np.concatenate([np.broadcast_to(first, (len(chosen), *first.shape)), chosen], axis=1)
        xs.append(chosen)
        row = s + np.maximum(stops_arr - (len(block) - n), 0)  # row in the unpadded frame
        ys.append(rul[row])
        us.append(unit_ids[row])
        ts.append(times[row])
        pads.append(np.full(len(stops), padded))
    if not xs:
        raise DataError(f"{histories.source}: no unit is at least {window} rows long; use a shorter --window")
    return Windows(np.ascontiguousarray(np.concatenate(xs), dtype=np.float32), np.concatenate(ys),
                   np.concatenate(us), np.concatenate(ts), np.concatenate(pads))


# ----------------------------------------------------------------------------- operating conditions
def cluster_operating_conditions(settings: np.ndarray, n_conditions: int | Literal["auto"] = "auto",
                                 seed: int = 0, max_conditions: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cluster operating settings (rows x settings) into conditions with k-means on standardised settings.

    ``auto`` picks the k in 2..``max_conditions`` with the best silhouette, and one condition when no k
    separates the settings cleanly (silhouette below 0.8: settings that only jitter around one point).
    Returns (setting_mean, setting_scale, centers in standardised units).
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    settings = np.asarray(settings, dtype=np.float64)
    mean = settings.mean(axis=0)
    scale = settings.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    z = (settings - mean) / scale
    rng = np.random.default_rng(seed)
    sample = z[rng.choice(len(z), size=min(len(z), 4000), replace=False)]
    distinct = len(np.unique(np.round(sample, 6), axis=0))

    def kmeans(k: int) -> KMeans:
        return KMeans(n_clusters=k, n_init=4, random_state=seed).fit(sample)

    if n_conditions == "auto":
        best_k, best_score = 1, 0.8
        for k in range(2, min(max_conditions, distinct - 1) + 1):
            labels = kmeans(k).labels_
            if len(np.unique(labels)) < 2:
                continue
            score = silhouette_score(sample, labels, sample_size=min(len(sample), 2000), random_state=seed)
            if score > best_score:
                best_k, best_score = k, score
        k = best_k
    else:
        k = int(n_conditions)
        if k < 1:
            raise DataError(f"operating_conditions must be 'auto' or at least 1, not {n_conditions}")
        if k > distinct:
            raise DataError(f"{k} operating conditions asked for but the settings take only {distinct} distinct values")
    centers = np.zeros((1, settings.shape[1])) if k == 1 else kmeans(k).cluster_centers_
    return mean, scale, centers


def assign_conditions(settings: np.ndarray, mean: np.ndarray, scale: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest condition center for each row (numpy twin of the graph's assignment)."""
    z = (np.asarray(settings, dtype=np.float64) - mean) / scale
    return ((z[:, None, :] - centers[None]) ** 2).sum(-1).argmin(axis=1)


class ConditionNormalizer(nn.Module):
    """Raw window (batch, time, settings + sensors) -> sensors standardised per operating condition,
    (batch, time, sensors). Each time step is assigned to its nearest condition center; every fitted
    statistic is a buffer, so the exported ONNX graph carries it."""

    def __init__(self, n_settings: int, n_sensors: int, n_conditions: int = 1):
        super().__init__()
        self.n_settings = n_settings
        self.n_conditions = n_conditions
        self.register_buffer("setting_mean", torch.zeros(max(n_settings, 1)))
        self.register_buffer("setting_scale", torch.ones(max(n_settings, 1)))
        self.register_buffer("centers", torch.zeros(n_conditions, max(n_settings, 1)))
        self.register_buffer("sensor_mean", torch.zeros(n_conditions, n_sensors))
        self.register_buffer("sensor_std", torch.ones(n_conditions, n_sensors))

    def conditions(self, x: torch.Tensor) -> torch.Tensor:
        """Condition index per (batch, time) step."""
        if self.n_settings == 0 or self.n_conditions == 1:
            return torch.zeros(x.shape[:2], dtype=torch.long, device=x.device)
        z = (x[..., : self.n_settings] - self.setting_mean) / self.setting_scale
        distance = ((z.unsqueeze(-2) - self.centers) ** 2).sum(-1)  # (batch, time, conditions)
        return distance.argmin(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sensors = x[..., self.n_settings:]
        if self.n_conditions == 1:
            return (sensors - self.sensor_mean[0]) / self.sensor_std[0]
        k = self.conditions(x)
        return (sensors - self.sensor_mean[k]) / self.sensor_std[k]


@dataclass
class NormalizerFit:
    """A fitted normaliser and what fitting it found out."""

    module: ConditionNormalizer
    settings: list[str]
    sensors: list[str]
    dropped_sensors: list[str]
    condition_counts: list[int]

    @property
    def features(self) -> list[str]:
        return [*self.settings, *self.sensors]


def fit_condition_normalizer(histories: SensorHistories, n_conditions: int | Literal["auto"] = "auto",
                             seed: int = 0) -> NormalizerFit:
    """Fit operating conditions and per-condition sensor statistics on training ``histories``.

    Sensors with a single value inside every condition carry no information and are dropped (reported
    in ``dropped_sensors``); an error is raised if no sensor is left.
    """
    frame = histories.frame
    settings = list(histories.settings)
    if settings:
        s_mean, s_scale, centers = cluster_operating_conditions(frame[settings].to_numpy(), n_conditions, seed)
        labels = assign_conditions(frame[settings].to_numpy(), s_mean, s_scale, centers)
    else:
        if n_conditions not in ("auto", 1):
            raise DataError(f"{n_conditions} operating conditions asked for, but no --setting-columns were given")
        s_mean, s_scale, centers = np.zeros(1), np.ones(1), np.zeros((1, 1))
        labels = np.zeros(len(frame), dtype=int)
    k = len(centers)
    values = frame[histories.sensors].to_numpy(dtype=np.float64)
    means = np.stack([values[labels == c].mean(axis=0) for c in range(k)])
    stds = np.stack([values[labels == c].std(axis=0) for c in range(k)])
    spans = np.stack([np.ptp(values[labels == c], axis=0) for c in range(k)])
    constant = (spans <= 1e-9 * np.maximum(1.0, np.abs(means))).all(axis=0)
    dropped = [s for s, c in zip(histories.sensors, constant) if c]
    kept = ~constant
    if not kept.any():
        raise DataError(f"{histories.source}: every sensor is constant within each operating condition "
                        f"({histories.sensors}); there is nothing to learn from")
    means, stds = means[:, kept], stds[:, kept]
    floor = np.maximum(0.01 * np.median(stds, axis=0, keepdims=True), 1e-6)
    stds = np.maximum(stds, floor)
    module = ConditionNormalizer(len(settings), int(kept.sum()), k)
    module.setting_mean.copy_(torch.as_tensor(s_mean, dtype=torch.float32))
    module.setting_scale.copy_(torch.as_tensor(s_scale, dtype=torch.float32))
    module.centers.copy_(torch.as_tensor(centers, dtype=torch.float32))
    module.sensor_mean.copy_(torch.as_tensor(means, dtype=torch.float32))
    module.sensor_std.copy_(torch.as_tensor(stds, dtype=torch.float32))
    sensors = [s for s, c in zip(histories.sensors, constant) if not c]
    return NormalizerFit(module, settings, sensors, dropped, np.bincount(labels, minlength=k).tolist())


__all__ = ["ConditionNormalizer", "DEFAULT_RUL_CAP", "NormalizerFit", "Windows", "assign_conditions",
           "cluster_operating_conditions", "fit_condition_normalizer", "make_windows", "pad_front", "piecewise_rul",
           "split_units"]
