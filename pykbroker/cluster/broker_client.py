"""An asynchronous Kafka client connection for broker-to-broker requests.

The controller's channel (LeaderAndIsr, UpdateMetadata, StopReplica) and a broker's requests
to the controller (ControlledShutdown, later AlterPartition and the replica fetchers) use it:
one request at a time on one connection, the response matched by correlation id, every
failure surfacing as ``BrokerConnectionError`` so callers reconnect and retry.
"""

from __future__ import annotations

import itertools
import os
import socket
import ssl
import struct
from typing import Any

import trio

from pykbroker.errors import DecodeError
from pykbroker.protocol.framing import decode_response, encode_request
from pykbroker.server.socket_send import send_views

_SIZE = struct.Struct(">i")
MAX_RESPONSE_BYTES = 512 * 1024 * 1024


def _test_routes(spec: str) -> dict[tuple[str, int], tuple[str, int]]:
    """``PYKBROKER_TEST_BROKER_ROUTES``: ``host:port=host:port,...`` pairs. Test-only: the
    ``kafka_cluster`` fixture (pykbroker.cluster_testing) sets it so that this broker reaches
    each peer through a fault proxy of its own. Unset in production: an empty dict."""
    routes: dict[tuple[str, int], tuple[str, int]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        target, _, via = item.partition("=")
        t_host, _, t_port = target.rpartition(":")
        v_host, _, v_port = via.rpartition(":")
        routes[(t_host, int(t_port))] = (v_host, int(v_port))
    return routes


_ROUTES = _test_routes(os.environ.get("PYKBROKER_TEST_BROKER_ROUTES", ""))


# How this process's brokers connect to each other (security.inter_broker's
# InterBrokerClientSecurity): set once at start-up, None for a PLAINTEXT inter-broker listener.
_SECURITY: Any = None
SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36


def use_inter_broker_security(security: Any) -> None:
    global _SECURITY
    _SECURITY = security


class BrokerConnectionError(Exception):
    """The connection failed or the peer answered garbage; reconnect before retrying."""


class BrokerConnection:
    def __init__(self, host: str, port: int, client_id: str,
                 receive_buffer_bytes: int = -1) -> None:
        self.host, self.port, self.client_id = host, port, client_id
        self.receive_buffer_bytes = receive_buffer_bytes  # SO_RCVBUF; -1: the OS's default
        self._stream: trio.abc.Stream | None = None
        self._correlation = itertools.count(1)
        self._lock = trio.Lock()
        self.security = _SECURITY
        self._size = bytearray(4)
        self._reused: bytearray | None = None  # responses read with reuse_buffer

    def _reused_buffer(self, size: int) -> memoryview:
        """``size`` bytes of the kept response buffer, replaced (never resized: views of the
        last response may still exist) by a larger one when it is too small."""
        if self._reused is None or len(self._reused) < size:
            self._reused = bytearray(size)
        return memoryview(self._reused)[:size]

    @property
    def connected(self) -> bool:
        return self._stream is not None

    async def connect(self, timeout_s: float) -> None:
        host, port = _ROUTES.get((self.host, self.port), (self.host, self.port))
        stream: trio.abc.Stream | None = None
        with trio.move_on_after(timeout_s) as scope:
            try:
                tcp = await trio.open_tcp_stream(host, port)
                stream = tcp
                if self.receive_buffer_bytes != -1:
                    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer_bytes)
                if self.security is not None:
                    stream = await self._secure(tcp)
            except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
                if stream is not None:
                    await trio.aclose_forcefully(stream)
                raise BrokerConnectionError(f"connect to {self.host}:{self.port}: {exc!r}") \
                    from exc
            except BaseException:
                if stream is not None:
                    await trio.aclose_forcefully(stream)
                raise
            self._stream = stream
        if scope.cancelled_caught:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            raise BrokerConnectionError(f"connect to {self.host}:{self.port} timed out")

    async def _secure(self, tcp: trio.SocketStream) -> trio.abc.Stream:
        """TLS and SASL of the inter-broker listener (security.inter_broker)."""
        security = self.security
        stream: trio.abc.Stream = tcp
        if security.ssl_context is not None:
            tls = trio.SSLStream(tcp, security.ssl_context, server_hostname=self.host)
            await tls.do_handshake()
            stream = tls
        if security.mechanism is not None:
            await self._authenticate(stream)
        return stream

    async def _authenticate(self, stream: trio.abc.Stream) -> None:
        from pykbroker.protocol._generated.sasl_authenticate_request import (
            SaslAuthenticateRequest,
        )
        from pykbroker.protocol._generated.sasl_handshake_request import SaslHandshakeRequest
        from pykbroker.security.inter_broker import SaslClient
        from pykbroker.security.scram import SaslError

        security = self.security
        hs = await self._exchange(stream, SASL_HANDSHAKE, 1,
                                  SaslHandshakeRequest(mechanism=security.mechanism))
        if hs.error_code:
            raise BrokerConnectionError(f"SASL handshake with {self.host}:{self.port} for "
                                        f"{security.mechanism}: error {hs.error_code} (the "
                                        f"broker offers {hs.mechanisms})")
        client = SaslClient(security)
        token: bytes | None = client.first()
        while token is not None:
            resp = await self._exchange(stream, SASL_AUTHENTICATE, 2,
                                        SaslAuthenticateRequest(auth_bytes=token))
            if resp.error_code:
                raise BrokerConnectionError(
                    f"SASL {security.mechanism} login as {security.username} to "
                    f"{self.host}:{self.port} failed: {resp.error_message}")
            try:
                token = client.respond(bytes(resp.auth_bytes))
            except (SaslError, KeyError, ValueError) as exc:
                raise BrokerConnectionError(f"SASL {security.mechanism} with "
                                            f"{self.host}:{self.port}: {exc}") from exc

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _read_into(self, stream: trio.abc.Stream, buf: bytearray | memoryview
                         ) -> bytearray | memoryview:
        """Fill ``buf`` from the socket: a replica fetch's megabyte lands in one buffer
        allocated at its final size, with no intermediate chunks to copy (over TLS, each
        decrypted chunk is copied in)."""
        view, got, n = memoryview(buf), 0, len(buf)
        if isinstance(stream, trio.SocketStream):
            # os.readv, not trio's recv_into: no scheduler pass when the bytes are there
            # already (socket_send says why); the task yields only while waiting for them.
            sock = stream.socket
            fd = sock.fileno()
            while got < n:
                try:
                    read = os.readv(fd, (view[got:],))
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(sock)
                    continue
                if not read:
                    raise BrokerConnectionError(f"{self.host}:{self.port} closed the "
                                                "connection")
                got += read
            return buf
        while got < n:
            chunk = await stream.receive_some(n - got)
            if not chunk:
                raise BrokerConnectionError(f"{self.host}:{self.port} closed the connection")
            view[got:got + len(chunk)] = chunk
            got += len(chunk)
        return buf

    async def _exchange(self, stream: trio.abc.Stream, api_key: int, api_version: int,
                        body: Any) -> Any:
        corr = next(self._correlation)
        data = await self._round_trip(
            stream, encode_request(api_key, api_version, corr, self.client_id, body), False)
        got, response = decode_response(data, api_key, api_version)
        if got != corr:
            raise BrokerConnectionError(f"correlation id {got} != {corr}")
        return response

    async def _round_trip(self, stream: trio.abc.Stream, frame: bytes, reuse_buffer: bool
                          ) -> bytearray | memoryview:
        """Send ``frame``, return the response frame's bytes (without its size)."""
        if isinstance(stream, trio.SocketStream):
            await send_views(stream.socket, [memoryview(frame)])
        else:  # TLS
            await stream.send_all(frame)
        (size,) = _SIZE.unpack(await self._read_into(stream, self._size))
        if not 0 < size <= MAX_RESPONSE_BYTES:
            raise BrokerConnectionError(f"bad response size {size}")
        return await self._read_into(
            stream, self._reused_buffer(size) if reuse_buffer else bytearray(size))

    async def request(self, api_key: int, api_version: int, body: Any,
                      timeout_s: float | None = 30.0, *, reuse_buffer: bool = False) -> Any:
        """Send one request and return its decoded response (connecting first if needed).

        ``timeout_s`` None: the caller limits the time (the replica fetcher moves one cancel
        scope's deadline instead of entering one per fetch) and drops the connection if it
        cancels the request halfway.

        With ``reuse_buffer`` the response is read into a buffer this connection keeps for
        the next such request, so its bytes fields (a Fetch's records) are views that the
        next ``reuse_buffer`` request overwrites: the caller must be done with them by then.
        The replica fetcher is (it appends the records before it fetches again); it saves
        allocating and zeroing a fresh megabyte per fetch."""
        lock = self._lock
        if lock.locked():
            await lock.acquire()
        else:  # (trio's acquire passes through the scheduler even when the lock is free)
            lock.acquire_nowait()
        try:
            if self._stream is None:
                await self.connect(30.0 if timeout_s is None else timeout_s)
            stream = self._stream
            assert stream is not None
            corr = next(self._correlation)
            frame = encode_request(api_key, api_version, corr, self.client_id, body)
            try:
                if timeout_s is None:
                    data = await self._round_trip(stream, frame, reuse_buffer)
                else:
                    with trio.fail_after(timeout_s):
                        data = await self._round_trip(stream, frame, reuse_buffer)
                got, response = decode_response(data, api_key, api_version)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError,
                    trio.TooSlowError, DecodeError, BrokerConnectionError) as exc:
                await self.close()
                raise BrokerConnectionError(
                    f"request {api_key} v{api_version} to {self.host}:{self.port}: {exc!r}"
                ) from exc
            if got != corr:
                await self.close()
                raise BrokerConnectionError(f"correlation id {got} != {corr}")
            return response
        finally:
            lock.release()
