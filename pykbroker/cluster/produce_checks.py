"""Kafka's produce-time checks on the bytes a client sends for one partition: one whole
magic-v2 batch with a valid CRC, and for compressed batches a walk of the records within a
decompressed-size cap (resumable, so the produce handler can spread a large one over
scheduler passes)."""

from __future__ import annotations

from typing import Any

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import CorruptRecordError, DecodeError, KafkaError
from pykbroker.records import BatchHeader, validate_batch
from pykbroker.records.inspect import (
    DecompressedTooLargeError,
    InvalidRecordsError,
    RecordsCheck,
    max_decompressed_size,
)


def validate_produce_batch(records: Any, records_cap: int | None = None) -> BatchHeader:
    """Kafka's produce-time checks on the bytes of one partition (Produce v3+).

    Exactly one magic-v2 batch, whole, with a valid CRC and consistent record count; with
    ``records_cap`` (see :func:`produce_records_cap`), a compressed batch's records are walked
    too (:func:`start_records_check`). Uncompressed batches get no per-record work.
    """
    header = _validate_produce_header(records)
    if records_cap is not None and header.attributes & 0x07:
        run_records_check(start_records_check(records, header, records_cap))
    return header


def produce_records_cap(part: Any, records: Any) -> int | None:
    """Decompressed-size cap for a produced batch on ``part`` (a replica_manager.Partition,
    not imported: it imports this module), or None when the batch is over
    ``max.message.bytes`` (the append refuses it with MESSAGE_TOO_LARGE before any look
    inside, as Kafka's analyzeAndValidateRecords does)."""
    limit = int(part.log.config.max_message_bytes)
    if records is None or len(records) > limit:
        return None
    return max_decompressed_size(limit)


def start_records_check(records: Any, header: BatchHeader, cap: int) -> RecordsCheck:
    """A resumable walk of a compressed batch's records (pykbroker.records.inspect); errors
    as :func:`run_records_check` raises them."""
    try:
        return RecordsCheck(records, header, cap)
    except DecodeError as exc:
        raise _records_error(exc) from None


def run_records_check(check: RecordsCheck, budget: int = 2**62) -> bool:
    """Advance ``check`` by ``budget`` decompressed bytes; True once complete. Raises
    KafkaError: MESSAGE_TOO_LARGE past the cap, INVALID_RECORD for records that disagree with
    the header (count, offset deltas, sizes, trailing data), CORRUPT_MESSAGE for data the codec
    cannot decode."""
    try:
        return check.run(budget)
    except DecodeError as exc:
        raise _records_error(exc) from None


def _records_error(exc: DecodeError) -> KafkaError:
    if isinstance(exc, DecompressedTooLargeError):
        return KafkaError(ErrorCode.MESSAGE_TOO_LARGE, str(exc))
    if isinstance(exc, InvalidRecordsError):
        return KafkaError(ErrorCode.INVALID_RECORD, str(exc))
    return KafkaError(ErrorCode.CORRUPT_MESSAGE, str(exc))


def _validate_produce_header(records: Any) -> BatchHeader:
    if records is None or len(records) == 0:
        raise KafkaError(ErrorCode.INVALID_RECORD,
                         "Produce request must contain exactly one record batch")
    try:
        header = validate_batch(records, 0, strict=True)
    except CorruptRecordError as exc:
        raise KafkaError(ErrorCode.CORRUPT_MESSAGE, str(exc)) from exc
    except DecodeError as exc:
        raise KafkaError(ErrorCode.INVALID_RECORD, str(exc)) from exc
    if header.size != len(records):
        raise KafkaError(
            ErrorCode.INVALID_RECORD,
            "Produce requests with version 3+ must contain exactly one record batch per "
            "partition",
        )
    return header
