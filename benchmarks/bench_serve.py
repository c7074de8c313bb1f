"""Serving throughput: MPDD metal_plate anomaly detection over HTTP vs in process, in the same run.

Fits PatchCore on MPDD train/good (defaults, 256 px), then scores the 107 test images
- in process: ``task.predict`` on batches of 16 files (decode + score + map, the same path the server calls);
- over HTTP: a real ``shopfloor serve`` subprocess (SQLite records, micro-batching on), one image per request,
  from 1, 8 and 32 concurrent clients (threads with httpx), every prediction recorded.
The figure is the ratio HTTP images/s / in-process images/s; p50/p99 latency per concurrency.
Targets: ratio >= 0.85 at concurrency 32; p99 <= 3 x p50 at concurrency 8.

Writes benchmarks/results/serve.json.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import require_dataset, write_result  # noqa: E402

CONCURRENCY = (1, 8, 32)
ROUNDS = 2  # each concurrency level sends every test image this many times


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_process(task, paths: list[Path], batch: int = 16) -> float:
    task.predict([str(p) for p in paths[:batch]])  # warm-up
    start = time.perf_counter()
    for _ in range(ROUNDS):
        for i in range(0, len(paths), batch):
            task.predict([str(p) for p in paths[i:i + batch]])
    return ROUNDS * len(paths) / (time.perf_counter() - start)


def over_http(url: str, name: str, images: list[bytes], clients: int) -> dict:
    import httpx
    import numpy as np

    jobs = [images[i % len(images)] for i in range(ROUNDS * len(images))]
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            while True:
                with lock:
                    if not jobs:
                        return
                    data = jobs.pop()
                start = time.perf_counter()
                r = http.post(f"/v1/models/{name}/predict", files={"file": ("part.png", data, "image/png")})
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    if r.status_code != 200:
                        errors.append(r.text[:200])

    n = len(jobs)
    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    return {"concurrency": clients, "requests": n, "errors": len(errors), "images_per_second": round(n / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1)}


def main() -> None:
    import httpx

    from shopfloor.inspection.anomaly import AnomalyDetection
    from shopfloor.inspection.layouts import read_anomaly_data

    root = require_dataset("mpdd_metal_plate")
    paths = [s.path for s in read_anomaly_data(root, need="test").test]
    images = [p.read_bytes() for p in paths]
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        model_dir = Path(tmp) / "metal_plate"
        task = AnomalyDetection(training={"progress": False, "device": "cpu"}).fit(root, out_dir=model_dir)
        local = in_process(task, paths)
        print(f"in process: {local:.1f} images/s", flush=True)
        port = free_port()
        server = subprocess.Popen([str(Path(sys.executable).parent / "shopfloor"), "--quiet", "serve", str(model_dir),
                                   "--port", str(port), "--db", f"sqlite:///{tmp}/records.db", "--device", "cpu"],
                                  stderr=subprocess.PIPE, text=True)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            over_http(url, "metal_plate", images[:8], 4)  # warm-up
            levels = []
            for clients in CONCURRENCY:
                level = over_http(url, "metal_plate", images, clients)
                level["ratio_to_in_process"] = round(level["images_per_second"] / local, 3)
                print(level, flush=True)
                levels.append(level)
            from shopfloor.plant.records import RecordStore

            with RecordStore(f"sqlite:///{tmp}/records.db") as store:
                recorded = store.count()
        finally:
            server.terminate()
            server.wait(timeout=60)
    by = {lvl["concurrency"]: lvl for lvl in levels}
    sent = sum(lvl["requests"] for lvl in levels) + 8
    figures = {
        "dataset": str(root),
        "protocol": f"PatchCore defaults (256 px) fitted on MPDD metal_plate train/good; {len(paths)} test images; "
                    f"in process: task.predict on batches of 16 files, {ROUNDS} passes; HTTP: `shopfloor serve` "
                    f"subprocess (SQLite records, micro-batching max 16 / 5 ms), one image per multipart request, "
                    f"{ROUNDS} passes per concurrency level, httpx client threads in this process",
        "in_process_images_per_second": round(local, 1),
        "http": levels,
        "records_committed": recorded,
        "requests_sent": sent,
        "targets": {"ratio_at_32": 0.85, "p99_over_p50_at_8": 3.0},
        "meets_targets": {"ratio_at_32": by[32]["ratio_to_in_process"] >= 0.85,
                          "p99_over_p50_at_8": by[8]["p99_ms"] <= 3 * by[8]["p50_ms"],
                          "every_request_recorded": recorded == sent},
    }
    write_result("serve", figures)


if __name__ == "__main__":
    main()
