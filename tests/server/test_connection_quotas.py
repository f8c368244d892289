"""Connection limits (Kafka's ConnectionQuotas): the pure parts, on trio's mock clock.

The overrides parser follows Kafka's ``Csv.parseCsvMap`` + ``toInt``; the rate follows
Kafka's ``Rate`` sensor with ``quota.window.num=11`` one-second samples, so a quiet broker
takes about ten seconds' worth of connections before it throttles (checked exactly here);
the network-level behaviour is in compat_tests/test_connection_limits.py.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from pykbroker.config import BrokerConfig, ConfigError
from pykbroker.server.connection_quotas import (
    INT_MAX,
    ConnectionQuotas,
    OverridesError,
    normalise_address,
    parse_overrides,
    resolve_host,
    resolve_overrides,
)


class FakeConfig:
    def __init__(self, **values: object) -> None:
        self.values: dict[str, object] = {
            "max.connections": INT_MAX, "max.connections.per.ip": INT_MAX,
            "max.connections.per.ip.overrides": "", "max.connection.creation.rate": INT_MAX,
            "quota.window.num": 11, "quota.window.size.seconds": 1}
        self.values.update({k.replace("_", "."): v for k, v in values.items()})

    def set(self, key: str, value: object) -> FakeConfig:
        self.values[key] = value
        return self

    def get(self, key: str) -> object:
        return self.values[key]


def _quotas(config: FakeConfig, listeners: tuple[str, ...] = ("PLAINTEXT",),
            inter: str | None = None) -> ConnectionQuotas:
    return ConnectionQuotas(config, listeners, inter, clock=trio.current_time,
                            resolve=lambda h: {"db": "10.0.0.9"}.get(h, h))


def _run(fn: Any) -> None:
    trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


# ------------------------------------------------------------------------- overrides parsing


def test_overrides_parse_as_kafka_csv_map() -> None:
    assert parse_overrides("") == {}
    assert parse_overrides("127.0.0.1:5") == {"127.0.0.1": 5}
    assert parse_overrides("a:1 , b : 2,c:+3,") == {"a": 1, "b": 2, "c": 3}
    assert parse_overrides("::1:7,fe80::1:0") == {"::1": 7, "fe80::1": 0}  # the last colon
    assert parse_overrides("h:1,h:2") == {"h": 2}
    assert parse_overrides("h:-1") == {"h": -1}  # Kafka does not check the sign


@pytest.mark.parametrize("text", ["h", "h:", "h:x", "h:1.5", "h:1,,g:2", ",h:1", "h:2147483648",
                                  "  "])
def test_bad_overrides_fail_as_in_kafka(text: str) -> None:
    with pytest.raises(OverridesError, match="max.connections.per.ip.overrides"):
        parse_overrides(text)


_HOSTS = st.from_regex(r"[a-z0-9][a-z0-9.\-]{0,20}", fullmatch=True) | st.ip_addresses().map(str)


@given(st.dictionaries(_HOSTS, st.integers(-2**31, INT_MAX), max_size=8),
       st.sampled_from([",", ", ", " ,", " , "]), st.booleans())
def test_overrides_round_trip(entries: dict[str, int], comma: str, trailing: bool) -> None:
    text = comma.join(f"{h}:{n}" for h, n in entries.items()) + ("," if trailing else "")
    assert parse_overrides(text) == entries


def test_config_refuses_unparseable_overrides(tmp_path: Any) -> None:
    base = {"listeners": "PLAINTEXT://127.0.0.1:0", "log.dirs": str(tmp_path)}
    with pytest.raises(ConfigError, match="max.connections.per.ip.overrides"):
        BrokerConfig({**base, "max.connections.per.ip.overrides": "127.0.0.1"})
    cfg = BrokerConfig({**base, "max.connections.per.ip.overrides": "127.0.0.1:3"})
    with pytest.raises(ConfigError):
        cfg.with_overrides({"max.connections.per.ip.overrides": "x:y"})


def test_hosts_resolve_to_one_address_as_inet_address_get_by_name() -> None:
    assert resolve_host("127.0.0.1") == "127.0.0.1"
    assert resolve_host("::1") == resolve_host("[::1]") == "::1"
    assert resolve_host("0:0:0:0:0:0:0:1") == "::1"
    assert resolve_host("localhost") == "127.0.0.1"  # IPv4 first, as Java by default
    assert resolve_overrides({"db": 3, "10.0.0.9": 4}, lambda h: {"db": "10.0.0.9"}.get(h, h)) \
        == {"10.0.0.9": 4}
    assert normalise_address("::ffff:1.2.3.4") == resolve_host("::ffff:102:304")
    assert normalise_address("0:0::1") == "::1"
    assert normalise_address("unknown") == "unknown"
    with pytest.raises(OSError):
        resolve_host("no-such-host.invalid")


def test_an_unresolvable_override_fails_start_up_but_not_a_later_update() -> None:
    def resolve(host: str) -> str:
        raise OSError(f"{host}: unknown")

    with pytest.raises(OSError):
        ConnectionQuotas(FakeConfig(**{"max.connections.per.ip.overrides": "x:1"}),
                         ["PLAINTEXT"], resolve=resolve)
    quotas = ConnectionQuotas(FakeConfig(), ["PLAINTEXT"], resolve=resolve)
    quotas.reconfigure(FakeConfig(**{"max.connections.per.ip.overrides": "x:1"}))
    assert quotas.per_ip_overrides == {}


# ------------------------------------------------------------------------- counting


def test_per_ip_limit_refuses_at_the_limit_and_a_close_frees_a_slot() -> None:
    async def main() -> None:
        q = _quotas(FakeConfig().set("max.connections.per.ip", 2)
                    .set("max.connections.per.ip.overrides", "db:4,127.0.0.2:0"))
        assert [await q.acquire("PLAINTEXT", "127.0.0.1") for _ in range(3)] == [
            True, True, False]
        assert await q.acquire("PLAINTEXT", "127.0.0.3")  # another address: its own count
        assert not await q.acquire("PLAINTEXT", "127.0.0.2")  # override 0
        assert [await q.acquire("PLAINTEXT", "10.0.0.9") for _ in range(5)] == [
            True, True, True, True, False]  # "db" resolved once to 10.0.0.9
        assert q.count("127.0.0.1") == 2 and q.refused == 3 and q.total == 7
        q.release("PLAINTEXT", "127.0.0.1")
        assert await q.acquire("PLAINTEXT", "127.0.0.1")
        q.reconfigure(FakeConfig().set("max.connections.per.ip", 5))  # dynamic update
        assert await q.acquire("PLAINTEXT", "127.0.0.1")
        assert await q.acquire("PLAINTEXT", "127.0.0.2")
    _run(main)


def test_max_connections_waits_for_a_slot_instead_of_refusing() -> None:
    async def main() -> None:
        q = _quotas(FakeConfig().set("max.connections", 2))
        assert await q.acquire("PLAINTEXT", "a") and await q.acquire("PLAINTEXT", "a")
        admitted: list[float] = []

        async def third() -> None:
            admitted.append(await q.acquire("PLAINTEXT", "b") and trio.current_time())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(third)
            await trio.sleep(5)
            assert admitted == []
            q.release("PLAINTEXT", "a")
        assert admitted == [5.0]
        # a raised limit wakes a waiting acceptor too
        async with trio.open_nursery() as nursery:
            nursery.start_soon(third)
            await trio.sleep(1)
            q.reconfigure(FakeConfig().set("max.connections", 3))
        assert admitted == [5.0, 6.0]
    _run(main)


def test_listener_limit_and_the_protected_inter_broker_listener() -> None:
    async def main() -> None:
        cfg = FakeConfig().set("max.connections", 2).set(
            "listener.name.client.max.connections", 1)
        q = _quotas(cfg, ("CLIENT", "INTERNAL", "OTHER"), inter="INTERNAL")
        assert q.protected("INTERNAL") and not q.protected("CLIENT")
        assert q.listener_max == {"CLIENT": 1, "INTERNAL": 2, "OTHER": 2}
        assert await q.acquire("CLIENT", "a")
        with trio.move_on_after(1) as scope:  # CLIENT is at its own limit
            await q.acquire("CLIENT", "a")
        assert scope.cancelled_caught
        assert await q.acquire("OTHER", "a")
        with trio.move_on_after(1) as scope:  # the broker is at max.connections
            await q.acquire("OTHER", "a")
        assert scope.cancelled_caught
        assert q.excess() == 0
        assert await q.acquire("INTERNAL", "b")  # protected: only its listener limit
        assert await q.acquire("INTERNAL", "b")
        assert q.excess() == 2  # the server closes two connections of other listeners
        with trio.move_on_after(1) as scope:
            await q.acquire("INTERNAL", "b")
        assert scope.cancelled_caught
    _run(main)


def test_a_single_listener_is_not_protected() -> None:
    q = ConnectionQuotas(FakeConfig(), ["PLAINTEXT"], "PLAINTEXT")
    assert not q.protected("PLAINTEXT")


# ------------------------------------------------------------------------- creation rate


def test_creation_rate_throttles_as_kafkas_rate_sensor() -> None:
    """Rate 5/s over 11 one-second samples, measured over at least 10 s: the first 50
    connections are taken at once; the 51st makes the rate 51/10 s = 5.1/s, a throttle of
    (5.1 - 5) / 5 * 10 s = 200 ms (QuotaUtils.throttleTime), and so on. Once a second has
    passed, Kafka's Rate measures over 10 s again (1 full window + 9 assumed), so the burst
    weighs more and each throttle hits the cap of one window (quota.window.size.seconds)
    until the burst's sample expires (after quota.window.num windows)."""
    async def main() -> None:
        q = _quotas(FakeConfig().set("max.connection.creation.rate", 5))
        times = []
        for _ in range(70):
            assert await q.acquire("PLAINTEXT", "a")
            times.append(trio.current_time())
        assert times[49] == 0
        assert times[50:55] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
        assert times[55:60] == pytest.approx([2.0, 3.0, 4.0, 5.0, 6.0])
        assert times[65:] == pytest.approx([12.0] * 5)  # the burst's sample has expired
        assert q.throttled_ms == pytest.approx(12000)
    _run(main)


def test_listener_creation_rate_defaults_to_the_broker_rate() -> None:
    cfg = FakeConfig().set("max.connection.creation.rate", 7).set(
        "listener.name.b.max.connection.creation.rate", 3)
    q = _quotas(cfg, ("A", "B"))
    assert q.broker_rate.bound == 7
    assert {n: s.bound for n, s in q.listener_rates.items()} == {"A": 7, "B": 3}
    q.reconfigure(FakeConfig())
    assert q.broker_rate.bound == math.inf
    assert q.record_connection("A", 0) == 0


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 20), st.integers(1, 300))
def test_creation_rate_bounds(rate: int, n: int) -> None:
    """Whatever the rate and the number of connections: none is delayed while the first
    ten seconds' worth arrive, no accept waits more than one window, and the count stays
    within the quota over the span Kafka measures (11 windows)."""
    elapsed: list[float] = []

    async def main() -> None:
        q = _quotas(FakeConfig().set("max.connection.creation.rate", rate))
        previous = 0.0
        for _ in range(n):
            await q.acquire("PLAINTEXT", "a")
            now = trio.current_time()
            assert now - previous <= 1.0 + 1e-9  # capped at quota.window.size.seconds
            previous = now
        elapsed.append(trio.current_time())

    _run(main)
    (t,) = elapsed
    if n <= 10 * rate:
        assert t == 0
    assert t <= max(0, n - 10 * rate)  # at least one a second after the free burst
    assert n <= rate * (t + 11) + 1  # never above the quota over the 11 s Kafka measures
    assert t <= n / rate + 11


def test_protected_listener_counts_only_against_its_listener_rate() -> None:
    q = _quotas(FakeConfig().set("max.connection.creation.rate", 1), ("A", "INTERNAL"),
                inter="INTERNAL")
    for _ in range(50):
        q.record_connection("INTERNAL", 0)
    assert q.broker_rate.rate.total(0) == 0
    assert q.listener_rates["INTERNAL"].rate.total(0) == 50


# ------------------------------------------------------------------------- dynamic configs


def test_listener_connection_limits_are_dynamic_per_broker_configs(tmp_path: Any) -> None:
    from pykbroker.broker import BrokerServices
    from pykbroker.errors import KafkaError

    cfg = BrokerConfig({"listeners": "PLAINTEXT://127.0.0.1:0", "log.dirs": str(tmp_path)})
    stored: list[dict[str, str]] = []
    services: Any = SimpleNamespace(
        static_config=cfg, config=cfg,
        topics=SimpleNamespace(store=SimpleNamespace(
            topics={}, set_broker_configs=stored.append)),
        replicas=SimpleNamespace(reconfigure=lambda t: None))
    apply = BrokerServices.apply_dynamic_broker_configs
    apply(services, {"listener.name.plaintext.max.connections": "3",
                     "max.connections.per.ip": "7"}, validate_only=False)
    assert services.config.get("listener.name.plaintext.max.connections") == 3
    assert services.config.max_connections_per_ip == 7
    q = ConnectionQuotas(services.config, ["PLAINTEXT"])
    assert q.listener_max == {"PLAINTEXT": 3} and q.max_per_ip == 7
    with pytest.raises(KafkaError, match="Invalid max.connections 0"):
        apply(services, {"listener.name.plaintext.max.connections": "0"}, validate_only=True)
    with pytest.raises(KafkaError, match="at least 0"):  # the key's own validator
        apply(services, {"listener.name.plaintext.max.connection.creation.rate": "-1"},
              validate_only=True)
    with pytest.raises(KafkaError, match="Unknown dynamic configuration"):
        apply(services, {"listener.name.plaintext.ssl.keystore.location": "/x"},
              validate_only=True)


# ------------------------------------------------------------------------- over real sockets


async def _probe(stream: trio.SocketStream) -> bool:
    """ApiVersions v0 on ``stream``: True when answered, False when the server closed it."""
    import struct

    async def exactly(n: int) -> bytes | None:
        got = b""
        while len(got) < n:
            chunk = await stream.receive_some(n - len(got))
            if not chunk:
                return None
            got += chunk
        return got

    try:
        await stream.send_all(struct.pack(">ihhi", 10, 18, 0, 1) + struct.pack(">h", 0))
        with trio.fail_after(5):
            prefix = await exactly(4)
            return prefix is not None and await exactly(struct.unpack(">i", prefix)[0]) \
                is not None
    except trio.BrokenResourceError:
        return False


@pytest.mark.trio
async def test_inter_broker_connections_close_the_least_recently_active_client_ones(
        nursery: trio.Nursery, tmp_path: Any) -> None:
    """KIP-402 as Kafka: at max.connections, the inter-broker listener (of a broker with two)
    is still served, and the broker closes the client connection idle the longest."""
    from pykbroker.handlers.api_versions import HANDLERS
    from pykbroker.server.connection import ConnectionSettings
    from pykbroker.server.dispatch import DispatchTable
    from pykbroker.server.listener import BindAddress, NetworkServer

    cfg = BrokerConfig({
        "listeners": "CLIENT://127.0.0.1:0,INTERNAL://127.0.0.1:0",
        "listener.security.protocol.map": "CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT",
        "inter.broker.listener.name": "INTERNAL", "log.dirs": str(tmp_path),
        "max.connections": "2"})
    dispatch = DispatchTable([*HANDLERS])
    server = NetworkServer(
        [BindAddress(n, "127.0.0.1", 0, "PLAINTEXT") for n in ("CLIENT", "INTERNAL")],
        dispatch=dispatch, services=SimpleNamespace(dispatch=dispatch, config=cfg),
        settings=ConnectionSettings(1 << 20, 30.0), max_connections=2)
    await nursery.start(server.run)
    client, internal = server.bound_ports["CLIENT"], server.bound_ports["INTERNAL"]
    older = await trio.open_tcp_stream("127.0.0.1", client)
    assert await _probe(older)
    await trio.sleep(0.05)
    newer = await trio.open_tcp_stream("127.0.0.1", client)
    assert await _probe(newer)
    waiting = await trio.open_tcp_stream("127.0.0.1", client)
    with trio.move_on_after(0.3) as scope:  # at max.connections: not taken on
        await _probe(waiting)
    assert scope.cancelled_caught
    broker = await trio.open_tcp_stream("127.0.0.1", internal)
    assert await _probe(broker)  # protected: served at once
    assert not await _probe(older)  # the least recently active client connection closed
    assert await _probe(newer)
    assert server.quotas.total == 2
    for s in (newer, waiting, broker):
        await s.aclose()
    await server.shutdown(1)


@pytest.mark.trio
async def test_a_lowered_max_connections_closes_the_excess_and_a_raised_one_admits(
        nursery: trio.Nursery, tmp_path: Any) -> None:
    """Dynamic configs replace ``services.config``; the server follows within a moment:
    lowered, the least recently active connections close (Kafka's closeExcessConnections);
    raised, an acceptor waiting for a slot takes its connection on."""
    from pykbroker.handlers.api_versions import HANDLERS
    from pykbroker.server.connection import ConnectionSettings
    from pykbroker.server.dispatch import DispatchTable
    from pykbroker.server.listener import BindAddress, NetworkServer

    cfg = BrokerConfig({"listeners": "PLAINTEXT://127.0.0.1:0", "log.dirs": str(tmp_path)})
    dispatch = DispatchTable([*HANDLERS])
    services = SimpleNamespace(dispatch=dispatch, config=cfg)
    server = NetworkServer([BindAddress("PLAINTEXT", "127.0.0.1", 0, "PLAINTEXT")],
                           dispatch=dispatch, services=services,
                           settings=ConnectionSettings(1 << 20, 30.0), max_connections=2)
    await nursery.start(server.run)
    port = server.bound_ports["PLAINTEXT"]
    streams = []
    for _ in range(3):
        streams.append(await trio.open_tcp_stream("127.0.0.1", port))
        assert await _probe(streams[-1])
        await trio.sleep(0.02)
    services.config = cfg.with_overrides({"max.connections": "1"})
    with trio.fail_after(5):
        while server.quotas.total > 1:
            await trio.sleep(0.05)
    assert [await _probe(s) for s in streams] == [False, False, True]
    late = await trio.open_tcp_stream("127.0.0.1", port)
    with trio.move_on_after(0.3) as scope:
        await _probe(late)
    assert scope.cancelled_caught  # waits for a slot
    services.config = cfg.with_overrides({"max.connections": "5"})
    with trio.fail_after(5):
        while server.quotas.total < 2:
            await trio.sleep(0.05)
    for s in [*streams, late]:
        await s.aclose()
    await server.shutdown(1)
