"""A segment's aborted-transaction index: Kafka's ``.txnindex`` file.

Each entry is one aborted transaction whose ABORT marker lies in the segment: version
(int16, 0), producer id, first offset, last offset (the marker's) and the last stable offset
right after the abort, 34 bytes big-endian as Kafka writes them. read_committed fetches ask
which aborted transactions overlap the offsets they return; clients drop those records.
The entries are few, so they are kept in memory as well; the file is created on the first
abort only, as Kafka creates it lazily.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

__all__ = ["AbortedTxn", "TransactionIndex"]

_ENTRY = struct.Struct(">hqqqq")
_VERSION = 0


class AbortedTxn(NamedTuple):
    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int


class TransactionIndex:
    """The aborted transactions of one segment, in marker order."""

    __slots__ = ("_dirty", "entries", "needs_rebuild", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[AbortedTxn] = []
        self._dirty = False
        # Set when the file could not be trusted: the partition log replays the markers of
        # this segment to rebuild it, then clears the flag.
        self.needs_rebuild = False

    def load(self) -> bool:
        """Read the file if it exists; False (no entries, the file removed so later appends
        start a valid one, ``needs_rebuild`` set) when its length or versions are wrong."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            self.entries = []
            return True
        entries = []
        valid = len(data) % _ENTRY.size == 0
        for pos in range(0, len(data) if valid else 0, _ENTRY.size):
            version, pid, first, last, lso = _ENTRY.unpack_from(data, pos)
            if version != _VERSION or last < first:
                valid = False
                break
            entries.append(AbortedTxn(pid, first, last, lso))
        if not valid:
            self.reset()
            self.needs_rebuild = True
            return False
        self.entries = entries
        return True

    def append(self, entry: AbortedTxn) -> None:
        """Add an entry; one whose marker is not past the last entry's is already here."""
        if self.entries and entry.last_offset <= self.entries[-1].last_offset:
            return
        self.entries.append(entry)
        with open(self.path, "ab") as f:
            f.write(_ENTRY.pack(_VERSION, *entry))
        self._dirty = True

    def truncate_to(self, offset: int) -> None:
        """Drop entries whose marker is at or past ``offset``."""
        keep = [e for e in self.entries if e.last_offset < offset]
        if len(keep) != len(self.entries):
            self.entries = keep
            self._rewrite(keep)

    def reset(self) -> None:
        self.entries = []
        self.path.unlink(missing_ok=True)

    def _rewrite(self, entries: Iterable[AbortedTxn]) -> None:
        data = b"".join(_ENTRY.pack(_VERSION, *e) for e in entries)
        if not data:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_suffix(".txnindex.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.path)
        self._dirty = True

    def collect(self, fetch_offset: int, upper_bound: int, out: list[AbortedTxn]) -> bool:
        """Append entries overlapping [fetch_offset, upper_bound) to ``out``; True when an
        entry shows that no later segment can hold an overlapping one (Kafka's
        ``TxnIndexSearchResult.isComplete``)."""
        for entry in self.entries:
            if entry.last_offset >= fetch_offset and entry.first_offset < upper_bound:
                out.append(entry)
            if entry.last_stable_offset >= upper_bound:
                return True
        return False

    def flush(self) -> None:
        if self._dirty and self.entries:
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                self._dirty = False
                return
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._dirty = False
