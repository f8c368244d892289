"""Writing v2 batches: the broker's own records (coordinators, markers) and rewrites.

Clients build the batches the broker stores; the broker builds batches only for its internal
topics, transaction markers, compaction and codec conversion. Layout follows Java's
``MemoryRecordsBuilder``: the base timestamp is the first record's, deltas may be negative,
the whole records section is compressed as one stream, and the CRC is computed last.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from pykbroker.errors import EncodeError
from pykbroker.records.batch import (
    BATCH_OVERHEAD,
    CONTROL_FLAG,
    CRC_OFFSET,
    DELETE_HORIZON_FLAG,
    HEADER,
    LOG_APPEND_TIME,
    LOG_OVERHEAD,
    MAGIC,
    TIMESTAMP_TYPE_FLAG,
    TRANSACTIONAL_FLAG,
    compute_crc,
)
from pykbroker.records.compression import CODEC_NAMES, NONE, compress
from pykbroker.records.record import CONTROL_ABORT, CONTROL_COMMIT
from pykbroker.records.varint import write_varint, write_varlong

__all__ = [
    "NO_TIMESTAMP",
    "BatchBuilder",
    "NewRecord",
    "build_batch",
    "build_control_batch",
    "build_empty_batch",
]

NO_TIMESTAMP = -1
_U32 = struct.Struct(">I")
_CONTROL_KEY = struct.Struct(">hh")
_END_TXN_VALUE = struct.Struct(">hi")

HeaderInput = tuple[str, bytes | None]


class NewRecord(NamedTuple):
    """A record to write; a plain ``(key, value, headers, timestamp)`` tuple works as well."""

    key: bytes | None
    value: bytes | None
    headers: Sequence[HeaderInput] = ()
    timestamp: int | None = None  # None: now, in ms


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _write_bytes(out: bytearray, data: bytes | None) -> None:
    if data is None:
        out.append(1)  # zigzag(-1)
    else:
        write_varint(out, len(data))
        out += data


class BatchBuilder:
    """Accumulates records and produces one batch's bytes.

    ``append`` takes an explicit ``offset_delta`` for compaction, which keeps each retained
    record's offset, and ``build(last_offset_delta=...)`` keeps the original batch's offset span
    (Kafka's ``overrideLastOffset``), even with no records left. ``delete_horizon_ms`` (the
    log cleaner, KIP-534) sets the delete-horizon attribute and makes it the base timestamp,
    record timestamps staying exact through their deltas.
    """

    __slots__ = (
        "_attributes",
        "_base_offset",
        "_base_sequence",
        "_base_timestamp",
        "_body",
        "_compression",
        "_count",
        "_last_delta",
        "_max_timestamp",
        "_partition_leader_epoch",
        "_producer_epoch",
        "_producer_id",
    )

    def __init__(
        self,
        *,
        base_offset: int = 0,
        compression: int = NONE,
        timestamp_type: int = 0,
        producer_id: int = -1,
        producer_epoch: int = -1,
        base_sequence: int = -1,
        is_transactional: bool = False,
        is_control: bool = False,
        partition_leader_epoch: int = -1,
        delete_horizon_ms: int | None = None,
    ) -> None:
        if compression not in CODEC_NAMES:
            raise EncodeError(f"unknown compression codec {compression}")
        attributes = compression
        if timestamp_type == LOG_APPEND_TIME:
            attributes |= TIMESTAMP_TYPE_FLAG
        elif timestamp_type != 0:
            raise EncodeError(f"unknown timestamp type {timestamp_type}")
        if is_transactional:
            attributes |= TRANSACTIONAL_FLAG
        if is_control:
            attributes |= CONTROL_FLAG
        if delete_horizon_ms is not None:
            attributes |= DELETE_HORIZON_FLAG
        self._attributes = attributes
        self._compression = compression
        self._base_offset = base_offset
        self._producer_id = producer_id
        self._producer_epoch = producer_epoch
        self._base_sequence = base_sequence
        self._partition_leader_epoch = partition_leader_epoch
        self._base_timestamp: int | None = delete_horizon_ms
        self._max_timestamp = NO_TIMESTAMP
        self._last_delta = -1
        self._count = 0
        self._body = bytearray()

    def __len__(self) -> int:
        return self._count

    def append(
        self,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[HeaderInput] = (),
        timestamp: int | None = None,
        offset_delta: int | None = None,
    ) -> None:
        """Add a record; ``offset_delta`` defaults to one past the previous record's."""
        if timestamp is None:
            timestamp = _now_ms()
        if offset_delta is None:
            offset_delta = self._last_delta + 1
        elif offset_delta <= self._last_delta:
            raise EncodeError(f"offset delta {offset_delta} not above {self._last_delta}")
        if self._base_timestamp is None:
            self._base_timestamp = timestamp
        rec = bytearray(b"\x00")  # record attributes: unused, always 0
        write_varlong(rec, timestamp - self._base_timestamp)
        write_varint(rec, offset_delta)
        _write_bytes(rec, key)
        _write_bytes(rec, value)
        encoded = [(k.encode("utf-8", "surrogateescape"), v) for k, v in headers]
        write_varint(rec, len(encoded))
        for h_key, h_value in encoded:
            _write_bytes(rec, h_key)
            _write_bytes(rec, h_value)
        write_varint(self._body, len(rec))
        self._body += rec
        self._count += 1
        self._last_delta = offset_delta
        if timestamp > self._max_timestamp:
            self._max_timestamp = timestamp

    def estimated_size(self) -> int:
        """Uncompressed size so far, for callers that cap batch size."""
        return BATCH_OVERHEAD + len(self._body)

    def build(
        self, *, last_offset_delta: int | None = None, max_timestamp: int | None = None
    ) -> bytes:
        """Return the finished batch with its length and CRC filled in. ``max_timestamp``
        overrides the records' largest (a rewritten LogAppendTime batch keeps its own)."""
        if last_offset_delta is None:
            if not self._count:
                raise EncodeError("an empty batch needs an explicit last_offset_delta")
            last_offset_delta = self._last_delta
        elif last_offset_delta < self._last_delta or last_offset_delta < 0:
            raise EncodeError(f"last offset delta {last_offset_delta} below {self._last_delta}")
        body: bytes | bytearray = self._body
        if self._compression != NONE:
            body = compress(self._compression, body)
        base_timestamp = NO_TIMESTAMP if self._base_timestamp is None else self._base_timestamp
        out = bytearray(BATCH_OVERHEAD)
        out += body
        try:
            HEADER.pack_into(
                out,
                0,
                self._base_offset,
                len(out) - LOG_OVERHEAD,
                self._partition_leader_epoch,
                MAGIC,
                0,
                self._attributes,
                last_offset_delta,
                base_timestamp,
                self._max_timestamp if max_timestamp is None else max_timestamp,
                self._producer_id,
                self._producer_epoch,
                self._base_sequence,
                self._count,
            )
        except struct.error as exc:
            raise EncodeError(f"record batch header field out of range: {exc}") from exc
        _U32.pack_into(out, CRC_OFFSET, compute_crc(out, 0, len(out)))
        return bytes(out)


def build_batch(
    records: Iterable[
        tuple[bytes | None, bytes | None, Sequence[HeaderInput], int | None] | NewRecord
    ],
    *,
    base_offset: int = 0,
    compression: int = NONE,
    timestamp_type: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    is_transactional: bool = False,
    is_control: bool = False,
    partition_leader_epoch: int = -1,
) -> bytes:
    """Build one batch from ``(key, value, headers, timestamp)`` items (timestamp None: now)."""
    builder = BatchBuilder(
        base_offset=base_offset,
        compression=compression,
        timestamp_type=timestamp_type,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        is_transactional=is_transactional,
        is_control=is_control,
        partition_leader_epoch=partition_leader_epoch,
    )
    for key, value, headers, timestamp in records:
        builder.append(key, value, headers, timestamp)
    return builder.build()


def build_control_batch(
    producer_id: int,
    producer_epoch: int,
    commit: bool,
    coordinator_epoch: int,
    base_offset: int = 0,
    timestamp: int | None = None,
    partition_leader_epoch: int = -1,
) -> bytes:
    """A COMMIT or ABORT transaction marker, as Kafka's ``withEndTransactionMarker`` writes it.

    Markers are transactional control batches with no sequence; the single record's key is
    (version 0, type) and its value (version 0, coordinator epoch).
    """
    kind = CONTROL_COMMIT if commit else CONTROL_ABORT
    builder = BatchBuilder(
        base_offset=base_offset,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        is_transactional=True,
        is_control=True,
        partition_leader_epoch=partition_leader_epoch,
    )
    builder.append(
        _CONTROL_KEY.pack(0, kind),
        _END_TXN_VALUE.pack(0, coordinator_epoch),
        (),
        _now_ms() if timestamp is None else timestamp,
    )
    return builder.build()


def build_empty_batch(
    *,
    base_offset: int,
    last_offset: int,
    max_timestamp: int,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    timestamp_type: int = 0,
    is_transactional: bool = False,
    is_control: bool = False,
    partition_leader_epoch: int = -1,
) -> bytes:
    """A batch with no records spanning [base_offset, last_offset], as Kafka's
    ``writeEmptyHeader``: what the log cleaner keeps of a batch whose records all went but
    whose producer state (last sequence, epoch) or offset span must stay in the log."""
    builder = BatchBuilder(
        base_offset=base_offset,
        timestamp_type=timestamp_type,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        is_transactional=is_transactional,
        is_control=is_control,
        partition_leader_epoch=partition_leader_epoch,
        delete_horizon_ms=None,
    )
    builder._base_timestamp = max_timestamp
    return builder.build(last_offset_delta=last_offset - base_offset, max_timestamp=max_timestamp)
