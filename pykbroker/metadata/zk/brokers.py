"""``/brokers/ids/<id>`` and ``/brokers/seqid``: live brokers and generated broker ids.

Each broker registers itself with an ephemeral ``/brokers/ids/<id>``; the znode's creation
zxid (``czxid``) is its broker epoch, and the node vanishes with its ZooKeeper session, which
is how the controller notices a dead broker (ZkData ``BrokerIdZNode``, ``BrokerInfo``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from pykbroker.metadata.zk.codec import JsonObject, ZNodeDecodeError, dump_json

__all__ = [
    "BROKERS_PATH",
    "BROKER_IDS_PATH",
    "DEFAULT_LISTENER_PROTOCOLS",
    "SECURITY_PROTOCOLS",
    "BrokerRegistration",
    "BrokerSequenceId",
    "EndPoint",
    "SupportedVersionRange",
]

BROKERS_PATH: Final = "/brokers"
BROKER_IDS_PATH: Final = "/brokers/ids"
SECURITY_PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# SocketServerConfigs.DEFAULT_NAME_TO_SECURITY_PROTO: used when a registration (version 2
# and 3) has no listener_security_protocol_map.
DEFAULT_LISTENER_PROTOCOLS: Final[Mapping[str, str]] = {p: p for p in SECURITY_PROTOCOLS}
# SocketServerConfigs.URI_PARSE_REGEXP, matched against the whole entry.
_ENDPOINT = re.compile(r"(.*)://\[?([0-9a-zA-Z\-%._:]*)\]?:(-?[0-9]+)", re.DOTALL)
_CSV_SEPARATOR = re.compile(r"\s*,\s*")


@dataclass(frozen=True)
class EndPoint:
    """One advertised listener, written as ``NAME://host:port`` (``[host]:port`` for IPv6)."""

    listener_name: str
    security_protocol: str
    host: str | None  # None: the wildcard address, written as an empty host
    port: int

    def connection_string(self) -> str:
        if self.host is None:
            return f"{self.listener_name}://:{self.port}"
        if ":" in self.host:
            return f"{self.listener_name}://[{self.host}]:{self.port}"
        return f"{self.listener_name}://{self.host}:{self.port}"

    @classmethod
    def parse(cls, entry: str, protocols: Mapping[str, str]) -> EndPoint:
        """``SocketServerConfigs.listenerListToEndPoints`` for one entry; names are upper-cased."""
        match = _ENDPOINT.fullmatch(entry)
        if match is None:
            raise ZNodeDecodeError(f"unable to parse {entry!r} to a broker endpoint")
        name = match.group(1).upper()
        protocol = protocols.get(name)
        if protocol is None:
            raise ZNodeDecodeError(f"no security protocol defined for listener {name}")
        port = int(match.group(3))
        if not -(2**31) <= port < 2**31:
            raise ZNodeDecodeError(f"port of {entry!r} is out of range")
        return cls(name, protocol, match.group(2) or None, port)


@dataclass(frozen=True)
class SupportedVersionRange:
    """A feature's supported versions, ``{"min_version":m,"max_version":M}`` (KIP-584)."""

    min_version: int
    max_version: int

    def __post_init__(self) -> None:
        if not 0 <= self.min_version <= self.max_version <= 0x7FFF:
            raise ValueError(
                f"expected 0 <= min_version <= max_version <= 32767, got {self.min_version}, "
                f"{self.max_version}"
            )


@dataclass(frozen=True)
class BrokerRegistration:
    """The JSON of ``/brokers/ids/<id>``; Kafka 3.9 writes version 5 (IBP >= 2.7).

    ``host``/``port`` at the top level are the first PLAINTEXT endpoint (``null``/``-1`` if
    none), kept for pre-0.10 clients; readers of version 2 and later use ``endpoints``.
    ``timestamp`` is informational (the broker epoch is the znode's czxid), so reading is
    lenient about it, as Kafka is.
    """

    endpoints: tuple[EndPoint, ...]
    timestamp: int = -1
    jmx_port: int = -1
    rack: str | None = None
    features: Mapping[str, SupportedVersionRange] = field(default_factory=dict)
    version: int = 5

    @staticmethod
    def path(broker_id: int) -> str:
        return f"{BROKER_IDS_PATH}/{broker_id}"

    @property
    def host(self) -> str | None:
        return next((e.host for e in self.endpoints if e.security_protocol == "PLAINTEXT"), None)

    @property
    def port(self) -> int:
        return next((e.port for e in self.endpoints if e.security_protocol == "PLAINTEXT"), -1)

    def to_json(self) -> bytes:
        """``BrokerIdZNode.encode``; keys in the order Kafka's HashMap writes them."""
        pairs: list[tuple[str, object]] = []
        if self.version >= 5:
            pairs.append(
                (
                    "features",
                    {
                        name: {"min_version": r.min_version, "max_version": r.max_version}
                        for name, r in self.features.items()
                    },
                )
            )
        if self.version >= 4:
            protocols = {e.listener_name: e.security_protocol for e in self.endpoints}
            pairs.append(("listener_security_protocol_map", protocols))
        pairs.append(("endpoints", [e.connection_string() for e in self.endpoints]))
        if self.version >= 3 and self.rack is not None:
            pairs.append(("rack", self.rack))
        pairs += [
            ("jmx_port", self.jmx_port),
            ("port", self.port),
            ("host", self.host),
            ("version", self.version),
            ("timestamp", str(self.timestamp)),
        ]
        return dump_json(pairs)

    @classmethod
    def from_json(cls, data: bytes) -> BrokerRegistration:
        """``BrokerIdZNode.decode``: versions 1 to 5, and later ones read as version 5."""
        obj = JsonObject.parse(data, "broker registration znode")
        version = obj.get_int("version")
        jmx_port = obj.get_int("jmx_port")
        if version < 1:
            raise obj.error(f"unsupported version {version}")
        try:
            if version == 1:
                endpoints: tuple[EndPoint, ...] = (
                    EndPoint("PLAINTEXT", "PLAINTEXT", obj.get_str("host"), obj.get_int("port")),
                )
            else:
                endpoints = _endpoints(obj)
        except ZNodeDecodeError as exc:
            raise obj.error(str(exc)) from None
        return cls(
            endpoints=endpoints,
            timestamp=obj.lenient_millis("timestamp"),
            jmx_port=jmx_port,
            rack=obj.opt_str("rack"),
            features=_features(obj),
            version=version,
        )


def _endpoints(obj: JsonObject) -> tuple[EndPoint, ...]:
    protocol_map = obj.values.get("listener_security_protocol_map")
    protocols: Mapping[str, str] = DEFAULT_LISTENER_PROTOCOLS
    if protocol_map is not None:
        listeners = obj.get_object("listener_security_protocol_map")
        protocols = {}
        for name, protocol in listeners.items():
            if not isinstance(protocol, str) or protocol.upper() not in SECURITY_PROTOCOLS:
                raise ZNodeDecodeError(f"unknown security protocol {protocol!r} for {name}")
            protocols[name] = protocol.upper()
    # Kafka joins the array with commas and splits it again as a CSV list.
    joined = ",".join(obj.str_list("endpoints")).strip()
    entries = _CSV_SEPARATOR.split(joined) if joined else []
    return tuple(EndPoint.parse(entry, protocols) for entry in entries)


def _features(obj: JsonObject) -> dict[str, SupportedVersionRange]:
    if obj.values.get("features") is None:
        return {}
    features = {}
    for name, versions in obj.get_object("features").items():
        if not isinstance(versions, dict):
            raise obj.error(f"feature {name!r} must be a JSON object")
        ranges = obj.child(f"features.{name}", versions)
        for key in versions:
            ranges.get_int(key)  # Kafka reads the whole map as Map[String, Int]
        try:
            features[name] = SupportedVersionRange(
                ranges.get_int("min_version"), ranges.get_int("max_version")
            )
        except ValueError as exc:
            if isinstance(exc, ZNodeDecodeError):
                raise
            raise ranges.error(str(exc)) from None
    return features


class BrokerSequenceId:
    """``/brokers/seqid``: empty data; each unconditional set bumps its znode version.

    A broker without ``broker.id`` sets it (version -1, no data) and takes the new znode
    version plus ``reserved.broker.max.id`` as its id (``KafkaZkClient.generateBrokerSequenceId``).
    """

    DATA: Final = b""

    @staticmethod
    def path() -> str:
        return f"{BROKERS_PATH}/seqid"

    @staticmethod
    def broker_id(zk_version: int, reserved_broker_max_id: int) -> int:
        return zk_version + reserved_broker_max_id
