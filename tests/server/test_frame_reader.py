"""FrameReader: frames cut from a stream, whatever the chunking, over a real socket (received
into the reader's own buffers) and over a stream without a socket (``receive_some``)."""

from __future__ import annotations

import random
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from pykbroker.server.frame_reader import ConnectionClosed, FrameReader

BUF = 64  # a tiny receive buffer, so that frames cross and exceed it


def _frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


@asynccontextmanager
async def _socket_pair() -> AsyncIterator[tuple[trio.SocketStream, trio.SocketStream]]:
    a, b = trio.socket.socketpair()
    left, right = trio.SocketStream(a), trio.SocketStream(b)
    try:
        yield left, right
    finally:
        await left.aclose()
        await right.aclose()


@asynccontextmanager
async def _memory_pair() -> AsyncIterator[tuple[trio.abc.SendStream, trio.abc.ReceiveStream]]:
    send, receive = trio.testing.memory_stream_one_way_pair()
    try:
        yield send, receive
    finally:
        await send.aclose()
        await receive.aclose()


PAIRS: list[Callable[[], object]] = [_socket_pair, _memory_pair]


async def _send_in_pieces(stream: trio.abc.SendStream, data: bytes, rng: random.Random) -> None:
    pos = 0
    while pos < len(data):
        n = rng.choice([1, 3, 7, 50, 64, 65, 200, 5000])
        await stream.send_all(data[pos : pos + n])
        pos += n
        await trio.sleep(0)
    await stream.send_eof() if hasattr(stream, "send_eof") else await stream.aclose()


@pytest.mark.trio
@pytest.mark.parametrize("pair", PAIRS, ids=["socket", "memory"])
async def test_frames_of_every_size_in_any_chunking(pair: Callable[[], object]) -> None:
    rng = random.Random(8)
    sizes = [0, 1, 59, 60, 61, 63, 64, 65, 200, 4096, 100_000, 3, 60, 1_000_000, 2]
    bodies = [rng.randbytes(n) for n in sizes]
    wire = b"".join(_frame(b) for b in bodies)
    async with pair() as (tx, rx):  # type: ignore[attr-defined]
        reader = FrameReader(rx, buffer_size=BUF)
        got: list[bytes] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_send_in_pieces, tx, wire, rng)
            while (frame := await reader.next_frame(2_000_000)) is not None:
                assert isinstance(frame, bytearray)
                got.append(bytes(frame))
    assert got == bodies


@pytest.mark.trio
@pytest.mark.parametrize("pair", PAIRS, ids=["socket", "memory"])
async def test_pipelined_small_frames_in_one_send(pair: Callable[[], object]) -> None:
    bodies = [bytes([i % 256]) * (i % 23) for i in range(300)]
    async with pair() as (tx, rx):  # type: ignore[attr-defined]
        reader = FrameReader(rx, buffer_size=BUF)
        await tx.send_all(b"".join(_frame(b) for b in bodies))
        for body in bodies:
            assert await reader.next_frame(1000) == body


@pytest.mark.trio
@pytest.mark.parametrize("pair", PAIRS, ids=["socket", "memory"])
@pytest.mark.parametrize("size", [30, 500])  # within the buffer, and a frame of its own
async def test_end_of_stream_inside_a_frame(pair: Callable[[], object], size: int) -> None:
    async with pair() as (tx, rx):  # type: ignore[attr-defined]
        reader = FrameReader(rx, buffer_size=BUF)
        await tx.send_all(_frame(b"x" * size)[:-1])
        await tx.send_eof() if hasattr(tx, "send_eof") else await tx.aclose()
        with pytest.raises(ConnectionClosed, match="inside a frame"):
            await reader.next_frame(1000)


@pytest.mark.trio
async def test_end_of_stream_inside_a_size_prefix_and_limits() -> None:
    async with _socket_pair() as (tx, rx):
        reader = FrameReader(rx, buffer_size=BUF)
        await tx.send_all(_frame(b"ok") + struct.pack(">i", 5000))
        assert await reader.next_frame(100) == b"ok"
        with pytest.raises(ConnectionClosed, match="larger than socket.request.max.bytes"):
            await reader.next_frame(100)
    async with _socket_pair() as (tx, rx):
        reader = FrameReader(rx, buffer_size=BUF)
        await tx.send_all(b"\x00\x00")
        await tx.send_eof()
        with pytest.raises(ConnectionClosed, match="inside a size prefix"):
            await reader.next_frame(100)


@pytest.mark.trio
async def test_idle_deadline_moves_when_bytes_arrive() -> None:
    async with _socket_pair() as (tx, rx):
        reader = FrameReader(rx, buffer_size=BUF)
        with trio.CancelScope() as scope:
            reader.idle_scope, reader.idle_s = scope, 100.0
            scope.deadline = trio.current_time() + 1.0
            await tx.send_all(_frame(b"y" * 1000))
            assert await reader.next_frame(2000) == b"y" * 1000
            assert scope.deadline > trio.current_time() + 50


@pytest.mark.trio
async def test_a_stopped_reader_raises_instead_of_waiting() -> None:
    """Connection.stop_reading wakes a reader blocked on its socket (notify_closing); a
    reader that was not blocked at that moment (its bytes had just arrived) must not start
    another wait, in the prefix or inside a frame's body, or it could wait forever."""
    async with _socket_pair() as (tx, rx):
        reader = FrameReader(rx, buffer_size=BUF)
        await tx.send_all(_frame(b"first"))
        reader.stop = True
        assert await reader.next_frame(100) == b"first"  # there already: no wait
        with trio.fail_after(2), pytest.raises(trio.ClosedResourceError):
            await reader.next_frame(100)
    async with _socket_pair() as (tx, rx):
        reader = FrameReader(rx, buffer_size=BUF)
        await tx.send_all(struct.pack(">i", 1000) + b"x" * 10)  # a frame's first bytes

        async def stop_soon() -> None:
            await trio.sleep(0.05)
            reader.stop = True
            trio.lowlevel.notify_closing(reader.socket)

        with trio.fail_after(2):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stop_soon)
                with pytest.raises(trio.ClosedResourceError):
                    await reader.next_frame(2000)
