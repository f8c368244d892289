"""max.compaction.lag.ms and cleanup.policy=compact,delete on one log.

max.compaction.lag.ms: a log whose oldest dirty record is older than it is cleaned whatever
its dirty ratio, and (Kafka's ``LogConfig.maxSegmentMs``) a compacted log's active segment
rolls once older than it, so a record never waits longer than that to become cleanable.
compact,delete: the cleaner compacts and retention deletes, each by its own settings; compact
alone never deletes by time or size; policy changes apply to the next pass.
"""

from __future__ import annotations

from pathlib import Path

from pykbroker.log import LogConfig, PartitionLog
from pykbroker.log.cleaner import Cleaner
from pykbroker.log.cleaner_manager import LogCleanerManager
from pykbroker.log.log_cleaner import clean_log
from tests.log.cleaner_helpers import clean, compact_log, latest, put, read_committed
from tests.log.helpers import FakeClock

TP = ("t", 0)


def _fill(log: PartitionLog, rounds: int, keys: int = 10, tag: str = "") -> None:
    for r in range(rounds):
        for k in range(keys):
            put(log, (b"k%d" % k, b"v%s%d-%d" % (tag.encode(), k, r)))


def _clean_picked(manager: LogCleanerManager, log: PartitionLog, now: int) -> bool:
    picked = manager.grab_filthiest({TP: log}, now)
    if picked is None:
        return False
    result = clean_log(log, Cleaner(), picked.first_dirty, picked.first_uncleanable, now)
    manager.done_cleaning(TP, log, result.end_offset, result.min_horizon)
    return True


# -- max.compaction.lag.ms ------------------------------------------------------------------

def test_max_compaction_lag_cleans_below_the_dirty_ratio(tmp_path: Path) -> None:
    clock = FakeClock()
    log = compact_log(tmp_path / "t-0", clock, min_cleanable_dirty_ratio=0.9,
                      max_compaction_lag_ms=60_000)
    _fill(log, rounds=20)
    manager = LogCleanerManager([tmp_path], started_ms=clock())
    assert _clean_picked(manager, log, clock())  # all dirty: ratio 1.0
    clean_size = log.size_in_bytes
    _fill(log, rounds=2, tag="new")  # a little dirt on a larger clean part
    put(log, (b"roll", b"x"))
    assert manager.grab_filthiest({TP: log}, clock()) is None  # ratio below 0.9
    assert manager.dirtiest_ratio < 0.9
    clock.advance(60_001)  # the oldest dirty record is older than max.compaction.lag.ms
    assert _clean_picked(manager, log, clock())
    seen = latest(read_committed(log))
    assert all(seen[b"k%d" % k][1] == b"vnew%d-1" % k for k in range(10))
    assert log.size_in_bytes <= clean_size + 200
    assert manager.grab_filthiest({TP: log}, clock()) is None  # clean again


def test_max_compaction_lag_without_it_waits_for_the_ratio(tmp_path: Path) -> None:
    clock = FakeClock()
    log = compact_log(tmp_path / "t-0", clock, min_cleanable_dirty_ratio=0.9)
    _fill(log, rounds=20)
    manager = LogCleanerManager([tmp_path], started_ms=clock())
    assert _clean_picked(manager, log, clock())
    _fill(log, rounds=2, tag="new")
    put(log, (b"roll", b"x"))
    clock.advance(365 * 86_400_000)  # the default max lag is unbounded
    assert manager.grab_filthiest({TP: log}, clock()) is None


def test_max_compaction_lag_rolls_the_active_segment(tmp_path: Path) -> None:
    """Everything in the active segment, segment.ms a week: the active segment rolls once
    older than max.compaction.lag.ms, and the log is cleaned then."""
    clock = FakeClock()
    log = compact_log(tmp_path / "t-0", clock, segment_bytes=1 << 20,
                      min_cleanable_dirty_ratio=0.9, max_compaction_lag_ms=10_000)
    assert log.config.segment_ms == 7 * 86_400_000
    _fill(log, rounds=5)
    manager = LogCleanerManager([tmp_path], started_ms=clock())
    assert manager.grab_filthiest({TP: log}, clock()) is None
    assert len(log.segments) == 1
    clock.advance(10_001)
    assert _clean_picked(manager, log, clock())
    assert len(log.segments) == 2  # rolled, then cleaned
    assert len(read_committed(log)) == 10
    # Appends roll on the same bound (Kafka's maxSegmentMs = min(segment.ms, max lag)).
    put(log, (b"k0", b"a"))
    clock.advance(10_001)
    put(log, (b"k0", b"b"))
    assert len(log.segments) == 3


def test_max_compaction_lag_does_not_roll_a_delete_only_log(tmp_path: Path) -> None:
    clock = FakeClock()
    log = PartitionLog.open(tmp_path / "t-0", LogConfig.from_mapping(
        {"cleanup.policy": "delete", "max.compaction.lag.ms": 1000}), now_ms=clock)
    put(log, (b"k", b"a"))
    clock.advance(5000)
    put(log, (b"k", b"b"))
    assert log.roll_if_aged(clock()) is False
    assert len(log.segments) == 1


# -- cleanup.policy=compact,delete ----------------------------------------------------------

def test_compact_and_delete_both_apply(tmp_path: Path) -> None:
    clock = FakeClock()
    log = compact_log(tmp_path / "t-0", clock, cleanup_policy="compact,delete",
                      retention_ms=100_000)
    _fill(log, rounds=10, tag="old")  # expires by time
    clock.advance(50_000)
    _fill(log, rounds=10, tag="mid")
    put(log, (b"roll", b"x"))
    log.roll()
    clean(log)
    seen = latest(read_committed(log))
    assert {k: v for k, (_, v) in seen.items()} == {
        **{b"k%d" % k: b"vmid%d-9" % k for k in range(10)}, b"roll": b"x"}
    assert log.log_start_offset == 0
    clock.advance(60_000)  # the old records' segments passed retention.ms
    assert log.apply_retention() > 0
    assert log.log_start_offset > 0
    assert {k: v for k, (_, v) in latest(read_committed(log)).items()} == {
        **{b"k%d" % k: b"vmid%d-9" % k for k in range(10)}, b"roll": b"x"}
    clock.advance(100_000)  # now everything passed it: only the empty active segment stays
    log.apply_retention()
    assert read_committed(log) == []
    assert log.log_start_offset == log.log_end_offset


def test_compact_and_delete_retention_bytes(tmp_path: Path) -> None:
    clock = FakeClock()
    log = compact_log(tmp_path / "t-0", clock, cleanup_policy="compact,delete",
                      retention_bytes=2048)
    _fill(log, rounds=30)
    assert log.apply_retention() > 0  # by size, before any cleaning
    # Kafka's rule: whole segments go while the rest still holds retention.bytes
    assert 2048 <= log.size_in_bytes < 2048 + 1024
    start = log.log_start_offset
    put(log, (b"roll", b"x"))
    log.roll()
    clean(log)
    assert log.log_start_offset == start
    assert {k for k, _ in latest(read_committed(log)).items()} == {
        *(b"k%d" % k for k in range(10)), b"roll"}


def test_compact_alone_never_deletes_by_retention(tmp_path: Path) -> None:
    clock = FakeClock()
    log = compact_log(tmp_path / "t-0", clock, retention_ms=1000, retention_bytes=100)
    _fill(log, rounds=10)
    clock.advance(10_000)
    assert log.apply_retention() == 0
    assert log.log_start_offset == 0


def test_policy_change_applies_to_the_next_pass(tmp_path: Path) -> None:
    clock = FakeClock()
    log = compact_log(tmp_path / "t-0", clock, retention_ms=1000)
    _fill(log, rounds=10)
    put(log, (b"roll", b"x"))
    log.roll()
    clock.advance(10_000)
    assert log.apply_retention() == 0  # compact: no retention
    log.update_config(LogConfig.from_mapping(
        {"cleanup.policy": "compact,delete", "segment.bytes": 1024, "retention.ms": 1000}))
    assert log.apply_retention() > 0
    assert read_committed(log) == []
    manager = LogCleanerManager([tmp_path], started_ms=clock())
    _fill(log, rounds=10, tag="new")
    put(log, (b"roll", b"y"))
    log.roll()
    assert _clean_picked(manager, log, clock())  # still compacted
    assert len(read_committed(log)) == 11
    log.update_config(LogConfig.from_mapping({"cleanup.policy": "delete",
                                              "segment.bytes": 1024}))
    _fill(log, rounds=10, tag="more")
    log.roll()
    assert manager.grab_filthiest({TP: log}, clock()) is None  # not compacted any more
