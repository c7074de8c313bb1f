"""Fitting the monitoring graph on normal operation: split, windows, PCA, control limits.

- :func:`split_normal`: each contiguous stretch of normal rows is cut in time; its early part fits the models, its
  late part (``holdout``) is never fitted on and sets the control limits, so the limits see the error the models
  make on normal data they did not learn.
- :func:`control_limit`: the (1 - rate) quantile of a statistic's held-out values, from Box's scaled chi-square
  g·χ²(h) matched to their mean and variance (the classic SPE approximation; it extrapolates the tail smoothly
  where a few hundred held-out samples cannot give a 1% empirical quantile).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ..records import LABEL, NORMAL, RUN, ProcessRecords


@dataclass
class Segment:
    """A contiguous stretch of one run: its row positions in the records' frame."""

    run: str
    rows: np.ndarray


def normal_segments(records: ProcessRecords) -> list[Segment]:
    """Contiguous stretches of normal rows, per run (all rows of each run when unlabelled)."""
    frame = records.frame
    normal = (frame[LABEL] == NORMAL).to_numpy() if records.has_labels else np.ones(len(frame), dtype=bool)
    segments = []
    for run, rows in frame.groupby(RUN, sort=False).indices.items():
        mask = normal[rows]
        breaks = np.flatnonzero(np.diff(mask.astype(int)) != 0) + 1
        for block in np.split(np.arange(len(rows)), breaks):
            if len(block) and mask[block[0]]:
                segments.append(Segment(str(run), rows[block]))
    return segments


def split_normal(segments: list[Segment], holdout: float, window: int) -> tuple[list[Segment], list[Segment]]:
    """Fit and hold-out parts: the last ``holdout`` share of each segment (at least one window long) is held out."""
    fit, held = [], []
    for seg in segments:
        n_held = max(int(round(len(seg.rows) * holdout)), window + 1)
        if len(seg.rows) - n_held < window + 1:  # too short to split: the whole segment goes to one side
            (held if len(held) < len(fit) else fit).append(seg)
            continue
        fit.append(Segment(seg.run, seg.rows[:-n_held]))
        held.append(Segment(seg.run, seg.rows[-n_held:]))
    return fit, held


def segment_windows(values: np.ndarray, segments: list[Segment], window: int, stride: int = 1) -> np.ndarray:
    """Sliding windows (n, window, variables) inside each segment, never across two."""
    parts = []
    for seg in segments:
        if len(seg.rows) < window:
            continue
        block = values[seg.rows]
        view = np.lib.stride_tricks.sliding_window_view(block, window, axis=0)[::stride]
        parts.append(np.ascontiguousarray(view.transpose(0, 2, 1)))
    if not parts:
        return np.zeros((0, window, values.shape[1]), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32)


def run_windows(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """A window ending at every row of one run (rows before the first full window repeat the run's first row):
    (n_rows, window, variables) and a flag per row telling which windows were padded."""
    n = len(values)
    if n < window:
        pad = np.repeat(values[:1], window - n, axis=0)
        values = np.concatenate([pad, values])
    else:
        pad = np.repeat(values[:1], window - 1, axis=0)
        values = np.concatenate([pad, values])
    view = np.lib.stride_tricks.sliding_window_view(values, window, axis=0).transpose(0, 2, 1)
    padded = np.arange(len(view)) < window - 1
    return np.ascontiguousarray(view[-n:], dtype=np.float32), padded[-n:]


def fit_pca(z: np.ndarray, variance: float, max_components: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Loadings (variables, k) and eigenvalues (k) of standardised data, k the fewest components that explain
    ``variance`` of it."""
    cov = np.cov(z, rowvar=False)
    eigenvalues, vectors = np.linalg.eigh(cov)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, vectors = np.maximum(eigenvalues[order], 1e-9), vectors[:, order]
    explained = np.cumsum(eigenvalues) / eigenvalues.sum()
    k = int(np.searchsorted(explained, variance) + 1)
    k = min(k, max_components or len(eigenvalues), len(eigenvalues) - 1) if len(eigenvalues) > 1 else 1
    return vectors[:, :k].astype(np.float32), eigenvalues[:k].astype(np.float32)


def control_limit(values: np.ndarray, rate: float) -> float:
    """The (1 - ``rate``) quantile of a non-negative statistic from Box's g·χ²(h) fitted to its held-out values."""
    values = np.asarray(values, dtype=np.float64)
    mean, var = float(values.mean()), float(values.var())
    if mean <= 0 or var <= 0:
        return float(max(values.max(), 1e-12))
    g, h = var / (2 * mean), 2 * mean ** 2 / var
    return float(g * stats.chi2.ppf(1 - rate, h))


def empirical_limit(values: np.ndarray, rate: float) -> float:
    """The plain (1 - ``rate``) empirical quantile (for comparison; see :func:`control_limit`)."""
    return float(np.quantile(np.asarray(values, dtype=np.float64), 1 - rate))


def contiguous_runs(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row positions of each run, in order."""
    return {str(k): v for k, v in frame.groupby(RUN, sort=False).indices.items()}


__all__ = ["Segment", "contiguous_runs", "control_limit", "empirical_limit", "fit_pca", "normal_segments",
           "run_windows", "segment_windows", "split_normal"]
