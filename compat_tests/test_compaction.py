"""Issue #16's compaction acceptance test against a real broker (subprocess).

1,000 keys written 20 times each with headers, in batches of every codec from confluent-kafka
and kafka-python (idempotent producers, so the cleaner keeps each producer's last batch, often
empty), every 10th key finally deleted with a tombstone. Once the segment files show the
cleaner's work (one record per live key, tombstones gone after delete.retention.ms), both
clients read the topic back from offset 0: one record per live key, its newest value and
headers, in offset order, across the offset gaps and the empty batches.
"""

from __future__ import annotations

import threading
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
from pykbroker.log.cleaner_swap import PAUSE_ENV, PAUSE_POINTS
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


# -- SIGKILL during cleaning -----------------------------------------------------------------

KILL_KEYS = 300


class KeyedWriter:
    """An idempotent acks=all confluent producer writing rounds of ``KILL_KEYS`` keys in a
    thread until stopped; ``acked`` maps each acknowledged offset to its (key, value)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.producer = Producer(ck.producer_conf(
            bootstrap, **{"acks": "all", "enable.idempotence": True,
                          "message.timeout.ms": 5000, "compression.type": "lz4"}))
        self.acked: dict[int, tuple[bytes, bytes]] = {}
        self.sent: dict[bytes, set[bytes]] = {}
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            self.acked[msg.offset()] = (msg.key(), msg.value())

    def _run(self) -> None:
        r = 0
        while not self._stop.is_set():
            for k in range(KILL_KEYS):
                key, value = key_of(k), value_of(k, r) + b"x" * (k % 7)
                self.sent.setdefault(key, set()).add(value)
                while not self._stop.is_set():
                    try:
                        self.producer.produce(self.topic, value, key,
                                              on_delivery=self._on_delivery)
                        break
                    except BufferError:
                        self.producer.poll(0.05)
            self.producer.poll(0.05)
            r += 1
            self.rounds = r

    def start(self) -> KeyedWriter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.producer.purge()
        self.producer.flush(2)


_EXPECTED_FILES = {  # suffixes some file of the partition has when the broker is killed
    "after-cleaned": (".log.cleaned",),
    "mid-commit-swap": (".index.swap", ".log.cleaned"),
    "after-commit-swap": (".log.swap",),
    "mid-retire": (".log.swap", ".log.deleted"),
    "after-retire": (".log.swap", ".log.deleted"),
    "mid-install": (".log.swap", ".index"),
    "after-install": (".log.deleted",),
}


def check_after_crash(writer: KeyedWriter, got: list[Row]) -> None:
    """No record lost or duplicated: offsets unique and increasing, each record one that was
    sent (the acknowledged one at an acknowledged offset), each key's newest acknowledged
    record still there unless a newer record of the key is."""
    offsets = [o for o, *_ in got]
    assert offsets == sorted(set(offsets)), "offsets duplicated or out of order"
    pairs = [(k, v) for _, k, v, _ in got]
    assert len(pairs) == len(set(pairs)), "a record read twice"
    newest: dict[bytes, int] = {}
    for offset, (key, _) in writer.acked.items():
        newest[key] = max(newest.get(key, -1), offset)
    read_at = {o: (k, v) for o, k, v, _ in got}
    last_read: dict[bytes, int] = {}
    for offset, key, value, _ in got:
        assert value in writer.sent.get(key, ()), (offset, key, value)
        if offset in writer.acked:
            assert writer.acked[offset] == (key, value), offset
        last_read[key] = offset
    for key, offset in newest.items():
        assert read_at.get(offset) == writer.acked[offset] or last_read.get(key, -1) > offset, (
            f"{key!r}: acknowledged record at {offset} lost")


@pytest.mark.parametrize("point", PAUSE_POINTS)
def test_sigkill_during_cleaning_recovers(tmp_path: Path, topic_name: str, point: str) -> None:
    proc = BrokerProcess(tmp_path / "data", {"log.cleaner.backoff.ms": "50"},
                         env={PAUSE_ENV: point})
    proc.start()
    try:
        ck.create_topic(ck.admin(proc.bootstrap), topic_name, config={
            "cleanup.policy": "compact", "segment.bytes": str(16 * 1024),
            "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0",
            "segment.ms": "1000"})  # the quiet log rolls, so all of it gets cleaned
        writer = KeyedWriter(proc.bootstrap, topic_name).start()
        mark = f"cleaner test pause at {point}"
        try:
            wait_for(lambda: (mark in proc.log(), writer.rounds), 30,
                     f"{point} not reached; rounds written")
            time.sleep(0.2)  # the process is frozen: nothing changes any more
            proc.kill()
        finally:
            writer.stop()
        part = proc.data_dir / f"{topic_name}-0"
        names = sorted(p.name for p in part.iterdir())
        for suffix in _EXPECTED_FILES[point]:
            assert any(n.endswith(suffix) for n in names), (point, suffix, names)
        assert writer.acked, "nothing acknowledged before the kill"

        proc.env = {}
        proc.start()
        check_after_crash(writer, read_confluent(proc.bootstrap, topic_name))
        # The cleaner finishes the job after the restart: one record per key, no leftovers.
        wait_for(lambda: ((s := scan_log(proc.data_dir, topic_name))[0] == KILL_KEYS, s),
                 20, "records after the restart's cleaning")
        got = read_confluent(proc.bootstrap, topic_name)
        check_after_crash(writer, got)
        assert len(got) == KILL_KEYS
        names = sorted(p.name for p in part.iterdir())
        assert not [n for n in names if n.endswith((".cleaned", ".swap", ".deleted"))], names
    finally:
        proc.close()
