"""The v2 record batch header: parse, validate, walk and patch without touching the records.

The broker's produce and fetch paths move batches as bytes (Kafka's in-place offset
assignment): read the 61-byte header once, check CRC-32C over ``batch[21:]``, patch the base
offset and partition leader epoch (both before the CRC span, so the CRC stays valid), append.
All functions take ``(buffer, pos)`` so batches are handled where they lie in a larger buffer.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final, NamedTuple

from pykbroker.errors import CorruptRecordError, DecodeError
from pykbroker.records.checksum import crc32c

__all__ = [
    "ATTRIBUTES_OFFSET",
    "BATCH_OVERHEAD",
    "CONTROL_FLAG",
    "CRC_OFFSET",
    "DELETE_HORIZON_FLAG",
    "HEADER",
    "LOG_APPEND_TIME",
    "CREATE_TIME",
    "LOG_OVERHEAD",
    "MAGIC",
    "MIN_BATCH_LENGTH",
    "BatchHeader",
    "TIMESTAMP_TYPE_FLAG",
    "EXTENT_BYTES",
    "TRANSACTIONAL_FLAG",
    "batch_extent",
    "compute_crc",
    "iter_batches",
    "set_base_offset",
    "set_max_timestamp",
    "set_partition_leader_epoch",
    "valid_prefix_length",
    "validate_batch",
]

#: baseOffset, batchLength, partitionLeaderEpoch, magic, crc, attributes, lastOffsetDelta,
#: baseTimestamp, maxTimestamp, producerId, producerEpoch, baseSequence, recordsCount.
HEADER: Final = struct.Struct(">qiibIhiqqqhii")
BATCH_OVERHEAD: Final = HEADER.size  # 61
LOG_OVERHEAD: Final = 12  # baseOffset + batchLength: the part batchLength does not count
MIN_BATCH_LENGTH: Final = BATCH_OVERHEAD - LOG_OVERHEAD  # 49
MAGIC: Final = 2

LENGTH_OFFSET: Final = 8
PARTITION_LEADER_EPOCH_OFFSET: Final = 12
MAGIC_OFFSET: Final = 16
CRC_OFFSET: Final = 17
ATTRIBUTES_OFFSET: Final = 21  # the CRC covers from here to the end of the batch
MAX_TIMESTAMP_OFFSET: Final = 35

COMPRESSION_MASK: Final = 0x07
TIMESTAMP_TYPE_FLAG: Final = 0x08
TRANSACTIONAL_FLAG: Final = 0x10
CONTROL_FLAG: Final = 0x20
DELETE_HORIZON_FLAG: Final = 0x40

CREATE_TIME: Final = 0
LOG_APPEND_TIME: Final = 1

_I64 = struct.Struct(">q")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_I16 = struct.Struct(">h")

Buffer = bytes | bytearray | memoryview
WritableBuffer = bytearray | memoryview


class BatchHeader(NamedTuple):
    """The decoded 61-byte header; a NamedTuple so parsing is one ``unpack_from``."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @classmethod
    def parse(cls, buf: Buffer, pos: int = 0) -> BatchHeader:
        """Decode the header at ``pos`` (no validation beyond there being 61 bytes)."""
        if pos < 0 or len(buf) - pos < BATCH_OVERHEAD:
            raise DecodeError(f"record batch header needs {BATCH_OVERHEAD} bytes at {pos}")
        return cls._make(HEADER.unpack_from(buf, pos))

    @property
    def compression(self) -> int:
        """Codec id: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd."""
        return self.attributes & COMPRESSION_MASK

    @property
    def timestamp_type(self) -> int:
        """0 CreateTime, 1 LogAppendTime (then every record's timestamp is max_timestamp)."""
        return 1 if self.attributes & TIMESTAMP_TYPE_FLAG else 0

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_FLAG)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_FLAG)

    @property
    def has_delete_horizon(self) -> bool:
        """Set by the log cleaner (KIP-534): base_timestamp then holds the delete horizon."""
        return bool(self.attributes & DELETE_HORIZON_FLAG)

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def size(self) -> int:
        """Whole batch size in bytes, including the 12-byte offset/length prefix."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def has_producer_id(self) -> bool:
        return self.producer_id >= 0

    @property
    def last_sequence(self) -> int:
        """Sequence of the last record; sequences wrap at int32 max like Kafka's."""
        if self.base_sequence < 0:
            return -1
        return (self.base_sequence + self.last_offset_delta) & 0x7FFFFFFF


_OFFSET_LENGTH = struct.Struct(">qi")
_LAST_OFFSET_DELTA_POS: Final = 23
#: The leading bytes of a batch that :func:`batch_extent` reads.
EXTENT_BYTES: Final = _LAST_OFFSET_DELTA_POS + 4


def batch_extent(buf: Buffer, pos: int) -> tuple[int, int]:
    """``(size in bytes, offset after the batch)`` of the batch at ``pos``, from its first
    EXTENT_BYTES bytes: what a reader needs to step over whole batches without parsing them."""
    base, length = _OFFSET_LENGTH.unpack_from(buf, pos)
    return length + LOG_OVERHEAD, base + _I32.unpack_from(buf, pos + _LAST_OFFSET_DELTA_POS)[0] + 1


def compute_crc(buf: Buffer, pos: int, size: int) -> int:
    """CRC-32C of the batch at ``pos`` of ``size`` bytes, over attributes to end."""
    return crc32c(memoryview(buf)[pos + ATTRIBUTES_OFFSET : pos + size])


def validate_batch(buf: Buffer, pos: int = 0, *, strict: bool = False) -> BatchHeader:
    """Check the batch at ``pos`` as Kafka's ``ensureValid`` does and return its header.

    Checks the length field, magic, CRC-32C, record count and offset delta. ``strict`` adds
    the checks Kafka's LogValidator makes on produce (at least one record, and
    ``lastOffsetDelta == recordsCount - 1``), which batches rewritten by compaction may fail.
    Raises :class:`CorruptRecordError`.
    """
    remaining = len(buf) - pos
    if pos < 0 or remaining < LOG_OVERHEAD:
        raise CorruptRecordError(f"record batch at {pos} truncated before its length field")
    (length,) = _I32.unpack_from(buf, pos + LENGTH_OFFSET)
    if length < MIN_BATCH_LENGTH:
        raise CorruptRecordError(
            f"record batch at {pos} has length {length}, below the minimum {MIN_BATCH_LENGTH}"
        )
    size = length + LOG_OVERHEAD
    if size > remaining:
        raise CorruptRecordError(
            f"record batch at {pos} of {size} bytes exceeds the {remaining} bytes available"
        )
    header = BatchHeader._make(HEADER.unpack_from(buf, pos))
    if header.magic != MAGIC:
        raise CorruptRecordError(f"record batch at {pos} has unsupported magic {header.magic}")
    actual = compute_crc(buf, pos, size)
    if actual != header.crc:
        raise CorruptRecordError(
            f"record batch at offset {header.base_offset} is corrupt: "
            f"stored CRC {header.crc:#010x}, computed {actual:#010x}"
        )
    count = header.records_count
    if count < 0:
        raise CorruptRecordError(f"record batch has negative record count {count}")
    if header.last_offset_delta < 0 or header.last_offset_delta < count - 1:
        raise CorruptRecordError(
            f"record batch lastOffsetDelta {header.last_offset_delta} "
            f"inconsistent with {count} records"
        )
    if strict:
        if count == 0:
            raise CorruptRecordError("record batch has no records")
        if header.last_offset_delta != count - 1:
            raise CorruptRecordError(
                f"record batch offset range {header.last_offset_delta + 1} "
                f"differs from its record count {count}"
            )
    return header


def iter_batches(
    buf: Buffer, pos: int = 0, *, validate: bool = True, allow_partial: bool = False
) -> Iterator[tuple[int, BatchHeader]]:
    """Yield ``(pos, header)`` for consecutive batches, as a segment or produce payload holds.

    A trailing partial batch raises :class:`CorruptRecordError` unless ``allow_partial``
    (fetch responses may end in one), in which case iteration just stops there.
    """
    if pos < 0:
        raise ValueError(f"negative position {pos}")
    end = len(buf)
    while pos < end:
        remaining = end - pos
        if remaining < BATCH_OVERHEAD:
            if remaining >= LOG_OVERHEAD and _I32.unpack_from(buf, pos + 8)[0] < MIN_BATCH_LENGTH:
                raise CorruptRecordError(f"record batch at {pos} has an invalid length")
            if allow_partial:
                return
            raise CorruptRecordError(f"partial record batch header at {pos}")
        length = _I32.unpack_from(buf, pos + LENGTH_OFFSET)[0]
        if allow_partial and length >= MIN_BATCH_LENGTH and length + LOG_OVERHEAD > remaining:
            return
        if validate:
            header = validate_batch(buf, pos)
        else:
            header = BatchHeader._make(HEADER.unpack_from(buf, pos))
            if length < MIN_BATCH_LENGTH or header.size > remaining:
                raise CorruptRecordError(f"record batch at {pos} has invalid length {length}")
        yield pos, header
        pos += header.size


def valid_prefix_length(buf: Buffer, pos: int = 0) -> int:
    """End position of the last whole, valid batch in a run starting at ``pos``.

    Crash recovery truncates a segment here: everything after the first torn or corrupt batch
    is discarded, as Kafka's ``LogSegment.recover`` does. Never raises for bad bytes.
    """
    end = len(buf)
    while pos < end:
        try:
            header = validate_batch(buf, pos)
        except CorruptRecordError:
            return pos
        pos += header.size
    return pos


def set_base_offset(buf: WritableBuffer, pos: int, base_offset: int) -> None:
    """Assign the batch's base offset in place; outside the CRC span, so no recompute."""
    _I64.pack_into(buf, pos, base_offset)


def set_partition_leader_epoch(buf: WritableBuffer, pos: int, epoch: int) -> None:
    """Stamp the leader epoch in place; outside the CRC span, so no recompute."""
    _I32.pack_into(buf, pos + PARTITION_LEADER_EPOCH_OFFSET, epoch)


def set_max_timestamp(
    buf: WritableBuffer, pos: int, timestamp: int, timestamp_type: int | None = None
) -> None:
    """Set max timestamp (and optionally the timestamp type bit), then recompute the CRC.

    The broker does this for LogAppendTime topics, as Kafka's ``setMaxTimestamp``; when nothing
    changes the CRC is left alone.
    """
    (attributes,) = _I16.unpack_from(buf, pos + ATTRIBUTES_OFFSET)
    new_attributes = attributes
    if timestamp_type is not None:
        if timestamp_type == LOG_APPEND_TIME:
            new_attributes |= TIMESTAMP_TYPE_FLAG
        elif timestamp_type == CREATE_TIME:
            new_attributes &= ~TIMESTAMP_TYPE_FLAG
        else:
            raise ValueError(f"unknown timestamp type {timestamp_type}")
    (current,) = _I64.unpack_from(buf, pos + MAX_TIMESTAMP_OFFSET)
    if current == timestamp and new_attributes == attributes:
        return
    _I16.pack_into(buf, pos + ATTRIBUTES_OFFSET, new_attributes)
    _I64.pack_into(buf, pos + MAX_TIMESTAMP_OFFSET, timestamp)
    size = _I32.unpack_from(buf, pos + LENGTH_OFFSET)[0] + LOG_OVERHEAD
    _U32.pack_into(buf, pos + CRC_OFFSET, compute_crc(buf, pos, size))
