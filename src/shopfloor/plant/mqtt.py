"""``shopfloor stream --mqtt``: an at-least-once MQTT worker that predicts every message and records it once.

One worker subscribes (MQTT 5, QoS 1) to the input topics, runs each message through the task's ``predict`` (by
the kind of input the task declares, through :mod:`shopfloor.plant.inputs`), commits a record, publishes the
result and only then acknowledges the message. So:

- **Nothing is lost.** A message is acknowledged (``manual_ack``) after its record is committed and its result
  published. If the worker, the broker or the database goes away first, the broker redelivers it: the session is
  persistent (``clean_start=False`` with a session expiry, a stable client id), so messages queued while a
  worker is down wait for it.
- **Nothing is recorded twice.** The record key is ``<input topic>:<SHA-256 of the payload>`` (MQTT message ids
  are reused, so they are no key): a redelivered message finds its record (``created`` False), its result is
  published again with ``"duplicate": true`` and it is acknowledged.
- **A bad payload never stops the loop.** Undecodable bytes, the wrong kind of input, or an input ``predict``
  refuses: an error message goes to ``<result topic>/errors``, the message is acknowledged (so it is not
  redelivered forever), counted as refused and logged once. No record is made.
- **The database down** (:class:`~shopfloor.plant.records.RecordStoreUnavailable`): the message is not
  acknowledged; the worker backs off and retries the commit until it succeeds or the worker is stopped.
- **The broker down**: paho's network thread reconnects with backoff; messages received on a connection that
  has since dropped are still recorded but never acknowledged on the new one (message ids belong to a
  connection), so their redelivery becomes a duplicate, not a lost or a wrongly acknowledged message.

Image and signal messages already waiting are scored together (``max_batch``, one ``predict`` call; if one payload
is bad each is retried alone, so only that one is refused), then recorded, published and acknowledged one by one
in order; table messages one at a time. The broker never has more than ``max_inflight`` unacknowledged
messages out to one worker (MQTT 5 Receive Maximum). To scale out, start N workers with distinct client ids in
one shared-subscription ``group`` (``$share/GROUP/filter``): the broker spreads messages over them.

Result message (JSON, QoS ``qos``, on ``publish.format(topic=<input topic>)``)::

    {"record_id": 17, "model": "milling", "artifact_hash": "...", "topic": "plant/l1/camera/3",
     "result": {<predict row>}, "duplicate": false, "key": "plant/l1/camera/3:<sha256>"}

A message holding several inputs (JSON rows) gives one record per row; its result message then also carries
``"record_ids"`` and ``"results"`` (``record_id``/``result`` are the first). The MQTT 5 correlation data of the
input message, when set, is copied onto the result.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from shopfloor.core.errors import ConfigError, ShopfloorError
from shopfloor.core.task import Task, to_jsonable

from .delivery import broker_endpoint, check_result_topic, commit_with_retry, prediction_records, publish_json, \
    record_key, stream_identity
from .inputs import from_json, input_files, parse_json
from .records import RecordStore

log = logging.getLogger(__name__)


@dataclass
class StreamConfig:
    """Where a worker reads and writes, and how it keeps its session."""

    broker: str = "mqtt://127.0.0.1:1883"  # mqtt://[user:pass@]host:port (mqtts:// for TLS)
    subscribe: list[str] = field(default_factory=lambda: ["plant/+/camera/+"])  # topic filters
    publish: str = "results/{topic}"  # the result topic; {topic} is the input topic
    group: str | None = None  # shared-subscription group: subscribe as $share/GROUP/filter
    client_id: str | None = None  # default shopfloor-<model>-<worker>; stable, so the session persists
    worker: int = 0  # the <n> of the default client id (one per worker of a group)
    qos: int = 1
    source_from_topic: bool = True  # the record's source is the input topic
    model: str | None = None  # the record's model name; default the model directory's name
    session_expiry: int = 86_400  # seconds the broker keeps the session (and queues messages) while away
    max_inflight: int = 16  # MQTT 5 Receive Maximum: unacknowledged messages out to this worker at most
    max_batch: int = 16  # image/signal models: messages already waiting are scored together, this many at most
    keepalive: int = 30
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    publish_timeout_s: float = 10.0  # wait this long for a result's PUBACK before acknowledging anyway
    store_retry_min_s: float = 0.5  # first back-off while the record store is unavailable (doubles each try)
    store_retry_max_s: float = 30.0  # back-off ceiling while the record store is unavailable

    def __post_init__(self) -> None:
        if isinstance(self.subscribe, str):
            self.subscribe = [self.subscribe]
        self.subscribe = [f.strip() for f in self.subscribe if f and f.strip()]
        if not self.subscribe:
            raise ConfigError("subscribe: give at least one topic filter, e.g. plant/+/camera/+")
        for topic_filter in self.subscribe:
            if topic_filter.startswith("$share/"):
                raise ConfigError(f"subscribe: {topic_filter!r}: give the plain filter and set group instead")
        if self.qos not in (0, 1, 2):
            raise ConfigError(f"qos must be 0, 1 or 2 (1 for at-least-once); got {self.qos!r}")
        if self.group is not None and (not self.group or any(c in self.group for c in "/+#")):
            raise ConfigError(f"group {self.group!r}: a shared-subscription group is a name without / + #")
        check_result_topic(self.publish, topic="x")
        from paho.mqtt.client import topic_matches_sub

        for topic_filter in self.subscribe:
            sample = "/".join("x" if level in ("+", "#") else level for level in topic_filter.split("/"))
            result = self.publish.format(topic=sample)
            if topic_matches_sub(topic_filter, result) or topic_matches_sub(topic_filter, result + "/errors"):
                raise ConfigError(f"publish {self.publish!r}: results for {sample!r} would go to {result!r}, "
                                  f"which the filter {topic_filter!r} reads back; publish outside the inputs")
        if self.max_inflight < 1 or self.max_batch < 1 or self.session_expiry < 0 or self.keepalive < 5:
            raise ConfigError("max_inflight and max_batch must be >= 1, session_expiry >= 0 and keepalive >= 5 "
                              "seconds")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s or not 0 < self.store_retry_min_s <= \
                self.store_retry_max_s or self.publish_timeout_s <= 0:
            raise ConfigError("back-offs need 0 < min <= max seconds, and publish_timeout_s > 0")
        self.endpoint()  # a bad broker URL fails here, not on the first connect

    def endpoint(self) -> tuple[str, int, bool, str | None, str | None]:
        """``(host, port, tls, username, password)`` from ``broker``."""
        return broker_endpoint(self.broker)

    def filters(self) -> list[str]:
        """The subscriptions as sent to the broker (shared when ``group`` is set)."""
        return [f"$share/{self.group}/{f}" if self.group else f for f in self.subscribe]


@dataclass
class StreamStats:
    """What one ``run`` did. ``received`` counts deliveries (a redelivery counts again)."""

    received: int = 0
    recorded: int = 0  # new records committed
    duplicates: int = 0  # messages whose records already existed (redeliveries, re-sent payloads)
    published: int = 0  # result messages confirmed by the broker
    refused: int = 0  # bad payloads: error message published, acknowledged, no record
    reconnects: int = 0
    store_retries: int = 0  # commits retried while the record store was unavailable
    unacked: int = 0  # processed, but their connection dropped first: the broker redelivers them
    largest_batch: int = 0  # most messages scored in one predict call

    def as_dict(self) -> dict[str, int]:
        return asdict(self)



class MqttStream:
    """One at-least-once worker: ``MqttStream(task, store, config).run()`` until ``stop`` is set."""

    def __init__(self, task: Task, store: RecordStore, config: StreamConfig) -> None:
        self.task = task
        self.store = store
        self.config = config
        self.model, self.artifact_hash = stream_identity(task, config.model)
        self.client_id = config.client_id or f"shopfloor-{self.model}-{config.worker}"
        self.stats = StreamStats()
        self._batching = task.input_kind in ("image", "signal")  # one result row per input: safe to merge
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()  # guards _generation/_connected against acks racing a reconnect
        self._generation = 0  # +1 on every connect and disconnect: a message is acked on its own connection only
        self._connected = False
        self._connected_once = False
        self._aborted = False
        self._stop = threading.Event()
        self._client: Any = None
        self.ready = threading.Event()  # set while connected and subscribed (the broker acknowledged SUBSCRIBE)

    # ----------------------------------------------------------------- the paho client and its callbacks
    def _make_client(self) -> Any:
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        host, port, tls, user, password = self.config.endpoint()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5, manual_ack=True)
        if user is not None:
            client.username_pw_set(user, password)
        if tls:
            client.tls_set()
        client.reconnect_delay_set(self.config.reconnect_min_s, self.config.reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.config.session_expiry
        properties.ReceiveMaximum = self.config.max_inflight
        client.connect_async(host, port, keepalive=self.config.keepalive, clean_start=False, properties=properties)
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker %s refused the connection: %s", self.config.broker, reason_code)
            return
        with self._lock:
            self._generation += 1
            self._connected = True
            if self._connected_once:
                self.stats.reconnects += 1
            self._connected_once = True
        from paho.mqtt.subscribeoptions import SubscribeOptions

        # subscribing again on a resumed session is harmless, and needed when the broker lost the session
        client.subscribe([(f, SubscribeOptions(qos=self.config.qos)) for f in self.config.filters()])
        log.info("connected to %s as %s (session %s), subscribed to %s", self.config.broker, self.client_id,
                 "resumed" if flags.session_present else "new", ", ".join(self.config.filters()))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [f"{f} ({rc})" for f, rc in zip(self.config.filters(), reason_codes) if rc.is_failure]
        if refused:
            log.error("the broker %s refused the subscription to %s", self.config.broker, ", ".join(refused))
            return
        self.ready.set()

    @property
    def connected(self) -> bool:
        """Whether the worker holds a connection to the broker now."""
        return self._connected

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.ready.clear()
        with self._lock:
            was_connected = self._connected
            self._generation += 1
            self._connected = False
        if was_connected and not self._stop.is_set() and not self._aborted:
            log.warning("MQTT broker %s went away (%s); reconnecting with backoff", self.config.broker, reason_code)

    def _on_message(self, client, userdata, message) -> None:
        self.stats.received += 1
        self._queue.put((message, self._generation))

    # ----------------------------------------------------------------- the loop
    def run(self, stop: threading.Event | None = None, max_messages: int | None = None) -> StreamStats:
        """Process messages until ``stop`` is set or ``max_messages`` have been handled; returns the counts.

        Messages still waiting when it returns are not acknowledged: the broker keeps them for the next run.
        """
        self._stop = stop if stop is not None else threading.Event()
        self._client = client = self._make_client()
        client.loop_start()  # the network thread: connects, retries and reconnects with backoff
        handled = 0
        try:
            while not self._stop.is_set() and not self._aborted and (max_messages is None or handled < max_messages):
                try:
                    batch = [self._queue.get(timeout=0.1)]
                except queue.Empty:
                    continue
                room = self.config.max_batch if max_messages is None else min(self.config.max_batch,
                                                                              max_messages - handled)
                while self._batching and len(batch) < room:
                    try:
                        batch.append(self._queue.get_nowait())  # only what is already here: no waiting for company
                    except queue.Empty:
                        break
                self._handle_batch(batch)
                handled += len(batch)
        finally:
            if not self._aborted:
                client.disconnect()  # a normal DISCONNECT: the broker keeps the session and queues for us
                client.loop_stop()
        return self.stats

    def abort(self) -> None:
        """Drop the connection at once, as a crash would: no DISCONNECT, no further acknowledgements.

        The broker keeps the session with its unacknowledged messages for the next worker with this client id.
        """
        with self._lock:
            self._aborted = True
        client = self._client
        if client is None:
            return
        client.loop_stop()
        sock = client.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    # ----------------------------------------------------------------- messages
    def _handle_batch(self, batch: list[tuple[Any, int]]) -> None:
        """Score messages together (one row per input), then record, publish and acknowledge each in order.

        If the batch fails (one bad payload refuses a whole ``predict`` call), each message is handled alone, so
        only the bad one is refused, with its own error."""
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        if len(batch) == 1:
            self._handle(*batch[0])
            return
        started = time.perf_counter()
        try:
            rows, fingerprints = self._predict([bytes(m.payload) for m, _ in batch],
                                               [self._content_type(m) for m, _ in batch])
        except Exception:  # noqa: BLE001 - retried one by one below, where the error is reported
            rows = []
        if len(rows) != len(batch):
            for message, generation in batch:
                self._handle(message, generation)
            return
        latency_ms = (time.perf_counter() - started) * 1000.0
        for (message, generation), row, fingerprint in zip(batch, rows, fingerprints):
            self._deliver(message, generation, [row], fingerprint, latency_ms)

    def _addresses(self, message: Any) -> tuple[str, str]:
        """The record key (input topic + payload SHA-256) and the result topic of a message."""
        key = record_key(message.topic, hashlib.sha256(bytes(message.payload)).hexdigest())  # long topic: hashed
        return key, self.config.publish.format(topic=message.topic)

    def _handle(self, message: Any, generation: int) -> None:
        key, result_topic = self._addresses(message)
        started = time.perf_counter()
        try:
            rows, fingerprints = self._predict([bytes(message.payload)], [self._content_type(message)])
            if not rows:
                raise ShopfloorError("the model gave no result for this message")
        except ShopfloorError as exc:
            self._refuse(message, generation, result_topic, key, str(exc))
            return
        except Exception as exc:  # a bug, or an input no reader foresaw: refuse it rather than loop on it
            log.exception("predict failed on a message from %s", message.topic)
            self._refuse(message, generation, result_topic, key, f"internal error: {type(exc).__name__}: {exc}",
                         warn=False)
            return
        self._deliver(message, generation, rows, fingerprints[0], (time.perf_counter() - started) * 1000.0)

    def _deliver(self, message: Any, generation: int, rows: list[dict[str, Any]], fingerprint: str,
                 latency_ms: float) -> None:
        """Record the rows of one message once, publish its result, then acknowledge it."""
        payload = bytes(message.payload)
        key, result_topic = self._addresses(message)
        try:
            stored = self._commit(rows, key, fingerprint, message.topic, latency_ms, payload)
        except ShopfloorError as exc:  # the store refused the record itself (RecordStoreUnavailable is retried)
            self._refuse(message, generation, result_topic, key, f"cannot record this result: {exc}")
            return
        if stored is None:  # stopped while the record store was down: not acked, the broker redelivers
            return
        created = [was_created for _, was_created in stored]
        self.stats.recorded += sum(created)
        duplicate = not any(created)
        if duplicate:
            self.stats.duplicates += 1
        ids = [record_id for record_id, _ in stored]
        body = {"record_id": ids[0], "model": self.model, "artifact_hash": self.artifact_hash,
                "topic": message.topic, "result": rows[0], "duplicate": duplicate, "key": key}
        if len(rows) > 1:
            body["record_ids"], body["results"] = ids, rows
        if self._publish(result_topic, body, generation, message):
            self.stats.published += 1
        self._ack(message, generation)

    def _content_type(self, message: Any) -> str | None:
        properties = getattr(message, "properties", None)
        return getattr(properties, "ContentType", None) if properties is not None else None

    def _predict(self, payloads: list[bytes], content_types: list[str | None]) -> tuple[list[dict[str, Any]],
                                                                                     list[str]]:
        """The rows of one ``predict`` call over the payloads (JSON bodies by the task's JSON form, files through
        its own reader), and each input's fingerprint (as the server computes it)."""
        inputs: list[Any] = [None] * len(payloads)
        fingerprints = [""] * len(payloads)
        files = []
        for i, payload in enumerate(payloads):
            if payload.lstrip()[:1] in (b"{", b"["):
                obj = parse_json(payload)
                fingerprints[i] = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
                inputs[i] = from_json(self.task, obj)
            else:
                fingerprints[i] = hashlib.sha256(payload).hexdigest()
                files.append(i)
        with input_files(self.task, [(payloads[i], None, content_types[i]) for i in files]) as paths:
            for i, path in zip(files, paths):
                inputs[i] = str(path)
            rows = self.task.predict(inputs)
        return to_jsonable(rows), fingerprints

    def _commit(self, rows: list[dict[str, Any]], key: str, fingerprint: str, topic: str, latency_ms: float,
                payload: bytes) -> list[tuple[int, bool]] | None:
        """Add one record per row (keys ``key``, ``key#1``...); retried with backoff while the store is down."""
        source = topic[:1000] if self.config.source_from_topic else None
        records = prediction_records(rows, model=self.model, artifact_hash=self.artifact_hash, key=key,
                                     fingerprint=fingerprint, source=source, latency_ms=latency_ms,
                                     input_bytes=payload)

        def retried() -> None:
            self.stats.store_retries += 1

        return commit_with_retry(self.store, records, stop=self._stop, min_s=self.config.store_retry_min_s,
                                 max_s=self.config.store_retry_max_s, on_retry=retried, aborted=lambda: self._aborted)

    def _refuse(self, message: Any, generation: int, result_topic: str, key: str, error: str,
                warn: bool = True) -> None:
        self.stats.refused += 1
        if warn:
            log.warning("refused a message on %s: %s", message.topic, error)
        body = {"model": self.model, "artifact_hash": self.artifact_hash, "topic": message.topic, "key": key,
                "error": error}
        self._publish(f"{result_topic}/errors", body, generation, message)
        self._ack(message, generation)

    def _publish(self, topic: str, body: dict[str, Any], generation: int, message: Any) -> bool:
        """Publish ``body`` and wait (bounded) for the broker's PUBACK; False if it did not come on this connection.

        paho keeps an unconfirmed QoS 1 publish and sends it again after a reconnect.
        """
        correlation = getattr(getattr(message, "properties", None), "CorrelationData", None)
        return publish_json(self._client, topic, body, qos=self.config.qos, timeout_s=self.config.publish_timeout_s,
                            correlation=correlation,
                            current=lambda: generation == self._generation and not self._aborted)

    def _ack(self, message: Any, generation: int) -> None:
        if message.qos == 0:
            return
        with self._lock:
            # the message id belongs to the connection it came on: on a newer one it would ack another message
            if self._connected and not self._aborted and generation == self._generation:
                self._client.ack(message.mid, message.qos)
                return
        self.stats.unacked += 1
