"""Lazy iteration over the records inside one v2 batch, plus control-record helpers.

Decoding records is the slow path: the broker does it only for Kafka's per-record checks,
compaction, codec conversion and transaction markers. Framing is checked as Java's
``DefaultRecord.readFrom`` checks it (each record's length varint must match what its fields
used, the count must match the header, nothing may follow the last record), and the same
inputs Java tolerates are tolerated: any negative key/value length means null, and header keys
that are not valid UTF-8 decode with ``surrogateescape`` so they survive a rewrite byte for byte.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

from pykbroker.errors import CorruptRecordError, DecodeError
from pykbroker.records.batch import (
    BATCH_OVERHEAD,
    HEADER,
    LOG_OVERHEAD,
    MAGIC,
    MIN_BATCH_LENGTH,
    TIMESTAMP_TYPE_FLAG,
    BatchHeader,
)
from pykbroker.records.compression import DEFAULT_MAX_DECOMPRESSED_SIZE, decompress
from pykbroker.records.varint import read_varint, read_varlong

__all__ = [
    "CONTROL_ABORT",
    "CONTROL_COMMIT",
    "Header",
    "Record",
    "control_type",
    "end_txn_coordinator_epoch",
    "iter_records",
]

Header = tuple[str, bytes | None]
Buffer = bytes | bytearray | memoryview

CONTROL_ABORT: Final = 0
CONTROL_COMMIT: Final = 1

_MIN_RECORD_BODY = 6  # attributes, timestampDelta, offsetDelta, key, value, header count
_CONTROL_KEY = struct.Struct(">hh")  # version, type
_END_TXN_VALUE = struct.Struct(">hi")  # version, coordinatorEpoch


class Record:
    """One decoded record; offsets and timestamps already resolved against the batch."""

    __slots__ = (
        "attributes",
        "headers",
        "key",
        "offset",
        "offset_delta",
        "timestamp",
        "timestamp_delta",
        "value",
    )

    def __init__(
        self,
        offset: int,
        timestamp: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[Header],
        attributes: int = 0,
        offset_delta: int = 0,
        timestamp_delta: int = 0,
    ) -> None:
        self.offset = offset
        self.timestamp = timestamp
        self.key = key
        self.value = value
        self.headers = headers
        self.attributes = attributes
        self.offset_delta = offset_delta
        self.timestamp_delta = timestamp_delta

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable value object

    def __repr__(self) -> str:
        return (
            f"Record(offset={self.offset}, timestamp={self.timestamp}, key={self.key!r}, "
            f"value={self.value!r}, headers={self.headers!r})"
        )


def iter_records(
    buf: Buffer, pos: int = 0, *, max_decompressed_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE
) -> Iterator[Record]:
    """Iterate the records of the batch at ``pos`` of ``buf``.

    The header is checked and the records section decompressed now; records are decoded as the
    iterator advances, so framing errors surface (as :class:`CorruptRecordError`) mid-way.
    The CRC is not checked here: call :func:`validate_batch` first for untrusted bytes.
    """
    if pos < 0 or len(buf) - pos < BATCH_OVERHEAD:
        raise CorruptRecordError(
            f"record batch at {pos} shorter than its {BATCH_OVERHEAD}-byte header"
        )
    header = BatchHeader._make(HEADER.unpack_from(buf, pos))
    if header.batch_length < MIN_BATCH_LENGTH:
        raise CorruptRecordError(f"record batch length {header.batch_length} below the minimum")
    end = pos + header.batch_length + LOG_OVERHEAD
    if end > len(buf):
        raise CorruptRecordError(f"record batch at {pos} truncated: needs {end - pos} bytes")
    if header.magic != MAGIC:
        raise CorruptRecordError(f"record batch has unsupported magic {header.magic}")
    count = header.records_count
    if count < 0:
        raise CorruptRecordError(f"record batch has negative record count {count}")
    section: Buffer = memoryview(buf)[pos + BATCH_OVERHEAD : end]
    codec = header.compression
    if codec and (count or section):
        section = decompress(codec, section, max_decompressed_size)
    log_append_time = header.max_timestamp if header.attributes & TIMESTAMP_TYPE_FLAG else None
    return _decode(section, count, header.base_offset, header.base_timestamp, log_append_time)


def _decode(
    data: Buffer, count: int, base_offset: int, base_timestamp: int, log_append_time: int | None
) -> Iterator[Record]:
    pos = 0
    end = len(data)
    for index in range(count):
        try:
            length, pos = read_varint(data, pos)
        except DecodeError:
            raise CorruptRecordError(
                f"record batch declares {count} records but holds only {index}"
            ) from None
        record_end = pos + length
        if length < _MIN_RECORD_BODY or record_end > end:
            raise CorruptRecordError(
                f"record {index} has invalid size {length} ({end - pos} bytes remain)"
            )
        try:
            attributes = data[pos]
            pos += 1
            timestamp_delta, pos = read_varlong(data, pos)
            offset_delta, pos = read_varint(data, pos)
            key_len, pos = read_varint(data, pos)
            key = None
            if key_len >= 0:
                if pos + key_len > record_end:
                    raise DecodeError(f"key of {key_len} bytes overruns the record")
                key = bytes(data[pos : pos + key_len])
                pos += key_len
            value_len, pos = read_varint(data, pos)
            value = None
            if value_len >= 0:
                if pos + value_len > record_end:
                    raise DecodeError(f"value of {value_len} bytes overruns the record")
                value = bytes(data[pos : pos + value_len])
                pos += value_len
            header_count, pos = read_varint(data, pos)
            if header_count < 0 or (header_count and header_count * 2 > record_end - pos):
                raise DecodeError(f"invalid header count {header_count}")
            headers: list[Header] = []
            for _ in range(header_count):
                h_key_len, pos = read_varint(data, pos)
                if h_key_len < 0 or pos + h_key_len > record_end:
                    raise DecodeError(f"invalid header key size {h_key_len}")
                h_key = bytes(data[pos : pos + h_key_len]).decode("utf-8", "surrogateescape")
                pos += h_key_len
                h_value_len, pos = read_varint(data, pos)
                h_value = None
                if h_value_len >= 0:
                    if pos + h_value_len > record_end:
                        raise DecodeError(
                            f"header value of {h_value_len} bytes overruns the record"
                        )
                    h_value = bytes(data[pos : pos + h_value_len])
                    pos += h_value_len
                headers.append((h_key, h_value))
        except DecodeError as exc:
            raise CorruptRecordError(f"record {index} is malformed: {exc}") from None
        if pos != record_end:
            raise CorruptRecordError(
                f"record {index} size mismatch: length says {length} bytes, "
                f"fields used {length + pos - record_end}"
            )
        yield Record(
            base_offset + offset_delta,
            base_timestamp + timestamp_delta if log_append_time is None else log_append_time,
            key,
            value,
            headers,
            attributes - 256 if attributes > 127 else attributes,
            offset_delta,
            timestamp_delta,
        )
    if pos != end:
        raise CorruptRecordError(f"{end - pos} bytes follow the last of {count} records")


def control_type(record: Record) -> int:
    """Type from a control record's key: 0 ABORT, 1 COMMIT (KRaft adds others).

    Like Java's ``ControlRecordType.parse``: needs 4 bytes and a non-negative version; newer
    versions are read by their first two fields.
    """
    key = record.key
    if key is None or len(key) < _CONTROL_KEY.size:
        raise CorruptRecordError("control record key shorter than 4 bytes")
    version, kind = _CONTROL_KEY.unpack_from(key)
    if version < 0:
        raise CorruptRecordError(f"control record key has negative version {version}")
    return int(kind)


def end_txn_coordinator_epoch(record: Record) -> int:
    """Coordinator epoch from a COMMIT/ABORT marker's value (version int16, epoch int32)."""
    value = record.value
    if value is None or len(value) < _END_TXN_VALUE.size:
        raise CorruptRecordError("transaction marker value shorter than 6 bytes")
    version, epoch = _END_TXN_VALUE.unpack_from(value)
    if version < 0:
        raise CorruptRecordError(f"transaction marker has negative version {version}")
    return int(epoch)
