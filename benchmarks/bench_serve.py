"""Serving throughput: MPDD metal_plate anomaly detection over HTTP and over MQTT vs in process, in the same run.

Fits PatchCore on MPDD train/good (defaults, 256 px), then scores the 107 test images
- in process: ``task.predict`` on batches of 16 files (decode + score + map, the same path the server calls),
  measured before and after the network runs (the reference is their mean, so a load change shows as a spread);
- over HTTP: a real ``shopfloor serve`` subprocess (SQLite records, micro-batching on), one image per multipart
  request, from 1, 8 and 32 concurrent keep-alive connections, every prediction recorded;
- over MQTT: a real ``shopfloor stream`` subprocess on the shared Mosquitto (127.0.0.1:1883), every image
  published at QoS 1 as one message, timed until every result is back on the result topic, records committed.

The load generator is one asyncio loop speaking plain HTTP/1.1 over sockets with the request bytes built in
advance, and one paho client for MQTT: on a plant the cameras are other machines, so the client should take as
little of the 2 shared cores as it can (an httpx thread per client took ~10 ms of CPU per request here, a third
of the CPU the model needs). The client's CPU time is reported next to the figures.
The figure is the ratio network images/s / in-process images/s; p50/p99 latency per concurrency.
Targets: ratio >= 0.85 at concurrency 32; p99 <= 3 x p50 at concurrency 8.

Writes benchmarks/results/serve.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import require_dataset, write_result  # noqa: E402

CONCURRENCY = (1, 8, 32)
ROUNDS = 2  # each concurrency level sends every test image this many times
MQTT_BROKER = ("127.0.0.1", 1883)


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


def multipart_request(path: str, port: int, data: bytes) -> bytes:
    """One complete HTTP/1.1 request (headers + multipart body) uploading ``data`` as part.png."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"part.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: multipart/form-data; "
            f"boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return head + body


async def _connection(port: int, jobs: list[bytes], latencies: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while jobs:
            request = jobs.pop()
            start = time.perf_counter()
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if status != 200:
                errors.append(body[:200].decode(errors="replace"))
    finally:
        writer.close()


def over_http(port: int, name: str, images: list[bytes], clients: int, rounds: int = ROUNDS) -> dict:
    """Send every image ``rounds`` times from ``clients`` keep-alive connections; throughput and latency."""
    import numpy as np

    requests = [multipart_request(f"/v1/models/{name}/predict", port, data) for data in images]
    jobs = [requests[i % len(requests)] for i in range(rounds * len(requests))]
    latencies: list[float] = []
    errors: list[str] = []
    n = len(jobs)

    async def run() -> None:
        await asyncio.gather(*(_connection(port, jobs, latencies, errors) for _ in range(clients)))

    cpu, start = time.process_time(), time.perf_counter()
    asyncio.run(run())
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    ms = np.asarray(latencies) * 1000
    return {"concurrency": clients, "requests": n, "errors": len(errors), "images_per_second": round(n / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "client_cpu_ms_per_request": round(cpu / n * 1000, 2)}


def over_mqtt(shopfloor: str, model_dir: Path, db: str, images: list[bytes], rounds: int = ROUNDS) -> dict:
    """Images published at QoS 1 to a ``shopfloor stream`` worker; timed until every result is back."""
    import paho.mqtt.client as mqtt

    prefix = f"bench/{uuid.uuid4().hex[:8]}"
    worker = subprocess.Popen([shopfloor, "--quiet", "stream", str(model_dir), "--mqtt", "mqtt://%s:%d" % MQTT_BROKER,
                               "--subscribe", f"{prefix}/camera/+", "--publish", f"{prefix}-results/{{topic}}",
                               "--client-id", f"bench-{prefix[-8:]}", "--db", db, "--device", "cpu"],
                              stderr=subprocess.PIPE, text=True)
    # distinct payloads (a repeated payload on one topic is a duplicate by design): one topic per round
    messages = [(f"{prefix}/camera/{r}", data) for r in range(rounds) for data in images]
    done, warm, lock, results = threading.Event(), threading.Event(), threading.Lock(), []
    subscribed = threading.Event()

    def on_message(client, userdata, message) -> None:
        body = json.loads(message.payload)
        with lock:
            if body["topic"].endswith("/warmup"):
                warm.set()
                return
            results.append(body)  # one result per message (a repeated image is a duplicate: its first record)
            if len(results) >= len(messages):
                done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-client-{prefix[-8:]}",
                         protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    client.max_inflight_messages_set(64)
    client.connect(*MQTT_BROKER)
    client.subscribe(f"{prefix}-results/#", qos=1)
    client.loop_start()
    try:
        subscribed.wait(10)
        deadline = time.monotonic() + 120
        while not warm.is_set() and time.monotonic() < deadline:  # until the worker is up and has answered
            client.publish(f"{prefix}/camera/warmup", images[0], qos=1).wait_for_publish(10)
            warm.wait(2)
        cpu, start = time.process_time(), time.perf_counter()
        for topic, data in messages:
            client.publish(topic, data, qos=1)
        finished = done.wait(timeout=600)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        client.loop_stop()
        client.disconnect()
        worker.terminate()
        worker.wait(timeout=60)
    errors = [r for r in results if "error" in r]
    return {"messages": len(messages), "distinct_payloads": len(set(messages)), "results": len(results),
            "errors": len(errors), "finished": finished,
            "messages_per_second": round(len(results) / wall, 1), "client_cpu_ms_per_message":
            round(cpu / len(messages) * 1000, 2), "topics": f"{prefix}/camera/<round>"}


def main() -> None:
    import argparse

    import httpx

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--auto", choices=["true", "false"], default="true",
                        help="fit with the auto-configuration (default) or today's fixed defaults (--auto false); "
                             "false writes serve_fixed.json")
    auto = parser.parse_args().auto == "true"

    from shopfloor.inspection.anomaly import AnomalyDetection
    from shopfloor.inspection.layouts import read_anomaly_data
    from shopfloor.plant.records import RecordStore

    root = require_dataset("mpdd_metal_plate")
    paths = [s.path for s in read_anomaly_data(root, need="test").test]
    images = [p.read_bytes() for p in paths]
    shopfloor = str(Path(sys.executable).parent / "shopfloor")
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        model_dir = Path(tmp) / "metal_plate"
        task = AnomalyDetection(auto=auto, training={"progress": False, "device": "cpu"}).fit(root, out_dir=model_dir)
        local_before = in_process(task, paths)
        print(f"in process: {local_before:.1f} images/s", flush=True)
        port = free_port()
        http_db = f"sqlite:///{tmp}/records.db"
        server = subprocess.Popen([shopfloor, "--quiet", "serve", str(model_dir), "--port", str(port),
                                   "--db", http_db, "--device", "cpu"], stderr=subprocess.PIPE, text=True)
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            over_http(port, "metal_plate", images[:8], 4, rounds=1)  # warm-up
            levels = []
            for clients in CONCURRENCY:
                level = over_http(port, "metal_plate", images, clients)
                print(level, flush=True)
                levels.append(level)
            with RecordStore(http_db) as store:
                recorded = store.count()
        finally:
            server.terminate()
            server.wait(timeout=60)
        mqtt_figures = None
        try:
            socket.create_connection(MQTT_BROKER, timeout=1).close()
        except OSError:
            print("SKIP MQTT: no broker at %s:%d" % MQTT_BROKER)
        else:
            mqtt_db = f"sqlite:///{tmp}/mqtt.db"
            mqtt_figures = over_mqtt(shopfloor, model_dir, mqtt_db, images)
            with RecordStore(mqtt_db) as store:
                mqtt_figures["records_committed"] = store.count()
            print(mqtt_figures, flush=True)
        local_after = in_process(task, paths)
        print(f"in process again: {local_after:.1f} images/s", flush=True)
    local = (local_before + local_after) / 2
    for level in levels:
        level["ratio_to_in_process"] = round(level["images_per_second"] / local, 3)
    if mqtt_figures is not None:
        mqtt_figures["ratio_to_in_process"] = round(mqtt_figures["messages_per_second"] / local, 3)
        # one record per distinct (topic, payload), plus the warm-up: MPDD's test set repeats 10 of its images
        mqtt_figures["every_message_recorded_once"] = \
            mqtt_figures["records_committed"] == mqtt_figures["distinct_payloads"] + 1
    by = {lvl["concurrency"]: lvl for lvl in levels}
    sent = sum(lvl["requests"] for lvl in levels) + 8
    figures = {
        "dataset": str(root),
        "protocol": f"PatchCore defaults ({'auto-configured' if auto else 'fixed: --auto false, 256 px'}) fitted on "
                    f"MPDD metal_plate train/good; {len(paths)} test images; "
                    f"in process: task.predict on batches of 16 files, {ROUNDS} passes, before and after the network "
                    f"runs (reference = mean); HTTP: `shopfloor serve` subprocess (SQLite records, micro-batching "
                    f"max 16 / 5 ms), one image per multipart request over keep-alive connections from one asyncio "
                    f"client (pre-built requests), {ROUNDS} passes per concurrency level; MQTT: `shopfloor stream` "
                    f"subprocess on the shared Mosquitto, one image per QoS 1 message, {ROUNDS} passes, timed from "
                    f"the first publish to the last result received, SQLite records",
        "in_process_images_per_second": round(local, 1),
        "in_process_before_after": [round(local_before, 1), round(local_after, 1)],
        "http": levels,
        "records_committed": recorded,
        "requests_sent": sent,
        "mqtt": mqtt_figures,
        "targets": {"ratio_at_32": 0.85, "p99_over_p50_at_8": 3.0},
        "meets_targets": {"ratio_at_32": by[32]["ratio_to_in_process"] >= 0.85,
                          "p99_over_p50_at_8": by[8]["p99_ms"] <= 3 * by[8]["p50_ms"],
                          "every_request_recorded": recorded == sent},
    }
    figures["model"] = {"auto": auto, "choices": task.state.get("autoconfig")}
    write_result("serve" if auto else "serve_fixed", figures)


if __name__ == "__main__":
    main()
