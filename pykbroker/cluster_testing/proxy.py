"""A fault proxy for one network link: a thread-based TCP forwarder on loopback.

Each :class:`FaultLink` listens on an ephemeral ``127.0.0.1`` port and forwards every
accepted connection to one upstream address. Its rules apply at once to existing and new
connections:

* **blackhole** (a real network partition): nothing is forwarded in either direction, not
  even a close; new connections are accepted but nothing flows; no RST, so peers time out as
  on a real network. Data sent meanwhile waits in the proxy and flows once healed, as TCP
  would deliver it after the partition (unless a peer gave up and closed first).
* **delay**: every chunk travelling upstream (requests) is forwarded that much later; chunks
  keep their order and the link keeps its throughput.
* **drop**: each forwarded chunk (either direction) resets its connection with the given
  probability.

A link built with ``faults`` (a :class:`pykbroker.cluster_testing.faults.Faults`) is frame-aware, for the
client link in front of a broker: it counts requests per API key, delays (``add_latency``),
swallows with a connection close (``drop_next``) or answers with an error (``fail_next``)
the matching requests. Fake answers keep the connection's response order: they are queued
behind the responses of requests sent before them.
"""

from __future__ import annotations

import contextlib
import queue
import random
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pykbroker.cluster_testing.faults import Faults

__all__ = ["FaultLink"]

_I32 = struct.Struct(">i")
_HEADER = struct.Struct(">hhi")  # api_key, api_version, correlation_id
_CHUNK = 65536
_MAX_FRAME = 512 * 1024 * 1024


@dataclass
class _Pending:
    """A forwarded request whose response is expected; fakes go out right after it."""

    api_key: int
    api_version: int
    rewrite_error: int | None = None  # answer with the real response, every partition failing
    after: list[bytes] = field(default_factory=list)


class _Frames:
    """Splits a byte stream into size-prefixed Kafka frames."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        frames = []
        while len(self.buf) >= 4:
            (size,) = _I32.unpack_from(self.buf, 0)
            if size < 0 or size > _MAX_FRAME:
                raise ConnectionError(f"bad frame size {size}")
            if len(self.buf) < 4 + size:
                break
            frames.append(bytes(self.buf[:4 + size]))
            del self.buf[:4 + size]
        return frames


def _reset(sock: socket.socket | None) -> None:
    """Close with an RST (linger 0), waking any thread blocked on the socket first."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class _Pipe:
    """One proxied connection: a reader and a writer thread per direction."""

    def __init__(self, link: FaultLink, client: socket.socket) -> None:
        self.link = link
        self.client = client
        self.upstream: socket.socket | None = None
        self.closed = threading.Event()
        self.lock = threading.Lock()
        self.pending: deque[_Pending] = deque()
        self.to_upstream: queue.Queue[tuple[float, bytes | None]] = queue.Queue()
        self.to_client: queue.Queue[tuple[float, bytes | None]] = queue.Queue()
        self._half_closed = 0

    def run(self) -> None:
        link = self.link
        if not link.wait_passable(self.closed):
            self.close()
            return
        try:
            self.upstream = socket.create_connection(link.upstream, timeout=10)
            self.upstream.settimeout(None)
        except OSError:
            self.close()
            return
        for target in (self._read_client, self._read_upstream):
            threading.Thread(target=target, daemon=True, name=f"{link.name}-read").start()
        threading.Thread(target=self._write, args=(self.to_upstream, self.upstream),
                         daemon=True, name=f"{link.name}-write").start()
        threading.Thread(target=self._write, args=(self.to_client, self.client),
                         daemon=True, name=f"{link.name}-write").start()

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        _reset(self.client)
        _reset(self.upstream)
        self.to_upstream.put((0.0, None))
        self.to_client.put((0.0, None))
        self.link.forget(self)

    def _write(self, q: queue.Queue[tuple[float, bytes | None]], dst: socket.socket) -> None:
        try:
            while not self.closed.is_set():
                due, data = q.get()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if not self.link.wait_passable(self.closed):
                    return
                if data is None:  # the other side closed: pass the close on
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    with self.lock:
                        self._half_closed += 1
                        both = self._half_closed == 2
                    if both:
                        self.close()
                    return
                dst.sendall(data)
        except OSError:
            self.close()

    def _recv(self, src: socket.socket) -> bytes:
        data = src.recv(_CHUNK)
        if data and self.link.roll_drop():
            raise ConnectionResetError("fault proxy: dropped")
        return data

    def _read_client(self) -> None:
        faults = self.link.faults
        frames = _Frames() if faults is not None else None
        try:
            while not self.closed.is_set():
                data = self._recv(self.client)
                delay = self.link.delay_s
                if not data:
                    self.to_upstream.put((time.monotonic() + delay, None))
                    return
                if frames is None:
                    self.to_upstream.put((time.monotonic() + delay, data))
                    continue
                for frame in frames.feed(data):
                    if not self._request(frame, delay):
                        self.close()
                        return
        except (OSError, ConnectionError):
            self.close()

    def _request(self, frame: bytes, delay: float) -> bool:
        """Apply the per-API faults to one request frame; False closes the connection."""
        assert self.link.faults is not None
        if len(frame) < 4 + _HEADER.size:
            return False
        api_key, api_version, correlation_id = _HEADER.unpack_from(frame, 4)
        latency, drop, error = self.link.faults._take(api_key)
        if drop:
            return False
        due = time.monotonic() + delay + latency
        expects_answer = True
        request = None
        if api_key == 0 or error is not None:  # Produce with acks=0 has no response
            from pykbroker.protocol.framing import decode_request_body, parse_request_header

            view = memoryview(frame)[4:]
            request = decode_request_body(view, parse_request_header(view))
            expects_answer = api_key != 0 or request.acks != 0
        if error is not None:
            from pykbroker.cluster_testing.faults import failed_response

            fake = failed_response(api_key, request, error)
            if fake is None and api_key in (1, 2, 3):  # Fetch, ListOffsets, Metadata
                with self.lock:
                    self.pending.append(_Pending(api_key, api_version, rewrite_error=error))
                self.to_upstream.put((due, frame))
                return True
            if fake is None:
                return False
            from pykbroker.protocol.framing import encode_response

            answer = bytes(encode_response(api_key, api_version, correlation_id, fake))
            if not expects_answer:
                return True
            with self.lock:
                if self.pending:
                    self.pending[-1].after.append(answer)
                else:
                    self.to_client.put((due, answer))
            return True
        if expects_answer:
            with self.lock:
                self.pending.append(_Pending(api_key, api_version))
        self.to_upstream.put((due, frame))
        return True

    def _read_upstream(self) -> None:
        assert self.upstream is not None
        frames = _Frames() if self.link.faults is not None else None
        try:
            while not self.closed.is_set():
                data = self._recv(self.upstream)
                if not data:
                    self.to_client.put((0.0, None))
                    return
                if frames is None:
                    self.to_client.put((0.0, data))
                    continue
                for frame in frames.feed(data):
                    with self.lock:
                        entry = self.pending.popleft() if self.pending else None
                        if entry is not None and entry.rewrite_error is not None:
                            frame = _rewrite(frame, entry)
                        self.to_client.put((0.0, frame))
                        for fake in entry.after if entry is not None else ():
                            self.to_client.put((0.0, fake))
        except (OSError, ConnectionError):
            self.close()


def _rewrite(frame: bytes, entry: _Pending) -> bytes:
    """The broker's real response with ``entry.rewrite_error`` on every topic/partition."""
    from pykbroker.cluster_testing.faults import fail_partitions
    from pykbroker.protocol.framing import decode_response, encode_response

    assert entry.rewrite_error is not None
    corr, resp = decode_response(memoryview(frame)[4:], entry.api_key, entry.api_version)
    fail_partitions(entry.api_key, resp, entry.rewrite_error)
    return bytes(encode_response(entry.api_key, entry.api_version, corr, resp))


class FaultLink:
    """A proxy on ``127.0.0.1:<port>`` forwarding to ``upstream``; start with :meth:`start`."""

    def __init__(self, name: str, upstream: tuple[str, int], *, faults: Faults | None = None,
                 seed: int | None = None) -> None:
        self.name = name
        self.upstream = upstream
        self.faults = faults
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._cond = threading.Condition()
        self._blackholed = False
        self._stopped = False
        self.delay_s = 0.0
        self.drop_fraction = 0.0
        self.drops = 0  # connections reset by the drop rule
        self._random = random.Random(seed)
        self._pipes: set[_Pipe] = set()
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FaultLink:
        self._thread = threading.Thread(target=self._accept, daemon=True,
                                        name=f"{self.name}-accept")
        self._thread.start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._cond:
                if self._stopped:
                    _reset(client)
                    return
                pipe = _Pipe(self, client)
                self._pipes.add(pipe)
            threading.Thread(target=pipe.run, daemon=True, name=f"{self.name}-pipe").start()

    def forget(self, pipe: _Pipe) -> None:
        with self._cond:
            self._pipes.discard(pipe)

    # -- rules ---------------------------------------------------------------------------

    @property
    def blackholed(self) -> bool:
        return self._blackholed

    def blackhole(self, on: bool = True) -> None:
        with self._cond:
            self._blackholed = on
            self._cond.notify_all()

    def set_delay(self, seconds: float) -> None:
        self.delay_s = max(0.0, seconds)

    def set_drop(self, fraction: float) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"drop fraction {fraction} not in [0, 1]")
        self.drop_fraction = fraction

    def heal(self) -> None:
        """Back to a plain forwarder (per-API faults are reset separately)."""
        self.delay_s = 0.0
        self.drop_fraction = 0.0
        self.blackhole(False)

    def roll_drop(self) -> bool:
        fraction = self.drop_fraction
        if fraction > 0.0 and self._random.random() < fraction:
            self.drops += 1
            return True
        return False

    def wait_passable(self, closed: threading.Event) -> bool:
        """Block while blackholed; False when the connection or the link closed meanwhile."""
        with self._cond:
            while self._blackholed and not self._stopped and not closed.is_set():
                self._cond.wait(0.2)
            return not self._stopped and not closed.is_set()

    def reset_connections(self) -> None:
        """Reset every current connection (new ones are accepted as usual)."""
        with self._cond:
            pipes = list(self._pipes)
        for pipe in pipes:
            pipe.close()

    def connection_count(self) -> int:
        with self._cond:
            return len(self._pipes)

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        with contextlib.suppress(OSError):
            self.listener.close()
        self.reset_connections()
        if self._thread is not None:
            self._thread.join(2.0)

    def __repr__(self) -> str:
        return (f"FaultLink({self.name} :{self.port} -> {self.upstream[0]}:{self.upstream[1]}"
                f"{' blackholed' if self._blackholed else ''})")
