"""A segment keeps its last append in memory (segment._Recent): a caught-up follower's or
consumer's read of it costs no index lookup and no pread, and every read still returns what
the file holds, through appends, truncations, rolls and reopens."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pykbroker.log import PartitionLog, segment
from pykbroker.records import build_batch, iter_batches, set_base_offset
from tests.log.helpers import T0, FakeClock, batch, open_log


def _follower_batches(base: int, sizes: list[int]) -> bytes:
    """Batches as a leader would send them: consecutive offsets from ``base``."""
    out = bytearray()
    for size in sizes:
        one = bytearray(build_batch([(b"k", bytes(size), (), T0)]))
        set_base_offset(one, 0, base)  # (outside the CRC)
        out += one
        base += 1
    return bytes(out)


def _reads(log: PartitionLog) -> list[tuple[int, bytes]]:
    return [(offset, bytes(log.read(offset, 1 << 20).data))
            for offset in range(log.log_start_offset, log.log_end_offset + 1)]


def _file_reads(log: PartitionLog) -> list[tuple[int, bytes]]:
    """The same reads with every segment's kept append set aside: from the files."""
    kept = [(seg, seg._recent) for seg in log._segments]
    try:
        for seg, _ in kept:
            seg._recent = None
        return _reads(log)
    finally:
        for seg, recent in kept:
            seg._recent = recent


def _reopened_reads(path: Path, log: PartitionLog) -> list[tuple[int, bytes]]:
    log.close()
    fresh = PartitionLog.open(path, log.config, now_ms=FakeClock())
    try:
        return _reads(fresh)
    finally:
        fresh.close()


def test_a_read_of_the_last_append_does_not_touch_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = open_log(tmp_path / "t-0")
    log.append_as_leader(batch(3), leader_epoch=0)
    info = log.append_as_leader(batch(2, value_size=500), leader_epoch=0)
    preads: list[int] = []
    real = segment.os.pread

    def counting(fd: int, n: int, pos: int) -> bytes:
        preads.append(pos)
        return real(fd, n, pos)

    monkeypatch.setattr(segment.os, "pread", counting)
    tail = log.read(info.first_offset, 1 << 20)
    assert preads == []
    assert [h.base_offset for _, h in iter_batches(bytes(tail.data))] == [3]
    assert (tail.first_offset, tail.next_offset) == (3, 5)
    whole = log.read(0, 1 << 20)  # from before the last append: read from the file
    assert preads and len(whole.data) > len(tail.data)
    assert bytes(whole.data).endswith(bytes(tail.data))


def test_a_truncation_drops_the_kept_append(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append_as_leader(batch(2), leader_epoch=0)
    log.append_as_leader(batch(2, value_size=40), leader_epoch=0)
    log.truncate_to(2)
    assert log.read(2, 1 << 20).data == b""
    assert log._segments[-1].translate_offset(2) is None  # the cut batch is not found
    log.append_as_leader(batch(1, value_size=7), leader_epoch=1)
    data = bytes(log.read(2, 1 << 20).data)
    assert [(h.base_offset, h.last_offset, h.partition_leader_epoch)
            for _, h in iter_batches(data)] == [(2, 2, 1)]
    assert _reads(log) == _reopened_reads(tmp_path / "t-0", log)


def test_a_large_append_is_not_kept_and_still_reads_back(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append_as_leader(batch(1, value_size=segment.RECENT_MAX + 1), leader_epoch=0)
    log.append_as_leader(batch(1), leader_epoch=0)
    log.append_as_leader(batch(1, value_size=segment.RECENT_MAX + 1), leader_epoch=0)
    assert _reads(log) == _reopened_reads(tmp_path / "t-0", log)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.one_of(
    st.tuples(st.just("leader"), st.integers(1, 4), st.integers(0, 300)),
    st.tuples(st.just("follower"), st.lists(st.integers(0, 300), min_size=1, max_size=4),
              st.just(0)),
    st.tuples(st.just("truncate"), st.integers(0, 100), st.just(0)),
), min_size=1, max_size=25))
def test_reads_match_a_fresh_open_of_the_same_files(tmp_path_factory: pytest.TempPathFactory,
                                                     ops: list[tuple[str, object, object]]
                                                     ) -> None:
    """Leader appends, multi-batch follower appends and truncations on small segments
    (rolls): every offset reads the same through the kept append as through the files."""
    path = tmp_path_factory.mktemp("recent") / "t-0"
    log = open_log(path, segment_bytes=1500, index_interval_bytes=200)
    for kind, a, b in ops:
        if kind == "leader":
            assert isinstance(a, int) and isinstance(b, int)
            log.append_as_leader(batch(a, value_size=b), leader_epoch=0)
        elif kind == "follower":
            assert isinstance(a, list)
            log.append_as_follower(_follower_batches(log.log_end_offset, a))
        else:
            assert isinstance(a, int)
            log.truncate_to(min(a, log.log_end_offset))
        assert _reads(log) == _file_reads(log)
    assert _reads(log) == _reopened_reads(path, log)
