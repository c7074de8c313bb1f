"""The OPC UA stream end to end: real models, the real record store, a real asyncua server on a free loopback port.

The server runs in a thread of the test (its own event loop); the test sets its variables with explicit source
timestamps (one timestamp = one sample), stops and restarts it, and reads back what the stream wrote.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

ua_lib = pytest.importorskip("asyncua")

from asyncua import Server, ua  # noqa: E402

from shopfloor.core.errors import ConfigError  # noqa: E402
from shopfloor.core.registry import load  # noqa: E402
from shopfloor.plant.opcua import OpcuaConfig, OpcuaStream, OpcuaUnavailable, parse_period  # noqa: E402
from shopfloor.plant.records import RecordStore  # noqa: E402

NUMERIC = ["Air temperature [K]", "Process temperature [K]", "Rotational speed [rpm]", "Torque [Nm]",
           "Tool wear [min]"]
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
FAST = {"every": 0.05, "timeout_s": 2.0, "reconnect_min_s": 0.1, "reconnect_max_s": 0.4, "connect_tries": 2}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def node(name: str) -> str:
    """The test server's node id of a variable."""
    return f"ns=2;s=Mill.{name}"


class PlantServer:
    """An asyncua server on a free loopback port, in a thread with its own event loop.

    ``variables`` maps a node name to ``(browse name, initial value, variant type, writable)``. ``set`` gives
    variables new values with one source timestamp (one sample); ``restart`` brings the server back on the same port
    with the values and timestamps it had.
    """

    def __init__(self, variables: dict[str, tuple[str, object, ua.VariantType, bool]]) -> None:
        self.port = _free_port()
        self.url = f"opc.tcp://127.0.0.1:{self.port}"
        self.variables = variables
        self.values: dict[str, ua.DataValue] = {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: Server | None = None
        self.nodes: dict[str, object] = {}
        self.start()

    def _call(self, coro, timeout: float = 20):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(f"{self.url}/")
        idx = await server.register_namespace("urn:shopfloor:test")
        assert idx == 2
        mill = await server.nodes.objects.add_object(ua.NodeId("Mill", idx), "Mill")
        for name, (browse, value, vtype, writable) in self.variables.items():
            if vtype is ua.VariantType.Variant:  # a BaseDataType variable whose reads give whatever `set` gave it
                var = await mill.add_variable(ua.NodeId(f"Mill.{name}", idx), ua.QualifiedName(browse, idx),
                                              ua.Variant(value), datatype=ua.NodeId(ua.ObjectIds.BaseDataType))
                self.values.setdefault(name, ua.DataValue(ua.Variant(value), SourceTimestamp=T0))
                server.iserver.aspace.set_attribute_value_callback(
                    var.nodeid, ua.AttributeIds.Value, lambda nodeid, attr, name=name: self.values[name])
            else:
                var = await mill.add_variable(ua.NodeId(f"Mill.{name}", idx), ua.QualifiedName(browse, idx),
                                              ua.Variant(value, vtype))
            if writable:
                await var.set_writable()
            if name in self.values and vtype is not ua.VariantType.Variant:
                await var.write_value(self.values[name])
            self.nodes[name] = var
        await server.start()
        self.server = server

    def start(self) -> None:
        self._call(self._start())

    def stop(self) -> None:
        if self.server is not None:
            self._call(self.server.stop())
            self.server = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def set(self, values: dict[str, object], stamp: datetime, status: dict[str, int] | None = None) -> None:
        """One sample: ``values`` (by node name) with source timestamp ``stamp``; ``status`` gives some a Bad code."""

        async def write() -> None:
            for name, value in values.items():
                vtype = self.variables[name][2]
                variant = ua.Variant(value) if vtype is ua.VariantType.Variant else ua.Variant(value, vtype)
                code = ua.StatusCode((status or {}).get(name, ua.StatusCodes.Good))
                dv = ua.DataValue(variant, StatusCode=code, SourceTimestamp=stamp)
                self.values[name] = dv
                if vtype is not ua.VariantType.Variant:
                    await self.nodes[name].write_value(dv)

        self._call(write())

    def read(self, name: str):
        return self._call(self.nodes[name].read_value())

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


MILL_KEYS = {"Air temperature [K]": "AirTemp", "Process temperature [K]": "ProcessTemp",
             "Rotational speed [rpm]": "Speed", "Torque [Nm]": "Torque", "Tool wear [min]": "ToolWear"}


@pytest.fixture
def mill():
    """The milling machine: one variable per numeric column (BrowseName = the column; Double, the speed of any data
    type), result nodes, a read-only node and a text node."""
    variables = {key: (column, 0.0, ua.VariantType.Double, False) for column, key in MILL_KEYS.items()}
    variables["Speed"] = ("Rotational speed [rpm]", 0.0, ua.VariantType.Variant, False)  # any type: checked per sample
    variables.update({"Alarm": ("Alarm", False, ua.VariantType.Boolean, True),
                      "Risk": ("Risk", 0.0, ua.VariantType.Double, True),
                      "Label": ("Label", "", ua.VariantType.String, True),
                      "Counter": ("Counter", 0.0, ua.VariantType.Double, False),
                      "Operator": ("Operator", "ann", ua.VariantType.String, False)})
    server = PlantServer(variables)
    yield server
    server.close()


@pytest.fixture
def store(tmp_path):
    s = RecordStore(f"sqlite:///{tmp_path / 'records.db'}")
    yield s
    s.close()


def _mill_nodes(mapped: str = "Torque [Nm]") -> list[str]:
    """Bare node ids (columns from their BrowseNames), one of them mapped by name explicitly."""
    return [f"{column}={node(key)}" if column == mapped else node(key) for column, key in MILL_KEYS.items()]


def _sample(mill: PlantServer, row: dict, i: int) -> None:
    mill.set({MILL_KEYS[c]: float(row[c]) for c in NUMERIC}, T0 + timedelta(seconds=i))


class Runner:
    """``stream.run`` in a thread, stopped by ``join``; any exception is kept and re-raised by ``join``."""

    def __init__(self, stream: OpcuaStream, max_samples: int | None = None) -> None:
        self.stream = stream
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(max_samples,), daemon=True)
        self.thread.start()

    def _run(self, max_samples) -> None:
        try:
            self.stream.run(self.stop, max_samples=max_samples)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def join(self, timeout: float = 20) -> None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the stream did not stop"
        if self.error is not None:
            raise self.error


def _stream(task, store, mill, **config) -> OpcuaStream:
    options = {"endpoint": mill.url, "nodes": _mill_nodes(), "constants": ["Type=L"], **FAST, **config}
    return OpcuaStream(task, store, OpcuaConfig(**options))


def _feed(runner: Runner, store: RecordStore, mill: PlantServer, rows: list[dict], first: int, n: int) -> None:
    """Samples first..first+n-1, each after the stream has recorded the one before."""
    for i in range(first, first + n):
        _sample(mill, rows[i], i)
        _until(lambda: store.count() == i + 1 or runner.error is not None, 15, f"record {i + 1}")
        if runner.error is not None:
            runner.join()


# ----------------------------------------------------------------- configuration
def test_config_is_checked():
    ok = {"endpoint": "opc.tcp://127.0.0.1:4840", "nodes": "ns=2;s=Mill.AirTemp"}
    assert OpcuaConfig(**ok, every="500ms").every == 0.5
    assert parse_period("2min") == 120 and parse_period(1) == 1.0
    config = OpcuaConfig(**{**ok, "nodes": "Air temperature [K]=ns=2;s=Mill.AirTemp,i=2258"},
                         write="label=ns=2;s=Mill.Label,score=ns=2;s=Mill.Risk", constants="Type=L,unit=7")
    assert [(m.name, m.node_id) for m in config.nodes] == [("Air temperature [K]", "ns=2;s=Mill.AirTemp"),
                                                            (None, "i=2258")]
    assert [m.name for m in config.write] == ["label", "score"] and config.constants == {"Type": "L", "unit": "7"}
    bad = [({"nodes": "ns=2;x=Mill.AirTemp"}, "not an OPC UA node id"),
           ({"nodes": "Air=ns=two;s=X"}, "not an OPC UA node id"),
           ({"nodes": "nsu=urn:plant;s=Temp"}, "give the namespace index"),
           ({"nodes": ""}, "give the OPC UA variables"),
           ({"nodes": "ns=2;s=A,ns=2;s=A"}, "more than once"),
           ({"nodes": "x=ns=2;s=A,x=ns=2;s=B"}, "more than one node"),
           ({"endpoint": "http://127.0.0.1:4840"}, "opc.tcp://"),
           ({"endpoint": "opc.tcp://127.0.0.1:port"}, "not a number"),
           ({"every": "fast"}, "1s, 500ms"),
           ({"every": "0s"}, "between 10ms and 24h"),
           ({"write": "ns=2;s=Mill.Risk"}, "names no result field"),
           ({"constants": "Type"}, "COLUMN=VALUE"),
           ({"mqtt": "http://broker"}, "mqtt://"),
           ({"mqtt": "mqtt://127.0.0.1:1883", "publish": "results/{topic}"}, "placeholders are {model}")]
    for change, message in bad:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            OpcuaConfig(**{**ok, **change})


# ----------------------------------------------------------------- the main path
def test_samples_recorded_written_back_and_idempotent(model, store, mill):
    """Each sample is predicted as `predict` would (one row: node values + --set), recorded once with the endpoint
    as source, written back converted to each node's type; re-reads of a sample record nothing, also in a new run."""
    task, rows = model
    write = f"label={node('Label')},score={node('Risk')},failure={node('Alarm')}"
    _sample(mill, rows[0], 0)
    runner = Runner(_stream(task, store, mill, write=write))
    try:
        _until(lambda: store.count() == 1, 15, "the first record")
        _feed(runner, store, mill, rows, 1, 3)
        _until(lambda: runner.stream.stats.written == 12, 10, "the last write-back")
        time.sleep(0.3)  # several more polls of the last sample
    finally:
        runner.join()
    stats = runner.stream.stats
    assert (stats.samples, stats.recorded, stats.duplicates, stats.skipped, stats.refused) == (4, 4, 0, 0, 0)
    assert stats.unchanged > 0 and stats.written == 12 and stats.write_failures == 0
    records = sorted(store.query(limit=10), key=lambda r: r["id"])
    assert len({r["key"] for r in records}) == 4
    assert {r["source"] for r in records} == {f"{mill.url}#ns=2"}
    expected = task.predict([pd.DataFrame([{**rows[i], "Type": "L"}]) for i in range(4)])
    for record, want in zip(records, expected):
        assert record["score"] == pytest.approx(want["probability"], abs=1e-6)
        assert record["result"]["failure"] == want["failure"]
        assert record["result"]["input"].startswith(f"{mill.url}#ns=2 @ 2026-12-01T08:00:0")
    last = records[-1]
    assert mill.read("Risk") == pytest.approx(last["score"]) and mill.read("Label") == last["label"]
    assert mill.read("Alarm") is last["result"]["failure"]

    again = OpcuaStream(task, store, OpcuaConfig(endpoint=mill.url, nodes=_mill_nodes(), constants="Type=L",
                                                 write=write, **FAST))
    stats = again.run(max_samples=1)  # a new run re-reads the last sample: its record, not a new one
    assert (stats.samples, stats.recorded, stats.duplicates) == (1, 0, 1) and store.count() == 4


def test_server_restarted_mid_run(model, store, mill, caplog):
    """The server stops and comes back on the same port: the stream logs the loss once, reconnects with backoff and
    goes on; the sample read before the restart is not recorded again, nothing is lost."""
    task, rows = model
    _sample(mill, rows[0], 0)
    runner = Runner(_stream(task, store, mill, write=f"score={node('Risk')}"))
    try:
        with caplog.at_level(logging.WARNING, logger="shopfloor.plant.opcua"):
            _until(lambda: store.count() == 1, 15, "the first record")
            _feed(runner, store, mill, rows, 1, 2)
            mill.stop()
            _until(lambda: not runner.stream.ready.is_set(), 10, "the stream to notice the loss")
            time.sleep(0.5)  # a few failed reconnects
            mill.start()  # the same values and source timestamps: the same sample as before
            _until(runner.stream.ready.is_set, 15, "the stream to reconnect")
            _feed(runner, store, mill, rows, 3, 3)
    finally:
        runner.join()
    stats = runner.stream.stats
    assert stats.reconnects == 1 and (stats.samples, stats.recorded, stats.duplicates) == (6, 6, 0)
    assert store.count() == 6 and len({r["key"] for r in store.query(limit=10)}) == 6
    assert mill.read("Risk") == pytest.approx(max(store.query(limit=10), key=lambda r: r["id"])["score"])
    lost = [r for r in caplog.records if "lost the OPC UA server" in r.getMessage()]
    assert len(lost) == 1 and len([r for r in caplog.records if "reconnected" in r.getMessage()]) == 1


def test_write_back_cut_off_by_a_lost_server_is_written_after_the_reconnect(model, store, mill, monkeypatch):
    """The server goes away while a sample is being predicted: its record is committed, its write-back fails, and
    it is written once the server is back (the restarted server starts with Risk = 0)."""
    task, rows = model
    predict = task.predict

    def slow(*args, **kwargs):
        time.sleep(2.0)  # the server stops meanwhile
        return predict(*args, **kwargs)

    monkeypatch.setattr(task, "predict", slow)
    _sample(mill, rows[0], 0)
    runner = Runner(_stream(task, store, mill, write=f"score={node('Risk')}"))
    try:
        _until(lambda: runner.stream.stats.samples == 1, 15, "the first sample")
        mill.stop()
        _until(lambda: store.count() == 1, 10, "the record, committed while the server is away")
        time.sleep(0.3)
        mill.start()
        _until(lambda: runner.stream.stats.written == 1, 15, "the write-back after the reconnect")
        time.sleep(0.3)  # re-reads of the same sample after the reconnect
    finally:
        runner.join()
    stats = runner.stream.stats
    assert stats.reconnects == 1 and (stats.samples, stats.recorded, stats.duplicates) == (1, 1, 0)
    assert mill.read("Risk") == pytest.approx(store.query()[0]["score"]) and store.count() == 1


# ----------------------------------------------------------------- refusals with a clear message
def test_nodes_that_do_not_fit_the_model_are_refused_at_start(model, store, mill):
    task, _ = model
    cases = [
        ({"nodes": [*_mill_nodes(), node("Nope")]}, [r"1 node\(s\) cannot be read", "Mill.Nope: BadNodeIdUnknown"]),
        ({"nodes": ["Bogus=" + node("AirTemp"), *_mill_nodes()[1:]]},
         [r"unknown column\(s\): 'Bogus' \(node ns=2;s=Mill.AirTemp\)", r"missing column\(s\): \['Air temperature",
          r"The model reads these columns: \[.*'Air temperature \[K\]'.*'Type'\]"]),
        ({"constants": []}, [r"missing column\(s\): \['Type'\]", "--set COLUMN=VALUE"]),
        ({"nodes": [*_mill_nodes()[:-1], f"Tool wear [min]={node('Operator')}"]},
         [r"Mill.Operator \('Tool wear \[min\]'\) holds String; this column needs a number"]),
        ({"constants": ["Type=L", "Torque [Nm]=12"]}, ["given twice"]),
        ({"write": f"score={node('Counter')}"}, ["read-only", "Mill.Counter"]),
    ]
    for change, messages in cases:
        stream = _stream(task, store, mill, **change)
        with pytest.raises(ConfigError) as caught:
            stream.run(max_samples=1)
        for message in messages:
            assert re.search(message, str(caught.value)), (message, str(caught.value))
    assert store.count() == 0


def test_result_fields_that_do_not_fit_stop_before_recording(model, store, mill):
    task, rows = model
    _sample(mill, rows[0], 0)
    with pytest.raises(ConfigError, match=r"has no field\(s\) \['risk'\]; write one of \['label', 'score'"):
        _stream(task, store, mill, write=f"risk={node('Risk')}").run(max_samples=1)
    with pytest.raises(ConfigError, match=r"write label=ns=2;s=Mill.Risk: the node holds Double and label is str"):
        _stream(task, store, mill, write=f"label={node('Risk')}").run(max_samples=1)
    assert store.count() == 0


def test_results_published_to_mqtt(model, store, mill):
    """--publish-mqtt: each result on the result topic (QoS 1) with its record id, through the shared broker."""
    mqtt = pytest.importorskip("paho.mqtt.client")
    try:
        socket.create_connection(("127.0.0.1", 1883), timeout=1).close()
    except OSError:
        pytest.skip("no MQTT broker at 127.0.0.1:1883")
    task, rows = model
    prefix = f"sftest/opcua-{uuid.uuid4().hex[:8]}"
    messages: list[tuple[str, dict]] = []
    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    listener.on_message = lambda c, u, m: messages.append((m.topic, json.loads(m.payload)))
    listener.connect("127.0.0.1", 1883)
    listener.subscribe(f"{prefix}/#", qos=1)
    listener.loop_start()
    _sample(mill, rows[0], 0)
    runner = Runner(_stream(task, store, mill, mqtt="mqtt://127.0.0.1:1883", publish=prefix + "/{model}",
                            client_id=prefix.replace("/", "-")))
    try:
        _until(lambda: store.count() == 1, 15, "the first record")
        _feed(runner, store, mill, rows, 1, 1)
        _until(lambda: len(messages) == 2, 10, "two result messages")
    finally:
        runner.join()
        listener.loop_stop()
    model_name = Path(task._artifact.path).name
    assert {topic for topic, _ in messages} == {f"{prefix}/{model_name}"}
    assert sorted(body["record_id"] for _, body in messages) == sorted(r["id"] for r in store.query())
    assert all(body["source"] == f"{mill.url}#ns=2" and body["duplicate"] is False for _, body in messages)
    assert runner.stream.stats.published == 2


def test_unreachable_server_fails_after_bounded_tries(model, store):
    task, _ = model
    stream = OpcuaStream(task, store, OpcuaConfig(endpoint=f"opc.tcp://127.0.0.1:{_free_port()}",
                                                  nodes=_mill_nodes(), constants="Type=L", **FAST))
    started = time.monotonic()
    with pytest.raises(OpcuaUnavailable, match=r"cannot reach the OPC UA server .* \(2 tries over .*check that "
                                               "the server runs"):
        stream.run(max_samples=1)
    assert time.monotonic() - started < 10


def test_bad_samples_are_skipped_with_a_warning(model, store, mill, caplog):
    """A Bad status code, NaN, or a value of the wrong type: the sample is skipped, warned about once per node and
    problem, counted; the next good sample is recorded."""
    task, rows = model
    good = {MILL_KEYS[c]: float(rows[0][c]) for c in NUMERIC}
    mill.set({**good, "AirTemp": math.nan}, T0)
    runner = Runner(_stream(task, store, mill))
    try:
        with caplog.at_level(logging.WARNING, logger="shopfloor.plant.opcua"):
            _until(lambda: runner.stream.stats.skipped == 1, 15, "the first skipped sample")
            bad = [({**good, "Torque": 5.0}, {"Torque": ua.StatusCodes.BadSensorFailure}),
                   ({**good, "Speed": "fast"}, None), ({**good, "AirTemp": math.nan}, None)]
            for i, (values, status) in enumerate(bad, start=1):
                mill.set(values, T0 + timedelta(seconds=i), status)
                _until(lambda: runner.stream.stats.skipped == i + 1, 10, f"skipped sample {i + 1}")
            mill.set(good, T0 + timedelta(seconds=10))
            _until(lambda: store.count() == 1, 10, "the good sample's record")
    finally:
        runner.join()
    assert runner.stream.stats.skipped == 4 and runner.stream.stats.samples == 5
    messages = [r.getMessage() for r in caplog.records if r.name == "shopfloor.plant.opcua"]
    assert len([m for m in messages if "Mill.AirTemp ('Air temperature [K]') is nan" in m]) == 1  # once per kind
    assert any("Mill.Torque has status BadSensorFailure" in m for m in messages)
    assert any("Mill.Speed ('Rotational speed [rpm]') holds str 'fast', not a number" in m for m in messages)
    assert store.query(limit=5)[0]["score"] == pytest.approx(
        task.predict([pd.DataFrame([{**rows[0], "Type": "L"}])])[0]["probability"], abs=1e-6)


# ----------------------------------------------------------------- other tasks
@pytest.fixture(scope="module")
def rul_model(tmp_path_factory):
    from shopfloor.maintenance.rul import RemainingUsefulLife
    from shopfloor.maintenance.rul.simulator import simulate_degradation

    root = tmp_path_factory.mktemp("rul")
    histories = simulate_degradation(n_units=8, seed=0, life_range=(40, 60))
    histories.drop(columns=["rul"]).to_csv(root / "train.csv", index=False)
    RemainingUsefulLife(window=5, baseline_cycles=0, ensemble=1, explain_units=0,
                        data={"setting_columns": ["setting_1", "setting_2"]},
                        training={"epochs": 1, "batch_size": 64, "progress": False, "device": "cpu"}).fit(
        root / "train.csv", root / "rul")
    return load(root / "rul", device="cpu"), histories


def test_rul_predicts_on_the_unit_history_so_far(rul_model, store):
    """A history task: one row appended per sample (unit from --set, time = the sample count), predicted on the
    unit's history so far, exactly as `predict` on that history."""
    task, histories = rul_model
    columns = task.table_columns()
    unit = histories[histories.unit == histories.unit.iloc[0]].reset_index(drop=True)
    server = PlantServer({c: (c, 0.0, ua.VariantType.Double, False) for c in columns.values}
                         | {"RUL": ("RUL", 0.0, ua.VariantType.Double, True)})
    try:
        stream = OpcuaStream(task, store, OpcuaConfig(endpoint=server.url, nodes=[node(c) for c in columns.values],
                                                      constants="unit=7", write=f"rul={node('RUL')}", **FAST))
        for i in range(8):
            server.set({c: float(unit.loc[i, c]) for c in columns.values}, T0 + timedelta(minutes=i))
            if i == 0:
                runner = Runner(stream)
            _until(lambda: stream.stats.samples == i + 1 and stream.stats.refused + store.count() == i + 1, 10,
                   f"sample {i + 1}")
        runner.join()
        written = server.read("RUL")
    finally:
        server.close()
    # a history shorter than the window (5) is the model's call: refused, or estimated with a wider interval
    assert stream.stats.refused + store.count() == 8 and store.count() >= 4
    frame = unit.loc[:7, list(columns.values)].assign(unit="7", time=range(1, 9))
    want = task.predict([frame])[0]["rul"]
    last = max(store.query(limit=10), key=lambda r: r["id"])
    assert last["result"]["last_time"] == 8 and last["score"] == pytest.approx(want, rel=1e-5)
    assert written == pytest.approx(last["result"]["rul"], rel=1e-6)


@pytest.fixture(scope="module")
def monitoring_model(tmp_path_factory):
    from shopfloor.process.monitoring import ProcessMonitoring
    from shopfloor.process.synthetic import simulate_process

    root = tmp_path_factory.mktemp("monitoring")
    ProcessMonitoring(window=5, classify=False, training={"epochs": 2, "progress": False, "device": "cpu"}).fit(
        simulate_process(300, 0), root / "monitoring")
    return load(root / "monitoring", device="cpu"), simulate_process(12, 5, "drift", 0)


def test_process_monitoring_scores_point_by_point(monitoring_model, store):
    """A history task keyed by its run column: each sample is scored as the latest point of the run so far (window
    kept by the model), exactly as `predict` on that history; the score is written back."""
    task, run = monitoring_model
    columns = task.table_columns()
    assert columns.unit == "run" and columns.time == "time"
    server = PlantServer({c: (c, 0.0, ua.VariantType.Double, False) for c in columns.values}
                         | {"Score": ("Score", 0.0, ua.VariantType.Double, True)})
    try:
        stream = OpcuaStream(task, store, OpcuaConfig(endpoint=server.url, nodes=[node(c) for c in columns.values],
                                                      constants="run=line_1", write=f"score={node('Score')}", **FAST))
        for i in range(8):
            server.set({c: float(run.loc[i, c]) for c in columns.values}, T0 + timedelta(minutes=i))
            if i == 0:
                runner = Runner(stream)
            _until(lambda: store.count() == i + 1, 10, f"sample {i + 1}")
        runner.join()
        written = server.read("Score")
    finally:
        server.close()
    frame = run.loc[:7, list(columns.values)].assign(run="line_1", time=range(1, 9))
    want = task.predict([frame])[0]
    last = max(store.query(limit=10), key=lambda r: r["id"])
    assert last["result"]["time"] == 8 and last["result"]["padded"] is False
    assert last["score"] == pytest.approx(want["score"], rel=1e-5) and last["label"] == want["label"]
    assert written == pytest.approx(want["score"], rel=1e-5)


@pytest.fixture(scope="module")
def bearing_model(tmp_path_factory):
    import numpy as np

    from shopfloor.maintenance.fault_diagnosis import FaultDiagnosis
    from shopfloor.maintenance.fault_diagnosis.simulator import write_bearing_dataset

    root = tmp_path_factory.mktemp("bearing")
    signals = write_bearing_dataset(root / "signals", recordings_per_class=1, duration_s=1.0, seed=0)
    FaultDiagnosis(sampling_rate=12_000, segment_length=512, train_stride=64, eval_stride=256,
                   training={"progress": False, "epochs": 1, "batch_size": 64, "device": "cpu"}).fit(
        signals, out_dir=root / "bearing")
    return load(root / "bearing", device="cpu"), np.load(sorted(Path(signals).rglob("*.npy"))[0])


def test_fault_diagnosis_reads_an_array_node_as_one_segment(bearing_model, store):
    task, signal = bearing_model
    segment = [float(x) for x in signal.reshape(-1)[:1024]]
    server = PlantServer({"Vibration": ("Vibration", [0.0] * 1024, ua.VariantType.Double, False),
                          "Fault": ("Fault", "", ua.VariantType.String, True)})
    try:
        server.set({"Vibration": segment}, T0)
        stats = OpcuaStream(task, store, OpcuaConfig(endpoint=server.url, nodes=node("Vibration"),
                                                     write=f"label={node('Fault')}", **FAST)).run(max_samples=1)
        written = server.read("Fault")
    finally:
        server.close()
    want = task.predict([signal.reshape(-1)[:1024]])[0]
    assert stats.recorded == 1 and written == want["label"] == store.query()[0]["label"]


# ----------------------------------------------------------------- command line
def test_stream_from_the_command_line(model, mill, tmp_path):
    """`shopfloor stream --opcua` end to end in a real process, bounded by --max-samples."""
    task, rows = model
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    shopfloor = str(Path(sys.executable).parent / "shopfloor")
    worker = subprocess.Popen([shopfloor, "stream", str(Path(task._artifact.path)), "--opcua", mill.url,
                               "--nodes", ",".join(_mill_nodes()), "--set", "Type=L", "--every", "100ms",
                               "--write", f"score={node('Risk')}", "--db", db, "--max-samples", "3",
                               "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        i = 0
        while worker.poll() is None and time.monotonic() < deadline and i < 50:
            _sample(mill, rows[i], i)  # a new sample every 0.3 s until the worker has read three
            i += 1
            time.sleep(0.3)
        _, err = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err
    assert "samples 3, recorded 3" in err
    with RecordStore(db) as records:
        assert records.count() == 3
        assert mill.read("Risk") == pytest.approx(max(records.query(), key=lambda r: r["id"])["score"])



@pytest.fixture
def console_state():
    """The CLI routes the shopfloor logger and warnings to its console: put them back for the tests that follow."""
    import warnings

    logger = logging.getLogger("shopfloor")
    saved = (list(logger.handlers), logger.propagate, logger.level, warnings.showwarning)
    yield
    logger.handlers[:], logger.propagate, logger.level, warnings.showwarning = saved


def test_stream_inputs_are_exclusive(model, console_state):
    from typer.testing import CliRunner

    from shopfloor.cli import app

    model_dir = str(Path(model[0]._artifact.path))
    cases = [([], "give exactly one input: --mqtt"), (["--mqtt", "mqtt://x", "--opcua", "opc.tcp://x:4840"],
                                                      "give exactly one input"),
             (["--mqtt", "mqtt://127.0.0.1:1", "--nodes", "ns=2;s=A", "--set", "Type=L"],
              "--nodes, --set are for --opcua streams"),
             (["--opcua", "opc.tcp://127.0.0.1:1", "--nodes", "ns=2;s=A", "--max-messages", "3"],
              "--max-messages is for --mqtt streams"),
             (["--opcua", "opc.tcp://127.0.0.1:1", "--nodes", "ns=2;x=A"], "is not an OPC UA node id")]
    for args, message in cases:
        result = CliRunner().invoke(app, ["stream", model_dir, *args])
        assert result.exit_code == 2 and message in " ".join(result.output.split()), (args, result.output)
