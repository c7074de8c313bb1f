"""``shopfloor stream --opcua``: read OPC UA nodes on a fixed period, predict each sample, record it once, and write
the result back to OPC UA nodes and/or publish it to MQTT.

**Polling, not subscriptions.** Every ``every`` seconds one Read request fetches all the input nodes at once. A
fixed period is what builds evenly-sampled rows and histories (a data-change subscription reports each node on
its own schedule and says nothing while a value holds still), and one Read gives one consistent snapshot of all
nodes with their status codes and source timestamps.

- **A sample** is identified by its nodes' source timestamps: a poll whose timestamps equal the previous poll's is
  the same sample again (counted ``unchanged``, nothing recorded or written). The record key is
  ``opcua:<model>:<source>:<SHA-256 of node ids + source timestamps + --set values>``, so a re-read of a sample
  (after a reconnect, or by a restarted stream) finds its record (``created`` False) instead of making a second one.
  ``source`` is the endpoint (without credentials) and the nodes' namespace(s): ``opc.tcp://host:4840#ns=2``.
- **Which node is which column.** ``--nodes 'Air temperature [K]=ns=2;s=Mill.AirTemp,...'``; a node given without a
  name takes the column of its BrowseName (or DisplayName). Constant columns (a product type, a unit id) come from
  ``--set``. The columns are what the task declares (``Task.table_columns``): unknown or missing ones are refused
  at start with the list the model expects.
- **Tasks.** ``table`` tasks without a unit column (failure prediction): one row per sample. History tasks (RUL):
  one row per sample appended to the unit's history, predicted on the history so far; the time column is the
  sample count unless a node or ``--set`` gives it. ``signal`` tasks (fault diagnosis): each node holds an array,
  one channel of one segment, in the order given.
- **Bad samples are skipped, never guessed**: a Bad/Uncertain status code, NaN or infinity, or a value of the wrong
  type is logged (once per node and problem) and counted in ``skipped``. An input the model refuses (``predict``
  raises) is counted in ``refused``.
- **Connection.** Unreachable at start: ``connect_tries`` tries with backoff, then :class:`OpcuaUnavailable`. Lost
  mid-run: logged once, reconnected with backoff (``reconnect_min_s`` doubling to ``reconnect_max_s``). A sample is
  committed before its result is written, and a result whose write-back was cut off is written again after the
  reconnect; the record store is retried with backoff while it is unavailable.
- **Write-back** (``--write 'label=ns=2;s=Mill.Alarm,score=ns=2;s=Mill.Risk'``): a field of the ``predict`` row, or
  ``label``/``score`` (as recorded), ``record_id`` or ``key``; converted to the node's data type. A node that is not
  writable is refused at start.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from shopfloor.core.errors import ConfigError, ShopfloorError
from shopfloor.core.quiet import is_verbose
from shopfloor.core.task import INPUT_KINDS, TableColumns, Task, to_jsonable

from .delivery import MqttPublisher, commit_with_retry, prediction_records, record_key, stream_identity
from .opcua_config import NodeMap, OpcuaConfig, parse_constants, parse_nodes, parse_period
from .records import RecordStore, label_and_score

__all__ = ["NodeMap", "OpcuaConfig", "OpcuaStats", "OpcuaStream", "OpcuaUnavailable", "parse_constants",
           "parse_nodes", "parse_period"]

log = logging.getLogger(__name__)

RESULT_EXTRAS = ("label", "score", "record_id", "key")  # write-back fields besides those of the predict row
WRITE_BIT = 1 << 1  # AccessLevel.CurrentWrite


class OpcuaUnavailable(ShopfloorError):
    """The OPC UA server could not be reached at start (after the configured tries)."""


@dataclass
class OpcuaStats:
    """What one ``run`` did."""

    polls: int = 0  # Read requests answered
    samples: int = 0  # new samples (distinct source timestamps), whatever became of them
    unchanged: int = 0  # polls that gave the previous sample again
    recorded: int = 0  # new records committed
    duplicates: int = 0  # samples whose records already existed (read before, e.g. by an earlier run)
    skipped: int = 0  # samples with a Bad status, NaN/inf or a value of the wrong type
    refused: int = 0  # samples the model refused (predict raised)
    written: int = 0  # result values written to OPC UA nodes
    write_failures: int = 0  # result values the server refused
    published: int = 0  # MQTT result messages confirmed by the broker
    reconnects: int = 0
    store_retries: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _Skip(Exception):
    """A sample that cannot be used: ``reason`` says which node and why; ``kind`` groups the log lines."""

    def __init__(self, node_id: str, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.node_id, self.kind, self.reason = node_id, kind, reason


# the transport went away, the request timed out, or the server refused the session: reconnect
def _lost_errors() -> tuple[type[BaseException], ...]:
    from asyncua import ua

    return OSError, asyncio.TimeoutError, TimeoutError, ua.UaError


class OpcuaStream:
    """Poll the nodes of :class:`OpcuaConfig` and predict every sample: ``OpcuaStream(task, store, config).run()``
    until ``stop`` is set or ``max_samples`` new samples were read."""

    def __init__(self, task: Task, store: RecordStore, config: OpcuaConfig) -> None:
        if task.input_kind not in ("table", "signal"):
            raise ConfigError(f"OPC UA input feeds sensor tasks (tables of readings, signals); {task.name} takes "
                              f"{INPUT_KINDS.get(task.input_kind, task.input_kind)}: use `shopfloor serve` or "
                              "`stream --mqtt` for it")
        self.task, self.store, self.config = task, store, config
        self.columns: TableColumns | None = None
        if task.input_kind == "table":
            self.columns = task.table_columns()
            if self.columns is None:
                raise ConfigError(f"the {task.name} task does not declare its input columns (Task.table_columns), "
                                  "so its rows cannot be built from OPC UA nodes; use `stream --mqtt` with JSON rows")
        elif config.constants:
            raise ConfigError(f"--set gives table columns; {task.name} reads a signal (one array node per channel)")
        self.model, self.artifact_hash = stream_identity(task, config.model)
        self.url, self.public_url = config.endpoint_parts()
        self.source = f"{self.public_url}#{self._namespaces()}"
        self.stats = OpcuaStats()
        self.ready = threading.Event()  # set while connected with every node resolved
        self.names: list[str] = []  # the column (or channel) of each input node
        self._values: dict[str, Any] = {}  # constants as typed values
        self._write_types: list[Any] = []
        self._stop = threading.Event()
        self._last_key: str | None = None
        self._pending: list[Any] | None = None  # result values whose write-back a lost connection cut off
        self._histories: dict[Any, list[dict[str, Any]]] = {}
        self._logged: set[tuple[str, str]] = set()
        self._fields_checked = False
        self._publisher: MqttPublisher | None = None

    def _namespaces(self) -> str:
        from asyncua import ua

        spaces = []
        for m in self.config.nodes:
            space = f"ns={ua.NodeId.from_string(m.node_id).NamespaceIndex}"
            if space not in spaces:
                spaces.append(space)
        return ",".join(spaces)

    # ----------------------------------------------------------------- run
    def run(self, stop: threading.Event | None = None, max_samples: int | None = None) -> OpcuaStats:
        """Poll until ``stop`` is set or ``max_samples`` new samples were read; returns the counts. Raises
        :class:`OpcuaUnavailable` when the server cannot be reached at start and ConfigError when the nodes do not
        fit the model."""
        self._stop = stop if stop is not None else threading.Event()
        library = logging.getLogger("asyncua")
        level = library.level
        if not is_verbose():  # its connection chatter: we log losses and reconnects ourselves, once
            library.setLevel(logging.CRITICAL)
        try:
            if self.config.mqtt is not None:
                self._publisher = MqttPublisher(self.config.mqtt, self.config.client_id or f"shopfloor-opcua-"
                                                f"{self.model}", qos=self.config.qos,
                                                timeout_s=self.config.publish_timeout_s)
            asyncio.run(self._run(max_samples))
        finally:
            library.setLevel(level)
            if self._publisher is not None:
                self._publisher.close()
        return self.stats

    async def _run(self, max_samples: int | None) -> None:
        client = await self._connect_first()
        if client is None:
            return
        try:
            try:
                await self._resolve(client)
            except _lost_errors() as exc:
                raise OpcuaUnavailable(f"the OPC UA server {self.public_url} went away while its nodes were checked "
                                       f"({type(exc).__name__}: {exc or 'no answer'}); start the stream again once "
                                       "it runs") from None
            self.ready.set()
            every = float(self.config.every)
            next_at = time.monotonic()
            while not self._stop.is_set() and (max_samples is None or self.stats.samples < max_samples):
                if await self._wait(next_at - time.monotonic()):
                    break
                next_at = max(next_at + every, time.monotonic())  # a slow sample delays, never bunches, the next
                try:
                    if self._pending is not None:
                        await self._write(client, self._pending)
                    values = await client.read_attributes(self._nodes(client, self.config.nodes))
                    self.stats.polls += 1
                    await self._handle(client, values)
                except _lost_errors() as exc:
                    self.ready.clear()
                    client = await self._reconnect(client, exc)
                    if client is None:
                        break
                    self.ready.set()
        finally:
            self.ready.clear()
            if client is not None:
                await self._close(client)

    async def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` (0.05 s steps); True as soon as ``stop`` is set."""
        deadline = time.monotonic() + max(seconds, 0.0)
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(left, 0.05))
        return True

    # ----------------------------------------------------------------- connection
    async def _connect(self) -> Any:
        from asyncua import Client

        client = Client(self.url, timeout=self.config.timeout_s)
        client.name = client.description = f"shopfloor stream {self.model}"
        try:
            await asyncio.wait_for(client.connect(), self.config.timeout_s * 2)
        except BaseException:
            await self._close(client)
            raise
        return client

    async def _close(self, client: Any) -> None:
        try:
            await asyncio.wait_for(client.disconnect(), 2.0)
        except Exception:  # the connection is gone already, or the server does not answer: nothing to close
            pass

    async def _connect_first(self) -> Any | None:
        """A connection, tried ``connect_tries`` times with backoff; ``None`` when stopped meanwhile."""
        started, delay, tries = time.monotonic(), self.config.reconnect_min_s, self.config.connect_tries
        for attempt in range(1, tries + 1):
            try:
                client = await self._connect()
                log.info("connected to OPC UA server %s", self.public_url)
                return client
            except _lost_errors() as exc:
                last = exc
            if attempt < tries:
                if await self._wait(delay):
                    return None  # stopped while waiting to try again
                delay = min(delay * 2, self.config.reconnect_max_s)
        raise OpcuaUnavailable(
            f"cannot reach the OPC UA server at {self.public_url} ({tries} tries over "
            f"{time.monotonic() - started:.1f} s; last error {type(last).__name__}: {last or 'no answer'}); check "
            "that the server runs and that host and port are right (opc.tcp://HOST:PORT)")

    async def _reconnect(self, client: Any, error: BaseException) -> Any | None:
        """A new connection after a loss, with backoff; ``None`` when stopped first. Logged once per outage."""
        log.warning("lost the OPC UA server %s (%s: %s); reconnecting with backoff", self.public_url,
                    type(error).__name__, error or "no answer")
        await self._close(client)
        lost_at, delay = time.monotonic(), self.config.reconnect_min_s
        while True:
            if await self._wait(delay):
                return None
            try:
                client = await self._connect()
                break
            except _lost_errors():
                delay = min(delay * 2, self.config.reconnect_max_s)
        self.stats.reconnects += 1
        log.warning("reconnected to OPC UA server %s after %.1f s", self.public_url, time.monotonic() - lost_at)
        return client

    @staticmethod
    def _nodes(client: Any, maps: list[NodeMap]) -> list[Any]:
        return [client.get_node(m.node_id) for m in maps]

    # ----------------------------------------------------------------- start: nodes against the model
    async def _resolve(self, client: Any) -> None:
        """Check every node exists and is a variable, name the input nodes' columns, check them against the model's
        columns and data types, and check the write-back nodes are writable."""
        from asyncua import ua

        maps = [*self.config.nodes, *self.config.write]
        nodes = self._nodes(client, maps)
        classes = await client.read_attributes(nodes, ua.AttributeIds.NodeClass)
        problems = []
        for m, dv in zip(maps, classes):
            if not dv.StatusCode.is_good():
                problems.append(f"{m.node_id}: {dv.StatusCode.name}")
            elif dv.Value.Value != ua.NodeClass.Variable:
                problems.append(f"{m.node_id}: a {ua.NodeClass(dv.Value.Value).name}, not a Variable that holds a "
                                "value")
        if problems:
            raise ConfigError(f"{len(problems)} node(s) cannot be read on {self.public_url}:\n  " + "\n  ".join(
                problems) + "\nCheck the node ids (ns=<namespace index>;s=<name> or ;i=<number>) against the server's "
                "address space, e.g. with an OPC UA browser")
        inputs = nodes[:len(self.config.nodes)]
        browse = await client.read_attributes(inputs, ua.AttributeIds.BrowseName)
        display = await client.read_attributes(inputs, ua.AttributeIds.DisplayName)
        expected = set(self.columns.required) if self.columns is not None else set()
        self.names = []
        for m, b, d in zip(self.config.nodes, browse, display):
            candidates = [getattr(b.Value.Value, "Name", None), getattr(d.Value.Value, "Text", None)]
            candidates = [c for c in candidates if c]
            self.names.append(m.name or next((c for c in candidates if c in expected), candidates[0]
                                            if candidates else m.node_id))
        types = [await self._variant_type(n) for n in nodes]
        if self.columns is not None:
            self._check_columns(types[:len(inputs)])
        else:
            self._check_signal(types[:len(inputs)])
        self._write_types = types[len(inputs):]
        writes = nodes[len(inputs):]
        if writes:
            access = await client.read_attributes(writes, ua.AttributeIds.UserAccessLevel)
            read_only = [f"{m.name}={m.node_id}" for m, dv in zip(self.config.write, access)
                         if not dv.StatusCode.is_good() or not int(dv.Value.Value or 0) & WRITE_BIT]
            if read_only:
                raise ConfigError(f"write: node(s) {read_only} are read-only for this client on {self.public_url}; "
                                  "make them writable on the server (AccessLevel CurrentWrite) or leave them out of "
                                  "--write")

    @staticmethod
    async def _variant_type(node: Any) -> Any:
        try:
            return await node.read_data_type_as_variant_type()
        except Exception:  # an abstract or structured data type: the values are checked sample by sample
            return None

    def _check_columns(self, types: list[Any]) -> None:
        from asyncua import ua

        columns = self.columns
        assert columns is not None
        given = [(name, f"node {m.node_id}") for name, m in zip(self.names, self.config.nodes)]
        given += [(name, f"--set {name}={value}") for name, value in self.config.constants.items()]
        names = [name for name, _ in given]
        expected = columns.required
        errors = []
        unknown = [f"{name!r} ({where})" for name, where in given if name not in expected]
        if unknown:
            errors.append(f"unknown column(s): {', '.join(unknown)}")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            errors.append(f"given twice (a node and --set, or two nodes): {twice}")
        missing = [c for c in expected if c not in names and c != columns.time]
        if missing:
            errors.append(f"missing column(s): {missing}")
        numbers = {*columns.values, *([columns.time] if columns.time else [])} - set(columns.text)
        for name, m, vtype in zip(self.names, self.config.nodes, types):
            if name in numbers and vtype is not None and vtype not in _numeric_types() and \
                    vtype is not ua.VariantType.Variant:
                errors.append(f"node {m.node_id} ({name!r}) holds {vtype.name}; this column needs a number")
        self._values = {}
        for name, value in self.config.constants.items():
            if name in numbers:
                try:
                    self._values[name] = float(value)
                except ValueError:
                    errors.append(f"--set {name}={value}: this column needs a number")
            else:
                self._values[name] = value
        if errors:
            raise ConfigError(
                f"the OPC UA nodes and --set values do not fit the {self.task.name} model:\n  " + "\n  ".join(errors)
                + f"\nThe model reads these columns: {list(expected)}"
                + (f" ({columns.time!r} defaults to the sample count)" if columns.time else "")
                + ". Name a node's column with COLUMN=NODE in --nodes (a bare node takes its BrowseName), give "
                "constant columns with --set COLUMN=VALUE")
        if columns.time and columns.time not in names:
            log.info("the time column %r is the sample count (1, 2, ...) since the stream started; map a node to it "
                     "if the machine counts its cycles", columns.time)

    def _check_signal(self, types: list[Any]) -> None:
        from asyncua import ua

        wrong = [f"{m.node_id} holds {t.name}" for m, t in zip(self.config.nodes, types)
                 if t is not None and t not in _numeric_types() and t is not ua.VariantType.Variant]
        if wrong:
            raise ConfigError(f"{self.task.name} reads a signal: each node must hold an array of numbers (one "
                              f"channel); {', '.join(wrong)}")

    # ----------------------------------------------------------------- one sample
    async def _handle(self, client: Any, values: list[Any]) -> None:
        stamps = []
        for m, dv in zip(self.config.nodes, values):
            stamp = dv.SourceTimestamp
            if stamp is None:
                self._log_once(m.node_id, "no-timestamp", f"node {m.node_id} gives no source timestamp: each read "
                               "of it counts as a new sample (a re-read cannot be recognised)")
                stamp = datetime.now(timezone.utc)
            stamps.append(stamp)
        identity = json.dumps([[m.node_id, s.isoformat()] for m, s in zip(self.config.nodes, stamps)]
                              + [sorted(self.config.constants.items())])
        key = record_key(f"opcua:{self.model}:{self.source}", hashlib.sha256(identity.encode()).hexdigest())
        if key == self._last_key:
            self.stats.unchanged += 1
            return
        self._last_key = key
        self.stats.samples += 1
        sample_time = max(stamps).isoformat()
        try:
            item, record = self._sample(values)
        except _Skip as skip:
            self.stats.skipped += 1
            self._log_once(skip.node_id, skip.kind, f"skipped the sample of {sample_time}: {skip.reason}")
            return
        started = time.perf_counter()
        try:
            rows = await asyncio.to_thread(self.task.predict, [item])
            rows = to_jsonable(rows)
            if not rows:
                raise ShopfloorError("the model gave no result for this sample")
        except ShopfloorError as exc:
            self.stats.refused += 1
            self._log_once("predict", str(exc), f"the model refused the sample of {sample_time}: {exc}")
            return
        except Exception as exc:  # a bug, or an input no reader foresaw: refuse it rather than stop the line
            self.stats.refused += 1
            log.exception("predict failed on the sample of %s (%s)", sample_time, exc)
            return
        latency_ms = (time.perf_counter() - started) * 1000.0
        for row in rows:
            row["input"] = f"{self.source} @ {sample_time}"
        self._check_fields(rows[0])
        data = json.dumps({"sample_time": sample_time, "values": record}, default=str, sort_keys=True).encode()
        records = prediction_records(rows, model=self.model, artifact_hash=self.artifact_hash, key=key,
                                     fingerprint=hashlib.sha256(json.dumps(record, sort_keys=True, default=str)
                                                                .encode()).hexdigest(),
                                     source=self.source, latency_ms=latency_ms, input_bytes=data)
        try:
            stored = await asyncio.to_thread(
                commit_with_retry, self.store, records, stop=self._stop, min_s=self.config.store_retry_min_s,
                max_s=self.config.store_retry_max_s, on_retry=self._store_retried)
        except ShopfloorError as exc:  # the store refused the record itself
            self.stats.refused += 1
            log.warning("cannot record the result of the sample of %s: %s", sample_time, exc)
            return
        if stored is None:  # stopped while the store was down: the sample is read again by the next run
            self._last_key = None
            return
        created = any(was_created for _, was_created in stored)
        if created:
            self.stats.recorded += sum(was_created for _, was_created in stored)
        else:
            self.stats.duplicates += 1
        label, score = label_and_score(rows[0])
        extras = {"label": label, "score": score, "record_id": stored[0][0], "key": key}
        if self._publisher is not None:
            body = {"record_id": stored[0][0], "model": self.model, "artifact_hash": self.artifact_hash,
                    "source": self.source, "sample_time": sample_time, "result": rows[0], "duplicate": not created,
                    "key": key}
            if len(rows) > 1:
                body["record_ids"], body["results"] = [i for i, _ in stored], rows
            topic = self.config.publish.format(model=self.model)
            if await asyncio.to_thread(self._publisher.publish, topic, body):
                self.stats.published += 1
        if self.config.write:  # last: a lost connection leaves the values pending, written after the reconnect
            self._pending = [extras[f.name] if f.name in RESULT_EXTRAS else rows[0][f.name] for f in self.config.write]
            await self._write(client, self._pending)

    def _store_retried(self) -> None:
        self.stats.store_retries += 1

    def _sample(self, values: list[Any]) -> tuple[Any, Any]:
        """The predict input for one read (a one-row or history DataFrame, or a signal array) and what is kept of
        it for the record; :class:`_Skip` when a value cannot be used."""
        for m, dv in zip(self.config.nodes, values):
            if not dv.StatusCode.is_good():
                raise _Skip(m.node_id, dv.StatusCode.name, f"node {m.node_id} has status {dv.StatusCode.name}")
        raw = [dv.Value.Value if dv.Value is not None else None for dv in values]
        if self.columns is None:
            channels = [self._signal(m.node_id, v) for m, v in zip(self.config.nodes, raw)]
            lengths = {len(c) for c in channels}
            if len(lengths) > 1:
                raise _Skip("signal", "lengths", f"the channels hold arrays of different lengths {sorted(lengths)}")
            signal = channels[0] if len(channels) == 1 else np.stack(channels, axis=1)
            return signal, {"signal": signal.tolist(), "nodes": [m.node_id for m in self.config.nodes]}
        import pandas as pd

        columns = self.columns
        row = dict(self._values)
        for name, m, value in zip(self.names, self.config.nodes, raw):
            if name in columns.text or name == columns.unit:
                row[name] = self._text(m.node_id, name, value)
            else:
                row[name] = self._number(m.node_id, name, value)
        if columns.unit is None:
            return pd.DataFrame([row]), row
        history = self._histories.setdefault(row[columns.unit], [])
        if columns.time and columns.time not in row:
            row[columns.time] = float(len(history) + 1)
        history.append(row)
        return pd.DataFrame(history), row

    @staticmethod
    def _number(node_id: str, name: str, value: Any) -> float:
        if isinstance(value, bool):
            return float(value)
        if not isinstance(value, (int, float)):
            raise _Skip(node_id, "type", f"node {node_id} ({name!r}) holds {type(value).__name__} {str(value)[:40]!r}"
                        ", not a number")
        if not math.isfinite(value):
            raise _Skip(node_id, "nan", f"node {node_id} ({name!r}) is {value}")
        return float(value)

    @staticmethod
    def _text(node_id: str, name: str, value: Any) -> Any:
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise _Skip(node_id, "type", f"node {node_id} ({name!r}) holds {type(value).__name__} {str(value)[:40]!r}, "
                    "not text or an integer")

    @staticmethod
    def _signal(node_id: str, value: Any) -> np.ndarray:
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            array = None
        if array is None or array.ndim != 1 or array.size == 0:
            raise _Skip(node_id, "type", f"node {node_id} holds {type(value).__name__} {str(value)[:40]!r}, not an "
                        "array of numbers (one channel of a signal segment)")
        if not np.isfinite(array).all():
            raise _Skip(node_id, "nan", f"node {node_id} holds {int((~np.isfinite(array)).sum())} NaN/inf values")
        return array

    def _check_fields(self, row: dict[str, Any]) -> None:
        """Once, on the first result: every write-back field exists and fits its node's data type (a typo stops the
        stream before anything is recorded)."""
        if self._fields_checked:
            return
        missing = [f.name for f in self.config.write if f.name not in RESULT_EXTRAS and f.name not in row]
        if missing:
            available = [*RESULT_EXTRAS, *(k for k, v in row.items() if not isinstance(v, (dict, list)))]
            raise ConfigError(f"write: the {self.task.name} result has no field(s) {missing}; write one of "
                              f"{available}")
        label, score = label_and_score(row)
        extras = {"label": label, "score": score, "record_id": 0, "key": ""}
        for target, vtype in zip(self.config.write, self._write_types):
            _convert(extras[target.name] if target.name in RESULT_EXTRAS else row[target.name], vtype, target)
        self._fields_checked = True

    # ----------------------------------------------------------------- write-back
    async def _write(self, client: Any, values: list[Any]) -> None:
        """Write the result values to the write-back nodes (one Write request). A lost connection leaves them
        pending (written after the reconnect); a value the server refuses is logged and counted."""
        from asyncua import ua

        data = [ua.DataValue(ua.Variant(_convert(v, t, f), t)) for v, t, f in
                zip(values, self._write_types, self.config.write)]
        results = await client.write_values(self._nodes(client, self.config.write), data,
                                            raise_on_partial_error=False)
        self._pending = None
        for f, status in zip(self.config.write, results):
            if status.is_good():
                self.stats.written += 1
            else:
                self.stats.write_failures += 1
                self._log_once(f.node_id, status.name, f"writing {f.name} to {f.node_id} failed: {status.name}; "
                               "check that the node is writable for this client and of a fitting data type")

    def _log_once(self, where: str, kind: str, message: str) -> None:
        """A warning the first time a node shows a problem of this kind; later ones only count."""
        if (where, kind) not in self._logged:
            self._logged.add((where, kind))
            log.warning("%s", message)


def _numeric_types() -> set[Any]:
    """The OPC UA variant types that hold numbers (Boolean counts as 0/1)."""
    from asyncua import ua

    v = ua.VariantType
    return {v.Boolean, v.SByte, v.Byte, v.Int16, v.UInt16, v.Int32, v.UInt32, v.Int64, v.UInt64, v.Float, v.Double}


def _convert(value: Any, vtype: Any, target: NodeMap) -> Any:
    """A result value as the write-back node's data type, or a ConfigError saying which field does not fit."""
    from asyncua import ua

    v = ua.VariantType
    where = f"write {target.name}={target.node_id}"
    if value is None:
        raise ConfigError(f"{where}: this result has no {target.name}; write another field")
    if vtype is None or vtype is v.Variant:
        return value if isinstance(value, (bool, int, float, str)) else json.dumps(value, default=str)
    if vtype is v.String:
        return value if isinstance(value, str) else json.dumps(value, default=str)
    if isinstance(value, (bool, int, float)):
        if vtype is v.Boolean:
            return bool(value)
        if vtype in (v.Float, v.Double):
            return float(value)
        if vtype in _numeric_types():
            return int(round(float(value)))
    raise ConfigError(f"{where}: the node holds {vtype.name} and {target.name} is {type(value).__name__} "
                      f"{str(value)[:40]!r}; write it to a node of a fitting type (a String node takes any field)")
