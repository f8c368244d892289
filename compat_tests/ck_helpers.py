"""Small confluent-kafka (librdkafka) helpers for the compat tests: clients with bounded
timeouts, produce-and-collect delivery reports, consume-n with assign() and explicit offsets."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

# librdkafka's log lines go to this logger (captured by pytest) instead of stderr, so that
# clients outliving their broker do not spam the output.
RDKAFKA_LOG = logging.getLogger("compat.rdkafka")

# Short socket/metadata timeouts so that a broken broker fails a test instead of hanging it.
COMMON: dict[str, Any] = {
    "socket.timeout.ms": 10000,
    "api.version.request.timeout.ms": 5000,
    "logger": RDKAFKA_LOG,
}


def producer_conf(bootstrap: str, **extra: Any) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, "message.timeout.ms": 20000,
            "linger.ms": 5, **COMMON, **extra}


def consumer_conf(bootstrap: str, **extra: Any) -> dict[str, Any]:
    # group.id is required by librdkafka even with assign(); no commits are relied on.
    return {"bootstrap.servers": bootstrap, "group.id": "ck-compat",
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # Verify the CRC-32C of every batch the broker returns (it may have rewritten them).
            "check.crcs": True, **COMMON, **extra}


@contextmanager
def producer(bootstrap: str, **extra: Any) -> Iterator[Producer]:
    p = Producer(producer_conf(bootstrap, **extra))
    try:
        yield p
    finally:
        p.flush(10)


@contextmanager
def consumer(bootstrap: str, **extra: Any) -> Iterator[Consumer]:
    c = Consumer(consumer_conf(bootstrap, **extra))
    try:
        yield c
    finally:
        c.close()


def admin(bootstrap: str, **extra: Any) -> AdminClient:
    # allow.auto.create.topics=false: the admin client's single-topic metadata requests (used to
    # look a topic up) must never create the topic (librdkafka's producer default is true).
    return AdminClient({"bootstrap.servers": bootstrap, "allow.auto.create.topics": False,
                        **COMMON, **extra})


@dataclass
class Delivery:
    err: KafkaError | None
    topic: str
    partition: int
    offset: int
    timestamp: tuple[int, int]
    key: bytes | None
    value: bytes | None


class Reports:
    """Delivery-report collector: pass ``reports.cb`` as ``on_delivery``."""

    def __init__(self) -> None:
        self.items: list[Delivery] = []

    def cb(self, err: KafkaError | None, msg: Message) -> None:
        self.items.append(Delivery(err, msg.topic(), msg.partition(), msg.offset(),
                                   msg.timestamp(), msg.key(), msg.value()))

    def errors(self) -> list[Delivery]:
        return [d for d in self.items if d.err is not None]


def flush_all(p: Producer, timeout: float = 30.0) -> None:
    remaining = p.flush(timeout)
    assert remaining == 0, f"{remaining} messages still in queue after {timeout} s"


def produce_all(p: Producer, topic: str, items: Iterable[dict[str, Any]],
                timeout: float = 30.0) -> Reports:
    """Produce each ``items`` entry (kwargs of Producer.produce), flush, and return the
    delivery reports (asserting none failed)."""
    reports = Reports()
    for kwargs in items:
        while True:
            try:
                p.produce(topic, on_delivery=reports.cb, **kwargs)
                break
            except BufferError:
                p.poll(0.05)
    flush_all(p, timeout)
    assert not reports.errors(), [d.err for d in reports.errors()][:5]
    return reports


def assign_from(c: Consumer, topic: str, partitions: Iterable[int], offset: int = 0) -> None:
    c.assign([TopicPartition(topic, p, offset) for p in partitions])


def consume_n(c: Consumer, n: int, timeout: float = 20.0, batch: int = 1000) -> list[Message]:
    """Poll until ``n`` messages arrived (errors fail the test; partition EOF is ignored)."""
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"got {len(out)} of {n} messages within {timeout} s")
        for m in c.consume(num_messages=min(batch, n - len(out)), timeout=min(left, 1.0)):
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(err)
            out.append(m)
    return out


def consume_none(c: Consumer, duration: float) -> None:
    """Poll for ``duration`` seconds and assert nothing (but EOF) arrives."""
    deadline = time.monotonic() + duration
    while (left := deadline - time.monotonic()) > 0:
        m = c.poll(min(left, 0.2))
        if m is None:
            continue
        err = m.error()
        if err is not None and err.code() == KafkaError._PARTITION_EOF:
            continue
        raise AssertionError(f"unexpected message/error {err or (m.offset(), m.value())}")


def create_topic(a: AdminClient, name: str, partitions: int = 1,
                 config: dict[str, str] | None = None, timeout: float = 15.0) -> None:
    fs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                   config=dict(config or {}))], operation_timeout=10,
                         request_timeout=timeout)
    fs[name].result(timeout)


def topic_partitions(a: AdminClient, name: str) -> int | None:
    """Partition count of ``name`` from a single-topic Metadata request; None if unknown."""
    md = a.list_topics(name, timeout=5)
    t = md.topics.get(name)
    if t is None or t.error is not None:
        return None
    return len(t.partitions)


def wait_topic(a: AdminClient, name: str, partitions: int, timeout: float = 10.0) -> None:
    """Wait until metadata shows ``name`` with ``partitions`` partitions."""
    deadline = time.monotonic() + timeout
    while (got := topic_partitions(a, name)) != partitions:
        if time.monotonic() > deadline:
            raise AssertionError(f"topic {name}: {got} partitions, expected {partitions}")
        time.sleep(0.1)


def result_error_code(fut: Any, timeout: float = 15.0) -> int | None:
    """Run a future; None on success, else the KafkaError code it raised."""
    try:
        fut.result(timeout)
    except KafkaException as exc:
        return int(exc.args[0].code())
    return None
