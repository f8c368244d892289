"""A just-accepted connection's first frame judged before anything is made for it, so that a
flood of bad frames costs the broker an accept, a peek and a close per frame."""

from __future__ import annotations

import enum
import socket
import struct

from pykbroker.protocol._generated.api_index import APIS
from pykbroker.protocol.api import ApiKey
from pykbroker.server.dispatch import DispatchTable, handler_for
from pykbroker.server.frame_reader import (
    FRAME_SIZE,
    RECEIVE_CHUNK,
    ConnectionClosed,
    check_frame_size,
    shared_receive_buffer,
)

_KEY_VERSION = struct.Struct(">hh")


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
    (size,) = FRAME_SIZE.unpack_from(head)
    try:
        check_frame_size(size, max_bytes, limit)
    except ConnectionClosed as exc:
        return str(exc)
    if len(head) < 8 or size < 4:
        return None
    api_key, version = _KEY_VERSION.unpack_from(head, 4)
    if api_key == ApiKey.API_VERSIONS:
        return None  # answered even at an unknown version (KIP-511)
    if api_key not in APIS:
        return f"malformed request header: unknown API key {api_key}"
    if handler_for(dispatch, api_key, version) is None:
        return f"unsupported request {ApiKey(api_key).name} v{version}"
    return None


def discard_received(sock: socket.socket) -> None:
    """Read and drop what ``sock`` has received (up to the shared buffer's size), so that
    closing it ends the connection with a FIN, as after a frame read whole, not a reset."""
    buf, _ = shared_receive_buffer(RECEIVE_CHUNK)
    try:
        sock.recv_into(buf, 0, socket.MSG_DONTWAIT)
    except OSError:
        pass
