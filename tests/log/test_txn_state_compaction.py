"""__transaction_state is compacted and its replay at start-up reads the compacted log.

Transactional ids that finish and go idle expire (transactional.id.expiration.ms): the
coordinator forgets them and writes a tombstone (value null) for each, as Kafka does for ids
in Empty / CompleteCommit / CompleteAbort. The cleaner then drops their older records, and
the tombstones too once delete.retention.ms has passed. Ids still in use keep only their
newest record. A restart replays that log into the same state the coordinator had.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pykbroker.coordinator.transaction.metadata import TxnState, decode_txn_key
from pykbroker.records import iter_batches, iter_records
from pykbroker.testing import KafkaBroker, create_topic

ck = pytest.importorskip("confluent_kafka")

CONFIG = {
    "transaction.state.log.num.partitions": 1,
    "transaction.state.log.segment.bytes": 2048,
    "transactional.id.expiration.ms": 1500,
    "transaction.remove.expired.transaction.cleanup.interval.ms": 100,
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": 100,
    "log.cleaner.backoff.ms": 50,
    "log.cleaner.min.cleanable.ratio": 0.01,
    "log.cleaner.delete.retention.ms": 300,
}


def txn_log(data_dir: Path) -> list[tuple[int, str, bool]]:
    """(offset, transactional id, is tombstone) of each record in __transaction_state-0."""
    while True:
        out: list[tuple[int, str, bool]] = []
        try:
            for path in sorted((data_dir / "__transaction_state-0").glob("*.log")):
                data = path.read_bytes()
                for pos, header in iter_batches(data, validate=False, allow_partial=True):
                    if header.is_control:
                        continue
                    for record in iter_records(data, pos):
                        assert record.key is not None
                        out.append((record.offset, decode_txn_key(record.key),
                                    record.value is None))
            return out
        except FileNotFoundError:  # swapped away while read
            time.sleep(0.02)


def producer(broker: KafkaBroker, txn_id: str) -> Any:
    p = ck.Producer({"bootstrap.servers": broker.bootstrap_servers,
                     "transactional.id": txn_id, "transaction.timeout.ms": 60000,
                     "linger.ms": 1})
    p.init_transactions(10)
    return p


def commit_some(p: Any, n: int, abort_last: bool = False) -> None:
    for i in range(n):
        p.begin_transaction()
        p.produce("t", key=b"k", value=str(i).encode())
        if abort_last and i == n - 1:
            p.flush(10)  # else librdkafka aborts locally, the broker never hears of it
            p.abort_transaction(10)
        else:
            p.commit_transaction(10)


def state(broker: KafkaBroker) -> dict[str, tuple[int, int, TxnState, frozenset[Any]]]:
    assert broker.broker is not None and broker.broker.services is not None
    txns = broker.broker.services.transactions.txns
    return {tid: (m.producer_id, m.producer_epoch, m.state, frozenset(m.partitions))
            for tid, m in txns.items()}


def wait_for(cond: Any, timeout: float, what: Any) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what() if callable(what) else what
        time.sleep(0.05)


def test_expired_ids_are_compacted_away_and_replay_reads_the_compacted_log(
        tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path, **CONFIG).start()
    try:
        create_topic(broker.bootstrap_servers, "t")
        for tid in ("gone-commit", "gone-abort"):  # finish, then stay idle: they expire
            p = producer(broker, tid)
            commit_some(p, 5, abort_last=tid == "gone-abort")
            p.flush(5)
        producer(broker, "gone-empty")  # InitProducerId only: Empty
        live = {tid: producer(broker, tid) for tid in ("live-a", "live-b")}
        deadline = time.monotonic() + 30
        # The live ids keep committing (never idle long enough to expire) until the expired
        # ones and all their records, tombstones included, are gone from the log.
        while True:
            for p in live.values():
                commit_some(p, 2)
            records = txn_log(tmp_path)
            ids = {tid for _, tid, _ in records}
            if not ids & {"gone-commit", "gone-abort", "gone-empty"}:
                break
            assert time.monotonic() < deadline, sorted(ids)
        assert ids == {"live-a", "live-b"}
        assert not any(t for _, _, t in records if t), "tombstones left"
        assert len(records) < 100, len(records)
        open_txn = producer(broker, "open")
        open_txn.begin_transaction()
        open_txn.produce("t", key=b"k", value=b"pending")
        open_txn.flush(10)  # the partition is added: the transaction is Ongoing
        commit_some(live["live-b"], 1, abort_last=True)
        settled = {"live-a": TxnState.COMPLETE_COMMIT, "live-b": TxnState.COMPLETE_ABORT,
                   "open": TxnState.ONGOING}  # markers written, Complete* records too
        # (within transactional.id.expiration.ms of the live ids' last transactions)
        wait_for(lambda: {t: s[2] for t, s in state(broker).items()} == settled, 1,
                 lambda: f"transactions not settled: {state(broker)}")
        before = state(broker)
        assert before["open"][3] == {("t", 0)}
    finally:
        broker.stop()

    # The compacted log (plus the newest records in its active segment) replays to the same
    # state: expired ids stay forgotten, the open transaction is still open.
    broker = KafkaBroker(tmp_path, **{**CONFIG, "transactional.id.expiration.ms": 600000}
                         ).start()
    try:
        assert state(broker) == before
        # The reloaded ids work: a new producer of "open" fences the loaded transaction (it
        # is aborted, the epoch bumped) and commits its own; "live-a" goes on.
        pid, epoch = before["open"][:2]
        reopened = producer(broker, "open")
        commit_some(reopened, 1)
        again = producer(broker, "live-a")
        commit_some(again, 1)
        wait_for(lambda: [s[:3] for t, s in sorted(state(broker).items()) if t != "live-b"] == [
            (before["live-a"][0], before["live-a"][1] + 1, TxnState.COMPLETE_COMMIT),
            (pid, epoch + 2, TxnState.COMPLETE_COMMIT)], 10,
            lambda: f"after the restart: {state(broker)}")
    finally:
        broker.stop()
