"""Kafka's sparse segment indexes: ``.index`` (offset -> position) and ``.timeindex``.

Both files use Kafka's big-endian entry layout, so tools such as ``kafka-dump-log`` read them:
an offset entry is int32 relative offset + int32 file position (8 bytes), a time entry is int64
timestamp + int32 relative offset (12 bytes). Entries live in memory as ``array`` columns that
``bisect`` searches directly; each new entry is written to the file at once (one small write
per ``index.interval.bytes`` of log), so the file is always exactly its entries: Kafka's
preallocation and trim-on-roll are skipped, which keeps a rolled segment's index exact-size.
An index read back from disk is never trusted blindly: :meth:`sanity_error` reports why it
must be rebuilt from the log.
"""

from __future__ import annotations

import os
import struct
import sys
from array import array
from bisect import bisect_left, bisect_right
from pathlib import Path
from typing import Final, NamedTuple

__all__ = ["OffsetIndex", "OffsetPosition", "TimeIndex", "TimestampOffset"]

_OFFSET_ENTRY: Final = struct.Struct(">ii")
_TIME_ENTRY: Final = struct.Struct(">qi")
_INT32_MAX: Final = 2**31 - 1


class OffsetPosition(NamedTuple):
    offset: int
    position: int


class TimestampOffset(NamedTuple):
    timestamp: int
    offset: int


class _IndexFile:
    """The file half of an index: open, append bytes, truncate, fsync, delete."""

    entry_size = 0

    def __init__(self, path: Path, base_offset: int, max_index_size: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self.max_entries = max(max_index_size // self.entry_size, 1)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self._dirty = False

    def _read_all(self) -> bytes:
        size = os.fstat(self._fd).st_size
        return os.pread(self._fd, size, 0) if size else b""

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self._dirty = True

    def _truncate_entries(self, count: int) -> None:
        os.ftruncate(self._fd, count * self.entry_size)
        self._dirty = True

    def _relative(self, offset: int) -> int:
        rel = offset - self.base_offset
        if not 0 <= rel <= _INT32_MAX:
            raise ValueError(f"offset {offset} not representable in index at {self.base_offset}")
        return rel

    def flush(self) -> None:
        if self._dirty:
            os.fsync(self._fd)
            self._dirty = False

    def close(self, flush: bool = True) -> None:
        if self._fd >= 0:
            if flush:
                self.flush()
            os.close(self._fd)
            self._fd = -1

    def delete(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.path.unlink(missing_ok=True)

    def rename(self, path: Path) -> None:
        os.replace(self.path, path)
        self.path = path


class OffsetIndex(_IndexFile):
    """Maps a batch's last offset to the file position of that batch (Kafka's entry choice).

    A lookup for offset ``o`` gives the greatest entry ``<= o``, i.e. a batch that ends at or
    before ``o``; the batch containing ``o`` is found by scanning headers forward from there.
    """

    entry_size = _OFFSET_ENTRY.size

    def __init__(self, path: Path, base_offset: int, max_index_size: int) -> None:
        super().__init__(path, base_offset, max_index_size)
        self._rel = array("i")
        self._pos = array("i")

    def load(self) -> bool:
        """Read the file; False when its length is not a whole number of entries."""
        data = self._read_all()
        if len(data) % self.entry_size:
            return False
        both = array("i")
        both.frombytes(data)
        if sys.byteorder == "little":
            both.byteswap()
        self._rel = both[0::2]
        self._pos = both[1::2]
        return True

    def __len__(self) -> int:
        return len(self._rel)

    @property
    def is_full(self) -> bool:
        return len(self._rel) >= self.max_entries

    def last_entry(self) -> OffsetPosition:
        if not self._rel:
            return OffsetPosition(self.base_offset, 0)
        return OffsetPosition(self.base_offset + self._rel[-1], self._pos[-1])

    def entries(self) -> list[OffsetPosition]:
        return [
            OffsetPosition(self.base_offset + r, p)
            for r, p in zip(self._rel, self._pos, strict=True)
        ]

    def append(self, offset: int, position: int) -> None:
        rel = self._relative(offset)
        if self._rel and (rel <= self._rel[-1] or position <= self._pos[-1]):
            raise ValueError(f"offset index entry ({offset}, {position}) not above the last one")
        self._write(_OFFSET_ENTRY.pack(rel, position))
        self._rel.append(rel)
        self._pos.append(position)

    def lookup(self, offset: int) -> OffsetPosition:
        """Greatest entry with offset <= ``offset``, or (base offset, 0) when there is none."""
        i = bisect_right(self._rel, offset - self.base_offset) - 1
        if i < 0:
            return OffsetPosition(self.base_offset, 0)
        return OffsetPosition(self.base_offset + self._rel[i], self._pos[i])

    def truncate_to(self, offset: int) -> None:
        """Drop entries for offsets >= ``offset`` (their batches are being cut off)."""
        i = bisect_left(self._rel, offset - self.base_offset)
        if i < len(self._rel):
            del self._rel[i:]
            del self._pos[i:]
            self._truncate_entries(i)

    def truncate_to_position(self, position: int) -> None:
        """Drop entries pointing at or past ``position`` (the log is cut there)."""
        i = bisect_left(self._pos, position)
        if i < len(self._pos):
            del self._rel[i:]
            del self._pos[i:]
            self._truncate_entries(i)

    def reset(self) -> None:
        self._rel = array("i")
        self._pos = array("i")
        self._truncate_entries(0)

    def sanity_error(self, log_size: int) -> str | None:
        """Why the loaded entries cannot describe a log of ``log_size`` bytes, or None."""
        rel, pos = self._rel, self._pos
        for i in range(len(rel)):
            if rel[i] < 0 or pos[i] < 0 or pos[i] >= log_size:
                return f"entry {i} ({rel[i]}, {pos[i]}) outside a {log_size}-byte log"
            if i and (rel[i] <= rel[i - 1] or pos[i] <= pos[i - 1]):
                return f"entry {i} does not increase"
        return None


class TimeIndex(_IndexFile):
    """Maps the segment's running max timestamp to the batch that first reached it.

    Entries are appended only when the max timestamp grows, so timestamps strictly increase
    and each entry's offset marks the first batch holding that timestamp: every earlier record
    has a smaller timestamp, which is what makes a ListOffsets search from there exact.
    """

    entry_size = _TIME_ENTRY.size

    def __init__(self, path: Path, base_offset: int, max_index_size: int) -> None:
        super().__init__(path, base_offset, max_index_size)
        self._ts = array("q")
        self._rel = array("i")

    def load(self) -> bool:
        data = self._read_all()
        if len(data) % self.entry_size:
            return False
        self._ts = array("q")
        self._rel = array("i")
        for ts, rel in _TIME_ENTRY.iter_unpack(data):
            self._ts.append(ts)
            self._rel.append(rel)
        return True

    def __len__(self) -> int:
        return len(self._ts)

    @property
    def is_full(self) -> bool:
        return len(self._ts) >= self.max_entries

    def last_entry(self) -> TimestampOffset:
        if not self._ts:
            return TimestampOffset(-1, self.base_offset)
        return TimestampOffset(self._ts[-1], self.base_offset + self._rel[-1])

    def entries(self) -> list[TimestampOffset]:
        return [
            TimestampOffset(t, self.base_offset + r)
            for t, r in zip(self._ts, self._rel, strict=True)
        ]

    def maybe_append(self, timestamp: int, offset: int) -> None:
        """Append when ``timestamp`` exceeds the last entry's (Kafka's ``maybeAppend``)."""
        if self._ts and timestamp <= self._ts[-1]:
            return
        rel = self._relative(offset)
        if self._rel and rel < self._rel[-1]:
            raise ValueError(f"time index offset {offset} below the last entry's")
        self._write(_TIME_ENTRY.pack(timestamp, rel))
        self._ts.append(timestamp)
        self._rel.append(rel)

    def lookup(self, timestamp: int) -> TimestampOffset:
        """Greatest entry with timestamp <= ``timestamp``, or (-1, base offset)."""
        i = bisect_right(self._ts, timestamp) - 1
        if i < 0:
            return TimestampOffset(-1, self.base_offset)
        return TimestampOffset(self._ts[i], self.base_offset + self._rel[i])

    def truncate_to(self, offset: int) -> None:
        """Drop entries whose offset is >= ``offset``."""
        i = bisect_left(self._rel, offset - self.base_offset)
        if i < len(self._rel):
            del self._ts[i:]
            del self._rel[i:]
            self._truncate_entries(i)

    def reset(self) -> None:
        self._ts = array("q")
        self._rel = array("i")
        self._truncate_entries(0)

    def sanity_error(self, last_offset: int) -> str | None:
        """Why the loaded entries cannot belong to a segment ending at ``last_offset``."""
        ts, rel = self._ts, self._rel
        limit = last_offset - self.base_offset
        for i in range(len(ts)):
            if rel[i] < 0 or rel[i] > limit:
                return f"entry {i} offset {self.base_offset + rel[i]} outside the segment"
            if i and (ts[i] <= ts[i - 1] or rel[i] < rel[i - 1]):
                return f"entry {i} does not increase"
        return None
