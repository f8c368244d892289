"""Connection limits as Kafka 3.9's ``kafka.network.ConnectionQuotas`` applies them.

What each setting does (the same as in Kafka, SocketServer.scala):

* ``max.connections`` (and ``listener.name.<l>.max.connections``, which defaults to it): when a
  listener or the broker is at its limit the acceptor *waits* (``waitForConnectionSlot``): it
  takes no new connection until one closes, so clients queue in the listen backlog and are
  not refused. The inter-broker listener, when the broker has more than one listener, is
  "protected" (KIP-402): only its own listener limit applies, and when its connections take
  the broker past ``max.connections`` the least recently active connection of another
  listener is closed (``Processor.closeExcessConnections``).
* ``max.connection.creation.rate`` (and ``listener.name.<l>.max.connection.creation.rate``,
  defaulting to it): each accepted connection is recorded in a windowed rate
  (``quota.window.num`` samples of ``quota.window.size.seconds``, Kafka's ``Rate``); when the
  rate goes over, the acceptor waits the throttle time (capped at one window) before it takes
  the connection on, and accepts nothing else meanwhile. Nothing is refused. As with every
  Kafka rate quota, a quiet broker is measured over at least ``quota.window.num - 1``
  windows, so a burst of about ten seconds' worth is taken at once before throttling starts.
  The protected listener counts only against its own listener rate.
* ``max.connections.per.ip`` with ``max.connections.per.ip.overrides``
  (``host:count,host2:count``, hosts resolved once to one address, as Java's
  ``InetAddress.getByName``): a connection from an address already at its limit is closed at
  once (``TooManyConnectionsException``, logged at INFO); it still counted against the
  creation rate, as in Kafka, where the slot is taken before the address is checked.

Kafka's IP connection-rate quotas (KIP-612, the ``ip`` client-quota entity) are not here:
AlterClientQuotas refuses them (see ``pykbroker.quotas.manager``).

Everything runs on the broker's trio loop. With every limit at its default, accepting a
connection only counts it (two dictionary updates): no measurable cost
(connect + ApiVersions + close took ~305 us before and after, on loopback).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import trio

from pykbroker.config.checks import OVERRIDES_KEY, OverridesError, parse_overrides
from pykbroker.quotas.rate import QuotaSensor

log = logging.getLogger("pykbroker.server.connection_quotas")

INT_MAX = 2**31 - 1
__all__ = ["ConnectionQuotas", "OverridesError", "parse_overrides", "resolve_host",
           "resolve_overrides", "normalise_address"]


def resolve_host(host: str) -> str:
    """One address for ``host``, as ``InetAddress.getByName``: a literal address as it is,
    a name resolved with IPv4 addresses first (Java's default
    ``java.net.preferIPv6Addresses=false``); ``""`` is the loopback address. OSError when
    the name does not resolve. The address is written as ``getpeername`` writes a peer's
    (``normalise_address``), so peers are looked up without parsing their address."""
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return normalise_address(str(ipaddress.ip_address(literal)))
    except ValueError:
        pass
    if not host:
        return "127.0.0.1"
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    if not infos:
        raise OSError(f"{host}: no address")
    v4 = [i for i in infos if i[0] == socket.AF_INET]
    return normalise_address(str((v4 or infos)[0][4][0]).split("%")[0])


def resolve_overrides(overrides: Mapping[str, int],
                      resolve: Callable[[str], str] = resolve_host) -> dict[str, int]:
    """Overrides by address (``updateMaxConnectionsPerIpOverride``): hosts resolved now,
    once; two names of one address: the later entry wins, as Scala's ``Map.map`` keeps it."""
    return {resolve(host): count for host, count in overrides.items()}


def normalise_address(host: str) -> str:
    """``host`` (an address) written as the kernel's ``inet_ntop`` writes it, which is how
    ``getpeername`` gives a peer's address; anything else unchanged."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, host))
    except (OSError, ValueError):
        return host


class ConnectionQuotas:
    """Connection counts by address and listener, and the limits Kafka puts on them.

    ``acquire`` is awaited by a listener's accept loop for each accepted connection; True
    admits it (the caller must ``release`` once it closes), False means it must be closed at
    once (its address is at its limit). ``reconfigure`` takes a new configuration (dynamic
    broker configs) and applies it to the connections accepted from then on.
    """

    def __init__(self, config: Any, listener_names: Iterable[str],
                 inter_broker_listener: str | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 resolve: Callable[[str], str] = resolve_host) -> None:
        """``config`` is read through ``config.get(key)`` (a BrokerConfig). Raises
        OverridesError or OSError (an override host that does not resolve), as Kafka fails to
        start on them."""
        self.clock = clock
        self.resolve = resolve
        self.listeners = [name.upper() for name in listener_names]
        self.inter_broker_listener = (inter_broker_listener or "").upper()
        self.counts: dict[str, int] = {}  # address -> open connections
        self.listener_counts: dict[str, int] = dict.fromkeys(self.listeners, 0)
        self.total = 0
        self.refused = 0  # connections closed at once for their address (tests, metrics)
        self.throttled_ms = 0  # time accepts were delayed by creation-rate quotas
        self.samples = int(str(config.get("quota.window.num")))
        self.window_ms = int(str(config.get("quota.window.size.seconds"))) * 1000
        self.broker_rate = QuotaSensor(self.samples, self.window_ms, math.inf)
        self.listener_rates = {name: QuotaSensor(self.samples, self.window_ms, math.inf)
                               for name in self.listeners}
        self.max_connections = INT_MAX
        self.listener_max: dict[str, int] = dict.fromkeys(self.listeners, INT_MAX)
        self.max_per_ip = INT_MAX
        self.per_ip_overrides: dict[str, int] = {}
        self._overrides_text: str | None = None
        self._changed: trio.Event | None = None  # made while an acceptor waits for a slot
        self._limited = False  # any limit below its default: False takes the short path
        self.reconfigure(config, initial=True)

    # --------------------------------------------------------------------------- settings

    def reconfigure(self, config: Any, *, initial: bool = False) -> None:
        """Take the limits of ``config`` (``SocketServer.reconfigure`` and each listener's
        ``ListenerConnectionQuota.reconfigure``). An override host that no longer resolves
        keeps the previous overrides after start-up (logged), fails start-up before."""
        get = config.get
        self.max_connections = _int(get("max.connections"))
        self.max_per_ip = _int(get("max.connections.per.ip"))
        text = str(get(OVERRIDES_KEY) or "")
        if text != self._overrides_text:
            try:
                self.per_ip_overrides = resolve_overrides(parse_overrides(text), self.resolve)
                self._overrides_text = text
            except (OverridesError, OSError) as exc:
                if initial:
                    raise
                log.error("keeping the previous %s: %s", OVERRIDES_KEY, exc)
        self.broker_rate.bound = _rate_bound(_int(get("max.connection.creation.rate")))
        for name in self.listeners:
            self.listener_max[name] = _int(_prefixed(get, name, "max.connections"))
            self.listener_rates[name].bound = _rate_bound(
                _int(_prefixed(get, name, "max.connection.creation.rate")))
        self._limited = (
            self.max_connections < INT_MAX or self.max_per_ip < INT_MAX
            or bool(self.per_ip_overrides) or self.broker_rate.bound != math.inf
            or any(n < INT_MAX for n in self.listener_max.values())
            or any(r.bound != math.inf for r in self.listener_rates.values()))
        if not initial:
            log.info("connection limits: max.connections=%d, max.connections.per.ip=%d "
                     "(%d overrides), max.connection.creation.rate=%s", self.max_connections,
                     self.max_per_ip, len(self.per_ip_overrides),
                     get("max.connection.creation.rate"))
        self._wake()

    def limit_for(self, address: str) -> int:
        return self.per_ip_overrides.get(address, self.max_per_ip)

    # --------------------------------------------------------------------------- counting

    def protected(self, listener: str) -> bool:
        """``protectedListener``: the inter-broker listener of a broker with several."""
        return listener == self.inter_broker_listener and len(self.listener_counts) > 1

    async def acquire(self, listener: str, address: str) -> bool:
        """``ConnectionQuotas.inc``: wait for a connection slot and the creation-rate
        throttle, then count the connection; False (nothing held) when ``address`` was at
        its limit already.

        With every limit at its default nothing can wait or be refused, and the connection
        is only counted: its creation is not recorded in the rates (Kafka records it), so a
        rate set later starts from an empty history, as it does at start-up."""
        if not self._limited:
            self.counts[address] = self.counts.get(address, 0) + 1
            self.total += 1
            if listener in self.listener_counts:
                self.listener_counts[listener] += 1
            return True
        await self._wait_for_slot(listener)
        count = self.counts.get(address, 0)
        if count >= self.per_ip_overrides.get(address, self.max_per_ip):
            self.refused += 1
            self._wake()  # Kafka counted it and closed it at once: the slot is free again
            return False
        self.counts[address] = count + 1
        self.total += 1
        if listener in self.listener_counts:
            self.listener_counts[listener] += 1
        return True

    def release(self, listener: str, address: str) -> None:
        """``ConnectionQuotas.dec``: a connection admitted by ``acquire`` closed."""
        count = self.counts.get(address, 0)
        if count <= 1:
            self.counts.pop(address, None)
        else:
            self.counts[address] = count - 1
        self.total -= 1
        if self.listener_counts.get(listener, 0) > 0:
            self.listener_counts[listener] -= 1
        self._wake()

    def excess(self) -> int:
        """How many connections of unprotected listeners must close
        (``maxConnectionsExceeded``: after a protected accept or a lowered limit)."""
        return max(0, self.total - self.max_connections)

    def count(self, address: str) -> int:
        return self.counts.get(address, 0)

    # ----------------------------------------------------------------------------- waiting

    def _slot_available(self, listener: str) -> bool:
        if self.listener_counts.get(listener, 0) >= self.listener_max.get(listener, INT_MAX):
            return False
        if self.protected(listener):
            return True
        return self.total < self.max_connections

    def record_connection(self, listener: str, now_ms: int) -> int:
        """``recordConnectionAndGetThrottleTimeMs``: count one connection in the broker's
        (unless ``listener`` is protected) and the listener's creation rate; the longest
        throttle time, capped at one quota window (``QuotaUtils.boundedThrottleTime``)."""
        throttle = 0
        if not self.protected(listener):
            throttle = min(self.broker_rate.record(1.0, now_ms), self.window_ms)
        sensor = self.listener_rates.get(listener)
        if sensor is not None:
            throttle = max(throttle, min(sensor.record(1.0, now_ms), self.window_ms))
        return throttle

    async def _wait_for_slot(self, listener: str) -> None:
        start = self.clock()
        throttle_ms = self.record_connection(listener, int(start * 1000))
        if throttle_ms <= 0 and self._slot_available(listener):
            return
        self.throttled_ms += throttle_ms
        end = start + throttle_ms / 1000.0
        while True:
            remaining = end - self.clock()
            if remaining <= 0 and self._slot_available(listener):
                return
            if self._changed is None:
                self._changed = trio.Event()
            changed = self._changed
            if remaining > 0:
                with trio.move_on_after(remaining):
                    await changed.wait()
            else:
                await changed.wait()

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None


def _int(value: object) -> int:
    return int(str(value))


def _rate_bound(rate: int) -> float:
    return math.inf if rate >= INT_MAX else float(rate)


def _prefixed(get: Callable[[str], object], listener: str, key: str) -> object:
    """``valuesWithPrefixOverride``: ``listener.name.<l>.<key>`` when set, else ``key``."""
    try:
        value = get(f"listener.name.{listener.lower()}.{key}")
    except KeyError:
        return get(key)
    return get(key) if value is None else value
