"""Memory for requests being received: ``queued.max.request.bytes`` and the malloc trim.

Kafka (KIP-72) bounds the bytes held by requests that have been read, or are being read, and
are not yet handled: with ``queued.max.request.bytes`` > 0 its SocketServer allocates each
request's buffer from a memory pool of that size and stops reading from a connection (mutes
it) while the pool cannot grant the buffer; the memory returns to the pool once the request
has been handled. -1 (the default) leaves it unbounded.

``RequestMemoryPool`` is that pool for one event loop. A connection reserves a frame's
declared size once it knows it (before receiving the body), so a request admitted to the pool
can always be received to its end: reservations never deadlock. Unlike Kafka's non-strict
pool, it never grants past its capacity: a frame larger than the whole pool (possible only
with settings Kafka's validation refuses) waits until the pool is entirely free and takes all
of it. Waiters are served in arrival order, so a large request is not starved by small ones.

``trim_freed_memory`` hands freed heap memory back to the kernel (glibc ``malloc_trim``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections import deque
from collections.abc import Callable

import trio


class RequestMemoryPool:
    """A byte budget shared by every connection of a server."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"a request memory pool needs a positive capacity, not {capacity}")
        self.capacity = capacity
        self.available = capacity
        self._waiters: deque[tuple[int, trio.Event]] = deque()

    @property
    def waiting(self) -> int:
        """How many connections wait for memory (and read nothing meanwhile)."""
        return len(self._waiters)

    def try_acquire(self, size: int) -> int:
        """The bytes reserved for a frame of ``size`` bytes, or -1 when it must wait."""
        n = min(size, self.capacity)
        if self._waiters or n > self.available:
            return -1
        self.available -= n
        return n

    async def acquire(self, size: int) -> int:
        """Reserve memory for a frame of ``size`` bytes, waiting (behind earlier waiters) until
        the pool can grant it; the bytes reserved, to be given back with ``release``."""
        n = self.try_acquire(size)
        if n >= 0:
            await trio.lowlevel.checkpoint()
            return n
        n = min(size, self.capacity)
        entry = (n, trio.Event())
        self._waiters.append(entry)
        try:
            await entry[1].wait()
        except BaseException:
            if entry[1].is_set():  # granted just as it was cancelled
                self.release(n)
            else:
                self._waiters.remove(entry)
                self._grant()
            raise
        return n

    def release(self, n: int) -> None:
        if n <= 0:
            return
        self.available += n
        assert self.available <= self.capacity, "released more request memory than reserved"
        self._grant()

    def _grant(self) -> None:
        while self._waiters and self._waiters[0][0] <= self.available:
            n, event = self._waiters.popleft()
            self.available -= n
            event.set()


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc only (musl has no malloc_trim)
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def trim_freed_memory() -> bool:
    """Return the heap's free memory to the kernel (glibc's ``malloc_trim(0)``); False where
    there is no such call. CPython frees large buffers and empty arenas to malloc, but glibc
    keeps freed heap pages mapped (and counted in RSS) until asked."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
