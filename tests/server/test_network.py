"""The network layer over real loopback sockets: framing, ordering, bad input, shutdown."""

from __future__ import annotations

import socket
import struct
import time
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from pykbroker.error_codes import ErrorCode
from pykbroker.handlers.api_versions import HANDLERS as API_VERSIONS_HANDLERS
from pykbroker.protocol._generated.api_versions_request import ApiVersionsRequest
from pykbroker.protocol._generated.api_versions_response import ApiVersionsResponse
from pykbroker.protocol.api import ApiKey
from pykbroker.protocol.framing import decode_response, encode_request
from pykbroker.server.connection import ConnectionSettings
from pykbroker.server.dispatch import DispatchTable, HandlerSpec
from pykbroker.server.first_frame import Unseen
from pykbroker.server.listener import BindAddress, NetworkServer


async def _slow_heartbeat(ctx: Any, req: Any) -> Any:
    from pykbroker.protocol._generated.heartbeat_response import HeartbeatResponse

    await trio.sleep(0.2 if req.generation_id == 1 else 0)
    return HeartbeatResponse(error_code=req.generation_id)


def _server(max_bytes: int = 1 << 20, idle: float = 30.0) -> NetworkServer:
    dispatch = DispatchTable([*API_VERSIONS_HANDLERS,
                              HandlerSpec(ApiKey.HEARTBEAT, 0, 4, _slow_heartbeat)])
    services = SimpleNamespace(dispatch=dispatch)
    return NetworkServer(
        [BindAddress("PLAINTEXT", "127.0.0.1", 0, "PLAINTEXT")], dispatch=dispatch,
        services=services, settings=ConnectionSettings(max_bytes, idle), max_connections=100,
    )


async def _read_frame(stream: trio.SocketStream) -> bytes | None:
    buf = b""
    while len(buf) < 4:
        chunk = await stream.receive_some(4 - len(buf))
        if not chunk:
            return None
        buf += chunk
    (size,) = struct.unpack(">i", buf)
    body = b""
    while len(body) < size:
        chunk = await stream.receive_some(size - len(body))
        if not chunk:
            return None
        body += chunk
    return body


async def _closed(stream: trio.SocketStream) -> bool:
    with trio.fail_after(5):
        try:
            return await stream.receive_some(100) == b""
        except trio.BrokenResourceError:
            return True


@pytest.mark.trio
async def test_api_versions_and_in_order_responses(nursery: trio.Nursery) -> None:
    server = _server()
    await nursery.start(server.run)
    stream = await trio.open_tcp_stream("127.0.0.1", server.bound_ports["PLAINTEXT"])
    await stream.send_all(encode_request(18, 3, 11, "t", ApiVersionsRequest("pytest", "1.0")))
    corr, resp = decode_response(await _read_frame(stream) or b"", 18, 3)
    assert corr == 11 and resp.error_code == 0
    keys = {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}
    assert keys == {18: (0, 4), 12: (0, 4)}
    # Pipelined requests: the slow first one is still answered first.
    from pykbroker.protocol._generated.heartbeat_request import HeartbeatRequest

    await stream.send_all(encode_request(12, 4, 1, "t", HeartbeatRequest("g", 1, "m"))
                          + encode_request(12, 4, 2, "t", HeartbeatRequest("g", 2, "m")))
    first = decode_response(await _read_frame(stream) or b"", 12, 4)
    second = decode_response(await _read_frame(stream) or b"", 12, 4)
    assert (first[0], first[1].error_code) == (1, 1)
    assert (second[0], second[1].error_code) == (2, 2)
    await stream.aclose()
    await server.shutdown(1)


@pytest.mark.trio
async def test_unsupported_api_versions_version_gets_v0_error(nursery: trio.Nursery) -> None:
    server = _server()
    await nursery.start(server.run)
    stream = await trio.open_tcp_stream("127.0.0.1", server.bound_ports["PLAINTEXT"])
    # Version 9 does not exist; a flexible header (v2) as a newer client would send.
    frame = struct.pack(">hhih", 18, 9, 5, 1) + b"x" + b"\x00" + b"\x02y\x021\x00"
    await stream.send_all(struct.pack(">i", len(frame)) + frame)
    body = await _read_frame(stream) or b""
    assert struct.unpack_from(">i", body)[0] == 5
    resp, _ = ApiVersionsResponse.decode(body, 4, 0)
    assert resp.error_code == ErrorCode.UNSUPPORTED_VERSION
    assert any(k.api_key == 18 and k.max_version == 4 for k in resp.api_keys)
    await server.shutdown(1)


@pytest.mark.trio
@pytest.mark.parametrize(
    "bad",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # garbage: a huge size prefix
        struct.pack(">i", 2**31 - 1) + b"\x00\x12",  # a frame declaring 2 GiB
        struct.pack(">i", 20) + b"\x00\x12\x00\x03",  # truncated, then EOF from us
        struct.pack(">i", 6) + struct.pack(">hhh", 999, 0, 0),  # unknown API key
        struct.pack(">i", -5),
    ],
)
async def test_bad_input_closes_only_that_connection(nursery: trio.Nursery, bad: bytes) -> None:
    server = _server()
    await nursery.start(server.run)
    port = server.bound_ports["PLAINTEXT"]
    good = await trio.open_tcp_stream("127.0.0.1", port)
    evil = await trio.open_tcp_stream("127.0.0.1", port)
    await evil.send_all(bad)
    if bad.startswith(struct.pack(">i", 20)):
        await evil.send_eof()
    assert await _closed(evil)
    await good.send_all(encode_request(18, 0, 3, "t", ApiVersionsRequest()))
    corr, resp = decode_response(await _read_frame(good) or b"", 18, 0)
    assert corr == 3 and resp.error_code == 0
    await server.shutdown(1)


@pytest.mark.trio
async def test_idle_connections_are_closed(nursery: trio.Nursery) -> None:
    server = _server(idle=0.2)
    await nursery.start(server.run)
    stream = await trio.open_tcp_stream("127.0.0.1", server.bound_ports["PLAINTEXT"])
    assert await _closed(stream)
    await server.shutdown(1)


@pytest.mark.trio
async def test_a_negative_idle_time_keeps_idle_connections(nursery: trio.Nursery) -> None:
    """connections.max.idle.ms=-1 turns idle expiry off (Kafka's Selector); the listener's
    idle sweep must neither close connections nor spin meanwhile."""
    server = _server(idle=-0.001)
    await nursery.start(server.run)
    stream = await trio.open_tcp_stream("127.0.0.1", server.bound_ports["PLAINTEXT"])
    cpu = time.process_time()
    await trio.sleep(0.5)
    assert time.process_time() - cpu < 0.25  # (a sweep without a pause took all of it)
    await stream.send_all(encode_request(18, 0, 5, "t", ApiVersionsRequest()))
    corr, _ = decode_response(await _read_frame(stream) or b"", 18, 0)
    assert corr == 5
    await server.shutdown(1)


@pytest.mark.trio
async def test_shutdown_finishes_in_flight_request(nursery: trio.Nursery) -> None:
    from pykbroker.protocol._generated.heartbeat_request import HeartbeatRequest

    server = _server()
    await nursery.start(server.run)
    port = server.bound_ports["PLAINTEXT"]
    idle = await trio.open_tcp_stream("127.0.0.1", port)
    busy = await trio.open_tcp_stream("127.0.0.1", port)
    await busy.send_all(encode_request(12, 4, 7, "t", HeartbeatRequest("g", 1, "m")))
    await trio.sleep(0.05)
    await server.shutdown(5)
    corr, resp = decode_response(await _read_frame(busy) or b"", 12, 4)
    assert corr == 7
    assert await _closed(idle)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).recv(1)


@pytest.mark.trio
async def test_unexpected_failure_in_one_connection_spares_the_others(
        nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug that escapes a connection (here: the response cannot even be sent) closes that
    connection and leaves the server and its other connections running."""
    from pykbroker.server.connection import Connection

    real_send_chunks = Connection._send_chunks
    doomed = -1

    async def failing_send_chunks(self: Connection, chunks: list[Any]) -> None:
        if self.conn_id == doomed:
            raise RuntimeError("injected bug")
        await real_send_chunks(self, chunks)

    monkeypatch.setattr(Connection, "_send_chunks", failing_send_chunks)
    server = _server()
    await nursery.start(server.run)
    port = server.bound_ports["PLAINTEXT"]
    good = await trio.open_tcp_stream("127.0.0.1", port)
    await good.send_all(encode_request(18, 0, 1, "t", ApiVersionsRequest()))
    assert decode_response(await _read_frame(good) or b"", 18, 0)[0] == 1
    doomed = max(c.conn_id for c in server.connections) + 1  # the next connection's id
    bad = await trio.open_tcp_stream("127.0.0.1", port)
    await bad.send_all(encode_request(18, 0, 2, "t", ApiVersionsRequest()))
    assert await _closed(bad)
    await good.send_all(encode_request(18, 0, 3, "t", ApiVersionsRequest()))
    corr, resp = decode_response(await _read_frame(good) or b"", 18, 0)
    assert corr == 3 and resp.error_code == 0
    await server.shutdown(1)


# --- the first frame's screen: a connection whose first frame is refused before anything is
# made for it (a flood of bad frames costs an accept, a peek and a close each) ---

def _screen(data: bytes, max_bytes: int = 1 << 20) -> str | Unseen | None:
    from pykbroker.server.first_frame import first_frame_refusal

    a, b = socket.socketpair()
    try:
        if data:
            a.sendall(data)
        reason = first_frame_refusal(b, max_bytes, "socket.request.max.bytes",
                                     _server().dispatch)
        b.setblocking(False)
        try:  # peeked, not read: every byte is still there for the connection
            assert b.recv(1 << 16) == data
        except BlockingIOError:
            assert data == b""
        return reason
    finally:
        a.close()
        b.close()


def test_first_frame_screen_refuses_what_a_connection_would_close_on() -> None:
    assert _screen(struct.pack(">i", -1)) == "invalid frame size -1"
    assert _screen(struct.pack(">i", 2 << 20)) == (
        "frame of 2097152 bytes is larger than socket.request.max.bytes=1048576")
    assert _screen(struct.pack(">ihh", 6, 999, 0)) == (
        "malformed request header: unknown API key 999")
    # a known API this server does not serve, and a version it does not serve
    assert _screen(struct.pack(">ihh", 6, 0, 3)) == "unsupported request PRODUCE v3"
    assert _screen(struct.pack(">ihh", 6, 12, 5)) == "unsupported request HEARTBEAT v5"
    assert _screen(struct.pack(">ihh", 6, 12, -1)) == "unsupported request HEARTBEAT v-1"


def test_first_frame_screen_passes_what_a_connection_must_judge() -> None:
    assert _screen(b"") is Unseen.UNSEEN  # nothing yet: looked at once more, then served
    assert _screen(b"\x00\x00") is None  # half a size prefix
    assert _screen(struct.pack(">i", 10) + b"\x00") is None  # the header is not there yet
    assert _screen(struct.pack(">ihh", 6, 18, 99)) is None  # ApiVersions answers any version
    assert _screen(struct.pack(">ihh", 6, 12, 4)) is None  # served
    assert _screen(struct.pack(">i", 2) + b"\x00\x01") is None  # too short: the reader's call
    assert _screen(encode_request(18, 3, 1, "t", ApiVersionsRequest("c", "1"))) is None


@pytest.mark.trio
async def test_bad_first_frames_already_there_close_with_a_fin(
        nursery: trio.Nursery, caplog: pytest.LogCaptureFixture) -> None:
    """Frames sent before the broker accepts are screened at accept: each bad connection
    ends with an end of stream (its bytes were read, no reset), is counted out of the
    connection quotas, and a good client whose request was there as early is served."""
    server = _server()
    await nursery.start(server.run)
    port = server.bound_ports["PLAINTEXT"]
    bad = [struct.pack(">i", -1), struct.pack(">i", 2 << 20),
           struct.pack(">ihh", 6, 999, 0) + b"\x00\x00", struct.pack(">ihh", 6, 12, 7) + b"xx"]
    clients = []
    for frame in bad * 5:  # connected and sent without letting the server run in between
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(frame)
        clients.append(trio.socket.from_stdlib_socket(sock))
    good = socket.create_connection(("127.0.0.1", port))
    good.sendall(encode_request(18, 0, 3, "t", ApiVersionsRequest()))
    with trio.fail_after(5):
        for sock in clients:
            assert await sock.recv(100) == b""  # ConnectionResetError if it were reset
            sock.close()
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(good))
        corr, resp = decode_response(await _read_frame(stream) or b"", 18, 0)
    assert corr == 3 and resp.error_code == 0
    assert [c.conn_id for c in server.connections] == [1]  # the bad ones never got one
    assert server.quotas.total == 1
    lines = [r.getMessage() for r in caplog.records if "closing connection" in r.getMessage()]
    assert lines and "invalid frame size -1" in lines[0]
    assert len(lines) == 1  # one line per client address per interval
    await stream.aclose()
    await server.shutdown(1)


@pytest.mark.trio
async def test_a_client_silent_at_first_is_served(nursery: trio.Nursery) -> None:
    """Nothing received at accept nor at the second look: a connection all the same, whose
    request sent later (good, then bad) is read by the connection as usual."""
    server = _server()
    await nursery.start(server.run)
    port = server.bound_ports["PLAINTEXT"]
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    with trio.fail_after(5):
        while not server.connections:
            await trio.sleep(0.01)
        await trio.sleep(0.1)
        await stream.send_all(encode_request(18, 0, 9, "t", ApiVersionsRequest()))
        corr, resp = decode_response(await _read_frame(stream) or b"", 18, 0)
        assert corr == 9 and resp.error_code == 0
        await stream.send_all(struct.pack(">ihh", 6, 999, 0) + b"\x00\x00")
        assert await _closed(stream)
    await server.shutdown(1)
