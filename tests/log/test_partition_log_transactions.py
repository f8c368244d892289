"""Transactions in the partition log: ongoing transactions and the last stable offset,
COMMIT/ABORT markers, the aborted-transaction index across segments, restarts (clean,
unclean, without snapshots or index files) and truncation."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.log import LogConfig, PartitionLog
from pykbroker.log.producer_state import ProducerStateManager
from pykbroker.log.txn_index import AbortedTxn
from pykbroker.records import (
    CONTROL_ABORT,
    CONTROL_COMMIT,
    BatchHeader,
    NewRecord,
    build_batch,
    build_control_batch,
    control_type,
    end_txn_coordinator_epoch,
    iter_batches,
    iter_records,
)
from tests.log.helpers import FakeClock

TXN_SUFFIX = ".txnindex"


def txn(pid: int, seq: int, n: int = 2, epoch: int = 0, *, size: int = 10) -> bytearray:
    return bytearray(build_batch([NewRecord(b"k", bytes(size)) for _ in range(n)],
                                 producer_id=pid, producer_epoch=epoch, base_sequence=seq,
                                 is_transactional=True))


def plain(n: int = 1) -> bytearray:
    return bytearray(build_batch([NewRecord(b"k", b"v") for _ in range(n)]))


def open_log(path: Path, *, clean: bool = False, **config: object) -> PartitionLog:
    """``clean=False`` is what recovery does after a crash: every segment re-validated."""
    return PartitionLog.open(
        path, LogConfig.from_mapping({k.replace("_", "."): v for k, v in config.items()}),
        now_ms=FakeClock(), had_clean_shutdown=clean)


def aborted(log: PartitionLog, fetch: int = 0, upper: int = 1 << 40) -> list[tuple[int, int]]:
    return [(a.producer_id, a.first_offset) for a in log.collect_aborted(fetch, upper)]


# -- producer state ---------------------------------------------------------------------------


def _header(data: bytes | bytearray, base: int) -> BatchHeader:
    raw = bytearray(data)
    raw[0:8] = base.to_bytes(8, "big")
    return BatchHeader.parse(raw)


def test_producer_state_tracks_ongoing_transactions(tmp_path: Path) -> None:
    ps = ProducerStateManager(tmp_path)
    assert ps.first_unstable_offset() is None
    assert ps.update(_header(txn(1, 0), 10), 5) == -1
    assert ps.update(_header(txn(2, 0), 12), 5) == -1
    assert ps.update(_header(txn(1, 2), 14), 5) == -1  # same txn: first offset kept
    assert ps.ongoing == {1: 10, 2: 12} and ps.first_unstable_offset() == 10
    assert ps.producers[1].current_txn_first_offset == 10
    # A marker ends the txn and says where it began.
    marker = build_control_batch(1, 0, True, 3, base_offset=16, timestamp=5)
    assert ps.update(BatchHeader.parse(marker), 5) == 10
    assert ps.ongoing == {2: 12} and ps.first_unstable_offset() == 12
    assert ps.producers[1].current_txn_first_offset == -1
    # The marker carries no sequence: the producer's sequence goes on from its data.
    assert ps.producers[1].last_seq == 3
    # A second marker for the same producer ends nothing.
    assert ps.update(BatchHeader.parse(marker), 5) == -1
    # Non-transactional and producer-less batches never open a transaction.
    assert ps.update(_header(build_batch([NewRecord(b"k", b"v")], producer_id=3,
                                         producer_epoch=0, base_sequence=0), 17), 5) == -1
    assert ps.update(_header(plain(), 18), 5) == -1
    assert ps.ongoing == {2: 12}
    ps.truncate()
    assert ps.ongoing == {} and ps.first_unstable_offset() is None


def test_check_marker_refuses_an_older_epoch(tmp_path: Path) -> None:
    ps = ProducerStateManager(tmp_path)
    ps.check_marker(9, 0)  # an unknown producer: fine
    ps.update(_header(txn(9, 0, epoch=3), 0), 5)
    ps.check_marker(9, 3)
    ps.check_marker(9, 4)  # a bump (the coordinator fencing the producer) is fine
    with pytest.raises(KafkaError) as exc:
        ps.check_marker(9, 2)
    assert exc.value.error_code == ErrorCode.INVALID_PRODUCER_EPOCH


def test_check_skips_sequence_checks_without_a_sequence(tmp_path: Path) -> None:
    """Coordinator-written transactional batches carry no sequence (base_sequence -1)."""
    ps = ProducerStateManager(tmp_path)
    ps.update(_header(txn(4, 0), 0), 5)
    no_seq = build_batch([NewRecord(b"k", b"v")], producer_id=4, producer_epoch=0,
                         is_transactional=True)
    assert ps.check(BatchHeader.parse(no_seq)) is None
    ps.update(_header(txn(4, 0, epoch=1), 2), 5)
    with pytest.raises(KafkaError) as exc:  # the epoch is still checked
        ps.check(BatchHeader.parse(no_seq))
    assert exc.value.error_code == ErrorCode.INVALID_PRODUCER_EPOCH


def test_snapshot_keeps_ongoing_transactions_and_expiry_spares_them(tmp_path: Path) -> None:
    ps = ProducerStateManager(tmp_path)
    ps.update(_header(txn(1, 0), 4), 100)
    ps.update(_header(txn(2, 0), 6), 100)
    ps.update(BatchHeader.parse(build_control_batch(2, 0, False, 0, base_offset=8,
                                                    timestamp=100)), 100)
    ps.write_snapshot(9)
    again = ProducerStateManager(tmp_path)
    assert again.load_snapshot(9) == 9
    assert again.ongoing == {1: 4} and again.first_unstable_offset() == 4
    # Idle producers expire, but not one in the middle of a transaction.
    assert again.expire(10**9, 1000) == 1
    assert set(again.producers) == {1}
    # An unreadable snapshot leaves nothing ongoing.
    (tmp_path / f"{9:020d}.snapshot").write_bytes(b"junk")
    assert again.load_snapshot(9) == 0
    assert again.ongoing == {} and again.producers == {}


# -- markers and the last stable offset --------------------------------------------------------


def test_markers_move_the_last_stable_offset(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append_as_leader(plain(), leader_epoch=0)                    # 0
    assert log.first_unstable_offset() is None
    log.append_as_leader(txn(1, 0), leader_epoch=0)                  # 1-2
    log.append_as_leader(txn(2, 0), leader_epoch=0)                  # 3-4
    log.append_as_leader(txn(1, 2), leader_epoch=0)                  # 5-6
    assert log.first_unstable_offset() == 1
    info = log.append_marker(1, 0, True, 7, leader_epoch=3)          # 7
    assert (info.first_offset, info.last_offset) == (7, 7)
    assert log.log_end_offset == 8
    assert log.first_unstable_offset() == 3  # pid 2's txn is still open
    assert aborted(log) == []  # commits are not indexed
    log.append_marker(2, 0, False, 7, leader_epoch=3)                # 8
    assert log.first_unstable_offset() is None
    assert log.collect_aborted(0, 100) == [AbortedTxn(2, 3, 8, 9)]
    # The markers are control batches with Kafka's key and value.
    data = bytes(log.read(7, 1 << 20).data)
    kinds = []
    for pos, header in iter_batches(data):
        assert header.is_control and header.is_transactional
        assert header.partition_leader_epoch == 3 and header.base_sequence == -1
        record = next(iter_records(data, pos))
        kinds.append((header.producer_id, control_type(record),
                      end_txn_coordinator_epoch(record)))
    assert kinds == [(1, CONTROL_COMMIT, 7), (2, CONTROL_ABORT, 7)]
    assert log.end_offset_for_epoch(3) == (3, 9)
    log.close()


def test_abort_entry_records_the_lso_after_the_abort(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append_as_leader(txn(1, 0), leader_epoch=0)                  # 0-1
    log.append_as_leader(txn(2, 0), leader_epoch=0)                  # 2-3
    log.append_marker(1, 0, False, 0, leader_epoch=0)                # 4
    # pid 2's transaction (from offset 2) was still open: that is the LSO right after.
    assert log.collect_aborted(0, 100) == [AbortedTxn(1, 0, 4, 2)]
    log.append_marker(2, 0, False, 0, leader_epoch=0)                # 5
    assert log.collect_aborted(0, 100) == [AbortedTxn(1, 0, 4, 2), AbortedTxn(2, 2, 5, 6)]
    # A marker for a producer with no open transaction here indexes nothing.
    log.append_marker(3, 0, False, 0, leader_epoch=0)                # 6
    log.append_marker(2, 0, False, 0, leader_epoch=0)                # 7
    assert len(log.collect_aborted(0, 100)) == 2
    assert log.log_end_offset == 8
    log.close()


def test_stale_marker_is_refused_and_fenced_producer_stays_out(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append_as_leader(txn(1, 0, epoch=5), leader_epoch=0)
    with pytest.raises(KafkaError) as exc:
        log.append_marker(1, 4, False, 0, leader_epoch=0)
    assert exc.value.error_code == ErrorCode.INVALID_PRODUCER_EPOCH
    assert log.log_end_offset == 2 and log.first_unstable_offset() == 0
    # The coordinator fences the producer: the ABORT carries the bumped epoch.
    log.append_marker(1, 6, False, 0, leader_epoch=0)
    assert log.first_unstable_offset() is None and aborted(log) == [(1, 0)]
    with pytest.raises(KafkaError) as exc:
        log.append_as_leader(txn(1, 2, epoch=5), leader_epoch=0)
    assert exc.value.error_code == ErrorCode.INVALID_PRODUCER_EPOCH
    # The next producer epoch starts over at sequence 0.
    assert log.append_as_leader(txn(1, 0, epoch=7), leader_epoch=0).first_offset == 3
    log.close()


def test_marker_from_an_older_coordinator_is_fenced(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append_as_leader(txn(1, 0), leader_epoch=0)
    log.append_marker(1, 0, True, 3, leader_epoch=0)
    assert log.producer_state.producers[1].coordinator_epoch == 3
    log.append_as_leader(txn(1, 2), leader_epoch=0)
    with pytest.raises(KafkaError) as exc:
        log.append_marker(1, 0, False, 2, leader_epoch=0)
    assert exc.value.error_code == ErrorCode.TRANSACTION_COORDINATOR_FENCED
    assert log.first_unstable_offset() == 3
    log.close()
    # The epoch comes back from the markers in the log when there is no snapshot.
    for snap in (tmp_path / "t-0").glob("*.snapshot"):
        snap.unlink()
    log = open_log(tmp_path / "t-0")
    assert log.producer_state.producers[1].coordinator_epoch == 3
    log.close()


def test_follower_append_indexes_replicated_aborts(tmp_path: Path) -> None:
    leader = open_log(tmp_path / "leader")
    leader.append_as_leader(txn(1, 0), leader_epoch=0)
    leader.append_as_leader(plain(), leader_epoch=0)
    leader.append_marker(1, 0, False, 0, leader_epoch=0)
    leader.append_as_leader(txn(2, 0), leader_epoch=0)
    data = bytes(leader.read(0, 1 << 20).data)
    follower = open_log(tmp_path / "follower")
    follower.append_as_follower(data)
    assert follower.collect_aborted(0, 100) == leader.collect_aborted(0, 100) == [
        AbortedTxn(1, 0, 3, 4)]
    assert follower.first_unstable_offset() == leader.first_unstable_offset() == 4
    leader.close()
    follower.close()


# -- restarts ------------------------------------------------------------------------------


def _history(log: PartitionLog) -> None:
    """0-1 pid 1, 2-3 pid 2, 4 ABORT 1, 5-6 pid 3, 7 COMMIT 2, 8 ABORT 3, 9-10 pid 4 (open)."""
    log.append_as_leader(txn(1, 0), leader_epoch=0)
    log.append_as_leader(txn(2, 0), leader_epoch=0)
    log.append_marker(1, 0, False, 0, leader_epoch=0)
    log.append_as_leader(txn(3, 0), leader_epoch=0)
    log.append_marker(2, 0, True, 0, leader_epoch=0)
    log.append_marker(3, 0, False, 0, leader_epoch=0)
    log.append_as_leader(txn(4, 0), leader_epoch=0)


EXPECTED = [AbortedTxn(1, 0, 4, 2), AbortedTxn(3, 5, 8, 9)]


@pytest.mark.parametrize("clean", [True, False])
@pytest.mark.parametrize("delete", [(), ("snapshot",), ("snapshot", TXN_SUFFIX)])
def test_abort_index_and_lso_survive_a_restart(tmp_path: Path, clean: bool,
                                               delete: tuple[str, ...]) -> None:
    """Reopened after a clean or an unclean shutdown, with or without the producer snapshot
    and ``.txnindex`` files (rebuilt from the markers when the replay covers them)."""
    d = tmp_path / "t-0"
    log = open_log(d)
    _history(log)
    assert log.collect_aborted(0, 100) == EXPECTED and log.first_unstable_offset() == 9
    log.close()
    for suffix in delete:
        for path in d.glob(f"*.{suffix.lstrip('.')}"):
            path.unlink()
    log = open_log(d, clean=clean)
    assert log.collect_aborted(0, 100) == EXPECTED
    assert log.first_unstable_offset() == 9
    log.append_marker(4, 0, False, 0, leader_epoch=0)
    assert log.collect_aborted(0, 100) == [*EXPECTED, AbortedTxn(4, 9, 11, 12)]
    log.close()
    # The file holds each entry once, however often the markers were replayed.
    assert (d / f"{0:020d}{TXN_SUFFIX}").stat().st_size == 3 * 34
    log = open_log(d, clean=clean)
    assert len(log.collect_aborted(0, 100)) == 3 and log.first_unstable_offset() is None
    log.close()


@pytest.mark.parametrize("clean", [True, False])
def test_unreadable_txn_index_is_rebuilt(tmp_path: Path, clean: bool) -> None:
    """A torn ``.txnindex`` is not trusted; the aborted transactions it held come back from
    the markers, and later aborts are not written after the garbage."""
    d = tmp_path / "t-0"
    log = open_log(d)
    _history(log)
    log.close()
    index = d / f"{0:020d}{TXN_SUFFIX}"
    index.write_bytes(index.read_bytes()[:50])  # 1.5 entries
    log = open_log(d, clean=clean)
    assert log.collect_aborted(0, 100) == EXPECTED
    log.append_marker(4, 0, False, 0, leader_epoch=0)
    log.close()
    log = open_log(d, clean=clean)
    assert log.collect_aborted(0, 100) == [*EXPECTED, AbortedTxn(4, 9, 11, 12)]
    log.close()


def test_torn_abort_marker_is_forgotten_on_recovery(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    log = open_log(d)
    _history(log)
    log.append_marker(4, 0, False, 0, leader_epoch=0)                # 11
    size = log.active_segment.size
    log.close()
    with open(d / f"{0:020d}.log", "r+b") as f:
        f.truncate(size - 5)
    for path in d.glob("*.snapshot"):
        path.unlink()
    log = open_log(d)
    assert log.log_end_offset == 11
    assert log.collect_aborted(0, 100) == EXPECTED
    assert log.first_unstable_offset() == 9  # pid 4's transaction is open again
    log.close()


# -- truncation and segments -------------------------------------------------------------------


def test_truncation_drops_entries_and_reopens_transactions(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    log = open_log(d)
    _history(log)
    # Cut at pid 3's ABORT (offset 8): its entry goes, its transaction is open again.
    assert log.truncate_to(8)
    assert log.collect_aborted(0, 100) == EXPECTED[:1]
    assert log.first_unstable_offset() == 5
    assert (d / f"{0:020d}{TXN_SUFFIX}").stat().st_size == 34
    # Cut inside pid 2's data (offset 3 is in batch 2-3): pid 1's ABORT at 4 goes too.
    assert log.truncate_to(3)
    assert log.log_end_offset == 2
    assert aborted(log) == [] and log.first_unstable_offset() == 0
    assert not (d / f"{0:020d}{TXN_SUFFIX}").exists()
    log.close()
    log = open_log(d, clean=True)
    assert aborted(log) == [] and log.first_unstable_offset() == 0
    log.close()


def test_truncate_fully_forgets_everything(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    _history(log)
    log.truncate_fully_and_start_at(50)
    assert aborted(log, 0) == [] and log.first_unstable_offset() is None
    assert not list((tmp_path / "t-0").glob(f"*{TXN_SUFFIX}"))
    log.close()


def test_entries_live_in_the_segment_of_their_marker(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    log = open_log(d, segment_bytes=1024)
    log.append_as_leader(txn(1, 0, size=300), leader_epoch=0)        # 0-1, segment 0
    log.append_as_leader(txn(2, 0, size=300), leader_epoch=0)        # 2-3, rolls to 2
    log.append_marker(1, 0, False, 0, leader_epoch=0)                # 4
    log.append_as_leader(txn(1, 2, size=300), leader_epoch=0)        # 5-6, rolls to 5
    log.append_marker(1, 0, False, 0, leader_epoch=0)                # 7
    log.append_marker(2, 0, False, 0, leader_epoch=0)                # 8
    assert log.segments == [0, 2, 5]
    assert [s.name for s in sorted(d.glob(f"*{TXN_SUFFIX}"))] == [
        f"{2:020d}{TXN_SUFFIX}", f"{5:020d}{TXN_SUFFIX}"]
    a1 = AbortedTxn(1, 0, 4, 2)
    a2 = AbortedTxn(1, 5, 7, 2)
    a3 = AbortedTxn(2, 2, 8, 9)
    assert log.collect_aborted(0, 9) == [a1, a2, a3]
    assert log.collect_aborted(5, 9) == [a2, a3]       # starts at the segment of offset 5
    assert log.collect_aborted(0, 2) == [a1]            # a1's LSO 2 >= 2: no need to go on
    assert log.collect_aborted(9, 10) == []
    # Deleting records drops the first segments and their index files.
    log.delete_records_before(5)
    assert log.segments == [5]
    assert [s.name for s in d.glob(f"*{TXN_SUFFIX}")] == [f"{5:020d}{TXN_SUFFIX}"]
    assert log.collect_aborted(5, 9) == [a2, a3]
    log.close()


# -- model-based: collect_aborted against brute force ----------------------------------------


@dataclass
class Model:
    open: dict[int, int] = field(default_factory=dict)          # pid -> first offset
    aborted: list[AbortedTxn] = field(default_factory=list)
    seq: dict[int, int] = field(default_factory=dict)


OPS = st.lists(st.one_of(
    st.tuples(st.just("data"), st.integers(1, 4), st.integers(1, 3)),
    st.tuples(st.just("commit"), st.integers(1, 4), st.just(0)),
    st.tuples(st.just("abort"), st.integers(1, 4), st.just(0)),
    st.tuples(st.just("plain"), st.just(0), st.integers(1, 3)),
), min_size=1, max_size=30)


def _run(log: PartitionLog, ops: list[tuple[str, int, int]]) -> Model:
    m = Model()
    for op, pid, n in ops:
        leo = log.log_end_offset
        if op == "data":
            seq = m.seq.get(pid, 0)
            log.append_as_leader(txn(pid, seq, n, size=60), leader_epoch=0)
            m.seq[pid] = seq + n
            m.open.setdefault(pid, leo)
        elif op == "plain":
            log.append_as_leader(plain(n), leader_epoch=0)
        else:
            log.append_marker(pid, 0, op == "commit", 0, leader_epoch=0)
            first = m.open.pop(pid, None)
            if op == "abort" and first is not None:
                lso = min(m.open.values(), default=leo + 1)
                m.aborted.append(AbortedTxn(pid, first, leo, lso))
    return m


def _check(log: PartitionLog, m: Model) -> None:
    assert log.first_unstable_offset() == min(m.open.values(), default=None)
    end = log.log_end_offset
    for fetch in range(0, end + 1):
        for upper in range(fetch, end + 2):
            want = [a for a in m.aborted if a.last_offset >= fetch and a.first_offset < upper]
            assert log.collect_aborted(fetch, upper) == want, (fetch, upper)


@settings(max_examples=40, deadline=None)
@given(OPS, st.sampled_from([600, 1500, 1 << 20]))
def test_collect_aborted_matches_brute_force(ops: list[tuple[str, int, int]],
                                             segment_bytes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "t-0"
        log = open_log(d, segment_bytes=segment_bytes)
        m = _run(log, ops)
        _check(log, m)
        log.close()
        for clean in (True, False):
            log = open_log(d, clean=clean)
            _check(log, m)
            log.close()
        for path in [*d.glob("*.snapshot"), *d.glob(f"*{TXN_SUFFIX}")]:
            path.unlink()
        log = open_log(d, clean=True)
        _check(log, m)
        log.close()


def test_follower_abort_goes_into_the_segment_of_its_marker(tmp_path: Path) -> None:
    """Replicated batches that roll the log after an ABORT: the entry belongs with the
    marker, so a later replay of the markers does not index it twice."""
    leader = open_log(tmp_path / "leader")
    leader.append_as_leader(txn(1, 0, size=300), leader_epoch=0)        # 0-1
    leader.append_marker(1, 0, False, 0, leader_epoch=0)                # 2
    leader.append_as_leader(txn(2, 0, size=300), leader_epoch=0)        # 3-4
    data = bytes(leader.read(0, 1 << 20).data)
    leader.close()
    d = tmp_path / "follower"
    follower = open_log(d, segment_bytes=1024)
    follower.append_as_follower(data)
    assert follower.segments == [0, 3]
    entry = AbortedTxn(1, 0, 2, 3)
    assert [s.txn_index.entries for s in follower._segments] == [[entry], []]
    assert [p.name for p in d.glob(f"*{TXN_SUFFIX}")] == [f"{0:020d}{TXN_SUFFIX}"]
    follower.close()
    for path in d.glob("*.snapshot"):
        path.unlink()
    follower = open_log(d, clean=True, segment_bytes=1024)
    assert follower.collect_aborted(0, 10) == [entry]
    assert follower.first_unstable_offset() == 3
    follower.close()


def test_lso_is_never_below_the_log_start_offset(tmp_path: Path) -> None:
    """DeleteRecords past the start of an open transaction: Kafka's first unstable offset is
    then the log start offset, so read_committed consumers are not sent below it."""
    log = open_log(tmp_path / "t-0")
    log.append_as_leader(txn(1, 0), leader_epoch=0)                     # 0-1
    log.append_as_leader(plain(2), leader_epoch=0)                      # 2-3
    log.delete_records_before(2)
    assert log.first_unstable_offset() == 2
    log.delete_records_before(3)
    assert log.first_unstable_offset() == 3
    log.append_marker(1, 0, True, 0, leader_epoch=0)
    assert log.first_unstable_offset() is None
    log.close()
