"""One client connection: read its frames (frame_reader), dispatch each request, answer in order.

Requests on one connection are handled one at a time, as Kafka does (it mutes a channel while
a request is in flight), so responses go out in request order. One exception: a handler may
return a DeferredResponse (a produce waiting for its fsync or for its followers), and the next
request is read and served while it waits (up to MAX_DEFERRED of them). A malformed frame or
header closes this connection alone; handler failures become Kafka error responses.

On SSL and SASL_SSL listeners the stream is a trio SSLStream (the TLS handshake happens
before the first request; a client certificate gives the principal through
``ssl.principal.mapping.rules``). It has no socket, so responses take the buffered path, file
slices read back. On SASL listeners a SaslSession admits only ApiVersions, SaslHandshake and
SaslAuthenticate, in frames of at most ``sasl.server.max.receive.size``, until the client has
authenticated; a failed authentication is answered after
``connection.failed.authentication.delay.ms`` and the connection closed.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import CloseConnection, DecodeError, EncodeError, KafkaError
from pykbroker.file_slice import FileSlice
from pykbroker.protocol.api import ApiKey, response_class
from pykbroker.protocol.framing import (
    RequestFrame,
    decode_request_body,
    encode_response,
    encode_response_chunks,
    parse_request_header,
)
from pykbroker.protocol.primitives import Records, join_records
from pykbroker.security.principal import ANONYMOUS, user
from pykbroker.server.bad_clients import BAD_CLIENTS, BadClientLog
from pykbroker.server.dispatch import DispatchTable, handler_for
from pykbroker.server.frame_reader import ConnectionClosed, FrameReader
from pykbroker.server.request_context import DeferredResponse, RequestContext
from pykbroker.server.request_memory import RequestMemoryPool
from pykbroker.server.socket_send import send_views

if TYPE_CHECKING:  # the SASL and TLS machinery is imported by secured connections only
    from pykbroker.security.authenticator import SaslSession
    from pykbroker.security.plan import BrokerSecurity, ListenerSecurity

log = logging.getLogger("pykbroker.server.connection")
request_log = logging.getLogger("pykbroker.request.logger")

_SIZE = struct.Struct(">i")
MAX_DEFERRED = 5  # produce responses waiting for their acknowledgement, per connection


class AuthenticationFailed(ConnectionClosed):
    """TLS or SASL authentication failed: the connection closes (logged at INFO, as Kafka)."""


@dataclass(frozen=True, slots=True)
class ListenerInfo:
    name: str
    security_protocol: str


@dataclass(slots=True)
class ConnectionSettings:
    max_request_bytes: int  # socket.request.max.bytes
    idle_timeout_s: float  # connections.max.idle.ms / 1000
    # queued.max.request.bytes, shared by the server's connections; None: unbounded (-1)
    memory_pool: RequestMemoryPool | None = None


# Called after each request with (context, seconds spent, response bytes or 0); metrics use it.
RequestObserver = Callable[[RequestContext, float, int], None]


def error_response(api_key: int, request: Any, code: ErrorCode, message: str | None) -> Any:
    """A response carrying ``code`` at the top level, or None when the API has no such field.

    Handlers answer partition-level errors themselves; this serves request-level failures.
    """
    resp = response_class(api_key)()
    if hasattr(resp, "error_code"):
        resp.error_code = int(code)
        if hasattr(resp, "error_message") and message is not None:
            resp.error_message = message
        return resp
    return None


class Connection:
    """Serves one accepted stream until the peer leaves, it misbehaves, or shutdown."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        conn_id: int,
        peer: str,
        listener: ListenerInfo,
        dispatch: DispatchTable,
        services: Any,
        settings: ConnectionSettings,
        observer: RequestObserver | None = None,
        security: BrokerSecurity | None = None,
        listener_security: ListenerSecurity | None = None,
        bad_clients: BadClientLog | None = None,
    ) -> None:
        self.stream = stream
        self.conn_id = conn_id
        self.peer = peer
        self.listener = listener
        self.dispatch = dispatch
        self.services = services
        self.settings = settings
        self.observer = observer
        self.security = security
        self.listener_security = listener_security
        self.bad_clients = bad_clients if bad_clients is not None else BAD_CLIENTS
        self.principal = ANONYMOUS
        self.session: SaslSession | None = None
        self.reader = FrameReader(stream)
        self.read_scope: trio.CancelScope | None = None
        self.reading = False  # waiting for (or receiving) a request
        self.busy = False
        self.draining = False  # set at shutdown: finish the request in hand, take no more
        self._nursery: trio.Nursery
        self._unsent: trio.Event | None = None  # set once the last deferred response is out
        # Deferred responses still unsent, oldest first; made by the first one (an idle
        # connection does not carry an empty deque).
        self._deferred: collections.deque[trio.Event] | None = None

    async def serve(self) -> None:
        try:
            async with trio.open_nursery() as nursery:  # holds the deferred responses
                self._nursery = nursery
                if self.listener_security is not None and not await self._secure(
                        self.listener_security):
                    return
                await self._serve_requests()
        except* AuthenticationFailed as group:
            log.info("Failed authentication with %s (%s)", self.peer, group.exceptions[0])
        except* ConnectionClosed as group:
            self.bad_clients.warn(self.peer, "closing connection from %s: %s", self.peer,
                                  group.exceptions[0])
        except* (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            log.debug("connection from %s dropped", self.peer)
        finally:
            self.reader.release()
            with trio.CancelScope(shield=True):
                await self.stream.aclose()

    async def _secure(self, security: ListenerSecurity) -> bool:
        """TLS handshake and the certificate's principal; a SASL session on SASL listeners.
        False when the connection must close."""
        if security.ssl_context is not None:
            tls = trio.SSLStream(self.stream, security.ssl_context, server_side=True)
            self.stream = tls
            self.reader = FrameReader(tls)
            with trio.move_on_after(self.settings.idle_timeout_s) as scope:
                try:
                    await tls.do_handshake()
                except trio.BrokenResourceError as exc:
                    log.info("Failed authentication with %s (SSL handshake failed: %s)",
                             self.peer, exc.__cause__ or exc)
                    return False
            if scope.cancelled_caught:
                log.info("closing %s: no TLS handshake within %.0f s", self.peer,
                         self.settings.idle_timeout_s)
                return False
            cert = tls.getpeercert()
            if cert and not security.sasl and security.principal_mapper is not None:
                from pykbroker.security.ssl_principal import NoMatchingRule, dn_from_subject

                dn = dn_from_subject(cert.get("subject", ()))
                try:
                    self.principal = user(security.principal_mapper.name(dn))
                except NoMatchingRule as exc:
                    log.info("Failed authentication with %s (%s)", self.peer, exc)
                    return False
        if security.sasl:
            from pykbroker.security.authenticator import SaslSession

            assert self.security is not None
            self.session = SaslSession(security, self.security.credentials)
        return True

    async def _serve_requests(self) -> None:
        while not self.draining:
            quotas = getattr(self.services, "client_quotas", None)
            if quotas is not None and quotas.muted:
                # KIP-219: a throttled client's channel is muted; nothing more is read from
                # it until the throttle time it was told has passed.
                await quotas.unmuted(self.conn_id)
            session = self.session
            if session is None or session.authenticated:
                limit, limit_name = self.settings.max_request_bytes, "socket.request.max.bytes"
            else:
                limit = session.listener.sasl_max_receive_size
                limit_name = "sasl.server.max.receive.size"
            reader = self.reader
            now = reader.active_at = trio.current_time()
            self.reading = True
            if reader.socket is not None:
                # No cancel scope per request (~10 us each): the listener's idle sweep,
                # shutdown and max.connections stop a waiting connection (stop_reading).
                try:
                    frame = await reader.next_frame(limit, limit_name,
                                                    self.settings.memory_pool)
                except trio.ClosedResourceError:
                    if not reader.stop:
                        raise
                finally:
                    self.reading = False
                if reader.stop:
                    log.debug("closing idle or draining connection %s", self.peer)
                    return
            else:
                idle_s = self.settings.idle_timeout_s
                with trio.CancelScope(deadline=now + idle_s if idle_s >= 0 else math.inf
                                      ) as scope:
                    self.read_scope = reader.idle_scope = scope
                    reader.idle_s = self.settings.idle_timeout_s
                    frame = await reader.next_frame(limit, limit_name,
                                                    self.settings.memory_pool)
                self.read_scope = reader.idle_scope = None
                self.reading = False
                if scope.cancelled_caught:
                    log.debug("closing idle or draining connection %s", self.peer)
                    return
            if frame is None:
                return
            if session is not None and session.expects_raw_token:
                try:
                    await self._raw_token(session, frame)
                finally:
                    self.reader.release()
                continue
            self.busy = True
            try:
                await self._handle(frame, quotas)
            except ConnectionClosed:
                await self._wait_unsent()  # still answer the requests before the bad one
                raise
            finally:
                self.busy = False
                self.reader.release()  # queued.max.request.bytes: the request is handled

    def stop_reading(self) -> None:
        """Take no more requests (shutdown, max.connections, an idle connection): one
        waiting for a request closes now, one handling a request once it is answered."""
        self.draining = True
        if self.read_scope is not None:
            self.read_scope.cancel()
        elif self.reading and not self.reader.stop:
            self.reader.stop = True
            trio.lowlevel.notify_closing(self.reader.socket)

    async def _handle(self, frame: bytearray, quotas: Any = None) -> None:
        """``quotas``: the broker's client quotas as read before this frame (None: none)."""
        started = time.perf_counter()
        try:
            req = parse_request_header(frame)
        except DecodeError as exc:
            raise ConnectionClosed(f"malformed request header: {exc}") from exc
        session = self.session
        if session is not None:
            self._check_session(session, req.api_key)
        spec = handler_for(self.dispatch, req.api_key, req.api_version)
        if spec is None:
            if req.api_key == ApiKey.API_VERSIONS:
                await self._wait_unsent()
                await self._unsupported_api_versions(req)
                return
            raise ConnectionClosed(
                f"unsupported request {ApiKey(req.api_key).name} v{req.api_version}"
            )
        try:
            body = decode_request_body(frame, req)
        except DecodeError as exc:
            raise ConnectionClosed(
                f"malformed {ApiKey(req.api_key).name} v{req.api_version} request: {exc}"
            ) from exc
        ctx = RequestContext(
            api_key=req.api_key,
            api_version=req.api_version,
            correlation_id=req.correlation_id,
            client_id=req.client_id,
            peer=self.peer,
            listener=self.listener.name,
            security_protocol=self.listener.security_protocol,
            connection_id=self.conn_id,
            services=self.services,
            principal=self.principal if session is None or session.principal is None
            else session.principal,
            session=session,
            security=self.security,
        )
        resp = await self._answer(req, body, spec.handler(ctx, body))
        if isinstance(resp, DeferredResponse):
            await self._defer(req, ctx, body, resp, started)
            return
        if quotas is not None and quotas.request.enabled and resp is not None:
            self._request_quota(quotas, req, ctx, body, resp, started)
        await self._wait_unsent()
        await self._respond(req, ctx, resp, started)
        if session is not None and session.failed:
            raise AuthenticationFailed(getattr(resp, "error_message", None)
                                       or f"{ApiKey(req.api_key).name} failed")

    def _request_quota(self, quotas: Any, req: RequestFrame, ctx: RequestContext, body: Any,
                       resp: Any, started: float) -> None:
        """KIP-124 request quotas: the handling time counts against the client's
        request_percentage; the response carries the larger throttle time (KafkaApis'
        sendResponseMaybeThrottle). Requests brokers send each other are exempt."""
        from pykbroker.quotas.manager import EXEMPT_API_KEYS

        if req.api_key in EXEMPT_API_KEYS:
            return
        if req.api_key == ApiKey.FETCH:
            state = getattr(body, "replica_state", None)
            if (state.replica_id if state is not None else body.replica_id) >= 0:
                return  # a follower's fetch
        throttle = quotas.on_request(ctx.principal, ctx.client_id, self.conn_id,
                                     time.perf_counter() - started)
        if throttle > 0 and hasattr(resp, "throttle_time_ms"):
            resp.throttle_time_ms = max(int(resp.throttle_time_ms or 0), throttle)

    @staticmethod
    def _check_session(session: SaslSession, api_key: int) -> None:
        """Before authentication only the SASL exchange; after it, nothing once the session
        expired (``connections.max.reauth.ms``) but the SaslHandshake that renews it."""
        if not session.admits(api_key):
            raise ConnectionClosed(f"Unexpected Kafka request of type {ApiKey(api_key).name} "
                                   f"during SASL {session.state.value}")
        if api_key != ApiKey.SASL_HANDSHAKE and session.expired():
            raise AuthenticationFailed("the SASL session expired without re-authentication "
                                       "(connections.max.reauth.ms)")

    async def _raw_token(self, session: SaslSession, frame: bytearray) -> None:
        """After SaslHandshake v0: a SASL token without a request header, answered the same
        way; a failure closes the connection without an answer, as Kafka does."""
        from pykbroker.security.authenticator import SaslFailed

        try:
            answer = session.authenticate(bytes(frame))
        except SaslFailed as exc:
            await trio.sleep(session.listener.failed_auth_delay_s)
            raise AuthenticationFailed(str(exc)) from None
        await self._send(_SIZE.pack(len(answer)) + answer)

    async def _answer(self, req: RequestFrame, body: Any, answer: Awaitable[Any]) -> Any:
        """The response ``answer`` produces, with Kafka errors turned into error responses."""
        try:
            return await answer
        except CloseConnection as exc:
            raise ConnectionClosed(str(exc)) from exc
        except KafkaError as exc:
            resp = error_response(req.api_key, body, exc.error_code, exc.message)
            if resp is None:
                raise ConnectionClosed(f"{ApiKey(req.api_key).name} failed: {exc}") from exc
            return resp
        except Exception as exc:
            log.exception("error handling %s v%d from %s", ApiKey(req.api_key).name,
                          req.api_version, self.peer)
            resp = error_response(req.api_key, body, ErrorCode.UNKNOWN_SERVER_ERROR, None)
            if resp is None:
                raise ConnectionClosed("unexpected error without a way to report it") from exc
            return resp

    async def _defer(self, req: RequestFrame, ctx: RequestContext, body: Any,
                     deferred: DeferredResponse, started: float) -> None:
        """Send ``deferred`` from a task once it is ready and the responses before it are out;
        return to reading at once unless MAX_DEFERRED responses are already waiting, so a client
        cannot pile up work for the broker. Kafka reads one request per connection at a time;
        an acks=all producer keeping up to 5 requests in flight (librdkafka's and Java's limit
        with idempotence) gets them acknowledged together by one replication round instead of
        one round each."""
        previous, self._unsent = self._unsent, trio.Event()
        self._nursery.start_soon(self._send_when_ready, req, ctx, body, deferred, started,
                                 previous, self._unsent)
        waiting = self._deferred
        if waiting is None:
            waiting = self._deferred = collections.deque()
        waiting.append(self._unsent)
        while waiting and waiting[0].is_set():
            waiting.popleft()
        if len(waiting) >= MAX_DEFERRED:
            await waiting[0].wait()

    async def _send_when_ready(self, req: RequestFrame, ctx: RequestContext, body: Any,
                               deferred: DeferredResponse, started: float,
                               previous: trio.Event | None, sent: trio.Event) -> None:
        try:
            resp = await self._answer(req, body, self._when_ready(deferred))
            if previous is not None:
                await previous.wait()
            await self._respond(req, ctx, resp, started)
        finally:
            sent.set()

    @staticmethod
    async def _when_ready(deferred: DeferredResponse) -> Any:
        await deferred.ready()
        return deferred.response

    async def _wait_unsent(self) -> None:
        """Responses leave in request order: wait for a deferred one still unsent."""
        if self._unsent is not None:
            await self._unsent.wait()
            self._unsent = None
            self._deferred = None

    async def _respond(self, req: RequestFrame, ctx: RequestContext, resp: Any,
                       started: float) -> None:
        sent = 0
        if resp is not None:
            try:
                chunks = encode_response_chunks(req.api_key, req.api_version,
                                                req.correlation_id, resp)
            except EncodeError:
                log.exception("cannot encode the %s response", ApiKey(req.api_key).name)
                raise ConnectionClosed("response encoding failed") from None
            await self._send_chunks(chunks)
            sent = sum(len(c) for c in chunks)
        elapsed = time.perf_counter() - started
        if request_log.isEnabledFor(logging.DEBUG):
            request_log.debug(
                "%s v%d corr=%d client=%s peer=%s %.3f ms", ApiKey(req.api_key).name,
                req.api_version, req.correlation_id, req.client_id, self.peer, elapsed * 1000)
        if self.observer is not None:
            self.observer(ctx, elapsed, sent)

    async def _unsupported_api_versions(self, req: RequestFrame) -> None:
        """KIP-511: answer with v0 so that any client can read the error and our ranges."""
        from pykbroker.handlers.api_versions import api_versions_response

        resp = api_versions_response(self.dispatch, ErrorCode.UNSUPPORTED_VERSION)
        await self._send(encode_response(req.api_key, 0, req.correlation_id, resp))

    async def _send(self, data: bytes | bytearray | memoryview) -> None:
        # Shielded: a cancelled task must never leave half a frame on the wire.
        sock = getattr(self.stream, "socket", None)
        if sock is None:  # TLS or a test stream
            with trio.CancelScope(shield=True):
                await self.stream.send_all(data)
        else:
            await send_views(sock, [memoryview(data)], shield=True)

    async def _send_chunks(self, chunks: list[Records]) -> None:
        """One frame in pieces: vectored ``writev`` for buffers, ``sendfile`` for file
        slices, no copy in Python either way. Slices are closed once sent."""
        sock = getattr(self.stream, "socket", None)
        try:
            if sock is None:  # TLS or a test stream: one buffer
                await self._send(join_records(chunks))
                return
            buffers: list[memoryview] = []
            for chunk in chunks:
                if isinstance(chunk, FileSlice):
                    break
                buffers.append(memoryview(chunk))
            else:  # buffers only: a cancel scope only if the socket buffer fills up
                await send_views(sock, buffers, shield=True)
                return
            with trio.CancelScope(shield=True):
                views: list[memoryview] = []
                for chunk in chunks:
                    if isinstance(chunk, FileSlice):
                        await send_views(sock, views)
                        views = []
                        await _sendfile_all(sock, chunk)
                    else:
                        views.append(memoryview(chunk))
                await send_views(sock, views)
        finally:
            for chunk in chunks:
                if isinstance(chunk, FileSlice):
                    chunk.close()


async def _sendfile_all(sock: Any, piece: FileSlice) -> None:
    """The slice's bytes from the page cache straight to the socket."""
    out = sock.fileno()
    offset, left = piece.position, piece.length
    while left:
        try:
            n = os.sendfile(out, piece.fd, offset, left)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)
            continue
        if n == 0:  # the file shrank under us: the frame can no longer be completed
            raise ConnectionClosed(f"segment file ended {left} bytes short of a fetch response")
        offset += n
        left -= n
