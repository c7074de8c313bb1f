"""The dashboard's endpoints without a browser: page and assets, API keys, stored files (and nothing else), the
event stream's cursor across writers (SQLite and PostgreSQL commit order), the rate buckets.

The page itself, in Chromium, is tests/plant/test_dashboard_browser.py.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from shopfloor.plant import dashboard  # noqa: E402
from shopfloor.plant.dashboard import EventCursor  # noqa: E402
from shopfloor.plant.records import RecordStore, records_table  # noqa: E402
from shopfloor.plant.server import ServerSettings, create_app, hash_key  # noqa: E402

KEY = "dashboard-test-key-0123456789"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32


def _record(i: int = 0, **fields) -> dict:
    return {"model": "surface", "artifact_hash": "a" * 64, "result": {"label": "good", "score": 0.1 * i},
            "input_fingerprint": f"{i:064x}", "source": "line1/cam2", "label": "good", "score": 0.1 * i,
            **fields}


@pytest.fixture
def paths(tmp_path):
    return {"db": f"sqlite:///{tmp_path / 'records.db'}", "inputs": tmp_path / "inputs"}


def _client(paths, **settings) -> TestClient:
    app = create_app(ServerSettings(model_dirs=[], db=paths["db"], inputs_dir=paths["inputs"], **settings))
    return TestClient(app, raise_server_exceptions=False)


def _is_problem(response) -> bool:
    return response.headers.get("content-type", "").startswith("application/problem+json")


def test_page_and_assets_are_served_by_the_package_with_a_strict_policy(paths):
    with _client(paths) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
        html = page.text
        assert 'src="static/dashboard.js"' in html and 'href="static/dashboard.css"' in html
        for name, kind in (("dashboard.js", "javascript"), ("dashboard.css", "text/css")):
            asset = client.get(f"/static/{name}")
            assert asset.status_code == 200 and kind in asset.headers["content-type"]
            text = asset.text.replace("http://www.w3.org/2000/svg", "")  # the SVG namespace is a name, not a fetch
            assert "http://" not in text and "https://" not in text and "@import" not in text
        for bad in ("/static/../records.py", "/static/index.html.bak", "/static/%2e%2e%2frecords.py"):
            r = client.get(bad)
            assert r.status_code == 404, bad
        assert "/v1/events" not in client.get("/openapi.json").json()["paths"]  # a never-ending response
        assert "/v1/dashboard/stats" in client.get("/openapi.json").json()["paths"]


def test_page_is_open_but_data_needs_the_api_key(paths):
    with _client(paths, api_key_hashes=[hash_key(KEY)]) as client:
        assert client.get("/").status_code == 200
        assert client.get("/static/dashboard.js").status_code == 200
        for path in ("/v1/dashboard/stats", "/v1/events", "/v1/records/1/files/input"):
            denied = client.get(path)
            assert denied.status_code == 401 and _is_problem(denied) and "Bearer" in denied.json()["detail"], path
        ok = client.get("/v1/dashboard/stats", headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200 and ok.json()["last_id"] == 0


def test_files_endpoint_serves_only_files_that_records_reference(paths, tmp_path):
    with _client(paths) as client:
        with RecordStore(paths["db"], inputs_dir=paths["inputs"]) as store:  # as another worker writes them
            (with_files, _), (bare, _), (jpeg, _), (binary, _), (tampered, _) = store.add_many([
                _record(1, input_bytes=PNG, heatmap_png=PNG), _record(2), _record(3, input_bytes=JPEG),
                _record(4, input_bytes=b"\x00\x01signal"), _record(5, input_bytes=PNG + b"x")])
        (tmp_path / "secret.png").write_bytes(PNG)
        engine = sa.create_engine(paths["db"])
        with engine.begin() as conn:  # a record whose reference was tampered with, pointing out of inputs/
            conn.execute(records_table.update().where(records_table.c.id == tampered)
                         .values(input_file="../secret.png"))
        engine.dispose()
        r = client.get(f"/v1/records/{with_files}/files/input")
        assert r.status_code == 200 and r.content == PNG and r.headers["content-type"] == "image/png"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert client.get(f"/v1/records/{with_files}/files/heatmap").content == PNG
        assert client.get(f"/v1/records/{jpeg}/files/input").headers["content-type"] == "image/jpeg"
        blob = client.get(f"/v1/records/{binary}/files/input")
        assert blob.headers["content-type"] == "application/octet-stream"
        assert blob.headers["content-disposition"].startswith("attachment")
        for path, words in ((f"/v1/records/{bare}/files/input", "--inputs-dir"), ("/v1/records/999/files/input",
                            "no record 999"), (f"/v1/records/{tampered}/files/input", "not in the inputs folder")):
            r = client.get(path)
            assert r.status_code == 404 and _is_problem(r) and words in r.json()["detail"], (path, r.text)
        for path in ("/v1/records/0/files/input", f"/v1/records/{2**63}/files/input", "/v1/records/1/files/x",
                     "/v1/records/1/files/..%2F..%2Fetc%2Fpasswd"):
            r = client.get(path)
            assert 400 <= r.status_code < 500 and _is_problem(r), (path, r.text)
        # a file removed from disk (by hand, or --keep-inputs in another process) is a 404, not a 500
        for f in paths["inputs"].rglob("*"):
            if f.is_file():
                f.unlink()
        gone = client.get(f"/v1/records/{with_files}/files/heatmap")
        assert gone.status_code == 404 and "no longer on disk" in gone.json()["detail"]


def test_event_stream_sends_records_from_another_writer_in_order(paths, monkeypatch):
    monkeypatch.setattr(dashboard, "POLL_S", 0.05)
    monkeypatch.setattr(dashboard, "STREAM_MAX_S", 1.5)
    with _client(paths) as client:
        other = RecordStore(paths["db"], inputs_dir=paths["inputs"])  # a second worker / an MQTT worker
        try:
            (before, _), = other.add_many([_record(0)])

            def later():
                time.sleep(0.4)
                other.add_many([_record(i, label="anomalous" if i == 2 else "good") for i in range(1, 4)])

            writer = threading.Thread(target=later)
            writer.start()
            body = client.get("/v1/events").text  # from now: the record made before is not sent
            writer.join()
            resumed = client.get("/v1/events", headers={"Last-Event-ID": str(before)}).text
        finally:
            other.close()
    events = _events(body)
    assert events[0][0] == "hello" and events[0][1]["last_id"] == before
    records = [data for name, data in events if name == "record"]
    assert [r["id"] for r in records] == [before + 1, before + 2, before + 3]
    assert records[1]["label"] == "anomalous" and records[0]["source"] == "line1/cam2"
    assert events[-1][0] == "bye" and events[-1][1]["last_id"] == before + 3
    assert [d["id"] for n, d in _events(resumed) if n == "record"] == [before + 1, before + 2, before + 3]


def _events(body: str) -> list[tuple[str, dict]]:
    out = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        fields = dict(line.split(": ", 1) for line in lines if ": " in line)
        if "event" in fields:
            out.append((fields["event"], json.loads(fields["data"])))
    return out


class _FakeStore:
    """query() over a list of ids, as RecordStore answers it (newest first, before_id exclusive)."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.queries = 0

    def query(self, *, limit: int, before_id: int | None = None) -> list[dict]:
        self.queries += 1
        ids = sorted((i for i in self.ids if before_id is None or i < before_id), reverse=True)[:limit]
        return [{"id": i} for i in ids]


def test_cursor_finds_ids_committed_out_of_order_and_notes_gaps(monkeypatch):
    store = _FakeStore()
    cursor = EventCursor(0)
    assert cursor.poll(store) == ([], None)
    store.ids += [1, 2, 4]  # 3 is still being committed (PostgreSQL hands out ids before commits)
    got, gap = cursor.poll(store)
    assert [r["id"] for r in got] == [1, 2, 4] and gap is None and set(cursor.holes) == {3}
    store.ids += [3, 5]
    got, _ = cursor.poll(store)
    assert [r["id"] for r in got] == [3, 5] and not cursor.holes
    store.queries = 0
    assert cursor.poll(store) == ([], None) and store.queries == 1  # idle: one small query per poll

    monkeypatch.setattr(dashboard, "MAX_BACKLOG", 10)
    monkeypatch.setattr(dashboard, "PAGE", 4)
    store.ids += list(range(6, 40))
    got, gap = cursor.poll(store)
    assert [r["id"] for r in got] == list(range(28, 40))  # the newest whole pages
    assert gap["after_id"] == 5 and gap["before_id"] == 28 and "6..27" in gap["detail"]
    assert not cursor.holes and cursor.last_id == 39

    monkeypatch.setattr(dashboard, "HOLE_TTL_S", 0.0)
    store.ids += [41]
    cursor.poll(store)
    assert set(cursor.holes) == {40}
    time.sleep(0.01)
    store.ids += [40]  # too late: it was given up (a rolled-back transaction leaves such a hole for ever)
    assert cursor.poll(store) == ([], None) and not cursor.holes


def test_cursor_on_postgresql_sees_a_record_committed_after_a_later_one():
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres", autocommit=True,
                                connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}")
    name = f"shopfloor_dash_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE DATABASE {name}")
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        with RecordStore(url) as store:
            cursor = EventCursor(0)
            engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
            try:
                with engine.connect() as slow:
                    tx = slow.begin()
                    row = {**_record(1), "created": datetime.now(timezone.utc)}
                    row.pop("input_bytes", None)
                    early = slow.execute(records_table.insert().values(**row)).inserted_primary_key[0]
                    (late, _), = store.add_many([_record(2)])  # takes the next id, commits first
                    assert late > early
                    got, _ = cursor.poll(store)
                    assert [r["id"] for r in got] == [late] and early in cursor.holes
                    tx.commit()
                got, _ = cursor.poll(store)
                assert [r["id"] for r in got] == [early] and not cursor.holes
            finally:
                engine.dispose()
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def test_stats_count_per_model_and_source_per_bucket(paths):
    with _client(paths) as client:
        with RecordStore(paths["db"]) as store:
            store.add_many([_record(i) for i in range(3)] + [_record(9, source=None, model="milling",
                                                                     label="failure")])
        stats = client.get("/v1/dashboard/stats?window_s=600&bucket_s=60").json()
        assert stats["buckets"] == 10 and stats["bucket_s"] == 60 and stats["last_id"] == 4
        assert stats["start"] <= stats["now"] < stats["start"] + 600
        series = {(s["model"], s["source"]): s["counts"] for s in stats["series"]}
        assert sum(series[("surface", "line1/cam2")]) == 3 and sum(series[("milling", None)]) == 1
        assert series[("surface", "line1/cam2")][-1] >= 1  # the last bucket holds now
        totals = {(t["model"], t["label"]): t["count"] for t in stats["totals"]}
        assert totals == {("surface", "good"): 3, ("milling", "failure"): 1}
        assert "failure" in stats["alarm_labels"] and stats["partial"] is False
        bad = client.get("/v1/dashboard/stats?window_s=86400&bucket_s=1")
        assert bad.status_code == 422 and _is_problem(bad) and "buckets" in bad.json()["detail"]


def test_package_data_ships_the_assets():
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert "static/*" in pyproject["tool"]["setuptools"]["package-data"]["shopfloor.plant"]
    static = Path(dashboard.__file__).with_name("static")
    assert {p.name for p in static.iterdir()} >= {"index.html", "dashboard.js", "dashboard.css"}
