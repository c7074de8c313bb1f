"""The process table of ``process-optimisation``: reading, validation at the edge, and the one encoder.

A table holds one record per row: **settings** (what the operator controls: numbers, optionally on machine steps),
**context** (fixed for a job: material, geometry, machine; numbers or categories), one or more quality **results**
(numbers, or classes) and optionally a **group** column naming the job (part number, geometry), which
cross-validation keeps together. :func:`fit_schema` checks the table and lists every problem in one
:class:`DataError`: missing columns, a result also named as a setting or context (leakage) or a setting that is
nearly a copy of a result, constant columns, text in a setting, missing values, too few rows for the number of
inputs, classes with one record. :func:`encode_inputs` turns any table (training, evaluation, prediction,
candidate settings) into the graph's inputs: ``numeric`` (settings then numeric context, float32) and
``categorical`` (category codes of the categorical context, int64), refusing unknown categories.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from pydantic import Field

from shopfloor.core.config import StrictModel
from shopfloor.core.errors import DataError

ROWS_PER_INPUT = 5  # fewer training rows than this per model input is refused
MIN_ROWS = 20
MAX_LEVELS = 8  # a setting with at most this many distinct values is treated as discrete levels (a DoE)
MAX_CLASS_LEVELS = 10  # an integer result with at most this many values is read as classes (auto)
LEAKAGE_CORRELATION = 0.995  # a setting this rank-correlated with a result is a copy of it
MAX_LISTED = 12


class TableSpec(StrictModel):
    """Which columns are settings, context, results and the job group."""

    results: list[str] | None = Field(None, description="quality result columns (numbers or classes); required "
                                      "unless the table is the built-in simulator's")
    settings: list[str] | None = Field(None, description="controllable settings (numbers); default: every other "
                                       "numeric column not named as context, group or ignored")
    context: list[str] = Field(default_factory=list, description="columns fixed for a job (material, geometry, "
                               "machine): numbers or categories")
    group: str | None = Field(None, description="column naming the job/part; cross-validation keeps each group "
                              "together (default: the combination of categorical context values, if any)")
    ignore: list[str] = Field(default_factory=list, description="columns to leave out (ids, run numbers, "
                              "measurements that are not settings)")
    class_results: list[str] | None = Field(None, description="results to treat as classes; default: text "
                                            f"results and integer results with at most {MAX_CLASS_LEVELS} values")
    steps: dict[str, float] = Field(default_factory=dict, description="machine step of a setting (e.g. "
                                    "{hold_pressure: 10}); recommendations are rounded to it")


class ProcessSchema(StrictModel):
    """What :func:`fit_schema` learned; stored in the artifact's state."""

    settings: list[str]
    numeric_context: list[str] = Field(default_factory=list)
    categorical_context: dict[str, list[str]] = Field(default_factory=dict)
    regression: list[str] = Field(default_factory=list)
    classes: dict[str, list[str]] = Field(default_factory=dict)
    group: str | None = None
    levels: dict[str, list[float]] = Field(default_factory=dict, description="discrete settings and their values")
    steps: dict[str, float] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)

    @property
    def numeric(self) -> list[str]:
        """The ``numeric`` graph input's columns: settings, then numeric context."""
        return [*self.settings, *self.numeric_context]

    @property
    def inputs(self) -> list[str]:
        """Every input column of a row."""
        return [*self.numeric, *self.categorical_context]

    @property
    def context(self) -> list[str]:
        return [*self.numeric_context, *self.categorical_context]

    @property
    def results(self) -> list[str]:
        return [*self.regression, *self.classes]


def _listed(items: Sequence[Any], limit: int = MAX_LISTED) -> str:
    items = [str(i) for i in items]
    more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _as_class(series: pd.Series) -> bool:
    if not _is_numeric(series):
        return True
    values = series.dropna().to_numpy(dtype=np.float64)
    return bool(len(np.unique(values)) <= MAX_CLASS_LEVELS and np.all(values == np.round(values)))


def class_label(value: Any) -> str:
    """A class value as text (``3.0`` -> ``"3"``), the form class results are stored and matched in."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def fit_schema(frame: pd.DataFrame, spec: TableSpec, n_folds: int = 0) -> ProcessSchema:
    """Check the training table against ``spec`` and learn the schema; every problem in one :class:`DataError`."""
    problems: list[str] = []
    notes: list[str] = []
    columns = list(frame.columns)
    if spec.results is None:
        raise DataError("name the quality result column(s) with --results (e.g. --results warpage,part_weight); "
                        f"the table has: {_listed(columns, 30)}")
    named = {"result": spec.results, "context": spec.context, "ignored": spec.ignore,
             "setting": spec.settings or [], "group": [spec.group] if spec.group else []}
    for what, names in named.items():
        missing = [c for c in names if c not in frame.columns]
        if missing:
            problems.append(f"{what} column(s) {_listed(missing)} are not in the table (it has: {_listed(columns, 30)})")
    for what in ("setting", "context", "group"):
        leaked = [c for c in named[what] if c in spec.results]
        if leaked:
            problems.append(f"leakage: {_listed(leaked)} is a quality result and also named as {what}: a result is "
                            f"only known after the part is made; remove it from the {what} columns")
    if spec.group and (spec.group in named["setting"] or spec.group in spec.context):
        problems.append(f"the group column {spec.group!r} is also a setting or context column; the group names jobs, "
                        "it is not a model input (give the geometry/material as context columns instead)")
    if problems:
        raise DataError("the process table does not fit:\n  " + "\n  ".join(problems))
    taken = {*spec.results, *spec.context, *spec.ignore, *([spec.group] if spec.group else [])}
    explicit = spec.settings is not None
    settings = list(spec.settings) if explicit else [c for c in columns if c not in taken and _is_numeric(frame[c])]
    if not explicit:
        skipped = [c for c in columns if c not in taken and c not in settings]
        if skipped:
            notes.append(f"left out as text columns (not settings): {_listed(skipped)}; name categories as --context")
    text = [c for c in settings if not _is_numeric(frame[c])]
    if text:
        problems.append(f"setting(s) {_listed(text)} hold text; settings are numbers (a category such as the material "
                        "is context: pass it with --context)")
    used = [*settings, *spec.context, *spec.results]
    bad = {c: int(frame[c].isna().sum() + (np.isinf(frame[c]).sum() if _is_numeric(frame[c]) else 0))
           for c in used if c not in text}
    bad = {c: n for c, n in bad.items() if n}
    if bad:
        problems.append("missing or infinite values in " + _listed([f"{c} ({n} rows)" for c, n in bad.items()])
                        + ": drop or fill those rows before training")
    constant = [c for c in [*settings, *spec.context, *spec.results] if frame[c].nunique(dropna=True) <= 1]
    for c in constant:
        value = frame[c].dropna().iloc[0] if frame[c].notna().any() else "empty"
        if c in spec.results:
            problems.append(f"result {c!r} is constant ({value}) in all {len(frame)} rows: there is nothing to learn "
                            "or optimise; remove it from --results")
        elif c in settings and explicit:
            problems.append(f"setting {c!r} is constant ({value}) in all {len(frame)} rows: the data cannot tell its "
                            "effect; remove it from --settings or add records that vary it")
        else:
            notes.append(f"dropped constant column {c!r} (always {value})")
    if problems:
        raise DataError("the process table does not fit:\n  " + "\n  ".join(problems))
    settings = [c for c in settings if c not in constant]
    context = [c for c in spec.context if c not in constant]
    if not settings:
        raise DataError("no setting varies in this table: name the controllable columns with --settings")
    auto_classes = spec.class_results is None
    classes_named = [c for c in spec.results if _as_class(frame[c])] if auto_classes else list(spec.class_results)
    unknown = [c for c in classes_named if c not in spec.results]
    if unknown:
        problems.append(f"class result(s) {_listed(unknown)} are not among the results {_listed(spec.results)}")
    regression = [c for c in spec.results if c not in classes_named]
    text_results = [c for c in regression if not _is_numeric(frame[c])]
    if text_results:
        problems.append(f"result(s) {_listed(text_results)} hold text; name them in --class-results")
    classes: dict[str, list[str]] = {}
    for c in classes_named:
        labels = frame[c].map(class_label)
        counts = labels.value_counts()
        if (counts < 2).any():
            problems.append(f"class result {c!r}: class(es) {_listed(counts[counts < 2].index)} have a single record; "
                            "merge or drop them")
        classes[c] = sorted(counts.index, key=lambda v: (not _number(v), _number(v) or 0.0, v))
    if auto_classes and classes_named:
        notes.append(f"read as classes: {_listed(classes_named)} (set --class-results to change)")
    for s in settings:
        x = frame[s].rank().to_numpy()
        for r in regression:
            if _is_numeric(frame[r]):
                rho = abs(float(np.corrcoef(x, frame[r].rank().to_numpy())[0, 1]))
                if rho >= LEAKAGE_CORRELATION:
                    problems.append(f"leakage: setting {s!r} is a near copy of result {r!r} (rank correlation "
                                    f"{rho:.3f}); it is probably measured on the part: move it to --ignore")
    n_inputs = len(settings) + len(context)
    need = max(MIN_ROWS, ROWS_PER_INPUT * n_inputs)
    if len(frame) < need:
        problems.append(f"{len(frame)} rows are too few for {n_inputs} inputs ({len(settings)} settings, "
                        f"{len(context)} context): need at least {need} ({ROWS_PER_INPUT} per input, at least "
                        f"{MIN_ROWS}); add records or name fewer --settings")
    categorical = {c: sorted(map(str, frame[c].dropna().unique())) for c in context if not _is_numeric(frame[c])}
    group = spec.group or (None if not categorical else "+".join(categorical))
    if n_folds > 1 and spec.group:
        n_groups = frame[spec.group].nunique()
        if n_groups < n_folds:
            problems.append(f"the group column {spec.group!r} has {n_groups} groups, fewer than the {n_folds} "
                            "cross-validation folds: lower --cv-folds or name another group")
    unknown_steps = [c for c in spec.steps if c not in settings]
    if unknown_steps:
        problems.append(f"--steps names {_listed(unknown_steps)}, which are not settings ({_listed(settings)})")
    if problems:
        raise DataError("the process table does not fit:\n  " + "\n  ".join(problems))
    levels = {s: sorted(float(v) for v in frame[s].unique()) for s in settings
              if s not in spec.steps and frame[s].nunique() <= MAX_LEVELS}
    if levels:
        notes.append(f"discrete settings (recommended on their recorded levels): {_listed(levels)}")
    return ProcessSchema(settings=settings, numeric_context=[c for c in context if c not in categorical],
                         categorical_context=categorical, regression=regression, classes=classes, group=group,
                         levels=levels, steps=dict(spec.steps), notes=notes)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Refuse a table without ``columns``, naming them and what it has."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{what}: column(s) {_listed(missing)} are missing (the table has {_listed(frame.columns, 30)}); "
                        f"the model reads {_listed(columns, 30)}")


def encode_inputs(frame: pd.DataFrame, schema: ProcessSchema, what: str = "the table") -> tuple[np.ndarray, np.ndarray]:
    """The graph inputs of ``frame``: ``numeric`` float32 (n, settings + numeric context) and ``categorical``
    int64 codes (n, max(1, categorical context)); unknown categories, text and missing values are refused."""
    require_columns(frame, schema.inputs, what)
    numeric_frame = frame[schema.numeric]
    try:
        numeric = numeric_frame.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        text = [c for c in schema.numeric if not _is_numeric(frame[c])]
        raise DataError(f"{what}: column(s) {_listed(text)} must hold numbers") from None
    bad = ~np.isfinite(numeric)
    if bad.any():
        cols = [schema.numeric[j] for j in np.flatnonzero(bad.any(axis=0))]
        raise DataError(f"{what}: missing or infinite values in {_listed(cols)} ({int(bad.any(axis=1).sum())} rows); "
                        "fill or drop them")
    codes = np.zeros((len(frame), max(1, len(schema.categorical_context))), dtype=np.int64)
    for j, (column, categories) in enumerate(schema.categorical_context.items()):
        values = frame[column].astype(str)
        index = {c: i for i, c in enumerate(categories)}
        unknown = sorted(set(values) - set(index))
        if unknown:
            raise DataError(f"{what}: {column} {_listed(unknown)} was never seen in training (known: "
                            f"{_listed(categories)}); the model cannot predict for it")
        codes[:, j] = values.map(index).to_numpy()
    return numeric.astype(np.float32), codes


def encode_results(frame: pd.DataFrame, schema: ProcessSchema, what: str = "the table") -> np.ndarray:
    """Results as float32 (n, regression + class results): numbers as they are, classes as their index."""
    require_columns(frame, schema.results, what)
    columns = [frame[r].to_numpy(dtype=np.float64) for r in schema.regression]
    for name, labels in schema.classes.items():
        text = frame[name].map(class_label)
        unknown = sorted(set(text) - set(labels))
        if unknown:
            raise DataError(f"{what}: {name} holds class(es) {_listed(unknown)} the model was not trained on "
                            f"(known: {_listed(labels)})")
        columns.append(text.map({c: i for i, c in enumerate(labels)}).to_numpy(dtype=np.float64))
    out = np.stack(columns, axis=1)
    if not np.isfinite(out).all():
        raise DataError(f"{what}: missing or infinite result values; drop those rows before evaluating")
    return out.astype(np.float32)


def groups_of(frame: pd.DataFrame, schema: ProcessSchema) -> np.ndarray | None:
    """The job group of each row (its group column, or the combination of categorical context), or None."""
    if schema.group is None:
        return None
    if schema.group in frame.columns:
        return frame[schema.group].astype(str).to_numpy()
    parts = [frame[c].astype(str) for c in schema.categorical_context if c in frame.columns]
    if not parts:
        return None
    joined = parts[0]
    for p in parts[1:]:
        joined = joined + "+" + p
    return joined.to_numpy()
