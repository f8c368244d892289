"""send_views: every byte of every buffer, in order, past IOV_MAX buffers and full socket
buffers; a closed peer is trio's BrokenResourceError, as trio's own sends raise."""

from __future__ import annotations

import os
import socket

import pytest
import trio

from pykbroker.server.socket_send import IOV_MAX, send_views


async def _read(sock: trio.socket.SocketType, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        chunk = await sock.recv(65536)
        assert chunk, "peer closed early"
        got += chunk
    return bytes(got)


@pytest.mark.trio
async def test_many_buffers_larger_than_the_socket_buffers_arrive_whole_and_in_order() -> None:
    a, b = trio.socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    parts = [os.urandom(n) for n in [1, 7, 3000, 0, 20_000] * (IOV_MAX // 2)]  # > IOV_MAX
    want = b"".join(parts)
    views = [memoryview(p) for p in parts]
    got = b""

    async def reader() -> None:
        nonlocal got
        got = await _read(b, len(want))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await send_views(a, views)
    assert got == want
    assert views == []  # consumed in place
    a.close()
    b.close()


@pytest.mark.trio
async def test_a_closed_peer_raises_broken_resource_error() -> None:
    a, b = trio.socket.socketpair()
    b.close()
    with pytest.raises(trio.BrokenResourceError):
        await send_views(a, [memoryview(b"x" * 1_000_000)])
    a.close()


@pytest.mark.timeout(10)  # (without the step-over, send_views spins without yielding)
@pytest.mark.trio
async def test_empty_buffers_anywhere_are_stepped_over() -> None:
    """A frame ending in empty buffers must not leave writev returning 0 forever."""
    a, b = trio.socket.socketpair()
    views = [memoryview(x) for x in (b"", b"ab", b"", b"c", b"", b"")]
    with trio.fail_after(5):
        await send_views(a, views)
        assert await _read(b, 3) == b"abc"
    assert views == []
    with trio.fail_after(5):
        await send_views(a, [memoryview(b"")])  # nothing at all to send
    a.close()
    b.close()
