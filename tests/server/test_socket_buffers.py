"""socket.send.buffer.bytes, socket.receive.buffer.bytes and
replica.socket.receive.buffer.bytes set the sockets' SO_SNDBUF / SO_RCVBUF as in Kafka
(-1: the OS's default, pykbroker's default: see the README's Configuration); read back from
the real accepted and connected sockets. Linux doubles the value given to setsockopt (its
bookkeeping share), so that is what getsockopt returns."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio

from pykbroker.cluster.broker_client import BrokerConnection
from pykbroker.config import BrokerConfig


def _sizes(sock: socket.socket) -> tuple[int, int]:
    return (sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


async def _accepted_sizes(nursery: trio.Nursery, tmp_path: Path,
                          settings: dict[str, str]) -> tuple[tuple[int, int], bool]:
    """(SO_SNDBUF, SO_RCVBUF) and SO_KEEPALIVE of the broker's side of one client
    connection."""
    from pykbroker.handlers.api_versions import HANDLERS
    from pykbroker.server.connection import ConnectionSettings
    from pykbroker.server.dispatch import DispatchTable
    from pykbroker.server.listener import BindAddress, NetworkServer

    cfg = BrokerConfig({"listeners": "PLAINTEXT://127.0.0.1:0", "log.dirs": str(tmp_path),
                        **settings})
    dispatch = DispatchTable([*HANDLERS])
    server = NetworkServer([BindAddress("PLAINTEXT", "127.0.0.1", 0, "PLAINTEXT")],
                           dispatch=dispatch,
                           services=SimpleNamespace(dispatch=dispatch, config=cfg),
                           settings=ConnectionSettings(1 << 20, 30.0), max_connections=100)
    await nursery.start(server.run)
    client = await trio.open_tcp_stream("127.0.0.1", server.bound_ports["PLAINTEXT"])
    with trio.fail_after(5):
        while not server.connections:  # served after one pass of the accept loop
            await trio.sleep(0.01)
    (conn,) = server.connections
    sock = conn.stream.socket  # type: ignore[attr-defined]
    sizes = _sizes(sock)
    keepalive = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE))
    await client.aclose()
    await server.shutdown(1)
    return sizes, keepalive


@pytest.mark.trio
async def test_set_sizes_apply_to_accepted_connections(nursery: trio.Nursery,
                                                        tmp_path: Path) -> None:
    sizes, keepalive = await _accepted_sizes(nursery, tmp_path / "kafka", {
        "socket.send.buffer.bytes": "102400", "socket.receive.buffer.bytes": "102400"})
    assert sizes == (2 * 102400, 2 * 102400)  # Kafka's defaults
    assert keepalive  # as Kafka's acceptor
    sizes, _ = await _accepted_sizes(nursery, tmp_path / "a", {
        "socket.send.buffer.bytes": "65536", "socket.receive.buffer.bytes": "131072"})
    assert sizes == (2 * 65536, 2 * 131072)  # (below net.core.[rw]mem_max's default)


@pytest.mark.trio
async def test_minus_one_the_default_leaves_the_os_sizes(nursery: trio.Nursery,
                                                         tmp_path: Path) -> None:
    assert BrokerConfig({"log.dirs": str(tmp_path)}).socket_send_buffer_bytes == -1
    assert BrokerConfig({"log.dirs": str(tmp_path)}).socket_receive_buffer_bytes == -1
    sizes, _ = await _accepted_sizes(nursery, tmp_path / "b", {})
    with socket.socket() as plain:  # a new socket's receive buffer: tcp_rmem's default
        assert sizes[1] == plain.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


@pytest.mark.trio
async def test_the_replica_fetchers_connection_takes_its_receive_buffer() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    try:
        fetcher = BrokerConnection("127.0.0.1", port, "broker-2-fetcher",
                                   receive_buffer_bytes=40000)
        await fetcher.connect(5)
        other = BrokerConnection("127.0.0.1", port, "broker-2")
        await other.connect(5)
        assert _sizes(fetcher._stream.socket)[1] == 2 * 40000  # type: ignore[union-attr]
        assert _sizes(other._stream.socket)[1] != 2 * 40000  # type: ignore[union-attr]
        for conn in (fetcher, other):
            await conn._stream.aclose()  # type: ignore[union-attr]
    finally:
        for lsn in listeners:
            await lsn.aclose()


def test_the_fetcher_settings_follow_the_broker_config(tmp_path: Path) -> None:
    """The cluster member's fetchers take replica.socket.receive.buffer.bytes (-1 by
    default: the OS's; Kafka's is 65536) with the replica.fetch.* settings."""
    from pykbroker.replication.fetcher import FetcherSettings

    default = FetcherSettings.from_config(BrokerConfig({"log.dirs": str(tmp_path)}))
    assert default == FetcherSettings() and default.receive_buffer_bytes == -1
    set_ = FetcherSettings.from_config(BrokerConfig({
        "log.dirs": str(tmp_path), "replica.socket.receive.buffer.bytes": "65536",
        "replica.fetch.wait.max.ms": "100", "replica.fetch.min.bytes": "7"}))
    assert (set_.receive_buffer_bytes, set_.wait_max_ms, set_.min_bytes) == (65536, 100, 7)
