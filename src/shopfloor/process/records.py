"""Multivariate process records in time order: read, check and label them.

One row per sample; columns are measurements and manipulated variables, plus optional ``run`` (one continuous
record of the process: a batch, a day, a simulation), ``time`` (increasing within a run) and a fault ``label``
column (the normal label, or the fault a row belongs to; in a faulty run the rows before the onset are normal).

Accepted inputs: a CSV/Parquet file or a ``pandas.DataFrame``; a Tennessee Eastman (Braatz) ``dNN.dat`` /
``dNN_te.dat`` file or a folder of them (``split="train"`` reads the ``dNN.dat`` runs, ``"test"`` the
``dNN_te.dat`` runs; a test run is normal for its first ``tep_onset`` samples, then carries fault ``NN``).

Every problem is a :class:`DataError` that says what was expected, what was found and the fix: missing or
non-numeric columns, NaN, time not increasing within a run, too few rows. Soft problems (no run/time column)
are kept in ``notes``.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd
from pydantic import Field

from shopfloor.core.config import StrictModel
from shopfloor.core.errors import DataError

RUN, TIME, LABEL = "run", "time", "label"  # canonical names inside ProcessRecords.frame
TEP_FILE = re.compile(r"^d(\d\d)(_te)?\.dat(\.gz)?$")
TEP_VARIABLES = [f"XMEAS_{i}" for i in range(1, 42)] + [f"XMV_{i}" for i in range(1, 12)]
TEP_UNOBSERVABLE = ("fault_03", "fault_09", "fault_15")  # Chiang, Russell and Braatz (2001): not detectable
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
MAX_LISTED = 12


class ProcessSpec(StrictModel):
    """Which columns of a process table are what."""

    variable_columns: list[str] | None = Field(
        None, description="the process variables to monitor, in order (default: every numeric column besides "
        "run, time and label)")
    ignore_columns: list[str] = Field(default_factory=list, description="columns never used as variables")
    run_column: str = Field("run", description="run id column (optional: one run when absent)")
    time_column: str = Field("time", description="time column, increasing within a run (optional: row order)")
    label_column: str = Field("fault", description="fault label column (optional; needed by evaluate)")
    normal_label: str = Field("normal", description="the label value of normal operation (0 is accepted too)")
    tep_onset: int = Field(160, ge=0, description="TEP test runs (dNN_te.dat): samples before the fault onset")


@dataclass
class ProcessRecords:
    """Checked process records: ``frame`` holds ``run``, ``time``, the ``variables`` and, when labelled, ``label``
    (strings; ``normal`` for normal operation), sorted by run then time."""

    frame: pd.DataFrame
    variables: list[str]
    source: str
    has_labels: bool
    unobservable: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def runs(self) -> list[Any]:
        return list(pd.unique(self.frame[RUN]))

    def run_frames(self) -> list[tuple[Any, pd.DataFrame]]:
        """(run id, its rows) in order of appearance."""
        return [(run, rows) for run, rows in self.frame.groupby(RUN, sort=False)]

    def values(self, variables: Sequence[str] | None = None) -> np.ndarray:
        return self.frame[list(variables or self.variables)].to_numpy(dtype=np.float32)

    def normal(self) -> "ProcessRecords":
        """Only the rows of normal operation (all rows when unlabelled)."""
        if not self.has_labels:
            return self
        return ProcessRecords(self.frame[self.frame[LABEL] == NORMAL].reset_index(drop=True), self.variables,
                              self.source, True, self.unobservable, self.notes)

    @property
    def faults(self) -> list[str]:
        """The fault labels present, sorted."""
        if not self.has_labels:
            return []
        return sorted(set(self.frame[LABEL]) - {NORMAL})


NORMAL = "normal"


def _listed(items: Sequence[Any], n: int = MAX_LISTED) -> str:
    shown = ", ".join(repr(i) for i in list(items)[:n])
    return shown + (f" ... ({len(items)} in all)" if len(items) > n else "")


# ----------------------------------------------------------------------------- Tennessee Eastman
def read_tep_file(path: Path, onset: int) -> pd.DataFrame:
    """One Braatz TEP file as a frame: the 52 variables, ``run`` (file stem), ``time`` (1..n), ``label``."""
    match = TEP_FILE.match(path.name)
    if match is None:
        raise DataError(f"{path}: not a Tennessee Eastman file name (expected dNN.dat or dNN_te.dat, optionally .gz)")
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt") as fh:
            values = np.loadtxt(fh, dtype=np.float64, ndmin=2)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: cannot read it as a whitespace-separated number table ({exc}); restore the "
                        "file from the Braatz set") from exc
    if values.shape[0] == len(TEP_VARIABLES) and values.shape[1] != len(TEP_VARIABLES):
        values = values.T  # d00.dat is stored transposed
    if values.shape[1] != len(TEP_VARIABLES):
        raise DataError(f"{path}: got {values.shape[1]} columns, a TEP file has {len(TEP_VARIABLES)} "
                        "(XMEAS 1-41, XMV 1-11)")
    fault, test = int(match.group(1)), bool(match.group(2))
    frame = pd.DataFrame(values, columns=TEP_VARIABLES)
    label = NORMAL if fault == 0 else f"fault_{fault:02d}"
    labels = np.full(len(frame), label, dtype=object)
    if test and fault:
        labels[:onset] = NORMAL
    frame.insert(0, LABEL, labels)
    frame.insert(0, TIME, np.arange(1, len(frame) + 1, dtype=np.float64))
    frame.insert(0, RUN, path.name.split(".")[0])
    return frame


def tep_files(folder: Path, split: str) -> list[Path]:
    """The TEP files of ``split`` in ``folder``, ordered by fault number."""
    files = [p for p in folder.iterdir() if TEP_FILE.match(p.name)]
    chosen = [p for p in files if bool(TEP_FILE.match(p.name).group(2)) == (split == "test")]
    return sorted(chosen, key=lambda p: p.name)


# ----------------------------------------------------------------------------- tables
def _read_table(data: Any, spec: ProcessSpec, split: str) -> tuple[pd.DataFrame, str, list[str]]:
    """The raw frame, its name for messages and the TEP unobservable faults (for TEP input)."""
    if isinstance(data, ProcessRecords):
        return data.frame, data.source, list(data.unobservable)
    if isinstance(data, pd.DataFrame):
        return data, "<DataFrame>", []
    if not isinstance(data, (str, Path)):
        raise DataError(f"process records must be a CSV/Parquet/TEP .dat path, a folder of TEP files or a "
                        f"DataFrame, got {type(data).__name__}")
    path = Path(data)
    if not path.exists():
        raise DataError(f"{path} does not exist: give a CSV/Parquet file, a TEP dNN.dat file or a folder of them")
    if path.is_dir():
        files = tep_files(path, split)
        if not files:
            kind = "dNN_te.dat" if split == "test" else "dNN.dat"
            raise DataError(f"{path} is a folder without Tennessee Eastman {kind} files; give a CSV/Parquet file, "
                            "or a folder of TEP files")
        frames = [read_tep_file(f, spec.tep_onset) for f in files]
        return pd.concat(frames, ignore_index=True), str(path), list(TEP_UNOBSERVABLE)
    if TEP_FILE.match(path.name):
        return read_tep_file(path, spec.tep_onset), str(path), list(TEP_UNOBSERVABLE)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path), str(path), []
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path), str(path), []
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read it as a {suffix[1:]} table ({exc})") from exc
    raise DataError(f"{path}: unsupported file type {suffix!r}; give .csv, .parquet or a TEP dNN.dat file")


def _normal_labels(labels: pd.Series, spec: ProcessSpec) -> pd.Series:
    """Labels as strings with the normal label (or 0) mapped to ``normal``."""
    text = labels.map(lambda v: str(int(v)) if isinstance(v, (int, np.integer, float, np.floating))
                      and float(v).is_integer() else str(v)).str.strip()
    return text.where(~text.isin([spec.normal_label, "0", NORMAL]), NORMAL)


def load_records(data: Any, spec: ProcessSpec, split: Literal["train", "test"] = "train",
                 expected: Sequence[str] | None = None) -> ProcessRecords:
    """Read and check process records (see module docstring). ``expected``: the variables a fitted model reads
    (all must be present, in any order; other columns are ignored)."""
    raw, source, unobservable = _read_table(data, spec, split)
    if isinstance(data, ProcessRecords):
        return data if expected is None else _check_expected(data, expected)
    notes: list[str] = []
    frame = raw.copy()
    if isinstance(frame.columns, pd.MultiIndex) or any(not isinstance(c, str) for c in frame.columns):
        frame.columns = [str(c) for c in frame.columns]
    if frame.empty:
        raise DataError(f"{source} holds no rows")
    if unobservable:  # the TEP reader names its columns itself
        run_col, time_col, label_col = RUN, TIME, LABEL
    else:
        run_col, time_col = spec.run_column, spec.time_column
        label_col = spec.label_column if spec.label_column in frame.columns else None
        if run_col not in frame.columns:
            frame[run_col] = "run_1"
            notes.append(f"{source}: no {run_col!r} column; all rows are one run in file order")
        if time_col not in frame.columns:
            frame[time_col] = frame.groupby(run_col, sort=False).cumcount().astype(float) + 1
            notes.append(f"{source}: no {time_col!r} column; row order is the time order")
    skip = {run_col, time_col, *([label_col] if label_col else []), *spec.ignore_columns}
    if expected is not None:
        variables = list(expected)
    elif spec.variable_columns:
        variables = list(spec.variable_columns)
    else:
        variables = [c for c in frame.columns if c not in skip and pd.api.types.is_numeric_dtype(frame[c])]
        text = [c for c in frame.columns if c not in skip and c not in variables]
        if text:
            notes.append(f"{source}: non-numeric column(s) {_listed(text)} are not process variables and are "
                         "ignored")
    missing = [c for c in variables if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {_listed(missing)}; expected the process variables "
                        f"{_listed(variables)}. Give every one, or choose them with --data.variable_columns")
    if not variables:
        raise DataError(f"{source}: no numeric process variable columns (got columns {_listed(list(frame.columns))})"
                        "; give measurements as numbers")
    bad_type = [c for c in variables if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad_type:
        raise DataError(f"{source}: variable column(s) {_listed(bad_type)} hold text, expected numbers; convert "
                        "them or leave them out with --data.ignore_columns")
    values = frame[variables].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        rows, cols = np.nonzero(bad)
        where = _listed([f"row {r + 1} {variables[c]}" for r, c in zip(rows[:MAX_LISTED], cols[:MAX_LISTED])])
        raise DataError(f"{source}: {int(bad.sum())} missing or infinite value(s) ({where}); expected a value for "
                        "every variable at every sample. Fill them (e.g. forward-fill) or drop those rows")
    time = pd.to_numeric(frame[time_col], errors="coerce")
    if time.isna().any():
        raise DataError(f"{source}: the time column {time_col!r} holds {int(time.isna().sum())} value(s) that are "
                        "not numbers; give sample numbers or seconds (convert timestamps to numbers)")
    out = pd.DataFrame({RUN: frame[run_col].astype(str).to_numpy(), TIME: time.to_numpy(dtype=np.float64)})
    if label_col:
        out[LABEL] = _normal_labels(frame[label_col], spec).to_numpy()
    out = pd.concat([out, frame[variables].astype(np.float64).reset_index(drop=True)], axis=1)
    steps = out.groupby(RUN, sort=False)[TIME].diff()
    if (steps <= 0).any():
        first = int(np.flatnonzero((steps <= 0).to_numpy())[0])
        raise DataError(f"{source}: time does not increase within run {out[RUN].iloc[first]!r} at row {first + 1} "
                        f"({out[TIME].iloc[first - 1]:g} then {out[TIME].iloc[first]:g}); expected strictly "
                        "increasing time per run. Sort the rows, remove duplicates, or give a run column")
    return ProcessRecords(out, variables, source, label_col is not None, unobservable, notes)


def _check_expected(records: ProcessRecords, expected: Sequence[str]) -> ProcessRecords:
    missing = [c for c in expected if c not in records.frame.columns]
    if missing:
        raise DataError(f"{records.source}: missing column(s) {_listed(missing)}; this model reads "
                        f"{_listed(expected)}")
    return ProcessRecords(records.frame, list(expected), records.source, records.has_labels, records.unobservable,
                          records.notes)


def constant_variables(records: ProcessRecords, relative: float = 1e-9) -> list[str]:
    """Variables that do not vary over the records (nothing to monitor; they would break standardisation)."""
    values = records.values()
    spread = values.std(axis=0)
    scale = np.maximum(np.abs(values).mean(axis=0), 1.0)
    return [v for v, s, m in zip(records.variables, spread, scale) if s <= relative * m]


__all__ = ["LABEL", "NORMAL", "RUN", "TIME", "TEP_UNOBSERVABLE", "TEP_VARIABLES", "ProcessRecords", "ProcessSpec",
           "constant_variables", "load_records", "read_tep_file"]
