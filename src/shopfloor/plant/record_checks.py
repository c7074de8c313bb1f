"""Checks on what reaches the record store: the database URL, the SQLite file, and each field of a record.

Caller errors raise ``ConfigError`` (URL, paths, times) or ``DataError`` (record fields), each saying what to fix.
"""

from __future__ import annotations

import json
import math
import os
from datetime import date, datetime, timezone
from pathlib import Path, PurePath
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url

from shopfloor.core.errors import ConfigError, DataError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# field -> maximum length (characters); required text fields first
TEXT_FIELDS = {"model": 200, "artifact_hash": 200, "input_fingerprint": 200, "source": 1000, "label": 200,
               "key": 500}
REQUIRED = ("model", "artifact_hash", "result", "input_fingerprint")
FIELDS = frozenset(REQUIRED) | {"source", "label", "score", "latency_ms", "key", "input_bytes", "heatmap_png"}
URL_HELP = "use sqlite:///path/to/records.db or postgresql://user:password@host:5432/database"


def normalise_url(url: str | URL) -> URL:
    if not isinstance(url, (str, URL)) or (isinstance(url, str) and not url.strip()):
        raise ConfigError(f"the record store URL must be a non-empty string, not {url!r}: {URL_HELP}")
    try:
        u = make_url(url.strip() if isinstance(url, str) else url)
    except (sa_exc.ArgumentError, ValueError) as e:
        raise ConfigError(f"the record store URL {str(url)!r} is not a database URL ({e}): {URL_HELP}") from None
    if u.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        return u.set(drivername="postgresql+psycopg")
    if u.drivername in ("sqlite", "sqlite+pysqlite"):
        return u
    shown = u.render_as_string(hide_password=True)
    if u.get_backend_name() in ("postgresql", "postgres"):
        raise ConfigError(f"record store URL {shown!r}: the driver {u.get_driver_name()!r} is not supported; "
                          "write postgresql://... (shopfloor uses psycopg 3)")
    raise ConfigError(f"record store URL {shown!r}: the database {u.get_backend_name()!r} is not supported; "
                      f"{URL_HELP}")


def sqlite_file(u: URL) -> Path | None:
    """The database file of a SQLite URL; None for an in-memory database."""
    db = u.database
    if not db or db == ":memory:" or u.query.get("mode") == "memory" or db.startswith("file:"):
        return None
    return Path(db).expanduser()


def check_sqlite_path(path: Path) -> None:
    where = f"the SQLite record database {path}"
    if path.is_dir():
        raise ConfigError(f"{where} is a folder: give a file path, e.g. sqlite:///{path / 'records.db'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise ConfigError(f"cannot create {where}: the folder {parent} does not exist (create it or choose another "
                          "path)")
    if not parent.is_dir():
        raise ConfigError(f"cannot create {where}: {parent} is a file, not a folder; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):  # WAL needs to create -wal/-shm files beside the database
        raise ConfigError(f"cannot write {where}: the folder {parent} is not writable; choose a writable place")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise ConfigError(f"cannot write {where}: the file is not readable and writable by this user")


def as_utc(value: datetime | str | None, name: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"{name}={value!r} is not an ISO 8601 time: write e.g. 2025-01-31T08:00:00Z") from None
    if not isinstance(value, datetime):
        raise ConfigError(f"{name} must be a datetime (or an ISO 8601 string), not {type(value).__name__}")
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def check_text(name: str, value: Any, *, required: bool, where: str) -> str | None:
    if value is None:
        if required:
            raise DataError(f"{where}: {name} is required (a non-empty string)")
        return None
    if not isinstance(value, str):
        raise DataError(f"{where}: {name} must be a string, not {type(value).__name__}")
    if required and not value.strip():
        raise DataError(f"{where}: {name} must not be empty")
    if name == "key" and not value:
        raise DataError(f"{where}: key must not be empty; leave it None for records without an idempotency key")
    limit = TEXT_FIELDS[name]
    if len(value) > limit:
        hint = " (hash it: e.g. topic + sha256 of the payload)" if name == "key" else ""
        raise DataError(f"{where}: {name} is {len(value)} characters long, at most {limit} are stored{hint}")
    if "\x00" in value:
        raise DataError(f"{where}: {name} contains a NUL character, which databases cannot store; remove it")
    return value


def check_number(name: str, value: Any, where: str) -> float | None:
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, (int, float)):  # numpy scalars
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{where}: {name} must be a number or None, not {type(value).__name__}")
    value = float(value)
    return value if math.isfinite(value) else None  # NaN/inf: no value (JSON and SQLite have no NaN)


def jsonable(value: Any, where: str) -> Any:
    """A plain JSON value (dict/list/str/finite float/int/bool/None): numpy values and arrays converted,
    non-finite floats -> None; anything else refused."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if "\x00" in value:
            raise DataError(f"{where} contains a NUL character, which databases cannot store; remove it")
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if hasattr(k, "item") and not isinstance(k, (str, int, float)):
                k = k.item()
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise DataError(f"{where} has a key of type {type(k).__name__}; JSON keys are strings")
            k = k if isinstance(k, str) else json.dumps(k)
            out[jsonable(k, where)] = jsonable(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return jsonable(tolist(), where)
    raise DataError(f"{where} holds a {type(value).__name__}, which cannot be stored as JSON: convert it to a "
                    "number, string, list or mapping")


def as_bytes(name: str, value: Any, where: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise DataError(f"{where}: {name} must be bytes, not {type(value).__name__}")
    data = bytes(value)
    if not data:
        raise DataError(f"{where}: {name} is empty; pass None when there is nothing to keep")
    if name == "heatmap_png" and not data.startswith(PNG_MAGIC):
        raise DataError(f"{where}: heatmap_png is not a PNG image (it does not start with the PNG signature)")
    return data
