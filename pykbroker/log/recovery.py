"""Loading a partition directory, including after an unclean shutdown (Kafka's LogLoader).

Order of work, as Kafka's: remove leftovers of interrupted deletes and compactions, complete
interrupted segment swaps, then open every segment. Segments from the one holding the
recovery point onwards (all of them after an unclean shutdown without a recovery point) are
re-validated batch by batch and their indexes rebuilt; a torn or corrupt tail is cut at the
last whole valid batch and every later segment is deleted. Segments below the recovery point
are trusted, but their indexes are sanity-checked and rebuilt from the log when they do not
fit it. Segment files are deleted at once rather than after ``file.delete.delay.ms``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Final, NamedTuple

from pykbroker.errors import DecodeError
from pykbroker.log.checkpoints import fsync_directory
from pykbroker.log.log_config import LogConfig
from pykbroker.log.segment import (
    ALL_SUFFIXES,
    LOG_SUFFIX,
    LogSegment,
    segment_path,
)
from pykbroker.records import iter_batches, valid_prefix_length

__all__ = [
    "CLEANED_SUFFIX",
    "DELETED_SUFFIX",
    "SWAP_SUFFIX",
    "LoadedLog",
    "clean_directory",
    "load_log",
    "load_segments",
]

DELETED_SUFFIX: Final = ".deleted"
CLEANED_SUFFIX: Final = ".cleaned"
SWAP_SUFFIX: Final = ".swap"
TMP_SUFFIX: Final = ".tmp"
_SEGMENT_FILE: Final = re.compile(r"^(\d{20})(\.log|\.index|\.timeindex|\.txnindex)$")

_log = logging.getLogger(__name__)


class LoadedLog(NamedTuple):
    segments: list[LogSegment]
    recovery_point: int
    log_start_offset: int


def load_log(
    directory: Path,
    config: LogConfig,
    *,
    recovery_point: int,
    log_start_offset: int | None,
    had_clean_shutdown: bool,
    now_ms: int,
) -> LoadedLog:
    """Segments plus the recovery point and log start offset they support.

    The log start offset is the checkpointed one or the first segment's base, whichever is
    higher; a log ending below it (segments removed by hand) is emptied and restarted there,
    as Kafka's LogLoader does. After a clean shutdown everything counts as flushed.
    """
    start = log_start_offset if log_start_offset is not None else 0
    segments = load_segments(
        directory,
        config,
        recovery_point=recovery_point,
        had_clean_shutdown=had_clean_shutdown,
        start_offset=start,
    )
    for segment in segments:
        segment.roll_base_ms = now_ms if segment.size else None
    start = max(start, segments[0].base_offset)
    end = segments[-1].next_offset
    if end < start:
        _log.warning(
            "%s: log end offset %d below log start offset %d: deleting all segments",
            directory,
            end,
            start,
        )
        for segment in segments:
            segment.delete()
        segments = [LogSegment.create(directory, start, config)]
        end = start
    return LoadedLog(segments, end if had_clean_shutdown else min(recovery_point, end), start)


def clean_directory(directory: Path) -> None:
    """Delete ``.deleted``/``.cleaned``/``.tmp`` leftovers and finish interrupted swaps.

    The log cleaner's swap (see :mod:`.cleaner_swap`) commits when ``<base>.log.swap``
    exists: a crash before leaves ``.cleaned`` files (deleted here; the old segments are
    intact), a crash after leaves the swap to complete. Completing it deletes the segments
    it replaces (base offsets within its offset range; the replaced segment at its own base
    only while that one's ``.log`` is still there, which the swap renames last) and renames
    its ``.swap`` files into place. Index ``.swap`` files without a log swap are dropped.
    """
    swaps: list[int] = []
    for path in sorted(directory.iterdir()):
        name = path.name
        if not path.is_file():
            continue
        if name.endswith((DELETED_SUFFIX, CLEANED_SUFFIX)) or (
            name.endswith(TMP_SUFFIX) and _SEGMENT_FILE.match(name[: -len(TMP_SUFFIX)])
        ):
            _log.info("%s: deleting leftover file %s", directory, name)
            path.unlink(missing_ok=True)
        elif name.endswith(SWAP_SUFFIX):
            match = _SEGMENT_FILE.match(name[: -len(SWAP_SUFFIX)])
            if match and match.group(2) == LOG_SUFFIX:
                swaps.append(int(match.group(1)))
    for base in swaps:
        _complete_swap(directory, base)
    for path in directory.glob(f"*{SWAP_SUFFIX}"):
        path.unlink(missing_ok=True)


def _complete_swap(directory: Path, base: int) -> None:
    swap = segment_path(directory, base, LOG_SUFFIX + SWAP_SUFFIX)
    data = swap.read_bytes()
    valid = valid_prefix_length(data)
    next_offset = base
    try:
        for _, header in iter_batches(memoryview(data)[:valid], validate=False):
            next_offset = header.next_offset
    except DecodeError:
        pass
    old_at_base = segment_path(directory, base, LOG_SUFFIX).exists()
    replaced = [
        b for b in _log_base_offsets(directory)
        if base <= b < max(next_offset, base + 1) and (b != base or old_at_base)
    ]
    _log.info(
        "%s: completing interrupted swap of %s, replacing segments %s", directory, swap, replaced
    )
    for old in replaced:
        for suffix in ALL_SUFFIXES:
            segment_path(directory, old, suffix).unlink(missing_ok=True)
    for suffix in ALL_SUFFIXES:  # the log file last
        pending = segment_path(directory, base, suffix + SWAP_SUFFIX)
        if pending.exists():
            os.replace(pending, segment_path(directory, base, suffix))
    fsync_directory(directory)


def _log_base_offsets(directory: Path) -> list[int]:
    bases = []
    for path in directory.iterdir():
        match = _SEGMENT_FILE.match(path.name)
        if match and match.group(2) == LOG_SUFFIX:
            bases.append(int(match.group(1)))
    return sorted(bases)


def _delete_orphan_indexes(directory: Path, bases: list[int]) -> None:
    known = set(bases)
    for path in directory.iterdir():
        match = _SEGMENT_FILE.match(path.name)
        if match and match.group(2) != LOG_SUFFIX and int(match.group(1)) not in known:
            _log.info("%s: deleting index without a log segment: %s", directory, path.name)
            path.unlink(missing_ok=True)


def load_segments(
    directory: Path,
    config: LogConfig,
    *,
    recovery_point: int,
    had_clean_shutdown: bool,
    start_offset: int = 0,
) -> list[LogSegment]:
    """Open (and where needed recover) every segment of ``directory``, oldest first.

    Never returns an empty list: a directory without segments gets one at ``start_offset``.
    """
    clean_directory(directory)
    bases = _log_base_offsets(directory)
    _delete_orphan_indexes(directory, bases)
    segments: list[LogSegment] = []
    for i, base in enumerate(bases):
        next_base = bases[i + 1] if i + 1 < len(bases) else None
        unflushed = not had_clean_shutdown and (next_base is None or next_base > recovery_point)
        if unflushed:
            segment = LogSegment(directory, base, config)
            dropped = segment.recover_from(recovery_point)
            segments.append(segment)
            if dropped:
                _warn_truncated(directory, segment, dropped)
                for later in bases[i + 1 :]:
                    _log.warning("%s: deleting segment %d after the corrupt one", directory, later)
                    LogSegment(directory, later, config).delete()
                break
            continue
        segment, problem = LogSegment.open_existing(directory, base, config)
        if problem:
            _log.warning("%s: rebuilding indexes of segment %d: %s", directory, base, problem)
            dropped = segment.recover()
            if dropped:
                _warn_truncated(directory, segment, dropped)
        segments.append(segment)
    if not segments:
        segments.append(LogSegment.create(directory, start_offset, config))
    return segments


def _warn_truncated(directory: Path, segment: LogSegment, dropped: int) -> None:
    _log.warning(
        "%s: corrupt or torn data in segment %d: truncated to offset %d, dropping %d bytes",
        directory,
        segment.base_offset,
        segment.next_offset,
        dropped,
    )
