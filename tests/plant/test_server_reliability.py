"""The model server under stress, with real services on loopback only and bounded loops: 50 concurrent clients,
a restart under load, the PostgreSQL record store going away and coming back, and schemathesis against the
server's own OpenAPI (no 5xx; every error application/problem+json with a message and no stack trace)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from shopfloor.plant.records import RecordStore  # noqa: E402
from shopfloor.plant.server import ServerSettings, create_app  # noqa: E402

SHOPFLOOR = str(Path(sys.executable).parent / "shopfloor")
QUIET = {"progress": False, "device": "cpu"}
PROBLEM = "application/problem+json"
BOOT_S = 120  # longest wait for `shopfloor serve` to answer /readyz (imports torch + lightning: ~15 s idle)


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny models of the three input kinds: images (anomaly detection), tables, signals."""
    from shopfloor.inspection.anomaly import AnomalyDetection
    from shopfloor.inspection.synthetic import make_anomaly_dataset
    from shopfloor.maintenance.failure_prediction import FailurePrediction
    from shopfloor.maintenance.failure_prediction.simulator import make_process_records
    from shopfloor.maintenance.fault_diagnosis import FaultDiagnosis
    from shopfloor.maintenance.fault_diagnosis.simulator import write_bearing_dataset

    root = tmp_path_factory.mktemp("reliability")
    images = make_anomaly_dataset(root / "images", n_train=12, n_test_good=2, n_test_per_defect=1, size=64, seed=1)
    AnomalyDetection(image_size=64, training={**QUIET, "batch_size": 8}).fit(images, out_dir=root / "surface")
    records = make_process_records(600, seed=0)
    records.to_csv(root / "train.csv", index=False)
    FailurePrediction(folds=2, training={**QUIET, "epochs": 1, "batch_size": 128}).fit(
        root / "train.csv", out_dir=root / "milling")
    signals = write_bearing_dataset(root / "signals", recordings_per_class=1, duration_s=1.0, seed=0)
    FaultDiagnosis(sampling_rate=12_000, segment_length=512, train_stride=128, eval_stride=256,
                   training={**QUIET, "epochs": 1, "batch_size": 64}).fit(signals, out_dir=root / "bearing")
    rows = records.iloc[:3].drop(columns=["Machine failure", "TWF", "HDF", "PWF", "OSF", "RNF"])
    return {"root": root, "surface": root / "surface", "dirs": [root / "surface", root / "milling", root / "bearing"],
            "image": sorted((Path(images) / "test").rglob("*.png"))[0].read_bytes(),
            "rows": json.loads(rows.to_json(orient="records")),
            "signal": np.load(sorted(Path(signals).rglob("*.npy"))[0])[:2048].tolist()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """`shopfloor serve` in a subprocess on a loopback port; stopped with SIGTERM like a service manager does."""

    def __init__(self, model_dir: Path, db: str, log_dir: Path):
        self.model_dir, self.db, self.log_dir = model_dir, db, log_dir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.logs: list[Path] = []

    def start(self) -> None:
        log = self.log_dir / f"serve-{len(self.logs)}.log"
        self.logs.append(log)
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [SHOPFLOOR, "serve", str(self.model_dir), "--port", str(self.port), "--db", self.db,
                 "--device", "cpu", "--max-batch", "16", "--max-wait-ms", "5"],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
        deadline = time.monotonic() + BOOT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"shopfloor serve exited with {self.proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"shopfloor serve did not become ready in {BOOT_S} s:\n{log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """``sig`` (SIGTERM: graceful; SIGKILL: a crash), then the exit status (uvicorn re-raises SIGTERM after its
        graceful shutdown: -15)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                pytest.fail("shopfloor serve did not stop within 30 s of SIGTERM")
        return self.proc.returncode

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("live")
    live = LiveServer(models["surface"], f"sqlite:///{folder / 'records.db'}", folder)
    live.start()
    yield live
    live.stop()


def _stored(db: str, source: str) -> dict[int, dict]:
    """Every record of ``source`` in the store, read directly (not through the server), by id."""
    store = RecordStore(db)
    try:
        out, before = {}, None
        while True:
            page = store.query(source=source, limit=1000, before_id=before)
            out.update({r["id"]: r for r in page})
            if len(page) < 1000:
                return out
            before = page[-1]["id"]
    finally:
        store.close()


def _is_problem(response) -> bool:
    body = response.text
    content_type = response.headers.get("content-type") or ""
    if isinstance(content_type, list):  # schemathesis' responses: every header a list of values
        content_type = content_type[0] if content_type else ""
    if not content_type.startswith(PROBLEM) or "Traceback" in body:
        return False
    try:
        detail = response.json().get("detail")
    except ValueError:
        return False
    return isinstance(detail, str) and len(detail) > 10


# ----------------------------------------------------------------- 50 clients x 20 requests
def test_fifty_concurrent_clients_every_request_recorded(models, server):
    source = f"load/{uuid.uuid4().hex[:8]}"
    image = models["image"]

    def client(_: int) -> tuple[list[int], list[str]]:
        ids, errors = [], []
        with httpx.Client(base_url=server.url, timeout=120) as http:
            for _ in range(20):
                try:
                    r = http.post("/v1/models/surface/predict", params={"source": source},
                                  files={"file": ("part.png", image, "image/png")})
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                if r.status_code != 200:
                    errors.append(f"{r.status_code}: {r.text[:300]}")
                else:
                    ids.extend(r.json()["record_ids"])
        return ids, errors

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(client, range(50)))
    elapsed = time.perf_counter() - started
    ids = [i for got, _ in results for i in got]
    errors = [e for _, errs in results for e in errs]
    assert not errors, f"{len(errors)} errors, first: {errors[:3]}"
    assert len(ids) == 1000 and len(set(ids)) == 1000
    stored = _stored(server.db, source)
    assert set(stored) == set(ids), f"{len(set(ids) - set(stored))} answered records are missing from the store"
    assert all(r["model"] == "surface" and r["label"] in ("good", "anomalous") for r in stored.values())
    assert "Traceback" not in server.log_text()
    print(f"1000 requests from 50 clients in {elapsed:.1f} s ({1000 / elapsed:.0f} requests/s)")


# ----------------------------------------------------------------- restart under load
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_restart_under_load_loses_no_committed_record(models, server, sig):
    """Stopped (SIGTERM) or killed (kill -9) while 12 clients send: only clean errors meanwhile, and every record
    a client was answered with is in the store (SQLite WAL, synchronous=FULL) after the restart."""
    source = f"restart/{uuid.uuid4().hex[:8]}"
    image = models["image"]
    stop = threading.Event()
    lock = threading.Lock()
    ok: list[tuple[float, list[int]]] = []
    clean: list[str] = []
    bad: list[str] = []

    def client() -> None:
        deadline = time.monotonic() + 150  # bounded even if the main thread dies
        with httpx.Client(base_url=server.url, timeout=httpx.Timeout(30, connect=2)) as http:
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    r = http.post("/v1/models/surface/predict", params={"source": source},
                                  files={"file": ("part.png", image, "image/png")})
                except httpx.TransportError as exc:  # refused, or closed by the server while it stops
                    with lock:
                        clean.append(type(exc).__name__)
                    time.sleep(0.05)
                    continue
                with lock:
                    if r.status_code == 200:
                        ok.append((time.monotonic(), r.json()["record_ids"]))
                    elif r.status_code == 503 and _is_problem(r):
                        clean.append("503")
                    else:
                        bad.append(f"{r.status_code} {r.headers.get('content-type')}: {r.text[:300]}")

    def successes_since(t: float) -> int:
        with lock:
            return sum(1 for when, _ in ok if when >= t)

    def wait_for(n: int, since: float, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while successes_since(since) < n and time.monotonic() < deadline and not bad:
            time.sleep(0.05)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(12)]
    for t in threads:
        t.start()
    try:
        wait_for(60, 0.0, 60)
        assert successes_since(0.0) >= 60, f"no load before the restart; bad answers: {bad[:3]}"
        status = server.stop(sig)  # while 12 clients are sending
        assert status in (0, -sig), f"shopfloor serve exited with {status} after {sig.name}"
        stopped = time.monotonic()
        server.start()  # same port, same database
        restarted = time.monotonic()
        wait_for(60, restarted, 60)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not bad, f"{len(bad)} unclean answers (not 200, not 503 problem+json), first: {bad[:3]}"
    assert successes_since(restarted) >= 60, "the clients were not served again after the restart"
    assert clean, "no client saw the server down: the restart was not under load"
    ids = [i for _, got in ok for i in got]
    stored = _stored(server.db, source)
    missing = set(ids) - set(stored)
    assert not missing, f"{len(missing)} records answered to clients are not in the store: {sorted(missing)[:10]}"
    assert len(ids) == len(set(ids))
    log = server.log_text()
    assert "Traceback" not in log and "Internal error" not in log, log[-3000:]
    print(f"{len(ids)} records answered and stored; {len(clean)} clean errors while down "
          f"({sorted(set(clean))}); down for {restarted - stopped:.1f} s; {len(stored) - len(ids)} records "
          "committed whose answer was lost with the connection")


# ----------------------------------------------------------------- the database goes away and comes back
def test_postgresql_down_answers_503_and_recovers(models):
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect("host=127.0.0.1 port=5432 dbname=postgres user=postgres", autocommit=True,
                                connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 (trust auth, user postgres) is not reachable: {exc}")
    name = f"shopfloor_down_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE DATABASE {name}")
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    image = models["image"]

    def predict(client):
        return client.post("/v1/models/surface/predict?source=pg", files={"file": ("part.png", image, "image/png")})

    def take_down() -> None:
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                      "AND pid <> pg_backend_pid()", (name,))

    try:
        app = create_app(ServerSettings(model_dirs=[models["surface"]], db=url, device="cpu"))
        with TestClient(app, raise_server_exceptions=False) as client:
            first = predict(client)
            assert first.status_code == 200, first.text
            assert client.get("/readyz").status_code == 200
            take_down()
            ready = client.get("/readyz")
            assert ready.status_code == 503 and _is_problem(ready), ready.text
            assert "record store" in ready.json()["detail"] and name in ready.json()["detail"]
            down = predict(client)
            assert down.status_code == 503 and _is_problem(down), down.text
            assert "record store" in down.json()["detail"].lower()
            listed = client.get("/v1/records")
            assert listed.status_code == 503 and _is_problem(listed), listed.text
            assert client.get("/healthz").status_code == 200  # the process itself is fine
            admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
            deadline = time.monotonic() + 30
            while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert client.get("/readyz").status_code == 200
            again = predict(client)
            assert again.status_code == 200, again.text
            # down twice: the pool recovers every time, not only once
            take_down()
            assert predict(client).status_code == 503
            admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
            final = predict(client)
            assert final.status_code == 200, final.text
            records = client.get("/v1/records?source=pg").json()["records"]
            expected = first.json()["record_ids"] + again.json()["record_ids"] + final.json()["record_ids"]
            assert sorted(r["id"] for r in records) == sorted(expected)  # the refused predictions left nothing
    finally:
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


# ----------------------------------------------------------------- schemathesis against /openapi.json
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402


@pytest.fixture(scope="module")
def api_schema(models):
    folder = models["root"] / "schemathesis"
    folder.mkdir(exist_ok=True)
    app = create_app(ServerSettings(model_dirs=models["dirs"], db=f"sqlite:///{folder / 'records.db'}",
                                    device="cpu", max_upload_bytes=256 * 1024))
    # /v1/events is an endless Server-Sent Events stream (the dashboard's, tested with it): not fuzzed here
    yield schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path="/v1/events")
    try:  # the in-process lifespan (models, record store) schemathesis started for the app
        from schemathesis.python.asgi import shutdown_lifespans

        shutdown_lifespans()
    except Exception:  # noqa: BLE001 - older/newer schemathesis: its atexit hook does it
        pass


SERVED = ("surface", "milling", "bearing")
EXAMPLES = 30  # per operation, request media type and generation mode (valid / invalid data)


STATUSES: dict[str, dict[int, int]] = {}


def _check(response, where: str) -> None:
    counts = STATUSES.setdefault(where.split(" ", 1)[0] + " " + where.rsplit(" ", 1)[-1], {})
    counts[response.status_code] = counts.get(response.status_code, 0) + 1
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:500]}"
    if response.status_code >= 400:
        assert _is_problem(response), f"{where}: {response.status_code} is not problem+json: {response.text[:300]}"


def test_openapi_no_server_errors_and_every_error_a_problem(api_schema, models):
    """Every operation of /openapi.json, valid and invalid data; predict also sent to each served model."""
    from hypothesis import given
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    calls = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        media_types = [body.media_type for body in operation.body] or [None]
        for mode in GenerationMode:
            for media_type in media_types:
                @given(case=operation.as_strategy(mode, media_type=media_type))
                @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                          database=None, derandomize=True)
                def run(case):
                    nonlocal calls
                    where = f"{case.method} {case.formatted_path} {mode.value} {media_type}"
                    _check(case.call(), where)
                    calls += 1
                    if operation.path.endswith("/predict"):
                        for name in SERVED:
                            case.path_parameters = {**(case.path_parameters or {}), "name": name}
                            _check(case.call(), f"{where} -> {name}")
                            calls += 1

                try:
                    run()
                except Unsatisfiable:  # no parameter to make invalid (e.g. GET /healthz)
                    assert mode is GenerationMode.NEGATIVE, f"{operation.path}: no valid request generated"
    # valid inputs of each served model, with generated query strings and headers (source, explain, keys...)
    predict = next(r.ok() for r in api_schema.get_all_operations() if r.ok().path.endswith("/predict"))
    bodies = {"surface": (models["image"], "application/octet-stream"),
              "milling": ({"rows": models["rows"]}, "application/json"),
              "bearing": (models["signal"], "application/json")}
    for name, (body, media_type) in bodies.items():
        for mode in GenerationMode:
            @given(case=predict.as_strategy(mode, path_parameters={"name": name}, body=body, media_type=media_type))
            @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                      database=None, derandomize=True)
            def run_valid(case):
                nonlocal calls
                _check(case.call(), f"POST valid-{name} {mode.value}")
                calls += 1

            run_valid()
    assert calls > 200
    print(f"{calls} schemathesis calls, no 5xx; statuses: {STATUSES}")


def test_openapi_lists_every_endpoint(api_schema):
    paths = set(api_schema.raw_schema["paths"])
    assert {"/healthz", "/readyz", "/metrics", "/v1/models", "/v1/records", "/v1/models/{name}/predict"} <= paths


def test_bad_values_that_reach_the_store_are_problems(models, api_schema, tmp_path):
    """Found by schemathesis, kept as plain cases: values the store cannot take answer 4xx problems."""
    app = create_app(ServerSettings(model_dirs=[models["surface"]], db=f"sqlite:///{tmp_path / 'r.db'}",
                                    device="cpu"))
    big = str(2**63)
    with TestClient(app, raise_server_exceptions=False) as client:
        for response in (client.get(f"/v1/records?before_id={big}"),
                         client.get("/v1/records?since=2025-01-02T00:00:00Z&until=2025-01-01T00:00:00Z"),
                         client.get("/v1/records?model=%00"),
                         client.post("/v1/models/surface/predict?source=%00",
                                     files={"file": ("p.png", models["image"], "image/png")}),
                         client.post("/v1/models/surface/predict", params={"source": "x" * 2000},
                                     files={"file": ("p.png", models["image"], "image/png")}),
                         client.post("/v1/models/surface/predict", content=np.zeros(8).tobytes(),
                                     headers={"content-type": "application/octet-stream"})):
            assert 400 <= response.status_code < 500 and _is_problem(response), response.text
