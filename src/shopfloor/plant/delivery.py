"""What every stream does with a prediction once it has one: record it once and publish it.

Shared by the MQTT worker (:mod:`shopfloor.plant.mqtt`) and the OPC UA poller (:mod:`shopfloor.plant.opcua`):

- :func:`stream_identity`: the model name and artifact hash a stream records under;
- :func:`prediction_records` turns ``predict`` rows into record-store rows (label and score by
  :func:`~shopfloor.plant.records.label_and_score`, keys ``key``, ``key#1``...);
- :func:`commit_with_retry` commits them in one transaction, backing off while the store is unavailable;
- :func:`broker_endpoint`, :func:`publish_json` and :class:`MqttPublisher`: an MQTT result publisher (QoS 1, waits
  for the broker's PUBACK within a bound; paho keeps and re-sends an unconfirmed publish after a reconnect).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from shopfloor.core.errors import ConfigError
from shopfloor.core.task import Task

from .records import RecordStore, RecordStoreUnavailable, label_and_score

log = logging.getLogger(__name__)

MAX_KEY = 500  # the record store's key length
SCHEMES = {"mqtt": (1883, False), "tcp": (1883, False), "mqtts": (8883, True), "ssl": (8883, True)}


def stream_identity(task: Task, name: str | None = None) -> tuple[str, str | None]:
    """A loaded task made ready to stream (no progress bars) and ``(model name, artifact hash)`` for its records:
    ``name``, else the model directory's name, else the task's name."""
    if getattr(task, "training", None) is not None and hasattr(task.training, "progress"):
        task.training.progress = False
    artifact = getattr(task, "_artifact", None)
    artifact_hash = artifact.manifest["manifest_sha256"] if artifact is not None else None
    return name or (Path(artifact.path).resolve().name if artifact is not None else task.name), artifact_hash


def record_key(prefix: str, digest: str) -> str:
    """``<prefix>:<digest>``, or the prefix's SHA-256 in its place when that would pass the store's key length."""
    key = f"{prefix}:{digest}"
    if len(key) > MAX_KEY - 8:  # room for the "#<row>" suffix of multi-row results
        key = f"sha256:{hashlib.sha256(prefix.encode()).hexdigest()}:{digest}"
    return key


def prediction_records(rows: list[dict[str, Any]], *, model: str, artifact_hash: str | None, key: str,
                       fingerprint: str, source: str | None, latency_ms: float,
                       input_bytes: bytes | None = None) -> list[dict[str, Any]]:
    """One record-store row per ``predict`` row; the first keeps ``key`` (and the input bytes), the others
    ``key#1``, ``key#2``..."""
    records = []
    for i, row in enumerate(rows):
        label, score = label_and_score(row)
        records.append({"model": model, "artifact_hash": artifact_hash or "", "result": row,
                        "input_fingerprint": fingerprint, "source": source, "label": label, "score": score,
                        "latency_ms": latency_ms, "key": key if i == 0 else f"{key}#{i}",
                        "input_bytes": input_bytes if i == 0 else None})
    return records


def commit_with_retry(store: RecordStore, records: list[dict[str, Any]], *, stop: threading.Event,
                      min_s: float, max_s: float, on_retry: Callable[[], None] = lambda: None,
                      aborted: Callable[[], bool] = lambda: False) -> list[tuple[int, bool]] | None:
    """Commit ``records`` (all or none) and return ``[(id, created), ...]``; while the store raises
    :class:`RecordStoreUnavailable`, call ``on_retry`` and try again after a back-off that doubles from ``min_s`` to
    ``max_s`` (logged once, and once when it is back). ``None`` when ``stop`` is set or ``aborted()`` meanwhile."""
    delay = min_s
    warned = False
    while True:
        try:
            if len(records) > 1 and hasattr(store, "add_many"):
                stored = store.add_many(records)  # one transaction: all rows of the input or none
            else:
                stored = [store.add(**record) for record in records]
            if warned:
                log.warning("the record store is back; recording resumed")
            return stored
        except RecordStoreUnavailable as exc:
            on_retry()
            if not warned:
                log.warning("the record store is unavailable (%s); holding the input and retrying with backoff", exc)
                warned = True
            if stop.wait(delay) or aborted():
                return None
            delay = min(delay * 2, max_s)


def broker_endpoint(broker: str) -> tuple[str, int, bool, str | None, str | None]:
    """``(host, port, tls, username, password)`` of ``mqtt://[user:pass@]host:port`` (``mqtts://`` for TLS), or a
    ConfigError that shows the form."""
    url = broker if "://" in broker else f"mqtt://{broker}"
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ConfigError(f"broker {broker!r}: use mqtt://[user:pass@]host:port (or mqtts://)")
    default_port, tls = SCHEMES[parts.scheme]
    try:
        port = parts.port or default_port
    except ValueError:
        raise ConfigError(f"broker {broker!r}: the port is not a number") from None
    if not parts.hostname:
        raise ConfigError(f"broker {broker!r}: no host; use mqtt://host:port")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, port, tls, user, password


def check_result_topic(template: str, **placeholders: str) -> None:
    """A result-topic template must format with exactly ``placeholders`` and give a topic without + or #."""
    try:
        probe = template.format(**{name: "x" for name in placeholders})
    except (KeyError, IndexError, ValueError) as exc:
        names = ", ".join(f"{{{name}}}" for name in placeholders) or "none"
        raise ConfigError(f"publish {template!r}: the placeholders are {names} ({exc})") from None
    if not probe or any(c in probe for c in "+#"):
        raise ConfigError(f"publish {template!r}: a result topic cannot be empty or hold + or #")


def publish_json(client: Any, topic: str, body: dict[str, Any], *, qos: int, timeout_s: float,
                 correlation: bytes | None = None, current: Callable[[], bool] = lambda: True) -> bool:
    """Publish ``body`` as JSON and wait (bounded by ``timeout_s``) for the broker's PUBACK; False if it did not
    come while ``current()`` held (the connection it belongs to went away) or in time. paho keeps an unconfirmed
    QoS 1 publish and sends it again after a reconnect."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    properties = Properties(PacketTypes.PUBLISH)
    properties.ContentType = "application/json"
    if correlation is not None:
        properties.CorrelationData = correlation
    data = json.dumps(body, default=str).encode()
    info = client.publish(topic, data, qos=qos, properties=properties)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            info.wait_for_publish(0.2)
            if info.is_published():
                return True
        except (RuntimeError, ValueError):  # not connected right now: queued, sent after the reconnect
            time.sleep(0.05)
        if not current():
            return False
        if time.monotonic() > deadline:
            log.warning("no PUBACK for the result on %s within %.0f s (paho keeps sending it)", topic, timeout_s)
            return False


class MqttPublisher:
    """A publish-only MQTT 5 client for streams whose input is not MQTT: connects in the background, reconnects
    with backoff, keeps its session (stable ``client_id``) so unconfirmed QoS 1 results are sent again."""

    def __init__(self, broker: str, client_id: str, *, qos: int = 1, timeout_s: float = 10.0,
                 reconnect_min_s: float = 0.5, reconnect_max_s: float = 30.0, session_expiry: int = 86_400) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        host, port, tls, user, password = broker_endpoint(broker)
        self.broker, self.qos, self.timeout_s = broker, qos, timeout_s
        self.connected = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if user is not None:
            client.username_pw_set(user, password)
        if tls:
            client.tls_set()
        client.reconnect_delay_set(reconnect_min_s, reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = session_expiry
        client.connect_async(host, port, keepalive=30, clean_start=False, properties=properties)
        client.loop_start()
        self._client = client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker %s refused the connection: %s", self.broker, reason_code)
            return
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected.is_set():
            log.warning("MQTT broker %s went away (%s); reconnecting with backoff", self.broker, reason_code)
        self.connected.clear()

    def publish(self, topic: str, body: dict[str, Any]) -> bool:
        """Publish ``body`` (JSON) on ``topic``; True once the broker confirmed it (see :func:`publish_json`)."""
        return publish_json(self._client, topic, body, qos=self.qos, timeout_s=self.timeout_s)

    def close(self) -> None:
        """Disconnect cleanly (the broker keeps the session) and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()
