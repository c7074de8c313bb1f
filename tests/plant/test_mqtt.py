"""The MQTT worker end to end: a real model through the registry, the real record store, real Mosquitto brokers.

At-least-once without duplicates, checked by counting records and distinct keys after the faults a plant sees:
the broker killed (-9) and restarted mid-stream, a worker of a shared-subscription group dying mid-stream.
Everything is loopback; the tests that kill a broker start their own on a free port.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

mqtt = pytest.importorskip("paho.mqtt.client")

from shopfloor.core.errors import ConfigError
from shopfloor.plant.mqtt import MqttStream, StreamConfig
from shopfloor.plant.records import RecordStore, RecordStoreUnavailable

SHARED = ("127.0.0.1", 1883)
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


# ----------------------------------------------------------------- fixtures and helpers
@pytest.fixture
def store(tmp_path):
    s = RecordStore(f"sqlite:///{tmp_path / 'records.db'}")
    yield s
    s.close()


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def shared_broker():
    if not _reachable(*SHARED):
        pytest.skip("no MQTT broker at 127.0.0.1:1883")
    return "mqtt://127.0.0.1:1883"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """Our own Mosquitto on a free port, persistent (saved every second), that a test may kill -9 and restart."""

    def __init__(self, folder: Path) -> None:
        self.port = _free_port()
        self.folder = folder
        self.conf = folder / "mosquitto.conf"
        # `user`: run as ourselves, so a root run does not drop to `mosquitto` and fail to write the folder
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {folder}/\nautosave_interval 1\nuser {getpass.getuser()}\n")
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        _until(lambda: _reachable("127.0.0.1", self.port), 10, "the test broker to listen")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def own_broker(tmp_path):
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed")
    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Broker(folder)
    yield broker
    broker.stop()


def _until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _settled(get, quiet: float = 1.0, timeout: float = 30) -> None:
    """Wait until ``get()`` has not changed for ``quiet`` seconds (redeliveries done)."""
    deadline = time.monotonic() + timeout
    last, since = get(), time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            raise AssertionError(f"still changing after {timeout} s")
        time.sleep(0.1)
        now = get()
        if now != last:
            last, since = now, time.monotonic()


class Results:
    """A subscriber that keeps every result and error message under ``results/<prefix>/#``."""

    def __init__(self, url: str, topic_filter: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.messages: list[tuple[str, dict]] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"results-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, json.loads(m.payload)))
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(topic_filter, qos=1)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect(host, int(port))
        self.client.loop_start()
        assert self._subscribed.wait(10), "the results subscriber did not subscribe"

    def results(self) -> list[dict]:
        return [body for topic, body in list(self.messages) if not topic.endswith("/errors")]

    def errors(self) -> list[dict]:
        return [body for topic, body in list(self.messages) if topic.endswith("/errors")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish(url: str, messages: list[tuple[str, bytes]]) -> None:
    """Publish at QoS 1 and wait for every PUBACK."""
    host, port = url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(host, int(port))
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


class Worker:
    """A stream worker in a thread."""

    def __init__(self, task, store, **config) -> None:
        self.stream = MqttStream(task, store, StreamConfig(**config))
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.stream.ready.wait(15), "the worker did not connect and subscribe"

    def _run(self) -> None:
        try:
            self.stream.run(self.stop)
        except BaseException as exc:  # noqa: BLE001 - surfaced by join()
            self.error = exc

    def join(self) -> None:
        self.stop.set()
        self.thread.join(15)
        assert not self.thread.is_alive(), "the worker did not stop"
        assert self.error is None, f"the worker crashed: {self.error!r}"


def _config(url: str, prefix: str, **extra) -> dict:
    return {"broker": url, "subscribe": [f"{prefix}/in/+"], "publish": "results/{topic}",
            "client_id": f"sf-{uuid.uuid4().hex[:10]}", "session_expiry": 60, "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0, **extra}


def _messages(prefix: str, rows: list[dict], n: int, topics: int = 4) -> list[tuple[str, bytes]]:
    return [(f"{prefix}/in/{i % topics}", json.dumps([rows[i]]).encode()) for i in range(n)]


def _key(topic: str, payload: bytes) -> str:
    return f"{topic}:{hashlib.sha256(payload).hexdigest()}"


def _keys(store: RecordStore) -> list[str]:
    return [r["key"] for r in store.query(limit=1000)]


@pytest.fixture
def slow(model, monkeypatch):
    """Make each prediction take a little longer, so a fault lands mid-stream however fast the machine is."""
    task, _ = model
    predict = task.predict

    def slower(*args, **kwargs):
        time.sleep(0.02)
        return predict(*args, **kwargs)

    monkeypatch.setattr(task, "predict", slower)


# ----------------------------------------------------------------- the tests
def test_stream_config_is_checked():
    assert StreamConfig(group="line1").filters() == ["$share/line1/plant/+/camera/+"]
    assert StreamConfig(broker="mqtt://u%40x:p%3Aw@broker.plant:1884").endpoint() == (
        "broker.plant", 1884, False, "u@x", "p:w")
    for bad in ({"broker": "http://x:1"}, {"broker": "mqtt://x:port"}, {"subscribe": []}, {"qos": 3},
                {"subscribe": ["#"]},  # results/... would be read back: a loop
                {"subscribe": ["$share/g/a/+"]}, {"group": "a/b"}, {"publish": "out/{nope}"}):
        with pytest.raises(ConfigError):
            StreamConfig(**bad)


def test_every_message_recorded_once_and_answered(model, store, shared_broker):
    task, rows = model
    prefix = f"sftest/{uuid.uuid4().hex[:10]}"
    results = Results(shared_broker, f"results/{prefix}/#")
    worker = Worker(task, store, **_config(shared_broker, prefix))
    try:
        sent = _messages(prefix, rows, 200)
        publish(shared_broker, sent)
        _until(lambda: len(results.results()) >= 200, 60, "200 results")
        _settled(lambda: len(results.messages), quiet=0.5)
    finally:
        worker.join()
        results.close()
    assert store.count() == 200
    answered = results.results()
    assert len(answered) == 200 and not results.errors()
    records = {r["id"]: r for r in store.query(limit=1000)}
    assert {body["record_id"] for body in answered} == set(records)
    by_key = {r["key"]: r for r in records.values()}
    assert set(by_key) == {_key(topic, payload) for topic, payload in sent}
    for body in answered:
        record = records[body["record_id"]]
        assert body["key"] == record["key"] and body["topic"] == record["source"]
        assert body["model"] == "milling" and body["artifact_hash"] == task._artifact.manifest["manifest_sha256"]
        assert body["result"]["probability"] == pytest.approx(record["result"]["probability"])
        assert body["duplicate"] is False
    stats = worker.stream.stats
    assert (stats.recorded, stats.duplicates, stats.published, stats.refused) == (200, 0, 200, 0)
    # every message was acknowledged: the same session resumed gets nothing again
    again = Worker(task, store, **_config(shared_broker, prefix, client_id=worker.stream.client_id))
    time.sleep(1.0)
    again.join()
    assert again.stream.stats.received == 0


def test_same_payload_twice_is_one_record(model, store, shared_broker):
    task, rows = model
    prefix = f"sftest/{uuid.uuid4().hex[:10]}"
    results = Results(shared_broker, f"results/{prefix}/#")
    worker = Worker(task, store, **_config(shared_broker, prefix))
    payload = json.dumps([rows[0]]).encode()
    try:
        publish(shared_broker, [(f"{prefix}/in/a", payload)])
        _until(lambda: len(results.results()) == 1, 20, "the first result")
        publish(shared_broker, [(f"{prefix}/in/a", payload), (f"{prefix}/in/b", payload)])
        _until(lambda: len(results.results()) == 3, 20, "three results")
    finally:
        worker.join()
        results.close()
    first, again, other = results.results()
    assert first["duplicate"] is False and again["duplicate"] is True
    assert again["record_id"] == first["record_id"] and again["result"] == first["result"]
    assert other["duplicate"] is False and other["record_id"] != first["record_id"]  # the key holds the topic
    assert store.count() == 2 and store.count(source=f"{prefix}/in/a") == 1
    assert worker.stream.stats.duplicates == 1


def test_bad_payloads_are_refused_and_the_worker_keeps_going(model, store, shared_broker, caplog):
    task, rows = model
    prefix = f"sftest/{uuid.uuid4().hex[:10]}"
    results = Results(shared_broker, f"results/{prefix}/#")
    worker = Worker(task, store, **_config(shared_broker, prefix))
    bad = [b"{not json", b'{"rows": 5}', b"\x89PNG\r\n\x1a\n" + bytes(64), json.dumps([{"nope": 1}]).encode()]
    try:
        with caplog.at_level(logging.WARNING, logger="shopfloor.plant.mqtt"):
            publish(shared_broker, [(f"{prefix}/in/bad", p) for p in bad] + [(f"{prefix}/in/ok",
                                                                               json.dumps([rows[0]]).encode())])
            _until(lambda: len(results.messages) >= len(bad) + 1, 30, "the errors and the good result")
            _settled(lambda: len(results.messages), quiet=0.5)
    finally:
        worker.join()
        results.close()
    errors = results.errors()
    assert len(errors) == len(bad)
    assert all(e["topic"] == f"{prefix}/in/bad" and e["error"] for e in errors)
    assert "not valid JSON" in errors[0]["error"] and ".png" in errors[2]["error"]
    assert [r["topic"] for r in results.results()] == [f"{prefix}/in/ok"]
    assert store.count() == 1
    assert worker.stream.stats.refused == len(bad)
    refused = [r for r in caplog.records if r.name == "shopfloor.plant.mqtt" and "refused" in r.getMessage()]
    assert len(refused) == len(bad) and all(r.levelno == logging.WARNING and not r.exc_info for r in refused)


def test_record_store_down_holds_the_message_and_retries(model, store, shared_broker):
    """RecordStoreUnavailable: not acknowledged, retried with backoff; a worker stopped meanwhile leaves the
    message with the broker, and the next one records it once the store is back."""
    task, rows = model
    prefix = f"sftest/{uuid.uuid4().hex[:10]}"

    class Flaky:
        def __init__(self, inner, failures):
            self.inner, self.failures = inner, failures

        def add(self, **record):
            if self.failures:
                self.failures -= 1
                raise RecordStoreUnavailable("the record database did not answer")
            return self.inner.add(**record)

    results = Results(shared_broker, f"results/{prefix}/#")
    config = _config(shared_broker, prefix, store_retry_min_s=0.05, store_retry_max_s=0.2)
    down = Worker(task, Flaky(store, 10**9), **config)
    try:
        publish(shared_broker, _messages(prefix, rows, 2))
        _until(lambda: down.stream.stats.store_retries >= 3, 20, "retries while the store is down")
        down.join()  # stopped while the store is still down: nothing was acknowledged
        assert store.count() == 0 and not results.messages
        back = Worker(task, Flaky(store, 3), **config)  # same client id: the session resumes
        _until(lambda: len(results.results()) == 2, 20, "two results")
        back.join()
    finally:
        down.join()
        results.close()
    assert store.count() == 2
    assert back.stream.stats.received == 2 and back.stream.stats.store_retries == 3


def test_broker_killed_and_restarted_mid_stream(model, store, own_broker, slow):
    """kill -9 the broker while the worker is busy, restart it on the same port and persistence folder."""
    task, rows = model
    prefix = "plant/line1"
    worker = Worker(task, store, **_config(own_broker.url, prefix))
    sent = _messages(prefix, rows, 300)
    try:
        publish(own_broker.url, sent[:150])
        time.sleep(1.5)  # the broker saves its state every second: the queued messages are on disk
        at_kill = store.count()
        own_broker.kill()
        assert 0 < at_kill < 150, "the kill was meant to land mid-stream"
        time.sleep(0.5)
        own_broker.start()
        _until(lambda: worker.stream.stats.reconnects >= 1 and worker.stream.ready.is_set(), 20, "the reconnect")
        publish(own_broker.url, sent[150:])
        _until(lambda: store.count() >= 300, 60, "300 records")
        stats = worker.stream.stats
        _settled(lambda: stats.received)  # the redeliveries of the unacknowledged ones have arrived...
        _until(lambda: stats.received == stats.recorded + stats.duplicates, 30, "every delivery handled")
    finally:
        worker.join()
    keys = _keys(store)
    assert store.count() == 300 and len(set(keys)) == 300
    assert set(keys) == {_key(topic, payload) for topic, payload in sent}
    stats = worker.stream.stats
    assert stats.reconnects >= 1 and stats.recorded == 300
    # what the worker had taken but could not acknowledge came back from the restored session, as duplicates
    assert stats.received == 300 + stats.duplicates


def test_shared_group_survives_a_worker_dying(model, store, own_broker, slow):
    """3 workers in one $share group; one dies abruptly mid-stream (no DISCONNECT, nothing more acked) and is
    restarted under its client id: every message recorded once, every record's result published."""
    task, rows = model
    prefix = "plant/line2"
    results = Results(own_broker.url, "results/#")
    config = _config(own_broker.url, prefix, group="inspect")
    workers = [Worker(task, store, **{**config, "client_id": f"worker-{i}"}) for i in range(3)]
    sent = _messages(prefix, rows, 300, topics=6)
    try:
        publish(own_broker.url, sent[:100])
        _until(lambda: workers[1].stream.stats.recorded >= 5, 20, "worker 1 to be busy")
        workers[1].stream.abort()  # a crash: the socket drops, the unacknowledged messages stay with the broker
        died_at = store.count()
        publish(own_broker.url, sent[100:])
        survivors = (workers[0], workers[2])
        _settled(lambda: sum(w.stream.stats.received for w in survivors))
        # Mosquitto keeps the dead member's share (in flight and still queued to it) in its session until it
        # comes back: restart it under the same client id, as a supervisor would
        workers[1].thread.join(10)
        dead = workers[1].stream
        workers[1] = Worker(task, store, **{**config, "client_id": "worker-1"})
        _until(lambda: store.count() >= 300, 60, "300 records")
        _settled(lambda: len(results.messages))
    finally:
        for w in workers:
            w.join()
        results.close()
    keys = _keys(store)
    assert store.count() == 300 and len(set(keys)) == 300
    assert set(keys) == {_key(topic, payload) for topic, payload in sent}
    answered = results.results()
    assert {body["record_id"] for body in answered} == {r["id"] for r in store.query(limit=1000)}
    assert not results.errors()
    assert all(w.stream.stats.recorded > 0 for w in (workers[0], workers[2]))
    assert dead.stats.received > dead.stats.recorded + dead.stats.duplicates  # it died holding messages
    assert workers[1].stream.stats.received > 0  # ...which came back to it after the restart
    assert sum(w.stream.stats.recorded for w in workers) + dead.stats.recorded == 300
    assert 0 < died_at < 300


def test_postgresql_record_store(model, shared_broker):
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres", autocommit=True,
                                connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}")
    task, rows = model
    name = f"shopfloor_mqtt_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE DATABASE {name}")
    prefix = f"sftest/{uuid.uuid4().hex[:10]}"
    try:
        store = RecordStore(f"postgresql://postgres@127.0.0.1:5432/{name}")
        results = Results(shared_broker, f"results/{prefix}/#")
        worker = Worker(task, store, **_config(shared_broker, prefix))
        sent = _messages(prefix, rows, 20)
        try:
            publish(shared_broker, sent + sent[:5])  # five sent again: duplicates
            _until(lambda: len(results.results()) == 25, 30, "25 results")
        finally:
            worker.join()
            results.close()
        assert store.count() == 20 and len(set(_keys(store))) == 20
        assert sum(body["duplicate"] for body in results.results()) == 5
        store.close()
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def test_stream_from_the_command_line(model, shared_broker, tmp_path):
    """`shopfloor stream` end to end: a real worker process, a real broker, records and results."""
    import sys

    task, rows = model
    prefix = f"cli-{uuid.uuid4().hex[:8]}"
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    model_dir = Path(task._artifact.path)
    results: list[dict] = []
    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    listener.on_message = lambda c, u, m: results.append(json.loads(m.payload))
    listener.connect("127.0.0.1", 1883)
    listener.subscribe(f"results/{prefix}/#", qos=1)
    listener.loop_start()
    worker = subprocess.Popen([str(Path(sys.executable).parent / "shopfloor"), "stream", str(model_dir),
                               "--mqtt", shared_broker, "--subscribe", f"{prefix}/+", "--db", db,
                               "--max-messages", "3", "--device", "cpu", "--client-id", prefix],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        publisher.connect("127.0.0.1", 1883)
        publisher.loop_start()
        deadline = time.monotonic() + 180
        # the worker may not have subscribed yet: send the same three messages round after round; any three
        # consecutive deliveries are distinct, and repeats are idempotent (one record per topic + payload)
        while worker.poll() is None and time.monotonic() < deadline:
            for i in range(3):
                publisher.publish(f"{prefix}/station{i}", json.dumps([rows[i]]), qos=1).wait_for_publish(10)
            time.sleep(2)
        publisher.loop_stop()
        _, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, err
        assert "recorded 3" in err
    finally:
        if worker.poll() is None:
            worker.kill()
        listener.loop_stop()
    with RecordStore(db) as records:
        assert records.count() == 3
        assert {r["source"] for r in records.query()} == {f"{prefix}/station{i}" for i in range(3)}
    for _ in range(50):
        if len(results) >= 3:
            break
        time.sleep(0.1)
    assert len({r["record_id"] for r in results}) == 3


@pytest.fixture(scope="module")
def signal_model(tmp_path_factory):
    """A tiny fault-diagnosis model (input kind "signal": messages are JSON arrays, scored in batches)."""
    import numpy as np

    from shopfloor.core.registry import load
    from shopfloor.maintenance.fault_diagnosis import FaultDiagnosis
    from shopfloor.maintenance.fault_diagnosis.simulator import write_bearing_dataset

    root = tmp_path_factory.mktemp("mqtt-signal")
    signals = write_bearing_dataset(root / "signals", recordings_per_class=1, duration_s=1.0, seed=0)
    FaultDiagnosis(sampling_rate=12_000, segment_length=512, train_stride=64, eval_stride=256,
                   training={"epochs": 1, "batch_size": 64, "progress": False, "device": "cpu"}).fit(
        signals, out_dir=root / "bearing")
    recordings = [np.load(p) for p in sorted(Path(signals).rglob("*.npy"))]
    segments = [r[start:start + 1024] for r in recordings for start in (0, 2048)]
    return load(root / "bearing", device="cpu"), segments


def test_waiting_messages_are_scored_together_and_a_bad_one_refused_alone(signal_model, store, shared_broker):
    """Messages that queued while the worker was away arrive in a burst: scored in batches, each result equal to
    scoring it alone; the one bad payload among them is refused, its neighbours are recorded."""
    task, segments = signal_model
    prefix = f"test/{uuid.uuid4().hex[:8]}"
    config = _config(shared_broker, prefix)
    Worker(task, store, **config).join()  # the session exists: the broker queues for it from now on
    messages = [(f"{prefix}/in/{i}", json.dumps(s.tolist()).encode()) for i, s in enumerate(segments)]
    bad = (f"{prefix}/in/bad", b'[[1.0, 2.0], [3.0]]')  # ragged: not a (samples, channels) array
    messages.insert(len(messages) // 2, bad)
    results = Results(shared_broker, f"results/{prefix}/#")
    try:
        publish(shared_broker, messages)
        worker = Worker(task, store, **config)
        _until(lambda: len(results.results()) + len(results.errors()) >= len(messages), 60, "every result")
        worker.join()
        alone = {f"{prefix}/in/{i}": task.predict([s])[0] for i, s in enumerate(segments)}
        got = {body["topic"]: body for body in results.results()}
        assert set(got) == set(alone)
        for topic, body in got.items():
            assert body["result"]["label"] == alone[topic]["label"]
            assert body["result"]["confidence"] == pytest.approx(alone[topic]["confidence"], abs=1e-5)
        assert [e["topic"] for e in results.errors()] == [bad[0]]
        assert worker.stream.stats.largest_batch > 1 and worker.stream.stats.refused == 1
        assert store.count() == len(segments)
    finally:
        results.close()
