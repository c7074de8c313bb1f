"""Fitting the monitoring graph on normal operation: split, windows, PCA, control limits.

- :func:`split_normal`: each contiguous stretch of normal rows is cut in time; its early part fits the models, its
  late part (``holdout``) is never fitted on and sets the control limits, so the limits see the error the models
  make on normal data they did not learn.
- :func:`crossfit_folds`: cross-fitting in time: each normal stretch is cut into ``k`` contiguous blocks; fold ``i``
  fits on every other block and scores block ``i``, so every normal sample gets an out-of-fold statistic from a
  model that never saw it (the limits then use all the normal data, not a small late share).
- :func:`control_limit`: the (1 - rate) limit of a statistic from its out-of-fold (or held-out) values, by rule:
  ``box``: the quantile of Box's scaled chi-square g·χ²(h) matched to their mean and variance (the classic SPE
  approximation; it extrapolates the tail smoothly); ``empirical``: the finite-sample (conformal) order statistic
  ceil((n + 1)(1 - rate)) of n values (Box beyond the largest); ``bootstrap``: an upper confidence bound
  (``confidence``) of the Box quantile over a moving-block bootstrap whose block length follows the statistic's lag-1
  autocorrelation, so a short or strongly autocorrelated calibration set (few independent samples) gets a limit
  that allows for what it has not seen.
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


def crossfit_folds(segments: list[Segment], k: int, window: int) -> list[tuple[list[Segment], list[Segment]]]:
    """``k`` (fit, held) pairs: each segment long enough is cut into ``k`` contiguous blocks; fold ``i`` holds block
    ``i`` of every segment out and fits on the rest (the pieces before and after it stay separate segments, so no
    window spans the gap). Segments too short for ``k`` blocks of ``window + 1`` rows are fitted on in every fold."""
    folds: list[tuple[list[Segment], list[Segment]]] = [([], []) for _ in range(k)]
    for seg in segments:
        if len(seg.rows) < k * (window + 1):
            for fit, _ in folds:
                fit.append(seg)
            continue
        blocks = np.array_split(seg.rows, k)
        for i, (fit, held) in enumerate(folds):
            held.append(Segment(seg.run, blocks[i]))
            for piece in (np.concatenate(blocks[:i]) if i else None, np.concatenate(blocks[i + 1:]) if i < k - 1
                          else None):
                if piece is not None and len(piece):
                    fit.append(Segment(seg.run, piece))
    return folds


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


LIMIT_RULES = ("bootstrap", "box", "empirical")


def box_limit(values: np.ndarray, rate: float) -> float:
    """The (1 - ``rate``) quantile of Box's g·χ²(h) matched to the mean and variance of a positive statistic."""
    values = np.asarray(values, dtype=np.float64)
    mean, var = float(values.mean()), float(values.var())
    if mean <= 0 or var <= 0:
        return float(max(values.max(), 1e-12))
    g, h = var / (2 * mean), 2 * mean ** 2 / var
    return float(g * stats.chi2.ppf(1 - rate, h))


def empirical_limit(values: np.ndarray, rate: float) -> float:
    """The conformal order statistic ceil((n + 1)(1 - ``rate``)) of n values; Box's quantile when that is beyond
    the largest value (too few values for the rate)."""
    values = np.sort(np.asarray(values, dtype=np.float64))
    rank = int(np.ceil((len(values) + 1) * (1 - rate)))
    return float(values[rank - 1]) if rank <= len(values) else max(box_limit(values, rate), float(values[-1]))


def block_length(values: np.ndarray) -> int:
    """Moving-block length (1 + rho) / (1 - rho) from the lag-1 autocorrelation rho (clipped to [0, 0.95])."""
    x = np.asarray(values, dtype=np.float64) - np.mean(values)
    denominator = float((x * x).sum())
    rho = float((x[1:] * x[:-1]).sum() / denominator) if denominator > 0 else 0.0
    rho = min(max(rho, 0.0), 0.95)
    return max(1, int(round((1 + rho) / (1 - rho))))


def bootstrap_limit(values: np.ndarray, rate: float, confidence: float = 0.9, replicates: int = 300,
                    seed: int = 0) -> float:
    """The ``confidence`` quantile of Box's (1 - ``rate``) limit over moving-block bootstrap replicates of
    ``values`` (in time order)."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    length = min(block_length(values), max(1, n // 2))
    rng = np.random.default_rng(seed)
    n_blocks = int(np.ceil(n / length))
    limits = []
    for _ in range(replicates):
        starts = rng.integers(0, n - length + 1, n_blocks)
        sample = values[(starts[:, None] + np.arange(length)).ravel()[:n]]
        limits.append(box_limit(sample, rate))
    return float(np.quantile(limits, confidence))


def control_limit(values: np.ndarray, rate: float, rule: str = "box", confidence: float = 0.9) -> float:
    """The (1 - ``rate``) control limit of a non-negative statistic from its held-out values by ``rule`` (see the
    module docstring)."""
    if rule == "box":
        return box_limit(values, rate)
    if rule == "empirical":
        return empirical_limit(values, rate)
    if rule == "bootstrap":
        return bootstrap_limit(values, rate, confidence)
    raise ValueError(f"unknown limit rule {rule!r}; choose one of {LIMIT_RULES}")


def contiguous_runs(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row positions of each run, in order."""
    return {str(k): v for k, v in frame.groupby(RUN, sort=False).indices.items()}


__all__ = ["LIMIT_RULES", "Segment", "block_length", "bootstrap_limit", "box_limit", "contiguous_runs",
           "control_limit", "crossfit_folds", "empirical_limit", "fit_pca", "normal_segments", "run_windows",
           "segment_windows", "split_normal"]
