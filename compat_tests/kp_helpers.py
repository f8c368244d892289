"""Small kafka-python helpers for the compat tests: clients with bounded timeouts (closed on
exit), topic creation that waits for metadata, and consume-n with assign() + seek()."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

# Bounded timeouts so that a broken broker fails a test instead of hanging it.
CLIENT_TIMEOUTS: dict[str, Any] = {"request_timeout_ms": 10000, "bootstrap_timeout_ms": 10000}


@contextmanager
def admin_client(bootstrap: str, **extra: Any) -> Iterator[KafkaAdminClient]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **{**CLIENT_TIMEOUTS, **extra})
    try:
        yield admin
    finally:
        admin.close()


@contextmanager
def producer(bootstrap: str, **extra: Any) -> Iterator[KafkaProducer]:
    conf: dict[str, Any] = {"bootstrap_servers": bootstrap, "max_block_ms": 10000,
                            "delivery_timeout_ms": 30000, **CLIENT_TIMEOUTS, **extra}
    p = KafkaProducer(**conf)
    try:
        yield p
    finally:
        p.close(timeout=10)


@contextmanager
def consumer(bootstrap: str, **extra: Any) -> Iterator[KafkaConsumer]:
    conf: dict[str, Any] = {"bootstrap_servers": bootstrap, "group_id": None,
                            "enable_auto_commit": False, "auto_offset_reset": "earliest",
                            "consumer_timeout_ms": 5000, "fetch_max_wait_ms": 100,
                            **CLIENT_TIMEOUTS, **extra}
    c = KafkaConsumer(**conf)
    try:
        yield c
    finally:
        c.close()


def create_topic(admin: KafkaAdminClient, name: str, partitions: int = 1,
                 configs: Mapping[str, str] | None = None) -> None:
    spec: dict[str, Any] = {"num_partitions": partitions, "replication_factor": 1}
    if configs:
        spec["configs"] = dict(configs)
    admin.create_topics({name: spec}, wait_for_metadata=True)


def send_all(p: KafkaProducer, sends: Iterable[Mapping[str, Any]], topic: str,
             timeout: float = 20.0) -> list[Any]:
    """Send each ``dict(value=..., key=..., ...)`` to ``topic``, flush, return the metadata."""
    futures = [p.send(topic, **s) for s in sends]
    p.flush(timeout=timeout)
    return [f.get(timeout=timeout) for f in futures]


def consume_n(c: KafkaConsumer, starts: Mapping[TopicPartition, int], n: int,
              timeout: float = 20.0, max_records: int | None = None) -> list[Any]:
    """assign() the partitions, seek() each to its start offset, poll until ``n`` records
    arrived (or the deadline passes) and return them in arrival order."""
    c.assign(list(starts))
    for tp, offset in starts.items():
        c.seek(tp, offset)
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        batches = c.poll(timeout_ms=200, max_records=max_records)
        for tp in sorted(batches, key=lambda t: (t.topic, t.partition)):
            out.extend(batches[tp])
    return out


def send_raw(admin: KafkaAdminClient, request: Any, node_id: int | None = None) -> Any:
    """Send one protocol request (a ``kafka.protocol`` message) through the admin client's
    connection and return the decoded response: for checks kafka-python's high-level API
    hides (error messages, first-response codes)."""
    manager = admin._manager  # noqa: SLF001 - kafka-python exposes no public raw-send API

    async def go() -> Any:
        return await manager.send(request, node_id=node_id)

    return manager.run(go)


def raw_exchange(host: str, port: int, requests: list[Any],
                 timeout: float = 5.0) -> tuple[list[tuple[int, Any]], bool]:
    """Send ``requests`` (kafka-python protocol messages, versions set) pipelined on a fresh
    connection, read until every request that expects a response got one or the broker
    closes the connection. Returns ([(correlation_id, response)], closed_by_broker)."""
    import socket

    from kafka.protocol.parser import KafkaProtocol

    proto = KafkaProtocol(client_id="kp-raw")
    expected = 0
    for req in requests:
        proto.send_request(req)
        expected += 1 if req.expect_response() else 0
    got: list[tuple[int, Any]] = []
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(proto.send_bytes())
        while len(got) < expected:
            data = sock.recv(1 << 16)
            if not data:
                return got, True
            got.extend(proto.receive_bytes(data))
    return got, False


def record_batch(*values: bytes, timestamp_ms: int | None = None) -> bytes:
    """A magic-2 record batch (no producer id, no compression) holding ``values``."""
    from kafka.record.default_records import DefaultRecordBatchBuilder

    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 20)
    for offset, value in enumerate(values):
        builder.append(offset, timestamp=ts, key=None, value=value, headers=[])
    return bytes(builder.build())
