"""confluent-kafka (librdkafka) against a real pykbroker subprocess.

Producer, Consumer with assign() and explicit offsets (no group rebalancing: a group.id is
set because librdkafka requires one, auto commit is off and no commit is relied on), and
AdminClient. Each test gets its own broker and fresh topic names.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from confluent_kafka import (
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    KafkaError,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from compat_tests.broker_process import BrokerProcess
from compat_tests.ck_helpers import (
    Reports,
    admin,
    assign_from,
    consume_n,
    consume_none,
    consumer,
    create_topic,
    flush_all,
    produce_all,
    producer,
    result_error_code,
    topic_partitions,
    wait_topic,
)

pytestmark = pytest.mark.timeout(120)

NODE_ID = 1


def now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------- produce / fetch


def test_keys_headers_nulls_timestamps_partitions(broker: BrokerProcess, topic_name: str) -> None:
    a = admin(broker.bootstrap)
    create_topic(a, topic_name, partitions=3)
    base = now_ms() - 60_000
    headers = [("h", b"1"), ("h", b"2"), ("none", None), ("empty", b""), ("\u00e9t\u00e9", "s")]
    expected_headers = [("h", b"1"), ("h", b"2"), ("none", None), ("empty", b""),
                        ("\u00e9t\u00e9", b"s")]
    items = []
    for i in range(30):
        item = {"partition": i % 3, "key": f"k{i}".encode(), "value": f"v{i}".encode(),
                "timestamp": base + i, "headers": headers}
        if i % 5 == 0:
            item["value"] = None          # tombstone
        if i % 7 == 0:
            item["key"] = None
        if i % 4 == 0:
            del item["headers"]
        items.append(item)
    with producer(broker.bootstrap) as p:
        reports = produce_all(p, topic_name, items)
    # Delivery reports: per-partition offsets 0.. in produce order, create-time timestamps.
    for part in range(3):
        offsets = [d.offset for d in reports.items if d.partition == part]
        assert offsets == list(range(10))
    by_pos = {(d.partition, d.offset): d for d in reports.items}
    assert all(d.timestamp == (TIMESTAMP_CREATE_TIME, d.timestamp[1]) for d in reports.items)

    with consumer(broker.bootstrap) as c:
        assign_from(c, topic_name, range(3), 0)
        msgs = consume_n(c, 30)
        consume_none(c, 0.5)
    got = {(m.partition(), m.offset()): m for m in msgs}
    assert len(got) == 30
    for i, item in enumerate(items):
        part, off = i % 3, i // 3
        m = got[(part, off)]
        assert by_pos[(part, off)].value == item["value"]
        assert m.topic() == topic_name
        assert m.key() == item["key"]
        assert m.value() == item["value"]
        assert m.timestamp() == (TIMESTAMP_CREATE_TIME, base + i)
        if "headers" in item:
            assert m.headers() == expected_headers
        else:
            assert not m.headers()  # None (librdkafka) for a record without headers
    # Messages come out of each partition in offset order.
    for part in range(3):
        offs = [m.offset() for m in msgs if m.partition() == part]
        assert offs == list(range(10))


def test_key_partitioner_is_stable(broker: BrokerProcess, topic_name: str) -> None:
    """Keyed messages without an explicit partition land where the delivery report says."""
    a = admin(broker.bootstrap)
    create_topic(a, topic_name, partitions=4)
    items = [{"key": f"key-{i % 8}".encode(), "value": str(i).encode()} for i in range(80)]
    with producer(broker.bootstrap) as p:
        reports = produce_all(p, topic_name, items)
    part_of_key: dict[bytes | None, set[int]] = {}
    for d in reports.items:
        part_of_key.setdefault(d.key, set()).add(d.partition)
    assert all(len(v) == 1 for v in part_of_key.values())
    with consumer(broker.bootstrap) as c:
        assign_from(c, topic_name, range(4), 0)
        msgs = consume_n(c, 80)
    assert sorted((m.partition(), m.offset()) for m in msgs) == \
        sorted((d.partition, d.offset) for d in reports.items)
    for m in msgs:
        assert {m.partition()} == part_of_key[m.key()]


@pytest.mark.parametrize("codec", ["none", "gzip", "zstd"])
def test_log_append_time_topic(broker: BrokerProcess, topic_name: str, codec: str) -> None:
    a = admin(broker.bootstrap)
    create_topic(a, topic_name, config={"message.timestamp.type": "LogAppendTime"})
    before = now_ms()
    with producer(broker.bootstrap, **{"compression.type": codec}) as p:
        reports = produce_all(p, topic_name, [{"value": b"x", "timestamp": 1_000_000}] * 3)
    after = now_ms()
    for d in reports.items:
        kind, ts = d.timestamp
        assert kind == TIMESTAMP_LOG_APPEND_TIME
        assert before - 1000 <= ts <= after + 1000
    with consumer(broker.bootstrap) as c:
        assign_from(c, topic_name, [0], 0)
        msgs = consume_n(c, 3)
    for m in msgs:
        kind, ts = m.timestamp()
        assert kind == TIMESTAMP_LOG_APPEND_TIME
        assert before - 1000 <= ts <= after + 1000


def _codec_payloads() -> list[dict[str, object]]:
    rnd = os.urandom(5000)
    text = ("the quick brown fox jumps over the lazy dog " * 300).encode()
    base = now_ms() - 10_000
    out: list[dict[str, object]] = []
    for i in range(200):
        value: bytes | None
        if i % 10 == 0:
            value = None
        elif i % 10 == 1:
            value = b""
        elif i % 10 == 2:
            value = rnd[i:]
        elif i % 10 == 3:
            value = text[: 100 * i]
        else:
            value = f"msg-{i}-\u2603".encode()
        item: dict[str, object] = {"key": f"k{i}".encode() if i % 3 else None, "value": value,
                                   "timestamp": base + i}
        if i % 2:
            item["headers"] = [("n", str(i).encode()), ("n", None), ("z", b"")]
        out.append(item)
    return out


def _check_roundtrip(msgs: list, items: list[dict[str, object]], first: int = 0) -> None:  # type: ignore[type-arg]
    assert [m.offset() for m in msgs] == list(range(first, len(items)))
    for m, item in zip(msgs, items[first:], strict=True):
        assert m.key() == item["key"]
        assert m.value() == item["value"], m.offset()
        assert m.timestamp() == (TIMESTAMP_CREATE_TIME, item["timestamp"])
        if "headers" in item:
            assert m.headers() == item["headers"]
        else:
            assert not m.headers()


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_compression_roundtrip(broker: BrokerProcess, topic_name: str, codec: str) -> None:
    a = admin(broker.bootstrap)
    create_topic(a, topic_name)
    items = _codec_payloads()
    with producer(broker.bootstrap, **{"compression.type": codec, "linger.ms": 50}) as p:
        reports = produce_all(p, topic_name, items)
    assert [d.offset for d in reports.items] == list(range(len(items)))
    with consumer(broker.bootstrap) as c:
        assign_from(c, topic_name, [0], 0)
        _check_roundtrip(consume_n(c, len(items)), items)
    # Starting in the middle of a (compressed) batch yields exactly the records from there on.
    with consumer(broker.bootstrap) as c:
        assign_from(c, topic_name, [0], 77)
        _check_roundtrip(consume_n(c, len(items) - 77), items, first=77)


@pytest.mark.parametrize("topic_codec,producer_codec", [("zstd", "gzip"), ("uncompressed", "lz4"),
                                                        ("snappy", "none")])
def test_topic_compression_type_recompresses(broker: BrokerProcess, topic_name: str,
                                             topic_codec: str, producer_codec: str) -> None:
    a = admin(broker.bootstrap)
    create_topic(a, topic_name, config={"compression.type": topic_codec})
    items = _codec_payloads()
    with producer(broker.bootstrap, **{"compression.type": producer_codec, "linger.ms": 50}) as p:
        produce_all(p, topic_name, items)
    with consumer(broker.bootstrap) as c:
        assign_from(c, topic_name, [0], 0)
        _check_roundtrip(consume_n(c, len(items)), items)


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks(broker: BrokerProcess, topic_name: str, acks: str) -> None:
    a = admin(broker.bootstrap)
    create_topic(a, topic_name, partitions=2)
    items = [{"partition": i % 2, "value": f"a{i}".encode()} for i in range(200)]
    with producer(broker.bootstrap, acks=acks) as p:
        reports = produce_all(p, topic_name, items)
    assert len(reports.items) == 200
    if acks != "0":
        for part in range(2):
            assert [d.offset for d in reports.items if d.partition == part] == list(range(100))
    with consumer(broker.bootstrap) as c:
        assign_from(c, topic_name, range(2), 0)
        msgs = consume_n(c, 200)
    for part in range(2):
        pm = [m for m in msgs if m.partition() == part]
        assert [m.offset() for m in pm] == list(range(100))
        assert [m.value() for m in pm] == [f"a{i}".encode() for i in range(part, 200, 2)]
    lo, hi = c_watermarks(broker, topic_name, 0)
    assert (lo, hi) == (0, 100)


def c_watermarks(broker: BrokerProcess, topic: str, partition: int) -> tuple[int, int]:
    with consumer(broker.bootstrap) as c:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    return lo, hi


# --------------------------------------------------------------------------- sizes / volume

MIB = 1024 * 1024


def test_one_mib_messages(broker: BrokerProcess, topic_name: str) -> None:
    a = admin(broker.bootstrap)
    create_topic(a, topic_name, config={"max.message.bytes": str(2 * MIB)})
    values = [os.urandom(MIB) for _ in range(3)]
    conf = {"message.max.bytes": 2 * MIB, "batch.size": MIB + 4096, "compression.type": "none"}
    with producer(broker.bootstrap, **conf) as p:
        reports = produce_all(p, topic_name, [{"key": b"k", "value": v} for v in values])
    assert [d.offset for d in reports.items] == [0, 1, 2]
    # Default max.partition.fetch.bytes (1 MiB) is smaller than one batch: the broker must still
    # return the first batch whole (KIP-74).
    with consumer(broker.bootstrap) as c:
        assign_from(c, topic_name, [0], 0)
        msgs = consume_n(c, 3, timeout=30)
    assert [m.value() for m in msgs] == values
    assert [m.offset() for m in msgs] == [0, 1, 2]


@pytest.mark.parametrize("where", [
    "topic",
    pytest.param("broker", marks=pytest.mark.broker_config(**{"message.max.bytes": "10000"})),
])
def test_message_too_large_rejected_by_broker(broker: BrokerProcess, topic_name: str,
                                              where: str) -> None:
    a = admin(broker.bootstrap)
    create_topic(a, topic_name, config={"max.message.bytes": "10000"} if where == "topic" else {})
    # The client allows 1 MB so that the BROKER has to reject the 20 kB record batch.
    conf = {"message.max.bytes": 1_000_000, "compression.type": "none", "retries": 0}
    reports = Reports()
    with producer(broker.bootstrap, **conf) as p:
        p.produce(topic_name, os.urandom(20_000), on_delivery=reports.cb)
        flush_all(p)
        assert len(reports.items) == 1
        err = reports.items[0].err
        assert err is not None
        assert err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
        # A small record still goes through afterwards, at offset 0.
        ok = produce_all(p, topic_name, [{"value": b"small"}])
    assert ok.items[0].offset == 0
    assert c_watermarks(broker, topic_name, 0) == (0, 1)


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_size_limit_applies_to_compressed_batch(broker: BrokerProcess, topic_name: str,
                                                codec: str) -> None:
    """max.message.bytes bounds the record batch as sent (compressed), not the records'
    uncompressed size: 50 kB of compressible data fits a 10 kB limit."""
    a = admin(broker.bootstrap)
    create_topic(a, topic_name, config={"max.message.bytes": "10000"})
    value = b"a" * 50_000
    with producer(broker.bootstrap, **{"compression.type": codec, "retries": 0}) as p:
        reports = produce_all(p, topic_name, [{"value": value}])
    assert reports.items[0].offset == 0
    with consumer(broker.bootstrap) as c:
        assign_from(c, topic_name, [0], 0)
        assert consume_n(c, 1)[0].value() == value


def test_100k_small_messages_in_order(broker: BrokerProcess, topic_name: str) -> None:
    n = 100_000
    a = admin(broker.bootstrap)
    create_topic(a, topic_name)
    start = time.monotonic()
    reports = Reports()
    conf = {"linger.ms": 20, "batch.num.messages": 10000, "queue.buffering.max.messages": 200000,
            "compression.type": "lz4"}
    with producer(broker.bootstrap, **conf) as p:
        for i in range(n):
            while True:
                try:
                    p.produce(topic_name, b"m%d" % i, key=b"%d" % (i % 10),
                              on_delivery=reports.cb)
                    break
                except BufferError:
                    p.poll(0.05)
        flush_all(p, 60)
    assert not reports.errors()
    assert [d.offset for d in reports.items] == list(range(n))
    with consumer(broker.bootstrap) as c:
        assign_from(c, topic_name, [0], 0)
        msgs = consume_n(c, n, timeout=60, batch=10000)
        offsets = [m.offset() for m in msgs]
        values = [m.value() for m in msgs]
    assert offsets == list(range(n))
    assert values == [b"m%d" % i for i in range(n)]
    assert time.monotonic() - start < 45


# --------------------------------------------------------------------------- offsets


def test_offsets_for_times_and_watermarks(broker: BrokerProcess, topic_name: str) -> None:
    a = admin(broker.bootstrap)
    create_topic(a, topic_name, partitions=2)
    base = now_ms() - 60_000
    # Offset 6 carries the largest timestamp (timestamps are not monotonic).
    deltas = [0, 1000, 2000, 3000, 4000, 5000, 9500, 6000, 7000, 8000]
    with producer(broker.bootstrap, **{"linger.ms": 200}) as p:
        # Partition 0: one batch with all ten records.
        produce_all(p, topic_name, [{"partition": 0, "value": b"%d" % i, "timestamp": base + d}
                                    for i, d in enumerate(deltas)])
        # Partition 1: one batch per record.
        for i, d in enumerate(deltas):
            produce_all(p, topic_name, [{"partition": 1, "value": b"%d" % i,
                                         "timestamp": base + d}])
    queries = {-5000: 0, 0: 0, 1: 1, 3000: 3, 3500: 4, 5001: 6, 6000: 6, 8000: 6, 9000: 6,
               9500: 6, 9501: -1}
    with consumer(broker.bootstrap) as c:
        for q, want in queries.items():
            # Both partitions in one request (librdkafka keeps one entry per partition).
            tps = [TopicPartition(topic_name, part, base + q) for part in range(2)]
            res = c.offsets_for_times(tps, timeout=10)
            assert [r.error for r in res] == [None, None]
            assert [(r.partition, r.offset) for r in res] == [(0, want), (1, want)], q
        for part in range(2):
            assert c.get_watermark_offsets(TopicPartition(topic_name, part), timeout=10) == (0, 10)
        # Seek by time and consume from there.
        (tp,) = c.offsets_for_times([TopicPartition(topic_name, 0, base + 3500)], timeout=10)
        c.assign([tp])
        msgs = consume_n(c, 6)
        assert [m.offset() for m in msgs] == list(range(4, 10))
        assert msgs[0].timestamp() == (TIMESTAMP_CREATE_TIME, base + 4000)
        # Cached watermarks after a fetch agree too.
        lo, hi = c.get_watermark_offsets(TopicPartition(topic_name, 0), cached=True)
        assert hi == 10

    # AdminClient.list_offsets: earliest, latest, max timestamp (ListOffsets v7+), by time.
    for part in range(2):
        tp = TopicPartition(topic_name, part)
        specs = {"earliest": OffsetSpec.earliest(), "latest": OffsetSpec.latest(),
                 "max": OffsetSpec.max_timestamp(), "t": OffsetSpec.for_timestamp(base + 3500)}
        got = {}
        for name, spec in specs.items():
            fut = a.list_offsets({tp: spec}, request_timeout=10)[tp]
            got[name] = fut.result(10)
        assert got["earliest"].offset == 0
        assert got["latest"].offset == 10
        assert got["max"].offset == 6, part
        assert got["max"].timestamp == base + 9500
        assert got["t"].offset == 4
        assert got["t"].timestamp == base + 4000


def test_fetch_out_of_range_resets(broker: BrokerProcess, topic_name: str) -> None:
    """An offset beyond the log end is OFFSET_OUT_OF_RANGE; auto.offset.reset applies."""
    a = admin(broker.bootstrap)
    create_topic(a, topic_name)
    with producer(broker.bootstrap) as p:
        produce_all(p, topic_name, [{"value": b"%d" % i} for i in range(5)])
    with consumer(broker.bootstrap, **{"auto.offset.reset": "earliest"}) as c:
        assign_from(c, topic_name, [0], 50)
        msgs = consume_n(c, 5)
    assert [m.offset() for m in msgs] == list(range(5))
    with consumer(broker.bootstrap, **{"auto.offset.reset": "error"}) as c:
        assign_from(c, topic_name, [0], 50)
        deadline = time.monotonic() + 15
        err = None
        while err is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is not None:
                err = m.error()
    assert err is not None
    assert err.code() == KafkaError._AUTO_OFFSET_RESET, err
    assert "out of range" in err.str().lower(), err.str()


# --------------------------------------------------------------------------- admin: topics


def test_create_topics_validate_only_and_configs(broker: BrokerProcess, topic_name: str) -> None:
    a = admin(broker.bootstrap)
    dry = f"{topic_name}-dry"
    fs = a.create_topics([NewTopic(dry, 4, 1)], validate_only=True, request_timeout=10)
    assert result_error_code(fs[dry]) is None
    assert topic_partitions(a, dry) is None

    create_topic(a, topic_name, partitions=2,
                 config={"retention.ms": "12345", "cleanup.policy": "compact"})
    wait_topic(a, topic_name, 2)
    res = ConfigResource(ResourceType.TOPIC, topic_name)
    entries = a.describe_configs([res], request_timeout=10)[res].result(10)
    assert entries["retention.ms"].value == "12345"
    assert entries["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert not entries["retention.ms"].is_default
    assert entries["cleanup.policy"].value == "compact"
    assert entries["cleanup.policy"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    # validate_only for an existing name still reports TOPIC_ALREADY_EXISTS.
    fs = a.create_topics([NewTopic(topic_name, 1, 1)], validate_only=True, request_timeout=10)
    assert result_error_code(fs[topic_name]) == KafkaError.TOPIC_ALREADY_EXISTS


@pytest.mark.broker_config(**{"num.partitions": "3"})
def test_create_topics_defaults_from_broker(broker: BrokerProcess, topic_name: str) -> None:
    a = admin(broker.bootstrap)
    fs = a.create_topics([NewTopic(topic_name)], request_timeout=10)  # -1 / -1: broker defaults
    assert result_error_code(fs[topic_name]) is None
    wait_topic(a, topic_name, 3)
    t = a.list_topics(topic_name, timeout=5).topics[topic_name]
    assert all(p.replicas == [NODE_ID] for p in t.partitions.values())


def test_create_topics_errors(broker: BrokerProcess, topic_name: str) -> None:
    a = admin(broker.bootstrap)
    create_topic(a, topic_name)
    cases = {
        topic_name: (NewTopic(topic_name, 1, 1), KafkaError.TOPIC_ALREADY_EXISTS),
        "bad/name": (NewTopic("bad/name", 1, 1), KafkaError.TOPIC_EXCEPTION),
        "..": (NewTopic("..", 1, 1), KafkaError.TOPIC_EXCEPTION),
        "x" * 250: (NewTopic("x" * 250, 1, 1), KafkaError.TOPIC_EXCEPTION),
        f"{topic_name}-rf3": (NewTopic(f"{topic_name}-rf3", 1, 3),
                              KafkaError.INVALID_REPLICATION_FACTOR),
        f"{topic_name}-p0": (NewTopic(f"{topic_name}-p0", 0, 1), KafkaError.INVALID_PARTITIONS),
        f"{topic_name}-badcfg": (NewTopic(f"{topic_name}-badcfg", 1, 1,
                                          config={"retention.ms": "soon"}),
                                 KafkaError.INVALID_CONFIG),
        f"{topic_name}-unknowncfg": (NewTopic(f"{topic_name}-unknowncfg", 1, 1,
                                              config={"no.such.config": "1"}),
                                     KafkaError.INVALID_CONFIG),
        f"{topic_name}-ok": (NewTopic(f"{topic_name}-ok", 2, 1), None),
    }
    fs = a.create_topics([nt for nt, _ in cases.values()], request_timeout=15)
    got = {name: result_error_code(fut) for name, fut in fs.items()}
    assert got == {name: code for name, (_, code) in cases.items()}
    assert topic_partitions(a, f"{topic_name}-ok") == 2
    for name, (_, code) in cases.items():
        if code in (KafkaError.INVALID_REPLICATION_FACTOR, KafkaError.INVALID_PARTITIONS,
                    KafkaError.INVALID_CONFIG):
            assert topic_partitions(a, name) is None, name


def test_delete_topics(broker: BrokerProcess, topic_name: str) -> None:
    a = admin(broker.bootstrap)
    create_topic(a, topic_name, partitions=2)
    with producer(broker.bootstrap) as p:
        produce_all(p, topic_name, [{"partition": 1, "value": b"x"}] * 5)
    fs = a.delete_topics([topic_name, f"{topic_name}-missing"], operation_timeout=10,
                         request_timeout=10)
    assert result_error_code(fs[topic_name]) is None
    assert result_error_code(fs[f"{topic_name}-missing"]) == KafkaError.UNKNOWN_TOPIC_OR_PART
    deadline = time.monotonic() + 10
    while topic_partitions(a, topic_name) is not None:
        assert time.monotonic() < deadline, "deleted topic still listed"
        time.sleep(0.1)
    # Re-created under the same name it is empty.
    create_topic(a, topic_name, partitions=2)
    wait_topic(a, topic_name, 2)
    assert c_watermarks(broker, topic_name, 1) == (0, 0)


def test_create_partitions_then_produce(broker: BrokerProcess, topic_name: str) -> None:
    a = admin(broker.bootstrap)
    create_topic(a, topic_name, partitions=1)
    fs = a.create_partitions([NewPartitions(topic_name, 5)], validate_only=True,
                             request_timeout=10)
    assert result_error_code(fs[topic_name]) is None
    wait_topic(a, topic_name, 1)
    fs = a.create_partitions([NewPartitions(topic_name, 3)], request_timeout=10)
    assert result_error_code(fs[topic_name]) is None
    wait_topic(a, topic_name, 3)
    md = a.list_topics(topic_name, timeout=5).topics[topic_name]
    assert sorted(md.partitions) == [0, 1, 2]
    assert md.partitions[2].leader == NODE_ID

    for count, code in [(2, KafkaError.INVALID_PARTITIONS), (3, KafkaError.INVALID_PARTITIONS)]:
        fs = a.create_partitions([NewPartitions(topic_name, count)], request_timeout=10)
        assert result_error_code(fs[topic_name]) == code
    missing = f"{topic_name}-missing"
    fs = a.create_partitions([NewPartitions(missing, 2)], request_timeout=10)
    assert result_error_code(fs[missing]) == KafkaError.UNKNOWN_TOPIC_OR_PART

    with producer(broker.bootstrap) as p:
        reports = produce_all(p, topic_name, [{"partition": 2, "value": b"new"}] * 3)
    assert [(d.partition, d.offset) for d in reports.items] == [(2, 0), (2, 1), (2, 2)]
    with consumer(broker.bootstrap) as c:
        assign_from(c, topic_name, [2], 0)
        msgs = consume_n(c, 3)
    assert [m.value() for m in msgs] == [b"new"] * 3


# --------------------------------------------------------------------------- admin: configs


def _describe(a, resource: ConfigResource) -> dict[str, ConfigEntry]:  # type: ignore[no-untyped-def]
    return a.describe_configs([resource], request_timeout=10)[resource].result(10)


def _synonyms(entry: ConfigEntry) -> list[tuple[str, str | None, int]]:
    return [(s.name, s.value, s.source) for s in entry.synonyms.values()]


@pytest.mark.broker_config(**{"log.retention.hours": "100", "log.segment.bytes": "20000000"})
def test_describe_configs_topic_and_broker(broker: BrokerProcess, topic_name: str) -> None:
    a = admin(broker.bootstrap)
    create_topic(a, topic_name, config={"segment.ms": "3600000"})
    topic = _describe(a, ConfigResource(ResourceType.TOPIC, topic_name))
    default = ConfigSource.DEFAULT_CONFIG.value
    static = ConfigSource.STATIC_BROKER_CONFIG.value
    dyn_topic = ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    # Plain default, inherited from a broker default.
    idx = topic["index.interval.bytes"]
    assert (idx.value, idx.source, idx.is_default) == ("4096", default, True)
    assert _synonyms(idx) == [("log.index.interval.bytes", "4096", default)]
    # Topic override.
    sms = topic["segment.ms"]
    assert (sms.value, sms.source, sms.is_default) == ("3600000", dyn_topic, False)
    assert _synonyms(sms)[0] == ("segment.ms", "3600000", dyn_topic)
    # Inherited from a static broker config (--override): log.segment.bytes=20000000.
    seg = topic["segment.bytes"]
    assert (seg.value, seg.source, seg.is_default) == ("20000000", static, False)
    # confluent-kafka keys synonyms by name, so the STATIC and DEFAULT log.segment.bytes
    # synonyms Kafka sends collapse into one entry (the last, DEFAULT one).
    assert list(seg.synonyms) == ["log.segment.bytes"]
    # retention.ms follows log.retention.hours=100, but Kafka lists no synonym before the first
    # log.retention.ms one (ConfigHelper.configSynonyms' dropWhile), so its source stays
    # DEFAULT_CONFIG.
    ret = topic["retention.ms"]
    assert ret.value == str(100 * 3600 * 1000)
    assert ret.source == default
    assert topic["cleanup.policy"].value == "delete"
    assert topic["max.message.bytes"].value == "1048588"

    brk = _describe(a, ConfigResource(ResourceType.BROKER, str(NODE_ID)))
    nump = brk["num.partitions"]
    assert (nump.value, nump.source, nump.is_default) == ("1", default, True)
    assert _synonyms(nump) == [("num.partitions", "1", default)]
    hours = brk["log.retention.hours"]
    assert (hours.value, hours.source, hours.is_default) == ("100", static, False)
    assert list(hours.synonyms) == ["log.retention.hours"]  # STATIC + DEFAULT, collapsed
    dirs = brk["log.dirs"]
    assert (dirs.value, dirs.source) == (str(broker.data_dir), static)
    assert brk["node.id"].value == str(NODE_ID)
    assert brk["auto.create.topics.enable"].value == "true"

    missing = ConfigResource(ResourceType.TOPIC, f"{topic_name}-missing")
    fut = a.describe_configs([missing], request_timeout=10)[missing]
    assert result_error_code(fut) == KafkaError.UNKNOWN_TOPIC_OR_PART


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated")
def test_alter_configs_and_incremental(broker: BrokerProcess, topic_name: str) -> None:
    a = admin(broker.bootstrap)
    create_topic(a, topic_name, config={"cleanup.policy": "compact"})
    res = ConfigResource(ResourceType.TOPIC, topic_name)
    dyn_topic = ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    # Incremental SET keeps other overrides.
    inc = ConfigResource(ResourceType.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("retention.ms", "54321", incremental_operation=AlterConfigOpType.SET)])
    assert result_error_code(a.incremental_alter_configs([inc], request_timeout=10)[inc]) is None
    cfg = _describe(a, res)
    assert (cfg["retention.ms"].value, cfg["retention.ms"].source) == ("54321", dyn_topic)
    assert (cfg["cleanup.policy"].value, cfg["cleanup.policy"].source) == ("compact", dyn_topic)

    # APPEND to a list config, then DELETE back to default.
    inc = ConfigResource(ResourceType.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.APPEND),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    assert result_error_code(a.incremental_alter_configs([inc], request_timeout=10)[inc]) is None
    cfg = _describe(a, res)
    assert cfg["cleanup.policy"].value == "compact,delete"
    assert cfg["retention.ms"].value == "604800000"
    assert cfg["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert cfg["retention.ms"].is_default

    # Legacy AlterConfigs replaces the whole set of overrides.
    legacy = ConfigResource(ResourceType.TOPIC, topic_name,
                            set_config={"segment.bytes": "2000000"})
    assert result_error_code(a.alter_configs([legacy], request_timeout=10)[legacy]) is None
    cfg = _describe(a, res)
    assert (cfg["segment.bytes"].value, cfg["segment.bytes"].source) == ("2000000", dyn_topic)
    assert cfg["cleanup.policy"].value == "delete"
    assert cfg["cleanup.policy"].source == ConfigSource.DEFAULT_CONFIG.value

    # validate_only changes nothing; bad values are INVALID_CONFIG.
    dry = ConfigResource(ResourceType.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("segment.bytes", "3000000", incremental_operation=AlterConfigOpType.SET)])
    fut = a.incremental_alter_configs([dry], validate_only=True, request_timeout=10)[dry]
    assert result_error_code(fut) is None
    assert _describe(a, res)["segment.bytes"].value == "2000000"
    bad = ConfigResource(ResourceType.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("retention.ms", "never", incremental_operation=AlterConfigOpType.SET)])
    fut = a.incremental_alter_configs([bad], request_timeout=10)[bad]
    assert result_error_code(fut) == KafkaError.INVALID_CONFIG
    missing = ConfigResource(ResourceType.TOPIC, f"{topic_name}-missing", incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    fut = a.incremental_alter_configs([missing], request_timeout=10)[missing]
    assert result_error_code(fut) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_altered_max_message_bytes_applies(broker: BrokerProcess, topic_name: str) -> None:
    """A dynamic topic config change takes effect for the next produce."""
    a = admin(broker.bootstrap)
    create_topic(a, topic_name)
    inc = ConfigResource(ResourceType.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("max.message.bytes", "5000", incremental_operation=AlterConfigOpType.SET)])
    assert result_error_code(a.incremental_alter_configs([inc], request_timeout=10)[inc]) is None
    reports = Reports()
    with producer(broker.bootstrap, **{"compression.type": "none", "retries": 0}) as p:
        p.produce(topic_name, os.urandom(8000), on_delivery=reports.cb)
        flush_all(p)
    assert reports.items[0].err is not None
    assert reports.items[0].err.code() == KafkaError.MSG_SIZE_TOO_LARGE


# --------------------------------------------------------------------------- admin: records


def test_delete_records(broker: BrokerProcess, topic_name: str) -> None:
    a = admin(broker.bootstrap)
    create_topic(a, topic_name, partitions=2)
    with producer(broker.bootstrap) as p:
        produce_all(p, topic_name, [{"partition": i % 2, "value": b"%d" % i} for i in range(20)])
    tp0 = TopicPartition(topic_name, 0, 4)
    tp1 = TopicPartition(topic_name, 1, -1)  # OFFSET_END: up to the high watermark
    fs = a.delete_records([tp0, tp1], request_timeout=10, operation_timeout=10)
    results = {tp.partition: fut.result(10) for tp, fut in fs.items()}
    assert results[0].low_watermark == 4
    assert results[1].low_watermark == 10
    assert c_watermarks(broker, topic_name, 0) == (4, 10)
    assert c_watermarks(broker, topic_name, 1) == (10, 10)
    with consumer(broker.bootstrap) as c:
        assign_from(c, topic_name, [0], 0)  # below the log start: reset to earliest (4)
        msgs = consume_n(c, 6)
    assert [m.offset() for m in msgs] == list(range(4, 10))
    tp = TopicPartition(topic_name, 0)
    assert a.list_offsets({tp: OffsetSpec.earliest()})[tp].result(10).offset == 4

    # Beyond the high watermark: OFFSET_OUT_OF_RANGE.
    bad = TopicPartition(topic_name, 0, 11)
    fut = a.delete_records([bad], request_timeout=10)[bad]
    assert result_error_code(fut) == KafkaError.OFFSET_OUT_OF_RANGE
    # Survives a restart.
    broker.restart()
    assert c_watermarks(broker, topic_name, 0) == (4, 10)


# --------------------------------------------------------------------------- admin: cluster


def test_describe_cluster(broker: BrokerProcess) -> None:
    a = admin(broker.bootstrap)
    desc = a.describe_cluster(request_timeout=10).result(10)
    assert desc.cluster_id
    assert desc.controller is not None
    assert desc.controller.id == NODE_ID
    assert [(n.id, n.host, n.port) for n in desc.nodes] == [(NODE_ID, "127.0.0.1", broker.port)]
    md = a.list_topics("no-such-topic", timeout=5)
    assert md.cluster_id == desc.cluster_id
    # The cluster id is persistent.
    broker.restart()
    a2 = admin(broker.bootstrap)
    assert a2.describe_cluster(request_timeout=10).result(10).cluster_id == desc.cluster_id


def _check_metadata(md, broker: BrokerProcess, topic: str, partitions: int) -> None:  # type: ignore[no-untyped-def]
    assert md.controller_id == NODE_ID
    assert md.orig_broker_id in (-1, NODE_ID)  # -1: answered on the bootstrap connection
    assert list(md.brokers) == [NODE_ID]
    b = md.brokers[NODE_ID]
    assert (b.id, b.host, b.port) == (NODE_ID, "127.0.0.1", broker.port)
    t = md.topics[topic]
    assert t.error is None
    assert sorted(t.partitions) == list(range(partitions))
    for pid, pm in t.partitions.items():
        assert pm.id == pid
        assert pm.leader == NODE_ID
        assert pm.replicas == [NODE_ID]
        assert pm.isrs == [NODE_ID]
        assert pm.error is None


def test_topic_metadata(broker: BrokerProcess, topic_name: str) -> None:
    a = admin(broker.bootstrap)
    create_topic(a, topic_name, partitions=3)
    md = a.list_topics(topic_name, timeout=5)
    assert list(md.topics) == [topic_name]
    _check_metadata(md, broker, topic_name, 3)
    # Unknown topic, no auto-creation requested: UNKNOWN_TOPIC_OR_PART for that topic.
    missing = f"{topic_name}-missing"
    t = a.list_topics(missing, timeout=5).topics[missing]
    assert t.error is not None and t.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    # Consumer-side metadata agrees.
    with consumer(broker.bootstrap) as c:
        _check_metadata(c.list_topics(topic_name, timeout=5), broker, topic_name, 3)


def test_list_all_topics(broker: BrokerProcess, topic_name: str) -> None:
    """AdminClient.list_topics() with no topic (kcat -L, UIs): librdkafka's all-topics Metadata
    v9+ request carries 3 stray zero bytes after the body (confluentinc/librdkafka#5049);
    Kafka ignores bytes after the last field and answers with every topic."""
    a = admin(broker.bootstrap)
    create_topic(a, topic_name, partitions=3)
    create_topic(a, f"{topic_name}-b", partitions=1)
    md = a.list_topics(timeout=5)
    assert {topic_name, f"{topic_name}-b"} <= set(md.topics)
    _check_metadata(md, broker, topic_name, 3)
    _check_metadata(md, broker, f"{topic_name}-b", 1)


def test_describe_topics(broker: BrokerProcess, topic_name: str) -> None:
    a = admin(broker.bootstrap)
    create_topic(a, topic_name, partitions=2)
    missing = f"{topic_name}-missing"
    fs = a.describe_topics(TopicCollection([topic_name, missing]), request_timeout=10)
    desc = fs[topic_name].result(10)
    assert desc.name == topic_name
    assert not desc.is_internal
    assert str(desc.topic_id) != "AAAAAAAAAAAAAAAAAAAAAA"
    assert [p.id for p in desc.partitions] == [0, 1]
    for p in desc.partitions:
        assert p.leader.id == NODE_ID
        assert [r.id for r in p.replicas] == [NODE_ID]
        assert [r.id for r in p.isr] == [NODE_ID]
    assert result_error_code(fs[missing]) == KafkaError.UNKNOWN_TOPIC_OR_PART
    again = a.describe_topics(TopicCollection([topic_name]), request_timeout=10)[topic_name]
    assert str(again.result(10).topic_id) == str(desc.topic_id)
    assert topic_partitions(a, missing) is None


# --------------------------------------------------------------------------- auto-creation


def test_auto_create_on_by_default(broker: BrokerProcess, topic_name: str) -> None:
    with producer(broker.bootstrap) as p:
        reports = produce_all(p, topic_name, [{"value": b"hello"}])
    assert (reports.items[0].partition, reports.items[0].offset) == (0, 0)
    a = admin(broker.bootstrap)
    wait_topic(a, topic_name, 1)
    with consumer(broker.bootstrap) as c:
        assign_from(c, topic_name, [0], 0)
        assert consume_n(c, 1)[0].value() == b"hello"


@pytest.mark.broker_config(**{"num.partitions": "2"})
def test_consumer_allow_auto_create_topics(broker: BrokerProcess, topic_name: str) -> None:
    a = admin(broker.bootstrap)
    # librdkafka's consumer default (allow.auto.create.topics=false) never creates a topic.
    with consumer(broker.bootstrap) as c:
        c.assign([TopicPartition(topic_name, 0, 0)])
        consume_none(c, 1.5)
    assert topic_partitions(a, topic_name) is None
    # With allow.auto.create.topics=true the consumer's metadata request creates it.
    other = f"{topic_name}-auto"
    with consumer(broker.bootstrap, **{"allow.auto.create.topics": True}) as c:
        c.assign([TopicPartition(other, 0, 0)])
        consume_none(c, 1.5)
    wait_topic(a, other, 2)


@pytest.mark.broker_config(**{"auto.create.topics.enable": "false"})
def test_auto_create_off(broker: BrokerProcess, topic_name: str) -> None:
    reports = Reports()
    start = time.monotonic()
    # topic.metadata.propagation.max.ms (30 s by default) is how long librdkafka waits before
    # believing the broker's UNKNOWN_TOPIC_OR_PARTITION; below message.timeout.ms the message
    # fails with that error rather than timing out.
    conf = {"message.timeout.ms": 3000, "topic.metadata.propagation.max.ms": 500}
    with producer(broker.bootstrap, **conf) as p:
        p.produce(topic_name, b"lost", on_delivery=reports.cb)
        flush_all(p, 15)
    assert time.monotonic() - start < 10
    assert len(reports.items) == 1
    err = reports.items[0].err
    assert err is not None
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, err
    a = admin(broker.bootstrap)
    assert topic_partitions(a, topic_name) is None
    # Consumer metadata with allow.auto.create.topics=true does not create it either.
    with consumer(broker.bootstrap, **{"allow.auto.create.topics": True}) as c:
        c.assign([TopicPartition(topic_name, 0, 0)])
        consume_none(c, 1.0)
    assert topic_partitions(a, topic_name) is None
    # An explicitly created topic works normally.
    create_topic(a, topic_name)
    with producer(broker.bootstrap) as p:
        assert produce_all(p, topic_name, [{"value": b"ok"}]).items[0].offset == 0


def test_idempotent_producer(broker: BrokerProcess, topic_name: str) -> None:
    a = admin(broker.bootstrap)
    create_topic(a, topic_name, partitions=3)
    n = 3000
    conf = {"enable.idempotence": True, "linger.ms": 2, "batch.num.messages": 100,
            "max.in.flight.requests.per.connection": 5}
    with producer(broker.bootstrap, **conf) as p:
        reports = produce_all(p, topic_name, [{"partition": i % 3, "value": b"%d" % i}
                                              for i in range(n)])
    for part in range(3):
        assert [d.offset for d in reports.items if d.partition == part] == list(range(n // 3))
    with consumer(broker.bootstrap) as c:
        assign_from(c, topic_name, range(3), 0)
        msgs = consume_n(c, n)
    for part in range(3):
        assert [int(m.value()) for m in msgs if m.partition() == part] == \
            list(range(part, n, 3))


def test_min_insync_replicas_not_enough(broker: BrokerProcess, topic_name: str) -> None:
    """acks=all on a topic whose min.insync.replicas exceeds its ISR: NOT_ENOUGH_REPLICAS;
    acks=1 is unaffected."""
    a = admin(broker.bootstrap)
    create_topic(a, topic_name, config={"min.insync.replicas": "2"})
    reports = Reports()
    with producer(broker.bootstrap, acks="all", retries=0) as p:
        p.produce(topic_name, b"x", on_delivery=reports.cb)
        flush_all(p)
    err = reports.items[0].err
    assert err is not None and err.code() == KafkaError.NOT_ENOUGH_REPLICAS, err
    with producer(broker.bootstrap, acks="1") as p:
        assert produce_all(p, topic_name, [{"value": b"y"}]).items[0].offset == 0


def test_timestamp_out_of_range_rejected(broker: BrokerProcess, topic_name: str) -> None:
    """message.timestamp.before.max.ms: a record too old is INVALID_TIMESTAMP."""
    a = admin(broker.bootstrap)
    create_topic(a, topic_name, config={"message.timestamp.before.max.ms": "3600000"})
    reports = Reports()
    with producer(broker.bootstrap, retries=0) as p:
        p.produce(topic_name, b"old", timestamp=now_ms() - 86_400_000, on_delivery=reports.cb)
        flush_all(p)
        err = reports.items[0].err
        assert err is not None and err.code() == KafkaError.INVALID_TIMESTAMP, err
        ok = produce_all(p, topic_name, [{"value": b"new", "timestamp": now_ms() - 60_000}])
    assert ok.items[0].offset == 0


def test_small_fetch_sizes(broker: BrokerProcess, topic_name: str) -> None:
    """Fetch limits smaller than the data: the broker returns whole batches up to the limit
    (or a truncated last batch the client drops), and the consumer still gets everything."""
    a = admin(broker.bootstrap)
    create_topic(a, topic_name, partitions=2)
    items = [{"partition": i % 2, "value": os.urandom(300)} for i in range(2000)]
    with producer(broker.bootstrap, **{"linger.ms": 20, "batch.num.messages": 5}) as p:
        produce_all(p, topic_name, items)
    conf = {"max.partition.fetch.bytes": 4000, "fetch.max.bytes": 9000,
            "message.max.bytes": 9000, "receive.message.max.bytes": 9000 + 512}
    with consumer(broker.bootstrap, **conf) as c:
        assign_from(c, topic_name, range(2), 0)
        msgs = consume_n(c, 2000, timeout=60)
    for part in range(2):
        pm = [m for m in msgs if m.partition() == part]
        assert [m.offset() for m in pm] == list(range(1000))
        assert [m.value() for m in pm] == [it["value"] for it in items[part::2]]


def test_fetch_min_bytes_waits(broker: BrokerProcess, topic_name: str) -> None:
    """Less data than fetch.min.bytes: the broker holds the Fetch until fetch.wait.max.ms."""
    a = admin(broker.bootstrap)
    create_topic(a, topic_name)
    with producer(broker.bootstrap) as p:
        produce_all(p, topic_name, [{"value": b"tiny"}])
    conf = {"fetch.min.bytes": 1_000_000, "fetch.wait.max.ms": 2000}
    with consumer(broker.bootstrap, **conf) as c:
        c.list_topics(topic_name, timeout=5)
        start = time.monotonic()
        assign_from(c, topic_name, [0], 0)
        (m,) = consume_n(c, 1, timeout=10)
        elapsed = time.monotonic() - start
    assert m.value() == b"tiny"
    assert 1.5 <= elapsed < 5, elapsed


def test_consumer_survives_broker_restart(broker: BrokerProcess, topic_name: str) -> None:
    a = admin(broker.bootstrap)
    create_topic(a, topic_name)
    with producer(broker.bootstrap) as p:
        produce_all(p, topic_name, [{"value": b"before"}])
    with consumer(broker.bootstrap, **{"reconnect.backoff.max.ms": 500}) as c:
        assign_from(c, topic_name, [0], 0)
        assert consume_n(c, 1)[0].value() == b"before"
        broker.restart()
        with producer(broker.bootstrap) as p:
            produce_all(p, topic_name, [{"value": b"after"}])
        (m,) = consume_n(c, 1, timeout=30)
    assert (m.offset(), m.value()) == (1, b"after")


def test_assign_with_leader_epoch(broker: BrokerProcess, topic_name: str) -> None:
    """An assignment carrying a leader epoch makes librdkafka validate the position with
    OffsetForLeaderEpoch before fetching."""
    a = admin(broker.bootstrap)
    create_topic(a, topic_name)
    with producer(broker.bootstrap) as p:
        produce_all(p, topic_name, [{"value": b"%d" % i} for i in range(10)])
    with consumer(broker.bootstrap) as c:
        (first,) = _consume_first(c, topic_name)
        epoch = first.leader_epoch()
        assert epoch is not None and epoch >= 0
        c.assign([TopicPartition(topic_name, 0, 5, leader_epoch=epoch)])
        msgs = consume_n(c, 5)
    assert [m.offset() for m in msgs] == list(range(5, 10))
    assert all(m.leader_epoch() == epoch for m in msgs)


def _consume_first(c, topic: str) -> list:  # type: ignore[no-untyped-def,type-arg]
    assign_from(c, topic, [0], 0)
    msgs = consume_n(c, 1)
    c.unassign()
    return msgs


# --------------------------------------------------------------------------- long poll


def test_long_poll_woken_by_append(broker: BrokerProcess, topic_name: str) -> None:
    a = admin(broker.bootstrap)
    create_topic(a, topic_name)
    conf = {"fetch.wait.max.ms": 5000, "fetch.min.bytes": 1}
    with producer(broker.bootstrap, **{"linger.ms": 0}) as p, \
            consumer(broker.bootstrap, **conf) as c:
        p.list_topics(topic_name, timeout=5)  # connected, metadata known
        assign_from(c, topic_name, [0], 0)
        consume_none(c, 1.5)  # the consumer now sits in a long-poll Fetch
        delays = []
        for i in range(3):
            start = time.monotonic()
            p.produce(topic_name, b"wake-%d" % i)
            p.poll(0)
            (m,) = consume_n(c, 1, timeout=10)
            delays.append(time.monotonic() - start)
            assert (m.offset(), m.value()) == (i, b"wake-%d" % i)
            consume_none(c, 0.7)  # back in a fresh long poll
        flush_all(p)
    assert max(delays) < 2.0, delays


def test_long_poll_waits_when_empty(broker: BrokerProcess, topic_name: str) -> None:
    """With nothing to return the broker holds the Fetch for about fetch.wait.max.ms (it
    neither spins nor answers instantly): few Fetch requests reach the broker while idle."""
    a = admin(broker.bootstrap)
    create_topic(a, topic_name)
    stats: list[str] = []
    conf = {"fetch.wait.max.ms": 1000, "statistics.interval.ms": 1000, "stats_cb": stats.append}
    with consumer(broker.bootstrap, **conf) as c:
        assign_from(c, topic_name, [0], 0)
        consume_none(c, 4.5)
    last = json.loads(stats[-1])
    fetch_reqs = sum(b.get("req", {}).get("Fetch", 0) for b in last["brokers"].values())
    assert 1 <= fetch_reqs <= 8, fetch_reqs


# --------------------------------------------------------------------------- durability


def test_data_survives_restart_and_kill(broker: BrokerProcess, topic_name: str) -> None:
    a = admin(broker.bootstrap)
    create_topic(a, topic_name, partitions=2)
    with producer(broker.bootstrap, **{"compression.type": "zstd"}) as p:
        produce_all(p, topic_name, [{"partition": i % 2, "key": b"k", "value": b"%d" % i}
                                    for i in range(100)])
    broker.restart()
    with producer(broker.bootstrap) as p:
        reports = produce_all(p, topic_name, [{"partition": 0, "value": b"after"}])
    assert reports.items[0].offset == 50
    broker.kill()
    broker.start()
    with consumer(broker.bootstrap) as c:
        assign_from(c, topic_name, range(2), 0)
        msgs = consume_n(c, 101)
    p0 = [m for m in msgs if m.partition() == 0]
    assert [m.offset() for m in p0] == list(range(51))
    assert p0[-1].value() == b"after"
