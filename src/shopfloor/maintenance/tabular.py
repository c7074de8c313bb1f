"""Tabular process records (AI4I 2020 and alike): reading, validation and the one shared encoder.

A table (CSV, UTF-8 with or without BOM, or Parquet) holds one record per row: feature columns,
a 0/1 target column and optionally 0/1 failure-mode columns. :func:`fit_schema` learns from the
training table which columns are numeric and which categorical (with their categories), drops
constant columns (and says so), and records the derived features and imputation values.
:func:`encode` is the one function that turns any table (training, evaluation, prediction) into
model inputs — numeric float64 values and categorical indices — and refuses unknown categories,
missing columns and NaN/inf (unless imputation was asked for). Derived features (``power = torque
* speed``), scaling and one-hot encoding happen inside the exported graph
(:class:`shopfloor.maintenance.failure_prediction.models.TabularFeatures`).
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import pandas as pd
from pydantic import Field

from shopfloor.core.config import StrictModel
from shopfloor.core.errors import DataError

TABLE_EXTENSIONS = (".csv", ".parquet", ".pq")
AI4I_MODES = ("TWF", "HDF", "PWF", "OSF", "RNF")
AI4I_ID_COLUMNS = ("UDI", "Product ID")
# What the AI4I failure rules depend on: mechanical power, heat-dissipation temperature gap, overstrain.
AI4I_DERIVED = (
    "power = Torque [Nm] * Rotational speed [rpm]",
    "temperature_difference = Process temperature [K] - Air temperature [K]",
    "strain = Tool wear [min] * Torque [Nm]",
)
# AI4I product quality variants, lowest first (their overstrain limits rise with quality).
AI4I_ORDINAL = {"Type": ("L", "M", "H")}
OPERATORS = ("*", "/", "-", "+")


class DerivedFeature(StrictModel):
    """A feature computed in the graph from two numeric columns: ``left op right``."""

    name: str
    left: str
    op: Literal["*", "/", "-", "+"]
    right: str

    def __str__(self) -> str:
        return f"{self.name} = {self.left} {self.op} {self.right}"


class TabularSchema(StrictModel):
    """What :func:`fit_schema` learned; stored in the artifact's state."""

    numeric: list[str]
    categorical: dict[str, list[str]] = Field(default_factory=dict)
    ordinal: list[str] = Field(default_factory=list, description="categorical columns whose categories are ordered")
    derived: list[DerivedFeature] = Field(default_factory=list)
    impute_values: dict[str, float | str] = Field(default_factory=dict)
    dropped_constant: list[str] = Field(default_factory=list)

    @property
    def feature_names(self) -> list[str]:
        """Names of the scaled numeric inputs of the graph: raw numeric columns then derived features."""
        return [*self.numeric, *(d.name for d in self.derived)]


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str = "column") -> None:
    """DataError naming every missing column and listing those present."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"missing {what}{'s' if len(missing) > 1 else ''} {missing}; the table has "
                        f"{list(frame.columns)}")


def parse_derived(spec: str, columns: Sequence[str]) -> DerivedFeature:
    """Parse ``"name = left op right"`` where left/right are column names (which may contain spaces)."""
    if "=" not in spec:
        raise DataError(f"derived feature {spec!r} must look like 'name = column_a * column_b' (ops: * / - +)")
    name, expression = (part.strip() for part in spec.split("=", 1))
    for i, char in enumerate(expression):
        if char in OPERATORS:
            left, right = expression[:i].strip(), expression[i + 1:].strip()
            if left in columns and right in columns:
                return DerivedFeature(name=name, left=left, op=char, right=right)  # type: ignore[arg-type]
    raise DataError(f"derived feature {spec!r}: could not split {expression!r} into two known numeric columns "
                    f"joined by one of {' '.join(OPERATORS)}; numeric columns are {list(columns)}")


def binary_column(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A 0/1 column as uint8, with a clear error for anything else."""
    require_columns(frame, [column])
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() | ~values.isin([0, 1])
    if bad.any():
        rows = [int(r) for r in np.flatnonzero(bad.to_numpy())[:5]]
        raise DataError(f"column {column!r} must hold only 0 and 1; rows {rows} do not (e.g. "
                        f"{frame[column].iloc[rows[0]]!r})")
    return values.to_numpy(dtype=np.uint8)


def fit_schema(frame: pd.DataFrame, exclude: Sequence[str], features: Sequence[str] | None = None,
               derived: Sequence[str] = (), impute: bool = False, max_categories: int = 50,
               ordinal: dict[str, Sequence[str]] | None = None) -> TabularSchema:
    """Learn the feature schema from the training table.

    ``features`` None means every column not in ``exclude``. Object/string/category columns are
    categorical, the rest numeric. Constant columns are dropped (listed in ``dropped_constant``).
    ``ordinal`` maps categorical columns to their categories in order, lowest first; every value the
    column holds must be listed, and the codes follow that order.
    """
    ordinal = dict(ordinal or {})
    columns = list(features) if features is not None else [c for c in frame.columns if c not in set(exclude)]
    require_columns(frame, columns, "feature column")
    if not columns:
        raise DataError("no feature columns left; name them with --features")
    numeric, categorical, dropped, impute_values = [], {}, [], {}
    for column in columns:
        series = frame[column]
        if series.dropna().nunique() <= 1:
            dropped.append(column)
            continue
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            numeric.append(column)
            if impute:
                impute_values[column] = float(series[np.isfinite(series)].median())
        else:
            categories = sorted(series.dropna().astype(str).unique().tolist())
            if column in ordinal:
                order = [str(c) for c in ordinal[column]]
                repeated = sorted({c for c in order if order.count(c) > 1})
                if repeated:
                    raise DataError(f"the ordinal order of {column!r} lists {repeated} more than once; list each "
                                    "category once, lowest first")
                unlisted = [c for c in categories if c not in order]
                if unlisted:
                    raise DataError(f"column {column!r} holds {unlisted}, which its ordinal order {order} does not "
                                    "list; add them to the order (lowest first) or drop the column from --ordinal")
                # categories absent from training stay unknown (refused at prediction), as for any category
                categories = [c for c in order if c in categories]
            if len(categories) > max_categories:
                raise DataError(f"column {column!r} has {len(categories)} distinct values, too many for a "
                                f"category (limit {max_categories}); it looks like an identifier: list it in "
                                "--id-columns, or raise --max-categories")
            categorical[column] = categories
            if impute:
                impute_values[column] = str(series.dropna().astype(str).mode().iloc[0])
    for column in ordinal:
        if column not in categorical:
            why = ("is numeric, so already ordered" if column in numeric
                   else "is constant, so it was dropped" if column in dropped
                   else "is not a feature column (see --features, --id-columns)")
            raise DataError(f"--ordinal names {column!r}, which {why}; remove it from --ordinal. The categorical "
                            f"feature columns are {list(categorical)}")
    derived_features = [parse_derived(spec, numeric) for spec in derived]
    return TabularSchema(numeric=numeric, categorical=categorical, ordinal=[c for c in categorical if c in ordinal],
                         derived=derived_features, impute_values=impute_values, dropped_constant=dropped)


def encode(frame: pd.DataFrame, schema: TabularSchema) -> tuple[np.ndarray, np.ndarray]:
    """The one shared encoder: (numeric float64 (n, n_numeric), categorical int64 (n, n_categorical)).

    Missing columns, non-numeric values in numeric columns, NaN/inf (unless imputation values were
    fitted) and categories unseen in training are DataErrors naming the column and rows.
    """
    require_columns(frame, [*schema.numeric, *schema.categorical], "feature column")
    numeric = np.zeros((len(frame), len(schema.numeric)), dtype=np.float64)
    for j, column in enumerate(schema.numeric):
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64, copy=True)
        text_bad = frame[column].notna().to_numpy() & np.isnan(values)
        if text_bad.any():
            rows = [int(r) for r in np.flatnonzero(text_bad)[:5]]
            raise DataError(f"column {column!r} must be numeric; rows {rows} hold e.g. {frame[column].iloc[rows[0]]!r}")
        bad = ~np.isfinite(values)
        if bad.any():
            if column not in schema.impute_values:
                rows = [int(r) for r in np.flatnonzero(bad)[:5]]
                raise DataError(f"column {column!r} has {int(bad.sum())} missing or infinite values (rows {rows}); "
                                "clean them or train with --impute to fill them with the training median")
            values[bad] = float(schema.impute_values[column])
        numeric[:, j] = values
    categorical = np.zeros((len(frame), len(schema.categorical)), dtype=np.int64)
    for j, (column, categories) in enumerate(schema.categorical.items()):
        series = frame[column]
        missing = series.isna().to_numpy()
        if missing.any():
            if column not in schema.impute_values:
                rows = [int(r) for r in np.flatnonzero(missing)[:5]]
                raise DataError(f"column {column!r} has {int(missing.sum())} missing values (rows {rows}); clean "
                                "them or train with --impute to fill them with the most frequent category")
            series = series.fillna(schema.impute_values[column])
        index = {c: i for i, c in enumerate(categories)}
        codes = series.astype(str).map(index)
        unknown = codes.isna().to_numpy()
        if unknown.any():
            values = sorted(series[unknown].astype(str).unique().tolist())[:5]
            raise DataError(f"column {column!r} holds categories never seen in training: {values}; the model knows "
                            f"{categories}. Map them to a known category or retrain with them")
        categorical[:, j] = codes.to_numpy(dtype=np.int64)
    return numeric, categorical
