"""The prediction record store: every decision made on the line, kept for traceability.

``RecordStore(url)`` opens a SQLAlchemy database, SQLite (``sqlite:///records.db``: WAL journal, busy timeout,
foreign keys, ``synchronous=FULL``) or PostgreSQL (``postgresql://user@host:5432/db``, driven by psycopg 3), and
brings its schema to the newest Alembic revision shipped in ``shopfloor/plant/migrations`` (no ``alembic.ini``
needed). One engine per store, one connection and transaction per call, so it is safe to share between threads.

- ``add``/``add_many`` commit whole records or nothing. A ``key`` (e.g. MQTT topic + message id) makes adding
  idempotent: the same key again returns the first record's id with ``created=False``, also under concurrent
  writers (a unique constraint; a lost race is caught as an ``IntegrityError`` inside a savepoint).
- With ``inputs_dir`` the input bytes and heatmap PNG of each record are kept on disk, content addressed
  (``ab/cd/<sha256>``, heatmaps ``ab/cd/<sha256>.png``); ``keep_inputs=N`` keeps at most N such files (inputs and
  heatmaps together), the least recently referenced deleted first; their records stay, the reference cleared.
- ``query`` is newest first with keyset pagination (``before_id``); ``since`` is inclusive, ``until`` exclusive;
  naive datetimes are taken as UTC. ``export`` streams CSV or Parquet in chunks.
- Caller errors raise ``ConfigError``/``DataError``; a database that stops answering after open raises
  :class:`RecordStoreUnavailable` (the server answers 503, the MQTT worker does not acknowledge).

New schema revisions: ``alembic.command.revision(alembic_config(), "what changed")`` writes a script into
``migrations/versions``; edit it, and every store upgrades at its next open.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from hashlib import sha256
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection

from shopfloor.core.errors import ConfigError, DataError, ShopfloorError

from .record_checks import (FIELDS, REQUIRED, TEXT_FIELDS, URL_HELP, as_bytes, as_utc, check_number,
                            check_sqlite_path, check_text, jsonable, normalise_url, sqlite_file)
from .record_export import EXPORT_COLUMNS, EXPORT_FORMATS, write_csv, write_parquet
from .record_schema import files_table, metadata, records_table  # noqa: F401 - metadata: tests compare it

__all__ = ["MIGRATIONS_DIR", "RecordStore", "RecordStoreUnavailable", "alembic_config", "export_records"]

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
VERSION_TABLE = "shopfloor_alembic_version"
MAX_LIMIT = 1000
EXPORT_CHUNK = 2000
BUSY_TIMEOUT_S = 30.0
PG_CONNECT_TIMEOUT_S = 5
# PostgreSQL advisory lock keys (any constant bigint): one migrator, one file evictor at a time
_MIGRATE_LOCK_KEY = 0x5F0F_0001
_EVICT_LOCK_KEY = 0x5F0F_0002
_MIGRATE_LOCK = threading.Lock()  # alembic's `context` is process-global: one upgrade at a time per process


class RecordStoreUnavailable(ShopfloorError):
    """The record database stopped answering (or is too busy) after the store was opened: nothing was written."""


def alembic_config(url: str | None = None):
    """An Alembic ``Config`` for the shipped migrations (no ``alembic.ini``); ``url`` for the command line API."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", normalise_url(url).render_as_string(hide_password=False)
                            .replace("%", "%%"))
    cfg.attributes["version_table"] = VERSION_TABLE
    return cfg


def _short(error: BaseException) -> str:
    orig = getattr(error, "orig", None) or error
    text = " ".join(str(orig).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def _chunks(items: list, n: int = 500) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


# --- the store ------------------------------------------------------------------------------------------------------

class RecordStore:
    """Prediction records in SQLite or PostgreSQL; see the module docstring."""

    def __init__(self, url: str = "sqlite:///shopfloor.db", *, inputs_dir: str | Path | None = None,
                 keep_inputs: int | None = None) -> None:
        self._closed = True
        u = normalise_url(url)
        self.dialect = "postgresql" if u.get_backend_name() == "postgresql" else "sqlite"
        self.url = u.render_as_string(hide_password=True)
        if keep_inputs is not None:
            if isinstance(keep_inputs, bool) or not isinstance(keep_inputs, int) or keep_inputs < 1:
                raise ConfigError(f"keep_inputs must be a whole number >= 1 (files to keep), not {keep_inputs!r}")
            if inputs_dir is None:
                raise ConfigError("keep_inputs limits the files kept in inputs_dir: set inputs_dir too")
        self.keep_inputs = keep_inputs
        self.inputs_dir = None if inputs_dir is None else Path(inputs_dir).expanduser().resolve()
        if self.inputs_dir is not None:
            try:
                self.inputs_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"cannot create inputs_dir {self.inputs_dir} ({e.strerror or e}); choose a "
                                  "writable folder") from None
            if not os.access(self.inputs_dir, os.W_OK | os.X_OK):
                raise ConfigError(f"inputs_dir {self.inputs_dir} is not writable; choose a writable folder")

        self._memory = False
        if self.dialect == "sqlite":
            path = sqlite_file(u)
            self._memory = path is None
            if path is not None:
                check_sqlite_path(path)
            engine_args: dict[str, Any] = {
                "connect_args": {"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}}
            if self._memory:  # one shared connection (each new one would be a new, empty database)
                engine_args["poolclass"] = sa.pool.StaticPool
        else:
            connect_args: dict[str, Any] = {"application_name": "shopfloor-records"}
            if "connect_timeout" not in u.query:
                connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
            engine_args = {"connect_args": connect_args, "pool_pre_ping": True, "pool_size": 8,
                           "max_overflow": 8}
        try:
            self._engine = sa.create_engine(u, **engine_args)
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError, TypeError) as e:
            raise ConfigError(f"cannot use the record store URL {self.url!r} ({_short(e)}): {URL_HELP}") from None
        self._lock = threading.RLock() if self._memory else None
        if self.dialect == "sqlite":
            self._sqlite_events(wal=not self._memory)
        self._closed = False
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"RecordStore({self.url!r}, inputs_dir={self.inputs_dir!r}, keep_inputs={self.keep_inputs!r})"

    def __enter__(self) -> RecordStore:  # noqa: PYI034 - Python 3.10 has no typing.Self
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- engine plumbing --------------------------------------------------------------------------------------------

    def _sqlite_events(self, *, wal: bool) -> None:
        @event.listens_for(self._engine, "connect")
        def _on_connect(dbapi_conn, _record) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below): savepoints, DDL in transactions
            cur = dbapi_conn.cursor()
            try:
                if wal:
                    cur.execute("PRAGMA journal_mode=WAL")
                cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA synchronous=FULL")  # a committed record survives a power cut
            finally:
                cur.close()

        @event.listens_for(self._engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # writers take the write lock up front: no deadlock-prone lock upgrade, the busy timeout applies
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("shopfloor_write")
                                 else "BEGIN")

    @contextmanager
    def _transaction(self, *, write: bool, doing: str) -> Iterator[Connection]:
        if self._closed:
            raise RecordStoreUnavailable(f"the record store {self.url} is closed; open a new RecordStore")
        with self._lock if self._lock is not None else nullcontext():
            try:
                with self._engine.connect() as conn:
                    if write and self.dialect == "sqlite":
                        conn.execution_options(shopfloor_write=True)
                    with conn.begin():
                        yield conn
            except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError,
                    sa_exc.TimeoutError) as e:
                nothing = "; nothing was written" if write else ""
                raise RecordStoreUnavailable(
                    f"the record database {self.url} did not answer while {doing} ({_short(e)}){nothing}: check "
                    "that it is running, reachable and not full, then retry") from e

    def _migrate(self) -> None:
        from alembic import command
        from alembic.util.exc import CommandError

        cfg = alembic_config()
        try:
            with _MIGRATE_LOCK, self._engine.connect() as conn:
                if self.dialect == "sqlite":
                    conn.execution_options(shopfloor_write=True)
                with conn.begin():
                    if self.dialect == "postgresql":  # concurrent openers of an empty database: one creates
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATE_LOCK_KEY})
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
                if self.dialect == "sqlite" and not self._memory:
                    mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
                    if str(mode).lower() != "wal":
                        raise ConfigError(f"the SQLite record database {self.url} cannot use WAL journal mode "
                                          f"(it reports {mode!r}); put it on a local disk, not a network share")
        except CommandError as e:
            raise ConfigError(f"the record database {self.url} has a schema this shopfloor does not know ({e}); "
                              "it was probably written by a newer shopfloor: upgrade shopfloor or use another "
                              "database") from None
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as e:
            raise ConfigError(f"cannot open the record database {self.url} ({_short(e)}): check the URL, that the "
                              "database server is running and reachable, the user and password, and that the "
                              "database exists") from None
        except sa_exc.DBAPIError as e:
            raise ConfigError(f"cannot create the record tables in {self.url} ({_short(e)}): check that this user "
                              "may create tables in that database/schema") from None

    # --- writing ----------------------------------------------------------------------------------------------------

    def add(self, *, model: str, artifact_hash: str, result: dict, input_fingerprint: str,
            source: str | None = None, label: str | None = None, score: float | None = None,
            latency_ms: float | None = None, key: str | None = None,
            input_bytes: bytes | None = None, heatmap_png: bytes | None = None) -> tuple[int, bool]:
        """Commit one record; ``(id, created)``, ``created=False`` when ``key`` was already recorded."""
        return self._add([{"model": model, "artifact_hash": artifact_hash, "result": result,
                           "input_fingerprint": input_fingerprint, "source": source, "label": label,
                           "score": score, "latency_ms": latency_ms, "key": key, "input_bytes": input_bytes,
                           "heatmap_png": heatmap_png}], single=True)[0]

    def add_many(self, records: list[dict]) -> list[tuple[int, bool]]:
        """Commit several records (the fields of :meth:`add`) in one transaction: all of them or none."""
        if not isinstance(records, (list, tuple)):
            raise DataError(f"add_many takes a list of record dicts, not {type(records).__name__}")
        if not records:
            return []
        return self._add(list(records), single=False)

    def _prepare(self, rec: Any, where: str) -> tuple[dict, list[tuple[str, str, bytes, str]]]:
        if not isinstance(rec, dict):
            raise DataError(f"{where} must be a dict of record fields, not {type(rec).__name__}")
        unknown = sorted(set(rec) - FIELDS, key=str)
        if unknown:
            raise DataError(f"{where}: unknown fields {unknown}; a record has {sorted(FIELDS)}")
        row: dict[str, Any] = {}
        for name in TEXT_FIELDS:
            row[name] = check_text(name, rec.get(name), required=name in REQUIRED, where=where)
        for name in ("score", "latency_ms"):
            row[name] = check_number(name, rec.get(name), where)
        result = rec.get("result")
        if not isinstance(result, dict):
            raise DataError(f"{where}: result must be a dict (the prediction as a JSON object), not "
                            f"{type(result).__name__}")
        row["result"] = jsonable(result, f"{where}: result")
        row["created"] = datetime.now(timezone.utc)
        files = []
        for name, column, kind, suffix in (("input_bytes", "input_file", "input", ""),
                                           ("heatmap_png", "heatmap_file", "heatmap", ".png")):
            data = as_bytes(name, rec.get(name), where)
            row[column] = None
            if data is not None and self.inputs_dir is not None:
                digest = sha256(data).hexdigest()
                rel = f"{digest[:2]}/{digest[2:4]}/{digest}{suffix}"
                row[column] = rel
                files.append((rel, digest, data, kind))
        return row, files

    def _add(self, records: list, *, single: bool) -> list[tuple[int, bool]]:
        prepared = [self._prepare(r, "record" if single else f"record {i}") for i, r in enumerate(records)]
        out: list[tuple[int, bool]] = []
        stored_files = False
        by_key = sa.select(records_table.c.id).where(records_table.c.key == sa.bindparam("k"))
        with self._transaction(write=True, doing="adding a record" if single else "adding records") as conn:
            for row, files in prepared:
                if row["key"] is not None:
                    existing = conn.execute(by_key, {"k": row["key"]}).scalar()
                    if existing is not None:
                        out.append((int(existing), False))
                        continue
                    try:
                        with conn.begin_nested():  # a concurrent writer may commit the same key meanwhile
                            rid = conn.execute(records_table.insert().values(**row)).inserted_primary_key[0]
                    except sa_exc.IntegrityError:
                        existing = conn.execute(by_key, {"k": row["key"]}).scalar()
                        if existing is None:
                            raise
                        out.append((int(existing), False))
                        continue
                else:
                    rid = conn.execute(records_table.insert().values(**row)).inserted_primary_key[0]
                for rel, digest, data, kind in files:
                    self._store_file(conn, rel, digest, data, kind, int(rid))
                    stored_files = True
                out.append((int(rid), True))
        if stored_files and self.keep_inputs is not None:
            try:
                self._evict()
            except (RecordStoreUnavailable, OSError) as e:  # the records are committed; retried at the next add
                log.warning("could not apply keep_inputs=%d to %s: %s", self.keep_inputs, self.inputs_dir, e)
        return out

    def _store_file(self, conn: Connection, rel: str, digest: str, data: bytes, kind: str, rid: int) -> None:
        # the row first: it locks the file against a concurrent eviction, which renames files before it commits
        insert = (postgresql.insert if self.dialect == "postgresql" else sqlite_dialect.insert)(files_table)
        newest = sa.func.greatest if self.dialect == "postgresql" else sa.func.max
        conn.execute(insert.values(path=rel, sha256=digest, kind=kind, size=len(data),
                                   created=datetime.now(timezone.utc), last_record_id=rid)
                     .on_conflict_do_update(index_elements=[files_table.c.path], set_={
                         "last_record_id": newest(files_table.c.last_record_id, insert.excluded.last_record_id)}))
        target = self.inputs_dir / rel
        if target.is_file() and target.stat().st_size == len(data):
            return
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except OSError as e:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            raise RecordStoreUnavailable(f"cannot write the {kind} file {target} ({e.strerror or e}); nothing was "
                                         f"written: free space in {self.inputs_dir} or fix its permissions") from e

    def _evict(self) -> None:
        """Keep at most ``keep_inputs`` files: the least recently referenced go, their references cleared."""
        moved: list[tuple[Path, Path]] = []
        try:
            with self._transaction(write=True, doing="applying keep_inputs") as conn:
                if self.dialect == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _EVICT_LOCK_KEY})
                n = conn.execute(sa.select(sa.func.count()).select_from(files_table)).scalar_one()
                excess = n - self.keep_inputs
                if excess <= 0:
                    return
                q = (sa.select(files_table.c.path)
                     .order_by(files_table.c.last_record_id, files_table.c.path).limit(excess))
                if self.dialect == "postgresql":
                    q = q.with_for_update()
                paths = list(conn.execute(q).scalars())
                for chunk in _chunks(paths):
                    for column in (records_table.c.input_file, records_table.c.heatmap_file):
                        conn.execute(records_table.update().where(column.in_(chunk)).values({column.name: None}))
                    conn.execute(files_table.delete().where(files_table.c.path.in_(chunk)))
                for rel in paths:  # renamed before the commit, so a writer waiting on these rows rewrites them
                    target = self.inputs_dir / rel
                    trash = target.with_name(f".{target.name}.{uuid.uuid4().hex}.evicted")
                    try:
                        os.replace(target, trash)
                    except FileNotFoundError:
                        continue
                    moved.append((trash, target))
        except BaseException:
            for trash, target in moved:  # not committed: the rows still reference the files
                try:
                    os.replace(trash, target)
                except OSError:
                    pass
            raise
        for trash, _ in moved:
            trash.unlink(missing_ok=True)

    # --- reading ----------------------------------------------------------------------------------------------------

    def _to_dict(self, row: Any) -> dict:
        d = {c: row[c] for c in EXPORT_COLUMNS}
        d["id"] = int(d["id"])
        d["created"] = d["created"].isoformat()
        for c in ("input_file", "heatmap_file"):
            if d[c] is not None and self.inputs_dir is not None:
                d[c] = str(self.inputs_dir / d[c])
        return d

    def _where(self, *, model=None, source=None, label=None, since=None, until=None) -> list:
        since, until = as_utc(since, "since"), as_utc(until, "until")
        if since is not None and until is not None and since > until:
            raise ConfigError(f"since ({since.isoformat()}) is after until ({until.isoformat()}): swap them")
        conds = []
        for name, value in (("model", model), ("source", source), ("label", label)):
            if value is not None:
                if not isinstance(value, str):
                    raise ConfigError(f"{name} must be a string to filter on, not {type(value).__name__}")
                conds.append(records_table.c[name] == value)
        if since is not None:
            conds.append(records_table.c.created >= since)
        if until is not None:
            conds.append(records_table.c.created < until)
        return conds

    def get(self, record_id: int) -> dict | None:
        """The record with this id, or None."""
        if isinstance(record_id, bool) or not isinstance(record_id, int):
            raise ConfigError(f"record_id must be an integer, not {type(record_id).__name__}")
        with self._transaction(write=False, doing="reading a record") as conn:
            row = conn.execute(sa.select(records_table).where(records_table.c.id == record_id)).mappings().first()
        return None if row is None else self._to_dict(row)

    def query(self, *, model: str | None = None, source: str | None = None, label: str | None = None,
              since: datetime | None = None, until: datetime | None = None, limit: int = 100,
              before_id: int | None = None) -> list[dict]:
        """Records newest first, at most ``limit`` (capped at 1000); the next page: ``before_id=<last id>``."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"limit must be a whole number >= 1, not {limit!r}")
        conds = self._where(model=model, source=source, label=label, since=since, until=until)
        if before_id is not None:
            if isinstance(before_id, bool) or not isinstance(before_id, int):
                raise ConfigError(f"before_id must be a record id (an integer), not {before_id!r}")
            conds.append(records_table.c.id < before_id)
        q = sa.select(records_table).where(*conds).order_by(records_table.c.id.desc()).limit(min(limit, MAX_LIMIT))
        with self._transaction(write=False, doing="querying records") as conn:
            rows = conn.execute(q).mappings().all()
        return [self._to_dict(r) for r in rows]

    def count(self, *, model=None, source=None, label=None, since=None, until=None) -> int:
        """How many records match the filters of :meth:`query`."""
        conds = self._where(model=model, source=source, label=label, since=since, until=until)
        with self._transaction(write=False, doing="counting records") as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(records_table).where(*conds))
                       .scalar_one())

    def summary(self, since: datetime | None = None) -> list[dict]:
        """Per (model, source, label): ``count`` and ``mean_score`` (None when no record has a score)."""
        c = records_table.c
        q = (sa.select(c.model, c.source, c.label, sa.func.count().label("count"),
                       sa.func.avg(c.score).label("mean_score"))
             .where(*self._where(since=since)).group_by(c.model, c.source, c.label))
        with self._transaction(write=False, doing="summarising records") as conn:
            rows = conn.execute(q).mappings().all()
        out = [{"model": r["model"], "source": r["source"], "label": r["label"], "count": int(r["count"]),
                "mean_score": None if r["mean_score"] is None else float(r["mean_score"])} for r in rows]
        return sorted(out, key=lambda d: (d["model"], d["source"] is not None, d["source"] or "",
                                          d["label"] is not None, d["label"] or ""))

    def ping(self) -> bool:
        """Whether the database answers now; never raises."""
        if self._closed:
            return False
        try:
            with self._lock if self._lock is not None else nullcontext(), self._engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1").scalar()
            return True
        except Exception:  # noqa: BLE001 - a health check answers False, whatever went wrong
            return False

    # --- export -----------------------------------------------------------------------------------------------------

    def export(self, out: str | Path, *, fmt: str = "csv", since=None, until=None, model=None) -> int:
        """Write the matching records, oldest first, to CSV or Parquet in chunks; the number of rows written.
        The file appears complete or not at all (written beside it, then renamed)."""
        fmt = fmt.lower().strip() if isinstance(fmt, str) else fmt
        if fmt not in EXPORT_FORMATS:
            raise ConfigError(f"unknown export format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
        out = Path(out).expanduser()
        if out.is_dir():
            raise ConfigError(f"export target {out} is a folder: give a file name, e.g. {out / ('records.' + fmt)}")
        parent = out.parent if str(out.parent) else Path(".")
        if not parent.is_dir():
            raise ConfigError(f"cannot write {out}: the folder {parent} does not exist (create it first)")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(f"cannot write {out}: the folder {parent} is not writable")
        conds = self._where(model=model, since=since, until=until)
        with self._transaction(write=False, doing="exporting records") as conn:  # the records as of now
            top = conn.execute(sa.select(sa.func.max(records_table.c.id))).scalar()
        tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
        try:
            chunks = self._export_chunks(conds, int(top or 0))
            n = write_csv(tmp, chunks) if fmt == "csv" else write_parquet(tmp, chunks)
            os.replace(tmp, out)
        except OSError as e:
            raise ConfigError(f"cannot write {out} ({e.strerror or e}); choose a writable place with free space") \
                from None
        finally:
            tmp.unlink(missing_ok=True)
        return n

    def _export_chunks(self, conds: list, top: int) -> Iterator[list[dict]]:
        last = 0
        while last < top:
            q = (sa.select(records_table).where(*conds, records_table.c.id > last, records_table.c.id <= top)
                 .order_by(records_table.c.id).limit(EXPORT_CHUNK))
            with self._transaction(write=False, doing="exporting records") as conn:
                rows = conn.execute(q).mappings().all()
            if not rows:
                return
            yield [self._to_dict(r) for r in rows]
            last = int(rows[-1]["id"])

    def close(self) -> None:
        """Release the database connections; idempotent."""
        if not self._closed:
            self._closed = True
            self._engine.dispose()


def export_records(url: str, out: str | Path, fmt: str = "csv", since=None, until=None, model=None) -> int:
    """``shopfloor records export``: write the records of the store at ``url`` to ``out``; rows written."""
    u = normalise_url(url)
    if u.get_backend_name() == "sqlite":
        path = sqlite_file(u)
        if path is None:
            raise ConfigError("an in-memory SQLite database has no records to export: give the database file")
        if not path.is_file():
            raise DataError(f"no record database at {path}: check the path (the server's --records URL)")
    store = RecordStore(url)
    try:
        return store.export(out, fmt=fmt, since=since, until=until, model=model)
    finally:
        store.close()


# result fields that give a record its score, first found wins
SCORE_FIELDS = ("score", "probability", "rul", "confidence")


def label_and_score(row: dict[str, Any]) -> tuple[str | None, float | None]:
    """A record's label and score from a ``predict`` row: its ``label`` (or failure/normal from a boolean
    ``failure``) and the first numeric field of :data:`SCORE_FIELDS`."""
    label = row.get("label")
    if label is None and isinstance(row.get("failure"), bool):
        label = "failure" if row["failure"] else "normal"
    score = next((float(row[k]) for k in SCORE_FIELDS if isinstance(row.get(k), (int, float))
                  and not isinstance(row.get(k), bool)), None)
    return (None if label is None else str(label)), score
