"""sync_data runs in a worker thread while the event loop appends: nothing may be marked
durable, or clean, that the fdatasync did not cover."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.log.helpers import batch, open_log


def test_append_during_fdatasync_stays_dirty_for_the_next_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(tmp_path / "t-0")
    log.append_as_leader(batch(2), leader_epoch=0)
    real_fdatasync = os.fdatasync
    calls: list[int] = []

    def fdatasync_racing_an_append(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            log.append_as_leader(batch(3), leader_epoch=0)  # the loop appends while the sync is in the kernel
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync_racing_an_append)
    log.sync_data(2)
    assert log.durable_offset == 2  # only what was asked for, not the racing append
    log.sync_data(log.log_end_offset)
    assert len(calls) == 2, "the append made during the first sync needs a sync of its own"
    assert log.durable_offset == 5
    log.close()


def test_failed_fdatasync_keeps_the_data_unsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(tmp_path / "t-0")
    log.append_as_leader(batch(1), leader_epoch=0)
    real_fdatasync = os.fdatasync
    calls: list[int] = []

    def failing_once(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(5, "Input/output error")
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", failing_once)
    with pytest.raises(OSError):
        log.sync_data(1)
    assert log.durable_offset == 0
    log.sync_data(1)
    assert len(calls) == 2 and log.durable_offset == 1
    log.close()
