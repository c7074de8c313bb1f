"""Readers and validation for multi-unit sensor histories (one row per unit and cycle).

Two layouts are read into one :class:`SensorHistories` table:

- **NASA C-MAPSS**: a folder with ``train_FDxxx.txt``, ``test_FDxxx.txt`` and ``RUL_FDxxx.txt`` (plain or
  ``.gz``), chosen with ``subset``; or a single file in that whitespace-separated 26-column format.
- **Long-format CSV or Parquet**: one row per unit and time step, with a unit column, a time column,
  sensor columns, optional operating-setting columns and an optional remaining-useful-life column;
  column names come from :class:`HistorySpec`.

Validation happens here, at the edge: missing columns, non-numeric values, NaN/inf (reported, or
imputed with ``impute="ffill"``), duplicated time steps. Every error names the file, column and unit.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from shopfloor.core.config import StrictModel
from shopfloor.core.errors import DataError

UNIT = "unit"
TIME = "time"
RUL = "rul"
CMAPSS_SETTINGS = [f"setting_{i}" for i in range(1, 4)]
CMAPSS_SENSORS = [f"sensor_{i}" for i in range(1, 22)]
CMAPSS_COLUMNS = [UNIT, TIME, *CMAPSS_SETTINGS, *CMAPSS_SENSORS]
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


class HistorySpec(StrictModel):
    """Where the sensor histories are and how their columns are named."""

    subset: str = Field("FD001", description="C-MAPSS subset when --data is a C-MAPSS folder (FD001..FD004)")
    unit_column: str = Field("unit", description="column identifying the machine/unit (long-format tables)")
    time_column: str = Field("time", description="column with the cycle or time stamp (long-format tables)")
    sensor_columns: list[str] | None = Field(
        None, description="sensor columns; default: every numeric column that is not unit/time/setting/RUL")
    setting_columns: list[str] = Field(
        default_factory=list, description="operating-setting columns (used to find operating conditions)")
    rul_column: str = Field("rul", description="remaining useful life per row, if the table has it")
    impute: Literal["error", "ffill"] = Field(
        "error", description="NaN/inf values: error (report them) or ffill (forward/backward fill within a unit)")


@dataclass
class SensorHistories:
    """Sensor histories sorted by unit and time, with canonical ``unit``/``time``(/``rul``) columns.

    ``rul`` holds the true remaining useful life at each row when known (run-to-failure training data,
    or test data with a RUL file/column); it is absent for plain recent-cycle inputs.
    """

    frame: pd.DataFrame
    settings: list[str]
    sensors: list[str]
    source: str
    notes: list[str] = field(default_factory=list)

    @property
    def features(self) -> list[str]:
        """Settings then sensors: the raw input columns, in model order."""
        return [*self.settings, *self.sensors]

    @property
    def has_rul(self) -> bool:
        return RUL in self.frame.columns

    @property
    def units(self) -> np.ndarray:
        return self.frame[UNIT].unique()

    def unit_lengths(self) -> pd.Series:
        return self.frame.groupby(UNIT, sort=False).size()

    def select_units(self, units) -> "SensorHistories":
        """A copy restricted to ``units``."""
        frame = self.frame[self.frame[UNIT].isin(set(units))].reset_index(drop=True)
        return SensorHistories(frame, list(self.settings), list(self.sensors), self.source, list(self.notes))


def plain(value):
    """A numpy scalar as the plain Python value (for readable messages and JSON)."""
    return value.item() if isinstance(value, np.generic) else value


# ----------------------------------------------------------------------------- C-MAPSS
def _subset_file(folder: Path, prefix: str, subset: str) -> Path:
    for name in (f"{prefix}_{subset}.txt", f"{prefix}_{subset}.txt.gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder} has no {prefix}_{subset}.txt(.gz); a C-MAPSS folder holds train_/test_/RUL_FDxxx.txt "
                    "files (choose the subset with --subset)")


def _read_whitespace(path: Path, n_columns: int | None) -> pd.DataFrame:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt") as fh:
            frame = pd.read_csv(fh, sep=r"\s+", header=None)
    except (OSError, EOFError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty") from None
    if n_columns is not None and frame.shape[1] != n_columns:
        raise DataError(f"{path} has {frame.shape[1]} columns; the C-MAPSS format has {n_columns} "
                        "(unit, cycle, 3 settings, 21 sensors)")
    return frame


def read_cmapss_file(path: str | Path, rul_path: str | Path | None = None,
                     run_to_failure: bool = False) -> SensorHistories:
    """One C-MAPSS file (``train_``/``test_FDxxx.txt[.gz]``). ``run_to_failure`` derives RUL from each
    unit's last cycle; ``rul_path`` gives the RUL at the last cycle of each unit (test files)."""
    path = Path(path)
    frame = _read_whitespace(path, len(CMAPSS_COLUMNS))
    frame.columns = CMAPSS_COLUMNS
    histories = SensorHistories(frame, list(CMAPSS_SETTINGS), list(CMAPSS_SENSORS), str(path))
    _check_and_sort(histories, impute="error")
    if run_to_failure:
        histories.frame[RUL] = _rul_from_end(histories.frame, np.zeros(len(histories.units)))
    elif rul_path is not None:
        end_rul = _read_whitespace(Path(rul_path), None).iloc[:, 0].to_numpy(dtype=float)
        if len(end_rul) != len(histories.units):
            raise DataError(f"{rul_path} has {len(end_rul)} RUL values but {path} has {len(histories.units)} units; "
                            "they must be one per unit, in unit order")
        histories.frame[RUL] = _rul_from_end(histories.frame, end_rul)
    return histories


def read_cmapss(folder: str | Path, subset: str = "FD001",
                split: Literal["train", "test"] = "train") -> SensorHistories:
    """The ``split`` part of C-MAPSS ``subset`` from ``folder`` (training units run to failure; test units
    get their true RUL from ``RUL_<subset>``)."""
    folder = Path(folder)
    subset = subset.upper()
    if not re.fullmatch(r"FD\d{3}", subset):
        raise DataError(f"C-MAPSS subset {subset!r} is not of the form FD001")
    if split == "train":
        return read_cmapss_file(_subset_file(folder, "train", subset), run_to_failure=True)
    return read_cmapss_file(_subset_file(folder, "test", subset), rul_path=_subset_file(folder, "RUL", subset))


def is_cmapss_folder(path: Path) -> bool:
    return path.is_dir() and any(path.glob("train_FD*.txt*"))


def _rul_from_end(frame: pd.DataFrame, end_rul: np.ndarray) -> np.ndarray:
    """RUL per row: the unit's RUL at its last row plus the cycles remaining until that row."""
    last = frame.groupby(UNIT, sort=False)[TIME].transform("max").to_numpy(dtype=float)
    offset = pd.Series(end_rul, index=frame[UNIT].unique()).reindex(frame[UNIT]).to_numpy(dtype=float)
    return offset + last - frame[TIME].to_numpy(dtype=float)


# ----------------------------------------------------------------------------- long-format tables
def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"sensor history file {path} does not exist")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as exc:  # pandas/pyarrow raise many types for unreadable files
        raise DataError(f"cannot read {path} as {'Parquet' if 'parq' in path.suffix else 'CSV'}: {exc}") from exc


def read_sensor_table(data: str | Path | pd.DataFrame, spec: HistorySpec, run_to_failure: bool = False,
                      expected_features: list[str] | None = None) -> SensorHistories:
    """A long-format table (CSV/Parquet path or DataFrame) named by ``spec``.

    ``run_to_failure``: when the table has no RUL column, every unit is taken to end at failure.
    ``expected_features``: the columns a fitted model needs (all must be present; others are ignored).
    """
    source = "<DataFrame>" if isinstance(data, pd.DataFrame) else str(data)
    raw = data.copy() if isinstance(data, pd.DataFrame) else _read_table(Path(data))
    if raw.empty:
        raise DataError(f"{source} holds no rows")
    columns = [str(c) for c in raw.columns]
    raw.columns = columns
    notes: list[str] = []

    def require(names: list[str], what: str) -> None:
        missing = [n for n in names if n not in columns]
        if missing:
            raise DataError(f"{source} has no {what} column(s) {missing}; its columns are {columns}. "
                            "Name the right columns with --unit-column/--time-column/--sensor-columns/"
                            "--setting-columns")

    require([spec.unit_column], "unit")
    require([spec.time_column], "time")
    settings = list(spec.setting_columns)
    if expected_features is not None:
        settings = [c for c in expected_features if c in settings]
        sensors = [c for c in expected_features if c not in settings]
    elif spec.sensor_columns:
        sensors = list(spec.sensor_columns)
    else:
        reserved = {spec.unit_column, spec.time_column, spec.rul_column, *settings}
        candidates = [c for c in columns if c not in reserved]
        sensors = [c for c in candidates if _mostly_numeric(raw[c])]
        ignored = [c for c in candidates if c not in sensors]
        if ignored:
            notes.append(f"{source}: ignored non-numeric columns {ignored} (name sensors with --sensor-columns)")
        if not sensors:
            raise DataError(f"{source} has no numeric sensor columns besides unit/time/settings; "
                            "name them with --sensor-columns")
    require(settings, "setting")
    require(sensors, "sensor")
    keep = {spec.unit_column: UNIT, spec.time_column: TIME}
    for name in (*settings, *sensors):
        if name in (UNIT, TIME, RUL) and name not in keep:
            raise DataError(f"{source}: a sensor or setting column may not be called {name!r}; rename it")
    frame = raw[[spec.unit_column, spec.time_column, *settings, *sensors]].rename(columns=keep)
    if spec.rul_column in columns and spec.rul_column not in (spec.unit_column, spec.time_column):
        frame[RUL] = raw[spec.rul_column]
    histories = SensorHistories(frame, settings, sensors, source, notes)
    _check_and_sort(histories, impute=spec.impute)
    if RUL in histories.frame.columns:
        _complete_rul(histories)
    elif run_to_failure:
        histories.frame[RUL] = _rul_from_end(histories.frame, np.zeros(len(histories.units)))
        histories.notes.append(f"{source}: no {spec.rul_column!r} column; every unit is taken to run to failure "
                               "(RUL 0 at its last row)")
    return histories


def _mostly_numeric(column: pd.Series) -> bool:
    """Numeric dtype, or text of which most values parse as numbers (a sensor with some bad entries)."""
    if pd.api.types.is_numeric_dtype(column):
        return True
    if pd.api.types.is_bool_dtype(column):
        return False
    present = column.dropna()
    return len(present) > 0 and pd.to_numeric(present, errors="coerce").notna().mean() >= 0.5


def _complete_rul(histories: SensorHistories) -> None:
    """Fill a RUL column given only at some rows (e.g. the last) by counting cycles to each unit's known row."""
    frame = histories.frame
    rul = pd.to_numeric(frame[RUL], errors="coerce")
    known = rul.notna()
    if known.all():
        frame[RUL] = rul.astype(float)
        return
    # the RUL at a row with known RUL r at time t0 is r + (t0 - t); use each unit's last known row
    last_known = frame[known].groupby(UNIT, sort=False).tail(1).set_index(UNIT)
    missing_units = sorted(plain(u) for u in set(frame[UNIT]) - set(last_known.index))
    if missing_units:
        raise DataError(f"{histories.source}: RUL column has no value for unit(s) {missing_units[:10]}; give at least "
                        "the RUL at the last row of every unit, or drop the column")
    anchor_t = last_known[TIME].reindex(frame[UNIT]).to_numpy(dtype=float)
    anchor_r = last_known[RUL].astype(float).reindex(frame[UNIT]).to_numpy(dtype=float)
    frame[RUL] = anchor_r + anchor_t - frame[TIME].to_numpy(dtype=float)


# ----------------------------------------------------------------------------- validation
def _check_and_sort(histories: SensorHistories, impute: str) -> None:
    """Validate types, duplicates and non-finite values in place; sort by unit and time."""
    frame, source = histories.frame, histories.source
    for col in [TIME, *histories.features]:
        if not pd.api.types.is_numeric_dtype(frame[col]):
            converted = pd.to_numeric(frame[col], errors="coerce")
            bad = frame[col][converted.isna() & frame[col].notna()]
            if len(bad):
                raise DataError(f"{source}: column {col!r} holds non-numeric values such as {bad.iloc[0]!r} "
                                f"(row {bad.index[0]}); clean the column or exclude it")
            frame[col] = converted
    if frame[UNIT].isna().any():
        raise DataError(f"{source}: the unit column has empty values (row {int(frame[UNIT].isna().idxmax())})")
    if frame[TIME].isna().any() or not np.isfinite(frame[TIME].to_numpy(dtype=float)).all():
        raise DataError(f"{source}: the time column has missing or infinite values; every row needs a time")
    frame = histories.frame = frame.sort_values([UNIT, TIME], kind="stable").reset_index(drop=True)
    duplicated = frame.duplicated([UNIT, TIME])
    if duplicated.any():
        first = int(np.flatnonzero(duplicated.to_numpy())[0])
        unit, time = plain(frame[UNIT].iloc[first]), plain(frame[TIME].iloc[first])
        raise DataError(f"{source}: unit {unit!r} has several rows at time {time!r}; "
                        "keep one row per unit and time step")
    _handle_non_finite(histories, impute)


def _handle_non_finite(histories: SensorHistories, impute: str) -> None:
    frame, source = histories.frame, histories.source
    values = frame[histories.features].to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    counts = {c: int(n) for c, n in zip(histories.features, bad.sum(axis=0)) if n}
    first = np.argwhere(bad)[0]
    where = f"first at unit {plain(frame[UNIT].iloc[first[0]])!r}, time {plain(frame[TIME].iloc[first[0]])!r}"
    if impute != "ffill":
        raise DataError(f"{source}: NaN or infinite values in columns {counts} ({where}); clean the data or "
                        "pass --impute ffill to fill each gap from the unit's previous (else next) reading")
    frame[histories.features] = frame[histories.features].replace([np.inf, -np.inf], np.nan)
    filled = frame.groupby(UNIT, sort=False)[histories.features].transform(lambda s: s.ffill().bfill())
    still = filled.isna().any()
    if still.any():
        col = still[still].index[0]
        unit = plain(frame.loc[filled[col].isna(), UNIT].iloc[0])
        raise DataError(f"{source}: column {col!r} has no finite value at all for unit {unit!r}; cannot impute it")
    frame[histories.features] = filled
    histories.notes.append(f"{source}: imputed {sum(counts.values())} NaN/inf values by forward/backward fill "
                           f"within each unit: {counts}")


# ----------------------------------------------------------------------------- dispatch
def load_histories(data, spec: HistorySpec, split: Literal["train", "test"] = "train",
                   expected_features: list[str] | None = None) -> SensorHistories:
    """Read ``data`` (C-MAPSS folder or file, CSV/Parquet path, or DataFrame) for training or testing.

    ``split="train"`` takes a C-MAPSS folder's train file and treats tables without RUL as run to failure;
    ``split="test"`` takes the test file with its RUL file. ``expected_features`` restricts and checks
    the columns a fitted model needs.
    """
    if isinstance(data, SensorHistories):
        return data
    if isinstance(data, pd.DataFrame):
        return read_sensor_table(data, spec, run_to_failure=split == "train", expected_features=expected_features)
    path = Path(data)
    if not path.exists():
        raise DataError(f"sensor history data {path} does not exist")
    if path.is_dir():
        if is_cmapss_folder(path):
            histories = read_cmapss(path, spec.subset, split)
        else:
            tables = sorted(p for p in path.iterdir() if p.suffix.lower() in TABLE_SUFFIXES)
            if len(tables) != 1:
                raise DataError(f"{path} is neither a C-MAPSS folder (train_/test_/RUL_FDxxx.txt) nor a folder with "
                                f"exactly one CSV/Parquet table (found {len(tables)}); pass the file itself")
            return load_histories(tables[0], spec, split, expected_features)
    elif path.suffix.lower() in TABLE_SUFFIXES:
        return read_sensor_table(path, spec, run_to_failure=split == "train", expected_features=expected_features)
    elif path.name.endswith((".txt", ".txt.gz")):
        rul_path = None
        match = re.match(r"(train|test)_(FD\d{3})\.txt", path.name)
        if match and match.group(1) == "test":
            candidates = [path.parent / f"RUL_{match.group(2)}.txt{ext}" for ext in ("", ".gz")]
            rul_path = next((p for p in candidates if p.is_file()), None)
        histories = read_cmapss_file(path, rul_path=rul_path,
                                     run_to_failure=bool(match and match.group(1) == "train"))
    else:
        raise DataError(f"{path}: unknown sensor history format; use a C-MAPSS folder or .txt file, or a .csv/.parquet "
                        "long-format table")
    if expected_features is not None:
        missing = [c for c in expected_features if c not in histories.features]
        if missing:
            raise DataError(f"{histories.source} lacks the columns {missing} that the model was trained on")
    return histories


__all__ = ["CMAPSS_SENSORS", "CMAPSS_SETTINGS", "HistorySpec", "RUL", "SensorHistories", "TIME", "UNIT",
           "is_cmapss_folder", "load_histories", "read_cmapss", "read_cmapss_file", "read_sensor_table"]
