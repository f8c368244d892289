"""Wire primitives that generated codecs call: varints, strings, bytes, arrays, tagged fields.

Readers take ``(buf: memoryview, pos)`` and return ``(value, new_pos)``; writers append to one
``bytearray``. Every declared length is checked against the bytes left *before* anything is
allocated, so a hostile length can never make us allocate or loop beyond the frame.
Fixed-width runs are not here: generated code unpacks them with precompiled ``struct.Struct``s.
"""

from __future__ import annotations

import struct
import uuid
from typing import Any

from pykbroker.errors import DecodeError, EncodeError
from pykbroker.file_slice import FileSlice

__all__ = [
    "ARRAY_STRUCTS", "ARRAY_STRUCTS_MAX", "CHUNK_MIN", "ChunkedOut", "DecodeError", "EncodeError", "ZERO_UUID", "NOARG",
    "FileSlice", "Records", "join_records",
    "read_uvarint", "write_uvarint",
    "read_string", "read_nullable_string", "read_compact_string", "read_compact_nullable_string",
    "write_string", "write_nullable_string", "write_compact_string",
    "write_compact_nullable_string",
    "read_bytes", "read_nullable_bytes", "read_compact_bytes", "read_compact_nullable_bytes",
    "write_bytes", "write_nullable_bytes", "write_compact_bytes", "write_compact_nullable_bytes",
    "read_records", "read_compact_records", "write_records", "write_compact_records",
    "read_array_len", "read_nullable_array_len", "read_compact_array_len",
    "read_compact_nullable_array_len", "read_uuid", "read_tag_header", "skip_tags",
    "write_tags", "write_unknown_tags_only", "unsupported_version",
]

ZERO_UUID = uuid.UUID(int=0)
# Precompiled structs for arrays of fixed-width elements shorter than ARRAY_STRUCTS_MAX;
# formatting ">%di" % n on every call costs more than the unpacking itself.
ARRAY_STRUCTS_MAX = 64
ARRAY_STRUCTS: dict[str, list[struct.Struct]] = {
    fmt: [struct.Struct(f">{n}{fmt}") for n in range(ARRAY_STRUCTS_MAX)] for fmt in "?bhHiIqd"
}
# Sentinel default for list and struct parameters, so that an explicit None means "null".
NOARG: Any = object()

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_unpack_i16 = _I16.unpack_from
_unpack_i32 = _I32.unpack_from
_pack_i16 = _I16.pack
_pack_i32 = _I32.pack
_UUID = uuid.UUID


def _short(what: str, need: int, left: int) -> DecodeError:
    return DecodeError(f"{what} declares {need} bytes but only {left} remain")


def read_uvarint(buf: memoryview, pos: int) -> tuple[int, int]:
    """Unsigned LEB128 varint of at most 5 bytes (Kafka's unsigned varint is 32-bit)."""
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    result = b & 0x7F
    shift = 7
    pos += 1
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            if result > 0xFFFFFFFF:
                raise DecodeError("unsigned varint exceeds 32 bits")
            return result, pos
        shift += 7
        if shift > 28:
            raise DecodeError("unsigned varint longer than 5 bytes")


def write_uvarint(out: bytearray, n: int) -> None:
    if n < 0 or n > 0xFFFFFFFF:
        raise EncodeError(f"unsigned varint out of range: {n}")
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


# -- strings ---------------------------------------------------------------------------------

def _text(buf: memoryview, pos: int, n: int) -> tuple[str, int]:
    end = pos + n
    if end > len(buf):
        raise _short("string", n, len(buf) - pos)
    return str(buf[pos:end], "utf-8"), end


def read_string(buf: memoryview, pos: int) -> tuple[str, int]:
    (n,) = _unpack_i16(buf, pos)
    if n < 0:
        raise DecodeError(f"non-nullable string has length {n}")
    return _text(buf, pos + 2, n)


def read_nullable_string(buf: memoryview, pos: int) -> tuple[str | None, int]:
    (n,) = _unpack_i16(buf, pos)
    if n < 0:
        if n == -1:
            return None, pos + 2
        raise DecodeError(f"string has negative length {n}")
    return _text(buf, pos + 2, n)


def read_compact_string(buf: memoryview, pos: int) -> tuple[str, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        raise DecodeError("non-nullable compact string is null")
    return _text(buf, pos, n - 1)


def read_compact_nullable_string(buf: memoryview, pos: int) -> tuple[str | None, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    return _text(buf, pos, n - 1)


def _utf8(s: str | None, what: str) -> bytes:
    if s is None:
        raise EncodeError(f"{what}: null is not allowed here")
    return s.encode("utf-8")


def write_string(out: bytearray, s: str | None) -> None:
    b = _utf8(s, "string")
    if len(b) > 32767:
        raise EncodeError("string longer than 32767 bytes")
    out += _pack_i16(len(b))
    out += b


def write_nullable_string(out: bytearray, s: str | None) -> None:
    if s is None:
        out += b"\xff\xff"
    else:
        write_string(out, s)


def write_compact_string(out: bytearray, s: str | None) -> None:
    b = _utf8(s, "compact string")
    write_uvarint(out, len(b) + 1)
    out += b


def write_compact_nullable_string(out: bytearray, s: str | None) -> None:
    if s is None:
        out.append(0)
    else:
        write_compact_string(out, s)


# -- bytes -----------------------------------------------------------------------------------

def _blob(buf: memoryview, pos: int, n: int) -> tuple[bytes, int]:
    end = pos + n
    if end > len(buf):
        raise _short("bytes field", n, len(buf) - pos)
    return bytes(buf[pos:end]), end


def read_bytes(buf: memoryview, pos: int) -> tuple[bytes, int]:
    (n,) = _unpack_i32(buf, pos)
    if n < 0:
        raise DecodeError(f"non-nullable bytes has length {n}")
    return _blob(buf, pos + 4, n)


def read_nullable_bytes(buf: memoryview, pos: int) -> tuple[bytes | None, int]:
    (n,) = _unpack_i32(buf, pos)
    if n < 0:
        if n == -1:
            return None, pos + 4
        raise DecodeError(f"bytes has negative length {n}")
    return _blob(buf, pos + 4, n)


def read_compact_bytes(buf: memoryview, pos: int) -> tuple[bytes, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        raise DecodeError("non-nullable compact bytes is null")
    return _blob(buf, pos, n - 1)


def read_compact_nullable_bytes(buf: memoryview, pos: int) -> tuple[bytes | None, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    return _blob(buf, pos, n - 1)


def write_bytes(out: bytearray, b: bytes | bytearray | memoryview | None) -> None:
    if b is None:
        raise EncodeError("bytes: null is not allowed here")
    out += _pack_i32(len(b))
    out += b


def write_nullable_bytes(out: bytearray, b: bytes | bytearray | memoryview | None) -> None:
    if b is None:
        out += b"\xff\xff\xff\xff"
    else:
        out += _pack_i32(len(b))
        out += b


def write_compact_bytes(out: bytearray, b: bytes | bytearray | memoryview | None) -> None:
    if b is None:
        raise EncodeError("compact bytes: null is not allowed here")
    write_uvarint(out, len(b) + 1)
    out += b


def write_compact_nullable_bytes(
    out: bytearray, b: bytes | bytearray | memoryview | None
) -> None:
    if b is None:
        out.append(0)
    else:
        write_uvarint(out, len(b) + 1)
        out += b


# -- records: raw bytes kept as a zero-copy view, never decoded here ------------------------

CHUNK_MIN = 16 * 1024
# What a records field may hold when encoding: bytes, or a file range sent by sendfile(2).
Records = bytes | bytearray | memoryview | FileSlice


class ChunkedOut(bytearray):
    """An output buffer that keeps large record payloads by reference instead of copying.

    Encoders append to it like any bytearray; ``take()`` returns the pieces in order, ready
    for one join or a vectored send, so a 1 MiB fetch response is copied once, not twice.
    """

    __slots__ = ("chunks",)

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[Records] = []

    def add_ref(self, data: Records) -> None:
        if self:
            self.chunks.append(bytes(self))
            self.clear()
        self.chunks.append(data)

    def take(self) -> list[Records]:
        if self:
            self.chunks.append(bytes(self))
            self.clear()
        chunks, self.chunks = self.chunks, []
        return chunks

    def joined(self) -> bytes:
        """Everything as one ``bytes`` (file slices read back)."""
        return join_records(self.take())

    def total_size(self) -> int:
        return sum(len(c) for c in self.chunks) + len(self)

def join_records(chunks: list[Records]) -> bytes:
    """Pieces of an encoding as one buffer, file slices read back from their files."""
    return b"".join(c.read() if isinstance(c, FileSlice) else c for c in chunks)


def read_records(buf: memoryview, pos: int) -> tuple[memoryview | None, int]:
    (n,) = _unpack_i32(buf, pos)
    pos += 4
    if n < 0:
        if n == -1:
            return None, pos
        raise DecodeError(f"records has negative length {n}")
    end = pos + n
    if end > len(buf):
        raise _short("records", n, len(buf) - pos)
    return buf[pos:end], end


def read_compact_records(buf: memoryview, pos: int) -> tuple[memoryview | None, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    end = pos + n - 1
    if end > len(buf):
        raise _short("records", n - 1, len(buf) - pos)
    return buf[pos:end], end


def write_records(out: bytearray, b: Records | None) -> None:
    if b is None:
        out += b"\xff\xff\xff\xff"
        return
    out += _pack_i32(len(b))
    _write_records_data(out, b)


def write_compact_records(out: bytearray, b: Records | None) -> None:
    if b is None:
        out.append(0)
        return
    write_uvarint(out, len(b) + 1)
    _write_records_data(out, b)


def _write_records_data(out: bytearray, b: Records) -> None:
    if isinstance(b, FileSlice):
        if type(out) is ChunkedOut:
            out.add_ref(b)
        else:
            out += b.read()  # one buffer wanted: read the file range after all
    elif len(b) >= CHUNK_MIN and type(out) is ChunkedOut:
        out.add_ref(b)
    else:
        out += b


# -- arrays ----------------------------------------------------------------------------------

def read_array_len(buf: memoryview, pos: int) -> tuple[int, int]:
    (n,) = _unpack_i32(buf, pos)
    pos += 4
    if n < 0 or n > len(buf) - pos:
        raise DecodeError(f"array length {n} invalid with {len(buf) - pos} bytes left")
    return n, pos


def read_nullable_array_len(buf: memoryview, pos: int) -> tuple[int, int]:
    """Returns -1 for a null array."""
    (n,) = _unpack_i32(buf, pos)
    pos += 4
    if n == -1:
        return -1, pos
    if n < 0 or n > len(buf) - pos:
        raise DecodeError(f"array length {n} invalid with {len(buf) - pos} bytes left")
    return n, pos


def read_compact_array_len(buf: memoryview, pos: int) -> tuple[int, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        raise DecodeError("non-nullable compact array is null")
    n -= 1
    if n > len(buf) - pos:
        raise DecodeError(f"array length {n} invalid with {len(buf) - pos} bytes left")
    return n, pos


def read_compact_nullable_array_len(buf: memoryview, pos: int) -> tuple[int, int]:
    """Returns -1 for a null array."""
    n, pos = read_uvarint(buf, pos)
    n -= 1
    if n > len(buf) - pos:
        raise DecodeError(f"array length {n} invalid with {len(buf) - pos} bytes left")
    return n, pos


# The topic ids a broker decodes are few and come again in every fetch and produce; building
# a UUID from bytes costs ~2 us (UUID.__init__'s checks), a lookup ~0.1 us. UUIDs are
# immutable, so decoded messages may share them. Bounded: emptied when full.
_UUIDS: dict[bytes, uuid.UUID] = {}
_UUIDS_MAX = 4096


def read_uuid(buf: memoryview, pos: int) -> tuple[uuid.UUID, int]:
    end = pos + 16
    if end > len(buf):
        raise _short("uuid", 16, len(buf) - pos)
    key = bytes(buf[pos:end])
    value = _UUIDS.get(key)
    if value is None:
        if len(_UUIDS) >= _UUIDS_MAX:
            _UUIDS.clear()
        value = _UUIDS[key] = _UUID(bytes=key)
    return value, end


# -- tagged fields ---------------------------------------------------------------------------

def read_tag_header(buf: memoryview, pos: int) -> tuple[int, int, int]:
    """One tagged field's (tag, start, end); its bytes are checked to be present."""
    tag, pos = read_uvarint(buf, pos)
    size, pos = read_uvarint(buf, pos)
    end = pos + size
    if end > len(buf):
        raise _short(f"tagged field {tag}", size, len(buf) - pos)
    return tag, pos, end


def skip_tags(
    buf: memoryview, pos: int
) -> tuple[list[tuple[int, bytes]] | None, int]:
    """A tagged-field section with no known tags: every field is kept as unknown bytes."""
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    if n > len(buf) - pos:
        raise DecodeError(f"tagged field count {n} exceeds the bytes left")
    unknown = []
    for _ in range(n):
        tag, start, pos = read_tag_header(buf, pos)
        unknown.append((tag, bytes(buf[start:pos])))
    return unknown, pos


def write_tags(
    out: bytearray,
    known: list[tuple[int, bytes | bytearray]],
    unknown: list[tuple[int, bytes]] | None,
) -> None:
    """A tagged-field section: known fields (ascending) merged with unknown ones by tag."""
    fields = known
    if unknown:
        fields = [*known, *unknown]
        fields.sort(key=lambda kv: kv[0])
    write_uvarint(out, len(fields))
    for tag, data in fields:
        write_uvarint(out, tag)
        write_uvarint(out, len(data))
        out += data


def write_unknown_tags_only(out: bytearray, unknown: list[tuple[int, bytes]] | None) -> None:
    if not unknown:
        out.append(0)
    else:
        write_tags(out, [], unknown)


def unsupported_version(name: str, version: int, lo: int, hi: int) -> EncodeError:
    return EncodeError(f"{name} has no version {version} (valid {lo}-{hi})")
