"""The prediction record store, on SQLite and on a real PostgreSQL (a fresh schema per test, dropped after).

PostgreSQL: $SHOPFLOOR_TEST_PG_URL, default postgresql://postgres@127.0.0.1:5432/test; its tests are skipped,
with the reason, when that server does not answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import sqlite3
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from shopfloor.core.errors import ConfigError, DataError, ShopfloorError
from shopfloor.plant import records as records_module
from shopfloor.plant.records import RecordStore, RecordStoreUnavailable, export_records

PG_URL = os.environ.get("SHOPFLOOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
FIELDS = {"id", "created", "model", "artifact_hash", "source", "input_fingerprint", "label", "score",
          "latency_ms", "key", "result", "input_file", "heatmap_file"}

_pg_state: dict = {}


def _pg_admin():
    """An autocommit psycopg connection to the test server, or a skip saying why there is none."""
    import psycopg

    if "error" not in _pg_state:
        try:
            psycopg.connect(PG_URL, connect_timeout=3).close()
            _pg_state["error"] = None
        except Exception as e:  # noqa: BLE001 - any failure means: no server to test against
            _pg_state["error"] = " ".join(str(e).split())[:200]
    if _pg_state["error"]:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL} ({_pg_state['error']}); set SHOPFLOOR_TEST_PG_URL")
    return psycopg.connect(PG_URL, autocommit=True)


def _with_query(url: str, extra: str) -> str:
    return url + ("&" if "?" in url else "?") + extra


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    """A URL to an empty database: a SQLite file, or a fresh PostgreSQL schema (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'records.db'}"
        return
    schema = f"shopfloor_test_{uuid.uuid4().hex[:12]}"
    with _pg_admin() as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield _with_query(PG_URL, f"options=-csearch_path%3D{schema}")
    finally:
        with _pg_admin() as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def store(url):
    s = RecordStore(url)
    yield s
    s.close()


def _rec(i: int = 0, **kw) -> dict:
    rec = {"model": f"model-{i % 2}", "artifact_hash": "a" * 64, "result": {"label": "ok", "i": i},
           "input_fingerprint": f"fp{i}", "source": f"line-{i % 3}", "label": "ok" if i % 4 else "defect",
           "score": i / 10, "latency_ms": 1.5}
    rec.update(kw)
    return rec


# --- add / get / query -------------------------------------------------------------------------------------------

def test_add_and_get_round_trip(store):
    before = datetime.now(timezone.utc)
    rid, created = store.add(model="cls", artifact_hash="h" * 64, input_fingerprint="sha256:ab",
                             result={"label": "scratch", "probs": np.array([0.25, 0.75], dtype=np.float32),
                                     "n": np.int64(3), "nested": {"nan": float("nan"), "l": [1, "x", None]}},
                             source="cam-1", label="scratch", score=np.float32(0.75), latency_ms=12.5, key="t/1")
    assert created is True and isinstance(rid, int)
    rec = store.get(rid)
    assert set(rec) == FIELDS
    assert rec["id"] == rid and rec["model"] == "cls" and rec["artifact_hash"] == "h" * 64
    assert rec["source"] == "cam-1" and rec["label"] == "scratch" and rec["key"] == "t/1"
    assert rec["score"] == pytest.approx(0.75) and rec["latency_ms"] == 12.5
    assert rec["result"] == {"label": "scratch", "probs": [0.25, 0.75], "n": 3,
                             "nested": {"nan": None, "l": [1, "x", None]}}
    assert rec["input_file"] is None and rec["heatmap_file"] is None
    ts = datetime.fromisoformat(rec["created"])
    assert ts.utcoffset() == timedelta(0) and before - timedelta(seconds=1) <= ts <= datetime.now(timezone.utc)
    assert store.get(rid + 1000) is None


def test_invalid_records_are_refused_and_nothing_is_written(store):
    with pytest.raises(DataError, match="result must be a dict"):
        store.add(model="m", artifact_hash="a", input_fingerprint="f", result=[1, 2])
    with pytest.raises(DataError, match="model must not be empty"):
        store.add(model=" ", artifact_hash="a", input_fingerprint="f", result={})
    with pytest.raises(DataError, match="key is 501 characters"):
        store.add(model="m", artifact_hash="a", input_fingerprint="f", result={}, key="k" * 501)
    with pytest.raises(DataError, match="score must be a number"):
        store.add(model="m", artifact_hash="a", input_fingerprint="f", result={}, score="high")
    with pytest.raises(DataError, match="cannot be stored as JSON"):
        store.add(model="m", artifact_hash="a", input_fingerprint="f", result={"x": object()})
    # one bad record refuses the whole batch
    with pytest.raises(DataError, match=r"record 2: unknown fields \['colour'\]"):
        store.add_many([_rec(0), _rec(1), {**_rec(2), "colour": "red"}])
    assert store.count() == 0


def test_query_filters_pagination_and_count(store):
    ids = [store.add(**_rec(i))[0] for i in range(10)]
    time.sleep(0.01)
    middle = datetime.now(timezone.utc)
    time.sleep(0.01)
    ids += [rid for rid, _ in store.add_many([_rec(i) for i in range(10, 25)])]
    assert len(set(ids)) == 25 and ids == sorted(ids)

    assert [r["id"] for r in store.query()] == ids[::-1]  # newest first
    pages, before = [], None
    while True:
        page = store.query(limit=7, before_id=before)
        if not page:
            break
        assert len(page) <= 7
        pages += [r["id"] for r in page]
        before = page[-1]["id"]
    assert pages == ids[::-1]

    assert [r["id"] for r in store.query(model="model-1")] == [i for n, i in enumerate(ids) if n % 2][::-1]
    assert {r["source"] for r in store.query(source="line-2")} == {"line-2"}
    assert len(store.query(model="model-0", label="defect")) == len([n for n in range(25) if n % 4 == 0])
    assert [r["id"] for r in store.query(since=middle)] == ids[10:][::-1]
    assert [r["id"] for r in store.query(until=middle)] == ids[:10][::-1]
    assert [r["id"] for r in store.query(since=middle.replace(tzinfo=None))] == ids[10:][::-1]  # naive = UTC
    assert store.query(model="no-such-model") == []

    assert store.count() == 25 and store.count(model="model-0") == 13 and store.count(source="line-0") == 9
    assert store.count(label="defect") == 7 and store.count(since=middle) == 15 and store.count(until=middle) == 10
    assert store.count(model="model-1", source="line-1", label="ok") == len(
        [n for n in range(25) if n % 2 == 1 and n % 3 == 1 and n % 4])


def test_query_limit_is_capped_at_1000(store):
    store.add_many([_rec(i) for i in range(1005)])
    assert len(store.query(limit=5000)) == 1000
    assert len(store.query(limit=3)) == 3
    with pytest.raises(ConfigError, match="limit"):
        store.query(limit=0)


def test_summary_per_model_source_label(store):
    store.add_many([_rec(0, score=0.2), _rec(0, score=0.4), _rec(0, score=None), _rec(1, score=0.9),
                    _rec(0, source=None, score=None)])
    rows = store.summary()
    assert rows == [
        {"model": "model-0", "source": None, "label": "defect", "count": 1, "mean_score": None},
        {"model": "model-0", "source": "line-0", "label": "defect", "count": 3, "mean_score": pytest.approx(0.3)},
        {"model": "model-1", "source": "line-1", "label": "ok", "count": 1, "mean_score": pytest.approx(0.9)},
    ]
    assert store.summary(since=datetime.now(timezone.utc) + timedelta(minutes=1)) == []


# --- idempotency --------------------------------------------------------------------------------------------------

def test_same_key_twice_makes_one_record(store):
    first = store.add(**_rec(1, key="plant/line1/cam:42"))
    again = store.add(**_rec(2, key="plant/line1/cam:42"))  # a redelivery: the first record stands
    assert first[1] is True and again == (first[0], False)
    assert store.count() == 1 and store.get(first[0])["input_fingerprint"] == "fp1"
    # in a batch: against the stored record and within the batch itself
    out = store.add_many([_rec(3, key="plant/line1/cam:42"), _rec(4, key="new"), _rec(5, key="new"), _rec(6)])
    assert out[0] == (first[0], False) and out[1][1] is True and out[2] == (out[1][0], False) and out[3][1]
    assert store.count() == 3


def test_concurrent_writers_never_duplicate_a_key(store):
    keys = [f"topic/{k}" for k in range(100) for _ in range(4)]
    random.Random(0).shuffle(keys)
    barrier = threading.Barrier(8)
    results: list[list[tuple[str, int, bool]]] = [[] for _ in range(8)]
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            barrier.wait()
            for key in keys[t * 50:(t + 1) * 50]:
                rid, created = store.add(**_rec(t, key=key))
                results[t].append((key, rid, created))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors
    flat = [r for rs in results for r in rs]
    assert len(flat) == 400
    assert store.count() == 100
    assert sum(created for _, _, created in flat) == 100
    ids_by_key: dict[str, set[int]] = {}
    for key, rid, _ in flat:
        ids_by_key.setdefault(key, set()).add(rid)
    assert len(ids_by_key) == 100 and all(len(v) == 1 for v in ids_by_key.values())


# --- SQLite settings, migrations ----------------------------------------------------------------------------------

def test_sqlite_uses_wal_busy_timeout_and_foreign_keys(tmp_path):
    path = tmp_path / "wal.db"
    with RecordStore(f"sqlite:///{path}") as store:
        store.add(**_rec(0))
        with store._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        raw = sqlite3.connect(path)
        try:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # stored in the file
        finally:
            raw.close()


def test_migrations_create_the_schema_and_are_a_no_op_when_reopened(url, caplog):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(records_module.alembic_config()).get_current_head()
    caplog.set_level(logging.INFO, logger="alembic")
    store = RecordStore(url)
    try:
        assert "Running upgrade  -> 0001" in caplog.text
        rid, _ = store.add(**_rec(0))
        with store._engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            assert {"shopfloor_records", "shopfloor_record_files", records_module.VERSION_TABLE} <= tables
            ctx = MigrationContext.configure(conn, opts={"version_table": records_module.VERSION_TABLE})
            assert ctx.get_current_revision() == head
            assert compare_metadata(ctx, records_module.metadata) == []  # migrations == the code's schema
    finally:
        store.close()
    caplog.clear()
    with RecordStore(url) as again:
        assert "Running upgrade" not in caplog.text
        assert again.count() == 1 and again.get(rid)["model"] == "model-0"


def test_a_database_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "newer.db"
    RecordStore(f"sqlite:///{path}").close()
    raw = sqlite3.connect(path)
    raw.execute(f"UPDATE {records_module.VERSION_TABLE} SET version_num = 'ffff'")
    raw.commit()
    raw.close()
    with pytest.raises(ConfigError, match="newer shopfloor"):
        RecordStore(f"sqlite:///{path}")


# --- export --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_round_trip(store, tmp_path, fmt, monkeypatch):
    monkeypatch.setattr(records_module, "EXPORT_CHUNK", 4)  # several chunks
    store.add_many([_rec(i, key=f"k{i}") for i in range(9)] + [_rec(9, source=None, label=None, score=None)])
    out = tmp_path / f"records.{fmt}"
    assert store.export(out, fmt=fmt) == 10
    df = pd.read_csv(out, keep_default_na=False, na_values=[""]) if fmt == "csv" else pd.read_parquet(out)
    expected = store.query()[::-1]  # oldest first in the file
    assert list(df.columns) == list(records_module.EXPORT_COLUMNS) and len(df) == 10
    for row, rec in zip(df.to_dict("records"), expected):
        assert int(row["id"]) == rec["id"] and row["model"] == rec["model"]
        created = row["created"] if fmt == "parquet" else pd.Timestamp(row["created"])
        assert created == pd.Timestamp(rec["created"])
        assert json.loads(row["result"]) == rec["result"]
        for col in ("source", "label", "score", "key", "artifact_hash", "input_fingerprint", "latency_ms"):
            assert (pd.isna(row[col]) and rec[col] is None) or row[col] == rec[col]
    assert store.export(tmp_path / f"m1.{fmt}", fmt=fmt, model="model-1") == 5
    assert export_records(store_url(store), tmp_path / f"again.{fmt}", fmt=fmt, model="model-0") == 5


def store_url(store: RecordStore) -> str:
    return store._engine.url.render_as_string(hide_password=False)


def test_export_errors(store, tmp_path):
    with pytest.raises(ConfigError, match="unknown export format 'xlsx'"):
        store.export(tmp_path / "r.xlsx", fmt="xlsx")
    with pytest.raises(ConfigError, match="does not exist"):
        store.export(tmp_path / "missing" / "r.csv")
    with pytest.raises(ConfigError, match="is a folder"):
        store.export(tmp_path)
    with pytest.raises(DataError, match="no record database"):
        export_records(f"sqlite:///{tmp_path / 'nothing.db'}", tmp_path / "r.csv")
    assert list(tmp_path.glob("*.csv")) == []


# --- input files ---------------------------------------------------------------------------------------------------

def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_inputs_are_content_addressed(url, tmp_path):
    inputs = tmp_path / "inputs"
    with RecordStore(url, inputs_dir=inputs) as store:
        data = b"part 42 image bytes"
        digest = hashlib.sha256(data).hexdigest()
        a, _ = store.add(**_rec(0, input_bytes=data, heatmap_png=PNG))
        b, _ = store.add(**_rec(1, input_bytes=data))
        ra, rb = store.get(a), store.get(b)
        expected = inputs / digest[:2] / digest[2:4] / digest
        assert ra["input_file"] == rb["input_file"] == str(expected)
        assert expected.read_bytes() == data
        png_digest = hashlib.sha256(PNG).hexdigest()
        assert ra["heatmap_file"] == str(inputs / png_digest[:2] / png_digest[2:4] / f"{png_digest}.png")
        assert _files(inputs) == sorted([expected, Path(ra["heatmap_file"])])  # same bytes -> one file
        with pytest.raises(DataError, match="not a PNG"):
            store.add(**_rec(2, heatmap_png=b"GIF89a..."))


def test_keep_inputs_retention(url, tmp_path):
    inputs = tmp_path / "inputs"
    with RecordStore(url, inputs_dir=inputs, keep_inputs=3) as store:
        ids = [store.add(**_rec(i, input_bytes=f"image {i}".encode()))[0] for i in range(6)]
        assert len(_files(inputs)) == 3
        recs = [store.get(i) for i in ids]
        assert [r["input_file"] is None for r in recs] == [True] * 3 + [False] * 3  # oldest files went first
        assert all(Path(r["input_file"]).read_bytes() == f"image {n}".encode() for n, r in enumerate(recs) if n >= 3)
        assert store.count() == 6  # the records stay
        again, _ = store.add(**_rec(9, input_bytes=b"image 0"))  # an evicted input seen again is kept again
        assert Path(store.get(again)["input_file"]).read_bytes() == b"image 0"
        assert len(_files(inputs)) == 3 and store.get(ids[3])["input_file"] is None


def test_a_failed_file_write_writes_no_record(url, tmp_path):
    inputs = tmp_path / "inputs"
    with RecordStore(url, inputs_dir=inputs) as store:
        data = b"cannot be stored"
        digest = hashlib.sha256(data).hexdigest()
        (inputs / digest[:2]).write_text("a file where the fan-out folder should be")
        with pytest.raises(RecordStoreUnavailable, match="nothing was written"):
            store.add_many([_rec(0, input_bytes=b"fine"), _rec(1, input_bytes=data, key="k")])
        assert store.count() == 0


# --- errors ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["", "not a url", "mysql://u@h/db", "postgresql+asyncpg://u@h/db", 42])
def test_bad_urls_are_config_errors(bad):
    with pytest.raises(ConfigError, match="sqlite:///|postgresql://"):
        RecordStore(bad)


def test_unwritable_sqlite_paths_are_config_errors(tmp_path):
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        RecordStore(f"sqlite:///{a_file / 'records.db'}")
    with pytest.raises(ConfigError, match="does not exist"):
        RecordStore(f"sqlite:///{tmp_path / 'no' / 'such' / 'records.db'}")
    with pytest.raises(ConfigError, match="is a folder"):
        RecordStore(f"sqlite:///{tmp_path}")
    with pytest.raises(ConfigError, match="keep_inputs"):
        RecordStore(f"sqlite:///{tmp_path / 'r.db'}", keep_inputs=3)


def test_unreachable_postgresql_is_a_config_error():
    started = time.monotonic()
    with pytest.raises(ConfigError, match="cannot open the record database .*127.0.0.1:1") as info:
        RecordStore("postgresql://postgres@127.0.0.1:1/test")
    assert "running and reachable" in str(info.value) and time.monotonic() - started < 10


def test_since_after_until_is_a_config_error(store, tmp_path):
    now = datetime.now(timezone.utc)
    for call in (lambda: store.query(since=now, until=now - timedelta(hours=1)),
                 lambda: store.count(since=now, until=now - timedelta(hours=1)),
                 lambda: store.export(tmp_path / "r.csv", since=now, until=now - timedelta(hours=1))):
        with pytest.raises(ConfigError, match="since .* is after until"):
            call()


def test_ping_and_a_database_that_goes_away_after_open():
    with _pg_admin() as admin:
        name = f"shopfloor_test_{uuid.uuid4().hex[:12]}"
        admin.execute(f'CREATE DATABASE "{name}"')
        store = None
        try:
            store = RecordStore(PG_URL.rsplit("/", 1)[0] + f"/{name}")
            assert store.ping() is True
            store.add(**_rec(0))
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')  # kills the store's connections too
            assert store.ping() is False
            with pytest.raises(RecordStoreUnavailable, match="did not answer while adding a record") as info:
                store.add(**_rec(1))
            assert isinstance(info.value, ShopfloorError) and "nothing was written" in str(info.value)
        finally:
            if store is not None:
                store.close()
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert store.ping() is False  # closed


def test_closed_store(tmp_path):
    store = RecordStore(f"sqlite:///{tmp_path / 'r.db'}")
    assert store.ping() is True
    store.close()
    store.close()
    assert store.ping() is False
    with pytest.raises(RecordStoreUnavailable, match="closed"):
        store.add(**_rec(0))
