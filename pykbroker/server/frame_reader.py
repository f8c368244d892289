"""Cutting a connection's byte stream into size-prefixed frames (Kafka's wire framing), with
the size checked before any body byte is read and at most one receive buffer per thread for
idle connections."""

from __future__ import annotations

import fcntl
import os
import struct
import termios
import threading
from typing import Any

import trio

from pykbroker.server.request_memory import RequestMemoryPool

FRAME_SIZE = struct.Struct(">i")
RECEIVE_CHUNK = 64 * 1024  # the shared receive buffer; larger frames get a buffer of their own
_FRAME_START = 64 * 1024  # the largest chunk asked of a stream without a socket, at first
_WHOLE_WITHIN = 16  # a frame's buffer is allocated whole once 1/16 of the frame has arrived
_PIECE_MIN = 16 * 1024  # before that, its bytes go to pieces of at least this size


class ConnectionClosed(Exception):
    """The peer closed the connection, or it must be closed."""


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

    def __init__(self, stream: trio.abc.ReceiveStream, buffer_size: int = RECEIVE_CHUNK) -> None:
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
        buf, view = shared_receive_buffer(self._buffer_size)
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
        buf, view = shared_receive_buffer(self._buffer_size)
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
                (size,) = FRAME_SIZE.unpack_from(rest, pos)
                check_frame_size(size, max_bytes, limit)
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
                (size,) = FRAME_SIZE.unpack_from(buf, 0)
                check_frame_size(size, max_bytes, limit)
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


def check_frame_size(size: int, max_bytes: int, limit: str) -> None:
    if size < 0 or size > max_bytes:
        raise ConnectionClosed(
            f"frame of {size} bytes is larger than {limit}={max_bytes}"
            if size > 0 else f"invalid frame size {size}"
        )


_shared = threading.local()


def shared_receive_buffer(size: int) -> tuple[bytearray, memoryview]:
    """This thread's receive buffer of ``size`` bytes (one per size: tests use small ones)."""
    buffers: dict[int, tuple[bytearray, memoryview]] | None = getattr(_shared, "buffers", None)
    if buffers is None:
        buffers = _shared.buffers = {}
    found = buffers.get(size)
    if found is None:
        buf = bytearray(size)
        found = buffers[size] = (buf, memoryview(buf))
    return found
