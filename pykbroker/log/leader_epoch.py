"""The leader epoch cache: which leader epoch began at which offset (KIP-101 / KIP-279).

Followers truncate by asking the leader where their last epoch ends (OffsetForLeaderEpoch);
consumers use the same answer to detect log truncation. Persisted as Kafka's
``leader-epoch-checkpoint``: ``0`` / count / ``epoch startOffset`` lines, rewritten atomically
whenever the cache changes (rare: once per leader change, truncation or start-offset move).
"""

from __future__ import annotations

import logging
from bisect import bisect_left, bisect_right
from pathlib import Path
from typing import Final, NamedTuple

from pykbroker.log.checkpoints import (
    CheckpointError,
    read_lines_checkpoint,
    write_lines_checkpoint,
)

__all__ = [
    "LEADER_EPOCH_CHECKPOINT",
    "UNDEFINED_EPOCH",
    "UNDEFINED_EPOCH_OFFSET",
    "EpochEntry",
    "LeaderEpochCache",
]

LEADER_EPOCH_CHECKPOINT: Final = "leader-epoch-checkpoint"
UNDEFINED_EPOCH: Final = -1
UNDEFINED_EPOCH_OFFSET: Final = -1

_log = logging.getLogger(__name__)


class EpochEntry(NamedTuple):
    epoch: int
    start_offset: int


class LeaderEpochCache:
    """Epochs with strictly increasing epoch and start offset, mirrored to the checkpoint."""

    def __init__(self, path: Path, entries: list[EpochEntry] | None = None) -> None:
        self.path = path
        self._entries: list[EpochEntry] = list(entries or [])

    @classmethod
    def load(cls, directory: Path) -> LeaderEpochCache:
        """Read ``leader-epoch-checkpoint``; a corrupt file is logged and starts empty (the
        follower then truncates by high watermark, which is safe)."""
        path = directory / LEADER_EPOCH_CHECKPOINT
        try:
            rows = read_lines_checkpoint(path, 2) or []
            entries = [EpochEntry(int(e), int(o)) for e, o in rows]
        except (CheckpointError, ValueError) as exc:
            _log.warning("%s: ignoring unreadable leader epoch checkpoint: %s", directory, exc)
            entries = []
        cache = cls(path)
        for entry in entries:
            cache._assign(entry.epoch, entry.start_offset)
        return cache

    @property
    def entries(self) -> list[EpochEntry]:
        return list(self._entries)

    def latest_epoch(self) -> int | None:
        return self._entries[-1].epoch if self._entries else None

    def latest_entry(self) -> EpochEntry | None:
        return self._entries[-1] if self._entries else None

    def assign(self, epoch: int, start_offset: int) -> bool:
        """Record that ``epoch`` starts at ``start_offset``; True (and flushed) if it changed.

        Kafka's rule: a no-op unless the epoch is new or starts earlier; entries that are no
        longer monotonic with the new one (higher-or-equal epoch or start offset) are removed.
        """
        if epoch < 0 or start_offset < 0:
            raise ValueError(f"invalid leader epoch entry ({epoch}, {start_offset})")
        if not self._assign(epoch, start_offset):
            return False
        self.flush()
        return True

    def _assign(self, epoch: int, start_offset: int) -> bool:
        last = self._entries[-1] if self._entries else None
        if last is not None and epoch == last.epoch and start_offset >= last.start_offset:
            return False
        while self._entries and (
            self._entries[-1].epoch >= epoch or self._entries[-1].start_offset >= start_offset
        ):
            removed = self._entries.pop()
            if removed.epoch != epoch:
                _log.info("%s: removing leader epoch entry %s", self.path.parent, removed)
        self._entries.append(EpochEntry(epoch, start_offset))
        return True

    def end_offset_for(self, requested_epoch: int, log_end_offset: int) -> tuple[int, int]:
        """``(epoch, end offset)`` for OffsetForLeaderEpoch, as Kafka's ``endOffsetFor``.

        The end offset of an epoch is the start offset of the next higher epoch (or the log
        end offset for the latest); for an epoch we never saw, the largest smaller epoch is
        reported; an epoch below all known ones reports itself with the first start offset.
        """
        if requested_epoch == UNDEFINED_EPOCH or not self._entries:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if self._entries[-1].epoch == requested_epoch:
            return requested_epoch, log_end_offset
        epochs = [e.epoch for e in self._entries]
        higher = bisect_right(epochs, requested_epoch)
        if higher == len(epochs):
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if higher == 0:
            return requested_epoch, self._entries[0].start_offset
        return self._entries[higher - 1].epoch, self._entries[higher].start_offset

    def epoch_for_offset(self, offset: int) -> int | None:
        """The epoch whose range holds ``offset`` (ListOffsets reports it), or None."""
        starts = [e.start_offset for e in self._entries]
        i = bisect_right(starts, offset) - 1
        return self._entries[i].epoch if i >= 0 else None

    def truncate_from_end(self, end_offset: int) -> None:
        """Drop epochs starting at or after ``end_offset`` (the log was truncated there)."""
        starts = [e.start_offset for e in self._entries]
        i = bisect_left(starts, end_offset)
        if end_offset >= 0 and i < len(self._entries):
            del self._entries[i:]
            self.flush()

    def truncate_from_start(self, start_offset: int) -> None:
        """Forget epochs wholly below ``start_offset``; the last of them now starts there."""
        starts = [e.start_offset for e in self._entries]
        i = bisect_right(starts, start_offset)
        if i == 0:
            return
        kept = self._entries[i - 1]
        if i == 1 and kept.start_offset == start_offset:
            return
        self._entries[:i] = [EpochEntry(kept.epoch, start_offset)]
        self.flush()

    def clear(self) -> None:
        if self._entries:
            self._entries.clear()
            self.flush()

    def flush(self) -> None:
        write_lines_checkpoint(self.path, self._entries)
