"""One log segment: a ``.log`` file of batches as on the wire plus its two sparse indexes.

Files are named by the segment's base offset, zero-padded to 20 digits, as Kafka names them.
Appends are one write per call to an ``O_APPEND`` descriptor (the batch bytes land in the OS
page cache; ``flush`` fsyncs); reads are ``os.pread`` so they never move a file position.
Batch headers are scanned in chunks, never record by record, except where Kafka too must look
inside a batch (exact timestamp lookups).
"""

from __future__ import annotations

import contextlib
import os
import random
import struct
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final

from pykbroker.errors import CorruptRecordError, DecodeError
from pykbroker.file_slice import FileSlice
from pykbroker.log.index import OffsetIndex, TimeIndex
from pykbroker.log.log_config import LogConfig
from pykbroker.log.txn_index import TransactionIndex
from pykbroker.records import BatchHeader, iter_records, validate_batch
from pykbroker.records.batch import (
    BATCH_OVERHEAD,
    EXTENT_BYTES,
    LOG_OVERHEAD,
    MAGIC,
    MIN_BATCH_LENGTH,
    batch_extent,
)

__all__ = [
    "ALL_SUFFIXES",
    "INDEX_SUFFIX",
    "LOG_SUFFIX",
    "TIME_INDEX_SUFFIX",
    "TXN_INDEX_SUFFIX",
    "LogSegment",
    "segment_path",
]

LOG_SUFFIX: Final = ".log"
INDEX_SUFFIX: Final = ".index"
TIME_INDEX_SUFFIX: Final = ".timeindex"
TXN_INDEX_SUFFIX: Final = ".txnindex"
_OTHER_SUFFIXES: Final = (TXN_INDEX_SUFFIX,)
#: Every file of a segment; the log file last, as renames that must leave the log file as
#: the commit point (cleaner swaps) go in this order.
ALL_SUFFIXES: Final = (INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX, LOG_SUFFIX)
_INT32_MAX: Final = 2**31 - 1
_I32: Final = struct.Struct(">i")
_SCAN_CHUNK: Final = 32 * 1024
_HEADER_CHUNK: Final = 4096  # many small batches' headers per read, little of a large one
_RECOVER_CHUNK: Final = 1024 * 1024
#: How much a segment grows between two page-cache drops (``drop_cached_behind``): each
#: call writes back about this much, a few hundred microseconds to a few milliseconds.
CACHE_DROP_STEP: Final = 4 * 1024 * 1024
# An append of at most this many bytes stays in memory until the next one (see _Recent).
RECENT_MAX: Final = 64 * 1024

Buffer = bytes | bytearray | memoryview


def segment_path(directory: Path, base_offset: int, suffix: str) -> Path:
    """``<dir>/00000000000000000042.log``: Kafka's file name for a segment's file."""
    return directory / f"{base_offset:020d}{suffix}"


class _Recent:
    """A segment's last append, kept in memory until the next: followers and consumers
    caught up fetch exactly that, at once (the leader wakes them), so their reads find the
    batch and its bytes here instead of through the offset index, a header scan and two
    preads. Holds only while it ends the file: every other write drops it first."""

    __slots__ = ("base_offset", "batches", "data", "position")

    def __init__(self, position: int, data: bytes,
                 batches: list[tuple[int, BatchHeader]]) -> None:
        self.position = position
        self.data = data
        self.batches = batches  # (file position, header) of each batch in ``data``
        self.base_offset = batches[0][1].base_offset


class LogSegment:
    """Owns the three files of one segment and the in-memory state derived from them.

    ``max_timestamp``/``offset_of_max_timestamp`` follow Kafka 3.9: the offset is the last
    offset of the first batch that reached the max (the exact record is found on demand).
    ``roll_base_ms`` is the wall time of the first append (or of opening a non-empty segment):
    time-based rolling counts from there rather than from the first batch's timestamp, so a
    producer's clock cannot force a roll per append.
    """

    __slots__ = (
        "_bytes_since_index",
        "_cache_dropped_to",
        "_dirty",
        "_fd",
        "_recent",
        "base_offset",
        "config",
        "directory",
        "file_suffix",
        "max_timestamp",
        "next_offset",
        "offset_index",
        "offset_of_max_timestamp",
        "roll_base_ms",
        "roll_jitter_ms",
        "size",
        "time_index",
        "txn_index",
    )

    def __init__(
        self, directory: Path, base_offset: int, config: LogConfig, file_suffix: str = ""
    ) -> None:
        """``file_suffix`` names a segment that is not part of the log yet (the log
        cleaner's ``.cleaned`` result): ``<base>.log.cleaned``, ``<base>.index.cleaned``..."""
        self.directory = directory
        self.base_offset = base_offset
        self.config = config
        self.file_suffix = file_suffix
        path = segment_path(directory, base_offset, LOG_SUFFIX + file_suffix)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self.size = os.fstat(self._fd).st_size
        self._cache_dropped_to = 0
        index_bytes = config.segment_index_bytes
        self.offset_index = OffsetIndex(
            segment_path(directory, base_offset, INDEX_SUFFIX + file_suffix), base_offset,
            index_bytes
        )
        self.time_index = TimeIndex(
            segment_path(directory, base_offset, TIME_INDEX_SUFFIX + file_suffix), base_offset,
            index_bytes
        )
        self.txn_index = TransactionIndex(
            segment_path(directory, base_offset, TXN_INDEX_SUFFIX + file_suffix))
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = -1
        self._bytes_since_index = 0
        self._dirty = False
        self._recent: _Recent | None = None
        self.roll_base_ms: int | None = None
        jitter = min(config.segment_jitter_ms, config.segment_ms)
        self.roll_jitter_ms = random.randrange(jitter) if jitter > 0 else 0

    @classmethod
    def create(
        cls, directory: Path, base_offset: int, config: LogConfig, file_suffix: str = ""
    ) -> LogSegment:
        """A new, empty segment; leftover files with the same name are removed first."""
        for suffix in ALL_SUFFIXES:
            segment_path(directory, base_offset, suffix + file_suffix).unlink(missing_ok=True)
        return cls(directory, base_offset, config, file_suffix)

    @classmethod
    def open_existing(
        cls, directory: Path, base_offset: int, config: LogConfig
    ) -> tuple[LogSegment, str | None]:
        """Open a segment found on disk and load its indexes without trusting them.

        Returns the segment and, when its indexes or tail cannot be trusted, the reason; the
        caller then calls :meth:`recover`. Otherwise the state past the last index entry has
        been rebuilt by scanning batch headers from there.
        """
        missing = [
            s
            for s in (INDEX_SUFFIX, TIME_INDEX_SUFFIX)
            if not segment_path(directory, base_offset, s).exists()
        ]
        segment = cls(directory, base_offset, config)
        return segment, segment._load_indexes(missing)

    def _load_indexes(self, missing: list[str]) -> str | None:
        self.txn_index.load()  # an unreadable one is rebuilt from the markers on replay
        if missing and self.size:
            return f"missing {' and '.join(missing)}"
        if not self.offset_index.load():
            return "offset index length is not a whole number of entries"
        problem = self.offset_index.sanity_error(self.size)
        if problem:
            return f"offset index {problem}"
        if not self.time_index.load():
            return "time index length is not a whole number of entries"
        if len(self.offset_index) and not len(self.time_index):
            return "time index is empty but the offset index is not"
        try:
            self._load_tail()
        except CorruptRecordError as exc:
            return f"log does not match its index: {exc}"
        problem = self.time_index.sanity_error(self.next_offset - 1)
        return f"time index {problem}" if problem else None

    def _load_tail(self) -> None:
        """Rebuild next offset, max timestamp and index cadence past the last index entry."""
        last = self.offset_index.last_entry()
        indexed = len(self.offset_index) > 0
        if len(self.time_index):
            self.max_timestamp, self.offset_of_max_timestamp = self.time_index.last_entry()
        else:
            self.max_timestamp = self.offset_of_max_timestamp = -1
        self._bytes_since_index = 0
        self.next_offset = self.base_offset
        for pos, header in self.scan(last.position):
            if indexed and pos == last.position and header.last_offset != last.offset:
                raise CorruptRecordError(
                    f"index entry for offset {last.offset} points at batch ending "
                    f"{header.last_offset}"
                )
            if header.base_offset < self.next_offset:
                raise CorruptRecordError(f"batch offsets go backwards at position {pos}")
            self._index_batch(pos, header)
            self.next_offset = header.next_offset
        if indexed and self.next_offset == self.base_offset:
            raise CorruptRecordError("index entries for an empty log")

    def recover(self) -> int:
        """Kafka's ``LogSegment.recover``: validate every batch, rebuild both indexes.

        Stops at the first batch that fails its CRC or structure checks, whose offsets go
        backwards or no longer fit the index, and truncates the file there. Returns the number
        of bytes dropped.
        """
        self.offset_index.reset()
        self.time_index.reset()
        # Entries of the batches that survive are kept (recovery opens segments without
        # loading their indexes); an unreadable file is rebuilt from the markers later.
        self.txn_index.load()
        self.max_timestamp = self.offset_of_max_timestamp = -1
        return self._recover_after(0, self.base_offset)

    def recover_from(self, recovery_point: int) -> int:
        """Recovery of the segment holding the recovery point: only what lies past it.

        ``PartitionLog.flush`` fsyncs a segment's log and indexes before it moves the recovery
        point, so the index entries below the recovery point and the batches they cover are
        on disk as written. They are kept, the batches from the last of them up to the recovery
        point are indexed from their headers, and the batches past it are validated (CRC,
        offsets) as :meth:`recover` validates them from the start. So a crash costs what was written since the last flush, not the
        size of the segment (Kafka recovers the whole segment). Anything that does not fit
        (unreadable indexes, an entry that does not point at its batch) falls back to
        :meth:`recover`.
        """
        if recovery_point <= self.base_offset:
            return self.recover()
        self.txn_index.load()
        if not self.offset_index.load() or not self.time_index.load():
            return self.recover()
        self.offset_index.truncate_to(recovery_point)
        self.time_index.truncate_to(recovery_point)
        if self.offset_index.sanity_error(self.size) or \
                self.time_index.sanity_error(recovery_point - 1):
            return self.recover()
        last = self.offset_index.last_entry()
        if len(self.time_index):
            self.max_timestamp, self.offset_of_max_timestamp = self.time_index.last_entry()
        else:
            self.max_timestamp = self.offset_of_max_timestamp = -1
        if not len(self.offset_index):
            return self.recover()  # nothing indexed below the recovery point: from the start
        # Batches wholly below the recovery point were fsynced as written: their headers
        # are read (offsets, sizes, timestamps for the indexes), their CRCs not recomputed.
        self._bytes_since_index = 0  # the entry's batch restarts the cadence, as in _load_tail
        self.next_offset = -1
        valid_end = last.position
        try:
            for pos, header in self.scan(last.position):
                if self.next_offset < 0:
                    if header.last_offset != last.offset:
                        return self.recover()  # the entry does not point at its batch
                    self.next_offset = header.base_offset
                if header.last_offset >= recovery_point:
                    break
                if header.base_offset < self.next_offset:
                    return self.recover()
                self._index_batch(pos, header)
                self.next_offset = header.next_offset
                valid_end = pos + header.size
        except CorruptRecordError:
            return self.recover()
        if self.next_offset < 0:
            return self.recover()
        return self._recover_after(valid_end, self.next_offset, fresh=False)

    def _recover_after(self, start: int, next_offset: int, *, fresh: bool = True) -> int:
        """Validate batches from position ``start`` (where ``next_offset`` begins), index them
        and cut the file at the first bad one; the bytes dropped. ``fresh`` restarts the index
        cadence (else it continues from the batches indexed before ``start``)."""
        if fresh:
            self._bytes_since_index = 0
        self.next_offset = next_offset
        valid_end = start
        try:
            for pos, header in self.scan(start, validate=True, chunk=_RECOVER_CHUNK):
                if (
                    header.base_offset < self.next_offset
                    or header.last_offset - self.base_offset > _INT32_MAX
                ):
                    break
                self._index_batch(pos, header)
                self.next_offset = header.next_offset
                valid_end = pos + header.size
        except CorruptRecordError:
            pass
        dropped = self.size - valid_end
        if dropped:
            self._recent = None
            os.ftruncate(self._fd, valid_end)
            self.size = valid_end
            self._dirty = True
        self.txn_index.truncate_to(self.next_offset)
        return dropped

    # -- scanning and reading ---------------------------------------------------------------

    def scan(
        self, start: int = 0, *, validate: bool = False, chunk: int = _SCAN_CHUNK
    ) -> Iterator[tuple[int, BatchHeader]]:
        """Yield ``(position, header)`` for each batch from ``start`` to the segment's end.

        Reads ``chunk`` bytes at a time; ``validate`` reads whole batches and checks each CRC.
        A torn or malformed batch raises :class:`CorruptRecordError`.
        """
        end = self.size
        pos = start
        buf = b""
        buf_start = start
        while pos < end:
            off = pos - buf_start
            if len(buf) - off < BATCH_OVERHEAD:
                buf = os.pread(self._fd, min(chunk, end - pos), pos)
                buf_start, off = pos, 0
                if len(buf) < BATCH_OVERHEAD:
                    raise CorruptRecordError(f"partial batch header at position {pos}")
            length = _I32.unpack_from(buf, off + 8)[0]
            size = length + LOG_OVERHEAD
            if length < MIN_BATCH_LENGTH or pos + size > end:
                raise CorruptRecordError(f"batch at position {pos} has invalid length {length}")
            if validate:
                if len(buf) - off < size:
                    buf = os.pread(self._fd, max(size, min(chunk, end - pos)), pos)
                    buf_start, off = pos, 0
                header = validate_batch(buf, off)
            else:
                header = BatchHeader.parse(buf, off)
                if header.magic != MAGIC:
                    raise CorruptRecordError(f"batch at position {pos} has magic {header.magic}")
            yield pos, header
            pos += size

    def translate_offset(self, offset: int) -> tuple[int, BatchHeader] | None:
        """Position and header of the first batch whose last offset is >= ``offset``."""
        recent = self._recent
        if recent is not None and offset >= recent.base_offset:
            # (the batches before the last append all end below its base offset)
            for found in recent.batches:
                if found[1].last_offset >= offset:
                    return found
            return None
        start = self.offset_index.lookup(offset).position
        for pos, header in self.scan(start):
            if header.last_offset >= offset:
                return pos, header
        return None

    def read(self, position: int, length: int) -> bytes:
        """Bytes at ``position`` (fewer at the end of the segment)."""
        length = min(length, self.size - position)
        if length <= 0:
            return b""
        recent = self._recent
        if recent is not None and position >= recent.position:
            start = position - recent.position
            return recent.data[start:start + length]
        return os.pread(self._fd, length, position)

    def slice(self, position: int, length: int) -> FileSlice:
        """``length`` bytes at ``position`` (within the segment) to be sent by sendfile."""
        return FileSlice(self._fd, position, length)

    def whole_batches(self, position: int, max_bytes: int, limit: int,
                      data: bytes = b"") -> tuple[int, int]:
        """Bytes from ``position`` (a batch start) made of whole batches, at most
        ``max_bytes``, ending at or before offset ``limit``; and the offset after them (-1
        when none). ``data``, bytes already read from ``position``, is walked first; past it
        only batch headers are read, a few KiB at a time."""
        end = min(self.size, position + max_bytes)
        pos = position
        next_offset = -1
        buf = data
        buf_start = pos
        while end - pos >= BATCH_OVERHEAD:
            off = pos - buf_start
            if len(buf) - off < EXTENT_BYTES:
                buf = os.pread(self._fd, min(_HEADER_CHUNK, end - pos), pos)
                buf_start, off = pos, 0
            size, after = batch_extent(buf, off)
            if size < BATCH_OVERHEAD or pos + size > end or after > limit:
                break
            pos += size
            next_offset = after
        return pos - position, next_offset

    def find_offset_by_timestamp(self, timestamp: int, start_offset: int) -> tuple[int, int] | None:
        """``(timestamp, offset)`` of the first record at or after ``start_offset`` whose
        timestamp is >= ``timestamp``, or None. The time index gives the first batch that can
        hold it; records are decoded only in batches whose max timestamp qualifies.
        """
        hint = self.time_index.lookup(timestamp)
        found = self.translate_offset(max(hint.offset, start_offset))
        if found is None:
            return None
        for pos, header in self.scan(found[0]):
            if header.max_timestamp < timestamp or header.last_offset < start_offset:
                continue
            batch = self.read(pos, header.size)
            try:
                for record in iter_records(batch):
                    if record.timestamp >= timestamp and record.offset >= start_offset:
                        return record.timestamp, record.offset
            except DecodeError as exc:
                raise CorruptRecordError(f"batch at offset {header.base_offset}: {exc}") from exc
        return None

    def exact_offset_of_max_timestamp(self) -> int:
        """Offset of the first record carrying the segment's max timestamp (-1 if none)."""
        if self.max_timestamp < 0:
            return -1
        found = self.translate_offset(self.offset_of_max_timestamp)
        if found is not None:
            pos, header = found
            try:
                for record in iter_records(self.read(pos, header.size)):
                    if record.timestamp == self.max_timestamp:
                        return record.offset
            except DecodeError:
                pass
        return self.offset_of_max_timestamp

    # -- writing ------------------------------------------------------------------------------

    def should_roll(self, add_size: int, last_offset: int, now_ms: int) -> bool:
        """Kafka's ``shouldRoll``: size, age, full index or an offset the index cannot hold."""
        if self.size == 0:
            return False
        config = self.config
        aged = (
            self.roll_base_ms is not None
            and now_ms - self.roll_base_ms > config.max_segment_ms - self.roll_jitter_ms
        )
        return (
            self.size > config.segment_bytes - add_size
            or aged
            or self.offset_index.is_full
            or self.time_index.is_full
            or last_offset - self.base_offset > _INT32_MAX
        )

    def append(self, data: Buffer, batches: Sequence[tuple[int, BatchHeader]], now_ms: int) -> int:
        """Write ``data`` (whole batches at the given relative positions) and index them."""
        position = self.size
        view = memoryview(data)
        self._recent = None
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:
            os.ftruncate(self._fd, position)
            raise
        if self.roll_base_ms is None:
            self.roll_base_ms = now_ms
        for rel, header in batches:
            self._index_batch(position + rel, header)
        self.size = position + len(data)
        self.next_offset = batches[-1][1].next_offset
        self._dirty = True
        if len(data) <= RECENT_MAX and batches:
            self._recent = _Recent(position, bytes(data),
                                   [(position + rel, header) for rel, header in batches])
        return position

    def drop_cached_behind(self, keep_bytes: int) -> None:
        """Write back and drop from the page cache all but the last ``keep_bytes`` of the
        file, once another :data:`CACHE_DROP_STEP` bytes have been written past them.

        ``posix_fadvise(DONTNEED)`` starts the writeback of the dirty pages in the range and
        evicts the clean ones; what was still being written at one call goes at the next. A
        log written this way reuses the same pages instead of filling the page cache with
        fresh ones (see ``log.page.cache.keep.bytes``)."""
        end = self.size - keep_bytes
        if end - self._cache_dropped_to < CACHE_DROP_STEP:
            return
        with contextlib.suppress(OSError):  # only a hint: the data is safe either way
            os.posix_fadvise(self._fd, 0, end, os.POSIX_FADV_DONTNEED)
        self._cache_dropped_to = end

    def _index_batch(self, position: int, header: BatchHeader) -> None:
        if header.max_timestamp > self.max_timestamp:
            self.max_timestamp = header.max_timestamp
            self.offset_of_max_timestamp = header.last_offset
        if self._bytes_since_index > self.config.index_interval_bytes:
            self.offset_index.append(header.last_offset, position)
            if self.max_timestamp >= 0:
                self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
            self._bytes_since_index = 0
        self._bytes_since_index += header.size

    def truncate_to(self, offset: int) -> int:
        """Cut off the batch containing ``offset`` and everything after; bytes removed."""
        found = self.translate_offset(offset)
        if found is None:
            return 0
        position = found[0]
        self.txn_index.truncate_to(found[1].base_offset)
        self.offset_index.truncate_to(offset)
        self.offset_index.truncate_to_position(position)
        self.time_index.truncate_to(offset)
        removed = self.size - position
        self._recent = None
        os.ftruncate(self._fd, position)
        self.size = position
        self._dirty = True
        self._load_tail()
        if self.size == 0:
            self.roll_base_ms = None
        return removed

    def on_become_inactive(self) -> None:
        """Record the final max timestamp in the time index, as Kafka does on roll."""
        self._recent = None
        if self.max_timestamp >= 0:
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)

    @property
    def fd(self) -> int:
        """The log file's descriptor (duplicate it to read from another thread)."""
        return self._fd

    @property
    def is_dirty(self) -> bool:
        return self._dirty

    @property
    def log_path(self) -> Path:
        return segment_path(self.directory, self.base_offset, LOG_SUFFIX + self.file_suffix)

    def last_modified_ms(self) -> int:
        return os.fstat(self._fd).st_mtime_ns // 1_000_000

    def sync_data(self) -> None:
        """fdatasync the log file alone: the records are durable, the indexes (rebuilt by
        recovery when they disagree with the log) follow with the next :meth:`flush`.

        Runs in a worker thread while the event loop may append: the dirty flag is cleared
        before the sync, so an append made during it leaves the file dirty for the next one.
        """
        self._sync(os.fdatasync)

    def _sync(self, sync: Callable[[int], None]) -> None:
        if self._dirty:
            self._dirty = False
            try:
                sync(self._fd)
            except BaseException:
                self._dirty = True
                raise

    def flush(self) -> None:
        """fsync the log and its indexes."""
        self._sync(os.fsync)
        self.offset_index.flush()
        self.time_index.flush()
        self.txn_index.flush()

    def close(self, flush: bool = True) -> None:
        if self._fd >= 0:
            if flush:
                self.flush()
            os.close(self._fd)
            self._fd = -1
        self.offset_index.close(flush)
        self.time_index.close(flush)

    def delete(self) -> None:
        """Close and remove the segment's files now (Kafka defers by file.delete.delay.ms)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.offset_index.delete()
        self.time_index.delete()
        for suffix in (LOG_SUFFIX, *_OTHER_SUFFIXES):
            segment_path(self.directory, self.base_offset, suffix + self.file_suffix).unlink(
                missing_ok=True)

    def __repr__(self) -> str:
        return (
            f"LogSegment(base_offset={self.base_offset}, size={self.size}, "
            f"next_offset={self.next_offset})"
        )
