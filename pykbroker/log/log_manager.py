"""All partition logs of this broker across its log directories (Kafka's LogManager).

Directory layout is Kafka's, so an operator's tools and habits carry over: one
``<topic>-<partition>`` directory per partition, and in each log directory
``recovery-point-offset-checkpoint``, ``log-start-offset-checkpoint``, ``meta.properties`` and,
after a clean shutdown, ``.kafka_cleanshutdown`` (whose presence lets start-up skip recovery).
"""

from __future__ import annotations

import logging
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Final

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError, PykbrokerError
from pykbroker.log.checkpoints import (
    CLEAN_SHUTDOWN_FILE,
    LOG_START_OFFSET_CHECKPOINT,
    RECOVERY_POINT_CHECKPOINT,
    CheckpointError,
    new_cluster_id,
    read_offset_checkpoint,
    read_or_create_meta,
    write_atomically,
    write_offset_checkpoint,
)
from pykbroker.log.log_config import LogConfig
from pykbroker.log.partition_log import PartitionLog, wall_clock_ms

__all__ = ["InconsistentClusterIdError", "LogManager", "parse_partition_dir", "read_or_create_meta"]

TopicPartition = tuple[str, int]

_LEGAL_TOPIC: Final = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
_SKIPPED_SUFFIXES: Final = ("-future", "-stray")
_DELETE_SUFFIX: Final = "-delete"

_log = logging.getLogger(__name__)


class InconsistentClusterIdError(PykbrokerError):
    """Log directories that belong to different clusters."""


def parse_partition_dir(name: str) -> TopicPartition | None:
    """``("my.topic-x", 3)`` from ``my.topic-x-3``: the partition follows the last '-'."""
    topic, sep, partition = name.rpartition("-")
    if not sep or not topic or not partition.isascii() or not partition.isdigit():
        return None
    if not _LEGAL_TOPIC.match(topic) or topic in (".", ".."):
        return None
    return topic, int(partition)


class LogManager:
    """Creates, loads, checkpoints and deletes the partition logs under ``log_dirs``."""

    def __init__(
        self,
        log_dirs: list[Path],
        default_config: LogConfig,
        *,
        now_ms: Callable[[], int] = wall_clock_ms,
        page_cache_keep_bytes: int = -1,
    ) -> None:
        """``page_cache_keep_bytes``: ``log.page.cache.keep.bytes`` for every log."""
        if not log_dirs:
            raise ValueError("at least one log directory is required")
        self.log_dirs = [Path(d) for d in log_dirs]
        for log_dir in self.log_dirs:
            log_dir.mkdir(parents=True, exist_ok=True)
        self.default_config = default_config
        self._now_ms = now_ms
        self.page_cache_keep_bytes = page_cache_keep_bytes
        self._logs: dict[TopicPartition, PartitionLog] = {}
        self._log_dir_of: dict[TopicPartition, Path] = {}

    @property
    def logs(self) -> dict[TopicPartition, PartitionLog]:
        return dict(self._logs)

    def read_or_create_meta(
        self, node_id: int, cluster_id_factory: Callable[[], str] = new_cluster_id
    ) -> str:
        """The cluster id shared by every log directory's ``meta.properties``.

        Directories without the file get one with the id found elsewhere (or a new one).
        Raises :class:`~.checkpoints.InconsistentBrokerIdError` for another broker's data and
        :class:`InconsistentClusterIdError` when directories disagree.
        """
        found: str | None = None
        for log_dir in self.log_dirs:
            first = found

            def factory(first: str | None = first) -> str:
                return first if first is not None else cluster_id_factory()

            cluster_id = read_or_create_meta(log_dir, node_id, factory)
            if found is not None and cluster_id != found:
                raise InconsistentClusterIdError(
                    f"{log_dir} belongs to cluster {cluster_id}, other log dirs to {found}"
                )
            found = cluster_id
        assert found is not None
        return found

    def load_all(
        self, config_for: Callable[[str], LogConfig] | None = None
    ) -> dict[TopicPartition, PartitionLog]:
        """Open every partition directory at start-up, using the checkpoints for recovery
        points and log start offsets and the clean-shutdown marker to skip recovery."""
        for log_dir in self.log_dirs:
            marker = log_dir / CLEAN_SHUTDOWN_FILE
            clean = marker.exists()
            recovery_points = _read_checkpoint(log_dir / RECOVERY_POINT_CHECKPOINT)
            start_offsets = _read_checkpoint(log_dir / LOG_START_OFFSET_CHECKPOINT)
            for child in sorted(log_dir.iterdir()):
                if not child.is_dir():
                    continue
                if child.name.endswith(_DELETE_SUFFIX):
                    _log.info("deleting partition directory %s left by a deletion", child)
                    shutil.rmtree(child, ignore_errors=True)
                    continue
                tp = parse_partition_dir(child.name)
                if tp is None or child.name.endswith(_SKIPPED_SUFFIXES):
                    continue
                if tp in self._logs:
                    raise PykbrokerError(
                        f"duplicate log directories for {tp}: {child} and "
                        f"{self._logs[tp].directory}"
                    )
                config = config_for(tp[0]) if config_for is not None else self.default_config
                self._logs[tp] = PartitionLog.open(
                    child,
                    config,
                    recovery_point=recovery_points.get(tp, 0),
                    log_start_offset=start_offsets.get(tp),
                    now_ms=self._now_ms,
                    had_clean_shutdown=clean,
                )
                self._logs[tp].page_cache_keep_bytes = self.page_cache_keep_bytes
                self._log_dir_of[tp] = log_dir
            marker.unlink(missing_ok=True)
        return dict(self._logs)

    def get(self, topic: str, partition: int) -> PartitionLog | None:
        return self._logs.get((topic, partition))

    def get_or_create(
        self,
        topic: str,
        partition: int,
        config: LogConfig | None = None,
        topic_id: uuid.UUID | None = None,
    ) -> PartitionLog:
        """The partition's log, created in the log directory holding the fewest partitions.

        An existing log whose stored topic id differs raises INCONSISTENT_TOPIC_ID.
        """
        tp = (topic, partition)
        log = self._logs.get(tp)
        if log is None:
            if not _LEGAL_TOPIC.match(topic) or topic in (".", "..") or partition < 0:
                raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION, f"illegal topic partition {tp}")
            counts = {d: 0 for d in self.log_dirs}
            for d in self._log_dir_of.values():
                counts[d] = counts.get(d, 0) + 1
            log_dir = min(self.log_dirs, key=lambda d: counts[d])
            log = PartitionLog.open(
                log_dir / f"{topic}-{partition}",
                config if config is not None else self.default_config,
                now_ms=self._now_ms,
            )
            log.page_cache_keep_bytes = self.page_cache_keep_bytes
            self._logs[tp] = log
            self._log_dir_of[tp] = log_dir
        elif config is not None and config != log.config:
            log.update_config(config)
        if topic_id is not None:
            log.assign_topic_id(topic_id)
        return log

    def delete(self, topic: str, partition: int) -> bool:
        """Remove the partition's log and its files (renamed to ``*-delete`` first, so a
        crash midway still completes the deletion at the next start)."""
        tp = (topic, partition)
        log = self._logs.pop(tp, None)
        self._log_dir_of.pop(tp, None)
        if log is None:
            return False
        log.delete()
        return True

    def checkpoint(self) -> None:
        """Write both offset checkpoints in every log directory."""
        for log_dir in self.log_dirs:
            mine = {tp: log for tp, log in self._logs.items() if self._log_dir_of[tp] == log_dir}
            write_offset_checkpoint(
                log_dir / RECOVERY_POINT_CHECKPOINT,
                {tp: log.recovery_point for tp, log in mine.items()},
            )
            write_offset_checkpoint(
                log_dir / LOG_START_OFFSET_CHECKPOINT,
                {tp: log.log_start_offset for tp, log in mine.items()},
            )

    def flush_if_needed(self, now_ms: int | None = None) -> int:
        """Run each log's flush policy; returns how many logs were flushed."""
        now = self._now_ms() if now_ms is None else now_ms
        return sum(1 for log in list(self._logs.values()) if log.flush_if_needed(now))

    def apply_retention(
        self,
        now_ms: int | None = None,
        high_watermark: Callable[[TopicPartition], int | None] | None = None,
    ) -> int:
        """One retention pass over every log; ``high_watermark`` bounds what may go."""
        now = self._now_ms() if now_ms is None else now_ms
        deleted = 0
        for tp, log in list(self._logs.items()):
            upper = high_watermark(tp) if high_watermark is not None else None
            deleted += log.apply_retention(now, upper)
        return deleted

    def close(self) -> None:
        """Flush and close every log, write checkpoints and the clean-shutdown markers."""
        for log in self._logs.values():
            log.close()
        self.checkpoint()
        for log_dir in self.log_dirs:
            write_atomically(log_dir / CLEAN_SHUTDOWN_FILE, '{"version":0,"brokerEpoch":-1}')
        self._logs.clear()
        self._log_dir_of.clear()


def _read_checkpoint(path: Path) -> dict[TopicPartition, int]:
    """A checkpoint, or {} when unreadable: recovery then starts from offset 0 and the log
    start offset from the first segment, both safe."""
    try:
        return read_offset_checkpoint(path)
    except (CheckpointError, OSError) as exc:
        _log.warning("ignoring unreadable checkpoint %s: %s", path, exc)
        return {}
