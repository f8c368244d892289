"""Value types that cross the storage interface: what an append or a fetch returns.

The broker sees a partition only through :class:`~pykbroker.log.partition_log.PartitionLog`
(append, read, offsets, truncate, retention); these small immutable results are what it gets
back, so nothing above the log layer touches segments or files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.file_slice import FileSlice

__all__ = ["AppendInfo", "FetchData", "TimestampAndOffset", "UnexpectedAppendOffsetError"]


@dataclass(frozen=True, slots=True)
class AppendInfo:
    """Offsets and timestamps of one append, for the produce response and replication.

    ``offset_of_max_timestamp`` is the exact record when records were decoded (timestamp
    limits set), the batch holds one record or the topic uses LogAppendTime; otherwise it is
    the batch's last offset, Kafka's "shallow" offset.
    """

    first_offset: int
    last_offset: int
    log_append_time: int  # -1 unless the topic uses LogAppendTime
    log_start_offset: int
    max_timestamp: int
    offset_of_max_timestamp: int

    @property
    def next_offset(self) -> int:
        return self.last_offset + 1


@dataclass(frozen=True, slots=True)
class FetchData:
    """Whole batches exactly as stored, ready to go into a fetch response.

    ``first_offset`` is the base offset of the first batch returned (it may be below the
    fetch offset, since a fetch inside a batch returns the whole batch), or the fetch offset
    when nothing is returned; ``next_offset`` is where the following fetch should start.
    """

    first_offset: int
    next_offset: int
    data: bytes | memoryview | FileSlice

    @property
    def size(self) -> int:
        return len(self.data)


class TimestampAndOffset(NamedTuple):
    """A record's timestamp and exact offset, as ListOffsets reports them."""

    timestamp: int
    offset: int


class UnexpectedAppendOffsetError(KafkaError):
    """A follower append whose offsets do not continue the log (Kafka's exception of the
    same name); the replica fetcher answers it by truncating and fetching again."""

    def __init__(self, message: str, first_offset: int, log_end_offset: int) -> None:
        super().__init__(ErrorCode.UNKNOWN_SERVER_ERROR, message)
        self.first_offset = first_offset
        self.log_end_offset = log_end_offset
