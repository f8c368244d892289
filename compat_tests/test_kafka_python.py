"""kafka-python (3.0.12) against a real pykbroker: produce/consume (keys, headers, tombstones,
timestamps, partitions, every codec), large messages, 100k in order, offsets by time, the
admin API and topic auto-creation. No consumer groups: KafkaConsumer(group_id=None) with
assign() + seek()."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.admin import (
    AlterConfigOp,
    ConfigResource,
    ConfigResourceType,
    ConfigSourceType,
    OffsetSpec,
)
from kafka.errors import (
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    OffsetOutOfRangeError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from kafka.protocol.admin import DescribeConfigsRequest
from kafka.protocol.metadata import MetadataRequest
from kafka.protocol.producer import ProduceRequest

from compat_tests.broker_process import BrokerProcess
from compat_tests.kp_helpers import (
    admin_client,
    consume_n,
    consumer,
    create_topic,
    producer,
    raw_exchange,
    record_batch,
    send_all,
    send_raw,
)

CREATE_TIME = 0
LOG_APPEND_TIME = 1
BASE_TS = 1_700_000_000_000  # a fixed, recent-enough CreateTime (ms)


def _sends_for(partition: int) -> list[dict[str, Any]]:
    """A mixed set of records for one partition: keys (null, empty, set), headers (several,
    repeated keys, empty and binary values; kafka-python refuses null header values),
    tombstones, empty values, explicit timestamps."""
    sends: list[dict[str, Any]] = []
    for i in range(40):
        sends.append(dict(
            partition=partition, key=b"key-%d-%d" % (partition, i),
            value=(b"value-%d-%d-" % (partition, i)) * (i % 7 + 1),
            headers=[("h1", b"a"), ("h2", b"\x00\xff"), ("h1", b"b%d" % i)],
            timestamp_ms=BASE_TS + partition * 1000 + i))
    sends += [
        dict(partition=partition, key=b"tomb-%d" % partition, value=None,
             timestamp_ms=BASE_TS + 77),
        dict(partition=partition, key=None, value=b"no-key", timestamp_ms=BASE_TS + 78),
        dict(partition=partition, key=b"", value=b"", timestamp_ms=BASE_TS + 79),
        dict(partition=partition, key=b"hk", value=b"hv",
             headers=[("same", b"1"), ("same", b"2"), ("same", b"3"),
                      ("empty", b""), ("ünï", b"\xe2\x82\xac")],
             timestamp_ms=BASE_TS + 80),
        dict(partition=partition, key=b"big", value=os.urandom(20_000), timestamp_ms=BASE_TS),
    ]
    return sends


@pytest.mark.timeout(120)
@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
def test_produce_consume_roundtrip_every_codec(broker: BrokerProcess, topic_name: str,
                                               codec: str | None) -> None:
    partitions = 3
    with admin_client(broker.bootstrap) as admin:
        create_topic(admin, topic_name, partitions)
    sends = [s for p in range(partitions) for s in _sends_for(p)]
    with producer(broker.bootstrap, compression_type=codec, linger_ms=20,
                  batch_size=64 * 1024) as p:
        metas = send_all(p, sends, topic_name)
    # Offsets per partition are dense from 0, in send order.
    expected_offset = dict.fromkeys(range(partitions), 0)
    for s, md in zip(sends, metas, strict=True):
        assert md.partition == s["partition"]
        assert md.offset == expected_offset[md.partition]
        assert md.timestamp == s["timestamp_ms"]
        expected_offset[md.partition] += 1

    with consumer(broker.bootstrap) as c:
        records = consume_n(c, {TopicPartition(topic_name, p): 0 for p in range(partitions)},
                            len(sends))
    assert len(records) == len(sends)
    by_partition: dict[int, list[Any]] = {p: [] for p in range(partitions)}
    for r in records:
        by_partition[r.partition].append(r)
    for part in range(partitions):
        want = [s for s in sends if s["partition"] == part]
        got = by_partition[part]
        assert [r.offset for r in got] == list(range(len(want)))
        for s, r in zip(want, got, strict=True):
            assert r.topic == topic_name
            assert r.key == s["key"]
            assert r.value == s["value"]
            assert r.headers == list(s.get("headers") or [])
            assert r.timestamp == s["timestamp_ms"]
            assert r.timestamp_type == CREATE_TIME


@pytest.mark.timeout(120)
def test_log_append_time_topic(broker: BrokerProcess, topic_name: str) -> None:
    with admin_client(broker.bootstrap) as admin:
        create_topic(admin, topic_name, 1, {"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    with producer(broker.bootstrap, compression_type="gzip") as p:
        metas = send_all(p, [dict(key=b"k%d" % i, value=b"v%d" % i, timestamp_ms=1000 + i)
                             for i in range(5)], topic_name)
    after = int(time.time() * 1000)
    for md in metas:
        # The produce response carries the broker's log append time.
        assert before - 1000 <= md.timestamp <= after + 1000
    with consumer(broker.bootstrap) as c:
        records = consume_n(c, {TopicPartition(topic_name, 0): 0}, 5)
    assert [r.value for r in records] == [b"v%d" % i for i in range(5)]
    for r, md in zip(records, metas, strict=True):
        assert r.timestamp_type == LOG_APPEND_TIME
        assert r.timestamp == md.timestamp


# ---------------------------------------------------------------- large messages


MIB = 1024 * 1024


@pytest.mark.timeout(120)
def test_one_mib_messages_with_raised_max_message_bytes(broker: BrokerProcess,
                                                        topic_name: str) -> None:
    with admin_client(broker.bootstrap) as admin:
        create_topic(admin, topic_name, 1, {"max.message.bytes": "2000000"})
    values = [os.urandom(MIB) for _ in range(3)]
    with producer(broker.bootstrap, max_request_size=3_000_000, batch_size=MIB) as p:
        metas = send_all(p, [dict(key=b"k%d" % i, value=v) for i, v in enumerate(values)],
                         topic_name)
        assert [m.offset for m in metas] == [0, 1, 2]
        # Bigger than the topic's max.message.bytes but within the producer's own limit:
        # only the broker can refuse it.
        fut = p.send(topic_name, key=b"too-big", value=os.urandom(2_100_000))
        with pytest.raises(MessageSizeTooLargeError):
            fut.get(timeout=30)
    with consumer(broker.bootstrap, fetch_max_bytes=8 * MIB,
                  max_partition_fetch_bytes=4 * MIB) as c:
        tp = TopicPartition(topic_name, 0)
        records = consume_n(c, {tp: 0}, 3)
        assert [r.value for r in records] == values
        assert [r.key for r in records] == [b"k0", b"k1", b"k2"]
        assert c.end_offsets([tp]) == {tp: 3}
    # Fetch limits smaller than one batch: the first batch still comes back whole (KIP-74),
    # so a consumer with default or tiny limits makes progress.
    for limits in ({}, {"fetch_max_bytes": 1000, "max_partition_fetch_bytes": 1000}):
        with consumer(broker.bootstrap, **limits) as c:
            records = consume_n(c, {TopicPartition(topic_name, 0): 1}, 2)
            assert [(r.offset, r.value) for r in records] == [(1, values[1]), (2, values[2])]


@pytest.mark.timeout(120)
def test_one_mib_message_rejected_by_default_topic_limit(broker: BrokerProcess,
                                                         topic_name: str) -> None:
    # Default max.message.bytes is 1048588: a 1 MiB value plus batch overhead is over it.
    with admin_client(broker.bootstrap) as admin:
        create_topic(admin, topic_name, 1)
    with producer(broker.bootstrap, max_request_size=3_000_000, batch_size=MIB) as p:
        fut = p.send(topic_name, value=os.urandom(MIB))
        with pytest.raises(MessageSizeTooLargeError):
            fut.get(timeout=30)
    # kafka-python's idempotent producer treats a failed batch as fatal (client behaviour, as
    # against Kafka), so the next send uses a fresh producer. Just under the limit is fine.
    with producer(broker.bootstrap, max_request_size=3_000_000, batch_size=MIB) as p:
        md = p.send(topic_name, value=os.urandom(1_000_000)).get(timeout=30)
        assert md.offset == 0
    # Same with a non-idempotent producer (no producer id on the batch).
    with producer(broker.bootstrap, max_request_size=3_000_000, batch_size=MIB,
                  enable_idempotence=False, acks=1) as p:
        with pytest.raises(MessageSizeTooLargeError):
            p.send(topic_name, value=os.urandom(MIB)).get(timeout=30)
        assert p.send(topic_name, value=b"small").get(timeout=30).offset == 1


@pytest.mark.timeout(120)
def test_producer_side_max_request_size(broker: BrokerProcess, topic_name: str) -> None:
    """The client's own check (no broker round trip) still works as with Kafka."""
    with admin_client(broker.bootstrap) as admin:
        create_topic(admin, topic_name, 1)
    with producer(broker.bootstrap) as p:
        with pytest.raises(MessageSizeTooLargeError):
            p.send(topic_name, value=b"x" * (2 * MIB)).get(timeout=10)


# ---------------------------------------------------------------- volume


@pytest.mark.timeout(120)
def test_hundred_thousand_messages_in_order(broker: BrokerProcess, topic_name: str) -> None:
    n = 100_000
    with admin_client(broker.bootstrap) as admin:
        create_topic(admin, topic_name, 1)
    with producer(broker.bootstrap, linger_ms=50, batch_size=512 * 1024,
                  compression_type="lz4") as p:
        futures = [p.send(topic_name, value=b"%d" % i, partition=0) for i in range(n)]
        p.flush(timeout=60)
        assert futures[0].get(timeout=10).offset == 0
        assert futures[-1].get(timeout=10).offset == n - 1
    tp = TopicPartition(topic_name, 0)
    with consumer(broker.bootstrap, max_partition_fetch_bytes=4 * MIB,
                  fetch_max_bytes=16 * MIB) as c:
        assert c.end_offsets([tp]) == {tp: n}
        records = consume_n(c, {tp: 0}, n, timeout=60, max_records=50_000)
    assert len(records) == n
    assert all(r.offset == i for i, r in enumerate(records))
    assert all(r.value == b"%d" % i for i, r in enumerate(records))


# ---------------------------------------------------------------- offsets by time


# (timestamp) per record, in offset order: increasing with ties and a few out of order.
TIMESTAMPS = [1000, 2000, 2000, 3000, 2500, 4000, 4000, 3500, 5000, 6000, 6000, 1500, 7000]


def _expected_for(target: int) -> tuple[int, int] | None:
    for offset, ts in enumerate(TIMESTAMPS):
        if ts >= target:
            return offset, ts
    return None


@pytest.mark.timeout(120)
def test_offsets_for_times_exact(broker: BrokerProcess, topic_name: str) -> None:
    ts0 = BASE_TS
    with admin_client(broker.bootstrap) as admin:
        create_topic(admin, topic_name, 2)
    # Partition 0: one batch per record; partition 1: every record in one batch (the broker
    # must look inside the batch to find the exact offset).
    with producer(broker.bootstrap, linger_ms=0) as p:
        for i, ts in enumerate(TIMESTAMPS):
            p.send(topic_name, value=b"%d" % i, partition=0, timestamp_ms=ts0 + ts)
            p.flush(timeout=10)
    with producer(broker.bootstrap, linger_ms=200, batch_size=MIB) as p:
        metas = send_all(p, [dict(value=b"%d" % i, partition=1, timestamp_ms=ts0 + ts)
                             for i, ts in enumerate(TIMESTAMPS)], topic_name)
        assert [m.offset for m in metas] == list(range(len(TIMESTAMPS)))

    tps = [TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)]
    targets = [0, 999, 1000, 1001, 1500, 2000, 2001, 2500, 3000, 3001, 3500, 4000, 4001,
               5000, 5500, 6000, 6001, 7000, 7001, 10_000]
    with consumer(broker.bootstrap) as c:
        assert c.beginning_offsets(tps) == {tp: 0 for tp in tps}
        assert c.end_offsets(tps) == {tp: len(TIMESTAMPS) for tp in tps}
        for target in targets:
            result = c.offsets_for_times({tp: ts0 + target for tp in tps})
            want = _expected_for(target)
            for tp in tps:
                got = result[tp]
                if want is None:
                    assert got is None, (tp, target, got)
                else:
                    assert (got.offset, got.timestamp) == (want[0], ts0 + want[1]), (tp, target)
        # The lookup did not disturb a later fetch.
        records = consume_n(c, {tps[0]: 5}, len(TIMESTAMPS) - 5)
        assert [r.offset for r in records] == list(range(5, len(TIMESTAMPS)))
        assert [r.timestamp for r in records] == [ts0 + t for t in TIMESTAMPS[5:]]


@pytest.mark.timeout(120)
def test_list_offsets_specs_and_empty_partition(broker: BrokerProcess, topic_name: str) -> None:
    with admin_client(broker.bootstrap) as admin:
        create_topic(admin, topic_name, 2)
        with producer(broker.bootstrap) as p:
            send_all(p, [dict(value=b"%d" % i, partition=0, timestamp_ms=BASE_TS + ts)
                         for i, ts in enumerate(TIMESTAMPS)], topic_name)
        tp0, tp1 = TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)
        res = admin.list_partition_offsets({tp0: OffsetSpec.EARLIEST, tp1: OffsetSpec.EARLIEST})
        assert (res[tp0].offset, res[tp1].offset) == (0, 0)
        res = admin.list_partition_offsets({tp0: OffsetSpec.LATEST, tp1: OffsetSpec.LATEST})
        assert (res[tp0].offset, res[tp1].offset) == (len(TIMESTAMPS), 0)
        res = admin.list_partition_offsets({tp0: OffsetSpec.MAX_TIMESTAMP})
        top = max(TIMESTAMPS)
        assert (res[tp0].offset, res[tp0].timestamp) == (TIMESTAMPS.index(top), BASE_TS + top)
    with consumer(broker.bootstrap) as c:
        # An empty partition has no offset for any timestamp.
        assert c.offsets_for_times({tp1: 0}) == {tp1: None}
        assert c.beginning_offsets([tp1]) == {tp1: 0}
        assert c.end_offsets([tp1]) == {tp1: 0}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_produce_acks_variants(broker: BrokerProcess, topic_name: str, acks: Any) -> None:
    with admin_client(broker.bootstrap) as admin:
        create_topic(admin, topic_name, 1)
    with producer(broker.bootstrap, acks=acks, enable_idempotence=False, linger_ms=5) as p:
        metas = send_all(p, [dict(key=b"k%d" % i, value=b"v%d" % i) for i in range(20)],
                         topic_name)
    if acks != 0:  # acks=0: no response; kafka-python makes the offsets up.
        assert [m.offset for m in metas] == list(range(20))
    with consumer(broker.bootstrap) as c:
        records = consume_n(c, {TopicPartition(topic_name, 0): 0}, 20)
    assert [(r.offset, r.value) for r in records] == [(i, b"v%d" % i) for i in range(20)]


# ---------------------------------------------------------------- admin: topics


@pytest.mark.timeout(120)
def test_admin_create_topics(broker: BrokerProcess, topic_name: str) -> None:
    with admin_client(broker.bootstrap) as admin:
        # validate_only: accepted, nothing created.
        admin.create_topics({topic_name: {"num_partitions": 4, "replication_factor": 1}},
                            validate_only=True)
        assert topic_name not in admin.list_topics()

        res = admin.create_topics(
            {topic_name: {"num_partitions": 4, "replication_factor": 1,
                          "configs": {"retention.ms": "3600000", "cleanup.policy": "compact"}}},
            wait_for_metadata=True)
        (created,) = res["topics"]
        assert created["name"] == topic_name
        assert created["error_code"] == 0
        assert created["num_partitions"] == 4
        assert created["replication_factor"] == 1
        (desc,) = admin.describe_topics([topic_name])
        assert desc["error_code"] == 0
        assert sorted(p["partition_index"] for p in desc["partitions"]) == [0, 1, 2, 3]
        assert all(p["leader_id"] == 1 and p["replica_nodes"] == [1] for p in desc["partitions"])
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic_name)])["topic"][topic_name]
        assert configs["retention.ms"]["value"] == "3600000"
        assert configs["cleanup.policy"]["value"] == "compact"
        assert configs["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"

        # Defaults (-1, -1) take num.partitions / default.replication.factor.
        default_name = topic_name + "-default"
        res = admin.create_topics([default_name], wait_for_metadata=True)
        assert res["topics"][0]["num_partitions"] == 1
        assert res["topics"][0]["replication_factor"] == 1

        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topics({topic_name: {"num_partitions": 1, "replication_factor": 1}})
        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topics({topic_name: {"num_partitions": 1, "replication_factor": 1}},
                                validate_only=True)
        for bad in ("bad name", "a/b", "..", "x" * 250, ""):
            with pytest.raises(InvalidTopicError):
                admin.create_topics({bad: {"num_partitions": 1, "replication_factor": 1}})
        with pytest.raises(InvalidPartitionsError):
            admin.create_topics({topic_name + "-p0": {"num_partitions": 0,
                                                      "replication_factor": 1}})
        with pytest.raises(InvalidReplicationFactorError):
            admin.create_topics({topic_name + "-rf3": {"num_partitions": 1,
                                                       "replication_factor": 3}})

        # Several at once, raise_errors=False: one result per topic with its own code.
        res = admin.create_topics(
            {topic_name: {"num_partitions": 1, "replication_factor": 1},
             topic_name + "-ok": {"num_partitions": 2, "replication_factor": 1},
             topic_name + "-rf0": {"num_partitions": 1, "replication_factor": 0}},
            raise_errors=False)
        codes = {t["name"]: t["error_code"] for t in res["topics"]}
        assert codes == {topic_name: TopicAlreadyExistsError.errno,
                         topic_name + "-ok": 0,
                         topic_name + "-rf0": InvalidReplicationFactorError.errno}
        assert sorted(admin.list_topics()) == sorted(
            [topic_name, default_name, topic_name + "-ok"])

        # Manual replica assignments (num_partitions / replication_factor left at -1).
        res = admin.create_topics({topic_name + "-asg": {"assignments": {0: [1], 1: [1]}}},
                                  wait_for_metadata=True)
        assert res["topics"][0]["error_code"] == 0
        (desc,) = admin.describe_topics([topic_name + "-asg"])
        assert sorted((p["partition_index"], p["replica_nodes"]) for p in desc["partitions"]) \
            == [(0, [1]), (1, [1])]
        res = admin.create_topics(
            {topic_name + "-both": {"num_partitions": 2, "replication_factor": 1,
                                    "assignments": {0: [1]}}}, raise_errors=False)
        assert [(t["error_code"], t["error_message"]) for t in res["topics"]] == [
            (42, "Both numPartitions or replicationFactor and replicasAssignments were set. "
                 "Both cannot be used at the same time.")]


@pytest.mark.timeout(120)
def test_admin_delete_topics(broker: BrokerProcess, topic_name: str) -> None:
    with admin_client(broker.bootstrap) as admin:
        create_topic(admin, topic_name, 2)
        create_topic(admin, topic_name + "-keep", 1)
        with producer(broker.bootstrap) as p:
            send_all(p, [dict(value=b"x", partition=1)], topic_name)
        admin.delete_topics([topic_name])
        assert admin.list_topics() == [topic_name + "-keep"]
        with pytest.raises(UnknownTopicOrPartitionError):
            admin.delete_topics([topic_name])
        # Recreating a deleted topic starts empty.
        create_topic(admin, topic_name, 2)
    with consumer(broker.bootstrap) as c:
        tp = TopicPartition(topic_name, 1)
        assert c.end_offsets([tp]) == {tp: 0}


@pytest.mark.timeout(120)
def test_admin_create_partitions(broker: BrokerProcess, topic_name: str) -> None:
    with admin_client(broker.bootstrap) as admin:
        create_topic(admin, topic_name, 1)
        admin.create_partitions({topic_name: 3}, validate_only=True)
        assert len(admin.describe_topics([topic_name])[0]["partitions"]) == 1
        admin.create_partitions({topic_name: 3})
        admin.wait_for_topics([topic_name])
        (desc,) = admin.describe_topics([topic_name])
        assert sorted(p["partition_index"] for p in desc["partitions"]) == [0, 1, 2]
        with pytest.raises(InvalidPartitionsError):
            admin.create_partitions({topic_name: 2})
        with pytest.raises(InvalidPartitionsError):
            admin.create_partitions({topic_name: 3})
        with pytest.raises(UnknownTopicOrPartitionError):
            admin.create_partitions({topic_name + "-nope": 3})
    with producer(broker.bootstrap) as p:
        assert p.partitions_for(topic_name) == {0, 1, 2}
        md = send_all(p, [dict(value=b"new-partition", key=b"k", partition=2)], topic_name)
        assert (md[0].partition, md[0].offset) == (2, 0)
    with consumer(broker.bootstrap) as c:
        records = consume_n(c, {TopicPartition(topic_name, 2): 0}, 1)
        assert [(r.partition, r.offset, r.value) for r in records] == [(2, 0, b"new-partition")]


@pytest.mark.timeout(120)
def test_admin_describe_cluster_and_list_topics(broker: BrokerProcess, topic_name: str) -> None:
    with admin_client(broker.bootstrap) as admin:
        assert admin.list_topics() == []
        cluster = admin.describe_cluster()
        assert isinstance(cluster["cluster_id"], str) and len(cluster["cluster_id"]) == 22
        assert cluster["controller_id"] == 1
        assert cluster["brokers"] == [{"broker_id": 1, "host": "127.0.0.1",
                                       "port": broker.port, "rack": None}]
        create_topic(admin, topic_name, 2)
        create_topic(admin, topic_name + "-b", 1)
        assert sorted(admin.list_topics()) == sorted([topic_name, topic_name + "-b"])
        (desc,) = admin.describe_topics([topic_name])
        assert desc["name"] == topic_name
        assert desc["is_internal"] is False
        assert [p["partition_index"] for p in sorted(desc["partitions"],
                                                     key=lambda p: p["partition_index"])] == [0, 1]
        for part in desc["partitions"]:
            assert part["leader_id"] == 1
            assert part["isr_nodes"] == [1]
        # The cluster id survives a restart.
        cluster_id = cluster["cluster_id"]
    broker.restart()
    with admin_client(broker.bootstrap) as admin:
        assert admin.describe_cluster()["cluster_id"] == cluster_id
        assert sorted(admin.list_topics()) == sorted([topic_name, topic_name + "-b"])


# ---------------------------------------------------------------- admin: configs


def _topic_configs(admin: Any, topic: str) -> dict[str, Any]:
    configs: dict[str, Any] = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")["topic"][topic]
    return configs


@pytest.mark.timeout(120)
def test_admin_describe_configs_topic_and_broker(broker: BrokerProcess, topic_name: str) -> None:
    with admin_client(broker.bootstrap) as admin:
        create_topic(admin, topic_name, 1, {"segment.bytes": "10485760"})
        configs = _topic_configs(admin, topic_name)
        assert configs["retention.ms"]["value"] == "604800000"
        assert configs["retention.ms"]["config_source"] == ConfigSourceType.DEFAULT_CONFIG.name
        assert configs["retention.ms"]["read_only"] is False
        assert configs["cleanup.policy"]["value"] == "delete"
        assert configs["max.message.bytes"]["value"] == "1048588"
        assert configs["segment.bytes"]["value"] == "10485760"
        assert configs["segment.bytes"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        # Only the listed keys when keys are given.
        some = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic_name,
                            ["retention.ms", "segment.bytes"])],
            config_filter="all")["topic"][topic_name]
        assert set(some) == {"retention.ms", "segment.bytes"}
        # Synonyms: the topic override, then the broker default.
        syn = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic_name, ["segment.bytes"])],
            include_synonyms=True, config_filter="all")["topic"][topic_name]["segment.bytes"]
        assert [(s["name"], s["value"], s["source"]) for s in syn["synonyms"]] == [
            ("segment.bytes", "10485760", "DYNAMIC_TOPIC_CONFIG"),
            ("log.segment.bytes", "1073741824", "DEFAULT_CONFIG")]

        broker_cfg = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "1")],
                                            config_filter="all")["broker"]["1"]
        assert broker_cfg["log.retention.hours"]["value"] == "168"
        assert broker_cfg["log.retention.hours"]["config_source"] == "DEFAULT_CONFIG"
        assert broker_cfg["num.partitions"]["value"] == "1"
        assert broker_cfg["log.dirs"]["value"] == str(broker.data_dir)
        assert broker_cfg["log.dirs"]["config_source"] == "STATIC_BROKER_CONFIG"
        assert broker_cfg["listeners"]["config_source"] == "STATIC_BROKER_CONFIG"

        # Unknown topic: an error for that resource (kafka-python drops the resource's error
        # code and returns no configs; the raw response carries it).
        missing = "nope-" + topic_name
        assert admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, missing)]) == \
            {"topic": {missing: {}}}
        resp = send_raw(admin, DescribeConfigsRequest(
            resources=[(ConfigResourceType.TOPIC, missing, None)], include_synonyms=False))
        (result,) = resp.results
        assert (result.error_code, result.resource_name, result.configs) == (
            UnknownTopicOrPartitionError.errno, missing, [])


@pytest.mark.timeout(120)
@pytest.mark.broker_config(**{"num.partitions": "2", "log.retention.ms": "86400000",
                               "log.segment.bytes": "50000000"})
def test_admin_describe_broker_static_overrides(broker: BrokerProcess, topic_name: str) -> None:
    with admin_client(broker.bootstrap) as admin:
        cfg = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "1")],
                                     config_filter="all")["broker"]["1"]
        assert cfg["num.partitions"]["value"] == "2"
        assert cfg["num.partitions"]["config_source"] == "STATIC_BROKER_CONFIG"
        assert cfg["log.retention.ms"]["value"] == "86400000"
        assert cfg["log.retention.ms"]["config_source"] == "STATIC_BROKER_CONFIG"
        assert cfg["log.retention.hours"]["value"] == "168"
        assert cfg["log.retention.hours"]["config_source"] == "DEFAULT_CONFIG"
        create_topic(admin, topic_name, 1, {"segment.bytes": "20000000"})
        topic = _topic_configs(admin, topic_name)
        # Topic values inherit the broker's static settings, with that source.
        assert topic["retention.ms"]["value"] == "86400000"
        assert topic["retention.ms"]["config_source"] == "STATIC_BROKER_CONFIG"
        assert topic["segment.bytes"]["value"] == "20000000"
        assert topic["segment.bytes"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        syn = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic_name, ["retention.ms", "segment.bytes"])],
            include_synonyms=True, config_filter="all")["topic"][topic_name]
        assert [(s["name"], s["value"], s["source"]) for s in syn["retention.ms"]["synonyms"]][0] \
            == ("log.retention.ms", "86400000", "STATIC_BROKER_CONFIG")
        assert [(s["name"], s["value"], s["source"]) for s in syn["segment.bytes"]["synonyms"]] == [
            ("segment.bytes", "20000000", "DYNAMIC_TOPIC_CONFIG"),
            ("log.segment.bytes", "50000000", "STATIC_BROKER_CONFIG"),
            ("log.segment.bytes", "1073741824", "DEFAULT_CONFIG")]
        # Auto/default-created topics get num.partitions.
        res = admin.create_topics([topic_name + "-d"], wait_for_metadata=True)
        assert res["topics"][0]["num_partitions"] == 2


@pytest.mark.timeout(120)
def test_admin_alter_configs(broker: BrokerProcess, topic_name: str) -> None:
    with admin_client(broker.bootstrap) as admin:
        create_topic(admin, topic_name, 1, {"cleanup.policy": "compact"})
        # Legacy AlterConfigs replaces the whole set of overrides (kafka-python re-sends the
        # ones it finds, as documented).
        res = admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic_name, {"retention.ms": "86400000"})],
            incremental=False)
        assert res == {"topic": {topic_name: "OK"}}
        cfg = _topic_configs(admin, topic_name)
        assert cfg["retention.ms"]["value"] == "86400000"
        assert cfg["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        assert cfg["cleanup.policy"]["value"] == "compact"

        # validate_only changes nothing.
        res = admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic_name, {"retention.ms": "1000"})],
            validate_only=True, incremental=True)
        assert res == {"topic": {topic_name: "OK"}}
        assert _topic_configs(admin, topic_name)["retention.ms"]["value"] == "86400000"

        # IncrementalAlterConfigs: SET one key, DELETE another (back to default).
        res = admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic_name,
                            {"max.message.bytes": "2000000",
                             "cleanup.policy": (AlterConfigOp.DELETE, None)})],
            incremental=True)
        assert res == {"topic": {topic_name: "OK"}}
        cfg = _topic_configs(admin, topic_name)
        assert cfg["max.message.bytes"]["value"] == "2000000"
        assert cfg["cleanup.policy"]["value"] == "delete"
        assert cfg["cleanup.policy"]["config_source"] == "DEFAULT_CONFIG"
        assert cfg["retention.ms"]["value"] == "86400000"
        modified = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic_name)])["topic"][topic_name]
        assert set(modified) == {"max.message.bytes", "retention.ms"}

        # APPEND to a list config.
        admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic_name,
                            {"cleanup.policy": (AlterConfigOp.APPEND, "compact")})],
            incremental=True)
        assert _topic_configs(admin, topic_name)["cleanup.policy"]["value"] == "delete,compact"

        # reset_configs (incremental DELETE of every modified key).
        # (configs={}: kafka-python's reset_configs chokes on configs=None.)
        admin.reset_configs([ConfigResource(ConfigResourceType.TOPIC, topic_name, {})])
        assert admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic_name)])["topic"][topic_name] == {}

        # Bad value: an error result for the resource, not a crash.
        res = admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic_name, {"retention.ms": "abc"})],
            incremental=True)
        assert res["topic"][topic_name].startswith("[Error 40] InvalidConfigurationError")

    # The raised limit is effective for produce.
    with producer(broker.bootstrap, max_request_size=3_000_000) as p, \
            admin_client(broker.bootstrap) as admin:
        admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic_name, {"max.message.bytes": "2000000"})],
            incremental=True)
        md = p.send(topic_name, value=os.urandom(MIB + 1000)).get(timeout=30)
        assert md.offset == 0


# ---------------------------------------------------------------- admin: delete records


@pytest.mark.timeout(120)
def test_admin_delete_records(broker: BrokerProcess, topic_name: str) -> None:
    with admin_client(broker.bootstrap) as admin:
        create_topic(admin, topic_name, 2)
        with producer(broker.bootstrap) as p:
            send_all(p, [dict(value=b"%d" % i, partition=0) for i in range(10)]
                     + [dict(value=b"%d" % i, partition=1) for i in range(5)], topic_name)
        tp0, tp1 = TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)
        res = admin.delete_records({tp0: 4})
        assert res[tp0]["low_watermark"] == 4
        # -1 means "up to the high watermark".
        res = admin.delete_records({tp1: -1})
        assert res[tp1]["low_watermark"] == 5
        # Deleting below the current low watermark is a no-op, beyond the HWM an error.
        res = admin.delete_records({tp0: 2})
        assert res[tp0]["low_watermark"] == 4
        with pytest.raises(OffsetOutOfRangeError):
            admin.delete_records({tp0: 11})

    with consumer(broker.bootstrap) as c:
        assert c.beginning_offsets([tp0, tp1]) == {tp0: 4, tp1: 5}
        assert c.end_offsets([tp0, tp1]) == {tp0: 10, tp1: 5}
        # Deleted records are not found by timestamp any more.
        found = c.offsets_for_times({tp0: 0, tp1: 0})
        assert found[tp0] is not None and found[tp0].offset == 4
        assert found[tp1] is None
        c.assign([tp0])
        c.seek_to_beginning(tp0)
        assert c.position(tp0) == 4
        records = consume_n(c, {tp0: 4}, 6)
        assert [(r.offset, r.value) for r in records] == [(i, b"%d" % i) for i in range(4, 10)]
    # A consumer with no position and auto_offset_reset=earliest starts at the new low mark,
    # also after a seek below it (OFFSET_OUT_OF_RANGE -> reset).
    with consumer(broker.bootstrap) as c:
        records = consume_n(c, {tp0: 0}, 6)
        assert [r.offset for r in records] == list(range(4, 10))
    # Survives a restart.
    broker.restart()
    with consumer(broker.bootstrap) as c:
        assert c.beginning_offsets([tp0, tp1]) == {tp0: 4, tp1: 5}


# ---------------------------------------------------------------- auto-creation


@pytest.mark.timeout(120)
def test_auto_create_on_produce_and_metadata(broker: BrokerProcess, topic_name: str) -> None:
    with producer(broker.bootstrap) as p:
        md = p.send(topic_name, key=b"k", value=b"v").get(timeout=20)
        assert (md.partition, md.offset) == (0, 0)
    other = topic_name + "-meta"
    with consumer(broker.bootstrap) as c:
        records = consume_n(c, {TopicPartition(topic_name, 0): 0}, 1)
        assert [(r.key, r.value) for r in records] == [(b"k", b"v")]
    with consumer(broker.bootstrap) as c:
        # Assigning an unknown topic makes the consumer ask metadata for it (with
        # allow_auto_topic_creation): that creates it, and it is empty.
        tp = TopicPartition(other, 0)
        assert consume_n(c, {tp: 0}, 1, timeout=3) == []
        assert c.end_offsets([tp]) == {tp: 0}
    with admin_client(broker.bootstrap) as admin:
        assert sorted(admin.list_topics()) == sorted([topic_name, other])
        for desc in admin.describe_topics([topic_name, other]):
            assert len(desc["partitions"]) == 1
        # The admin's own metadata requests do not auto-create.
        assert admin.describe_topics([topic_name + "-admin"])[0]["error_code"] == \
            UnknownTopicOrPartitionError.errno
        assert topic_name + "-admin" not in admin.list_topics()


@pytest.mark.timeout(120)
@pytest.mark.broker_config(**{"auto.create.topics.enable": "false"})
def test_auto_create_disabled(broker: BrokerProcess, topic_name: str) -> None:
    with producer(broker.bootstrap, max_block_ms=2000) as p:
        with pytest.raises((KafkaTimeoutError, UnknownTopicOrPartitionError)):
            p.send(topic_name, value=b"v").get(timeout=10)
    with consumer(broker.bootstrap) as c:
        assert not c.partitions_for_topic(topic_name)
    with admin_client(broker.bootstrap) as admin:
        assert topic_name not in admin.list_topics()
        (desc,) = admin.describe_topics([topic_name])
        assert desc["error_code"] == UnknownTopicOrPartitionError.errno
        # Explicit creation still works.
        create_topic(admin, topic_name, 1)
    with producer(broker.bootstrap, max_block_ms=5000) as p:
        assert p.send(topic_name, value=b"v").get(timeout=10).offset == 0


@pytest.mark.timeout(120)
@pytest.mark.broker_config(**{"num.partitions": "3"})
def test_auto_create_uses_num_partitions(broker: BrokerProcess, topic_name: str) -> None:
    with producer(broker.bootstrap) as p:
        md = p.send(topic_name, value=b"v", partition=2).get(timeout=20)
        assert (md.partition, md.offset) == (2, 0)
        assert p.partitions_for(topic_name) == {0, 1, 2}
    with admin_client(broker.bootstrap) as admin:
        (desc,) = admin.describe_topics([topic_name])
        assert len(desc["partitions"]) == 3
        # An explicit create with default partitions (-1) also gets num.partitions.
        res = admin.create_topics([topic_name + "-x"], wait_for_metadata=True)
        assert res["topics"][0]["num_partitions"] == 3
    with consumer(broker.bootstrap) as c:
        records = consume_n(c, {TopicPartition(topic_name, 2): 0}, 1)
        assert [(r.partition, r.value) for r in records] == [(2, b"v")]


# ---------------------------------------------------------------- exact answers (raw protocol)
# Requests built with kafka-python's own protocol classes, sent through the admin client's
# connection (send_raw) or a bare socket (raw_exchange): what kafka-python's high-level API
# hides, compared with what Kafka 3.9 (ZooKeeper mode) answers.

LEADER_NOT_AVAILABLE = 5


def _metadata_for(admin: Any, name: str, auto: bool) -> Any:
    (topic,) = send_raw(admin, MetadataRequest(
        topics=[MetadataRequest.MetadataRequestTopic(name=name)],
        allow_auto_topic_creation=auto)).topics
    return topic


@pytest.mark.timeout(120)
def test_metadata_without_auto_create_flag(broker: BrokerProcess, topic_name: str) -> None:
    with admin_client(broker.bootstrap) as admin:
        topic = _metadata_for(admin, topic_name, auto=False)
        assert (topic.error_code, topic.name, topic.partitions) == (
            UnknownTopicOrPartitionError.errno, topic_name, [])
        assert topic_name not in admin.list_topics()
        topic = _metadata_for(admin, "bad name!", auto=True)
        assert topic.error_code == InvalidTopicError.errno
        assert admin.list_topics() == []


@pytest.mark.timeout(120)
def test_metadata_auto_create_first_answer_is_leader_not_available(
        broker: BrokerProcess, topic_name: str) -> None:
    with admin_client(broker.bootstrap) as admin:
        first = _metadata_for(admin, topic_name, auto=True)
        # Kafka (ZooKeeper mode, DefaultAutoTopicCreationManager.createTopicsInZk): the topic
        # is created but the answer is LEADER_NOT_AVAILABLE; the client retries.
        assert (first.error_code, first.name, first.partitions) == (
            LEADER_NOT_AVAILABLE, topic_name, [])
        admin.wait_for_topics([topic_name])
        second = _metadata_for(admin, topic_name, auto=True)
        assert second.error_code == 0
        assert [p.partition_index for p in second.partitions] == [0]


@pytest.mark.timeout(120)
def test_topic_config_error_messages(broker: BrokerProcess, topic_name: str) -> None:
    lag_conflict = ("conflict topic config setting min.compaction.lag.ms (100) > "
                    "max.compaction.lag.ms (50)")
    with admin_client(broker.bootstrap) as admin:
        res = admin.create_topics(
            {topic_name + "-a": {"num_partitions": 1, "replication_factor": 1,
                                 "configs": {"foo.bar": "1"}},
             topic_name + "-b": {"num_partitions": 1, "replication_factor": 1,
                                 "configs": {"retention.ms": "abc"}},
             topic_name + "-c": {"num_partitions": 1, "replication_factor": 1,
                                 "configs": {"min.compaction.lag.ms": "100",
                                             "max.compaction.lag.ms": "50"}}},
            raise_errors=False)
        got = {t["name"]: (t["error_code"], t["error_message"]) for t in res["topics"]}
        assert got == {
            # LogConfig.validateNames: InvalidConfigurationException, message as is.
            topic_name + "-a": (40, "Unknown topic config name: foo.bar"),
            # ConfigDef.parse: ConfigException, wrapped into INVALID_CONFIG with its message.
            topic_name + "-b": (40, "Invalid value abc for configuration retention.ms: "
                                    "Not a number of type LONG"),
            # LogConfig.validateValues: InvalidConfigurationException, message as is.
            topic_name + "-c": (40, lag_conflict),
        }
        create_topic(admin, topic_name, 1)
        res = admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic_name, {"foo.bar": "1"})],
            raise_on_unknown=False, incremental=True)
        assert res == {"topic": {topic_name: "[Error 40] InvalidConfigurationError: "
                                             "Unknown topic config name: foo.bar"}}


@pytest.mark.timeout(120)
def test_missing_topic_error_messages(broker: BrokerProcess, topic_name: str) -> None:
    missing = "nope-" + topic_name
    with admin_client(broker.bootstrap) as admin:
        for incremental in (True, False):
            res = admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, missing, {"retention.ms": "1000"})],
                raise_on_unknown=False, incremental=incremental)
            assert res == {"topic": {missing: "[Error 3] UnknownTopicOrPartitionError: "
                                              f"The topic '{missing}' does not exist."}}
        res = admin.create_partitions({missing: 2}, raise_errors=False)
        assert [(r.error_code, r.error_message) for r in res.results] == [
            (3, f"The topic '{missing}' does not exist.")]
        res = admin.delete_topics([missing], raise_errors=False)
        assert [(t["error_code"], t["error_message"]) for t in res["topics"]] == [(3, None)]
        resp = send_raw(admin, DescribeConfigsRequest(
            resources=[(ConfigResourceType.TOPIC, missing, None)], include_synonyms=False))
        assert [(r.error_code, r.error_message) for r in resp.results] == [(3, None)]


@pytest.mark.timeout(120)
def test_replica_assignment_gap_message(broker: BrokerProcess, topic_name: str) -> None:
    with admin_client(broker.bootstrap) as admin:
        res = admin.create_topics({topic_name: {"assignments": {0: [1], 2: [1]}}},
                                  raise_errors=False)
        assert [(t["error_code"], t["error_message"]) for t in res["topics"]] == [
            (39, "partitions should be a consecutive 0-based integer sequence")]


def _produce_acks0(topic: str, partition: int, value: bytes) -> Any:
    data = ProduceRequest.TopicProduceData
    return ProduceRequest(acks=0, timeout_ms=5000, version=9, topic_data=[data(
        name=topic, partition_data=[data.PartitionProduceData(
            index=partition, records=record_batch(value))])])


@pytest.mark.timeout(120)
def test_acks0_produce_gets_no_response(broker: BrokerProcess, topic_name: str) -> None:
    with admin_client(broker.bootstrap) as admin:
        create_topic(admin, topic_name, 1)
    metadata = MetadataRequest(topics=[], allow_auto_topic_creation=False, version=9)
    got, closed = raw_exchange("127.0.0.1", broker.port, [
        _produce_acks0(topic_name, 0, b"a"), _produce_acks0(topic_name, 0, b"b"), metadata])
    # The only answer on the connection is the Metadata one (correlation id 3).
    assert not closed
    assert [cid for cid, _ in got] == [3]
    with consumer(broker.bootstrap) as c:
        records = consume_n(c, {TopicPartition(topic_name, 0): 0}, 2)
    assert [(r.offset, r.value) for r in records] == [(0, b"a"), (1, b"b")]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("where", ["unknown-topic", "unknown-partition"])
def test_acks0_produce_error_closes_connection(broker: BrokerProcess, topic_name: str,
                                               where: str) -> None:
    with admin_client(broker.bootstrap) as admin:
        create_topic(admin, topic_name, 1)
    target = (topic_name + "-nope", 0) if where == "unknown-topic" else (topic_name, 5)
    metadata = MetadataRequest(topics=[], allow_auto_topic_creation=False, version=9)
    got, closed = raw_exchange("127.0.0.1", broker.port,
                               [_produce_acks0(*target, b"x"), metadata])
    # Kafka (KafkaApis.handleProduceRequest, acks=0 with an error): close the connection
    # before the next request on it is read.
    assert (got, closed) == ([], True)
