"""Issue #16's compaction acceptance test against a real broker (subprocess).

1,000 keys written 20 times each with headers, in batches of every codec from confluent-kafka
and kafka-python (idempotent producers, so the cleaner keeps each producer's last batch, often
empty), every 10th key finally deleted with a tombstone. Once the segment files show the
cleaner's work (one record per live key, tombstones gone after delete.retention.ms), both
clients read the topic back from offset 0: one record per live key, its newest value and
headers, in offset order, across the offset gaps and the empty batches.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as CkTopicPartition
from kafka import KafkaProducer
from kafka import TopicPartition as KpTopicPartition

from compat_tests import ck_helpers as ck
from compat_tests import kp_helpers as kp
from compat_tests.broker_process import BrokerProcess
from pykbroker.errors import DecodeError
from pykbroker.records import iter_batches, iter_records

KEYS = 1000
ROUNDS = 20
CODECS = ("gzip", "snappy", "lz4", "zstd", "none")

TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "segment.bytes": str(64 * 1024),
    "segment.ms": "1500",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "1500",
    "min.compaction.lag.ms": "0",
}

pytestmark = pytest.mark.broker_config(**{"log.cleaner.backoff.ms": "100"})


def key_of(k: int) -> bytes:
    return f"key-{k:04d}".encode()


def value_of(k: int, r: int) -> bytes:
    # Compressible but distinct per (key, round).
    return f"value-{k:04d}-round-{r:02d}-".encode() * 4


def headers_of(k: int, r: int) -> list[tuple[str, bytes]]:
    return [("round", str(r).encode()), ("key", str(k).encode())]


def scan_log(data_dir: Path, topic: str) -> tuple[int, int, int]:
    """(records, tombstones, empty batches) in the partition's segment files right now;
    a file the cleaner swaps away mid-read makes it retry."""
    while True:
        try:
            records = tombstones = empty = 0
            for path in sorted((data_dir / f"{topic}-0").glob("*.log")):
                data = path.read_bytes()
                for pos, header in iter_batches(data, validate=False, allow_partial=True):
                    if header.is_control:
                        continue
                    if header.records_count == 0:
                        empty += 1
                    for record in iter_records(data, pos):
                        records += 1
                        tombstones += record.value is None
            return records, tombstones, empty
        except (FileNotFoundError, DecodeError):
            time.sleep(0.05)


def produce_rounds(bootstrap: str, topic: str) -> None:
    """Round r of all keys by one of nine producers (5 confluent codecs, 4 kafka-python), one
    after the other so that offsets follow rounds; then the tombstones."""
    ck_producers = {c: Producer(ck.producer_conf(
        bootstrap, **{"compression.type": c, "enable.idempotence": True,
                      "batch.num.messages": 200})) for c in CODECS}
    kp_producers = {c: KafkaProducer(
        bootstrap_servers=bootstrap, compression_type=c, max_block_ms=10000,
        **kp.CLIENT_TIMEOUTS) for c in CODECS if c != "none"}
    try:
        writers: list[tuple[str, str]] = [("ck", c) for c in CODECS] + [
            ("kp", c) for c in CODECS if c != "none"]
        for r in range(ROUNDS):
            client, codec = writers[r % len(writers)]
            if client == "ck":
                ck.produce_all(ck_producers[codec], topic, (
                    {"key": key_of(k), "value": value_of(k, r), "headers": headers_of(k, r)}
                    for k in range(KEYS)))
            else:
                kp.send_all(kp_producers[codec], (
                    {"key": key_of(k), "value": value_of(k, r), "headers": headers_of(k, r)}
                    for k in range(KEYS)), topic)
        # The tombstones, from an idempotent confluent producer and from kafka-python.
        ck.produce_all(ck_producers["lz4"], topic, (
            {"key": key_of(k), "value": None} for k in range(0, KEYS, 20)))
        kp.send_all(kp_producers["zstd"], (
            {"key": key_of(k), "value": None} for k in range(10, KEYS, 20)), topic)
    finally:
        for p in ck_producers.values():
            p.flush(10)
        for q in kp_producers.values():
            q.close(timeout=10)


def expected() -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    return [(key_of(k), value_of(k, ROUNDS - 1), headers_of(k, ROUNDS - 1))
            for k in range(KEYS) if k % 10]


def wait_for(cond: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got[0]:
            return got[1]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {got[1]} after {timeout} s")
        time.sleep(0.2)


# (offset, key, value, headers) as a client returned them.
Row = tuple[Any, Any, Any, list[Any]]


def read_confluent(bootstrap: str, topic: str) -> list[Row]:
    out: list[Row] = []
    with ck.consumer(bootstrap, **{"enable.partition.eof": True}) as c:
        low, high = c.get_watermark_offsets(CkTopicPartition(topic, 0), timeout=10)
        assert low == 0
        c.assign([CkTopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 20
        done = False
        while not done:
            assert time.monotonic() < deadline, f"confluent read {len(out)} records"
            for m in c.consume(num_messages=500, timeout=1.0):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        done = (m.offset() or 0) >= high
                        continue
                    raise KafkaException(err)
                out.append((m.offset(), m.key(), m.value(), list(m.headers() or [])))
    return out


def read_kafka_python(bootstrap: str, topic: str) -> list[Row]:
    tp = KpTopicPartition(topic, 0)
    out: list[Row] = []
    with kp.consumer(bootstrap, check_crcs=True) as c:
        c.assign([tp])
        c.seek(tp, 0)
        high = c.end_offsets([tp])[tp]
        deadline = time.monotonic() + 20
        while c.position(tp) < high:
            assert time.monotonic() < deadline, f"kafka-python read {len(out)} records"
            for records in c.poll(timeout_ms=200).values():
                out.extend((m.offset, m.key, m.value, list(m.headers)) for m in records)
    return out


def check_read(name: str, got: list[Row]) -> None:
    offsets = [o for o, *_ in got]
    assert offsets == sorted(set(offsets)), f"{name}: offsets not increasing"
    assert [(k, v, h) for _, k, v, h in got] == expected(), name


@pytest.fixture
def topic(broker: BrokerProcess, topic_name: str) -> Iterator[str]:
    ck.create_topic(ck.admin(broker.bootstrap), topic_name, config=TOPIC_CONFIG)
    yield topic_name


def test_compacted_topic_read_back_by_both_clients(broker: BrokerProcess, topic: str) -> None:
    produce_rounds(broker.bootstrap, topic)
    live = KEYS - KEYS // 10

    # First the duplicates go (tombstones kept for delete.retention.ms after their cleaning),
    # then the tombstones: the files end with one record per live key.
    records, tombstones, empty = wait_for(
        lambda: ((s := scan_log(broker.data_dir, topic))[0] == live and s[1] == 0, s),
        40, "records, tombstones, empty batches in the log")
    assert (records, tombstones) == (live, 0)
    # The idempotent producers' last batches are kept even when emptied: the clients must
    # step over them (and over the offset gaps).
    assert empty > 0

    check_read("confluent-kafka", read_confluent(broker.bootstrap, topic))
    check_read("kafka-python", read_kafka_python(broker.bootstrap, topic))
