"""Checks on columns and per-item values: constant, drifting and mostly-missing columns, duplicate and conflicting
rows (tables and sensor data), and robust outliers of a per-item value (blur, exposure of images).

Drift compares the first and last quarter of the records in their order (or sorted by the time column): the
difference of the means in pooled standard deviations (a standardised mean difference). Outliers use the median
and the median absolute deviation (robust z = 0.6745 (x - median) / MAD), so a few extreme items do not hide
themselves by inflating the spread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MOSTLY_MISSING = 0.5  # a column with more than this share of missing values
DRIFT_SMD = 1.0  # first vs last quarter differ by more than this many pooled standard deviations
ROBUST_Z = 3.5  # |robust z| above this is an outlier (Iglewicz and Hoaglin)


@dataclass(frozen=True)
class ColumnIssue:
    """One column with a problem: ``kind`` constant | mostly_missing | drifting, and the numbers."""

    column: str
    kind: str
    detail: dict[str, Any]


def column_issues(frame: Any, time_column: str | None = None) -> list[ColumnIssue]:
    """Constant, mostly-missing and drifting columns of a pandas DataFrame (records in order, or sorted by
    ``time_column``)."""
    import pandas as pd

    if time_column is not None and time_column in frame.columns:
        frame = frame.sort_values(time_column, kind="stable")
    issues: list[ColumnIssue] = []
    n = len(frame)
    for column in frame.columns:
        if column == time_column:
            continue
        values = frame[column]
        missing = float(values.isna().mean()) if n else 0.0
        if missing > MOSTLY_MISSING:
            issues.append(ColumnIssue(str(column), "mostly_missing", {"missing_fraction": round(missing, 4)}))
        present = values.dropna()
        if len(present) and present.nunique() == 1:
            issues.append(ColumnIssue(str(column), "constant", {"value": _plain(present.iloc[0]),
                                                                "missing_fraction": round(missing, 4)}))
            continue
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            drift = drift_score(values.to_numpy(dtype=np.float64))
            if drift is not None and abs(drift["smd"]) > DRIFT_SMD:
                issues.append(ColumnIssue(str(column), "drifting", drift))
    return issues


def drift_score(values: np.ndarray) -> dict[str, float] | None:
    """Standardised mean difference of the last vs the first quarter of ``values`` (missing values left out);
    None with fewer than 8 values per quarter or no spread."""
    quarter = len(values) // 4
    first, last = values[:quarter], values[len(values) - quarter:]
    first, last = first[np.isfinite(first)], last[np.isfinite(last)]
    if min(len(first), len(last)) < 8:
        return None
    pooled = np.sqrt((first.var(ddof=1) + last.var(ddof=1)) / 2)
    if not np.isfinite(pooled) or pooled <= 1e-12 * max(1.0, abs(first.mean())):
        return None
    return {"smd": float((last.mean() - first.mean()) / pooled), "first_quarter_mean": float(first.mean()),
            "last_quarter_mean": float(last.mean())}


def duplicate_rows(frame: Any, labels: np.ndarray | None = None) -> tuple[list[list[int]], list[list[int]]]:
    """Groups of records (positions) with identical values in every column, and among them the groups whose
    ``labels`` differ (conflicting labels for the same input)."""
    import pandas as pd

    if len(frame) == 0 or not len(frame.columns):
        return [], []
    keys = pd.util.hash_pandas_object(frame, index=False).to_numpy()  # 64-bit row hashes (missing values too)
    groups: dict[int, list[int]] = {}
    for i, key in enumerate(keys.tolist()):
        groups.setdefault(key, []).append(i)
    dup = [g for g in groups.values() if len(g) > 1]
    conflicting = [g for g in dup if labels is not None and len({int(labels[i]) for i in g}) > 1]
    return dup, conflicting


def robust_z(values: np.ndarray) -> np.ndarray:
    """0.6745 (x - median) / MAD per value (0 where the MAD is 0 and x equals the median; NaN stays NaN)."""
    x = np.asarray(values, dtype=np.float64)
    finite = x[np.isfinite(x)]
    if not len(finite):
        return np.full_like(x, np.nan)
    median = np.median(finite)
    mad = np.median(np.abs(finite - median))
    if mad <= 0:
        mad = np.mean(np.abs(finite - median)) * 1.2533 or 1.0  # mean absolute deviation fallback
    return 0.6745 * (x - median) / mad


def outliers(values: np.ndarray, side: str = "both", threshold: float = ROBUST_Z) -> np.ndarray:
    """Indices whose robust z is beyond ``threshold`` on ``side`` (low | high | both), most extreme first."""
    z = robust_z(values)
    hit = {"low": z < -threshold, "high": z > threshold, "both": np.abs(z) > threshold}[side]
    idx = np.flatnonzero(np.nan_to_num(hit, nan=False))
    return idx[np.argsort(-np.abs(z[idx]))]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
