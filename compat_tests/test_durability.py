"""Durability: what acks=all acknowledged survives SIGTERM and SIGKILL restarts, torn or
garbage segment tails are cut back to the last whole batch, lost indexes are rebuilt.

Every check goes through stock clients (confluent-kafka): delivery reports record
(partition, offset, key, value) and a consumer reading from the beginning must see exactly
those records at exactly those offsets. Segment files are parsed here independently of the
broker's code: a batch starts with int64 baseOffset, int32 batchLength (bytes after it).
"""

from __future__ import annotations

import signal
import struct
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicCollection
from confluent_kafka import TopicPartition as TP
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewTopic

from compat_tests.broker_process import BrokerProcess

pytestmark = pytest.mark.timeout(180)

OP_TIMEOUT = 15.0  # any single admin call, flush or read-back
SIGTERM_BUDGET_S = 5.0


class Acked(NamedTuple):
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


Item = tuple[int, bytes, bytes]  # partition, key, value
TimedItem = tuple[int, bytes, bytes, int]  # ... plus a CreateTime timestamp


# -- client helpers -------------------------------------------------------------------------


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})


def create_topic(bootstrap: str, name: str, partitions: int = 1,
                 config: dict[str, str] | None = None) -> None:
    admin = _admin(bootstrap)  # must outlive its futures
    futures = admin.create_topics(
        [NewTopic(name, partitions, 1, config=dict(config or {}))], operation_timeout=10)
    futures[name].result(OP_TIMEOUT)


def topic_id(bootstrap: str, name: str) -> str:
    admin = _admin(bootstrap)
    futures = admin.describe_topics(TopicCollection([name]), request_timeout=10)
    desc = futures[name].result(OP_TIMEOUT)
    assert len(desc.partitions) >= 1
    return str(desc.topic_id)


def partition_count(bootstrap: str, name: str) -> int:
    md = _admin(bootstrap).list_topics(name, timeout=OP_TIMEOUT)
    assert md.topics[name].error is None, md.topics[name].error
    return len(md.topics[name].partitions)


def topic_config(bootstrap: str, name: str) -> dict[str, tuple[str, int]]:
    admin = _admin(bootstrap)
    futures = admin.describe_configs([ConfigResource("topic", name)], request_timeout=10)
    (future,) = futures.values()
    entries = future.result(OP_TIMEOUT)
    return {k: (e.value, e.source) for k, e in entries.items()}


def _producer(bootstrap: str, **extra: object) -> Producer:
    conf: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 30000,
    }
    conf.update(extra)
    return Producer(conf)


def produce(bootstrap: str, topic: str, items: Iterable[Item | TimedItem], *,
            flush_every: int | None = None, **extra: object) -> list[Acked]:
    """Produce with acks=all; returns the delivery reports in delivery order. Every message
    must be acknowledged. ``flush_every`` waits for delivery every N messages (one batch
    per round with linger.ms=0)."""
    producer = _producer(bootstrap, **extra)
    acked: list[Acked] = []
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: object) -> None:
        if err is not None:
            errors.append(err)
        else:
            acked.append(Acked(msg.partition(), msg.offset(), msg.key(), msg.value()))  # type: ignore[attr-defined]

    try:
        return _produce_with(producer, topic, items, acked, errors, on_delivery, flush_every)
    finally:
        _close_producer(producer)


def _close_producer(producer: Producer) -> None:
    producer.purge(in_queue=True, in_flight=True)  # nothing may block close()
    producer.flush(OP_TIMEOUT)
    producer.close()


def _produce_with(producer: Producer, topic: str, items: Iterable[Item | TimedItem],
                  acked: list[Acked], errors: list[KafkaError], on_delivery: object,
                  flush_every: int | None) -> list[Acked]:
    sent = 0
    for item in items:
        partition, key, value = item[0], item[1], item[2]
        kwargs = {"timestamp": item[3]} if len(item) > 3 else {}
        while True:
            try:
                producer.produce(topic, value=value, key=key, partition=partition,
                                 on_delivery=on_delivery, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
        sent += 1
        producer.poll(0)
        if flush_every and sent % flush_every == 0:
            assert producer.flush(OP_TIMEOUT) == 0
    assert producer.flush(OP_TIMEOUT) == 0, "messages still unacknowledged"
    assert not errors, errors[:5]
    assert len(acked) == sent
    return acked


def _consumer(bootstrap: str) -> Consumer:
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"durability-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "fetch.wait.max.ms": 100,
        "socket.timeout.ms": 10000,
    })


def end_offsets(bootstrap: str, topic: str, partitions: Iterable[int]) -> dict[int, int]:
    consumer = _consumer(bootstrap)
    try:
        return {p: consumer.get_watermark_offsets(TP(topic, p), timeout=OP_TIMEOUT)[1]
                for p in partitions}
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str, partitions: Iterable[int],
             start: dict[int, int] | None = None
             ) -> dict[int, list[tuple[int, bytes | None, bytes | None]]]:
    """Every record (offset, key, value) of each partition from ``start`` (default: the
    beginning) up to its high watermark at the time of the call."""
    parts = list(partitions)
    consumer = _consumer(bootstrap)
    try:
        highs = {p: consumer.get_watermark_offsets(TP(topic, p), timeout=OP_TIMEOUT)[1]
                 for p in parts}
        begin = start or {}
        consumer.assign([TP(topic, p, begin.get(p, OFFSET_BEGINNING)) for p in parts])
        out: dict[int, list[tuple[int, bytes | None, bytes | None]]] = {p: [] for p in parts}
        pending = {p for p in parts if highs[p] > begin.get(p, 0)}
        deadline = time.monotonic() + OP_TIMEOUT * 2
        while pending:
            assert time.monotonic() < deadline, (
                f"read-back timed out: {[(p, len(out[p]), highs[p]) for p in parts]}")
            for msg in consumer.consume(10000, 0.5):
                err = msg.error()
                assert err is None, err
                p = msg.partition()
                out[p].append((msg.offset(), msg.key(), msg.value()))
                if msg.offset() >= highs[p] - 1:
                    pending.discard(p)
        return out
    finally:
        consumer.close()


def assert_exact(consumed: dict[int, list[tuple[int, bytes | None, bytes | None]]],
                 acked: Sequence[Acked]) -> None:
    """The log holds exactly the acknowledged records, at their offsets, nothing else."""
    expected: dict[int, list[tuple[int, bytes | None, bytes | None]]] = {p: [] for p in consumed}
    for a in sorted(acked, key=lambda a: (a.partition, a.offset)):
        expected.setdefault(a.partition, []).append((a.offset, a.key, a.value))
    for p in expected:
        got = consumed.get(p, [])
        assert len(got) == len(expected[p]), (p, len(got), len(expected[p]))
        first_bad = next((i for i, (g, e) in enumerate(zip(got, expected[p], strict=True))
                          if g != e), None)
        assert first_bad is None, (p, got[first_bad], expected[p][first_bad])


def items(n: int, partitions: int, tag: str = "m") -> list[Item]:
    return [(i % partitions, f"{tag}-key-{i}".encode(),
             f"{tag}-value-{i}-".encode() + b"x" * (i % 97)) for i in range(n)]


def stop_sigterm(broker: BrokerProcess) -> None:
    """SIGTERM: exit code 0, 'shut down completed' logged, all within the budget."""
    started = time.monotonic()
    code = broker.stop(signal.SIGTERM)
    elapsed = time.monotonic() - started
    assert code == 0, broker.log()[-3000:]
    last_run = broker.log().rsplit("===== start", 1)[-1]
    assert "shut down completed" in last_run
    assert elapsed < SIGTERM_BUDGET_S, f"SIGTERM shutdown took {elapsed:.1f} s"


def stop(broker: BrokerProcess, how: str) -> None:
    if how == "sigterm":
        stop_sigterm(broker)
    else:
        assert broker.kill() == -signal.SIGKILL


# -- segment files --------------------------------------------------------------------------


class Batch(NamedTuple):
    position: int
    size: int  # including the 12-byte offset+length prefix
    base_offset: int
    last_offset: int


def segment_files(broker: BrokerProcess, topic: str, partition: int, suffix: str) -> list[Path]:
    return sorted((broker.data_dir / f"{topic}-{partition}").glob(f"*{suffix}"))


def parse_batches(data: bytes) -> list[Batch]:
    batches = []
    pos = 0
    while pos + 61 <= len(data):
        base, length = struct.unpack_from(">qi", data, pos)
        (last_delta,) = struct.unpack_from(">i", data, pos + 23)
        size = 12 + length
        assert data[pos + 16] == 2, f"magic {data[pos + 16]} at {pos}"
        assert pos + size <= len(data), f"partial batch at {pos}"
        batches.append(Batch(pos, size, base, base + last_delta))
        pos += size
    assert pos == len(data), f"{len(data) - pos} trailing bytes"
    return batches


def active_segment(broker: BrokerProcess, topic: str, partition: int) -> Path:
    logs = segment_files(broker, topic, partition, ".log")
    assert logs, f"no segment for {topic}-{partition}"
    return logs[-1]


# -- acks=all survives restarts -------------------------------------------------------------


PARTITIONS = 4
MESSAGES = 4000


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_acked_messages_and_topic_metadata_survive_restart(
        broker: BrokerProcess, topic_name: str, how: str) -> None:
    create_topic(broker.bootstrap, topic_name, PARTITIONS,
                 {"retention.ms": "987654321", "max.message.bytes": "500000"})
    tid = topic_id(broker.bootstrap, topic_name)
    acked = produce(broker.bootstrap, topic_name, items(MESSAGES, PARTITIONS))
    assert_exact(read_all(broker.bootstrap, topic_name, range(PARTITIONS)), acked)

    # Clients stay connected (a consumer long-polling) while the broker is stopped.
    consumer = _consumer(broker.bootstrap)
    consumer.assign([TP(topic_name, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    consumer.consume(100, 1.0)
    try:
        stop(broker, how)
    finally:
        consumer.close()
    broker.start()

    assert_exact(read_all(broker.bootstrap, topic_name, range(PARTITIONS)), acked)
    assert topic_id(broker.bootstrap, topic_name) == tid
    assert partition_count(broker.bootstrap, topic_name) == PARTITIONS
    configs = topic_config(broker.bootstrap, topic_name)
    assert configs["retention.ms"] == ("987654321", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert configs["max.message.bytes"] == ("500000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)

    # The log continues where it was, and a second restart of the other kind keeps it all.
    more = produce(broker.bootstrap, topic_name, items(400, PARTITIONS, "after"))
    per_partition = MESSAGES // PARTITIONS
    assert sorted(a.offset for a in more if a.partition == 0) == list(
        range(per_partition, per_partition + 100))
    stop(broker, "sigkill" if how == "sigterm" else "sigterm")
    broker.start()
    assert_exact(read_all(broker.bootstrap, topic_name, range(PARTITIONS)), acked + more)
    assert topic_id(broker.bootstrap, topic_name) == tid
    assert topic_config(broker.bootstrap, topic_name)["retention.ms"][0] == "987654321"


@pytest.mark.slow
def test_acked_messages_survive_sigkill_during_produce(
        broker: BrokerProcess, topic_name: str) -> None:
    create_topic(broker.bootstrap, topic_name, PARTITIONS)
    producer = _producer(broker.bootstrap, **{"linger.ms": 2, "retries": 0,
                                              "message.timeout.ms": 10000})
    acked: list[Acked] = []
    failed: list[KafkaError] = []
    stop_sending = threading.Event()

    def on_delivery(err: KafkaError | None, msg: object) -> None:
        if err is None:
            acked.append(Acked(msg.partition(), msg.offset(), msg.key(), msg.value()))  # type: ignore[attr-defined]
        else:
            failed.append(err)

    sent = [0]

    def send_forever() -> None:
        i = 0
        while not stop_sending.is_set():
            key, value = f"k{i}".encode(), f"v{i}-".encode() + b"y" * (i % 200)
            try:
                producer.produce(topic_name, value=value, key=key, partition=i % PARTITIONS,
                                 on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            producer.poll(0 if i % 50 else 0.001)
        sent[0] = i

    thread = threading.Thread(target=send_forever, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while len(acked) < 5000:
            assert time.monotonic() < deadline, f"only {len(acked)} acks"
            assert thread.is_alive()
            time.sleep(0.01)
        assert broker.kill() == -signal.SIGKILL  # the producer is mid-stream
        time.sleep(0.3)
    finally:
        stop_sending.set()
        thread.join(10)
    _close_producer(producer)
    assert sent[0] == len(acked) + len(failed), (sent[0], len(acked), len(failed))

    broker.start()
    consumed = read_all(broker.bootstrap, topic_name, range(PARTITIONS))
    for p, records in consumed.items():
        offsets = [o for o, _, _ in records]
        assert offsets == list(range(len(offsets))), f"partition {p} has holes"
    by_offset = {(p, o): (k, v) for p, records in consumed.items() for o, k, v in records}
    missing = [a for a in acked if by_offset.get((a.partition, a.offset)) != (a.key, a.value)]
    assert not missing, f"{len(missing)} acknowledged messages lost or changed: {missing[:3]}"

    # Producing continues at each partition's end.
    ends = {p: len(records) for p, records in consumed.items()}
    more = produce(broker.bootstrap, topic_name, items(40, PARTITIONS, "after"))
    for p in range(PARTITIONS):
        assert sorted(a.offset for a in more if a.partition == p) == list(
            range(ends[p], ends[p] + 10))


def test_flush_messages_1_survives_sigkill(broker: BrokerProcess, topic_name: str) -> None:
    create_topic(broker.bootstrap, topic_name, 2, {"flush.messages": "1"})
    acked = produce(broker.bootstrap, topic_name, items(600, 2))
    assert broker.kill() == -signal.SIGKILL
    broker.start()
    assert_exact(read_all(broker.bootstrap, topic_name, range(2)), acked)
    assert topic_config(broker.bootstrap, topic_name)["flush.messages"] == (
        "1", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    more = produce(broker.bootstrap, topic_name, items(10, 2, "after"))
    assert sorted(a.offset for a in more if a.partition == 0) == list(range(300, 305))


# -- torn and garbage tails -----------------------------------------------------------------


def _produce_batches(broker: BrokerProcess, topic: str, rounds: int = 30,
                     per_round: int = 10) -> list[Acked]:
    """``rounds`` separate batches (flush after each) on partition 0."""
    create_topic(broker.bootstrap, topic, 1)
    data = [(0, f"key-{i}".encode(), f"value-{i}-".encode() + b"z" * (i % 31))
            for i in range(rounds * per_round)]
    return produce(broker.bootstrap, topic, data, flush_every=per_round, **{"linger.ms": 0})


@pytest.mark.parametrize("how", ["sigkill", "sigterm"])
@pytest.mark.parametrize("cut", ["mid-batch", "mid-header", "after-length"])
def test_torn_tail_is_truncated_to_last_whole_batch(
        broker: BrokerProcess, topic_name: str, how: str, cut: str) -> None:
    acked = _produce_batches(broker, topic_name)
    stop(broker, how)
    segment = active_segment(broker, topic_name, 0)
    batches = parse_batches(segment.read_bytes())
    assert len(batches) >= 10 and batches[-1].last_offset == len(acked) - 1
    last = batches[-1]
    keep = {"mid-batch": last.size // 2, "mid-header": 7, "after-length": 12}[cut]
    with open(segment, "r+b") as f:
        f.truncate(last.position + keep)

    broker.start()
    assert end_offsets(broker.bootstrap, topic_name, [0]) == {0: last.base_offset}
    survivors = [a for a in acked if a.offset < last.base_offset]
    assert_exact(read_all(broker.bootstrap, topic_name, [0]), survivors)
    more = produce(broker.bootstrap, topic_name, [(0, b"new-key", b"new-value")] * 3)
    assert [a.offset for a in more] == [last.base_offset + i for i in range(3)]
    assert_exact(read_all(broker.bootstrap, topic_name, [0]), survivors + more)
    # The segment on disk is whole again, with the new batch right after the cut.
    stop_sigterm(broker)
    batches = parse_batches(active_segment(broker, topic_name, 0).read_bytes())
    assert batches[-1].last_offset == last.base_offset + 2


_HTTP_GARBAGE = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n" + bytes(range(256)) * 4


@pytest.mark.parametrize("how", ["sigkill", "sigterm"])
@pytest.mark.parametrize("garbage", ["http", "zeros"])
def test_garbage_after_last_batch_is_dropped(
        broker: BrokerProcess, topic_name: str, how: str, garbage: str) -> None:
    acked = _produce_batches(broker, topic_name, rounds=10)
    stop(broker, how)
    segment = active_segment(broker, topic_name, 0)
    original = segment.read_bytes()
    with open(segment, "ab") as f:
        f.write(_HTTP_GARBAGE if garbage == "http" else bytes(4096))

    broker.start()
    assert end_offsets(broker.bootstrap, topic_name, [0]) == {0: len(acked)}
    assert_exact(read_all(broker.bootstrap, topic_name, [0]), acked)
    more = produce(broker.bootstrap, topic_name, [(0, b"k", b"after garbage")])
    assert more[0].offset == len(acked)
    assert_exact(read_all(broker.bootstrap, topic_name, [0]), acked + more)
    stop_sigterm(broker)
    data = active_segment(broker, topic_name, 0).read_bytes()
    assert data.startswith(original)
    assert parse_batches(data)[-1].last_offset == len(acked)


def test_batch_with_bad_crc_after_sigkill_is_dropped(
        broker: BrokerProcess, topic_name: str) -> None:
    """After an unclean shutdown the tail is re-validated: a well-formed batch whose CRC does
    not match (a torn write inside the batch) is cut off with everything after it."""
    acked = _produce_batches(broker, topic_name, rounds=10)
    assert broker.kill() == -signal.SIGKILL
    segment = active_segment(broker, topic_name, 0)
    data = segment.read_bytes()
    last = parse_batches(data)[-1]
    fake = bytearray(data[last.position:last.position + last.size])
    struct.pack_into(">q", fake, 0, last.last_offset + 1)  # offsets move on: only the CRC is bad
    fake[-1] ^= 0xFF
    with open(segment, "ab") as f:
        f.write(fake)
        f.write(data[last.position:last.position + last.size])  # a valid batch after it

    broker.start()
    assert end_offsets(broker.bootstrap, topic_name, [0]) == {0: len(acked)}
    assert_exact(read_all(broker.bootstrap, topic_name, [0]), acked)
    more = produce(broker.bootstrap, topic_name, [(0, b"k", b"v")])
    assert more[0].offset == len(acked)


# -- lost indexes -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_deleted_indexes_are_rebuilt(broker: BrokerProcess, topic_name: str, how: str) -> None:
    # Several segments, each with many index entries (one per ~index.interval.bytes).
    create_topic(broker.bootstrap, topic_name, 1,
                 {"segment.bytes": "200000", "index.interval.bytes": "1024"})
    base_ts = int(time.time() * 1000) - 3_600_000
    n = 3000
    data = [(0, f"k{i}".encode(), f"v{i}-".encode() + b"q" * 100, base_ts + 10 * i)
            for i in range(n)]
    acked = produce(broker.bootstrap, topic_name, data, flush_every=100)
    assert [a.offset for a in acked] == list(range(n))
    logs = segment_files(broker, topic_name, 0, ".log")
    assert len(logs) >= 2, "expected several segments"

    def lookups() -> dict[int, int]:
        consumer = _consumer(broker.bootstrap)
        try:
            probes = [base_ts - 5, base_ts, base_ts + 10 * 777 - 3, base_ts + 10 * 1500,
                      base_ts + 10 * (n - 1), base_ts + 10 * n]
            # One partition per request: librdkafka merges duplicates of a partition.
            return {ts: consumer.offsets_for_times([TP(topic_name, 0, ts)],
                                                   timeout=OP_TIMEOUT)[0].offset
                    for ts in probes}
        finally:
            consumer.close()

    expected = lookups()
    assert expected[base_ts - 5] == 0 and expected[base_ts] == 0
    assert expected[base_ts + 10 * 777 - 3] == 777
    assert expected[base_ts + 10 * 1500] == 1500
    assert expected[base_ts + 10 * (n - 1)] == n - 1
    assert expected[base_ts + 10 * n] == -1  # past the last timestamp: no offset
    stop(broker, how)
    removed = []
    for suffix in (".index", ".timeindex"):
        for path in segment_files(broker, topic_name, 0, suffix):
            path.unlink()
            removed.append(path.name)
    assert len(removed) == 2 * len(logs)

    broker.start()
    assert lookups() == expected
    for suffix in (".index", ".timeindex"):
        assert len(segment_files(broker, topic_name, 0, suffix)) == len(logs)
    for start in (1, 777, 1500, 2999):
        got = read_all(broker.bootstrap, topic_name, [0], start={0: start})[0]
        assert got[0] == (start, f"k{start}".encode(), f"v{start}-".encode() + b"q" * 100)
        assert len(got) == n - start
    assert end_offsets(broker.bootstrap, topic_name, [0]) == {0: n}
