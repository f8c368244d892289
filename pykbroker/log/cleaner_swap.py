"""Kafka's ``.cleaned`` / ``.swap`` / ``.deleted`` file protocol for replacing segments.

1. the cleaner writes and fsyncs ``<base>.log.cleaned`` and its indexes (``.index.cleaned``,
   ``.timeindex.cleaned``, ``.txnindex.cleaned``): a crash now leaves them to be deleted;
2. :func:`commit_swap` renames them to ``.swap``, the log file last: its ``.log.swap`` is the
   commit point, from which recovery completes the replacement;
3. :func:`retire_files` renames the replaced segments' files to ``.deleted``, the log file of
   the segment at the swap's own base offset last (recovery deletes a replaced segment at
   that base only while its ``.log`` is still there);
4. :func:`install_swap` renames the ``.swap`` files into place, the log file last;
5. :func:`finish_swap` (in a worker thread) fsyncs the directory and unlinks the ``.deleted``
   files; descriptors still open on them (a fetch's sendfile) keep working.

Steps 2 to 4 are renames, made on the event loop together with the in-memory replacement, so
they cost microseconds; every prefix of them recovers (see :func:`.recovery.clean_directory`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pykbroker.log.checkpoints import fsync_directory
from pykbroker.log.recovery import CLEANED_SUFFIX, DELETED_SUFFIX, SWAP_SUFFIX
from pykbroker.log.segment import ALL_SUFFIXES, segment_path

__all__ = ["commit_swap", "discard_cleaned", "finish_swap", "install_swap", "retire_files"]


def _rename_all(directory: Path, base: int, src: str, dst: str) -> None:
    for suffix in ALL_SUFFIXES:  # the log file last
        path = segment_path(directory, base, suffix + src)
        if path.exists():
            os.replace(path, segment_path(directory, base, suffix + dst))


def commit_swap(directory: Path, base: int) -> None:
    _rename_all(directory, base, CLEANED_SUFFIX, SWAP_SUFFIX)


def retire_files(directory: Path, bases: Sequence[int], swap_base: int) -> None:
    for base in sorted(bases, key=lambda b: b == swap_base):
        _rename_all(directory, base, "", DELETED_SUFFIX)


def install_swap(directory: Path, base: int) -> None:
    _rename_all(directory, base, SWAP_SUFFIX, "")


def finish_swap(directory: Path, bases: Sequence[int]) -> None:
    fsync_directory(directory)
    for base in bases:
        for suffix in ALL_SUFFIXES:
            segment_path(directory, base, suffix + DELETED_SUFFIX).unlink(missing_ok=True)


def discard_cleaned(directory: Path, base: int) -> None:
    for suffix in ALL_SUFFIXES:
        segment_path(directory, base, suffix + CLEANED_SUFFIX).unlink(missing_ok=True)
