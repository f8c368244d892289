"""Connection limits (issue #17) on a real broker subprocess over real sockets, as Kafka 3.9's
ConnectionQuotas applies them (see pykbroker/server/connection_quotas.py):

* ``max.connections.per.ip`` (+ overrides): a connection from an address at its limit is
  accepted by TCP, then closed by the broker before it answers anything; other addresses are
  served. Linux routes the whole of 127/8 to loopback, so a client socket bound to 127.0.0.2
  or 127.0.0.3 is "another host" to the broker (the broker listens on 127.0.0.1 only).
* ``max.connections``: the broker stops accepting (the connection waits in the listen
  backlog, unanswered) until a connection closes; nothing is refused.
* ``max.connection.creation.rate``: accepts are delayed, never refused.

Each connection is probed with an ApiVersions v0 request: answered means admitted. Timing
assertions are lower bounds only, and generous: a loaded CI machine makes everything slower,
never faster, so an upper bound would be flaky and a lower bound is what the limit promises.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from compat_tests.broker_process import BrokerProcess
from compat_tests.ck_helpers import (
    admin,
    assign_from,
    consume_n,
    consumer,
    create_topic,
    flush_all,
    producer,
)

_API_VERSIONS_V0 = struct.pack(">ihhi", 10, 18, 0, 7) + struct.pack(">h", 0)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed by the broker")
        out += chunk
    return out


def connect(broker: BrokerProcess, source: str = "127.0.0.1") -> socket.socket:
    """A TCP connection to the broker from ``source`` (connected, not yet probed)."""
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", broker.port))
    return sock


def answered(sock: socket.socket, timeout: float = 10.0) -> bool:
    """Whether the broker answers ApiVersions on ``sock`` within ``timeout`` (False when it
    closed the connection, TimeoutError when it neither answers nor closes)."""
    sock.settimeout(timeout)
    try:
        sock.sendall(_API_VERSIONS_V0)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        (corr,) = struct.unpack(">i", _recv_exact(sock, 4))
        _recv_exact(sock, size - 4)
    except (ConnectionError, BrokenPipeError):
        return False
    assert corr == 7
    return True


@contextmanager
def connections(broker: BrokerProcess, n: int, source: str = "127.0.0.1"
                ) -> Iterator[list[socket.socket]]:
    socks = [connect(broker, source) for _ in range(n)]
    try:
        yield socks
    finally:
        for s in socks:
            s.close()


def eventually_answered(broker: BrokerProcess, source: str, timeout: float = 10.0) -> bool:
    """A new connection from ``source`` is answered, retrying while the broker has not yet
    seen an earlier close (it notices a closed connection asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        with connections(broker, 1, source) as (sock,):
            if answered(sock):
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


@pytest.mark.broker_config(**{"max.connections.per.ip": "3"})
def test_per_ip_limit_refuses_the_next_connection_and_a_close_frees_a_slot(
        broker: BrokerProcess) -> None:
    with connections(broker, 3) as held:
        assert all(answered(s) for s in held)
        with connections(broker, 1) as (fourth,):
            assert not answered(fourth)  # accepted by TCP, closed by the broker
        with connections(broker, 3, "127.0.0.2") as others:  # another address: served
            assert all(answered(s) for s in others)
        assert all(answered(s) for s in held)  # the three are still served
        held.pop().close()
        assert eventually_answered(broker, "127.0.0.1")
    log = broker.log()
    assert ("Rejected connection from 127.0.0.1, address already has the configured maximum "
            "of 3 connections.") in log
    assert "INFO" in log.split("Rejected connection from 127.0.0.1")[0].rsplit("\n", 1)[-1]


@pytest.mark.broker_config(**{"max.connections.per.ip": "2",
                              "max.connections.per.ip.overrides": "127.0.0.2:4,localhost:1"})
def test_overrides_raise_and_lower_the_limit_of_a_host(broker: BrokerProcess) -> None:
    with connections(broker, 5, "127.0.0.2") as socks:  # raised to 4
        assert [answered(s) for s in socks] == [True, True, True, True, False]
    with connections(broker, 2) as socks:  # "localhost" resolves to 127.0.0.1: lowered to 1
        assert [answered(s) for s in socks] == [True, False]
    with connections(broker, 3, "127.0.0.3") as socks:  # everyone else: the default, 2
        assert [answered(s) for s in socks] == [True, True, False]


def _alter_broker_config(bootstrap: str, key: str, value: str | None) -> None:
    entry = ConfigEntry(key, value, incremental_operation=(
        AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE))
    resource = ConfigResource(ConfigResource.Type.BROKER, "1", incremental_configs=[entry])
    a = admin(bootstrap)  # kept referenced until the futures are done
    for future in a.incremental_alter_configs([resource]).values():
        future.result(15)


def test_per_ip_limits_are_dynamic_and_apply_to_new_connections(
        broker: BrokerProcess) -> None:
    with connections(broker, 3, "127.0.0.3") as before:
        assert all(answered(s) for s in before)
        _alter_broker_config(broker.bootstrap, "max.connections.per.ip.overrides",
                             "127.0.0.3:3")
        with connections(broker, 1, "127.0.0.3") as (fourth,):
            assert not answered(fourth)
        assert all(answered(s) for s in before)  # connections already open stay open
        _alter_broker_config(broker.bootstrap, "max.connections.per.ip.overrides", None)
        assert eventually_answered(broker, "127.0.0.3")


@pytest.mark.broker_config(**{"max.connections": "3"})
def test_max_connections_makes_the_next_connection_wait_not_fail(
        broker: BrokerProcess) -> None:
    with connections(broker, 3) as held:
        assert all(answered(s) for s in held)
        with connections(broker, 1, "127.0.0.2") as (waiting,):
            with pytest.raises(TimeoutError):  # neither answered nor closed: not accepted
                answered(waiting, timeout=1.0)
            held.pop().close()  # a slot frees: the waiting connection is taken on
            (size,) = struct.unpack(">i", _recv_exact(waiting, 4))  # its request was sent
            assert size > 4


@pytest.mark.broker_config(**{"max.connection.creation.rate": "2"})
def test_creation_rate_delays_accepts(broker: BrokerProcess) -> None:
    """Kafka's rate is measured over at least 10 one-second windows, so a quiet broker takes
    10 s worth (20 connections at 2/s) at once; the 21st and 22nd wait 0.5 s each, and once
    a second has passed the burst weighs over a 10 s span again and each later accept waits
    the cap of one window (1 s): 25 connections take about 4 s. We only check >= 2.5 s (a
    lower bound: a slow machine only adds time) and that none was refused."""
    start = time.monotonic()
    with connections(broker, 25) as socks:
        assert all(answered(s, timeout=30) for s in socks)
    assert time.monotonic() - start >= 2.5


@pytest.mark.broker_config(**{"max.connections.per.ip": "10", "max.connections": "20",
                              "max.connection.creation.rate": "30"})
def test_stock_clients_produce_and_consume_under_the_limits(
        broker: BrokerProcess, topic_name: str) -> None:
    create_topic(admin(broker.bootstrap), topic_name, partitions=2)
    with producer(broker.bootstrap) as p:
        for i in range(200):
            p.produce(topic_name, value=b"v%d" % i, partition=i % 2)
        flush_all(p)
    with consumer(broker.bootstrap) as c:
        assign_from(c, topic_name, [0, 1])
        msgs = consume_n(c, 200)
    assert sorted(m.value() for m in msgs) == sorted(b"v%d" % i for i in range(200))
    from kafka import KafkaConsumer, KafkaProducer

    kp = KafkaProducer(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    try:
        for i in range(50):
            kp.send(topic_name, b"k%d" % i, partition=0)
        kp.flush(15)
    finally:
        kp.close(10)
    kc = KafkaConsumer(topic_name, bootstrap_servers=broker.bootstrap, group_id=None,
                       auto_offset_reset="earliest", consumer_timeout_ms=5000)
    try:
        got = [m.value for m in kc]
    finally:
        kc.close()
    assert sum(v.startswith(b"k") for v in got) == 50
