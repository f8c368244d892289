"""What the cleaner keeps of one batch (Kafka's ``cleanInto`` filter and ``filterTo``).

For each batch: discard it whole (an aborted transaction's batch, a marker past its delete
horizon), keep it as it is (every record survives and nothing needs stamping: the bytes are
copied, never re-encoded), keep it as an empty batch (the last batch of an active producer,
which carries its last sequence and epoch; the batch ending the cleaned group, which keeps the
group's offset range), or rebuild it with the records that survive. A record survives when it
is the newest of its key in the offset map (or lies past the mapped range), and a tombstone
only until its batch's delete horizon, stamped on the first cleaning that keeps it.
Rebuilt batches keep base offset, last offset, producer id/epoch, base sequence, leader epoch,
timestamp type and record offsets and timestamps; they are compressed with the topic's codec
(``compression.type``; ``producer`` keeps the batch's own).
"""

from __future__ import annotations

from dataclasses import dataclass

from pykbroker.errors import DecodeError
from pykbroker.log.cleaner_txn import CleanedTransactionMetadata
from pykbroker.log.offset_map import OffsetMap
from pykbroker.records import (
    GZIP,
    LZ4,
    NONE,
    SNAPPY,
    ZSTD,
    BatchBuilder,
    BatchHeader,
    Record,
    build_empty_batch,
    iter_records,
)

__all__ = ["CleanerStats", "FilterContext", "codec_for", "filter_batch"]

Buffer = bytes | bytearray | memoryview

_CODECS = {"uncompressed": NONE, "gzip": GZIP, "snappy": SNAPPY, "lz4": LZ4, "zstd": ZSTD}


def codec_for(compression_type: str) -> int | None:
    """The codec rewritten batches get; None: the batch's own (``producer``)."""
    return _CODECS.get(compression_type)


@dataclass(slots=True)
class CleanerStats:
    """Counters of one cleaning, for the log line and the metrics."""

    bytes_read: int = 0
    bytes_written: int = 0
    messages_read: int = 0
    messages_written: int = 0
    map_bytes_read: int = 0
    map_messages_read: int = 0
    invalid_messages: int = 0
    start_s: float = 0.0
    map_done_s: float = 0.0
    end_s: float = 0.0
    buffer_utilization: float = 0.0

    @property
    def elapsed_s(self) -> float:
        return max(self.end_s - self.start_s, 0.0)

    @property
    def recopy_ratio(self) -> float:
        return self.bytes_written / self.bytes_read if self.bytes_read else 0.0


@dataclass(slots=True)
class FilterContext:
    offset_map: OffsetMap
    txn: CleanedTransactionMetadata
    #: producer id -> (offset of its last data batch or -1, its epoch), as the log's state
    active_producers: dict[int, tuple[int, int]]
    now_ms: int
    delete_retention_ms: int
    codec: int | None
    stats: CleanerStats
    #: the batch ending here is kept (empty if need be): the end of the cleaned group
    retain_end: int = -1
    #: smallest delete horizon left in the output (-1: none), for the next tombstone pass
    min_horizon: int = -1


def _is_last_of_producer(header: BatchHeader, ctx: FilterContext) -> bool:
    last = ctx.active_producers.get(header.producer_id)
    if last is None:
        return False
    last_data_offset, epoch = last
    if last_data_offset >= 0:
        return header.last_offset == last_data_offset
    return header.is_control and header.producer_epoch == epoch


def filter_batch(
    buf: Buffer, pos: int, header: BatchHeader, ctx: FilterContext
) -> Buffer | None:
    """The bytes to write for the batch at ``pos`` (``header`` parsed), or None."""
    batch = memoryview(buf)[pos:pos + header.size]
    stats = ctx.stats
    stats.bytes_read += header.size
    horizon = header.base_timestamp if header.has_delete_horizon else None
    if header.is_control:
        can_discard = ctx.txn.on_control_batch(header, batch)
        discard_records = can_discard and horizon is not None and horizon <= ctx.now_ms
    else:
        can_discard = ctx.txn.on_batch(header)
        discard_records = can_discard
    keep_empty = (header.producer_id >= 0 and _is_last_of_producer(header, ctx)) or (
        header.next_offset == ctx.retain_end
    )
    if discard_records and not keep_empty:
        return None
    marker_for_empty_txn = can_discard and header.is_control
    kept: list[Record] = []
    dropped = False
    tombstones = False
    if discard_records:
        dropped = header.records_count > 0
    else:
        try:
            records = list(iter_records(batch))
        except DecodeError:
            # Unreadable records (never expected past the append checks): keep the batch.
            return _kept_whole(batch, header, ctx)
        for record in records:
            stats.messages_read += 1
            if header.is_control or _retain_record(record, horizon, ctx):
                kept.append(record)
                if record.value is None:
                    tombstones = True
            else:
                dropped = True
    if kept:
        needs_horizon = (tombstones or marker_for_empty_txn) and horizon is None
        if not dropped and not needs_horizon:
            return _kept_whole(batch, header, ctx)
        if needs_horizon:
            horizon = ctx.now_ms + ctx.delete_retention_ms
        if horizon is not None and (tombstones or header.is_control):
            _note_horizon(ctx, horizon)
        out = _rebuild(header, kept, horizon, ctx.codec)
    elif keep_empty:
        out = build_empty_batch(
            base_offset=header.base_offset, last_offset=header.last_offset,
            max_timestamp=header.max_timestamp, producer_id=header.producer_id,
            producer_epoch=header.producer_epoch, base_sequence=header.base_sequence,
            timestamp_type=header.timestamp_type, is_transactional=header.is_transactional,
            is_control=header.is_control, partition_leader_epoch=header.partition_leader_epoch)
    else:
        return None
    stats.bytes_written += len(out)
    stats.messages_written += len(kept)
    return out


def _kept_whole(batch: memoryview, header: BatchHeader, ctx: FilterContext) -> Buffer:
    if header.has_delete_horizon and (header.is_control or header.records_count):
        _note_horizon(ctx, header.base_timestamp)
    ctx.stats.bytes_written += header.size
    ctx.stats.messages_written += header.records_count
    return batch


def _note_horizon(ctx: FilterContext, horizon: int) -> None:
    if ctx.min_horizon < 0 or horizon < ctx.min_horizon:
        ctx.min_horizon = horizon


def _retain_record(record: Record, horizon: int | None, ctx: FilterContext) -> bool:
    offset_map = ctx.offset_map
    if record.offset > offset_map.latest_offset:
        return True
    key = record.key
    if key is None:
        ctx.stats.invalid_messages += 1
        return False
    if record.offset < offset_map.get(key):
        return False
    return record.value is not None or horizon is None or ctx.now_ms < horizon


def _rebuild(header: BatchHeader, kept: list[Record], horizon: int | None,
             codec: int | None) -> bytes:
    compression = header.compression if codec is None or header.is_control else codec
    builder = BatchBuilder(
        base_offset=header.base_offset,
        compression=compression,
        timestamp_type=header.timestamp_type,
        producer_id=header.producer_id,
        producer_epoch=header.producer_epoch,
        base_sequence=header.base_sequence,
        is_transactional=header.is_transactional,
        is_control=header.is_control,
        partition_leader_epoch=header.partition_leader_epoch,
        delete_horizon_ms=horizon,
    )
    base_ts = header.base_timestamp
    for record in kept:
        builder.append(record.key, record.value, record.headers,
                       base_ts + record.timestamp_delta, record.offset - header.base_offset)
    max_ts = header.max_timestamp if header.timestamp_type else None
    return builder.build(last_offset_delta=header.last_offset_delta, max_timestamp=max_ts)
