"""Zigzag varints and varlongs as Kafka's ``ByteUtils`` writes and reads them.

Record fields (lengths, deltas, header counts) are zigzag-encoded LEB128. Readers take any
buffer indexable to ints (``bytes``, ``bytearray``, ``memoryview``) plus a position and return
``(value, new_pos)``; truncated or over-long input raises :class:`DecodeError`, never
``IndexError``. Like Java's ``readVarint``, a varint may use at most 5 bytes and a varlong at most
10; bits beyond 32/64 in the last byte are dropped as Java's shift drops them.
"""

from __future__ import annotations

from pykbroker.errors import DecodeError, EncodeError

__all__ = [
    "INT32_MAX",
    "INT32_MIN",
    "INT64_MAX",
    "INT64_MIN",
    "encode_varint",
    "encode_varlong",
    "read_varint",
    "read_varlong",
    "size_of_varint",
    "size_of_varlong",
    "write_varint",
    "write_varlong",
]

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

_MASK32 = (1 << 32) - 1
_MASK64 = (1 << 64) - 1


def _write_unsigned(out: bytearray, v: int) -> None:
    while v > 0x7F:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def write_varint(out: bytearray, value: int) -> None:
    """Append ``value`` (an int32) to ``out`` as a zigzag varint."""
    if not INT32_MIN <= value <= INT32_MAX:
        raise EncodeError(f"varint out of int32 range: {value}")
    _write_unsigned(out, ((value << 1) ^ (value >> 31)) & _MASK32)


def write_varlong(out: bytearray, value: int) -> None:
    """Append ``value`` (an int64) to ``out`` as a zigzag varlong."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise EncodeError(f"varlong out of int64 range: {value}")
    _write_unsigned(out, ((value << 1) ^ (value >> 63)) & _MASK64)


def encode_varint(value: int) -> bytes:
    """Return the zigzag varint bytes of an int32."""
    out = bytearray()
    write_varint(out, value)
    return bytes(out)


def encode_varlong(value: int) -> bytes:
    """Return the zigzag varlong bytes of an int64."""
    out = bytearray()
    write_varlong(out, value)
    return bytes(out)


def _unsigned_size(v: int) -> int:
    size = 1
    while v > 0x7F:
        v >>= 7
        size += 1
    return size


def size_of_varint(value: int) -> int:
    """Number of bytes :func:`write_varint` would append (sizes records before writing)."""
    return _unsigned_size(((value << 1) ^ (value >> 31)) & _MASK32)


def size_of_varlong(value: int) -> int:
    """Number of bytes :func:`write_varlong` would append."""
    return _unsigned_size(((value << 1) ^ (value >> 63)) & _MASK64)


def _read_unsigned(
    buf: bytes | bytearray | memoryview, pos: int, max_bytes: int
) -> tuple[int, int]:
    result = 0
    shift = 0
    end = pos + max_bytes
    try:
        while pos < end:
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result, pos
            shift += 7
    except IndexError:
        raise DecodeError("truncated varint") from None
    raise DecodeError(f"varint longer than {max_bytes} bytes")


def read_varint(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """Read a zigzag varint (at most 5 bytes) at ``pos``; return ``(value, new_pos)``."""
    try:
        b = buf[pos]
    except IndexError:
        raise DecodeError("truncated varint") from None
    if b < 0x80:  # one-byte fast path: most lengths and deltas in real batches
        return (b >> 1) ^ -(b & 1), pos + 1
    raw, pos = _read_unsigned(buf, pos, 5)
    raw &= _MASK32
    value = (raw >> 1) ^ -(raw & 1)
    return value, pos


def read_varlong(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """Read a zigzag varlong (at most 10 bytes) at ``pos``; return ``(value, new_pos)``."""
    try:
        b = buf[pos]
    except IndexError:
        raise DecodeError("truncated varlong") from None
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    raw, pos = _read_unsigned(buf, pos, 10)
    raw &= _MASK64
    value = (raw >> 1) ^ -(raw & 1)
    return value, pos
