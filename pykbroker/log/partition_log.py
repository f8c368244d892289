"""One partition's log on disk: the narrow storage interface the broker sees (UnifiedLog).

Every method is synchronous and completes its state change before returning, so trio tasks
calling it never observe a half-applied append, roll, truncation or retention pass. Appends
return once the bytes are in the OS page cache; durability comes from ``flush`` (called by
``flush_if_needed`` per flush.messages / flush.ms and for rolled segments) and from recovery,
which re-validates everything past the recovery point after an unclean shutdown.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from bisect import bisect_right
from collections.abc import Callable
from pathlib import Path

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import DecodeError, KafkaError
from pykbroker.log import appends, cleaner_swap, reader
from pykbroker.log.checkpoints import (
    CheckpointError,
    fsync_directory,
    read_partition_metadata,
    write_partition_metadata,
)
from pykbroker.log.leader_epoch import LeaderEpochCache
from pykbroker.log.log_config import LogConfig
from pykbroker.log.producer_state import ProducerStateManager
from pykbroker.log.recovery import load_log
from pykbroker.log.retention import segments_to_delete
from pykbroker.log.segment import LogSegment
from pykbroker.log.store import AppendInfo, FetchData, TimestampAndOffset
from pykbroker.log.txn_index import AbortedTxn
from pykbroker.records import (
    CONTROL_ABORT,
    BatchHeader,
    build_control_batch,
    control_type,
    end_txn_coordinator_epoch,
    iter_records,
)

__all__ = ["PartitionLog", "wall_clock_ms"]

_log = logging.getLogger(__name__)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class PartitionLog:
    """Segments of one partition plus its offsets, leader epochs and topic id."""

    def __init__(
        self,
        directory: Path,
        config: LogConfig,
        segments: list[LogSegment],
        *,
        recovery_point: int,
        log_start_offset: int,
        now_ms: Callable[[], int],
    ) -> None:
        self.directory = directory
        self.config = config
        self._segments = segments
        self._bases = [s.base_offset for s in segments]
        self._now_ms = now_ms
        self._leo = segments[-1].next_offset
        self._log_start_offset = log_start_offset
        self._recovery_point = recovery_point
        self._synced_offset = recovery_point
        self._last_flush_ms = now_ms()
        self._unsynced_dir = False
        self.leader_epoch_cache = LeaderEpochCache.load(directory)
        self.producer_state = ProducerStateManager(directory)
        # Aborted-transaction index entries in all segments (0: skip the lookup on fetch).
        self._aborted_count = sum(len(seg.txn_index.entries) for seg in segments)
        self._topic_id: uuid.UUID | None = None
        self._closed = False
        # log.page.cache.keep.bytes (-1: leave the page cache to the OS, as Kafka does).
        self.page_cache_keep_bytes = -1
        # Segments replaced by the cleaner: closed a while later (a worker thread's sync
        # may still hold them), their files already renamed away.
        self._retired: list[tuple[float, LogSegment]] = []

    @classmethod
    def open(
        cls,
        directory: Path,
        config: LogConfig,
        *,
        recovery_point: int = 0,
        log_start_offset: int | None = None,
        now_ms: Callable[[], int] = wall_clock_ms,
        had_clean_shutdown: bool = False,
    ) -> PartitionLog:
        """Open (creating or recovering) the log in ``directory``; see :mod:`.recovery`."""
        directory.mkdir(parents=True, exist_ok=True)
        loaded = load_log(
            directory,
            config,
            recovery_point=recovery_point,
            log_start_offset=log_start_offset,
            had_clean_shutdown=had_clean_shutdown,
            now_ms=now_ms(),
        )
        log = cls(
            directory,
            config,
            loaded.segments,
            recovery_point=loaded.recovery_point,
            log_start_offset=loaded.log_start_offset,
            now_ms=now_ms,
        )
        log.leader_epoch_cache.truncate_from_end(log._leo)
        log.leader_epoch_cache.truncate_from_start(log._log_start_offset)
        log._rebuild_producer_state()
        try:
            log._topic_id = read_partition_metadata(directory)
        except CheckpointError as exc:
            _log.warning("%s: ignoring unreadable partition metadata: %s", directory, exc)
        return log

    # -- offsets and properties -------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def log_start_offset(self) -> int:
        return self._log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self._leo

    @property
    def recovery_point(self) -> int:
        return self._recovery_point

    @property
    def unflushed_messages(self) -> int:
        return self._leo - self._recovery_point

    @property
    def size_in_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    @property
    def segments(self) -> list[int]:
        """Base offsets of the segments, oldest first."""
        return list(self._bases)

    @property
    def active_segment(self) -> LogSegment:
        return self._segments[-1]

    @property
    def last_modified(self) -> int:
        """Last write to the active segment, in ms since the epoch."""
        return self._segments[-1].last_modified_ms()

    @property
    def closed(self) -> bool:
        return self._closed

    def segment_objects(self) -> list[LogSegment]:
        """The segments themselves, oldest first (for the cleaner's task, on the loop)."""
        return list(self._segments)

    @property
    def topic_id(self) -> uuid.UUID | None:
        return self._topic_id

    def assign_topic_id(self, topic_id: uuid.UUID) -> None:
        """Persist ``partition.metadata``; a different existing id is INCONSISTENT_TOPIC_ID."""
        if self._topic_id == topic_id:
            return
        if self._topic_id is not None:
            raise KafkaError(
                ErrorCode.INCONSISTENT_TOPIC_ID,
                f"{self.name} has topic id {self._topic_id}, not {topic_id}",
            )
        write_partition_metadata(self.directory, topic_id)
        self._topic_id = topic_id

    def update_config(self, config: LogConfig) -> None:
        """Apply a topic config change (AlterConfigs) to future appends, rolls and retention."""
        self.config = config
        for segment in self._segments:
            segment.config = config

    def end_offset_for_epoch(self, leader_epoch: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch: ``(epoch, end offset)``, (-1, -1) when unknown."""
        return self.leader_epoch_cache.end_offset_for(leader_epoch, self._leo)

    # -- appends ----------------------------------------------------------------------------

    def append_as_leader(
        self, batch: bytearray | memoryview, *, leader_epoch: int, now_ms: int | None = None
    ) -> AppendInfo:
        """Assign offsets to one validated v2 batch in place, stamp it, append it.

        Raises KafkaError: MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE, INVALID_TIMESTAMP,
        CORRUPT_MESSAGE (not exactly one batch), KAFKA_STORAGE_ERROR (write failed).
        """
        now = self._now_ms() if now_ms is None else now_ms
        incoming = BatchHeader.parse(batch)
        if incoming.producer_id >= 0:
            duplicate = self.producer_state.check(incoming)
            if duplicate is not None:
                # A retried batch: answer with the offsets it was first written at.
                return AppendInfo(duplicate.first_offset, duplicate.last_offset, -1,
                                  self._log_start_offset, duplicate.timestamp,
                                  duplicate.last_offset)
        buf, header, info = appends.prepare_leader_batch(
            batch, self.config, self._leo, leader_epoch, now, self._log_start_offset
        )
        self._append(buf, [(0, header)], now)
        if header.producer_id >= 0:
            self.producer_state.update(header, now)
        if leader_epoch >= 0:
            self.leader_epoch_cache.assign(leader_epoch, info.first_offset)
        return info

    def append_as_follower(self, batches: bytes | bytearray | memoryview) -> AppendInfo:
        """Append replicated batches as they are (offsets already assigned by the leader).

        The first batch may start above the log end offset (the leader's log may have been
        compacted), never below; offsets must increase. Raises KafkaError(CORRUPT_MESSAGE),
        :class:`~.store.UnexpectedAppendOffsetError` or RECORD_LIST_TOO_LARGE.
        """
        now = self._now_ms()
        view = memoryview(batches)
        headers = appends.check_follower_batches(view, self.config, self._leo, self.name)
        if not headers:
            return AppendInfo(self._leo, self._leo - 1, -1, self._log_start_offset, -1, -1)
        for start, end, run in appends.group_by_size(headers, self.config.segment_bytes):
            self._append(view[start:end], run, now)
        for pos, header in headers:
            completed = self.producer_state.update(header, header.max_timestamp)
            if header.is_control:  # indexed in its own segment (a later run may have rolled)
                segment = self._segments[bisect_right(self._bases, header.base_offset) - 1]
                self._on_marker(header, completed, view[pos:pos + header.size], segment)
        for _, header in headers:
            if header.partition_leader_epoch >= 0:
                self.leader_epoch_cache.assign(header.partition_leader_epoch, header.base_offset)
        return appends.follower_append_info(headers, self._log_start_offset)

    def append_marker(self, producer_id: int, producer_epoch: int, commit: bool,
                      coordinator_epoch: int, *, leader_epoch: int) -> AppendInfo:
        """Write a COMMIT or ABORT marker ending the producer's transaction here (WriteTxnMarkers).

        Raises KafkaError(INVALID_PRODUCER_EPOCH) for an epoch older than the producer's.
        """
        self.producer_state.check_marker(producer_id, producer_epoch, coordinator_epoch)
        now = self._now_ms()
        batch = build_control_batch(producer_id, producer_epoch, commit, coordinator_epoch,
                                    base_offset=self._leo, timestamp=now,
                                    partition_leader_epoch=leader_epoch)
        header = BatchHeader.parse(batch)
        self._append(batch, [(0, header)], now)
        completed = self.producer_state.update(header, now)
        self._on_marker(header, completed, batch)
        if leader_epoch >= 0:
            self.leader_epoch_cache.assign(leader_epoch, header.base_offset)
        return AppendInfo(header.base_offset, header.last_offset, -1, self._log_start_offset,
                          now, header.last_offset)

    def _on_marker(self, header: BatchHeader, first_offset: int, batch: bytes | memoryview,
                   segment: LogSegment | None = None) -> None:
        """Remember the marker's coordinator epoch; an ABORT marker that ended a transaction
        goes into its segment's txn index."""
        try:
            record = next(iter_records(batch))
            kind = control_type(record)
            coordinator_epoch = end_txn_coordinator_epoch(record)
        except (DecodeError, StopIteration) as exc:
            _log.warning("%s: unreadable transaction marker at offset %d: %s", self.name,
                         header.base_offset, exc)
            return
        producer = self.producer_state.producers.get(header.producer_id)
        if producer is not None:
            producer.coordinator_epoch = coordinator_epoch
        if first_offset < 0 or kind != CONTROL_ABORT:
            return
        unstable = self.producer_state.first_unstable_offset()
        entry = AbortedTxn(header.producer_id, first_offset, header.last_offset,
                           unstable if unstable is not None else header.next_offset)
        (segment or self._segments[-1]).txn_index.append(entry)
        self._aborted_count += 1

    def first_unstable_offset(self) -> int | None:
        """The first offset of the oldest open transaction, never below the log start offset
        (as Kafka's ``maybeIncrementFirstUnstableOffset``); None: everything is stable."""
        unstable = self.producer_state.first_unstable_offset()
        return None if unstable is None else max(unstable, self._log_start_offset)

    def collect_aborted(self, fetch_offset: int, upper_bound: int) -> list[AbortedTxn]:
        """Aborted transactions overlapping [fetch_offset, upper_bound), for read_committed
        fetches (Kafka's ``collectAbortedTransactions``)."""
        out: list[AbortedTxn] = []
        if not self._aborted_count:
            return out
        start = max(bisect_right(self._bases, fetch_offset) - 1, 0)
        for segment in self._segments[start:]:
            if segment.txn_index.collect(fetch_offset, upper_bound, out):
                break
        return out

    def _append(self, data: bytes | bytearray | memoryview, headers: appends.Headers,
                now: int) -> None:
        last = headers[-1][1]
        segment = self._segments[-1]
        if segment.should_roll(len(data), last.last_offset, now):
            segment = self.roll()
        try:
            segment.append(data, headers, now)
        except OSError as exc:
            raise KafkaError(
                ErrorCode.KAFKA_STORAGE_ERROR, f"{self.name}: append failed: {exc}"
            ) from exc
        self._leo = last.next_offset
        if self.page_cache_keep_bytes >= 0:
            segment.drop_cached_behind(self.page_cache_keep_bytes)

    def roll(self) -> LogSegment:
        """Start a new active segment at the log end offset (no-op if the active one is empty)."""
        active = self._segments[-1]
        if active.size == 0:
            return active
        active.on_become_inactive()
        if self.producer_state.producers:
            self.producer_state.write_snapshot(self._leo)
        segment = LogSegment.create(self.directory, self._leo, self.config)
        self._segments.append(segment)
        self._bases.append(segment.base_offset)
        self._unsynced_dir = True
        return segment

    def roll_if_aged(self, now_ms: int | None = None) -> bool:
        """Roll a non-empty active segment older than segment.ms (or max.compaction.lag.ms
        when compacted; Kafka rolls only on the next append; the cleaner calls this so a
        quiet compacted log becomes cleanable)."""
        now = self._now_ms() if now_ms is None else now_ms
        active = self._segments[-1]
        if active.size and active.roll_base_ms is not None and (
            now - active.roll_base_ms > self.config.max_segment_ms - active.roll_jitter_ms
        ):
            self.roll()
            return True
        return False

    def replace_segments(self, cleaned: LogSegment, old: list[LogSegment]) -> bool:
        """Swap the cleaner's ``.cleaned`` segment in for ``old`` (see :mod:`.cleaner_swap`).

        False, touching nothing, when ``old`` is no longer a run of inactive segments of this
        log as the cleaner saw it (retention, truncation or deletion got there first); the
        caller then deletes the cleaned files.
        """
        if self._closed or not old:
            return False
        try:
            first = next(i for i, s in enumerate(self._segments) if s is old[0])
        except StopIteration:
            return False
        end = first + len(old)
        if end >= len(self._segments) or any(
            a is not b for a, b in zip(self._segments[first:end], old, strict=True)
        ):
            return False
        base = old[0].base_offset
        if cleaned.base_offset != base:
            raise ValueError(f"cleaned segment {cleaned.base_offset} cannot replace {base}")
        cleaned.close(flush=False)
        cleaner_swap.commit_swap(self.directory, base)
        cleaner_swap.retire_files(self.directory, [s.base_offset for s in old], base)
        cleaner_swap.install_swap(self.directory, base)
        segment, problem = LogSegment.open_existing(self.directory, base, self.config)
        if problem:
            _log.warning("%s: cleaned segment %d: %s; rebuilding", self.name, base, problem)
            segment.recover()
        self._segments[first:end] = [segment]
        self._bases[first:end] = [base]
        when = time.monotonic()
        self._retired.extend((when, s) for s in old)
        self._aborted_count = sum(len(seg.txn_index.entries) for seg in self._segments)
        self._unsynced_dir = True
        return True

    def close_retired(self, older_than_s: float = 10.0) -> None:
        """Close the descriptors of segments the cleaner replaced ``older_than_s`` ago."""
        if not self._retired:
            return
        limit = time.monotonic() - older_than_s
        keep = []
        for when, segment in self._retired:
            if when <= limit:
                segment.close(flush=False)
            else:
                keep.append((when, segment))
        self._retired = keep

    # -- reads ------------------------------------------------------------------------------

    def read(
        self,
        offset: int,
        max_bytes: int,
        *,
        max_offset: int | None = None,
        min_one_batch: bool = True,
        zero_copy: bool = False,
    ) -> FetchData:
        """Whole batches from the one containing ``offset``; see :mod:`.reader` for the rules.

        ``max_offset`` (exclusive, the high watermark) caps what is visible. ``zero_copy``
        lets large batches come back as a FileSlice for sendfile (fetch responses). Raises
        KafkaError(OFFSET_OUT_OF_RANGE) outside [log_start_offset, log_end_offset].
        """
        if offset < self._log_start_offset or offset > self._leo:
            raise KafkaError(
                ErrorCode.OFFSET_OUT_OF_RANGE,
                f"{self.name}: offset {offset} outside [{self._log_start_offset}, {self._leo}]",
            )
        limit = self._leo if max_offset is None else min(max_offset, self._leo)
        if offset >= limit:
            return FetchData(offset, offset, b"")
        try:
            return reader.read_batches(
                self._segments, self._bases, offset, max_bytes, limit, min_one_batch, zero_copy
            )
        except (OSError, DecodeError) as exc:
            raise KafkaError(
                ErrorCode.KAFKA_STORAGE_ERROR, f"{self.name}: read failed: {exc}"
            ) from exc

    def offset_for_timestamp(self, timestamp: int) -> TimestampAndOffset | None:
        """ListOffsets by time: the first record at or after the log start offset whose
        timestamp is >= ``timestamp``; None when there is none."""
        try:
            return reader.offset_for_timestamp(self._segments, timestamp, self._log_start_offset)
        except (OSError, DecodeError) as exc:
            raise KafkaError(
                ErrorCode.KAFKA_STORAGE_ERROR, f"{self.name}: timestamp lookup: {exc}"
            ) from exc

    def max_timestamp_and_offset(self) -> TimestampAndOffset:
        """ListOffsets MAX_TIMESTAMP (-3): the largest timestamp and the offset of the first
        record carrying it; (-1, -1) when no record has a timestamp."""
        return reader.max_timestamp_and_offset(self._segments)

    # -- truncation and retention -----------------------------------------------------------

    def delete_records_before(self, offset: int) -> int:
        """DeleteRecords: raise the log start offset to ``offset`` (the caller has checked it
        against the high watermark) and delete segments wholly below it at once."""
        if offset > self._leo:
            raise KafkaError(
                ErrorCode.OFFSET_OUT_OF_RANGE,
                f"{self.name}: cannot delete records before {offset}, beyond {self._leo}",
            )
        if offset > self._log_start_offset:
            self._log_start_offset = offset
            self._recovery_point = max(self._recovery_point, offset)
            self.leader_epoch_cache.truncate_from_start(offset)
            count = 0
            while count + 1 < len(self._bases) and self._bases[count + 1] <= offset:
                count += 1
            self._delete_oldest(count)
        return self._log_start_offset

    def apply_retention(
        self, now_ms: int | None = None, upper_bound_offset: int | None = None
    ) -> int:
        """One retention pass (see :func:`.retention.segments_to_delete`); returns the number
        of segments deleted. ``upper_bound_offset`` is the high watermark (default: log end
        offset). When every segment goes, an empty active segment is rolled first, as Kafka
        does; the log start offset then moves to the first remaining segment."""
        now = self._now_ms() if now_ms is None else now_ms
        upper = self._leo if upper_bound_offset is None else upper_bound_offset
        count = segments_to_delete(
            self._segments, self.config, now, self._leo, self._log_start_offset, upper
        )
        if not count:
            return 0
        if count == len(self._segments):
            self.roll()
        self._delete_oldest(count)
        if self._bases[0] > self._log_start_offset:
            self._log_start_offset = self._bases[0]
            self._recovery_point = max(self._recovery_point, self._log_start_offset)
            self.leader_epoch_cache.truncate_from_start(self._log_start_offset)
        return count

    def _delete_oldest(self, count: int) -> None:
        for segment in self._segments[:count]:
            _log.info("%s: deleting segment %d", self.name, segment.base_offset)
            segment.delete()
        del self._segments[:count]
        del self._bases[:count]
        self._unsynced_dir = True

    def truncate_to(self, offset: int) -> bool:
        """Remove everything from the batch containing ``offset`` on (follower truncation);
        False when ``offset`` is at or past the log end offset.

        Epochs starting at or past the log end go even then (as Kafka's truncateTo): a
        leader elected and deposed before appending left an epoch with no records, which
        would otherwise make this follower diverge again from every fetch."""
        if offset < 0:
            raise ValueError(f"cannot truncate to negative offset {offset}")
        if offset >= self._leo:
            self.leader_epoch_cache.truncate_from_end(self._leo)
            return False
        if self._bases[0] > offset:
            self.truncate_fully_and_start_at(offset)
            return True
        keep = bisect_right(self._bases, offset)
        for segment in self._segments[keep:]:
            segment.delete()
        del self._segments[keep:]
        del self._bases[keep:]
        self._unsynced_dir = True
        self._segments[-1].truncate_to(offset)
        self._leo = self._segments[-1].next_offset
        self._log_start_offset = min(self._log_start_offset, self._leo)
        self._recovery_point = min(self._recovery_point, self._leo)
        self._synced_offset = min(self._synced_offset, self._leo)
        self.leader_epoch_cache.truncate_from_end(self._leo)
        self._rebuild_producer_state()
        return True

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Delete all data and restart the log, empty, at ``offset``."""
        for segment in self._segments:
            segment.delete()
        self._segments = [LogSegment.create(self.directory, offset, self.config)]
        self._bases = [offset]
        self._leo = self._log_start_offset = self._recovery_point = offset
        self._synced_offset = offset
        self._unsynced_dir = True
        self.leader_epoch_cache.clear()
        self.producer_state.delete_snapshots()
        self.producer_state.truncate()

    # -- durability -------------------------------------------------------------------------

    def flush(self, offset: int | None = None) -> None:
        """fsync segments (log and indexes) holding offsets below ``offset`` (default: all)
        and advance the recovery point to it."""
        target = self._leo if offset is None else min(offset, self._leo)
        for segment in self._segments:
            if offset is None or segment.base_offset < target:
                segment.flush()
        if self._unsynced_dir:
            fsync_directory(self.directory)
            self._unsynced_dir = False
        self._recovery_point = max(self._recovery_point, target)
        if offset is None:
            self._last_flush_ms = self._now_ms()

    @property
    def durable_offset(self) -> int:
        """Offsets below this are on disk (at least the log data): what acks may promise."""
        return max(self._recovery_point, self._synced_offset)

    def sync_data(self, offset: int) -> None:
        """Make the records below ``offset`` durable for an acknowledgement (flush.messages):
        one fdatasync of each log file concerned, no index fsyncs. The recovery point is left
        to :meth:`flush`; recovery re-validates past it, keeping these records."""
        target = min(offset, self._leo)
        for segment in list(self._segments):  # a worker thread: the loop may roll meanwhile
            if segment.base_offset < target:
                segment.sync_data()
        if self._unsynced_dir:
            self._unsynced_dir = False
            try:
                fsync_directory(self.directory)
            except BaseException:
                self._unsynced_dir = True
                raise
        self._synced_offset = max(self._synced_offset, target)

    def flush_if_needed(self, now_ms: int | None = None) -> bool:
        """Flush per flush.messages / flush.ms, or flush rolled segments (Kafka does that
        right after each roll); True when something was flushed."""
        now = self._now_ms() if now_ms is None else now_ms
        self.close_retired()
        unflushed = self._leo - self._recovery_point
        if unflushed <= 0:
            self._last_flush_ms = now
            return False
        if (
            unflushed >= self.config.flush_messages
            or now - self._last_flush_ms >= self.config.flush_ms
        ):
            self.flush()
            self._last_flush_ms = now
            return True
        active_base = self._bases[-1]
        if self._recovery_point < active_base:
            self.flush(active_base)
            return True
        return False

    def close(self) -> None:
        """Flush everything and close the files."""
        if self._closed:
            return
        self._segments[-1].on_become_inactive()
        self.flush()
        if self.producer_state.producers:
            self.producer_state.write_snapshot(self._leo)
        else:
            self.producer_state.delete_snapshots()
        for segment in self._segments:
            segment.close()
        self.close_retired(-1.0)
        self._closed = True

    def delete(self) -> None:
        """Close without flushing and remove the partition directory (renamed to
        ``<topic>-<partition>.<uuid>-delete`` first, as Kafka does, so a crash midway leaves
        a directory the next start-up deletes)."""
        for segment in self._segments:
            segment.close(flush=False)
        self.close_retired(-1.0)
        self._closed = True
        doomed = self.directory.with_name(f"{self.name}.{uuid.uuid4().hex}-delete")
        os.replace(self.directory, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def _rebuild_producer_state(self) -> None:
        """Newest snapshot at or below the log end, then batch headers past it (markers are
        read whole, to restore the aborted-transaction index). A segment whose index could
        not be read is replayed from a snapshot at or below its base offset."""
        lost = [s.base_offset for s in self._segments if s.txn_index.needs_rebuild]
        start = self.producer_state.load_snapshot(min(lost, default=self._leo))
        for segment in self._segments:
            if segment.next_offset <= start:
                continue
            for pos, header in segment.scan():
                if header.base_offset >= start and header.producer_id >= 0:
                    completed = self.producer_state.update(header, header.max_timestamp)
                    if header.is_control:
                        self._on_marker(header, completed, segment.read(pos, header.size),
                                        segment)
        for segment in self._segments:
            segment.txn_index.needs_rebuild = False
        self._aborted_count = sum(len(seg.txn_index.entries) for seg in self._segments)

    def __repr__(self) -> str:
        return (
            f"PartitionLog({self.name!r}, log_start_offset={self._log_start_offset}, "
            f"log_end_offset={self._leo}, segments={len(self._segments)})"
        )
