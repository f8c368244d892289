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

Test only: ``PYKBROKER_TEST_CLEANER_PAUSE=<point>`` (see :data:`PAUSE_POINTS`) freezes the whole
process at that step of the first swap reaching it, after printing ``cleaner test pause at
<point>`` to stderr, so that a test can SIGKILL the broker there (compat_tests/
test_compaction.py). Unset, as in production, it costs one dictionary look-up per swap.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pykbroker.log.checkpoints import fsync_directory
from pykbroker.log.recovery import CLEANED_SUFFIX, DELETED_SUFFIX, SWAP_SUFFIX
from pykbroker.log.segment import ALL_SUFFIXES, segment_path

__all__ = [
    "PAUSE_POINTS",
    "commit_swap",
    "discard_cleaned",
    "finish_swap",
    "install_swap",
    "retire_files",
]

PAUSE_ENV = "PYKBROKER_TEST_CLEANER_PAUSE"
PAUSE_POINTS = (
    "after-cleaned",  # .cleaned files written and flushed, nothing renamed
    "mid-commit-swap",  # some index files .swap, the log file still .cleaned
    "after-commit-swap",  # all .swap, no old file retired
    "mid-retire",  # a group of several segments: the first one's files .deleted
    "after-retire",  # every old segment .deleted, the .swap files not installed
    "mid-install",  # some .swap files installed, the log file still .swap
    "after-install",  # installed; the .deleted files not yet unlinked
)


class CleaningAbortedError(Exception):
    """The log changed (deleted, truncated, closed) or the cleaner is stopping: the cleaned
    files are discarded and the log is left as it was."""


def _test_pause(point: str) -> None:
    """Test only: freeze the process here when PYKBROKER_TEST_CLEANER_PAUSE names ``point``."""
    if os.environ.get(PAUSE_ENV) != point:
        return
    sys.stderr.write(f"cleaner test pause at {point}\n")
    sys.stderr.flush()
    while True:  # blocks the event loop too: the test kills the process
        time.sleep(3600)


def _rename_all(directory: Path, base: int, src: str, dst: str, mid: str = "") -> None:
    renamed = 0
    for suffix in ALL_SUFFIXES:  # the log file last
        path = segment_path(directory, base, suffix + src)
        if path.exists():
            if mid and renamed and suffix == ALL_SUFFIXES[-1]:
                _test_pause(mid)
            os.replace(path, segment_path(directory, base, suffix + dst))
            renamed += 1


def commit_swap(directory: Path, base: int) -> None:
    _test_pause("after-cleaned")
    _rename_all(directory, base, CLEANED_SUFFIX, SWAP_SUFFIX, "mid-commit-swap")
    _test_pause("after-commit-swap")


def retire_files(directory: Path, bases: Sequence[int], swap_base: int) -> None:
    for i, base in enumerate(sorted(bases, key=lambda b: b == swap_base)):
        if i == 1:
            _test_pause("mid-retire")
        _rename_all(directory, base, "", DELETED_SUFFIX)
    _test_pause("after-retire")


def install_swap(directory: Path, base: int) -> None:
    _rename_all(directory, base, SWAP_SUFFIX, "", "mid-install")
    _test_pause("after-install")


def finish_swap(directory: Path, bases: Sequence[int]) -> None:
    fsync_directory(directory)
    for base in bases:
        for suffix in ALL_SUFFIXES:
            segment_path(directory, base, suffix + DELETED_SUFFIX).unlink(missing_ok=True)


def discard_cleaned(directory: Path, base: int) -> None:
    for suffix in ALL_SUFFIXES:
        segment_path(directory, base, suffix + CLEANED_SUFFIX).unlink(missing_ok=True)
