"""The model server end to end: real models, the real record store (SQLite and PostgreSQL), real HTTP."""

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from shopfloor.plant.server import ServerSettings, create_app, hash_key  # noqa: E402

SHOPFLOOR = str(Path(sys.executable).parent / "shopfloor")
QUIET = {"progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Three tiny models, one per input kind: images, tables (JSON rows), signals (JSON arrays / .npy)."""
    from shopfloor.inspection.anomaly import AnomalyDetection
    from shopfloor.inspection.synthetic import make_anomaly_dataset
    from shopfloor.maintenance.failure_prediction import FailurePrediction
    from shopfloor.maintenance.failure_prediction.simulator import make_process_records
    from shopfloor.maintenance.fault_diagnosis import FaultDiagnosis
    from shopfloor.maintenance.fault_diagnosis.simulator import write_bearing_dataset

    root = tmp_path_factory.mktemp("served")
    images = make_anomaly_dataset(root / "images", n_train=12, n_test_good=2, n_test_per_defect=1, size=64, seed=1)
    AnomalyDetection(image_size=64, training={**QUIET, "batch_size": 8}).fit(images, out_dir=root / "surface")
    records = make_process_records(900, seed=0)
    records.iloc[:800].to_csv(root / "train.csv", index=False)
    FailurePrediction(folds=2, training={**QUIET, "epochs": 2, "batch_size": 128}).fit(
        root / "train.csv", out_dir=root / "milling")
    signals = write_bearing_dataset(root / "signals", recordings_per_class=1, duration_s=1.0, seed=0)
    FaultDiagnosis(sampling_rate=12_000, segment_length=512, train_stride=64, eval_stride=256,
                   training={**QUIET, "epochs": 1, "batch_size": 64}).fit(signals, out_dir=root / "bearing")
    probe_images = sorted((Path(images) / "test").rglob("*.png"))
    probe_rows = records.iloc[800:805].drop(columns=["Machine failure", "TWF", "HDF", "PWF", "OSF", "RNF"])
    probe_signal = np.load(sorted(Path(signals).rglob("*.npy"))[0])
    return {"root": root, "dirs": [root / "surface", root / "milling", root / "bearing"], "images": probe_images,
            "rows": json.loads(probe_rows.to_json(orient="records")), "signal": probe_signal}


def _client(models, db, **settings):
    app = create_app(ServerSettings(model_dirs=models["dirs"], db=db, device="cpu", **settings))
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'records.db'}"


def _png(path: Path) -> bytes:
    return path.read_bytes()


def test_models_health_and_metrics(models, sqlite_url):
    with _client(models, sqlite_url) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["models"] == ["bearing", "milling", "surface"]
        listed = {m["name"]: m for m in client.get("/v1/models").json()}
        assert listed["surface"]["task"] == "anomaly-detection" and listed["surface"]["input_kind"] == "image"
        assert listed["milling"]["input_kind"] == "table" and len(listed["bearing"]["artifact_hash"]) == 64
        client.post("/v1/models/surface/predict", files={"file": ("a.png", _png(models["images"][0]), "image/png")})
        text = client.get("/metrics").text
        assert "shopfloor_predictions_total" in text and 'model="surface"' in text


def test_predict_every_input_kind_is_recorded(models, sqlite_url):
    with _client(models, sqlite_url) as client:
        files = [("file", (p.name, _png(p), "image/png")) for p in models["images"][:3]]
        r = client.post("/v1/models/surface/predict?source=line1/cam2", files=files)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["predictions"]) == 3 and len(body["record_ids"]) == 3
        assert [p["input"] for p in body["predictions"]] == [p.name for p in models["images"][:3]]
        assert all(p["label"] in ("good", "anomalous") for p in body["predictions"])
        raw = client.post("/v1/models/surface/predict", content=_png(models["images"][0]),
                          headers={"content-type": "image/png"})
        assert raw.status_code == 200 and raw.json()["predictions"][0]["score"] == body["predictions"][0]["score"]
        rows = client.post("/v1/models/milling/predict", json={"rows": models["rows"]})
        assert rows.status_code == 200, rows.text
        assert len(rows.json()["predictions"]) == 5 and "probability" in rows.json()["predictions"][0]
        signal = client.post("/v1/models/bearing/predict", json=models["signal"].tolist())
        assert signal.status_code == 200, signal.text
        buffer = io.BytesIO()
        np.save(buffer, models["signal"])
        npy = client.post("/v1/models/bearing/predict", files={"file": ("s.npy", buffer.getvalue())})
        assert npy.status_code == 200 and npy.json()["predictions"][0]["label"] == signal.json()["predictions"][0]["label"]
        records = client.get("/v1/records?model=surface&source=line1/cam2").json()["records"]
        assert len(records) == 3 and records[0]["artifact_hash"] == body["artifact_hash"]
        assert {r["id"] for r in records} == set(body["record_ids"])
        assert client.get("/v1/records").json()["records"][0]["model"] == "bearing"


def test_explain_returns_the_heatmap(models, sqlite_url):
    with _client(models, sqlite_url) as client:
        r = client.post("/v1/models/surface/predict?explain=true",
                        files={"file": ("a.png", _png(models["images"][-1]), "image/png")})
        assert r.status_code == 200, r.text
        heatmap = r.json()["predictions"][0]["heatmap"]
        assert heatmap.startswith("data:image/png;base64,")


@pytest.mark.parametrize("call, status, words", [
    (lambda c: c.post("/v1/models/nope/predict", json=[1]), 404, "no model named 'nope'"),
    (lambda c: c.post("/v1/models/surface/predict", json={"rows": [{"a": 1}]}), 422, "send the file instead"),
    (lambda c: c.post("/v1/models/surface/predict", files={"file": ("x.png", b"not an image", "image/png")}),
     422, "x.png"),
    (lambda c: c.post("/v1/models/milling/predict", content=b"{not json", headers={"content-type": "application/json"}),
     422, "not valid JSON"),
    (lambda c: c.post("/v1/models/milling/predict", json={"rows": [{"Type": "L"}]}), 422, "missing"),
    (lambda c: c.post("/v1/models/bearing/predict", json=[[1, 2, 3], [4, 5, 6]]), 422, ""),
    (lambda c: c.post("/v1/models/surface/predict", content=b""), 422, "empty"),
    (lambda c: c.post("/v1/models/surface/predict", content=b"x" * 5000, headers={"content-type": "image/png"}),
     413, "at most"),
    (lambda c: c.get("/v1/records?limit=0"), 422, "limit"),
])
def test_bad_requests_are_problems_not_tracebacks(models, sqlite_url, call, status, words):
    with _client(models, sqlite_url, max_upload_bytes=4096) as client:
        r = call(client)
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert words in r.json()["detail"] and "Traceback" not in r.text


def test_api_key_is_required_when_configured(models, sqlite_url):
    key = "k" * 32
    with _client(models, sqlite_url, api_key_hashes=[hash_key(key)]) as client:
        assert client.get("/healthz").status_code == 200
        denied = client.get("/v1/models")
        assert denied.status_code == 401 and "Bearer" in denied.json()["detail"]
        assert client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_concurrent_clients_are_micro_batched_and_every_record_kept(models, sqlite_url):
    image = _png(models["images"][0])
    errors, ids = [], []
    with _client(models, sqlite_url, max_batch=8, max_wait_ms=20) as client:
        def worker():
            for _ in range(5):
                r = client.post("/v1/models/surface/predict", files={"file": ("a.png", image, "image/png")})
                if r.status_code != 200:
                    errors.append(r.text)
                else:
                    ids.extend(r.json()["record_ids"])
        threads = [threading.Thread(target=worker) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert len(set(ids)) == 60
        assert len(client.get("/v1/records?model=surface&limit=1000").json()["records"]) == 60
        assert client.app.state.served["surface"].batcher.largest_batch > 1  # requests were scored together
        calls = [line for line in client.get("/metrics").text.splitlines()
                 if line.startswith('shopfloor_batch_inputs_count{model="surface"}')]
        assert calls and float(calls[0].split()[-1]) < 60  # fewer model calls than requests


def test_batches_in_flight_together_give_each_request_its_own_result(models, sqlite_url):
    """Two runners score two micro-batches at once: every response still belongs to its own image."""
    images = [_png(p) for p in models["images"]]
    with _client(models, sqlite_url, max_batch=3, max_wait_ms=20, runners=2) as client:
        alone = [client.post("/v1/models/surface/predict", files={"file": (f"{i}.png", data, "image/png")})
                 .json()["predictions"][0]["score"] for i, data in enumerate(images)]
        assert len(set(np.round(alone, 6))) > 1  # distinct images: a mix-up would show
        got, errors = [], []

        def worker(k: int) -> None:
            for j in range(4):
                i = (k + j) % len(images)
                r = client.post("/v1/models/surface/predict", files={"file": (f"{i}.png", images[i], "image/png")})
                if r.status_code != 200:
                    errors.append(r.text)
                else:
                    got.append((i, r.json()["predictions"][0]["score"]))
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and len(got) == 40
        for i, score in got:
            assert score == pytest.approx(alone[i], abs=1e-5)
        assert len(client.app.state.served["surface"].batcher.threads) == 2


def test_postgresql_record_store(models):
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres", autocommit=True,
                                connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}")
    name = f"shopfloor_test_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        with _client(models, url) as client:
            r = client.post("/v1/models/milling/predict", json=models["rows"])
            assert r.status_code == 200, r.text
            assert client.get("/readyz").status_code == 200
            records = client.get("/v1/records?model=milling").json()["records"]
            assert {rec["id"] for rec in records} == set(r.json()["record_ids"])
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_precision(models, sqlite_url):
    """``--precision``: fp32 serves; int8 on a model without a gated int8 graph is refused before the start."""
    from typer.testing import CliRunner

    from shopfloor.cli import app

    with _client(models, sqlite_url, precision="fp32") as client:
        r = client.post("/v1/models/surface/predict", files={"file": ("a.png", _png(models["images"][0]))})
        assert r.status_code == 200, r.text
    for precision, words in (("int8", "optimize"), ("int4", "unknown precision")):
        refused = CliRunner().invoke(app, ["serve", str(models["dirs"][0]), "--precision", precision])
        assert refused.exit_code == 2 and words in refused.output and "Traceback" not in refused.output


def test_serve_from_the_command_line(models, tmp_path):
    import httpx

    port = _free_port()
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    refused = subprocess.run([SHOPFLOOR, "serve", str(models["dirs"][0]), "--host", "0.0.0.0", "--db", db],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--api-key-file" in refused.stderr
    proc = subprocess.Popen([SHOPFLOOR, "serve", *map(str, models["dirs"]), "--port", str(port), "--db", db,
                             "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(240):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                pytest.fail(proc.stderr.read())
            time.sleep(0.5)
        r = httpx.post(f"{url}/v1/models/surface/predict", files={"file": ("a.png", _png(models["images"][0]))},
                       timeout=60)
        assert r.status_code == 200, r.text
        assert httpx.get(f"{url}/docs", timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    out = tmp_path / "records.csv"
    exported = subprocess.run([SHOPFLOOR, "records", "export", "--db", db, "--out", str(out)], capture_output=True,
                              text=True, timeout=120)
    assert exported.returncode == 0, exported.stderr
    assert "surface" in out.read_text()


def test_16bit_image_upload_goes_through_the_one_decode_path(models, sqlite_url):
    """The server hands uploads to the task's own reader: a 16-bit twin scores like the 8-bit image."""
    img = np.asarray(Image.open(models["images"][0]).convert("L"), dtype=np.uint16) * 257
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format="PNG")
    with _client(models, sqlite_url) as client:
        a = client.post("/v1/models/surface/predict", files={"file": ("a.png", _png(models["images"][0]))})
        b = client.post("/v1/models/surface/predict", files={"file": ("b.png", buffer.getvalue())})
        assert a.status_code == 200 and b.status_code == 200, b.text
        assert abs(a.json()["predictions"][0]["score"] - b.json()["predictions"][0]["score"]) < 0.05


def test_inputs_and_heatmaps_are_kept_with_the_record(models, sqlite_url, tmp_path):
    with _client(models, sqlite_url, inputs_dir=tmp_path / "kept") as client:
        r = client.post("/v1/models/surface/predict?explain=true",
                        files={"file": ("a.png", _png(models["images"][-1]), "image/png")})
        assert r.status_code == 200, r.text
        record = client.get("/v1/records?model=surface").json()["records"][0]
        assert Path(record["input_file"]).read_bytes() == _png(models["images"][-1])
        assert Path(record["heatmap_file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
