"""Partition logs in Kafka's own on-disk format: segments, sparse indexes, recovery.

The broker sees :class:`PartitionLog` (append, read, offsets, truncation, retention, flush)
and :class:`LogManager` (every partition of this broker, checkpoints, start-up loading).
Everything here is synchronous: each call finishes its state change before it returns, so
trio tasks can call it without locks.
"""

from pykbroker.log.checkpoints import (
    CheckpointError,
    InconsistentBrokerIdError,
    new_cluster_id,
    read_or_create_meta,
    topic_id_from_str,
    topic_id_to_str,
)
from pykbroker.log.leader_epoch import LeaderEpochCache
from pykbroker.log.log_config import LONG_MAX, LogConfig
from pykbroker.log.log_manager import InconsistentClusterIdError, LogManager, parse_partition_dir
from pykbroker.log.partition_log import PartitionLog
from pykbroker.log.store import (
    AppendInfo,
    FetchData,
    TimestampAndOffset,
    UnexpectedAppendOffsetError,
)

__all__ = [
    "LONG_MAX",
    "AppendInfo",
    "CheckpointError",
    "FetchData",
    "InconsistentBrokerIdError",
    "InconsistentClusterIdError",
    "LeaderEpochCache",
    "LogConfig",
    "LogManager",
    "PartitionLog",
    "TimestampAndOffset",
    "UnexpectedAppendOffsetError",
    "new_cluster_id",
    "parse_partition_dir",
    "read_or_create_meta",
    "topic_id_from_str",
    "topic_id_to_str",
]
