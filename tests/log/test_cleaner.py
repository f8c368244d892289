"""The log cleaner on one log: newest record per key, offsets kept, tombstones kept for
delete.retention.ms, cleanable range, grouping, checkpoints, swaps and their recovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from pykbroker.log import LogConfig, PartitionLog, cleaner_swap
from pykbroker.log.checkpoints import read_offset_checkpoint
from pykbroker.log.cleaner import Cleaner, take_task
from pykbroker.log.cleaner_filter import CleanerStats
from pykbroker.log.cleaner_manager import CLEANER_CHECKPOINT, LogCleanerManager, cleanable_offsets
from pykbroker.records import build_batch, iter_batches, iter_records
from tests.log.cleaner_helpers import batches, clean, compact_log, latest, put, read_committed
from tests.log.helpers import T0, FakeClock

DAY = 86_400_000


def _fill(log: PartitionLog, rounds: int = 10, keys: int = 10) -> dict[bytes, tuple[int, bytes]]:
    newest: dict[bytes, tuple[int, bytes]] = {}
    for r in range(rounds):
        for k in range(keys):
            key, value = b"k%d" % k, b"v%d-%d" % (k, r)
            newest[key] = (put(log, (key, value)), value)
    return newest


def test_keeps_newest_record_per_key_at_its_offset(tmp_path: Path) -> None:
    log = compact_log(tmp_path / "t-0")
    newest = _fill(log)
    before = read_committed(log)
    size = log.size_in_bytes
    result = clean(log)
    assert result is not None and result.end_offset == log.segments[-1]
    after = read_committed(log)
    by_offset = {o: (k, v) for o, k, v in before}
    assert all(by_offset[o] == (k, v) for o, k, v in after)  # offsets unchanged
    cleaned = [o for o, _, _ in after if o < result.end_offset]
    assert len(cleaned) == len({k for o, k, _ in after if o < result.end_offset})
    assert {k: (o, v) for k, (o, v) in latest(after).items()} == newest
    assert log.size_in_bytes < size / 2
    assert [o for o, _, _ in after] == sorted(o for o, _, _ in after)
    # the cleaned log survives a restart (unclean: every segment re-validated)
    expected = bytes(log.read(0, 1 << 30).data)
    log.close()
    reopened = PartitionLog.open(log.directory, log.config, had_clean_shutdown=False)
    assert bytes(reopened.read(0, 1 << 30).data) == expected
    assert reopened.log_end_offset == 100


def test_fetch_inside_a_gap_and_offsets_of_gaps(tmp_path: Path) -> None:
    log = compact_log(tmp_path / "t-0")
    _fill(log)
    clean(log)
    offsets = [o for o, _, _ in read_committed(log)]
    gap = next(o for o in range(offsets[-1]) if o not in offsets)
    fetched = log.read(gap, 1 << 20)
    data = bytes(fetched.data)
    got = [r.offset for pos, _ in iter_batches(data) for r in iter_records(data, pos)]
    assert [o for o in got if o >= gap] == [
        o for o in offsets if o >= gap]
    found = log.offset_for_timestamp(0)
    assert found is not None and found.offset == offsets[0]


def test_second_cleaning_merges_small_segments(tmp_path: Path) -> None:
    log = compact_log(tmp_path / "t-0")
    _fill(log)
    clean(log)
    count = len(log.segments)
    put(log, (b"x", b"y"))
    _fill(log, rounds=3)
    clean(log)
    assert len(log.segments) < count + 3
    assert latest(read_committed(log))[b"k3"][1] == b"v3-2"


def test_tombstones_kept_for_delete_retention_then_removed(tmp_path: Path) -> None:
    clock = FakeClock()
    log = compact_log(tmp_path / "t-0", clock, delete_retention_ms=DAY)
    _fill(log, rounds=3)
    put(log, (b"k1", None))
    put(log, (b"k2", None))
    _fill(log, rounds=1, keys=0)
    for _ in range(12):  # roll past the tombstones
        put(log, (b"pad", b"x" * 60))
    clean(log)
    seen = latest(read_committed(log))
    assert seen[b"k1"][1] is None and seen[b"k2"][1] is None  # tombstones stay for now
    horizons = [h.base_timestamp for h, _ in batches(log) if h.has_delete_horizon]
    assert horizons == [T0 + DAY, T0 + DAY]
    clock.advance(DAY - 1)
    clean(log)
    assert latest(read_committed(log))[b"k1"][1] is None
    clock.advance(1)
    clean(log)
    seen = latest(read_committed(log))
    assert b"k1" not in seen and b"k2" not in seen
    assert seen[b"k0"][1] == b"v0-2"


def test_keyless_records_never_crash_the_cleaner(tmp_path: Path) -> None:
    path = tmp_path / "t-0"
    log = PartitionLog.open(path, LogConfig.from_mapping({"segment.bytes": 512}))
    for i in range(20):  # written while the topic was cleanup.policy=delete
        records = [(None, b"nokey%d" % i, (), T0), (b"k", b"v%d" % i, (), T0)]
        log.append_as_leader(bytearray(build_batch(records)), leader_epoch=0)
    log.update_config(LogConfig.from_mapping({"cleanup.policy": "compact",
                                              "segment.bytes": 512}))
    result = clean(log)
    assert result is not None and result.stats.invalid_messages > 0
    values = [v for _, k, v in read_committed(log) if k == b"k"]
    assert values[-1] == b"v19"


def test_cleanable_range_ratio_and_compaction_lag(tmp_path: Path) -> None:
    clock = FakeClock()
    log = compact_log(tmp_path / "t-0", clock, min_compaction_lag_ms=60_000)
    _fill(log, rounds=4)
    first_dirty, uncleanable, _ = cleanable_offsets(log, None, clock(), None)
    assert (first_dirty, uncleanable) == (0, 0)  # everything is younger than the lag
    clock.advance(60_001)
    put(log, (b"new", b"x"))
    first_dirty, uncleanable, _ = cleanable_offsets(log, None, clock(), None)
    assert uncleanable == log.segments[-1]
    assert cleanable_offsets(log, None, clock(), 5)[1] <= 5  # never past the high watermark
    assert cleanable_offsets(log, 10_000, clock(), None)[2]  # a checkpoint past the end


def test_manager_picks_dirtiest_and_checkpoints(tmp_path: Path) -> None:
    clock = FakeClock()
    a = compact_log(tmp_path / "a-0", clock)
    b = compact_log(tmp_path / "b-0", clock, min_cleanable_dirty_ratio=1.0)
    c = PartitionLog.open(tmp_path / "c-0", LogConfig(segment_bytes=1024), now_ms=clock)
    for log in (a, b):
        _fill(log)
    for _ in range(40):
        c.append_as_leader(bytearray(build_batch([(b"k", b"v", (), T0)])), leader_epoch=0)
    manager = LogCleanerManager([tmp_path], started_ms=clock())
    logs = {("a", 0): a, ("b", 0): b, ("c", 0): c}
    picked = manager.grab_filthiest(logs, clock())
    assert picked is not None and picked.tp == ("a", 0) and picked.ratio == 1.0
    assert manager.grab_filthiest(logs, clock()) is None  # a in progress; b below its ratio
    assert manager.dirtiest_ratio == 1.0
    from pykbroker.log.log_cleaner import clean_log
    result = clean_log(a, Cleaner(), picked.first_dirty, picked.first_uncleanable, clock())
    manager.done_cleaning(picked.tp, a, result.end_offset, result.min_horizon)
    manager.write_checkpoint(tmp_path)
    assert read_offset_checkpoint(tmp_path / CLEANER_CHECKPOINT) == {("a", 0): result.end_offset}
    assert LogCleanerManager([tmp_path]).checkpoint_of(a, ("a", 0)) == result.end_offset
    assert manager.grab_filthiest(logs, clock()) is None  # a is clean now


def test_segment_ms_rolls_a_quiet_compacted_log(tmp_path: Path) -> None:
    clock = FakeClock()
    log = compact_log(tmp_path / "t-0", clock, segment_ms=1000, segment_bytes=1 << 20)
    for _ in range(5):
        put(log, (b"k", b"v"))
    manager = LogCleanerManager([tmp_path], started_ms=clock())
    assert manager.grab_filthiest({("t", 0): log}, clock()) is None
    clock.advance(1001)
    picked = manager.grab_filthiest({("t", 0): log}, clock())
    assert picked is not None and len(log.segments) == 2


def test_small_offset_map_cleans_in_steps(tmp_path: Path) -> None:
    log = compact_log(tmp_path / "t-0")
    newest = _fill(log, rounds=5, keys=40)
    cleaner = Cleaner(dedupe_buffer_size=24 * 20)  # 18 keys fit
    first = clean(log, cleaner=cleaner)
    assert first is not None and first.end_offset < log.segments[-1]
    while (result := clean(log, cleaner=cleaner)) is not None and result.end_offset < (
        log.segments[-1]
    ) and result.end_offset != first.end_offset:
        first = result
    for _ in range(20):
        clean(log, cleaner=cleaner)
    seen = latest(read_committed(log))
    assert {k: v for k, v in seen.items() if k in newest} == newest


def _cleaned_but_not_swapped(tmp_path: Path) -> tuple[PartitionLog, list[int], bytes, int]:
    log = compact_log(tmp_path / "t-0")
    _fill(log)
    expected = latest(read_committed(log))
    first_dirty, uncleanable, _ = cleanable_offsets(log, None, log._now_ms(), None)
    task = take_task(log, first_dirty, uncleanable, log._now_ms())
    cleaner = Cleaner()
    plan = cleaner.plan(task, CleanerStats())
    group = plan.groups[0]
    cleaned, _ = cleaner.clean_group(task, plan, group, CleanerStats())
    cleaned.close(flush=False)
    task.close()
    del expected
    return log, [s.base_offset for s in group], bytes(log.read(0, 1 << 30).data), (
        group[0].base_offset)


@pytest.mark.parametrize("step", ["cleaned", "swap", "retired", "half-retired", "installed"])
def test_crash_at_each_swap_step_recovers(tmp_path: Path, step: str) -> None:
    """The files as a crash would leave them at each step of the swap protocol."""
    log, bases, before, base = _cleaned_but_not_swapped(tmp_path)
    want = latest(read_committed(log))
    directory = log.directory
    log.close()
    if step != "cleaned":
        cleaner_swap.commit_swap(directory, base)
    if step == "half-retired":
        cleaner_swap.retire_files(directory, bases[1:], base)
    if step in ("retired", "installed"):
        cleaner_swap.retire_files(directory, bases, base)
    if step == "installed":
        for suffix in (".index", ".timeindex", ".txnindex"):
            p = directory / f"{base:020d}{suffix}.swap"
            if p.exists():
                p.rename(directory / f"{base:020d}{suffix}")
    reopened = PartitionLog.open(directory, log.config, had_clean_shutdown=False)
    assert latest(read_committed(reopened)) == want
    names = [p.name for p in directory.iterdir()]
    assert not [n for n in names if n.endswith((".cleaned", ".swap", ".deleted"))]
    offsets = [o for o, _, _ in read_committed(reopened)]
    assert offsets == sorted(set(offsets))
    if step == "cleaned":
        assert bytes(reopened.read(0, 1 << 30).data) == before
    else:
        assert reopened.size_in_bytes < len(before)


def test_swap_refused_when_retention_got_there_first(tmp_path: Path) -> None:
    log = compact_log(tmp_path / "t-0")
    _fill(log)
    first_dirty, uncleanable, _ = cleanable_offsets(log, None, log._now_ms(), None)
    task = take_task(log, first_dirty, uncleanable, log._now_ms())
    cleaner = Cleaner()
    plan = cleaner.plan(task, CleanerStats())
    cleaned, _ = cleaner.clean_group(task, plan, plan.groups[0], CleanerStats())
    log.delete_records_before(log.segments[2])
    assert not log.replace_segments(cleaned, [s.segment for s in plan.groups[0]])
    cleaner_swap.discard_cleaned(log.directory, cleaned.base_offset)
    task.close()
    assert not [p for p in log.directory.iterdir() if p.name.endswith(".cleaned")]
    assert read_committed(log)[0][0] == log.segments[0]


def test_cleaned_batches_pass_the_produce_checks(tmp_path: Path) -> None:
    log = compact_log(tmp_path / "t-0")
    _fill(log)
    put(log, (b"k1", None))
    _fill(log, rounds=2)
    clean(log)
    for header, raw in batches(log):
        assert header.magic == 2 and header.size == len(raw)  # CRC checked by batches()
        for record in iter_records(raw):
            assert header.base_offset <= record.offset <= header.last_offset
    data = bytes(log.read(0, 1 << 30).data)
    assert sum(1 for _ in iter_batches(data)) == len(batches(log))
