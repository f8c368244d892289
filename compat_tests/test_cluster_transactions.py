"""Transactions in a three-broker ZooKeeper cluster (issue #14: coordinators on brokers other
than the bootstrap broker).

The transaction coordinator of a transactional id is the leader of its
``__transaction_state`` partition; the tests pick ids (and group ids) whose coordinators are
other brokers than the one the clients bootstrap from, and topics whose partitions are led by
all three brokers, so markers travel as WriteTxnMarkers between brokers and every partition
leader verifies transactional batches with a remote coordinator (KIP-890).
"""

from __future__ import annotations

import socket
import struct
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from compat_tests import ck_helpers as ck
from compat_tests.cluster import Cluster
from pykbroker.coordinator.group.records import partition_for
from pykbroker.error_codes import ErrorCode
from pykbroker.protocol._generated.add_partitions_to_txn_request import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnTopic,
)
from pykbroker.protocol._generated.end_txn_request import EndTxnRequest
from pykbroker.protocol._generated.init_producer_id_request import InitProducerIdRequest
from pykbroker.protocol._generated.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from pykbroker.protocol.api import ApiKey
from pykbroker.protocol.framing import decode_response, encode_request
from pykbroker.records import NewRecord, build_batch

INTERNAL_PARTITIONS = 6
FAST = {"transaction.state.log.num.partitions": INTERNAL_PARTITIONS,
        "transaction.state.log.replication.factor": 1,
        "offsets.topic.num.partitions": INTERNAL_PARTITIONS,
        "offsets.topic.replication.factor": 1}
PARTITIONS = 6

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(60), pytest.mark.cluster_config(**FAST)]


def _create(cluster: Cluster, name: str, partitions: int = PARTITIONS,
            replication_factor: int = 1) -> dict[int, int]:
    """Create ``name`` through broker 1; {partition: leader} once every broker knows it."""
    admin = ck.admin(cluster.bootstrap(1))
    future = admin.create_topics([NewTopic(name, partitions, replication_factor)],
                                 operation_timeout=10, request_timeout=15)[name]
    future.result(timeout=20)
    return {p: v.leader for p, v in cluster.wait_topic(name, partitions).items()}


def _internal_leaders(cluster: Cluster, topic: str, create: Callable[[], Any]
                      ) -> dict[int, int]:
    """Leaders of an internal topic, made to exist by ``create`` (retried until it is)."""
    def exists() -> dict[int, int] | None:
        if topic not in cluster.metadata(1).topics:
            create()
            return None
        return {p: v.leader for p, v in cluster.wait_topic(topic, INTERNAL_PARTITIONS).items()}

    return cluster.wait_until(exists, 30, interval=0.5, what=f"{topic} with leaders")


def _txn_state_leaders(cluster: Cluster) -> dict[int, int]:
    def find_coordinator() -> None:  # FindCoordinator(TRANSACTION) creates the topic
        _request(cluster, 1, ApiKey.FIND_COORDINATOR, 1, _find_coordinator("warm-up", 1))

    return _internal_leaders(cluster, "__transaction_state", find_coordinator)


def _offsets_leaders(cluster: Cluster) -> dict[int, int]:
    def find_coordinator() -> None:
        _request(cluster, 1, ApiKey.FIND_COORDINATOR, 1, _find_coordinator("warm-up", 0))

    return _internal_leaders(cluster, "__consumer_offsets", find_coordinator)


def _key_led_by(leaders: dict[int, int], broker: int, prefix: str) -> str:
    """A transactional or group id whose internal-topic partition ``broker`` leads."""
    for _ in range(10_000):
        key = f"{prefix}-{uuid.uuid4().hex[:10]}"
        if leaders[partition_for(key, len(leaders))] == broker:
            return key
    raise AssertionError(f"no key led by {broker} in {leaders}")


def _find_coordinator(key: str, key_type: int) -> Any:
    from pykbroker.protocol._generated.find_coordinator_request import FindCoordinatorRequest

    return FindCoordinatorRequest(key=key, key_type=key_type)


def _request(cluster: Cluster, broker: int, api_key: int, version: int, body: Any) -> Any:
    """One request to ``broker`` over a fresh socket, with our own codecs."""
    frame = encode_request(api_key, version, 1, "cluster-txn-test", body)
    with socket.create_connection(("127.0.0.1", cluster.brokers[broker].port), 10) as sock:
        sock.sendall(frame)
        (size,) = struct.unpack(">i", _recv(sock, 4))
        _, response = decode_response(bytearray(_recv(sock, size)), api_key, version)
    return response


def _recv(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return bytes(buf)


def _txn_producer(cluster: Cluster, txn_id: str) -> Producer:
    producer = Producer(ck.producer_conf(cluster.bootstrap(1), **{"transactional.id": txn_id}))
    producer.init_transactions(30)
    return producer


def _read(cluster: Cluster, topic: str, isolation: str, partitions: int = PARTITIONS
          ) -> list[str]:
    """Every message up to the end each partition shows at this isolation level, read
    through broker 1."""
    consumer = Consumer(ck.consumer_conf(cluster.bootstrap(1), **{
        "group.id": f"reader-{uuid.uuid4().hex}", "isolation.level": isolation,
        "enable.partition.eof": True}))
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        values: list[str] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + 20
        while len(at_end) < partitions:
            assert time.monotonic() < deadline, f"only {sorted(at_end)} read to the end"
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                at_end.add(msg.partition())
                continue
            at_end.discard(msg.partition())
            values.append(msg.value().decode())
        return values
    finally:
        consumer.close()


def _end_offsets(cluster: Cluster, topic: str, isolation: str) -> list[int]:
    consumer = Consumer(ck.consumer_conf(cluster.bootstrap(1), **{"isolation.level": isolation}))
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(PARTITIONS)]
    finally:
        consumer.close()


def _eventually_reads(cluster: Cluster, topic: str, expected: list[str]) -> None:
    """read_committed sees exactly ``expected`` (markers may still be travelling when
    commit_transaction returns: EndTxn is answered once PrepareCommit is written)."""
    cluster.wait_until(lambda: Counter(_read(cluster, topic, "read_committed"))
                       == Counter(expected), 20, interval=0.3,
                       what="read_committed seeing exactly the committed records")


def test_commit_and_abort_with_the_coordinator_on_another_broker(
        cluster: Cluster, topic_name: str) -> None:
    _commit_and_abort(cluster, topic_name, 1)


@pytest.mark.parametrize("cluster", [{"transaction.state.log.replication.factor": 3,
                                      "offsets.topic.replication.factor": 3}], indirect=True)
def test_commit_and_abort_replicated(cluster: Cluster, topic_name: str) -> None:
    """The same with replication factor 3 everywhere: the Prepare records, the markers
    and the data are acknowledged once the ISR holds them (acks=-1, as Kafka's)."""
    _commit_and_abort(cluster, topic_name, 3)


def _commit_and_abort(cluster: Cluster, topic_name: str, replication_factor: int) -> None:
    cluster.wait_formed()
    leaders = _create(cluster, topic_name, replication_factor=replication_factor)
    assert set(leaders.values()) == {1, 2, 3}, leaders
    coordinator = 2 if 2 in _txn_state_leaders(cluster).values() else 3
    txn_id = _key_led_by(_txn_state_leaders(cluster), coordinator, "txn")
    producer = _txn_producer(cluster, txn_id)  # bootstrapped at broker 1 only

    expected: list[str] = []
    for round_no in range(2):
        producer.begin_transaction()
        for i in range(30):
            producer.produce(topic_name, f"commit-{round_no}-{i}".encode(),
                             partition=i % PARTITIONS)
        producer.commit_transaction(30)
        expected += [f"commit-{round_no}-{i}" for i in range(30)]
        producer.begin_transaction()
        for i in range(24):
            producer.produce(topic_name, f"abort-{round_no}-{i}".encode(),
                             partition=i % PARTITIONS)
        producer.flush(30)  # the aborted records are in the logs, not just in the client
        producer.abort_transaction(30)

    _eventually_reads(cluster, topic_name, expected)
    uncommitted = _read(cluster, topic_name, "read_uncommitted")
    assert len(uncommitted) == 2 * (30 + 24)
    assert sum(v.startswith("abort-") for v in uncommitted) == 2 * 24
    # Every partition, whichever broker leads it, got a marker per transaction: 4 each.
    assert _end_offsets(cluster, topic_name, "read_uncommitted") == [
        2 * (5 + 4) + 4] * PARTITIONS

    # An open transaction holds read_committed readers on another broker at its first offset.
    remote = next(p for p, leader in leaders.items() if leader not in (1, coordinator))
    producer.begin_transaction()
    producer.produce(topic_name, b"pending", partition=remote)
    producer.flush(30)
    stable = _end_offsets(cluster, topic_name, "read_committed")
    high = _end_offsets(cluster, topic_name, "read_uncommitted")
    assert stable[remote] == high[remote] - 1
    producer.commit_transaction(30)
    _eventually_reads(cluster, topic_name, [*expected, "pending"])


def test_fencing_across_brokers(cluster: Cluster, topic_name: str) -> None:
    """A second producer with the same transactional id, bootstrapped elsewhere, fences the
    first and aborts its open transaction on partitions led by every broker."""
    cluster.wait_formed()
    _create(cluster, topic_name)
    txn_id = _key_led_by(_txn_state_leaders(cluster), 3, "fence")
    first = _txn_producer(cluster, txn_id)
    first.begin_transaction()
    for p in range(PARTITIONS):
        first.produce(topic_name, b"from-first", partition=p)
    first.flush(30)

    second = Producer(ck.producer_conf(cluster.bootstrap(2), **{"transactional.id": txn_id}))
    second.init_transactions(30)  # aborts the first's transaction
    second.begin_transaction()
    second.produce(topic_name, b"from-second", partition=1)
    second.commit_transaction(30)

    first.produce(topic_name, b"first-again", partition=0)
    with pytest.raises(KafkaException) as raised:
        first.commit_transaction(30)
    error = raised.value.args[0]
    assert error.fatal(), error
    _eventually_reads(cluster, topic_name, ["from-second"])


def test_produce_verification_with_a_remote_coordinator(cluster: Cluster,
                                                        topic_name: str) -> None:
    """KIP-890 through raw requests: the partition leader asks the coordinator (another
    broker) whether the partition is in the producer's transaction."""
    cluster.wait_formed()
    leaders = _create(cluster, topic_name)
    coordinator = 2 if 2 in _txn_state_leaders(cluster).values() else 3
    txn_id = _key_led_by(_txn_state_leaders(cluster), coordinator, "raw")
    partition = next(p for p, leader in leaders.items() if leader != coordinator)
    leader = leaders[partition]

    def init() -> tuple[int, int]:
        def attempt() -> tuple[int, int] | None:
            r = _request(cluster, coordinator, ApiKey.INIT_PRODUCER_ID, 4,
                         InitProducerIdRequest(transactional_id=txn_id,
                                               transaction_timeout_ms=60000,
                                               producer_id=-1, producer_epoch=-1))
            return (r.producer_id, r.producer_epoch) if r.error_code == 0 else None
        return cluster.wait_until(attempt, 20, what="InitProducerId")

    pid, epoch = init()
    sequence = iter(range(1000))

    def produce(producer_epoch: int) -> ErrorCode:
        batch = build_batch([NewRecord(b"k", b"v")], producer_id=pid,
                            producer_epoch=producer_epoch, base_sequence=next(sequence),
                            is_transactional=True)
        r = _request(cluster, leader, ApiKey.PRODUCE, 9, ProduceRequest(
            transactional_id=txn_id, acks=-1, timeout_ms=10000, topic_data=[
                TopicProduceData(name=topic_name, partition_data=[
                    PartitionProduceData(index=partition, records=bytearray(batch))])]))
        return ErrorCode(r.responses[0].partition_responses[0].error_code)

    def add_partition() -> None:
        def attempt() -> bool:
            r = _request(cluster, coordinator, ApiKey.ADD_PARTITIONS_TO_TXN, 3,
                         AddPartitionsToTxnRequest(
                             v3_and_below_transactional_id=txn_id, v3_and_below_producer_id=pid,
                             v3_and_below_producer_epoch=epoch,
                             v3_and_below_topics=[AddPartitionsToTxnTopic(topic_name,
                                                                          [partition])]))
            code = r.results_by_topic_v3_and_below[0].results_by_partition[0]
            return bool(code.partition_error_code == 0)
        cluster.wait_until(attempt, 20, what="AddPartitionsToTxn")

    assert produce(epoch) == ErrorCode.INVALID_TXN_STATE  # not added to the transaction
    add_partition()
    assert produce(epoch) == ErrorCode.NONE
    assert produce(epoch) == ErrorCode.NONE  # an open transaction here: no question asked
    r = _request(cluster, coordinator, ApiKey.END_TXN, 3, EndTxnRequest(
        transactional_id=txn_id, producer_id=pid, producer_epoch=epoch, committed=True))
    assert r.error_code == 0
    # The COMMIT marker reached the partition's leader: the next batch starts a new
    # transaction, which must be verified again -- and it was not added.
    cluster.wait_until(lambda: _end_offsets(cluster, topic_name, "read_committed")[partition]
                       == 3, 20, what="the commit marker on the remote leader")
    assert produce(epoch) == ErrorCode.INVALID_TXN_STATE
    pid2, epoch2 = init()  # the epoch is bumped: the old one is fenced
    assert (pid2, epoch2) == (pid, epoch + 1)
    assert produce(epoch) == ErrorCode.INVALID_PRODUCER_EPOCH


def test_send_offsets_with_group_and_transaction_coordinators_elsewhere(
        cluster: Cluster, topic_name: str) -> None:
    """Producer bootstrapped at broker 1, transaction coordinator broker 2 (or 3), group
    coordinator the remaining one: committed and aborted offsets of a consume-transform-
    produce loop."""
    cluster.wait_formed()
    source, sink = f"{topic_name}-in", f"{topic_name}-out"
    _create(cluster, source)
    _create(cluster, sink)
    txn_leaders = _txn_state_leaders(cluster)
    offsets_leaders = _offsets_leaders(cluster)
    pairs = [(t, g) for t in (2, 3) for g in (2, 3) if t != g
             and t in txn_leaders.values() and g in offsets_leaders.values()]
    assert pairs, (txn_leaders, offsets_leaders)
    txn_coordinator, group_coordinator = pairs[0]
    txn_id = _key_led_by(txn_leaders, txn_coordinator, "copier")
    group = _key_led_by(offsets_leaders, group_coordinator, "group")

    with ck.producer(cluster.bootstrap(1), **{"enable.idempotence": True}) as plain:
        for i in range(60):
            plain.produce(source, f"msg-{i:02d}".encode(), partition=i % PARTITIONS)
    consumer = Consumer(ck.consumer_conf(cluster.bootstrap(1), **{
        "group.id": group, "isolation.level": "read_committed",
        "session.timeout.ms": 6000, "heartbeat.interval.ms": 500}))
    producer = _txn_producer(cluster, txn_id)
    try:
        consumer.subscribe([source])

        def consume(n: int) -> list[Any]:
            got: list[Any] = []
            deadline = time.monotonic() + 30
            while len(got) < n:
                assert time.monotonic() < deadline, f"consumed {len(got)} of {n}"
                got += [m for m in consumer.consume(n - len(got), 0.5) if not m.error()]
            return got

        def copy(messages: list[Any], commit: bool) -> list[TopicPartition]:
            producer.begin_transaction()
            for m in messages:
                producer.produce(sink, m.value().upper(), partition=m.partition())
            positions = consumer.position(consumer.assignment())
            producer.send_offsets_to_transaction(positions,
                                                 consumer.consumer_group_metadata(), 30)
            (producer.commit_transaction if commit else producer.abort_transaction)(30)
            return positions

        committed_positions = copy(consume(60), commit=True)
        assert sum(tp.offset for tp in committed_positions) == 60

        def committed() -> dict[int, int]:
            with ck.consumer(cluster.bootstrap(1), **{"group.id": group,
                                                      "isolation.level": "read_committed"}) as c:
                return {tp.partition: tp.offset for tp in c.committed(
                    [TopicPartition(source, p) for p in range(PARTITIONS)], timeout=10)}

        want = {tp.partition: tp.offset for tp in committed_positions}
        cluster.wait_until(lambda: committed() == want, 20,
                           what="the transaction's offsets committed")
        _eventually_reads(cluster, sink, [f"MSG-{i:02d}" for i in range(60)])

        # An aborted copy changes neither the group's offsets nor what readers see.
        with ck.producer(cluster.bootstrap(1), **{"enable.idempotence": True}) as plain:
            for i in range(60, 72):
                plain.produce(source, f"msg-{i:02d}".encode(), partition=i % PARTITIONS)
        copy(consume(12), commit=False)
        _eventually_reads(cluster, sink, [f"MSG-{i:02d}" for i in range(60)])
        assert committed() == want
    finally:
        consumer.close()


@pytest.mark.parametrize("cluster", [{"transaction.state.log.replication.factor": 3,
                                      "offsets.topic.replication.factor": 3}], indirect=True)
@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_the_coordinator_fails_over_mid_transaction(cluster: Cluster, topic_name: str,
                                                    stop: str) -> None:
    """Replication factor 3: the transaction coordinator's broker stops with a transaction
    open; the partition's new leader loads it from its replica and the producer commits
    through it; read_committed readers see every record once."""
    cluster.wait_formed()
    _create(cluster, topic_name, replication_factor=3)
    txn_leaders = _txn_state_leaders(cluster)
    victim = 2 if 2 in txn_leaders.values() else 3
    txn_id = _key_led_by(txn_leaders, victim, "failover")
    producer = _txn_producer(cluster, txn_id)
    producer.begin_transaction()
    for i in range(30):
        producer.produce(topic_name, f"before-{i}".encode(), partition=i % PARTITIONS)
    producer.commit_transaction(30)
    producer.begin_transaction()
    for i in range(30):
        producer.produce(topic_name, f"open-{i}".encode(), partition=i % PARTITIONS)
    producer.flush(30)
    if stop == "sigterm":
        assert cluster.terminate(victim) == 0  # controlled shutdown moves leadership first
    else:
        cluster.kill(victim)
    survivors = [i for i in cluster.broker_ids if i != victim]
    index = partition_for(txn_id, INTERNAL_PARTITIONS)

    def moved() -> bool:
        view = cluster.metadata(1)
        return view.topics["__transaction_state"][index].leader in survivors and all(
            p.leader in survivors for p in view.topics[topic_name].values())

    cluster.wait_until(moved, cluster.session_timeout_ms / 1000 + 15, interval=0.3,
                       what="leaders on the surviving brokers")
    for i in range(30, 36):
        producer.produce(topic_name, f"open-{i}".encode(), partition=i % PARTITIONS)
    producer.commit_transaction(30)
    expected = [f"before-{i}" for i in range(30)] + [f"open-{i}" for i in range(36)]
    _eventually_reads(cluster, topic_name, expected)
