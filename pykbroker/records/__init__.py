"""Kafka v2 record batches as bytes: header, CRC-32C, in-place patching, records, codecs.

Pure functions over ``bytes``/``bytearray``/``memoryview`` (no I/O, no trio), so the produce
and fetch paths can keep batches as the bytes clients sent and the segment files hold.
Malformed input raises :class:`~pykbroker.errors.DecodeError` or its subclass
:class:`~pykbroker.errors.CorruptRecordError`, nothing else.
"""

from pykbroker.records.batch import (
    BATCH_OVERHEAD,
    CREATE_TIME,
    DELETE_HORIZON_FLAG,
    LOG_APPEND_TIME,
    BatchHeader,
    compute_crc,
    iter_batches,
    set_base_offset,
    set_max_timestamp,
    set_partition_leader_epoch,
    valid_prefix_length,
    validate_batch,
)
from pykbroker.records.builder import (
    NO_TIMESTAMP,
    BatchBuilder,
    NewRecord,
    build_batch,
    build_control_batch,
    build_empty_batch,
)
from pykbroker.records.compression import (
    DEFAULT_MAX_DECOMPRESSED_SIZE,
    GZIP,
    LZ4,
    NONE,
    SNAPPY,
    ZSTD,
    compress,
    decompress,
)
from pykbroker.records.record import (
    CONTROL_ABORT,
    CONTROL_COMMIT,
    Record,
    control_type,
    end_txn_coordinator_epoch,
    iter_records,
)

__all__ = [
    "BATCH_OVERHEAD",
    "CONTROL_ABORT",
    "CONTROL_COMMIT",
    "CREATE_TIME",
    "DELETE_HORIZON_FLAG",
    "DEFAULT_MAX_DECOMPRESSED_SIZE",
    "GZIP",
    "LOG_APPEND_TIME",
    "LZ4",
    "NONE",
    "NO_TIMESTAMP",
    "SNAPPY",
    "ZSTD",
    "BatchBuilder",
    "BatchHeader",
    "NewRecord",
    "Record",
    "build_batch",
    "build_control_batch",
    "build_empty_batch",
    "compress",
    "compute_crc",
    "control_type",
    "decompress",
    "end_txn_coordinator_epoch",
    "iter_batches",
    "iter_records",
    "set_base_offset",
    "set_max_timestamp",
    "set_partition_leader_epoch",
    "valid_prefix_length",
    "validate_batch",
]
