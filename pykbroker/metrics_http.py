"""A tiny HTTP/1.1 server on trio streams, enough for Prometheus scrapes and health probes.

One request per connection (``Connection: close``): read the head (bounded in size and
time), call the route, write the answer. Request bodies are never read: every route is GET.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from http import HTTPStatus

import trio

log = logging.getLogger("pykbroker.metrics.http")

MAX_HEAD_BYTES = 16 * 1024
READ_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 30.0

# (method, path without query, lower-cased headers) -> (status, content type, body)
Route = Callable[[str, str, dict[str, str]], tuple[int, str, bytes]]


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]] | None:
    """(method, path, headers) of a request head, or None when it is malformed."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        return None
    if not version.startswith("HTTP/1."):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            return None
        headers[name.strip().lower()] = value.strip()
    return method, target.split("?", 1)[0], headers


def render(status: int, content_type: str, body: bytes, *, head_only: bool = False) -> bytes:
    reason = HTTPStatus(status).phrase
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("latin-1") + (b"" if head_only else body)


async def _read_head(stream: trio.abc.ReceiveStream) -> bytes | None:
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD_BYTES:
            return None
        chunk = await stream.receive_some(4096)
        if not chunk:
            return None
        buf += chunk
    return bytes(buf[: buf.index(b"\r\n\r\n")])


async def handle_connection(route: Route, stream: trio.abc.Stream) -> None:
    answer: bytes | None = None
    async with stream:
        try:
            with trio.move_on_after(READ_TIMEOUT_S):
                head = await _read_head(stream)
                if head is None:
                    return
                parsed = parse_head(head)
                if parsed is None:
                    answer = render(400, "text/plain; charset=utf-8", b"bad request\n")
                else:
                    method, path, headers = parsed
                    try:
                        status, content_type, body = route(method, path, headers)
                    except Exception:
                        log.exception("metrics endpoint failed on %s %s", method, path)
                        status, content_type, body = (
                            500, "text/plain; charset=utf-8", b"internal error\n")
                    answer = render(status, content_type, body, head_only=method == "HEAD")
            if answer is None:
                return
            with trio.move_on_after(WRITE_TIMEOUT_S):
                await stream.send_all(answer)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            pass


async def serve_http(host: str, port: int, route: Route, *,
                     task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Listen on ``host:port`` (``""`` = every interface, port 0 = a free one) until
    cancelled; reports the bound port."""
    listeners = await trio.open_tcp_listeners(port, host=host or None)
    bound = int(listeners[0].socket.getsockname()[1])
    log.info("metrics endpoint listening on %s:%d (/metrics, /healthz, /readyz)",
             host or "*", bound)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, partial(handle_connection, route), listeners)
        task_status.started(bound)
