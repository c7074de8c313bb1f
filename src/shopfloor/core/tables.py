"""Reading a user's table: one CSV/Parquet reader with the same refusals for every tabular task."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .errors import DataError

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def read_table(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    """A DataFrame from a CSV (``,`` or ``;`` separated, told apart by the header line) or Parquet path, or a copy of
    a DataFrame (index reset); column names as stripped text. A folder, a missing file, another suffix, an empty
    table or two columns with one name are refused with what to do."""
    if isinstance(source, pd.DataFrame):
        frame, where = source.reset_index(drop=True).copy(), "the DataFrame"
    elif isinstance(source, (str, Path)):
        path = Path(source)
        where = str(path)
        if path.is_dir():
            raise DataError(f"{path} is a folder; pass the .csv or .parquet table itself")
        if not path.is_file():
            raise DataError(f"table {path} does not exist")
        if path.suffix.lower() not in TABLE_SUFFIXES:
            raise DataError(f"{path} is not a table; use a .csv or .parquet file")
        try:
            if path.suffix.lower() == ".csv":
                with open(path, encoding="utf-8-sig", errors="replace") as fh:
                    first = fh.readline()
                sep = ";" if first.count(";") > first.count(",") else ","
                frame = pd.read_csv(path, sep=sep, encoding="utf-8-sig")
            else:
                frame = pd.read_parquet(path)
        except pd.errors.EmptyDataError:
            raise DataError(f"table {path} is empty") from None
        except Exception as exc:  # pandas/pyarrow raise many types for malformed files
            raise DataError(f"cannot read table {path}: {exc}") from exc
    else:
        raise DataError(f"a table is a .csv/.parquet path or a pandas DataFrame, not a {type(source).__name__}")
    if frame.empty:
        raise DataError(f"table {where} has no rows")
    columns = [str(c).strip() for c in frame.columns]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise DataError(f"{where} has several columns named {repeated}; give every column its own name")
    frame.columns = columns
    return frame


__all__ = ["TABLE_SUFFIXES", "read_table"]
