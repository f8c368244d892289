"""Which log to clean next and how far cleaning got (Kafka's LogCleanerManager).

Progress per partition is the first dirty offset, kept in ``cleaner-offset-checkpoint`` in
each log directory (Kafka's file and format). A compacted log's cleanable section runs from
there to its first uncleanable offset: the lowest of the active segment's base, the last
stable offset (never past the high watermark) and the first segment newer than
min.compaction.lag.ms, rounded down to a segment base. The dirtiest log whose cleanable share
of bytes passes min.cleanable.dirty.ratio is cleaned first; a log whose oldest dirty batch is
older than max.compaction.lag.ms, or whose retained tombstones and markers have passed their
delete horizon, is cleaned whatever its ratio.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pykbroker.errors import DecodeError
from pykbroker.log.checkpoints import (
    CheckpointError,
    read_offset_checkpoint,
    write_offset_checkpoint,
)
from pykbroker.log.log_config import LONG_MAX
from pykbroker.log.partition_log import PartitionLog
from pykbroker.log.segment import LogSegment
from pykbroker.records import BATCH_OVERHEAD, BatchHeader

__all__ = ["CLEANER_CHECKPOINT", "LogCleanerManager", "LogToClean", "cleanable_offsets"]

CLEANER_CHECKPOINT: Final = "cleaner-offset-checkpoint"

TopicPartition = tuple[str, int]
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LogToClean:
    tp: TopicPartition
    log: PartitionLog
    first_dirty: int
    first_uncleanable: int
    clean_bytes: int
    cleanable_bytes: int
    need_now: bool

    @property
    def ratio(self) -> float:
        total = self.clean_bytes + self.cleanable_bytes
        return self.cleanable_bytes / total if total else 0.0


def cleanable_offsets(log: PartitionLog, checkpoint: int | None, now_ms: int,
                      high_watermark: int | None) -> tuple[int, int, bool]:
    """``(first dirty, first uncleanable, checkpoint was reset)``; the second is a segment
    base offset at or above the first."""
    start, end = log.log_start_offset, log.log_end_offset
    first_dirty = start if checkpoint is None else checkpoint
    reset = False
    if first_dirty < start or first_dirty > end:
        first_dirty, reset = start, checkpoint is not None
    segments = log.segment_objects()
    limit = segments[-1].base_offset
    stable = end if high_watermark is None else min(end, high_watermark)
    unstable = log.first_unstable_offset()
    if unstable is not None:
        stable = min(stable, unstable)
    limit = min(limit, stable)
    lag = max(log.config.min_compaction_lag_ms, 0)
    if lag > 0:
        for i, segment in enumerate(segments[:-1]):
            if segments[i + 1].base_offset > first_dirty and (
                segment.max_timestamp > now_ms - lag
            ):
                limit = min(limit, segment.base_offset)
                break
    base = segments[0].base_offset
    for segment in segments:  # round down to the base of the segment holding the limit
        if segment.base_offset <= limit:
            base = segment.base_offset
    return first_dirty, max(first_dirty, base), reset


def _first_batch_timestamp(segment: LogSegment) -> int:
    try:
        return BatchHeader.parse(segment.read(0, BATCH_OVERHEAD)).max_timestamp
    except (DecodeError, OSError):
        return -1


def _max_lag_exceeded(log: PartitionLog, first_dirty: int, now_ms: int) -> bool:
    max_lag = log.config.max_compaction_lag_ms
    if max_lag >= LONG_MAX:
        return False
    segments = log.segment_objects()
    for i, segment in enumerate(segments[:-1]):
        if segments[i + 1].base_offset <= first_dirty or not segment.size:
            continue
        stamp = _first_batch_timestamp(segment)
        if 0 < stamp < now_ms - max_lag:
            return True
    return False


class LogCleanerManager:
    """Cleaner checkpoints, in-progress partitions and the choice of the next log."""

    def __init__(self, log_dirs: list[Path], *, started_ms: int = 0) -> None:
        self.log_dirs = list(log_dirs)
        self._checkpoints: dict[Path, dict[TopicPartition, int]] = {}
        for log_dir in self.log_dirs:
            try:
                self._checkpoints[log_dir] = read_offset_checkpoint(log_dir / CLEANER_CHECKPOINT)
            except (CheckpointError, OSError) as exc:
                _log.warning("ignoring unreadable %s: %s", log_dir / CLEANER_CHECKPOINT, exc)
                self._checkpoints[log_dir] = {}
        self.in_progress: set[TopicPartition] = set()
        # Earliest delete horizon stamped on what a cleaning kept (-1: none). Unknown after
        # a restart: assume tombstones stamped before it expire delete.retention.ms later.
        self._horizons: dict[TopicPartition, int] = {}
        self._started_ms = started_ms
        self.uncleanable: dict[TopicPartition, float] = {}
        self.dirtiest_ratio = 0.0
        self.max_compaction_delay_ms = 0
        self._write_lock = threading.Lock()

    def checkpoint_of(self, log: PartitionLog, tp: TopicPartition) -> int | None:
        return self._checkpoints.get(log.directory.parent, {}).get(tp)

    def horizon_due(self, tp: TopicPartition, log: PartitionLog, now_ms: int) -> bool:
        horizon = self._horizons.get(tp)
        if horizon is None:
            horizon = self._started_ms + log.config.delete_retention_ms
        return 0 <= horizon <= now_ms

    def grab_filthiest(
        self,
        logs: Mapping[TopicPartition, PartitionLog],
        now_ms: int,
        high_watermark: Callable[[TopicPartition], int | None] = lambda tp: None,
        monotonic_s: float = 0.0,
    ) -> LogToClean | None:
        """Pick the dirtiest cleanable compacted log and mark it in progress (None: none).

        Also rolls the aged active segments of compacted logs (segment.ms)."""
        candidates: list[LogToClean] = []
        for tp, log in logs.items():
            if not log.config.compact_enabled or log.closed or tp in self.in_progress:
                continue
            if self.uncleanable.get(tp, 0.0) > monotonic_s:
                continue
            log.roll_if_aged(now_ms)
            checkpoint = self.checkpoint_of(log, tp)
            first_dirty, uncleanable, _ = cleanable_offsets(log, checkpoint, now_ms,
                                                            high_watermark(tp))
            clean = cleanable = 0
            for segment in log.segment_objects()[:-1]:
                if segment.base_offset < first_dirty:
                    clean += segment.size
                elif segment.base_offset < uncleanable:
                    cleanable += segment.size
            need_now = (cleanable > 0 and _max_lag_exceeded(log, first_dirty, now_ms)) or (
                clean > 0 and self.horizon_due(tp, log, now_ms))
            if clean + cleanable > 0:
                candidates.append(LogToClean(tp, log, first_dirty, uncleanable, clean,
                                             cleanable, need_now))
        self.dirtiest_ratio = max((c.ratio for c in candidates), default=0.0)
        ready = [c for c in candidates
                 if c.need_now or c.ratio > c.log.config.min_cleanable_dirty_ratio]
        if not ready:
            return None
        chosen = max(ready, key=lambda c: c.ratio)
        self.in_progress.add(chosen.tp)
        return chosen

    def done_cleaning(self, tp: TopicPartition, log: PartitionLog, end_offset: int | None,
                      min_horizon: int = -1) -> None:
        """Record the end of a cleaning (``end_offset`` None: it did not complete)."""
        self.in_progress.discard(tp)
        if end_offset is None:
            return
        with self._write_lock:
            self._checkpoints.setdefault(log.directory.parent, {})[tp] = end_offset
        self._horizons[tp] = min_horizon

    def mark_uncleanable(self, tp: TopicPartition, until_s: float) -> None:
        self.in_progress.discard(tp)
        self.uncleanable[tp] = until_s

    def forget(self, tp: TopicPartition) -> None:
        """A deleted partition: drop its progress."""
        with self._write_lock:
            for entries in self._checkpoints.values():
                entries.pop(tp, None)
        self._horizons.pop(tp, None)

    def write_checkpoint(self, log_dir: Path,
                         live: Callable[[TopicPartition], bool] = lambda tp: True) -> None:
        """Write ``cleaner-offset-checkpoint`` of ``log_dir`` (safe from any thread)."""
        with self._write_lock:
            entries = {tp: o for tp, o in self._checkpoints.get(log_dir, {}).items() if live(tp)}
            write_offset_checkpoint(log_dir / CLEANER_CHECKPOINT, entries)
