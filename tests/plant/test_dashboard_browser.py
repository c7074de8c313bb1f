"""The live dashboard in a real browser: Debian's Chromium driven by Playwright against a real server (uvicorn on a
free port, SQLite in tmp_path, a tiny anomaly model, API keys on).

A prediction sent over HTTP must appear in the live table, the counters and the chart; records written by another
process (as the MQTT worker writes them, with the input image and heatmap kept) must appear too, their images
loaded through the key-protected files endpoint. The screenshot is written to tmp_path and, when
$SHOPFLOOR_TEST_ARTIFACTS is set, copied there.

Needs /usr/bin/chromium (`apt-get install chromium`; never `playwright install`) and the playwright package.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium) to run the "
                "dashboard's browser test", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright; "
                               "the browser is Debian's /usr/bin/chromium, never `playwright install`)")
import httpx  # noqa: E402
import uvicorn  # noqa: E402

from shopfloor.plant.records import RecordStore  # noqa: E402
from shopfloor.plant.server import ServerSettings, create_app, hash_key  # noqa: E402

KEY = "browser-test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
WAIT_MS = 15_000
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny anomaly model, one defect image and the heatmap the model draws for it."""
    from shopfloor.inspection.anomaly import AnomalyDetection
    from shopfloor.inspection.synthetic import make_anomaly_dataset

    root = tmp_path_factory.mktemp("dashboard-model")
    images = make_anomaly_dataset(root / "images", n_train=8, n_test_good=1, n_test_per_defect=1, size=64, seed=1)
    task = AnomalyDetection(image_size=64, training={"progress": False, "device": "cpu", "batch_size": 8})
    task.fit(images, out_dir=root / "surface")
    tests = sorted((Path(images) / "test").rglob("*.png"))
    defect = next(p for p in tests if p.parent.name != "good")
    explained = root / "explained"
    explained.mkdir()
    row = task.predict([str(defect)], out_dir=explained, explain=True)[0]
    return {"dir": root / "surface", "image": defect.read_bytes(), "heatmap": Path(row["heatmap"]).read_bytes(),
            "good": next(p for p in tests if p.parent.name == "good").read_bytes()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(model, tmp_path):
    db, inputs = f"sqlite:///{tmp_path / 'records.db'}", tmp_path / "inputs"
    settings = ServerSettings(model_dirs=[model["dir"]], db=db, device="cpu", inputs_dir=inputs,
                              api_key_hashes=[hash_key(KEY)])
    port = _free_port()
    app_server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                               log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=app_server.run, name="dashboard-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not app_server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the test server did not start")
        time.sleep(0.05)
    try:
        yield {"url": f"http://127.0.0.1:{port}", "db": db, "inputs": inputs}
    finally:
        app_server.should_exit = True
        thread.join(timeout=15)


def _until(page, predicate: str, what: str, timeout_s: float = WAIT_MS / 1000) -> None:
    """Poll a JavaScript function in the page until it returns true (page.wait_for_function would need eval,
    which the dashboard's Content-Security-Policy rightly forbids)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(predicate):
        if time.monotonic() > deadline:
            errors = page.inner_text("#errors") if page.is_visible("#errors") else "none shown"
            pytest.fail(f"{what}: not seen within {timeout_s:.0f} s; the page's problems: {errors}")
        time.sleep(0.1)


def _other_worker_writes(server, records: list[dict]) -> list[int]:
    """Records committed by another process on the same database (as `shopfloor stream` does)."""
    with RecordStore(server["db"], inputs_dir=server["inputs"]) as store:
        return [rid for rid, _ in store.add_many(records)]


def _rec(model: str, result: dict, **fields) -> dict:
    import hashlib

    return {"model": model, "artifact_hash": "b" * 64, "result": result,
            "input_fingerprint": hashlib.sha256(repr((model, result, fields)).encode()).hexdigest(), **fields}


def test_dashboard_live_in_chromium(server, model, tmp_path):
    started = time.monotonic()
    # before the page opens: RUL trajectories of two units, and an out-of-range failure prediction
    rul = [_rec("engine", {"unit": unit, "last_time": cycle, "rul": 120.0 - cycle * (1 + unit / 4),
                           "lower": 100.0 - cycle * (1 + unit / 4), "upper": 140.0 - cycle, "out_of_range": False},
                source="cmapss/fd001", label=None, score=120.0 - cycle)
           for cycle in range(10, 80, 10) for unit in (1, 2)]
    milling = _rec("milling", {"failure": False, "probability": 0.2, "out_of_range": True,
                               "out_of_range_columns": ["Torque [Nm]"]}, source="line2/plc", label="normal",
                   score=0.2)
    _other_worker_writes(server, [*rul, milling])

    console: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))

            # without the key: the page loads and says, as text, that it needs one
            page.goto(server["url"] + "/")
            page.wait_for_selector("#keyform:not([hidden])", timeout=WAIT_MS)
            assert "API key" in page.inner_text("#status")
            console.clear()  # the 401s the browser logged for that were expected

            # with ?key= once: kept in sessionStorage, gone from the address bar, the stream goes live
            page.goto(server["url"] + f"/?key={KEY}")
            page.wait_for_selector("body[data-live='1']", timeout=WAIT_MS)
            assert "key=" not in page.url
            assert page.evaluate("sessionStorage.getItem('shopfloor.apiKey')") == KEY
            assert page.inner_text("#status") == "live"
            page.wait_for_selector(".rul-plot[data-model='engine'] polyline", timeout=WAIT_MS)
            assert page.locator(".rul-plot[data-model='engine'] polyline.series").count() == 2
            assert "unit 1: RUL" in page.inner_text("#rul")
            assert "out of range: Torque [Nm]" in page.inner_text("#alarms")

            # a prediction over HTTP appears live: table, counter, chart
            r = httpx.post(f"{server['url']}/v1/models/surface/predict?source=line1/cam2", headers=AUTH,
                           files={"file": ("part.png", model["image"], "image/png")}, timeout=60)
            assert r.status_code == 200, r.text
            rid, label = r.json()["record_ids"][0], r.json()["predictions"][0]["label"]
            row = page.wait_for_selector(f"#records tbody tr[data-id='{rid}']", timeout=WAIT_MS)
            assert "surface" in row.inner_text() and "line1/cam2" in row.inner_text()
            assert ("alarm" in (row.get_attribute("class") or "")) == (label == "anomalous")
            _until(page, "() => document.querySelector(\"#counters [data-model='surface']\")?.dataset.total === '1'",
                   "the surface counter at 1")
            _until(page, "() => [...document.querySelectorAll('#chart polyline')].some(p => "
                   "p.dataset.series === 'surface · line1/cam2' && Number(p.dataset.sum) >= 1)",
                   "the surface · line1/cam2 line in the chart")

            # another worker's records with the input and heatmap kept: images load through the files endpoint
            image_id, good_id = _other_worker_writes(server, [
                _rec("surface", {"label": "anomalous", "score": 0.97}, source="line1/cam3", label="anomalous",
                     score=0.97, input_bytes=model["image"], heatmap_png=model["heatmap"]),
                _rec("surface", {"label": "good", "score": 0.12}, source="line1/cam3", label="good", score=0.12,
                     input_bytes=model["good"]),
                _rec("engine", {"unit": 1, "last_time": 80, "rul": 15.0, "lower": 5.0, "upper": 60.0}, label=None,
                     source="cmapss/fd001", score=15.0)])[:2]
            for rid_, kind in ((image_id, "input"), (image_id, "heatmap"), (good_id, "input")):
                _until(page, f"() => {{ const i = document.querySelector(\".image-card[data-id='{rid_}'] "
                       f"img[data-kind='{kind}']\"); return !!i && !i.hidden && i.complete && i.naturalWidth > 0; }}",
                       f"the {kind} image of record {rid_}")
            assert "no heatmap kept" in page.inner_text(f".image-card[data-id='{good_id}']")
            alarm_row = page.wait_for_selector(f"#records tbody tr[data-id='{image_id}']", timeout=WAIT_MS)
            assert "alarm" in alarm_row.get_attribute("class")
            assert page.locator(f"#alarms li[data-id='{image_id}']").count() == 1
            _until(page, "() => document.querySelector('#rul').innerText.includes('unit 1: RUL 15.0')",
                   "unit 1's new RUL")
            _until(page, "() => document.querySelector(\"#counters [data-model='surface']\")?.dataset.total === '3'",
                   "the surface counter at 3")

            assert page.is_hidden("#errors"), page.inner_text("#errors")
            assert not console, console
            page.wait_for_timeout(400)  # let the fresh-row highlight settle a little for the picture
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    artifacts = os.environ.get("SHOPFLOOR_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, Path(artifacts) / "dashboard.png")
    print(f"dashboard screenshot: {shot} ({time.monotonic() - started:.1f} s in the browser test)")


def test_dashboard_shows_a_server_problem_as_text(server, model):
    """A stream that breaks is said on the page, not swallowed, and the page reconnects by itself."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page()
            page.goto(server["url"] + f"/?key={KEY}")
            page.wait_for_selector("body[data-live='1']", timeout=WAIT_MS)
            page.route("**/v1/events*", lambda route: route.fulfill(
                status=503, content_type="application/problem+json",
                body='{"title": "Service unavailable", "status": 503, "detail": "the record store is down (test)"}'))
            page.route("**/v1/dashboard/stats*", lambda route: route.abort())
            page.evaluate("sessionStorage.setItem('shopfloor.apiKey', 'wrong')")  # next calls: 401 or the routes
            page.reload()
            page.wait_for_selector("#errors:not([hidden])", timeout=WAIT_MS)
            assert "loading the dashboard" in page.inner_text("#errors")
            page.unroute("**/v1/dashboard/stats*")
            page.wait_for_selector("#keyform:not([hidden])", timeout=WAIT_MS)
            assert "refused the API key" in page.inner_text("#keyform")
            page.fill("#keyform-input", KEY)
            page.click("#keyform button[type=submit]")
            _until(page, "() => document.querySelector('#errors').innerText.includes('the record store is down (test)')",
                   "the stream's 503 shown as text")
            assert page.inner_text("#status").startswith("disconnected")
            page.unroute("**/v1/events*")
            page.wait_for_selector("body[data-live='1']", timeout=WAIT_MS)
        finally:
            browser.close()
