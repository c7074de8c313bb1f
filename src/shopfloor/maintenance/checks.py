"""Input checks shared by the maintenance readers and tasks ("no silent wrong answers").

- :func:`id_like_columns`: numeric columns that look like identifiers rather than measurements (row ids, batch or
  serial numbers, a saved DataFrame index): a model fed with them learns the row order instead of the process.
  Each finding says whether it is refused (clearly an identifier) or only warned about (plausibly a feature).
- :func:`extreme_values`: one row of values per record from the per-record minimum and maximum, picking for each
  column the one farther outside the training range, so a record whose windows or segments go outside it anywhere
  is flagged by :meth:`shopfloor.core.ranges.InputRanges.flag`.
- :func:`list_items`: the short "a, b, c ... and 7 more" listing every message here uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from shopfloor.core.ranges import InputRanges

# words that make a column name an identifier (split on non-alphanumerics and camelCase, lowercased)
ID_TOKENS = frozenset({"id", "ids", "idx", "index", "row", "rowid", "rownum", "batch", "batchid", "serial", "sn",
                       "uuid", "guid", "udi", "unnamed", "record", "recordid", "lot", "key"})
# value rules (counter, monotonic through the table) need this many rows: on a handful of rows they fire by chance
MIN_ROWS_FOR_VALUE_RULES = 10
MAX_LISTED = 8


def list_items(items: Sequence, limit: int = MAX_LISTED) -> str:
    """``a, b, c`` (at most ``limit``), then ``... and N more``."""
    items = [str(i) for i in items]
    more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def name_tokens(name: str) -> list[str]:
    """Lowercase words of a column name: ``rowID`` -> [row, id]; ``Product ID`` -> [product, id]."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(name))
    return [t.lower() for t in re.split(r"[^A-Za-z0-9]+", spaced) if t]


def named_like_id(name: str) -> bool:
    """The column's name contains an identifier word (id, index, row, batch, serial, uuid, ...)."""
    return any(t in ID_TOKENS for t in name_tokens(name))


@dataclass(frozen=True)
class IdLike:
    """A column that looks like an identifier: why, and whether that is refused (else warned about)."""

    column: str
    reason: str
    refuse: bool


def _numeric(values: pd.Series) -> np.ndarray | None:
    if pd.api.types.is_bool_dtype(values):
        return None
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        converted = pd.to_numeric(values, errors="coerce")
        if converted.notna().sum() < 0.5 * max(values.notna().sum(), 1):
            return None
        numbers = converted.to_numpy(dtype=np.float64, na_value=np.nan)
    return numbers[np.isfinite(numbers)]


def id_like_columns(frame: pd.DataFrame, columns: Iterable[str]) -> list[IdLike]:
    """Which of the numeric ``columns`` look like identifiers (text columns are the readers' business).

    Refused: a counter (integer values, unique per row, strictly increasing or decreasing through the table), or a
    column named like an identifier whose values are unique per row. Warned about: a column named like an
    identifier whose values repeat (a batch number: maybe a real effect), or non-integer values strictly monotonic
    through the table (a time stamp, or a feature the table happens to be sorted by).
    """
    found = []
    for column in columns:
        values = _numeric(frame[column])
        if values is None or len(values) < 2:
            continue
        n = len(values)
        unique = len(np.unique(values)) == n
        steps = np.diff(values)
        monotonic = n >= MIN_ROWS_FOR_VALUE_RULES and (bool((steps > 0).all()) or bool((steps < 0).all()))
        integer = bool(np.all(values == np.round(values)))
        named = named_like_id(column)
        direction = "increasing" if steps[0] > 0 else "decreasing"
        if monotonic and integer:
            found.append(IdLike(column, f"integer values unique per row and {direction} through the table "
                                        "(a row counter)", True))
        elif named and unique and n >= 2:
            found.append(IdLike(column, "named like an identifier, with a different value in every row", True))
        elif named:
            found.append(IdLike(column, "named like an identifier (its values repeat, so it may be a real effect "
                                        "such as a batch)", False))
        elif monotonic:
            found.append(IdLike(column, f"values unique per row and {direction} through the whole table (a time "
                                        "stamp, or a feature the table is sorted by?)", False))
    return found


def describe_id_like(found: Sequence[IdLike]) -> str:
    """``'row_id' (a row counter); 'batch' (named like ...)``."""
    return "; ".join(f"{f.column!r} ({f.reason})" for f in found)


def extreme_values(low: np.ndarray, high: np.ndarray, ranges: InputRanges) -> np.ndarray:
    """Per record and column, whichever of its minimum (``low``) and maximum (``high``) lies farther outside the
    accepted limits of ``ranges``: flagging these rows flags a record when any of its values is far outside."""
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    lower, upper = ranges.limits()
    with np.errstate(invalid="ignore"):
        take_high = (high - upper) >= (lower - low)
    return np.where(take_high, high, low)


__all__ = ["ID_TOKENS", "IdLike", "describe_id_like", "extreme_values", "id_like_columns", "list_items",
           "name_tokens", "named_like_id"]
