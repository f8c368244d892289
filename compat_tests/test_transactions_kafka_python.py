"""kafka-python (3.0.12) idempotent and transactional producers against a real pykbroker.

- An idempotent producer behind a proxy that drops connections and responses (so retries
  re-send batches the broker already appended) still delivers every record exactly once
  and in order.
- Transactions spanning 3 partitions: committed ones are seen by read_committed and
  read_uncommitted consumers, aborted ones only by read_uncommitted; an open transaction
  holds the last stable offset (what a read_committed consumer can reach) back until it
  ends.
- Consume-transform-produce: send_offsets_to_transaction() with the consumer's
  group_metadata() commits the group's offsets only when the transaction commits (aborted:
  none; open: not visible, UNSTABLE_OFFSET_COMMIT for a require_stable OffsetFetch).
- A second producer with the same transactional_id aborts the first one's open transaction
  and fences it: its commit raises ProducerFencedError.

kafka-python supports all of this. Client-side limitation found (kafka-python 3.0.12): a
poll() whose timeout expires while a JoinGroup/SyncGroup round is in flight can lose that
round's assignment. With a fresh broker the first join often assigns nothing (the range
assignor has no metadata for the topic yet), so a second rebalance follows at once; if
poll(timeout_ms=200) expires during it, the later poll finds need_rejoin() false, never
awaits the finished join task and never installs the assignment: the member holds no
partitions and reads nothing (2 of 25 fresh-broker runs; the broker log shows a stable
generation 2 whose SyncGroup answered the full assignment). Group members here poll with a
2 s timeout, which leaves the rebalance time to finish.

send_offsets_to_transaction() with a bare group id (no member id, generation -1) while the
group has members is accepted, as Kafka exempts transactional commits from the members-only
check.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, ProducerFencedError
from kafka.protocol.consumer import OffsetFetchRequest
from kafka.structs import OffsetAndMetadata

from compat_tests.broker_process import BrokerProcess
from compat_tests.chaos_proxy import broker_behind_proxy
from compat_tests.kp_helpers import CLIENT_TIMEOUTS, admin_client, create_topic, send_raw

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.broker_config(**{"group.initial.rebalance.delay.ms": "0"})]

PARTITIONS = 3
UNSTABLE_OFFSET_COMMIT = 88
# Group members poll with a long timeout (poll returns as soon as records arrive): see the
# kafka-python join race in the module docstring.
GROUP_POLL_MS = 2000


def txn_id() -> str:
    return f"tx-{uuid.uuid4().hex[:12]}"


@contextmanager
def txn_producer(bootstrap: str, transactional_id: str, **extra: Any) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=transactional_id,
                      max_block_ms=10000, delivery_timeout_ms=30000,
                      **{**CLIENT_TIMEOUTS, **extra})
    try:
        yield p
    finally:
        p.close(timeout=5)


@contextmanager
def reader(bootstrap: str, isolation_level: str, **extra: Any) -> Iterator[KafkaConsumer]:
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", fetch_max_wait_ms=100,
                      isolation_level=isolation_level, **{**CLIENT_TIMEOUTS, **extra})
    try:
        yield c
    finally:
        c.close()


def read_all(bootstrap: str, topic: str, isolation_level: str, expected: int,
             timeout: float = 15.0, settle: float = 0.7) -> dict[int, list[bytes]]:
    """Every value of ``topic`` from offset 0 by partition, in offset order: poll until
    ``expected`` records arrived, then ``settle`` seconds more so extra records show up."""
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    out: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    offsets: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
    with reader(bootstrap, isolation_level) as c:
        c.assign(tps)
        c.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        got = 0
        while time.monotonic() < deadline:
            for tp, records in c.poll(timeout_ms=100).items():
                for r in records:
                    out[tp.partition].append(r.value)
                    offsets[tp.partition].append(r.offset)
                    got += 1
            if got >= expected:
                deadline = min(deadline, time.monotonic() + settle)
    for p in range(PARTITIONS):
        assert offsets[p] == sorted(offsets[p]), f"partition {p} out of offset order"
    return out


def end_offsets(bootstrap: str, topic: str, isolation_level: str) -> list[int]:
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    with reader(bootstrap, isolation_level) as c:
        ends = c.end_offsets(tps)
    return [ends[tp] for tp in tps]


def values(tag: str, n: int) -> dict[int, list[bytes]]:
    """``n`` values per partition, tagged."""
    return {p: [b"%s-%d-%d" % (tag.encode(), p, i) for i in range(n)] for p in range(PARTITIONS)}


def send_by_partition(p: KafkaProducer, topic: str, by_partition: dict[int, list[bytes]]
                      ) -> None:
    for i in range(max(len(v) for v in by_partition.values())):
        for part, vals in by_partition.items():
            if i < len(vals):
                p.send(topic, value=vals[i], key=b"k%d" % part, partition=part)


def merged(*runs: dict[int, list[bytes]]) -> dict[int, list[bytes]]:
    return {p: [v for run in runs for v in run[p]] for p in range(PARTITIONS)}


@pytest.mark.timeout(90)
def test_idempotent_producer_exactly_once_in_order_through_dropped_connections(
    tmp_path: Path, topic_name: str
) -> None:
    n = 6000
    with broker_behind_proxy(tmp_path / "data", drop_every_s=0.4,
                             response_drop_probability=0.05) as (proxy, bootstrap):
        with admin_client(bootstrap) as admin:
            create_topic(admin, topic_name, PARTITIONS)
        p = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                          linger_ms=5, batch_size=2048, max_in_flight_requests_per_connection=5,
                          retry_backoff_ms=20, reconnect_backoff_ms=10, max_block_ms=30000,
                          delivery_timeout_ms=60000, request_timeout_ms=5000)
        try:
            proxy.chaos.set()
            futures = []
            for i in range(n):
                futures.append(p.send(topic_name, value=b"%d" % i, partition=i % PARTITIONS))
                if i % 100 == 99:
                    time.sleep(0.05)  # spread over ~3 s: several drops mid-stream
            p.flush(timeout=60)
            metas = [f.get(timeout=1) for f in futures]
        finally:
            proxy.chaos.clear()
            p.close(timeout=5)
        assert proxy.drops > 0 and proxy.response_drops > 0, "the proxy must really drop"
        # The acknowledged offsets are dense and in send order per partition.
        for part in range(PARTITIONS):
            assert [m.offset for m in metas[part::PARTITIONS]] == list(range(n // PARTITIONS))
        got = read_all(bootstrap, topic_name, "read_uncommitted", n)
        for part in range(PARTITIONS):
            assert got[part] == [b"%d" % i for i in range(part, n, PARTITIONS)], \
                f"partition {part} has duplicates, gaps or reordering"


def test_commit_and_abort_across_three_partitions(broker: BrokerProcess,
                                                  topic_name: str) -> None:
    with admin_client(broker.bootstrap) as admin:
        create_topic(admin, topic_name, PARTITIONS)
    first, aborted, second, late = (values(t, 4) for t in ("c1", "ab", "c2", "late"))
    with txn_producer(broker.bootstrap, txn_id()) as p:
        p.init_transactions()
        p.begin_transaction()
        send_by_partition(p, topic_name, first)
        p.commit_transaction()

        p.begin_transaction()
        send_by_partition(p, topic_name, aborted)
        p.flush(timeout=10)  # the records reach the log before the abort
        p.abort_transaction()

        p.begin_transaction()
        send_by_partition(p, topic_name, second)
        p.commit_transaction()

        # Per partition: 4 + marker, 4 + marker, 4 + marker.
        assert end_offsets(broker.bootstrap, topic_name, "read_committed") == [15] * 3
        assert end_offsets(broker.bootstrap, topic_name, "read_uncommitted") == [15] * 3

        # An open transaction: its records are in the log (high watermark moves) but the
        # last stable offset stays at its first offset until it ends.
        p.begin_transaction()
        send_by_partition(p, topic_name, late)
        p.flush(timeout=10)
        assert end_offsets(broker.bootstrap, topic_name, "read_committed") == [15] * 3
        assert end_offsets(broker.bootstrap, topic_name, "read_uncommitted") == [19] * 3
        assert read_all(broker.bootstrap, topic_name, "read_committed", 24) == \
            merged(first, second)
        assert read_all(broker.bootstrap, topic_name, "read_uncommitted", 48) == \
            merged(first, aborted, second, late)
        p.commit_transaction()

    assert end_offsets(broker.bootstrap, topic_name, "read_committed") == [20] * 3
    assert read_all(broker.bootstrap, topic_name, "read_committed", 36) == \
        merged(first, second, late)
    assert read_all(broker.bootstrap, topic_name, "read_uncommitted", 48) == \
        merged(first, aborted, second, late)


@pytest.mark.parametrize("group_ref", [
    "group_metadata",
    "group_id",
])
def test_send_offsets_to_transaction_commits_offsets_only_with_the_transaction(
    broker: BrokerProcess, topic_name: str, group_name: str, group_ref: str
) -> None:
    """``group_ref``: the consumer's group_metadata() (KIP-447: member id and generation
    go with the offsets) or the bare group id kafka-python also accepts."""
    source, sink = topic_name, f"{topic_name}-out"
    n_per_partition = 5
    with admin_client(broker.bootstrap) as admin:
        create_topic(admin, source, PARTITIONS)
        create_topic(admin, sink, PARTITIONS)
    inputs = values("in", n_per_partition)
    with KafkaProducer(bootstrap_servers=broker.bootstrap, **CLIENT_TIMEOUTS) as plain:
        send_by_partition(plain, source, inputs)
        plain.flush(timeout=10)
    tps = [TopicPartition(source, p) for p in range(PARTITIONS)]

    def consume_batch(c: KafkaConsumer) -> dict[TopicPartition, list[Any]]:
        got: dict[TopicPartition, list[Any]] = {}
        deadline = time.monotonic() + 15
        while sum(map(len, got.values())) < PARTITIONS * n_per_partition:
            assert time.monotonic() < deadline, f"consumed only {got}"
            for tp, records in c.poll(timeout_ms=GROUP_POLL_MS).items():
                got.setdefault(tp, []).extend(records)
        return got

    def group_consumer(isolation_level: str = "read_committed") -> KafkaConsumer:
        c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group_name,
                          enable_auto_commit=False, auto_offset_reset="earliest",
                          isolation_level=isolation_level, fetch_max_wait_ms=100,
                          **CLIENT_TIMEOUTS)
        c.subscribe([source])
        return c

    def committed() -> dict[TopicPartition, int | None]:
        # read_uncommitted: an OffsetFetch without require_stable, answered even while a
        # transaction holds pending offsets for the group.
        with KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group_name,
                           enable_auto_commit=False, **CLIENT_TIMEOUTS) as c:
            return {tp: c.committed(tp) for tp in tps}

    with txn_producer(broker.bootstrap, txn_id()) as p:
        p.init_transactions()
        for attempt in ("abort", "commit"):
            c = group_consumer()
            try:
                batch = consume_batch(c)
                # After the abort the group still has no offsets: everything is re-read.
                assert {tp: [r.value for r in rs] for tp, rs in batch.items()} == \
                    {TopicPartition(source, part): v for part, v in inputs.items()}
                p.begin_transaction()
                for tp, records in batch.items():
                    for r in records:
                        p.send(sink, value=r.value.upper(), partition=tp.partition)
                offsets = {tp: OffsetAndMetadata(rs[-1].offset + 1, "", -1)
                           for tp, rs in batch.items()}
                p.send_offsets_to_transaction(
                    offsets, c.group_metadata() if group_ref == "group_metadata" else group_name)
                p.flush(timeout=10)
                # Pending: not the group's offsets yet, and unstable for require_stable.
                assert committed() == dict.fromkeys(tps)
                with admin_client(broker.bootstrap) as admin:
                    resp = send_raw(admin, OffsetFetchRequest(
                        group_id=group_name, require_stable=True, version=7,
                        topics=[OffsetFetchRequest.OffsetFetchRequestTopic(
                            name=source, partition_indexes=list(range(PARTITIONS)))]))
                assert resp.error_code == 0, resp
                assert sorted((t.name, q.partition_index, q.error_code, q.committed_offset)
                              for t in resp.topics for q in t.partitions) == \
                    [(source, q, UNSTABLE_OFFSET_COMMIT, -1) for q in range(PARTITIONS)]
                if attempt == "abort":
                    p.abort_transaction()
                else:
                    p.commit_transaction()
            finally:
                c.close()
            if attempt == "abort":
                assert committed() == dict.fromkeys(tps)
            else:
                assert committed() == {tp: n_per_partition for tp in tps}

    # A restarted member resumes after the transaction's offsets: nothing left to read.
    c = group_consumer()
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert c.poll(timeout_ms=GROUP_POLL_MS) == {}
        assert {tp: c.position(tp) for tp in tps} == dict.fromkeys(tps, n_per_partition)
    finally:
        c.close()
    upper = {part: [v.upper() for v in vs] for part, vs in inputs.items()}
    assert read_all(broker.bootstrap, sink, "read_committed", 15) == upper
    assert read_all(broker.bootstrap, sink, "read_uncommitted", 30) == merged(upper, upper)


def test_second_producer_with_same_transactional_id_fences_the_first(
    broker: BrokerProcess, topic_name: str
) -> None:
    with admin_client(broker.bootstrap) as admin:
        create_topic(admin, topic_name, PARTITIONS)
    tid = txn_id()
    old_run, new_run = values("old", 3), values("new", 3)
    with txn_producer(broker.bootstrap, tid) as old, txn_producer(broker.bootstrap, tid) as new:
        old.init_transactions()
        old.begin_transaction()
        send_by_partition(old, topic_name, old_run)
        old.flush(timeout=10)

        # The newcomer's InitProducerId aborts the open transaction and bumps the epoch.
        new.init_transactions()
        assert end_offsets(broker.bootstrap, topic_name, "read_committed") == [4] * 3

        with pytest.raises(ProducerFencedError):
            old.commit_transaction()
        with pytest.raises(KafkaError):  # fenced is fatal: no new transaction
            old.begin_transaction()

        new.begin_transaction()
        send_by_partition(new, topic_name, new_run)
        new.commit_transaction()

    assert read_all(broker.bootstrap, topic_name, "read_committed", 9) == new_run
    assert read_all(broker.bootstrap, topic_name, "read_uncommitted", 18) == \
        merged(old_run, new_run)
