"""A response in pieces reaches the peer whole: buffers by sendmsg, file slices by sendfile
on a socket, read back into one buffer on any other stream (TLS); slices are closed after."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from pykbroker.file_slice import FileSlice
from pykbroker.server.connection import Connection, ConnectionSettings, ListenerInfo


def _connection(stream: Any) -> Connection:
    return Connection(stream, conn_id=1, peer="test", listener=ListenerInfo("PLAINTEXT", "PLAINTEXT"),
                      dispatch=None, services=None,  # type: ignore[arg-type]
                      settings=ConnectionSettings(1 << 20, 60.0))


def _pieces(tmp_path: Path) -> tuple[list[Any], bytes, list[FileSlice]]:
    path = tmp_path / "segment"
    body = os.urandom(300_000)
    path.write_bytes(body)
    fd = os.open(path, os.O_RDONLY)
    slices = [FileSlice(fd, 1000, 200_000), FileSlice(fd, 250_000, 50_000)]
    os.close(fd)
    chunks: list[Any] = [b"head", slices[0], bytearray(b"-mid-"), memoryview(b"x" * 70_000),
                         slices[1], b"tail"]
    want = b"head" + body[1000:201_000] + b"-mid-" + b"x" * 70_000 + body[250_000:] + b"tail"
    return chunks, want, slices


async def _receive_all(stream: Any, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        got += await stream.receive_some(65536)
    return bytes(got)


@pytest.mark.trio
async def test_socket_gets_buffers_and_file_slices_in_order(tmp_path: Path) -> None:
    chunks, want, slices = _pieces(tmp_path)
    a, b = trio.socket.socketpair()
    left, right = trio.SocketStream(a), trio.SocketStream(b)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_connection(left)._send_chunks, chunks)
        assert await _receive_all(right, len(want)) == want  # more than the socket buffers
    assert all(s.fd == -1 for s in slices)
    await left.aclose()
    await right.aclose()


@pytest.mark.trio
async def test_other_streams_get_the_slices_read_back(tmp_path: Path) -> None:
    chunks, want, slices = _pieces(tmp_path)
    left, right = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_connection(left)._send_chunks, chunks)
        assert await _receive_all(right, len(want)) == want
    assert all(s.fd == -1 for s in slices)
