"""Training ranges of a model's inputs, and the check that flags records far outside them.

Fit stores, per input column (a sensor, a signal channel's amplitude statistic, an image's intensity statistic),
the training minimum and maximum in the artifact's state. ``predict`` and ``evaluate`` then flag each record whose
value lies more than ``tolerance`` training ranges beyond them (a temperature in Celsius sent to a model trained
in Kelvin, a signal 1000x the training amplitude): the result rows carry ``out_of_range`` and
``out_of_range_columns``, a :class:`~shopfloor.core.errors.OutOfRangeWarning` names the records and columns, and
with ``strict`` the batch is refused with a :class:`~shopfloor.core.errors.DataError` instead.

>>> ranges = InputRanges.fit(np.array([[290.0, 1.0], [310.0, 3.0]]), ["temp_K", "load"])
>>> ranges.flag(np.array([[300.0, 2.0], [25.0, 2.0]]))
[[], ['temp_K']]
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .errors import DataError, OutOfRangeWarning

DEFAULT_TOLERANCE = 1.0  # training ranges beyond the training min/max before a value counts as far outside
MAX_LISTED = 10


@dataclass(frozen=True)
class InputRanges:
    """Per-column training minimum and maximum, and how far beyond them a value may go (``tolerance`` ranges)."""

    columns: list[str]
    low: list[float]
    high: list[float]
    tolerance: float = DEFAULT_TOLERANCE

    @classmethod
    def fit(cls, values: np.ndarray, columns: Sequence[str], tolerance: float = DEFAULT_TOLERANCE) -> "InputRanges":
        """Ranges of ``values`` (n_records, n_columns), NaN ignored."""
        values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
        if values.shape[1] != len(columns):
            raise ValueError(f"{values.shape[1]} value columns but {len(columns)} names")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column -> NaN limits, never flagged
            low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
        return cls(list(map(str, columns)), low.tolist(), high.tolist(), float(tolerance))

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> "InputRanges | None":
        """The ranges stored by :meth:`to_state`; ``None`` for models saved before ranges were stored."""
        return cls(**state) if state else None

    def to_state(self) -> dict[str, Any]:
        """JSON-able form for the artifact's state."""
        return {"columns": self.columns, "low": self.low, "high": self.high, "tolerance": self.tolerance}

    def limits(self) -> tuple[np.ndarray, np.ndarray]:
        """The accepted interval per column: the training range widened by ``tolerance`` ranges on each side
        (a constant training column gets a width of 1e-6 of its magnitude, so any real change is flagged)."""
        low, high = np.asarray(self.low, dtype=np.float64), np.asarray(self.high, dtype=np.float64)
        width = np.maximum(high - low, np.maximum(1e-6 * np.maximum(np.abs(low), np.abs(high)), 1e-12))
        return low - self.tolerance * width, high + self.tolerance * width

    def flag(self, values: np.ndarray) -> list[list[str]]:
        """Per record, the columns whose value lies outside :meth:`limits` (NaN is not flagged here)."""
        values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
        if values.shape[1] != len(self.columns):
            raise DataError(f"got {values.shape[1]} input columns, this model's ranges cover {len(self.columns)} "
                            f"({', '.join(self.columns[:MAX_LISTED])})")
        lower, upper = self.limits()
        outside = (values < lower) | (values > upper)
        return [[self.columns[j] for j in np.flatnonzero(row)] for row in outside]


def report_out_of_range(records: Sequence[str], flagged: Sequence[list[str]], ranges: InputRanges,
                        strict: bool = False) -> int:
    """Warn (or, with ``strict``, refuse) about the records with flagged columns; returns how many there are."""
    bad = [(name, cols) for name, cols in zip(records, flagged) if cols]
    if not bad:
        return 0
    lower, upper = ranges.limits()
    index = {c: i for i, c in enumerate(ranges.columns)}
    columns = sorted({c for _, cols in bad for c in cols}, key=index.__getitem__)
    spans = ", ".join(f"{c} (trained on {ranges.low[index[c]]:.4g}..{ranges.high[index[c]]:.4g})"
                      for c in columns[:MAX_LISTED])
    shown = "; ".join(f"{name}: {', '.join(cols[:MAX_LISTED])}" for name, cols in bad[:MAX_LISTED])
    more = f"; ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    message = (f"{len(bad)} of {len(flagged)} record(s) lie far outside the training range in {spans}: {shown}{more}. "
               "Check the units and scaling of these inputs (or retrain on data that covers them)")
    if strict:
        raise DataError(message + "; refused because strict checking is on")
    warnings.warn(message + ". Results for them are flagged out_of_range; strict checking refuses them.",
                  OutOfRangeWarning, stacklevel=3)
    return len(bad)
