"""confluent-kafka (librdkafka) transactions against a broker subprocess.

Commit and abort across partitions seen by read_committed and read_uncommitted consumers,
fencing by a second producer with the same transactional.id, a transaction left open by a
broker crash aborted by its timeout after the restart, and a consume-transform-produce loop
killed midway that still copies every message exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from compat_tests.broker_process import BrokerProcess

PARTITIONS = 3


def _create(bootstrap: str, *topics: str, partitions: int = PARTITIONS) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
    for future in futures.values():
        future.result(30)


def _txn_producer(bootstrap: str, txn_id: str, **extra: object) -> Producer:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id,
                         "linger.ms": 5, **extra})
    producer.init_transactions(30)
    return producer


def _read_all(bootstrap: str, topic: str, isolation: str,
              partitions: int = PARTITIONS, timeout: float = 30.0) -> list[str]:
    """Every message of ``topic`` up to the end each partition shows this isolation level."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}",
        "isolation.level": isolation, "enable.partition.eof": True,
        "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        values: list[str] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(at_end) < partitions:
            assert time.monotonic() < deadline, f"only {len(at_end)} partitions read to the end"
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


def _end_offsets(bootstrap: str, topic: str, isolation: str) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "offsets",
                         "isolation.level": isolation})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(PARTITIONS)]
    finally:
        consumer.close()


@pytest.mark.timeout(120)
def test_commit_and_abort_across_partitions(broker: BrokerProcess, topic_name: str) -> None:
    bootstrap = broker.bootstrap
    _create(bootstrap, topic_name)
    producer = _txn_producer(bootstrap, f"txn-{uuid.uuid4().hex}")
    expected = []
    for round_no in range(3):
        producer.begin_transaction()
        for i in range(60):
            producer.produce(topic_name, f"commit-{round_no}-{i}".encode(),
                             partition=i % PARTITIONS)
        producer.commit_transaction(30)
        expected += [f"commit-{round_no}-{i}" for i in range(60)]
        producer.begin_transaction()
        for i in range(45):
            producer.produce(topic_name, f"abort-{round_no}-{i}".encode(),
                             partition=i % PARTITIONS)
        producer.flush(30)  # the aborted records are in the log, not just in the client
        producer.abort_transaction(30)

    committed = _read_all(bootstrap, topic_name, "read_committed")
    assert Counter(committed) == Counter(expected)
    uncommitted = _read_all(bootstrap, topic_name, "read_uncommitted")
    assert len(uncommitted) == 3 * (60 + 45)
    assert sum(v.startswith("abort-") for v in uncommitted) == 3 * 45
    # Markers take an offset each: 6 transactions on each of 3 partitions.
    assert sum(_end_offsets(bootstrap, topic_name, "read_uncommitted")) == 3 * 105 + 18

    # An open transaction holds read_committed readers at its first offset (the LSO).
    producer.begin_transaction()
    producer.produce(topic_name, b"pending", partition=0)
    producer.flush(30)
    stable = _end_offsets(bootstrap, topic_name, "read_committed")
    high = _end_offsets(bootstrap, topic_name, "read_uncommitted")
    assert stable[0] == high[0] - 1 and stable[1:] == high[1:]
    assert "pending" not in _read_all(bootstrap, topic_name, "read_committed")
    producer.commit_transaction(30)
    assert "pending" in _read_all(bootstrap, topic_name, "read_committed")


@pytest.mark.timeout(120)
def test_second_producer_fences_the_first(broker: BrokerProcess, topic_name: str) -> None:
    bootstrap = broker.bootstrap
    _create(bootstrap, topic_name)
    txn_id = f"txn-{uuid.uuid4().hex}"
    first = _txn_producer(bootstrap, txn_id)
    first.begin_transaction()
    first.produce(topic_name, b"from-first", partition=0)
    first.flush(30)

    second = _txn_producer(bootstrap, txn_id)  # aborts the first's transaction
    second.begin_transaction()
    second.produce(topic_name, b"from-second", partition=1)
    second.commit_transaction(30)

    errors: list[KafkaError] = []
    first.produce(topic_name, b"first-again", partition=0,
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
    with pytest.raises(KafkaException) as raised:
        first.commit_transaction(30)
    error = raised.value.args[0]
    assert error.fatal(), error
    assert error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                            KafkaError.INVALID_PRODUCER_EPOCH), error
    assert _read_all(bootstrap, topic_name, "read_committed") == ["from-second"]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("crash", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_open_transaction_is_aborted_by_timeout_after_restart(
        tmp_path: Path, topic_name: str, crash: int) -> None:
    broker = BrokerProcess(tmp_path / "data", {
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "300"})
    broker.start()
    try:
        bootstrap = broker.bootstrap
        _create(bootstrap, topic_name)
        producer = _txn_producer(bootstrap, f"txn-{uuid.uuid4().hex}",
                                 **{"transaction.timeout.ms": 4000})
        producer.begin_transaction()
        producer.produce(topic_name, b"committed", partition=0)
        producer.commit_transaction(30)
        producer.begin_transaction()
        for p in range(PARTITIONS):
            producer.produce(topic_name, b"never-committed", partition=p)
        producer.flush(30)
        broker.stop(crash)
        broker.start()
        # After the restart the coordinator still knows the transaction and aborts it once
        # its 4 s timeout has passed: the LSO then reaches the high watermark.
        deadline = time.monotonic() + 30
        while True:
            stable = _end_offsets(bootstrap, topic_name, "read_committed")
            high = _end_offsets(bootstrap, topic_name, "read_uncommitted")
            if stable == high:
                break
            assert time.monotonic() < deadline, (stable, high)
            time.sleep(0.3)
        assert _read_all(bootstrap, topic_name, "read_committed") == ["committed"]
        assert sorted(_read_all(bootstrap, topic_name, "read_uncommitted")) == \
            ["committed"] + ["never-committed"] * PARTITIONS
    finally:
        broker.close()


LOOP = textwrap.dedent("""
    import sys
    from confluent_kafka import Consumer, Producer, TopicPartition

    bootstrap, source, sink, group, txn_id, total = sys.argv[1:7]
    total = int(total)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed",
                         "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id,
                         "linger.ms": 5})
    producer.init_transactions(30)
    consumer.subscribe([source])
    copied = 0
    while True:
        msgs = consumer.consume(200, 1.0)
        msgs = [m for m in msgs if not m.error()]
        if not msgs:
            continue
        producer.begin_transaction()
        for m in msgs:
            producer.produce(sink, m.value().upper(), partition=m.partition())
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        copied += len(msgs)
        print("copied", copied, flush=True)
""")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_consume_transform_produce_exactly_once_across_a_kill(
        broker: BrokerProcess, tmp_path: Path, topic_name: str, group_name: str) -> None:
    total = 10_000
    bootstrap = broker.bootstrap
    source, sink = f"{topic_name}-in", f"{topic_name}-out"
    _create(bootstrap, source, sink)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i in range(total):
        producer.produce(source, f"msg-{i:05d}".encode(), partition=i % PARTITIONS)
    assert producer.flush(60) == 0

    script = tmp_path / "loop.py"
    script.write_text(LOOP)
    txn_id = f"copier-{uuid.uuid4().hex}"
    args = [sys.executable, str(script), bootstrap, source, sink, group_name, txn_id,
            str(total)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    # First run: killed with SIGKILL once it has copied a good part, mid-loop.
    first_log = tmp_path / "first.log"
    with open(first_log, "wb") as out:
        loop = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            copied = [int(line.split()[1]) for line in first_log.read_text().splitlines()
                      if line.startswith("copied")]
            if copied and copied[-1] >= total // 3:
                break
            assert loop.poll() is None, first_log.read_text()
            time.sleep(0.05)
        else:
            pytest.fail(f"the loop did not get going:\n{first_log.read_text()}")
        loop.send_signal(signal.SIGKILL)
        loop.wait()
    assert copied[-1] < total, "killed too late to test anything"

    # Second run, same transactional.id and group: fences the dead one's open transaction
    # and resumes from the committed offsets.
    second_log = tmp_path / "second.log"
    with open(second_log, "wb") as out:
        loop = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                ends = _end_offsets(bootstrap, sink, "read_committed")
                values = _read_all(bootstrap, sink, "read_committed") if ends else []
                if len(values) >= total:
                    break
                assert loop.poll() is None, second_log.read_text()
                time.sleep(1.0)
        finally:
            loop.send_signal(signal.SIGKILL)
            loop.wait()
    values = _read_all(bootstrap, sink, "read_committed")
    counts = Counter(values)
    assert len(values) == total, (len(values), [v for v, n in counts.items() if n > 1][:5])
    assert set(counts) == {f"MSG-{i:05d}" for i in range(total)}
    # The records the killed run had written in its open transaction are in the log but
    # were aborted: read_uncommitted sees them as well.
    assert len(_read_all(bootstrap, sink, "read_uncommitted")) >= total


@pytest.mark.timeout(180)
@pytest.mark.parametrize("crash", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_transactions_continue_across_a_restart(
        tmp_path: Path, topic_name: str, crash: int) -> None:
    """A broker restart with one transaction completed and the next one open: the same
    producer commits the open one afterwards, and read_committed readers were held at its
    first offset across the restart (the LSO is rebuilt from the log)."""
    broker = BrokerProcess(tmp_path / "data")
    broker.start()
    try:
        bootstrap = broker.bootstrap
        _create(bootstrap, topic_name)
        producer = _txn_producer(bootstrap, f"txn-{uuid.uuid4().hex}",
                                 **{"transaction.timeout.ms": 60000,
                                    "reconnect.backoff.ms": 20})
        producer.begin_transaction()
        for p in range(PARTITIONS):
            producer.produce(topic_name, f"before-{p}".encode(), partition=p)
        producer.commit_transaction(30)
        producer.begin_transaction()
        for p in range(PARTITIONS):
            producer.produce(topic_name, f"open-{p}".encode(), partition=p)
        producer.flush(30)
        broker.stop(crash)
        broker.start()
        stable = _end_offsets(bootstrap, topic_name, "read_committed")
        high = _end_offsets(bootstrap, topic_name, "read_uncommitted")
        assert stable == [2] * PARTITIONS and high == [3] * PARTITIONS  # data, marker, open
        assert sorted(_read_all(bootstrap, topic_name, "read_committed")) == \
            [f"before-{p}" for p in range(PARTITIONS)]
        producer.commit_transaction(60)
        producer.begin_transaction()
        producer.produce(topic_name, b"after", partition=0)
        producer.commit_transaction(30)
        assert sorted(_read_all(bootstrap, topic_name, "read_committed")) == sorted(
            [f"before-{p}" for p in range(PARTITIONS)]
            + [f"open-{p}" for p in range(PARTITIONS)] + ["after"])
    finally:
        broker.close()
