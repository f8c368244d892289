"""Listener configuration: ``NAME://host:port`` lists, protocol map, advertised and inter-broker.

Kept as pure functions over the config strings so the rules (Kafka's ``EndPoint`` parsing and
KafkaConfig's listener checks) are testable without building a whole broker configuration.
Failures raise ``ListenerConfigError(key, reason)``; ``BrokerConfig`` adds value and origin.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_ENDPOINT = re.compile(r"(.*)://\[?([0-9a-zA-Z\-%._:]*)\]?:(-?[0-9]+)")
_COMMA = re.compile(r"\s*,\s*")
_ANY_HOST = ("", "0.0.0.0", "::")


class ListenerConfigError(Exception):
    """A listener rule broken by the value of ``key``."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Listener:
    """One endpoint: ``NAME://host:port``; an empty host binds every interface, port 0 any port."""

    name: str
    host: str
    port: int
    security_protocol: str

    def with_port(self, port: int) -> Listener:
        return replace(self, port=port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.name}://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ListenerSetup:
    listeners: list[Listener]
    advertised: list[Listener]
    protocol_map: dict[str, str]
    inter_broker_listener_name: str


def parse_protocol_map(text: str) -> dict[str, str]:
    """``listener.security.protocol.map``: ``NAME:PROTOCOL`` pairs, names upper-cased."""
    key = "listener.security.protocol.map"
    out: dict[str, str] = {}
    for item in _COMMA.split(text.strip()) if text.strip() else []:
        parts = item.split(":")
        if len(parts) != 2 or not parts[0].strip():
            raise ListenerConfigError(
                key, f"Map entry '{item}' must be formatted as LISTENER_NAME:SECURITY_PROTOCOL"
            )
        name, protocol = parts[0].strip().upper(), parts[1].strip().upper()
        if protocol not in SECURITY_PROTOCOLS:
            raise ListenerConfigError(
                key, f"No enum constant for security protocol {parts[1]}; valid ones are "
                     f"{', '.join(SECURITY_PROTOCOLS)}"
            )
        if name in out:
            raise ListenerConfigError(key, f"Duplicate listener name {name}")
        out[name] = protocol
    return out


def parse_endpoints(key: str, text: str, protocol_map: dict[str, str]) -> list[Listener]:
    """A listener list as Kafka's ``EndPoint.createEndPoint``; names are upper-cased."""
    out: list[Listener] = []
    for item in _COMMA.split(text.strip()) if text.strip() else []:
        match = _ENDPOINT.fullmatch(item)
        if match is None:
            raise ListenerConfigError(key, f"Unable to parse {item} to a broker endpoint")
        name, host, port = match[1].upper(), match[2], int(match[3])
        if not 0 <= port <= 65535:
            raise ListenerConfigError(key, f"Port {port} of {item} is not between 0 and 65535")
        if name not in protocol_map:
            raise ListenerConfigError(key, f"No security protocol defined for listener {name}")
        out.append(Listener(name, host, port, protocol_map[name]))
    return out


def resolve_listeners(
    listeners: str,
    advertised: str | None,
    protocol_map: str,
    controller_listener_names: str | None,
    inter_broker_listener_name: str | None,
    inter_broker_protocol: str,
    inter_broker_protocol_is_set: bool,
) -> ListenerSetup:
    """Apply KafkaConfig's listener rules; derive advertised listeners when unset.

    Derived advertised listeners skip KRaft controller listeners and show an empty or
    wildcard host as ``localhost`` (Kafka would use the canonical host name).
    """
    pmap = parse_protocol_map(protocol_map)
    bound = parse_endpoints("listeners", listeners, pmap)
    if not bound:
        raise ListenerConfigError("listeners", "At least one listener must be configured")
    _check_unique("listeners", bound, ports_too=True)
    names = [lst.name for lst in bound]
    controller = {n.strip().upper() for n in (controller_listener_names or "").split(",")
                  if n.strip()}
    if advertised is None:
        shown = [lst if lst.host not in _ANY_HOST else replace(lst, host="localhost")
                 for lst in bound if lst.name not in controller]
    else:
        key = "advertised.listeners"
        parsed = parse_endpoints(key, advertised, pmap)
        _check_unique(key, parsed, ports_too=False)
        if any(a.host in ("0.0.0.0", "::") for a in parsed):
            raise ListenerConfigError(key, "advertised.listeners cannot use the nonroutable "
                                           "meta-address 0.0.0.0. Use a routable IP address.")
        unknown = [a.name for a in parsed if a.name not in names]
        if unknown:
            raise ListenerConfigError(
                key, "advertised.listeners listener names must be equal to or a subset of the "
                     f"ones defined in listeners. Found {','.join(unknown)}. The valid options "
                     f"based on currently configured listeners are {','.join(names)}"
            )
        shown = [a if a.host else replace(a, host="localhost") for a in parsed]
    if inter_broker_listener_name is not None and inter_broker_protocol_is_set:
        raise ListenerConfigError("inter.broker.listener.name",
                                  "Only one of inter.broker.listener.name and "
                                  "security.inter.broker.protocol should be set.")
    inter = (inter_broker_listener_name or inter_broker_protocol).upper()
    if inter not in {a.name for a in shown}:
        key = ("inter.broker.listener.name" if inter_broker_listener_name is not None
               else "security.inter.broker.protocol")
        raise ListenerConfigError(
            key, "inter.broker.listener.name must be a listener name defined in "
                 "advertised.listeners. The valid options based on currently configured "
                 f"listeners are {','.join(a.name for a in shown)}"
        )
    return ListenerSetup(bound, shown, pmap, inter)


def _check_unique(key: str, endpoints: list[Listener], *, ports_too: bool) -> None:
    names = [e.name for e in endpoints]
    listed = ",".join(map(str, endpoints))
    if len(set(names)) != len(names):
        raise ListenerConfigError(key, f"Each listener must have a different name, {key}: "
                                       f"{listed}")
    if not ports_too:
        return
    by_port: dict[int, list[Listener]] = {}
    for e in endpoints:
        if e.port != 0:  # several ephemeral ports never clash
            by_port.setdefault(e.port, []).append(e)
    for same in by_port.values():
        if len(same) > 1 and sorted(_ip_family(e.host) for e in same) != [4, 6]:
            raise ListenerConfigError(
                key, "Each listener must have a different port unless exactly one listener "
                     f"has an IPv4 address and the other IPv6 address, {key}: {listed}"
            )


def _ip_family(host: str) -> int:
    try:
        return ipaddress.ip_address(host.split("%")[0]).version
    except ValueError:
        return 0
