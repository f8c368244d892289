from __future__ import annotations

from pathlib import Path

import pytest

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.log import PartitionLog
from tests.log.helpers import T0, FakeClock, batch, open_log


def _segmented(path: Path, clock: FakeClock, **config: object) -> PartitionLog:
    """Four segments of 2 batches x 2 records; segment k's records are stamped T0 + k*1000."""
    log = open_log(path, clock, segment_bytes=1000, **config)
    for k in range(4):
        for _ in range(2):
            log.append_as_leader(batch(2, ts=T0 + k * 1000, value_size=60), leader_epoch=0)
        log.roll()
    return log


def test_retention_by_time_uses_largest_timestamp(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    log = _segmented(tmp_path / "t-0", clock, retention_ms=5000)
    assert log.segments == [0, 4, 8, 12, 16]
    clock.now = T0 + 5000
    assert log.apply_retention() == 0  # not strictly older than retention.ms
    clock.now = T0 + 6001  # segments stamped T0 and T0+1000 have expired
    assert log.apply_retention() == 2
    assert log.segments == [8, 12, 16] and log.log_start_offset == 8
    with pytest.raises(KafkaError):
        log.read(7, 100)
    assert log.read(8, 100).first_offset == 8
    assert not (tmp_path / "t-0" / f"{0:020d}.log").exists()


def test_retention_rolls_when_everything_expired(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    log = open_log(tmp_path / "t-0", clock, retention_ms=1000)
    log.append_as_leader(batch(3), leader_epoch=0)
    clock.advance(5000)
    assert log.apply_retention() == 1
    assert (log.segments, log.log_start_offset, log.log_end_offset) == ([3], 3, 3)
    assert log.apply_retention() == 0  # an empty active segment is never deleted
    assert log.append_as_leader(batch(1), leader_epoch=0).first_offset == 3


def test_retention_respects_high_watermark(tmp_path: Path) -> None:
    clock = FakeClock(T0 + 100_000)
    log = _segmented(tmp_path / "t-0", clock, retention_ms=1000)
    assert log.apply_retention(upper_bound_offset=9) == 2  # segment 8-11 ends above the HW
    assert log.segments == [8, 12, 16]


def test_retention_by_size(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    log = _segmented(tmp_path / "t-0", clock)
    sizes = [s.size for s in log._segments]
    total = sum(sizes)
    log.update_config(log.config.__class__(segment_bytes=1000, retention_bytes=total - sizes[0]))
    assert log.apply_retention() == 1  # exactly at the limit without the first one
    assert log.segments == [4, 8, 12, 16] and log.log_start_offset == 4
    log.update_config(log.config.__class__(segment_bytes=1000, retention_bytes=1))
    # Kafka's rule: a segment goes only if the rest still holds >= retention.bytes
    assert log.apply_retention() == 2
    assert log.segments == [12, 16] and log.log_start_offset == 12
    assert log.size_in_bytes == sizes[3]


def test_compact_only_policy_keeps_old_segments(tmp_path: Path) -> None:
    clock = FakeClock(T0 + 10**9)
    log = _segmented(tmp_path / "t-0", clock, retention_ms=1, cleanup_policy="compact")
    assert log.apply_retention() == 0
    log.delete_records_before(9)
    assert log.segments == [8, 12, 16]  # start-offset deletion applies to every policy


def test_delete_records_before(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    log = _segmented(tmp_path / "t-0", clock)
    log.leader_epoch_cache.assign(5, 6)
    assert log.delete_records_before(2) == 2
    assert log.segments == [0, 4, 8, 12, 16]  # segment 0 still holds offsets 2, 3
    assert log.delete_records_before(1) == 2  # never moves back
    assert log.delete_records_before(8) == 8
    assert log.segments == [8, 12, 16]
    assert log.leader_epoch_cache.entries == [(5, 8)]
    assert log.delete_records_before(16) == 16
    assert log.segments == [16]  # the (empty) active segment stays
    with pytest.raises(KafkaError) as err:
        log.delete_records_before(17)
    assert err.value.error_code == ErrorCode.OFFSET_OUT_OF_RANGE


def test_log_start_offset_survives_reopen(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    log = _segmented(tmp_path / "t-0", clock)
    log.delete_records_before(6)
    log.close()
    reopened = PartitionLog.open(tmp_path / "t-0", log.config, log_start_offset=6)
    assert (reopened.log_start_offset, reopened.segments[0]) == (6, 4)
    # a checkpoint beyond the log end: everything goes, the log restarts there
    reopened.close()
    again = PartitionLog.open(tmp_path / "t-0", log.config, log_start_offset=50)
    assert (again.log_start_offset, again.log_end_offset, again.segments) == (50, 50, [50])
