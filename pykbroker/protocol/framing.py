"""Kafka frames without I/O: size prefix, request header and body, response header and body.

A frame is ``int32 size`` followed by ``size`` bytes. The network layer cuts frames with
``frame_size`` and hands whole frames here; everything malformed raises ``DecodeError``.
"""

from __future__ import annotations

import struct
from typing import Any

from pykbroker.errors import DecodeError
from pykbroker.protocol._generated.api_index import APIS
from pykbroker.protocol._generated.request_header import RequestHeader
from pykbroker.protocol._generated.response_header import ResponseHeader
from pykbroker.protocol.api import Message, request_class, response_class
from pykbroker.protocol.headers import request_header_version, response_header_version
from pykbroker.protocol.primitives import ChunkedOut, FileSlice, Records

_I16I16 = struct.Struct(">hh")
_I32 = struct.Struct(">i")


def frame_size(prefix: bytes | bytearray | memoryview) -> int:
    """The size announced by a 4-byte frame prefix; negative sizes are malformed."""
    (size,) = _I32.unpack_from(prefix, 0)
    if size < 0:
        raise DecodeError(f"negative frame size {size}")
    return int(size)


class RequestFrame:
    """A request's header, and where its body starts inside the frame."""

    __slots__ = ("header", "header_version", "body_offset")

    def __init__(self, header: RequestHeader, header_version: int, body_offset: int) -> None:
        self.header = header
        self.header_version = header_version
        self.body_offset = body_offset

    @property
    def api_key(self) -> int:
        return self.header.request_api_key

    @property
    def api_version(self) -> int:
        return self.header.request_api_version

    @property
    def correlation_id(self) -> int:
        return self.header.correlation_id

    @property
    def client_id(self) -> str | None:
        return self.header.client_id


def parse_request_header(frame: bytes | bytearray | memoryview) -> RequestFrame:
    """Decode the header of a request frame (without its size prefix).

    An API key we have no schema for is malformed input (Kafka closes such connections);
    a version outside the schema's range still parses, so that ApiVersions can answer
    UNSUPPORTED_VERSION (KIP-511).
    """
    view = frame if type(frame) is memoryview else memoryview(frame)
    if len(view) < 4:
        raise DecodeError(f"request frame of {len(view)} bytes is shorter than a header")
    api_key, api_version = _I16I16.unpack_from(view, 0)
    if api_key not in APIS:
        raise DecodeError(f"unknown API key {api_key}")
    if api_version < 0:
        raise DecodeError(f"negative API version {api_version}")
    hv = request_header_version(api_key, api_version)
    header, pos = RequestHeader.decode(view, 0, hv)
    return RequestFrame(header, hv, pos)


def decode_request_body(frame: bytes | bytearray | memoryview, req: RequestFrame) -> Any:
    """The request object. Bytes after the body are ignored, as Kafka ignores them: some
    clients send them (librdkafka's Metadata request for all topics, librdkafka#5049)."""
    view = frame if type(frame) is memoryview else memoryview(frame)
    body, _ = request_class(req.api_key).decode(view, req.body_offset, req.api_version)
    return body


def encode_request(
    api_key: int, api_version: int, correlation_id: int, client_id: str | None, body: Message
) -> bytes:
    """A size-prefixed request frame (used by tests, tools and the replica fetcher)."""
    out = bytearray(4)
    hv = request_header_version(api_key, api_version)
    RequestHeader(api_key, api_version, correlation_id, client_id).encode(out, hv)
    body.encode(out, api_version)
    _I32.pack_into(out, 0, len(out) - 4)
    return bytes(out)


def encode_response(
    api_key: int, api_version: int, correlation_id: int, body: Message
) -> bytearray:
    """A size-prefixed response frame; the header version follows the request's API version."""
    out = bytearray(4)
    ResponseHeader(correlation_id).encode(out, response_header_version(api_key, api_version))
    body.encode(out, api_version)
    _I32.pack_into(out, 0, len(out) - 4)
    return out


def encode_response_chunks(
    api_key: int, api_version: int, correlation_id: int, body: Message
) -> list[Records]:
    """The same frame as pieces: large record payloads are referenced, not copied, and file
    slices stay slices, so a fetch response goes from the segment to the socket by
    sendfile(2) or a vectored send without another copy."""
    out = ChunkedOut()
    out += b"\x00\x00\x00\x00"
    ResponseHeader(correlation_id).encode(out, response_header_version(api_key, api_version))
    body.encode(out, api_version)
    chunks = out.take()
    head = chunks[0]
    assert not isinstance(head, FileSlice)  # the size prefix and header come first
    first = bytearray(head)
    _I32.pack_into(first, 0, sum(len(c) for c in chunks) - 4)
    chunks[0] = first
    return chunks


def decode_response(
    frame: bytes | bytearray | memoryview, api_key: int, api_version: int
) -> tuple[int, Any]:
    """(correlation id, response object) from a response frame without its size prefix."""
    view = frame if type(frame) is memoryview else memoryview(frame)
    header, pos = ResponseHeader.decode(view, 0, response_header_version(api_key, api_version))
    cls = response_class(api_key)
    body, end = cls.decode(view, pos, api_version)
    if end != len(view):
        raise DecodeError(f"{cls.NAME} v{api_version}: trailing bytes after the body")
    return header.correlation_id, body
