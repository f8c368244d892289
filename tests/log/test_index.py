from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykbroker.log.index import OffsetIndex, TimeIndex
from pykbroker.records import iter_batches
from tests.log.helpers import batch, open_log

_SETTINGS = settings(max_examples=40, deadline=None)


@_SETTINGS
@given(
    gaps=st.lists(st.integers(1, 50), max_size=60),
    probes=st.lists(st.integers(-5, 3000), max_size=40),
    base=st.integers(0, 10**12),
)
def test_offset_index_lookup_matches_linear_scan(
    gaps: list[int], probes: list[int], base: int
) -> None:
    with tempfile.TemporaryDirectory() as d:
        index = OffsetIndex(Path(d) / "x.index", base, 1 << 20)
        entries, rel, pos = [], 0, 0
        for gap in gaps:
            rel += gap
            pos += gap * 7
            index.append(base + rel, pos)
            entries.append((base + rel, pos))
        assert Path(d, "x.index").stat().st_size == 8 * len(entries)
        reloaded = OffsetIndex(Path(d) / "x.index", base, 1 << 20)
        assert reloaded.load() and reloaded.entries() == entries
        for probe in probes:
            target = base + probe
            expected = max((e for e in entries if e[0] <= target), default=(base, 0))
            assert index.lookup(target) == expected
            assert reloaded.lookup(target) == expected
        index.close()
        reloaded.close()


@_SETTINGS
@given(
    steps=st.lists(st.tuples(st.integers(1, 1000), st.integers(0, 5)), max_size=60),
    probes=st.lists(st.integers(-10, 70_000), max_size=40),
)
def test_time_index_lookup_matches_linear_scan(
    steps: list[tuple[int, int]], probes: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as d:
        index = TimeIndex(Path(d) / "x.timeindex", 100, 1 << 20)
        entries, ts, off = [], 0, 100
        for dt, doff in steps:
            ts += dt
            off += doff
            index.maybe_append(ts, off)
            entries.append((ts, off))
        if entries:
            index.maybe_append(ts, off + 1)  # not larger: ignored
        reloaded = TimeIndex(Path(d) / "x.timeindex", 100, 1 << 20)
        assert reloaded.load() and reloaded.entries() == entries
        for probe in probes:
            expected = max((e for e in entries if e[0] <= probe), default=(-1, 100))
            assert index.lookup(probe) == expected == reloaded.lookup(probe)
        index.close()
        reloaded.close()


def test_index_truncation_and_sanity(tmp_path: Path) -> None:
    index = OffsetIndex(tmp_path / "a.index", 10, 80)
    for i in range(1, 6):
        index.append(10 + i * 2, i * 100)
    assert index.sanity_error(10_000) is None
    assert index.sanity_error(300) is not None  # points past the log
    index.truncate_to(15)
    assert [e.offset for e in index.entries()] == [12, 14]
    assert (tmp_path / "a.index").stat().st_size == 16
    with pytest.raises(ValueError):
        index.append(13, 500)
    bad = tmp_path / "b.index"
    bad.write_bytes(struct.pack(">iiii", 5, 100, 4, 200))
    loaded = OffsetIndex(bad, 0, 80)
    assert loaded.load() and loaded.sanity_error(1000) is not None
    (tmp_path / "c.index").write_bytes(b"\x00" * 9)
    assert not OffsetIndex(tmp_path / "c.index", 0, 80).load()
    assert OffsetIndex(tmp_path / "d.index", 0, 16).max_entries == 2


@settings(max_examples=25, deadline=None)
@given(
    counts=st.lists(st.integers(1, 6), min_size=1, max_size=40),
    sizes=st.lists(st.integers(0, 120), min_size=1, max_size=40),
    interval=st.integers(0, 600),
    segment_bytes=st.integers(1000, 4000),
)
def test_batch_lookup_matches_linear_scan(
    counts: list[int], sizes: list[int], interval: int, segment_bytes: int
) -> None:
    """Every offset resolves, via index + header scan, to the batch a linear scan finds."""
    with tempfile.TemporaryDirectory() as d:
        log = open_log(Path(d) / "t-0", segment_bytes=segment_bytes, index_interval_bytes=interval)
        for i, n in enumerate(counts):
            log.append_as_leader(batch(n, value_size=sizes[i % len(sizes)]), leader_epoch=0)
        everything = log.read(0, 1 << 30).data
        spans = [(h.base_offset, h.last_offset, pos) for pos, h in iter_batches(everything)]
        for offset in range(log.log_end_offset):
            fetched = log.read(offset, 1)
            first = next(s for s in spans if s[0] <= offset <= s[1])
            assert fetched.first_offset == first[0]
            assert fetched.data == everything[first[2] : first[2] + len(fetched.data)]
        for segment in log._segments:
            for entry in segment.offset_index.entries():
                found = segment.translate_offset(entry.offset)
                assert found is not None and found[0] == entry.position
        log.close()
