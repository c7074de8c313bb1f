"""What ``shopfloor stream --opcua`` is told: the endpoint, which node is which column or result field (``--nodes``,
``--write``), constant columns (``--set``), the polling period and the retry back-offs; checked at construction."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from shopfloor.core.errors import ConfigError

from .delivery import broker_endpoint, check_result_topic

NODE_ID_KEYS = ("ns", "nsu", "i", "s", "g", "b", "srv")
PERIOD_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_period(value: float | int | str) -> float:
    """Seconds from ``1s``, ``500ms``, ``2min``, ``0.5`` (seconds); a ConfigError for anything else."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*", str(value).lower())
        if match is None or match.group(2) not in ("", *PERIOD_UNITS):
            raise ConfigError(f"every {value!r}: give a period such as 1s, 500ms or 2min")
        seconds = float(match.group(1)) * PERIOD_UNITS.get(match.group(2), 1.0)
    if not 0.01 <= seconds <= 86_400:
        raise ConfigError(f"every {value!r}: the period must lie between 10ms and 24h; got {seconds:g} s")
    return seconds


@dataclass(frozen=True)
class NodeMap:
    """One OPC UA variable and what it stands for: an input column (``None``: its BrowseName/DisplayName) or, for
    write-back, a result field."""

    name: str | None
    node_id: str


def _items(spec: str | list[str] | tuple[str, ...] | None) -> list[str]:
    parts = [spec] if isinstance(spec, str) else list(spec or [])
    return [item.strip() for part in parts for item in str(part).split(",") if item.strip()]


def parse_nodes(spec: str | list[str] | None, what: str = "nodes", names_required: bool = False) -> list[NodeMap]:
    """``'Col=ns=2;s=X,ns=2;s=Y'`` (or a list of such strings) as :class:`NodeMap`; every node id is checked."""
    from asyncua import ua

    maps = []
    for item in _items(spec):
        head, sep, tail = item.partition("=")
        if head.strip() in NODE_ID_KEYS:  # a bare node id: ns=2;s=..., i=2258, nsu=urn:...;s=...
            name, node_id = None, item
        else:
            name, node_id = head.strip(), tail.strip()
        if names_required and not name:
            raise ConfigError(f"{what}: {item!r} names no result field; write FIELD=NODE, e.g. "
                              "score=ns=2;s=Line1.Risk")
        try:
            parsed = ua.NodeId.from_string(node_id)
        except Exception as exc:  # asyncua raises its own parsing error, or a ValueError inside it
            raise ConfigError(f"{what}: {node_id!r} is not an OPC UA node id ({exc.__class__.__name__}); write "
                              "ns=<namespace index>;s=<name> or ns=<index>;i=<number>, e.g. ns=2;s=Line1.Temp"
                              ) from None
        if isinstance(parsed, ua.ExpandedNodeId):
            raise ConfigError(f"{what}: {node_id!r} names a namespace URI or server index; give the namespace "
                              "index instead (ns=<index>;s=<name>, as the server's NamespaceArray lists it)")
        maps.append(NodeMap(name, node_id))
    return maps


def parse_constants(spec: str | list[str] | dict[str, Any] | None) -> dict[str, str]:
    """``--set`` values: ``'Type=L,unit=7'`` (or a list, or a dict) as ``{column: text}``."""
    if isinstance(spec, dict):
        return {str(k).strip(): str(v) for k, v in spec.items()}
    constants: dict[str, str] = {}
    for item in _items(spec):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--set {item!r}: write COLUMN=VALUE, e.g. Type=L")
        constants[name.strip()] = value.strip()
    return constants


@dataclass
class OpcuaConfig:
    """Where the OPC UA stream reads and writes, how often, and how it retries. Validated at construction."""

    endpoint: str = "opc.tcp://127.0.0.1:4840"  # opc.tcp://[user:pass@]host:port[/path]
    nodes: list[NodeMap] | list[str] | str = field(default_factory=list)  # input nodes: [COLUMN=]NODE_ID, ...
    every: float | str = 1.0  # polling period: seconds, or '1s', '500ms', '2min'
    constants: dict[str, str] | list[str] | str = field(default_factory=dict)  # --set COLUMN=VALUE
    write: list[NodeMap] | list[str] | str = field(default_factory=list)  # result FIELD=NODE_ID write-back
    mqtt: str | None = None  # also publish each result to this broker (mqtt://host:port)
    publish: str = "results/opcua/{model}"  # the MQTT result topic; {model} is the model's name
    model: str | None = None  # the record's model name; default the model directory's name
    client_id: str | None = None  # MQTT client id; default shopfloor-opcua-<model>
    qos: int = 1
    timeout_s: float = 4.0  # per OPC UA request
    connect_tries: int = 3  # tries to reach the server at start before giving up
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    publish_timeout_s: float = 10.0
    store_retry_min_s: float = 0.5
    store_retry_max_s: float = 30.0

    def __post_init__(self) -> None:
        self.endpoint_parts()  # a bad URL fails here
        if not isinstance(self.nodes, list) or not all(isinstance(n, NodeMap) for n in self.nodes):
            self.nodes = parse_nodes(self.nodes, "nodes")
        if not self.nodes:
            raise ConfigError("nodes: give the OPC UA variables to read, e.g. 'Air temperature [K]=ns=2;s=Mill.Air'")
        if not isinstance(self.write, list) or not all(isinstance(n, NodeMap) for n in self.write):
            self.write = parse_nodes(self.write, "write", names_required=True)
        self.constants = parse_constants(self.constants)
        self.every = parse_period(self.every)
        for what, maps in (("nodes", self.nodes), ("write", self.write)):
            ids = [m.node_id for m in maps]
            repeated = sorted({i for i in ids if ids.count(i) > 1})
            if repeated:
                raise ConfigError(f"{what}: node(s) {repeated} are given more than once; list each node once")
            names = [m.name for m in maps if m.name]
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ConfigError(f"{what}: {repeated} are given to more than one node; each takes one node")
        if self.mqtt is not None:
            broker_endpoint(self.mqtt)
            check_result_topic(self.publish, model="x")
        if self.qos not in (0, 1, 2):
            raise ConfigError(f"qos must be 0, 1 or 2 (1 for at-least-once); got {self.qos!r}")
        if self.connect_tries < 1 or self.timeout_s <= 0 or self.publish_timeout_s <= 0:
            raise ConfigError("connect_tries must be >= 1, timeout_s and publish_timeout_s > 0")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s or \
                not 0 < self.store_retry_min_s <= self.store_retry_max_s:
            raise ConfigError("back-offs need 0 < min <= max seconds")

    def endpoint_parts(self) -> tuple[str, str]:
        """``(url, url without credentials)``; a ConfigError for anything but ``opc.tcp://host:port``."""
        parts = urlsplit(self.endpoint if "://" in self.endpoint else f"opc.tcp://{self.endpoint}")
        if parts.scheme != "opc.tcp":
            raise ConfigError(f"opcua {self.endpoint!r}: use opc.tcp://[user:pass@]host:port (e.g. "
                              "opc.tcp://127.0.0.1:4840)")
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"opcua {self.endpoint!r}: the port is not a number") from None
        if not parts.hostname:
            raise ConfigError(f"opcua {self.endpoint!r}: no host; use opc.tcp://host:port")
        netloc = parts.hostname if port is None else f"{parts.hostname}:{port}"
        return urlunsplit(parts), urlunsplit(parts._replace(netloc=netloc))
