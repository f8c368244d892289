"""Writing to a connected TCP socket from trio without a scheduler pass per write.

trio's ``send_all`` and ``sendmsg`` pass twice through the scheduler at every call, even when
the kernel takes all the bytes at once, as it nearly always does for a response or an
inter-broker request. At thousands of small frames a second (followers' fetches, acks=all
produces and their answers, each one a round trip per message at ``linger.ms=0``) those
passes delayed every answer behind whatever else was runnable. Here the bytes go out with
one ``writev(2)``; the task waits (and yields) only while the socket buffer is full.
"""

from __future__ import annotations

import os
from typing import Any

import trio

IOV_MAX = 512  # buffers per writev call (Linux's UIO_MAXIOV is 1024)


async def send_views(sock: Any, views: list[memoryview], *, shield: bool = False) -> None:
    """Write every byte of ``views`` (consumed in place) to ``sock``, a trio socket.

    ``shield``: waits for room in the socket buffer cannot be cancelled, so a frame is never
    left half-written (a cancel scope costs ~15 us, so it is entered only to wait). A failed
    write raises ``trio.BrokenResourceError`` as trio's own sends do (Python ignores SIGPIPE,
    so a closed peer is EPIPE here, not a signal)."""
    fd = sock.fileno()
    while views:
        if not len(views[0]):  # (writev of empty buffers alone returns 0: it would spin)
            views.pop(0)
            continue
        try:
            sent = os.writev(fd, views[:IOV_MAX])
        except BlockingIOError:
            if shield:
                with trio.CancelScope(shield=True):
                    await trio.lowlevel.wait_writable(sock)
            else:
                await trio.lowlevel.wait_writable(sock)
            continue
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        while sent and views:
            if sent >= len(views[0]):
                sent -= len(views.pop(0))
            else:
                views[0] = views[0][sent:]
                sent = 0
