"""One client connection: cut size-prefixed frames, dispatch each request, answer in order.

Requests on one connection are handled one at a time, as Kafka does (it mutes a channel while
a request is in flight), so responses go out in request order. One exception: a handler may
return a DeferredResponse (a produce waiting for its fsync or for its followers), and the next
request is read and served while it waits (up to MAX_DEFERRED of them). Only this module touches the socket. A malformed frame or header
closes this connection alone; handler failures become Kafka error responses.

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
import enum
import fcntl
import logging
import os
import socket
import struct
import termios
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import CloseConnection, DecodeError, EncodeError, KafkaError
from pykbroker.file_slice import FileSlice
from pykbroker.protocol._generated.api_index import APIS
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
from pykbroker.server.dispatch import DispatchTable, HandlerSpec
from pykbroker.server.request_context import DeferredResponse, RequestContext
from pykbroker.server.request_memory import RequestMemoryPool
from pykbroker.server.socket_send import send_views

if TYPE_CHECKING:  # the SASL and TLS machinery is imported by secured connections only
    from pykbroker.security.authenticator import SaslSession
    from pykbroker.security.plan import BrokerSecurity, ListenerSecurity

log = logging.getLogger("pykbroker.server.connection")
request_log = logging.getLogger("pykbroker.request.logger")

_SIZE = struct.Struct(">i")
_KEY_VERSION = struct.Struct(">hh")
_RECEIVE_CHUNK = 64 * 1024  # the shared receive buffer; larger frames get a buffer of their own
_FRAME_START = 64 * 1024  # the largest chunk asked of a stream without a socket, at first
_WHOLE_WITHIN = 16  # a frame's buffer is allocated whole once 1/16 of the frame has arrived
_PIECE_MIN = 16 * 1024  # before that, its bytes go to pieces of at least this size
MAX_DEFERRED = 5  # produce responses waiting for their acknowledgement, per connection


class ConnectionClosed(Exception):
    """The peer closed the connection, or it must be closed."""


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


class FrameReader:
    """Buffered reads of whole frames; the size is checked before any body byte is read.

    An idle connection holds no receive buffer: bytes go from the kernel into one receive
    buffer shared by every reader of the thread (``buffer_size`` bytes), read only once the
    socket is readable and cut up before anything else can run. Whole frames in it are cut
    out (one copy, as from a buffer of one's own); bytes past the frame returned are kept (a
    copy) until the next call. A frame that is not all there is received straight into a
    buffer of its own (``recv_into``), allocated whole once 1/16 of the frame has arrived (at
    once for a 1 MB Produce request, whose first 64 KiB come with its prefix), in pieces as
    bytes arrive before that (see ``_read_body``). A prefix declaring 100 MiB followed by
    nothing costs nothing, followed by 512 KiB about 512 KiB.

    With a ``RequestMemoryPool`` (``queued.max.request.bytes``) given to ``next_frame``, each
    frame's declared size is reserved from it before its body is read; while it cannot be
    granted, the reader reads nothing more. ``release`` gives the reservation back once the
    request has been handled (``next_frame`` does it too, at the latest).

    ``active_at`` is when bytes last arrived (or the owner last said so), for the idle
    timeout, which counts from the last activity as Kafka's does. ``idle_scope``, when set,
    has its deadline pushed back by ``idle_s`` when bytes arrive (at most every tenth of
    ``idle_s``). Once ``stop`` is set, a socket reader raises ``trio.ClosedResourceError``
    instead of waiting (see Connection.stop_reading).
    """

    __slots__ = ("_stream", "_sock", "_buffer_size", "_rest", "_pos", "_pool", "held",
                 "idle_scope", "idle_s", "_activity_at", "_waited", "active_at", "stop")

    def __init__(self, stream: trio.abc.ReceiveStream, buffer_size: int = _RECEIVE_CHUNK) -> None:
        self._stream = stream
        # trio's SocketStream: receive into our buffers; other streams (tests, TLS) go
        # through receive_some and one more copy.
        self._sock: Any = getattr(stream, "socket", None)
        self._buffer_size = buffer_size
        self._rest: bytearray | None = None  # bytes received past the last frame returned
        self._pos = 0  # ... are self._rest[self._pos:]
        self._pool: RequestMemoryPool | None = None
        self.held = 0  # bytes reserved from self._pool for the frame returned last
        self.idle_scope: trio.CancelScope | None = None
        self.idle_s = 0.0
        self._activity_at = float("-inf")  # when the idle deadline was last pushed back
        self._waited = False  # the last receive waited for bytes (so the task yielded)
        self.active_at = float("-inf")
        self.stop = False

    @property
    def socket(self) -> Any:
        """The trio socket read from, None for a stream without one (TLS, tests)."""
        return self._sock

    def _check_stop(self) -> None:
        if self.stop:
            raise trio.ClosedResourceError("the connection stops reading")

    @property
    def buffered(self) -> int:
        """Bytes this reader holds received past the frames it returned."""
        return 0 if self._rest is None else len(self._rest) - self._pos

    def release(self) -> None:
        """Give back the memory reserved for the frame returned last."""
        if self.held and self._pool is not None:
            self._pool.release(self.held)
        self.held = 0

    def _activity(self) -> None:
        """Bytes arrived: push the idle deadline back, at most once per tenth of the idle
        time (and per second): setting a cancel scope's deadline re-registers it with trio,
        and a 1 MB request arrives in a dozen or more receives."""
        now = self.active_at = trio.current_time()
        scope = self.idle_scope
        if scope is not None:
            if now - self._activity_at >= min(1.0, self.idle_s / 10):
                self._activity_at = now
                scope.deadline = now + self.idle_s

    def _reserve(self, size: int) -> bool:
        """Reserve ``size`` bytes without waiting; False when it must wait."""
        pool = self._pool
        if pool is None:
            return True
        n = pool.try_acquire(size)
        if n < 0:
            return False
        self.held = n
        return True

    def _read_shared(self, keep: bytes) -> tuple[bytearray, int] | None:
        """``keep`` then what the socket has, in the shared receive buffer, and how many bytes
        in it are valid (``len(keep)`` at end of stream), or None when the socket has nothing
        yet. Not a coroutine: an idle connection waits in ``next_frame`` alone, and the buffer
        stays valid only until the caller's next ``await``."""
        buf, view = _shared_buffer(self._buffer_size)
        k = len(keep)
        fd = self._sock.fileno()
        if fd < 0:
            raise trio.ClosedResourceError("the socket was closed")
        try:
            n = os.readv(fd, (view[k:],))
        except BlockingIOError:
            return None
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        if k:
            buf[:k] = keep
        if n:
            self._activity()
        return buf, k + n

    async def _receive_shared(self, keep: bytes) -> tuple[bytearray, int]:
        """The same from a stream without a socket (TLS, tests), through ``receive_some``."""
        buf, view = _shared_buffer(self._buffer_size)
        k = len(keep)
        chunk = await self._stream.receive_some(len(buf) - k)
        n = len(chunk)
        view[k : k + n] = chunk
        if k:
            buf[:k] = keep
        if n:
            self._activity()
        return buf, k + n

    async def _recv_into(self, view: memoryview) -> int:
        if self._sock is not None:
            self._check_stop()
            try:
                n = int(await self._sock.recv_into(view))
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc
        else:
            chunk = await self._stream.receive_some(len(view))
            n = len(chunk)
            view[:n] = chunk
        if n:
            self._activity()
        return n

    async def next_frame(self, max_bytes: int, limit: str = "socket.request.max.bytes",
                         pool: RequestMemoryPool | None = None) -> bytearray | None:
        """The next frame without its size prefix, or None at a clean end of stream;
        ``limit`` names the setting ``max_bytes`` comes from, for the error; ``pool`` is the
        memory the frame is reserved from (``queued.max.request.bytes``), if any."""
        self.release()
        self._pool = pool
        while True:
            rest, pos = self._rest, self._pos
            have = 0 if rest is None else len(rest) - pos
            if rest is not None and have >= 4:  # bytes kept from the last receive
                (size,) = _SIZE.unpack_from(rest, pos)
                _check_size(size, max_bytes, limit)
                if have - 4 >= size and self._reserve(size):
                    pos += 4
                    self._pos = pos + size
                    if self._pos == len(rest):
                        self._rest, self._pos = None, 0
                    return rest[pos : pos + size]
                break
            keep = b"" if rest is None else bytes(rest[pos:])
            if self._sock is not None:
                # The one checkpoint trio's recv_into makes, so that a client whose requests
                # are always there cannot keep the others waiting; not when the last receive
                # waited for its bytes (the task yielded then), as it does for a client that
                # waits for each answer: a scheduler pass costs ~14 us.
                if not self._waited:
                    await trio.lowlevel.checkpoint()
                self._waited = False
                while (got := self._read_shared(keep)) is None:
                    self._check_stop()
                    await trio.lowlevel.wait_readable(self._sock)
                    self._waited = True
                buf, end = got
            else:
                buf, end = await self._receive_shared(keep)
            # Nothing may await until buf's bytes are cut out or copied: it is shared.
            if end == len(keep):
                if keep:
                    raise ConnectionClosed(
                        f"connection closed inside a size prefix ({len(keep)} bytes)")
                return None
            if end >= 4:
                (size,) = _SIZE.unpack_from(buf, 0)
                _check_size(size, max_bytes, limit)
                if self._reserve(size):
                    if end - 4 >= size:
                        self._rest = buf[4 + size : end] if end > 4 + size else None
                        self._pos = 0
                        return buf[4 : 4 + size]
                    self._rest, self._pos = None, 0
                    return await self._read_body(size, buf[4:end])
            self._rest, self._pos = buf[:end], 0
        if pool is not None:
            self.held = await pool.acquire(size)
        pos = self._pos + 4
        if len(rest) - pos >= size:  # all there: it waited for memory
            self._pos = pos + size
            if self._pos == len(rest):
                self._rest, self._pos = None, 0
            return rest[pos : pos + size]
        self._rest, self._pos = None, 0
        return await self._read_body(size, rest[pos:])

    async def _read_body(self, size: int, first: bytearray) -> bytearray:
        """A frame of ``size`` bytes that starts with ``first``, the rest received straight
        into buffers of its own (never past its end, so nothing is left over).

        The frame's buffer is allocated whole once 1/16 of the frame has arrived (here or in
        the kernel's receive queue): at once for a 1 MB Produce request and the 64 KiB that
        came with its prefix. Before that its bytes are received in pieces, each allocated
        once bytes are there and as large as those the kernel holds (16 KiB at least), copied
        into the whole buffer when it comes. So a frame holds at most 16 times what arrived,
        and a prefix declaring 100 MiB followed by 512 KiB costs about 512 KiB (growing one
        buffer instead would also leave each outgrown buffer in the allocator's heap)."""
        have = len(first)
        pieces: list[bytes | bytearray] = [first] if have else []
        while _WHOLE_WITHIN * have < size:
            if self._sock is None:  # a stream without a socket hands over its own chunks
                chunk = await self._stream.receive_some(min(size - have, max(_FRAME_START,
                                                                             have)))
                if not chunk:
                    raise ConnectionClosed(f"connection closed inside a frame of {size} bytes")
                self._activity()
                pieces.append(chunk)
                have += len(chunk)
                continue
            self._check_stop()
            await trio.lowlevel.wait_readable(self._sock)
            queued = _queued_bytes(self._sock, _FRAME_START)
            if _WHOLE_WITHIN * (have + queued) >= size:
                break
            piece = bytearray(min(size - have, max(_PIECE_MIN, queued)))
            pieces.append(piece)
            await self._fill(piece, 0, len(piece), size)
            have += len(piece)
        frame = bytearray(size)
        pos = 0
        for received in pieces:
            frame[pos : pos + len(received)] = received
            pos += len(received)
        del pieces
        await self._fill(frame, have, size, size)
        return frame

    async def _fill(self, buf: bytearray, have: int, end: int, frame_size: int) -> None:
        """Receive into ``buf[have:end]`` until it is full."""
        while have < end:
            part = memoryview(buf)[have:end]
            try:
                n = await self._recv_into(part)
            finally:
                part.release()
            if not n:
                raise ConnectionClosed(
                    f"connection closed inside a frame of {frame_size} bytes")
            have += n


def _queued_bytes(sock: Any, default: int) -> int:
    """Bytes the kernel has received for ``sock`` and not handed over yet (FIONREAD), or
    ``default`` where that cannot be asked."""
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except (OSError, ValueError):
        return default
    return int(_NATIVE_INT.unpack(raw)[0])


_NATIVE_INT = struct.Struct("i")


def _check_size(size: int, max_bytes: int, limit: str) -> None:
    if size < 0 or size > max_bytes:
        raise ConnectionClosed(
            f"frame of {size} bytes is larger than {limit}={max_bytes}"
            if size > 0 else f"invalid frame size {size}"
        )


def _served(dispatch: DispatchTable, api_key: int, version: int) -> HandlerSpec | None:
    """The handler of ``api_key`` when this broker serves it at ``version``."""
    spec = dispatch.get(api_key)
    if spec is None or not spec.min_version <= version <= spec.max_version:
        return None
    return spec


class Unseen(enum.Enum):
    """``first_frame_refusal``'s answer when nothing has been received yet."""

    UNSEEN = "nothing received yet"


def first_frame_refusal(sock: socket.socket, max_bytes: int, limit: str,
                        dispatch: DispatchTable) -> str | Unseen | None:
    """Why a just-accepted connection would be closed on its first frame, judged from the
    frame's first 8 bytes when they are already there (peeked, not read); None: the
    connection is served as usual from its first byte; ``Unseen.UNSEEN``: nothing yet. The
    same rules as a connection applies (a size prefix over ``limit``, an unknown API key, a
    version not served other than ApiVersions'), applied before anything is made for the
    connection, so a flood of bad frames costs the broker an accept, a peek and a close per
    frame."""
    try:
        head = sock.recv(8, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return Unseen.UNSEEN
    except OSError:  # already reset: the connection finds out
        return None
    if len(head) < 4:
        return None
    (size,) = _SIZE.unpack_from(head)
    try:
        _check_size(size, max_bytes, limit)
    except ConnectionClosed as exc:
        return str(exc)
    if len(head) < 8 or size < 4:
        return None
    api_key, version = _KEY_VERSION.unpack_from(head, 4)
    if api_key == ApiKey.API_VERSIONS:
        return None  # answered even at an unknown version (KIP-511)
    if api_key not in APIS:
        return f"malformed request header: unknown API key {api_key}"
    if _served(dispatch, api_key, version) is None:
        return f"unsupported request {ApiKey(api_key).name} v{version}"
    return None


def discard_received(sock: socket.socket) -> None:
    """Read and drop what ``sock`` has received (up to the shared buffer's size), so that
    closing it ends the connection with a FIN, as after a frame read whole, not a reset."""
    buf, _ = _shared_buffer(_RECEIVE_CHUNK)
    try:
        sock.recv_into(buf, 0, socket.MSG_DONTWAIT)
    except OSError:
        pass


_shared = threading.local()


def _shared_buffer(size: int) -> tuple[bytearray, memoryview]:
    """This thread's receive buffer of ``size`` bytes (one per size: tests use small ones)."""
    buffers: dict[int, tuple[bytearray, memoryview]] | None = getattr(_shared, "buffers", None)
    if buffers is None:
        buffers = _shared.buffers = {}
    found = buffers.get(size)
    if found is None:
        buf = bytearray(size)
        found = buffers[size] = (buf, memoryview(buf))
    return found


class BadClientLog:
    """WARN lines about misbehaving clients, at most one per client address (host) per
    ``interval_s``: the events in between are logged at DEBUG only and counted, and the next
    WARN line for that address says how many were suppressed. A flood of bad frames from one
    host costs a line per interval, not one per connection."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0, *,
                 clock: Callable[[], float] = time.monotonic,
                 max_addresses: int = 10_000, level: int = logging.WARNING) -> None:
        """``level``: the level of the lines that are not suppressed (WARN by default; INFO
        for refusals Kafka logs at INFO, such as a connection over max.connections.per.ip)."""
        self.logger = logger
        self.level = level
        self.interval_s = interval_s
        self.clock = clock
        self.max_addresses = max_addresses
        self._seen: dict[str, list[float]] = {}  # host -> [time of its last WARN, suppressed]

    def warn(self, peer: str, msg: str, *args: object) -> bool:
        """Log ``msg % args`` at WARN unless ``peer``'s host had a WARN line less than
        ``interval_s`` ago; True when it was logged at WARN."""
        host = _host_of(peer)
        now = self.clock()
        entry = self._seen.get(host)
        if entry is not None and now - entry[0] < self.interval_s:
            entry[1] += 1
            self.logger.debug(msg, *args)
            return False
        suppressed = int(entry[1]) if entry is not None else 0
        if entry is None and len(self._seen) >= self.max_addresses:
            self._forget(now)
        self._seen[host] = [now, 0]
        if suppressed:
            self.logger.log(self.level,
                            msg + " (%d more from %s in the last %.0f s not logged)",
                            *args, suppressed, host, now - entry[0] if entry else 0.0)
        else:
            self.logger.log(self.level, msg, *args)
        return True

    def _forget(self, now: float) -> None:
        """Drop the addresses quiet for an interval (all of them if none is), with one line
        for the events of theirs never reported."""
        stale = [h for h, (t, _) in self._seen.items() if now - t >= self.interval_s]
        dropped = stale or list(self._seen)
        lost = sum(int(self._seen.pop(h)[1]) for h in dropped)
        if lost:
            self.logger.log(self.level, "%d more events from %d client addresses not logged",
                            lost, len(dropped))


def _host_of(peer: str) -> str:
    host, sep, port = peer.rpartition(":")
    return host if sep and port.isdigit() else peer


BAD_CLIENTS = BadClientLog(log)  # for connections made without a server's own


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
                with trio.CancelScope(deadline=now + self.settings.idle_timeout_s) as scope:
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
        spec = _served(self.dispatch, req.api_key, req.api_version)
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
