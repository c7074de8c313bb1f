"""Readers and validation for multi-unit sensor histories (one row per unit and cycle).

Two layouts are read into one :class:`SensorHistories` table:

- **NASA C-MAPSS**: a folder with ``train_FDxxx.txt``, ``test_FDxxx.txt`` and ``RUL_FDxxx.txt`` (plain or
  ``.gz``), chosen with ``subset``; or a single file in that whitespace-separated 26-column format.
- **Long-format CSV or Parquet**: one row per unit and time step, with a unit column, a time column,
  sensor columns, optional operating-setting columns and an optional remaining-useful-life column;
  column names come from :class:`HistorySpec`.

Validation happens here, at the edge: missing columns, non-numeric values, NaN/inf (reported, or
imputed with ``impute="ffill"``), duplicated time steps, negative times, negative or non-finite remaining life,
and (when the sensors are inferred) columns that look like identifiers (refused, or warned about when they may be
real effects; :func:`shopfloor.maintenance.checks.id_like_columns`). Rows of a unit out of time order in the file
(sorted) and gaps in a unit's cycles (windows span them) are kept with a warning in ``SensorHistories.warnings``,
which the task raises. Every message names the file, column and unit.
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

from .checks import describe_id_like, id_like_columns, list_items

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
    id_columns: list[str] = Field(
        default_factory=list, description="identifier columns (row ids, batch or serial numbers) left out of the "
        "inferred sensors, when present")
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
    warnings: list[str] = field(default_factory=list)  # soft problems the task raises (training: kept in its state)
    columns: list[str] = field(default_factory=list)  # every column of the input as read

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
        return SensorHistories(frame, list(self.settings), list(self.sensors), self.source, list(self.notes),
                               list(self.warnings), list(self.columns))


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
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty") from None
    except (OSError, EOFError, ValueError, pd.errors.ParserError) as exc:  # UnicodeDecodeError is a ValueError
        raise DataError(f"cannot read {path}: {exc}") from exc
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
    histories = SensorHistories(frame, list(CMAPSS_SETTINGS), list(CMAPSS_SENSORS), str(path),
                                columns=list(CMAPSS_COLUMNS))
    _check_and_sort(histories, impute="error")
    if run_to_failure:
        histories.frame[RUL] = _rul_from_end(histories.frame, np.zeros(len(histories.units)))
    elif rul_path is not None:
        end_rul = pd.to_numeric(_read_whitespace(Path(rul_path), None).iloc[:, 0], errors="coerce").to_numpy(float)
        if len(end_rul) != len(histories.units):
            raise DataError(f"{rul_path} has {len(end_rul)} RUL values but {path} has {len(histories.units)} units; "
                            "they must be one per unit, in unit order")
        if not np.isfinite(end_rul).all():
            raise DataError(f"{rul_path} holds non-numeric or infinite RUL values (line "
                            f"{int(np.flatnonzero(~np.isfinite(end_rul))[0]) + 1}); one number per unit is needed")
        histories.frame[RUL] = _rul_from_end(histories.frame, end_rul)
        _check_rul(histories)
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
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise DataError(f"{source} has several columns named {repeated}; give every column its own name")
    raw.columns = columns
    notes: list[str] = []
    warnings: list[str] = []

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
        identifiers = [c for c in spec.id_columns if c in columns and c not in reserved]
        if identifiers:
            notes.append(f"{source}: identifier columns {identifiers} left out (--id-columns)")
        candidates = [c for c in columns if c not in reserved and c not in identifiers]
        sensors = [c for c in candidates if _mostly_numeric(raw[c])]
        ignored = [c for c in candidates if c not in sensors]
        if ignored:
            notes.append(f"{source}: ignored non-numeric columns {ignored} (name sensors with --sensor-columns)")
        if not sensors:
            raise DataError(f"{source} has no numeric sensor columns besides unit/time/settings; "
                            "name them with --sensor-columns")
        warnings += _check_inferred_sensors(raw, sensors, spec, source)
    require(settings, "setting")
    require(sensors, "sensor")
    keep = {spec.unit_column: UNIT, spec.time_column: TIME}
    for name in (*settings, *sensors):
        if name in (UNIT, TIME, RUL) and name not in keep:
            raise DataError(f"{source}: a sensor or setting column may not be called {name!r}; rename it")
    frame = raw[[spec.unit_column, spec.time_column, *settings, *sensors]].rename(columns=keep)
    if spec.rul_column in columns and spec.rul_column not in (spec.unit_column, spec.time_column):
        frame[RUL] = raw[spec.rul_column]
    histories = SensorHistories(frame, settings, sensors, source, notes, warnings, columns)
    _check_and_sort(histories, impute=spec.impute)
    if RUL in histories.frame.columns:
        _complete_rul(histories)
        _check_rul(histories)
    elif run_to_failure:
        histories.frame[RUL] = _rul_from_end(histories.frame, np.zeros(len(histories.units)))
        histories.notes.append(f"{source}: no {spec.rul_column!r} column; every unit is taken to run to failure "
                               "(RUL 0 at its last row)")
    return histories


def _check_inferred_sensors(raw: pd.DataFrame, sensors: list[str], spec: HistorySpec, source: str) -> list[str]:
    """Inferred sensors that look like identifiers: refused (a row counter, an id unique per row) or returned as
    warnings (named like an id but repeating; constant within every unit while differing between units)."""
    found = id_like_columns(raw, sensors)
    refused = [f for f in found if f.refuse]

    def fix(names) -> str:
        return f"--id-columns {','.join(dict.fromkeys([*spec.id_columns, *names]))}"

    if refused:
        raise DataError(f"{source}: column(s) {describe_id_like(refused)} look like identifiers, not sensors; as model "
                        f"inputs they would teach it the row order. Leave them out with "
                        f"{fix(f.column for f in refused)}, or name the sensors with --sensor-columns")
    warnings = [f"{source}: sensor column {describe_id_like([f])} is used as a model input; if it is an "
                f"identifier, leave it out with {fix([f.column])}" for f in found]
    rest = [c for c in sensors if c not in {f.column for f in found}]
    try:
        sizes = raw.groupby(spec.unit_column, sort=False)[spec.unit_column].transform("size")
        several = raw[sizes.to_numpy() > 1]  # a unit of one row is constant in everything
        within = (several.groupby(spec.unit_column, sort=False)[rest].nunique(dropna=True) <= 1).all()
        across = several[rest].nunique(dropna=True) > 1
    except (TypeError, ValueError):  # unhashable or odd unit values: reported by the unit checks
        return warnings
    attributes = [c for c in rest if within.get(c, False) and across.get(c, False)]
    if attributes and several[spec.unit_column].nunique() > 1:
        warnings.append(f"{source}: sensor column(s) {attributes} are constant within every unit but differ between "
                        "units (unit attributes such as a batch, serial or build number?): the model can recognise "
                        f"training units by them. If they are not measurements, leave them out with {fix(attributes)}")
    return warnings


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
    text = rul.isna() & frame[RUL].notna()
    if text.any():
        row = int(np.flatnonzero(text.to_numpy())[0])
        raise DataError(f"{histories.source}: the RUL column holds non-numeric values such as {frame[RUL].iloc[row]!r} "
                        f"(unit {plain(frame[UNIT].iloc[row])!r}, time {plain(frame[TIME].iloc[row])!r}); "
                        "leave unknown values empty")
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


def _check_rul(histories: SensorHistories) -> None:
    """Refuse negative or infinite remaining life (naming units and times); warn where it rises with time."""
    frame, source = histories.frame, histories.source
    rul = frame[RUL].to_numpy(dtype=float)
    for bad, what in ((~np.isfinite(rul), "infinite"), (rul < 0, "negative")):
        if bad.any():
            rows = frame.loc[bad, [UNIT, TIME]]
            units = list(dict.fromkeys(plain(u) for u in rows[UNIT]))
            first = rows.groupby(UNIT, sort=False)[TIME].min()
            listed = list_items([f"{plain(u)!r} from time {plain(t)!r}" for u, t in first.items()])
            raise DataError(f"{source}: {what} remaining useful life in {len(units)} unit(s): {listed}. A unit's RUL "
                            "is the cycles left until its failure, 0 at the failure itself: check the RUL column "
                            "(or RUL file) and the time column")
    rises = (frame.groupby(UNIT, sort=False)[RUL].diff() > 0).to_numpy()
    if rises.any():
        units = list(dict.fromkeys(plain(u) for u in frame.loc[rises, UNIT]))
        histories.warnings.append(f"{source}: the remaining useful life rises with time within {len(units)} unit(s) "
                                  f"({list_items(units)}); it should fall by one per cycle. Check the RUL and time "
                                  "columns, or split units whose life was extended by a repair")


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
    negative = frame[TIME].to_numpy(dtype=float) < 0
    if negative.any():
        first = frame.loc[negative].groupby(UNIT, sort=False)[TIME].min()
        raise DataError(f"{source}: negative time values in {len(first)} unit(s): "
                        f"{list_items([f'{plain(u)!r} (time {plain(t)!r})' for u, t in first.items()])}; the time "
                        "column counts cycles since each unit's history began (0 or more)")
    backwards = (frame.groupby(UNIT, sort=False)[TIME].diff() < 0).to_numpy()
    backwards_units = list(dict.fromkeys(plain(u) for u in frame.loc[backwards, UNIT]))
    try:
        frame = histories.frame = frame.sort_values([UNIT, TIME], kind="stable").reset_index(drop=True)
    except TypeError as exc:  # e.g. numbers and text mixed in the unit column of a DataFrame
        raise DataError(f"{source}: the unit column mixes values that cannot be ordered ({exc}); give every unit "
                        "an identifier of one type") from None
    duplicated = frame.duplicated([UNIT, TIME])
    if duplicated.any():
        first = int(np.flatnonzero(duplicated.to_numpy())[0])
        unit, time = plain(frame[UNIT].iloc[first]), plain(frame[TIME].iloc[first])
        raise DataError(f"{source}: unit {unit!r} has several rows at time {time!r}; "
                        "keep one row per unit and time step")
    if backwards_units:
        units = backwards_units
        histories.warnings.append(f"{source}: the rows of {len(units)} unit(s) ({list_items(units)}) are not in time "
                                  "order in the file; they were sorted by the time column. Check that each unit's "
                                  "rows are one history")
    _check_gaps(histories)
    _handle_non_finite(histories, impute)


def _check_gaps(histories: SensorHistories) -> None:
    """Warn (naming units and cycles) where a unit's time steps jump by more than 1.5 of the table's usual step:
    windows of consecutive rows then span missing cycles as if the readings were consecutive."""
    frame = histories.frame
    steps = frame.groupby(UNIT, sort=False)[TIME].diff().to_numpy(dtype=float)
    positive = steps[np.isfinite(steps) & (steps > 0)]
    if not len(positive):
        return
    step = float(np.median(positive))
    gaps = np.flatnonzero(steps > 1.5 * step)
    if not len(gaps):
        return
    times, units = frame[TIME].to_numpy(), frame[UNIT].to_numpy()
    shown = [f"unit {plain(units[i])!r}: {plain(times[i - 1])!r} -> {plain(times[i])!r}" for i in gaps]
    n_units = len(set(units[gaps].tolist()))
    histories.warnings.append(f"{histories.source}: {len(gaps)} gap(s) in the time steps of {n_units} unit(s) (usual "
                              f"step {step:g}): {list_items(shown, 5)}. Windows span them as if the readings were "
                              "consecutive; fill in the missing cycles or split such units if that is wrong")


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
