from __future__ import annotations

import os
from pathlib import Path

import pytest

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.log import LONG_MAX, LogConfig, PartitionLog, UnexpectedAppendOffsetError
from pykbroker.records import (
    LOG_APPEND_TIME,
    BatchHeader,
    build_batch,
    iter_batches,
    iter_records,
    validate_batch,
)
from tests.log.helpers import T0, FakeClock, all_records, batch, batch_spans, open_log


def _fill(log: PartitionLog, counts: list[int], **kw: object) -> None:
    for n in counts:
        log.append_as_leader(batch(n, **kw), leader_epoch=3)  # type: ignore[arg-type]


def test_append_assigns_offsets_in_place_and_keeps_crc(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    buf = batch(3)
    info = log.append_as_leader(buf, leader_epoch=7)
    assert (info.first_offset, info.last_offset, info.log_append_time) == (0, 2, -1)
    header = validate_batch(buf)  # patched in place, CRC still valid
    assert (header.base_offset, header.partition_leader_epoch) == (0, 7)
    info = log.append_as_leader(batch(2), leader_epoch=7)
    assert (info.first_offset, info.last_offset, info.log_start_offset) == (3, 4, 0)
    assert log.log_end_offset == 5
    data = log.read(0, 1 << 20).data
    headers = [validate_batch(data, pos) for pos, _ in iter_batches(data)]
    assert [(h.base_offset, h.last_offset, h.partition_leader_epoch) for h in headers] == [
        (0, 2, 7),
        (3, 4, 7),
    ]
    assert [r.offset for pos, _ in iter_batches(data) for r in iter_records(data, pos)] == list(
        range(5)
    )
    assert log.leader_epoch_cache.entries == [(7, 0)]


def test_readonly_memoryview_is_copied(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append_as_leader(batch(1), leader_epoch=0)
    info = log.append_as_leader(memoryview(bytes(batch(2))), leader_epoch=0)
    assert (info.first_offset, info.last_offset) == (1, 2)


def test_read_inside_batch_returns_whole_batch(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    _fill(log, [5, 5, 5])
    for offset in range(15):
        fetched = log.read(offset, 1 << 20)
        first = offset - offset % 5
        assert fetched.first_offset == first
        assert batch_spans(fetched.data)[0] == (first, first + 4)
        assert fetched.next_offset == 15


def test_max_bytes_returns_first_batch_whole_and_never_partial(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    _fill(log, [4, 4, 4], value_size=100)
    size = BatchHeader.parse(log.read(0, 1 << 20).data).size
    one = log.read(0, 10)
    assert one.size == size and batch_spans(one.data) == [(0, 3)]
    assert log.read(0, 10, min_one_batch=False).size == 0
    two = log.read(0, 2 * size + size // 2)
    assert batch_spans(two.data) == [(0, 3), (4, 7)] and two.next_offset == 8
    assert log.read(5, 2 * size).first_offset == 4


def test_max_offset_is_exclusive_high_watermark(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    _fill(log, [2, 2, 2])
    assert batch_spans(log.read(0, 1 << 20, max_offset=4).data) == [(0, 1), (2, 3)]
    assert log.read(4, 1 << 20, max_offset=4).size == 0
    assert log.read(5, 1 << 20, max_offset=4).size == 0  # above the HW but within the log
    assert log.read(6, 1 << 20).size == 0  # at the log end offset


def test_offset_out_of_range(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    _fill(log, [2, 2])
    with pytest.raises(KafkaError) as err:
        log.read(5, 100)
    assert err.value.error_code == ErrorCode.OFFSET_OUT_OF_RANGE
    log.delete_records_before(2)
    with pytest.raises(KafkaError) as err:
        log.read(1, 100)
    assert err.value.error_code == ErrorCode.OFFSET_OUT_OF_RANGE
    assert log.read(2, 100).first_offset == 2


def test_roll_by_segment_bytes_names_files_and_trims_indexes(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    log = open_log(d, segment_bytes=600, index_interval_bytes=50)
    _fill(log, [2] * 40)
    assert len(log.segments) > 3
    names = sorted(os.listdir(d))
    for base in log.segments:
        stem = f"{base:020d}"
        assert {f"{stem}.log", f"{stem}.index", f"{stem}.timeindex"} <= set(names)
    segs = log._segments
    for seg in segs:
        assert seg.size <= 600
        assert (d / f"{seg.base_offset:020d}.index").stat().st_size == 8 * len(seg.offset_index)
        assert (d / f"{seg.base_offset:020d}.timeindex").stat().st_size == 12 * len(seg.time_index)
        assert len(seg.offset_index) > 0
    # a fetch spans segments and still returns only whole, valid batches
    data = log.read(0, 1 << 20).data
    assert [b for b, _ in batch_spans(data)] == list(range(0, 80, 2))


def test_roll_by_time_and_full_index(tmp_path: Path) -> None:
    clock = FakeClock()
    log = open_log(tmp_path / "t-0", clock, segment_ms=1000)
    _fill(log, [1, 1])
    clock.advance(1001)
    _fill(log, [1])
    assert log.segments == [0, 2]
    # 24 bytes: three offset entries; equal timestamps add only one time entry
    small = open_log(tmp_path / "u-0", segment_index_bytes=24, index_interval_bytes=0)
    _fill(small, [1] * 9)
    assert small.segments == [0, 4, 8]


def test_log_append_time(tmp_path: Path) -> None:
    clock = FakeClock(T0 + 5000)
    log = open_log(tmp_path / "t-0", clock, message_timestamp_type="LogAppendTime")
    buf = batch(3, timestamps=[1, 2, 3])
    info = log.append_as_leader(buf, leader_epoch=0)
    assert info.log_append_time == info.max_timestamp == T0 + 5000
    header = validate_batch(buf)
    assert header.timestamp_type == LOG_APPEND_TIME and header.max_timestamp == T0 + 5000
    assert [t for _, t in all_records(log)] == [T0 + 5000] * 3
    assert log.max_timestamp_and_offset() == (T0 + 5000, 0)
    assert log.offset_for_timestamp(T0) == (T0 + 5000, 0)


def test_message_too_large_and_batch_checks(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", max_message_bytes=200)
    with pytest.raises(KafkaError) as err:
        log.append_as_leader(batch(1, value_size=300), leader_epoch=0)
    assert err.value.error_code == ErrorCode.MESSAGE_TOO_LARGE
    with pytest.raises(KafkaError) as err:
        log.append_as_leader(batch(1) + batch(1), leader_epoch=0)
    assert err.value.error_code == ErrorCode.CORRUPT_MESSAGE
    small_segment = open_log(tmp_path / "u-0", segment_bytes=100)
    with pytest.raises(KafkaError) as err:
        small_segment.append_as_leader(batch(1, value_size=100), leader_epoch=0)
    assert err.value.error_code == ErrorCode.RECORD_LIST_TOO_LARGE
    assert log.log_end_offset == 0 and small_segment.log_end_offset == 0


def test_invalid_timestamp_when_limits_set(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    log = open_log(
        tmp_path / "t-0",
        clock,
        message_timestamp_before_max_ms=1000,
        message_timestamp_after_max_ms=100,
    )
    info = log.append_as_leader(batch(3, timestamps=[T0 - 1000, T0 + 100, T0]), leader_epoch=0)
    assert info.offset_of_max_timestamp == 1  # exact record, found while checking
    for bad in ([T0 - 1001], [T0, T0 + 101]):
        with pytest.raises(KafkaError) as err:
            log.append_as_leader(batch(len(bad), timestamps=bad), leader_epoch=0)
        assert err.value.error_code == ErrorCode.INVALID_TIMESTAMP
    assert log.log_end_offset == 3
    # no limits: no per-record check at all
    free = open_log(tmp_path / "u-0", clock)
    assert free.config.message_timestamp_before_max_ms == LONG_MAX
    free.append_as_leader(batch(1, timestamps=[0]), leader_epoch=0)


def test_max_timestamp_exact_record_across_segments(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", segment_bytes=400)
    log.append_as_leader(batch(3, timestamps=[T0 + 5, T0 + 9, T0 + 1]), leader_epoch=0)
    log.append_as_leader(batch(3, timestamps=[T0 + 50, T0 + 70, T0 + 70]), leader_epoch=0)
    log.append_as_leader(batch(2, timestamps=[T0 + 70, T0 + 3]), leader_epoch=0)
    log.append_as_leader(batch(2, timestamps=[T0 + 2, T0 + 3]), leader_epoch=0)
    assert len(log.segments) > 1
    assert log.max_timestamp_and_offset() == (T0 + 70, 4)
    empty = open_log(tmp_path / "u-0")
    assert empty.max_timestamp_and_offset() == (-1, -1)
    assert empty.offset_for_timestamp(0) is None


def test_follower_append(tmp_path: Path) -> None:
    leader = open_log(tmp_path / "l-0", segment_bytes=500)
    for epoch in (1, 1, 2, 2, 2, 4):
        leader.append_as_leader(batch(3), leader_epoch=epoch)
    follower = open_log(tmp_path / "f-0", segment_bytes=500)
    data = leader.read(0, 1 << 20).data
    info = follower.append_as_follower(memoryview(data))
    assert (info.first_offset, info.last_offset) == (0, 17)
    assert follower.read(0, 1 << 20).data == data
    assert follower.leader_epoch_cache.entries == [(1, 0), (2, 6), (4, 15)]
    assert len(follower.segments) > 1
    with pytest.raises(UnexpectedAppendOffsetError):
        follower.append_as_follower(memoryview(data))
    bad = bytearray(data)
    bad[-1] ^= 0xFF
    with pytest.raises(KafkaError) as err:
        open_log(tmp_path / "g-0").append_as_follower(bad)
    assert err.value.error_code == ErrorCode.CORRUPT_MESSAGE
    assert follower.end_offset_for_epoch(2) == (2, 15)
    assert follower.end_offset_for_epoch(4) == (4, 18)
    assert follower.end_offset_for_epoch(3) == (2, 15)


def test_truncate_to(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", segment_bytes=300, index_interval_bytes=10)
    for epoch in range(12):
        log.append_as_leader(batch(2), leader_epoch=epoch)
    assert len(log.segments) > 2
    assert not log.truncate_to(24)
    assert log.truncate_to(13)  # inside batch 12-13: the whole batch goes
    assert log.log_end_offset == 12
    assert batch_spans(log.read(0, 1 << 20).data)[-1] == (10, 11)
    assert log.leader_epoch_cache.latest_epoch() == 5
    info = log.append_as_leader(batch(1), leader_epoch=9)
    assert info.first_offset == 12
    assert log.truncate_to(3)
    assert log.log_end_offset == 2 and log.segments == [0]
    log.truncate_fully_and_start_at(100)
    assert (log.log_start_offset, log.log_end_offset, log.segments) == (100, 100, [100])
    assert log.append_as_leader(batch(1), leader_epoch=1).first_offset == 100
    assert log.leader_epoch_cache.entries == [(1, 100)]


def test_truncating_to_the_end_drops_an_epoch_with_no_records(tmp_path: Path) -> None:
    """A leader deposed before its first append left epoch 2 at the log end: a truncation
    to that end (the divergence point its new leader names) must forget it, or every fetch
    names the same divergence again."""
    log = open_log(tmp_path / "t-0")
    log.append_as_leader(batch(4), leader_epoch=1)
    log.leader_epoch_cache.assign(2, log.log_end_offset)
    assert log.leader_epoch_cache.latest_epoch() == 2
    assert not log.truncate_to(4)
    assert log.log_end_offset == 4
    assert log.leader_epoch_cache.entries == [(1, 0)]
    assert not log.truncate_to(9)  # past the end: nothing to drop, nothing dropped
    assert log.leader_epoch_cache.entries == [(1, 0)]


def test_flush_policy_and_recovery_point(tmp_path: Path) -> None:
    clock = FakeClock()
    log = open_log(tmp_path / "t-0", clock, flush_messages=3)
    _fill(log, [1, 1])
    assert log.unflushed_messages == 2 and not log.flush_if_needed()
    _fill(log, [1])
    assert log.flush_if_needed() and log.recovery_point == 3 and log.unflushed_messages == 0
    timed = open_log(tmp_path / "u-0", clock, flush_ms=1000, segment_bytes=200)
    _fill(timed, [1])
    assert not timed.flush_if_needed()
    clock.advance(1000)
    assert timed.flush_if_needed() and timed.recovery_point == 1
    _fill(timed, [1] * 5)
    assert len(timed.segments) > 1
    assert timed.flush_if_needed()  # rolled segments are flushed without waiting
    assert timed.recovery_point == timed.segments[-1]


def test_update_config_and_properties(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    _fill(log, [2])
    assert log.size_in_bytes == log.read(0, 1 << 20).size
    assert abs(log.last_modified - T0) > 0  # real file mtime, not the fake clock
    log.update_config(LogConfig(max_message_bytes=10))
    with pytest.raises(KafkaError):
        log.append_as_leader(batch(1), leader_epoch=0)
    log.close()
    log.close()  # idempotent


def test_build_batch_offsets_are_ignored(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    raw = bytearray(build_batch([(None, b"x", (), T0)], base_offset=999))
    assert log.append_as_leader(raw, leader_epoch=0).first_offset == 0


def test_follower_accepts_gaps_and_ignores_partial_tail(tmp_path: Path) -> None:
    follower = open_log(tmp_path / "f-0")
    first = bytearray(build_batch([(None, b"a", (), T0)] * 2, base_offset=0))
    gapped = bytearray(build_batch([(None, b"b", (), T0)] * 2, base_offset=10))
    info = follower.append_as_follower(bytes(first + gapped + gapped[:30]))
    assert (info.first_offset, info.last_offset, follower.log_end_offset) == (0, 11, 12)
    assert follower.read(5, 1 << 20).first_offset == 10  # an offset in the gap
    assert batch_spans(follower.read(0, 1 << 20).data) == [(0, 1), (10, 11)]
