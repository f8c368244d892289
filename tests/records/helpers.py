"""Independent batch writers for tests: plain struct + crc32c, not our builder."""

from __future__ import annotations

import struct

import crc32c

HEADER = struct.Struct(">qiibIhiqqqhii")


def raw_batch(
    section: bytes,
    count: int,
    *,
    attributes: int = 0,
    base_offset: int = 0,
    last_offset_delta: int | None = None,
    base_timestamp: int = 0,
    max_timestamp: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    partition_leader_epoch: int = 0,
    magic: int = 2,
) -> bytes:
    """A batch around an arbitrary records section, with a correct length and CRC."""
    if last_offset_delta is None:
        last_offset_delta = max(count - 1, 0)
    head = bytearray(
        HEADER.pack(
            base_offset,
            HEADER.size - 12 + len(section),
            partition_leader_epoch,
            magic,
            0,
            attributes,
            last_offset_delta,
            base_timestamp,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            count,
        )
    )
    out = head + section
    struct.pack_into(">I", out, 17, crc32c.crc32c(bytes(out[21:])))
    return bytes(out)


def fix_crc(batch: bytes | bytearray) -> bytes:
    """Recompute the CRC of a (possibly mutated) single batch so it passes the CRC check."""
    out = bytearray(batch)
    if len(out) >= 21:
        struct.pack_into(">I", out, 17, crc32c.crc32c(bytes(out[21:])))
    return bytes(out)


def zz(n: int) -> bytes:
    """Zigzag varint written the obvious way, independent of pykbroker.records.varint."""
    v = (n << 1) if n >= 0 else ((-n) << 1) - 1
    out = bytearray()
    while True:
        if v < 0x80:
            out.append(v)
            return bytes(out)
        out.append((v & 0x7F) | 0x80)
        v >>= 7


def raw_record(
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[bytes, bytes | None]] = [],  # noqa: B006 - never mutated
    *,
    offset_delta: int = 0,
    timestamp_delta: int = 0,
    length_adjust: int = 0,
) -> bytes:
    """One record with its length prefix; ``length_adjust`` lies about the length."""
    body = bytearray(b"\x00")
    body += zz(timestamp_delta) + zz(offset_delta)
    for field in (key, value):
        body += zz(-1) if field is None else zz(len(field)) + field
    body += zz(len(headers))
    for h_key, h_value in headers:
        body += zz(len(h_key)) + h_key
        body += zz(-1) if h_value is None else zz(len(h_value)) + h_value
    return zz(len(body) + length_adjust) + bytes(body)
