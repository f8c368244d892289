"""An in-process broker on 127.0.0.1:0 and a tiny trio client speaking our own codecs.

For tests that need to look inside the broker (count fsyncs, inject state) while still
going through real sockets and real files.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from pykbroker.broker import Broker
from pykbroker.config import BrokerConfig
from pykbroker.protocol.framing import decode_response, encode_request


@asynccontextmanager
async def running_broker(data_dir: Path, **overrides: object) -> AsyncIterator[Broker]:
    props: dict[str, object] = {"listeners": "PLAINTEXT://127.0.0.1:0",
                                "log.dirs": str(data_dir)}
    props.update({k.replace("_", "."): v for k, v in overrides.items()})
    broker = Broker(BrokerConfig(props))
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.serve)
        try:
            yield broker
        finally:
            broker.shutdown()
            await broker.stopped.wait()


class Client:
    """Sends one request at a time and reads the matching response."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._corr = itertools.count(1)

    @classmethod
    async def connect(cls, broker: Broker) -> Client:
        port = broker.bound_ports["PLAINTEXT"]
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def _read_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = await self.stream.receive_some(n - len(buf))
            if not chunk:
                raise EOFError("connection closed")
            buf += chunk
        return buf

    async def send(self, api_key: int, version: int, body: Any) -> Any:
        corr = await self.send_only(api_key, version, body)
        got, resp = await self.receive(api_key, version)
        assert got == corr
        return resp

    async def send_only(self, api_key: int, version: int, body: Any) -> int:
        """Send a request without waiting for its response (pipelining); its correlation id."""
        corr = next(self._corr)
        await self.stream.send_all(encode_request(api_key, version, corr, "test", body))
        return corr

    async def receive(self, api_key: int, version: int) -> tuple[int, Any]:
        """The next response on the connection: (correlation id, body)."""
        (size,) = struct.unpack(">i", await self._read_exact(4))
        got, resp = decode_response(await self._read_exact(size), api_key, version)
        return got, resp

    async def aclose(self) -> None:
        await self.stream.aclose()
