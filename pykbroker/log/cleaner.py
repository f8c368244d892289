"""The log cleaner's work on one log (Kafka's ``Cleaner``): offset map, groups, rewrite.

A :class:`CleanTask` is taken on the event loop (:func:`take_task`): the segments below the
first uncleanable offset, each read through a duplicate of its file descriptor so retention
or truncation closing a segment never pulls a file from under the cleaner, plus the log's
aborted transactions and active producers. The cleaner thread then builds the offset map of
the dirty section ([first dirty, first uncleanable): the newest offset of each key outside
aborted transactions), groups the segments below the mapped end so that small results merge
(each group within segment.bytes, its index sizes and an int32 offset span), and writes each
group into one ``<base>.log.cleaned`` segment (``.index.cleaned`` etc.) with the batches
:func:`~.cleaner_filter.filter_batch` keeps, flushed. Offsets never change. The swap of a
cleaned group into the log is the log's (:meth:`PartitionLog.replace_segments`), made on the
event loop, so appends, reads and retention never see a half-replaced log.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from pykbroker.errors import CorruptRecordError, DecodeError
from pykbroker.log.cleaner_filter import CleanerStats, FilterContext, codec_for, filter_batch
from pykbroker.log.cleaner_swap import CleaningAbortedError
from pykbroker.log.cleaner_txn import CleanedTransactionMetadata, collect_aborted
from pykbroker.log.log_config import LogConfig
from pykbroker.log.offset_map import OffsetMap
from pykbroker.log.recovery import CLEANED_SUFFIX
from pykbroker.log.segment import LogSegment
from pykbroker.log.txn_index import AbortedTxn
from pykbroker.records import BatchHeader, iter_records
from pykbroker.records.batch import BATCH_OVERHEAD, HEADER, MIN_BATCH_LENGTH

if TYPE_CHECKING:
    from pykbroker.log.partition_log import PartitionLog

__all__ = [
    "CleanTask",
    "Cleaner",
    "CleaningAbortedError",
    "SegmentSource",
    "Throttler",
    "take_task",
]

_INT32_MAX: Final = 2**31 - 1
_OFFSET_ENTRY: Final = 8
_TIME_ENTRY: Final = 12


@dataclass(slots=True)
class SegmentSource:
    """One segment as the cleaner reads it: its own descriptor, sizes as at the task."""

    segment: LogSegment
    base_offset: int
    end_offset: int  # the next segment's base offset
    next_offset: int  # one past the segment's last batch
    size: int
    fd: int
    last_modified_ms: int
    index_entries: int
    time_index_entries: int

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


@dataclass(slots=True)
class CleanTask:
    """What one cleaning needs from the log, taken on the event loop."""

    log: PartitionLog
    directory: Path
    config: LogConfig
    first_dirty: int
    first_uncleanable: int
    now_ms: int
    sources: list[SegmentSource]
    aborted: list[AbortedTxn]
    active_producers: dict[int, tuple[int, int]]

    def close(self) -> None:
        for source in self.sources:
            source.close()

    @property
    def clean_bytes(self) -> int:
        return sum(s.size for s in self.sources if s.end_offset <= self.first_dirty)

    @property
    def cleanable_bytes(self) -> int:
        return sum(s.size for s in self.sources if s.end_offset > self.first_dirty)


def take_task(log: PartitionLog, first_dirty: int, first_uncleanable: int,
              now_ms: int) -> CleanTask:
    """Capture the segments wholly below ``first_uncleanable`` (a segment base offset) and the
    transaction and producer state; call on the event loop."""
    segments = log.segment_objects()
    sources: list[SegmentSource] = []
    for i, segment in enumerate(segments[:-1]):
        following = segments[i + 1]
        if following.base_offset > first_uncleanable:
            break
        sources.append(SegmentSource(
            segment, segment.base_offset, following.base_offset, segment.next_offset,
            segment.size, os.dup(segment.fd), segment.last_modified_ms(),
            len(segment.offset_index), len(segment.time_index)))
    aborted = [e for s in segments for e in s.txn_index.entries]
    active = {
        pid: (entry.last_offset, entry.epoch)
        for pid, entry in log.producer_state.producers.items()
    }
    return CleanTask(log, log.directory, log.config, first_dirty, first_uncleanable, now_ms,
                     sources, aborted, active)


class Throttler:
    """log.cleaner.io.max.bytes.per.second: sleep once the cleaner's I/O runs ahead."""

    def __init__(self, bytes_per_second: float,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate = bytes_per_second
        self._sleep = sleep
        self._start = time.monotonic()
        self._bytes = 0.0

    def maybe_throttle(self, size: int) -> None:
        if self.rate <= 0 or self.rate >= 1e300:
            return
        self._bytes += size
        now = time.monotonic()
        elapsed = now - self._start
        if elapsed > 1.0 and self._bytes <= self.rate:  # start a new window
            self._start, self._bytes = now, float(size)
            return
        ahead = self._bytes / self.rate - elapsed
        if ahead > 0.001:
            self._sleep(ahead)


def _batches(source: SegmentSource, chunk: int,
             throttle: Throttler) -> Iterator[tuple[bytes, int, BatchHeader]]:
    """``(buffer, position in it, header)`` for each batch of ``source``, reading ``chunk``
    bytes at a time (more for a batch larger than that)."""
    pos = 0
    end = source.size
    while pos < end:
        buf = os.pread(source.fd, min(max(chunk, BATCH_OVERHEAD), end - pos), pos)
        throttle.maybe_throttle(len(buf))
        off = 0
        while len(buf) - off >= BATCH_OVERHEAD:
            header = BatchHeader._make(HEADER.unpack_from(buf, off))
            if header.batch_length < MIN_BATCH_LENGTH or pos + off + header.size > end:
                raise CorruptRecordError(
                    f"segment {source.base_offset}: bad batch at position {pos + off}")
            if off + header.size > len(buf):
                if off == 0:  # a batch larger than the chunk: read it whole
                    buf = os.pread(source.fd, header.size, pos)
                    throttle.maybe_throttle(len(buf))
                    yield buf, 0, header
                    off = header.size
                break
            yield buf, off, header
            off += header.size
        if off == 0:
            raise CorruptRecordError(f"segment {source.base_offset}: torn batch at {pos}")
        pos += off


@dataclass(slots=True)
class CleaningPlan:
    """The mapped dirty section and the groups to rewrite."""

    end_offset: int
    groups: list[list[SegmentSource]]
    txn: CleanedTransactionMetadata = field(default_factory=CleanedTransactionMetadata)


class Cleaner:
    """One cleaner thread's reusable state: its offset map, buffers and throttle."""

    def __init__(
        self,
        *,
        dedupe_buffer_size: int = 128 * 1024 * 1024,
        load_factor: float = 0.9,
        io_buffer_size: int = 512 * 1024,
        throttler: Throttler | None = None,
        check_done: Callable[[], None] = lambda: None,
    ) -> None:
        self.offset_map = OffsetMap(dedupe_buffer_size, load_factor)
        self.io_buffer_size = max(io_buffer_size, BATCH_OVERHEAD)
        self.throttler = throttler or Throttler(0)
        self.check_done = check_done

    # -- the offset map -----------------------------------------------------------------------

    def plan(self, task: CleanTask, stats: CleanerStats) -> CleaningPlan:
        """Build the offset map over the dirty section, then group what gets rewritten."""
        stats.start_s = time.monotonic()
        offset_map = self.offset_map
        offset_map.clear()
        offset_map.update_latest_offset(task.first_dirty - 1)
        txn = CleanedTransactionMetadata()
        txn.add_aborted(collect_aborted(task.aborted, task.first_dirty, task.first_uncleanable))
        for source in task.sources:
            if source.end_offset <= task.first_dirty:
                continue
            if self._map_segment(source, task.first_dirty, txn, stats):
                break
            offset_map.update_latest_offset(source.end_offset - 1)
        stats.map_done_s = time.monotonic()
        stats.buffer_utilization = offset_map.utilization
        end = offset_map.latest_offset + 1
        groups = group_by_size(
            [s for s in task.sources if s.base_offset < end],
            task.config.segment_bytes, task.config.segment_index_bytes)
        return CleaningPlan(end, groups)

    def _map_segment(self, source: SegmentSource, start: int, txn: CleanedTransactionMetadata,
                     stats: CleanerStats) -> bool:
        """Map the keys of one segment; True when the map filled up inside it."""
        offset_map = self.offset_map
        for buf, pos, header in _batches(source, self.io_buffer_size, self.throttler):
            self.check_done()
            stats.map_bytes_read += header.size
            batch = memoryview(buf)[pos:pos + header.size]
            if header.is_control:
                txn.on_control_batch(header, batch)
                stats.map_messages_read += 1
            elif txn.on_batch(header):
                stats.map_messages_read += header.records_count
            elif header.last_offset >= start:
                try:
                    for record in iter_records(batch):
                        stats.map_messages_read += 1
                        if record.key is not None and record.offset >= start:
                            if not offset_map.put(record.key, record.offset):
                                return True
                except DecodeError as exc:
                    raise CorruptRecordError(
                        f"segment {source.base_offset}: batch at offset "
                        f"{header.base_offset}: {exc}") from exc
            if header.last_offset >= start:
                offset_map.update_latest_offset(header.last_offset)
        return False

    # -- rewriting ----------------------------------------------------------------------------

    def clean_group(self, task: CleanTask, plan: CleaningPlan, group: Sequence[SegmentSource],
                    stats: CleanerStats) -> tuple[LogSegment, int]:
        """Write ``group`` into one flushed ``.cleaned`` segment; returns it (closed for
        writes by its caller) and the smallest delete horizon it holds (-1: none)."""
        config = task.config
        cleaned = LogSegment.create(task.directory, group[0].base_offset, config, CLEANED_SUFFIX)
        try:
            plan.txn.cleaned_index = cleaned.txn_index
            ctx = FilterContext(
                self.offset_map, plan.txn, task.active_producers, task.now_ms,
                config.delete_retention_ms, codec_for(config.compression_type), stats,
                retain_end=group[-1].next_offset)
            for source in group:
                plan.txn.add_aborted(
                    collect_aborted(task.aborted, source.base_offset, source.end_offset))
                self._clean_into(source, cleaned, ctx)
            cleaned.on_become_inactive()
            cleaned.flush()
            mtime_ns = group[-1].last_modified_ms * 1_000_000
            os.utime(cleaned.log_path, ns=(mtime_ns, mtime_ns))
        except BaseException:
            cleaned.delete()
            raise
        return cleaned, ctx.min_horizon

    def _clean_into(self, source: SegmentSource, dest: LogSegment, ctx: FilterContext) -> None:
        out = bytearray()
        positions: list[tuple[int, BatchHeader]] = []
        for buf, pos, header in _batches(source, self.io_buffer_size, self.throttler):
            self.check_done()
            kept = filter_batch(buf, pos, header, ctx)
            if kept is None:
                continue
            positions.append((len(out), BatchHeader._make(HEADER.unpack_from(kept, 0))))
            out += kept
            if len(out) >= self.io_buffer_size:
                self._write(dest, out, positions, ctx.now_ms)
                out, positions = bytearray(), []
        if out:
            self._write(dest, out, positions, ctx.now_ms)

    def _write(self, dest: LogSegment, data: bytearray, positions: list[tuple[int, BatchHeader]],
               now_ms: int) -> None:
        dest.append(data, positions, now_ms)
        self.throttler.maybe_throttle(len(data))


def group_by_size(sources: Sequence[SegmentSource], max_size: int,
                  max_index_size: int) -> list[list[SegmentSource]]:
    """Kafka's ``groupSegmentsBySize``: consecutive segments whose logs fit in ``max_size``,
    whose indexes fit in ``max_index_size`` and whose offsets fit an int32 from the group's
    base."""
    groups: list[list[SegmentSource]] = []
    i = 0
    while i < len(sources):
        group = [sources[i]]
        size = sources[i].size
        index = sources[i].index_entries * _OFFSET_ENTRY
        time_index = sources[i].time_index_entries * _TIME_ENTRY
        i += 1
        while i < len(sources):
            nxt = sources[i]
            if (
                size + nxt.size > max_size
                or index + nxt.index_entries * _OFFSET_ENTRY > max_index_size
                or time_index + nxt.time_index_entries * _TIME_ENTRY > max_index_size
                or (nxt.size and nxt.end_offset - 1 - group[0].base_offset > _INT32_MAX)
            ):
                break
            group.append(nxt)
            size += nxt.size
            index += nxt.index_entries * _OFFSET_ENTRY
            time_index += nxt.time_index_entries * _TIME_ENTRY
            i += 1
        groups.append(group)
    return groups


__all__ += ["CleaningPlan", "group_by_size"]
