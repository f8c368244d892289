"""The aborted-transaction index (``.txnindex``): Kafka's 34-byte entries, lazy creation,
truncation, and the overlap search read_committed fetches use; plus its life in a segment."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykbroker.log import LogConfig
from pykbroker.log.segment import LogSegment, segment_path
from pykbroker.log.txn_index import AbortedTxn, TransactionIndex
from pykbroker.records import BatchHeader, NewRecord, build_batch, build_control_batch

# Kafka's AbortedTxn: version int16, producer id, first, last, last stable offset (int64s).
KAFKA_ENTRY = struct.Struct(">hqqqq")
I64 = st.integers(-(2**63), 2**63 - 1)


def _index(directory: Path, base: int = 0) -> TransactionIndex:
    return TransactionIndex(directory / f"{base:020d}.txnindex")


@st.composite
def entries(draw: st.DrawFn, max_size: int = 12) -> list[AbortedTxn]:
    """Entries as a log writes them: markers strictly increasing, first <= last."""
    n = draw(st.integers(0, max_size))
    out: list[AbortedTxn] = []
    last = draw(st.integers(0, 50))
    for _ in range(n):
        last += draw(st.integers(1, 20))
        first = last - draw(st.integers(1, 30))
        lso = last + 1 if draw(st.booleans()) else draw(st.integers(0, last + 1))
        out.append(AbortedTxn(draw(st.integers(0, 2**40)), max(first, 0), last, lso))
    return out


def test_entry_bytes_are_kafkas(tmp_path: Path) -> None:
    idx = _index(tmp_path)
    assert not idx.path.exists()  # created lazily, on the first abort
    idx.append(AbortedTxn(producer_id=7, first_offset=3, last_offset=9, last_stable_offset=10))
    raw = idx.path.read_bytes()
    assert len(raw) == 34
    assert raw == bytes.fromhex(
        "0000" "0000000000000007" "0000000000000003" "0000000000000009" "000000000000000a")
    idx.append(AbortedTxn(2**40, 11, 12, 5))
    assert idx.path.read_bytes()[34:] == KAFKA_ENTRY.pack(0, 2**40, 11, 12, 5)


@settings(max_examples=60, deadline=None)
@given(entries())
def test_round_trip_through_the_file(es: list[AbortedTxn]) -> None:
    with tempfile.TemporaryDirectory() as d:
        idx = _index(Path(d))
        for e in es:
            idx.append(e)
        assert idx.entries == es
        assert idx.path.exists() == bool(es)
        if es:
            assert idx.path.stat().st_size == 34 * len(es)
        idx.flush()
        again = _index(Path(d))
        assert again.load() is True
        assert again.entries == es


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(I64, I64, I64, I64), max_size=6))
def test_load_reads_whatever_kafka_wrote(raw: list[tuple[int, int, int, int]]) -> None:
    """Any int64 values load back unchanged, as long as first <= last."""
    rows = [(pid, min(a, b), max(a, b), lso) for pid, a, b, lso in raw]
    with tempfile.TemporaryDirectory() as d:
        idx = _index(Path(d))
        idx.path.write_bytes(b"".join(KAFKA_ENTRY.pack(0, *r) for r in rows))
        assert idx.load() is True
        assert idx.entries == [AbortedTxn(*r) for r in rows]


def test_load_rejects_what_it_cannot_trust(tmp_path: Path) -> None:
    idx = _index(tmp_path)
    assert idx.load() is True and idx.entries == []  # no file: nothing aborted
    good = KAFKA_ENTRY.pack(0, 1, 2, 3, 4)
    for bad in (good + b"\0",                                  # not whole entries
                good + KAFKA_ENTRY.pack(1, 1, 5, 6, 7),        # unknown version
                good + KAFKA_ENTRY.pack(0, 1, 9, 8, 10)):      # last < first
        idx.path.write_bytes(bad)
        idx.entries = [AbortedTxn(0, 0, 0, 0)]
        idx.needs_rebuild = False
        assert idx.load() is False
        assert idx.entries == [] and idx.needs_rebuild
        # The garbage is gone: the next abort starts a file that loads again.
        assert not idx.path.exists()
        idx.append(AbortedTxn(5, 6, 7, 8))
        assert idx.load() is True and idx.entries == [AbortedTxn(5, 6, 7, 8)]
    idx.path.write_bytes(b"")
    assert idx.load() is True and idx.entries == []


def test_append_ignores_an_entry_already_there(tmp_path: Path) -> None:
    """Replaying markers over a loaded index must not duplicate its entries."""
    idx = _index(tmp_path)
    idx.append(AbortedTxn(1, 0, 5, 6))
    idx.append(AbortedTxn(1, 0, 5, 6))
    idx.append(AbortedTxn(2, 1, 4, 6))
    assert idx.entries == [AbortedTxn(1, 0, 5, 6)]
    assert idx.path.stat().st_size == 34
    idx.append(AbortedTxn(2, 1, 8, 9))
    assert [e.last_offset for e in idx.entries] == [5, 8]


@settings(max_examples=60, deadline=None)
@given(entries(), st.integers(0, 400))
def test_truncate_to_drops_markers_at_or_past_the_offset(es: list[AbortedTxn], cut: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        idx = _index(Path(d))
        for e in es:
            idx.append(e)
        idx.truncate_to(cut)
        kept = [e for e in es if e.last_offset < cut]
        assert idx.entries == kept
        again = _index(Path(d))
        assert again.load() is True and again.entries == kept
        # An emptied index leaves no file behind, as an index never written.
        assert idx.path.exists() == bool(kept)
        assert not list(Path(d).glob("*.tmp"))
        # Appending after a truncation continues the file correctly.
        nxt = AbortedTxn(99, cut, cut + 1000, cut + 1001)
        idx.append(nxt)
        again = _index(Path(d))
        assert again.load() is True and again.entries == [*kept, nxt]


def test_reset_and_flush(tmp_path: Path) -> None:
    idx = _index(tmp_path)
    idx.flush()  # nothing written: no file, no error
    idx.append(AbortedTxn(1, 0, 1, 2))
    idx.flush()
    idx.flush()
    idx.reset()
    assert idx.entries == [] and not idx.path.exists()
    idx.flush()


def _brute_force(es: list[AbortedTxn], fetch: int, upper: int) -> list[AbortedTxn]:
    return [e for e in es if e.last_offset >= fetch and e.first_offset < upper]


@settings(max_examples=150, deadline=None)
@given(entries(), st.integers(0, 300), st.integers(0, 300))
def test_collect_overlap_and_completeness(es: list[AbortedTxn], fetch: int, upper: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        idx = _index(Path(d))
        for e in es:
            idx.append(e)
        out: list[AbortedTxn] = [AbortedTxn(-1, -1, -1, -1)]  # appended to, not replaced
        complete = idx.collect(fetch, upper, out)
        assert out[0] == AbortedTxn(-1, -1, -1, -1)
        got = out[1:]
        # Completeness: the search stops at the first entry whose LSO reaches the bound.
        stop = next((i for i, e in enumerate(es) if e.last_stable_offset >= upper), None)
        assert complete == (stop is not None)
        scanned = es if stop is None else es[:stop + 1]
        assert got == _brute_force(scanned, fetch, upper)
        if stop is None:
            assert got == _brute_force(es, fetch, upper)


def test_collect_examples(tmp_path: Path) -> None:
    idx = _index(tmp_path)
    a = AbortedTxn(1, 0, 4, 5)
    b = AbortedTxn(2, 6, 9, 7)    # a txn starting at 7 was still open at this abort
    c = AbortedTxn(3, 7, 12, 13)
    for e in (a, b, c):
        idx.append(e)
    out: list[AbortedTxn] = []
    assert idx.collect(0, 5, out) is True and out == [a]      # a's LSO 5 >= 5: done
    out = []
    assert idx.collect(5, 8, out) is True and out == [b, c]  # c's first offset 7 < 8
    out = []
    assert idx.collect(10, 20, out) is False and out == [c]  # later segments may hold more
    out = []
    assert idx.collect(4, 5, out) is True and out == [a]     # last offset 4 >= 4
    out = []
    assert idx.collect(5, 6, out) is True and out == []       # b starts at 6: outside [5, 6)
    out = []
    assert idx.collect(5, 7, out) is True and out == [b]


# -- the index inside a segment --------------------------------------------------------------


def _txn_batch(pid: int, base: int, n: int = 2) -> bytes:
    return build_batch([NewRecord(b"k", b"v", (), 1) for _ in range(n)], base_offset=base,
                       producer_id=pid, producer_epoch=0, base_sequence=0,
                       is_transactional=True)


def _fill(seg: LogSegment) -> None:
    """Offsets 0-1 txn of pid 1, 2 its ABORT, 3-4 txn of pid 2, 5 its ABORT."""
    for data in (_txn_batch(1, 0), build_control_batch(1, 0, False, 0, base_offset=2,
                                                         timestamp=1),
                 _txn_batch(2, 3), build_control_batch(2, 0, False, 0, base_offset=5,
                                                         timestamp=1)):
        seg.append(data, [(0, BatchHeader.parse(data))], 1)
    seg.txn_index.append(AbortedTxn(1, 0, 2, 3))
    seg.txn_index.append(AbortedTxn(2, 3, 5, 6))


def test_segment_owns_its_txn_index(tmp_path: Path) -> None:
    config = LogConfig()
    path = segment_path(tmp_path, 0, ".txnindex")
    path.write_bytes(b"leftover")
    seg = LogSegment.create(tmp_path, 0, config)
    assert not path.exists()  # a new segment starts without aborted transactions
    assert seg.txn_index.path == path
    _fill(seg)
    seg.flush()
    seg.close()
    seg, problem = LogSegment.open_existing(tmp_path, 0, config)
    assert problem is None
    assert [e.producer_id for e in seg.txn_index.entries] == [1, 2]
    # Truncating into the second transaction's marker batch drops its entry (on disk too).
    seg.truncate_to(5)
    assert seg.txn_index.entries == [AbortedTxn(1, 0, 2, 3)]
    assert path.stat().st_size == 34
    # Truncating inside the first transaction's data drops the entry of its marker as well.
    seg.truncate_to(1)
    assert seg.txn_index.entries == [] and not path.exists()
    assert seg.next_offset == 0
    seg.delete()
    assert not any(tmp_path.iterdir())


def test_segment_delete_removes_the_txn_index(tmp_path: Path) -> None:
    seg = LogSegment.create(tmp_path, 0, LogConfig())
    _fill(seg)
    assert segment_path(tmp_path, 0, ".txnindex").exists()
    seg.delete()
    assert not segment_path(tmp_path, 0, ".txnindex").exists()


@pytest.mark.parametrize("reopen", ["open_existing", "recover"])
def test_recover_keeps_entries_of_the_surviving_batches(tmp_path: Path, reopen: str) -> None:
    """A torn tail removes the marker it cut and that marker's entry, and nothing else."""
    config = LogConfig()
    seg = LogSegment.create(tmp_path, 0, config)
    _fill(seg)
    size = seg.size
    seg.close()
    log_path = segment_path(tmp_path, 0, ".log")
    with open(log_path, "r+b") as f:
        f.truncate(size - 3)  # tear the second ABORT marker
    if reopen == "open_existing":
        seg, problem = LogSegment.open_existing(tmp_path, 0, config)
        assert problem is not None
    else:  # the path recovery takes for segments past the recovery point
        seg = LogSegment(tmp_path, 0, config)
    seg.recover()
    assert seg.next_offset == 5
    assert seg.txn_index.entries == [AbortedTxn(1, 0, 2, 3)]
    assert segment_path(tmp_path, 0, ".txnindex").stat().st_size == 34
    seg.close()
