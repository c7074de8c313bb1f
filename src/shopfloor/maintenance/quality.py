"""What `shopfloor check` needs from tables and sensor records: the input columns (constant, drifting, mostly
missing, duplicate rows are checked on them in :mod:`shopfloor.core.quality`), the label column, and a numeric
encoding of each record for the out-of-fold label check (standardised numbers, missing values at the median,
one-hot categories)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from shopfloor.core.errors import DataError
from shopfloor.core.quality import QualityData

from shopfloor.core.tables import read_table

MAX_ONE_HOT = 50  # text columns with more categories are left out of the encoding (identifiers)


def encode_records(frame: pd.DataFrame) -> np.ndarray:
    """One numeric row per record: numeric columns standardised (missing: the median), text columns one-hot."""
    parts = []
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values):
            x = values.to_numpy(dtype=np.float64)
            x = np.where(np.isfinite(x), x, np.nanmedian(x) if np.isfinite(x).any() else 0.0)
            parts.append(((x - x.mean()) / (x.std() or 1.0))[:, None])
        elif values.nunique() <= MAX_ONE_HOT:
            parts.append(pd.get_dummies(values.astype(str)).to_numpy(dtype=np.float64))
    return np.hstack(parts) if parts else np.zeros((len(frame), 0))


def table_quality_data(source: str | Path | pd.DataFrame, label_column: str | None = None,
                       exclude: Sequence[str] = (), time_column: str | None = None) -> QualityData:
    """A table (CSV/Parquet path or DataFrame) as the generic check sees it: the input columns (all but the label
    and ``exclude``), the label as classes, records named ``row N`` (0-based, in file order)."""
    frame = read_table(source)
    if label_column is not None and label_column not in frame.columns:
        raise DataError(f"the label column {label_column!r} is not in the table (columns: {list(frame.columns)[:12]})"
                        "; name it with --target or check the file")
    if time_column is not None and time_column not in frame.columns:
        raise DataError(f"the time column {time_column!r} is not in the table")
    inputs = [c for c in frame.columns if c != label_column and c not in set(exclude)]
    labels, classes = None, []
    if label_column is not None:
        target = frame[label_column]
        if target.isna().any():
            raise DataError(f"label column {label_column!r} has {int(target.isna().sum())} missing value(s); fill or "
                            "drop those records")
        classes = sorted(target.astype(str).unique().tolist())
        labels = np.asarray([classes.index(v) for v in target.astype(str)])
    table = frame[inputs]
    encoded = encode_records(table.drop(columns=[time_column] if time_column else []))
    return QualityData(kind="table", names=[f"row {i}" for i in range(len(frame))], labels=labels, classes=classes,
                       embeddings=encoded if encoded.shape[1] else None, table=table, time_column=time_column,
                       notes=[f"{len(inputs)} input column(s); label column: {label_column or 'none'}; left out: "
                              f"{[c for c in exclude if c in frame.columns]}"])


def failure_table_quality_data(config: Any, data: Any) -> QualityData:
    """A failure-prediction table: the target as label, failure-mode and identifier columns left out."""
    frame = read_table(data)
    modes = config.failure_modes if config.failure_modes is not None else [
        m for m in ("TWF", "HDF", "PWF", "OSF", "RNF") if m in frame.columns]
    return table_quality_data(frame, config.target, [*modes, *config.id_columns])
