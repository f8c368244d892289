from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pykbroker.log import PartitionLog
from tests.log.helpers import T0, all_records, batch, open_log


def _brute_first_at_or_after(records: list[tuple[int, int]], target: int) -> tuple[int, int] | None:
    for offset, ts in records:
        if ts >= target:
            return ts, offset
    return None


def _brute_max(records: list[tuple[int, int]]) -> tuple[int, int]:
    best = (-1, -1)
    for offset, ts in records:
        if ts > best[0]:
            best = (ts, offset)
    return best


def _check(log: PartitionLog, records: list[tuple[int, int]], probes: list[int]) -> None:
    visible = [(o, t) for o, t in records if o >= log.log_start_offset]
    for target in probes:
        assert log.offset_for_timestamp(target) == _brute_first_at_or_after(visible, target)
    # like Kafka, the max covers whole remaining segments, even records below the start offset
    kept = [(o, t) for o, t in records if o >= log.segments[0]]
    assert log.max_timestamp_and_offset() == _brute_max(kept)


@settings(max_examples=40, deadline=None)
@given(
    batches=st.lists(st.lists(st.integers(0, 200), min_size=1, max_size=5), max_size=30),
    probes=st.lists(st.integers(-5, 210), max_size=25),
    interval=st.integers(0, 400),
    start=st.integers(0, 40),
)
def test_offset_for_timestamp_matches_brute_force(
    batches: list[list[int]], probes: list[int], interval: int, start: int
) -> None:
    """Non-monotonic CreateTime timestamps, several segments, a raised log start offset,
    before and after reopening (indexes read back from disk)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t-0"
        log = open_log(path, segment_bytes=700, index_interval_bytes=interval)
        for stamps in batches:
            log.append_as_leader(
                batch(len(stamps), timestamps=[T0 + s for s in stamps]), leader_epoch=0
            )
        records = all_records(log)
        assert [o for o, _ in records] == list(range(log.log_end_offset))
        probes = [T0 + p for p in probes]
        _check(log, records, probes)
        log.delete_records_before(min(start, log.log_end_offset))
        _check(log, records, probes)
        lso = log.log_start_offset
        log.close()
        reopened = PartitionLog.open(path, log.config, log_start_offset=lso)
        _check(reopened, records, probes)
        reopened.close()


def test_time_index_points_at_first_batch_reaching_the_max(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", index_interval_bytes=0)
    for stamps in ([10, 30], [20], [30, 5], [31], [31], [2]):
        log.append_as_leader(
            batch(len(stamps), timestamps=[T0 + s for s in stamps]), leader_epoch=0
        )
    segment = log.active_segment
    assert [(t - T0, o) for t, o in segment.time_index.entries()] == [(30, 1), (31, 5)]
    assert log.offset_for_timestamp(T0 + 30) == (T0 + 30, 1)
    assert log.offset_for_timestamp(T0 + 31) == (T0 + 31, 5)
    assert log.offset_for_timestamp(T0 + 32) is None
    assert log.offset_for_timestamp(T0 + 11) == (T0 + 30, 1)
    assert log.max_timestamp_and_offset() == (T0 + 31, 5)
