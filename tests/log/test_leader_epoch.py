from __future__ import annotations

from pathlib import Path

from pykbroker.log.leader_epoch import LEADER_EPOCH_CHECKPOINT, EpochEntry, LeaderEpochCache


def test_assign_and_checkpoint_format(tmp_path: Path) -> None:
    cache = LeaderEpochCache.load(tmp_path)
    assert cache.end_offset_for(0, 10) == (-1, -1)
    assert cache.assign(0, 0)
    assert not cache.assign(0, 5)  # same epoch, later offset: no change
    assert cache.assign(2, 10)
    assert cache.assign(5, 20)
    assert (tmp_path / LEADER_EPOCH_CHECKPOINT).read_text() == "0\n3\n0 0\n2 10\n5 20\n"
    assert LeaderEpochCache.load(tmp_path).entries == cache.entries
    # a lower epoch or earlier start removes the entries it contradicts
    assert cache.assign(4, 15)
    assert cache.entries == [(0, 0), (2, 10), (4, 15)]
    assert cache.assign(6, 12)
    assert cache.entries == [(0, 0), (2, 10), (6, 12)]


def test_end_offset_for() -> None:
    entries = [EpochEntry(2, 10), EpochEntry(3, 30), EpochEntry(5, 50), EpochEntry(7, 70)]
    cache = LeaderEpochCache(Path("/nonexistent/x"), entries)
    assert cache.end_offset_for(-1, 100) == (-1, -1)
    assert cache.end_offset_for(7, 100) == (7, 100)  # latest epoch: the log end offset
    assert cache.end_offset_for(3, 100) == (3, 50)
    assert cache.end_offset_for(4, 100) == (3, 50)  # unknown epoch: previous one, next start
    assert cache.end_offset_for(1, 100) == (1, 10)  # below all known epochs
    assert cache.end_offset_for(8, 100) == (-1, -1)
    assert cache.epoch_for_offset(55) == 5
    assert cache.epoch_for_offset(5) is None


def test_truncation(tmp_path: Path) -> None:
    cache = LeaderEpochCache.load(tmp_path)
    for epoch, start in ((1, 0), (2, 10), (3, 20), (4, 30)):
        cache.assign(epoch, start)
    cache.truncate_from_end(20)
    assert cache.entries == [(1, 0), (2, 10)]
    cache.truncate_from_start(15)
    assert cache.entries == [(2, 15)]
    cache.truncate_from_start(15)
    assert LeaderEpochCache.load(tmp_path).entries == [(2, 15)]
    cache.clear()
    assert (tmp_path / LEADER_EPOCH_CHECKPOINT).read_text() == "0\n0\n"


def test_corrupt_checkpoint_starts_empty(tmp_path: Path) -> None:
    (tmp_path / LEADER_EPOCH_CHECKPOINT).write_text("0\n2\n1 0\n")
    assert LeaderEpochCache.load(tmp_path).entries == []
