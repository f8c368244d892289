"""The background log cleaner beside the event loop (Kafka's LogCleaner and its threads).

``log.cleaner.threads`` trio tasks each pick the dirtiest compacted log (on the event loop:
segment metadata only), then run the heavy work (offset map, rewriting, fsyncs) in a worker
thread and hand every finished group back to the event loop for the swap, which is a few
renames and list updates: appends, fetches and retention never wait on the cleaner and never
see a half-replaced log. In a cluster each replica cleans its own log, as in Kafka.

:func:`clean_log` is the same sequence run synchronously (tests, tools).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import trio

from pykbroker.log import cleaner_swap
from pykbroker.log.cleaner_manager import LogCleanerManager, LogToClean
from pykbroker.log.cleaner_swap import CleaningAbortedError
from pykbroker.log.log_manager import LogManager
from pykbroker.log.partition_log import PartitionLog, wall_clock_ms

if TYPE_CHECKING:  # the cleaning itself is imported when a compacted log first needs it
    from pykbroker.log.cleaner import Cleaner, CleanTask
    from pykbroker.log.cleaner_filter import CleanerStats

__all__ = ["CleanerConfig", "CleaningResult", "LogCleaner", "clean_log"]

TopicPartition = tuple[str, int]
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CleanerConfig:
    """The broker's log.cleaner.* settings."""

    enable: bool = True
    threads: int = 1
    backoff_ms: int = 15000
    dedupe_buffer_size: int = 134217728
    io_buffer_size: int = 524288
    io_buffer_load_factor: float = 0.9
    io_max_bytes_per_second: float = 1.7976931348623157e308

    @classmethod
    def from_broker(cls, get: Callable[[str], object]) -> CleanerConfig:
        def num(name: str, default: float) -> float:
            value = get(name)
            return default if value is None else float(str(value))

        enable = get("log.cleaner.enable")
        return cls(
            enable=str(enable).lower() != "false" if enable is not None else True,
            threads=max(int(num("log.cleaner.threads", 1)), 1),
            backoff_ms=int(num("log.cleaner.backoff.ms", 15000)),
            dedupe_buffer_size=int(num("log.cleaner.dedupe.buffer.size", 134217728)),
            io_buffer_size=int(num("log.cleaner.io.buffer.size", 524288)),
            io_buffer_load_factor=num("log.cleaner.io.buffer.load.factor", 0.9),
            io_max_bytes_per_second=num("log.cleaner.io.max.bytes.per.second", 1.8e308),
        )

    def new_cleaner(self, check_done: Callable[[], None] = lambda: None) -> Cleaner:
        from pykbroker.log.cleaner import Cleaner, Throttler

        threads = max(self.threads, 1)
        return Cleaner(
            dedupe_buffer_size=min(self.dedupe_buffer_size // threads, 2**31 - 1),
            load_factor=self.io_buffer_load_factor,
            io_buffer_size=max(self.io_buffer_size // threads // 2, 4096),
            throttler=Throttler(self.io_max_bytes_per_second / threads),
            check_done=check_done,
        )


@dataclass(frozen=True, slots=True)
class CleaningResult:
    first_dirty: int
    end_offset: int
    stats: CleanerStats
    min_horizon: int


def _log_result(name: str, result: CleaningResult) -> None:
    st = result.stats
    mb = 1024 * 1024
    secs = max(st.elapsed_s, 1e-9)
    _log.info(
        "Log cleaner cleaned log %s (dirty section = [%d, %d]): %.1f MB of log processed "
        "in %.1f seconds (%.1f MB/sec); start size %.1f MB (%d messages), end size %.1f MB "
        "(%d messages), %.1f%% size reduction; offset map %.1f%% full",
        name, result.first_dirty, result.end_offset, st.bytes_read / mb, st.elapsed_s,
        st.bytes_read / mb / secs, st.bytes_read / mb, st.messages_read,
        st.bytes_written / mb, st.messages_written,
        100.0 * (1 - st.recopy_ratio) if st.bytes_read else 0.0,
        100.0 * st.buffer_utilization)
    if st.invalid_messages:
        _log.warning("Log cleaner found %d records without a key in %s", st.invalid_messages,
                     name)


def clean_log(log: PartitionLog, cleaner: Cleaner, first_dirty: int, first_uncleanable: int,
              now_ms: int | None = None) -> CleaningResult:
    """Clean ``log`` synchronously over [first_dirty, first_uncleanable) (a segment base)."""
    from pykbroker.log.cleaner import take_task
    from pykbroker.log.cleaner_filter import CleanerStats

    now = wall_clock_ms() if now_ms is None else now_ms
    task = take_task(log, first_dirty, first_uncleanable, now)
    try:
        stats = CleanerStats()
        plan = cleaner.plan(task, stats)
        horizon = -1
        for group in plan.groups:
            cleaned, group_horizon = cleaner.clean_group(task, plan, group, stats)
            if not log.replace_segments(cleaned, [s.segment for s in group]):
                cleaned.close(flush=False)
                cleaner_swap.discard_cleaned(task.directory, cleaned.base_offset)
                raise CleaningAbortedError(f"{log.name} changed during cleaning")
            cleaner_swap.finish_swap(task.directory, [s.base_offset for s in group])
            horizon = _min_horizon(horizon, group_horizon)
        stats.end_s = time.monotonic()
        return CleaningResult(first_dirty, plan.end_offset, stats, horizon)
    finally:
        task.close()


def _min_horizon(a: int, b: int) -> int:
    if a < 0:
        return b
    return a if b < 0 else min(a, b)


class HasHighWatermark(Protocol):
    @property
    def high_watermark(self) -> int: ...


class LogCleaner:
    """The cleaner threads of one broker, and the figures its metrics report."""

    @classmethod
    def for_broker(cls, log_manager: LogManager,
                   partitions: Mapping[TopicPartition, HasHighWatermark],
                   get: Callable[[str], object]) -> LogCleaner:
        """The broker's cleaner: its logs, bounded by each hosted partition's high
        watermark, configured by the broker's log.cleaner.* settings."""
        def high_watermark(tp: TopicPartition) -> int | None:
            part = partitions.get(tp)
            return None if part is None else part.high_watermark

        return cls(lambda: log_manager.logs, log_manager.log_dirs,
                   CleanerConfig.from_broker(get), high_watermark=high_watermark)

    def __init__(
        self,
        logs: Callable[[], Mapping[TopicPartition, PartitionLog]],
        log_dirs: list[Path],
        config: CleanerConfig,
        *,
        high_watermark: Callable[[TopicPartition], int | None] = lambda tp: None,
        now_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self._logs = logs
        self.config = config
        self.high_watermark = high_watermark
        self._now_ms = now_ms
        self.manager = LogCleanerManager(log_dirs, started_ms=now_ms())
        self._stop = threading.Event()
        self._wake = trio.Event()
        self.last_stats: dict[int, CleanerStats] = {}
        self.cleanings = 0

    # -- metrics (what metrics.py reads) ------------------------------------------------------

    @property
    def max_clean_time_secs(self) -> float:
        """kafka_log_logcleaner_max_clean_time_secs: the longest last cleaning of a thread."""
        return max((s.elapsed_s for s in self.last_stats.values()), default=0.0)

    @property
    def cleaner_recopy_percent(self) -> float:
        """kafka_log_logcleaner_cleaner_recopy_percent: bytes written / read, in percent,
        averaged over the threads' last cleanings."""
        stats = list(self.last_stats.values())
        return 100.0 * sum(s.recopy_ratio for s in stats) / len(stats) if stats else 0.0

    @property
    def max_buffer_utilization_percent(self) -> float:
        return 100.0 * max((s.buffer_utilization for s in self.last_stats.values()),
                           default=0.0)

    @property
    def max_dirty_percent(self) -> float:
        """kafka_log_logcleanermanager_max_dirty_percent: the dirtiest compacted log's
        cleanable share of bytes at the last check, in percent."""
        return 100.0 * self.manager.dirtiest_ratio

    # -- running ------------------------------------------------------------------------------

    def wake(self) -> None:
        """Look for work now instead of after the back-off (tests, config changes)."""
        self._wake.set()

    def _check_done(self) -> None:
        if self._stop.is_set():
            raise CleaningAbortedError("log cleaner shutting down")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        if not self.config.enable:
            task_status.started()
            return
        try:
            async with trio.open_nursery() as nursery:
                for i in range(self.config.threads):
                    nursery.start_soon(self._thread, i)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._stop.set()  # worker threads stop at their next batch

    async def _thread(self, thread_id: int) -> None:
        cleaner: Cleaner | None = None  # built with the first log to clean
        while True:
            picked = self.manager.grab_filthiest(
                self._logs(), self._now_ms(), self.high_watermark, time.monotonic())
            if picked is None:
                with trio.move_on_after(self.config.backoff_ms / 1000.0):
                    await self._wake.wait()
                self._wake = trio.Event()
                continue
            try:
                if cleaner is None:
                    cleaner = self.config.new_cleaner(self._check_done)
                await self._clean(thread_id, cleaner, picked)
            except CleaningAbortedError as exc:
                _log.info("cleaning of %s aborted: %s", picked.log.name, exc)
                self.manager.done_cleaning(picked.tp, picked.log, None)
            except Exception:
                _log.exception("log cleaner failed on %s; skipping it for a while",
                               picked.log.name)
                self.manager.mark_uncleanable(
                    picked.tp, time.monotonic() + 10 * self.config.backoff_ms / 1000.0)
            except BaseException:
                self.manager.done_cleaning(picked.tp, picked.log, None)
                raise
            await trio.lowlevel.checkpoint()

    async def _clean(self, thread_id: int, cleaner: Cleaner, picked: LogToClean) -> None:
        from pykbroker.log.cleaner import take_task
        from pykbroker.log.cleaner_filter import CleanerStats

        log = picked.log
        task: CleanTask = take_task(log, picked.first_dirty, picked.first_uncleanable,
                                    self._now_ms())
        try:
            stats = CleanerStats()
            plan = await trio.to_thread.run_sync(cleaner.plan, task, stats)
            horizon = -1
            for group in plan.groups:
                cleaned = None
                try:
                    cleaned, group_horizon = await trio.to_thread.run_sync(
                        cleaner.clean_group, task, plan, group, stats)
                    swapped = log.replace_segments(cleaned, [s.segment for s in group])
                    if not swapped:
                        raise CleaningAbortedError(f"{log.name} changed during cleaning")
                    cleaned = None
                finally:
                    if cleaned is not None:
                        cleaned.close(flush=False)
                        cleaner_swap.discard_cleaned(task.directory, cleaned.base_offset)
                await trio.to_thread.run_sync(
                    cleaner_swap.finish_swap, task.directory, [s.base_offset for s in group])
                horizon = _min_horizon(horizon, group_horizon)
            stats.end_s = time.monotonic()
        finally:
            task.close()
        result = CleaningResult(picked.first_dirty, plan.end_offset, stats, horizon)
        self.manager.done_cleaning(picked.tp, log, plan.end_offset, horizon)
        logs = self._logs()
        await trio.to_thread.run_sync(self.manager.write_checkpoint, log.directory.parent,
                                      lambda tp: tp in logs)
        self.last_stats[thread_id] = stats
        self.cleanings += 1
        _log_result(log.name, result)
