"""The checks and in-place stamping a batch gets before it is written (Kafka's LogValidator
as far as the log owns it).

The leader path patches the batch the client sent: base offset and partition leader epoch
(outside the CRC span, so no recompute) and, for LogAppendTime topics, the max timestamp and
timestamp type (CRC recomputed by :func:`~pykbroker.records.set_max_timestamp`). Records are
decoded only when message.timestamp.before/after.max.ms require a per-record check.
"""

from __future__ import annotations

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import CorruptRecordError, DecodeError, KafkaError, RecordValidationError
from pykbroker.log.log_config import LONG_MAX, LogConfig
from pykbroker.log.store import AppendInfo, UnexpectedAppendOffsetError
from pykbroker.records import (
    CREATE_TIME,
    LOG_APPEND_TIME,
    BatchHeader,
    iter_batches,
    iter_records,
    set_base_offset,
    set_max_timestamp,
    set_partition_leader_epoch,
)
from pykbroker.records.inspect import max_decompressed_size

__all__ = [
    "Headers",
    "check_follower_batches",
    "follower_append_info",
    "group_by_size",
    "prepare_leader_batch",
]

Headers = list[tuple[int, BatchHeader]]


def prepare_leader_batch(
    batch: bytearray | memoryview,
    config: LogConfig,
    first_offset: int,
    leader_epoch: int,
    now: int,
    log_start_offset: int,
) -> tuple[bytearray | memoryview, BatchHeader, AppendInfo]:
    """Check one batch against the topic config and stamp it; returns the (possibly copied,
    if read-only) buffer, its patched header and the append result."""
    buf: bytearray | memoryview = batch
    if isinstance(buf, memoryview) and buf.readonly:
        buf = bytearray(buf)
    try:
        header = BatchHeader.parse(buf)
    except DecodeError as exc:
        raise KafkaError(ErrorCode.CORRUPT_MESSAGE, str(exc)) from None
    size = len(buf)
    if header.size != size:
        raise KafkaError(
            ErrorCode.CORRUPT_MESSAGE,
            f"expected exactly one record batch of {header.size} bytes, got {size} bytes",
        )
    if size > config.max_message_bytes:
        raise KafkaError(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"The record batch size {size} bytes exceeds max.message.bytes "
            f"{config.max_message_bytes}",
        )
    if size > config.segment_bytes:
        raise KafkaError(
            ErrorCode.RECORD_LIST_TOO_LARGE,
            f"Message batch size is {size} bytes which exceeds the maximum configured "
            f"segment size of {config.segment_bytes}",
        )
    rel_of_max = header.last_offset_delta  # exact for one-record batches
    if config.log_append_time:
        set_max_timestamp(buf, 0, now, LOG_APPEND_TIME)
        max_timestamp, log_append_time, rel_of_max = now, now, 0
    else:
        log_append_time = -1
        max_timestamp = header.max_timestamp
        if header.timestamp_type != CREATE_TIME:
            set_max_timestamp(buf, 0, max_timestamp, CREATE_TIME)
        if (
            config.message_timestamp_before_max_ms < LONG_MAX
            or config.message_timestamp_after_max_ms < LONG_MAX
        ):
            rel_of_max = _check_timestamps(buf, header, config, now)
    if config.compact_enabled:
        _check_keys(buf, max_decompressed_size(config.max_message_bytes))
    set_base_offset(buf, 0, first_offset)
    set_partition_leader_epoch(buf, 0, leader_epoch)
    header = BatchHeader.parse(buf)
    info = AppendInfo(
        first_offset,
        header.last_offset,
        log_append_time,
        log_start_offset,
        max_timestamp,
        first_offset + rel_of_max,
    )
    return buf, header, info


def _check_timestamps(
    buf: bytearray | memoryview, header: BatchHeader, config: LogConfig, now: int
) -> int:
    """Reject records outside [now - before, now + after]; offset delta of the first record
    with the largest timestamp."""
    low = now - config.message_timestamp_before_max_ms
    high = now + config.message_timestamp_after_max_ms
    best, rel = -1, header.last_offset_delta
    errors: list[tuple[int, str]] = []
    try:
        cap = max_decompressed_size(config.max_message_bytes)
        for index, record in enumerate(iter_records(buf, max_decompressed_size=cap)):
            ts = record.timestamp
            if ts == -1:
                continue
            if ts < low or ts > high:
                errors.append((index, f"Timestamp {ts} of message with offset delta "
                               f"{record.offset_delta} is out of range. The timestamp should "
                               f"be within [{low}, {high}]"))
            elif ts > best:
                best, rel = ts, record.offset_delta
    except DecodeError as exc:
        raise KafkaError(ErrorCode.CORRUPT_MESSAGE, str(exc)) from None
    if errors:
        raise RecordValidationError(ErrorCode.INVALID_TIMESTAMP, errors, errors[0][1])
    return rel


def _check_keys(buf: bytearray | memoryview, cap: int) -> None:
    """A compacted topic needs a key on every record (Kafka's LogValidator)."""
    try:
        errors = [
            (index, "Compacted topic cannot accept message without key.")
            for index, record in enumerate(iter_records(buf, max_decompressed_size=cap))
            if record.key is None
        ]
    except DecodeError as exc:
        raise KafkaError(ErrorCode.CORRUPT_MESSAGE, str(exc)) from None
    if errors:
        raise RecordValidationError(ErrorCode.INVALID_RECORD, errors,
                                    "Compacted topic cannot accept message without key.")


def check_follower_batches(
    view: memoryview, config: LogConfig, log_end_offset: int, name: str
) -> Headers:
    """Validate replicated batches (CRC, structure, increasing offsets from the log end)."""
    headers: Headers = []
    expected = log_end_offset
    try:
        for pos, header in iter_batches(view, allow_partial=True):
            if header.size > config.segment_bytes:
                raise KafkaError(
                    ErrorCode.RECORD_LIST_TOO_LARGE,
                    f"{name}: batch of {header.size} bytes exceeds segment.bytes "
                    f"{config.segment_bytes}",
                )
            if header.base_offset < expected:
                if not headers:
                    raise UnexpectedAppendOffsetError(
                        f"{name}: first offset {header.base_offset} is below the log end "
                        f"offset {log_end_offset}",
                        header.base_offset,
                        log_end_offset,
                    )
                raise KafkaError(
                    ErrorCode.CORRUPT_MESSAGE, f"{name}: out of order offsets in append"
                )
            headers.append((pos, header))
            expected = header.next_offset
    except CorruptRecordError as exc:
        raise KafkaError(ErrorCode.CORRUPT_MESSAGE, f"{name}: {exc}") from None
    return headers


def group_by_size(headers: Headers, limit: int) -> list[tuple[int, int, Headers]]:
    """Split consecutive batches into runs of at most ``limit`` bytes (each batch fits), so
    each run is one write into one segment; positions become run-relative."""
    groups: list[tuple[int, int, Headers]] = []
    start = end = 0
    run: Headers = []
    for pos, header in headers:
        if run and pos + header.size - start > limit:
            groups.append((start, end, run))
            run = []
        if not run:
            start = pos
        run.append((pos - start, header))
        end = pos + header.size
    if run:
        groups.append((start, end, run))
    return groups


def follower_append_info(headers: Headers, log_start_offset: int) -> AppendInfo:
    """The append result for replicated batches (max timestamp at batch granularity)."""
    top = max((h for _, h in headers), key=lambda h: h.max_timestamp)
    return AppendInfo(
        headers[0][1].base_offset,
        headers[-1][1].last_offset,
        -1,
        log_start_offset,
        top.max_timestamp,
        top.last_offset,
    )
