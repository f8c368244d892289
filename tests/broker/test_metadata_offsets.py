"""Metadata, ListOffsets, OffsetForLeaderEpoch, DescribeLogDirs and DeleteRecords semantics."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from pykbroker.error_codes import ErrorCode
from pykbroker.protocol._generated.delete_records_request import (
    DeleteRecordsPartition,
    DeleteRecordsRequest,
    DeleteRecordsTopic,
)
from pykbroker.protocol._generated.describe_log_dirs_request import DescribeLogDirsRequest
from pykbroker.protocol._generated.list_offsets_request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from pykbroker.protocol._generated.metadata_request import MetadataRequest, MetadataRequestTopic
from pykbroker.protocol._generated.offset_for_leader_epoch_request import (
    OffsetForLeaderEpochRequest,
    OffsetForLeaderPartition,
    OffsetForLeaderTopic,
)
from pykbroker.protocol._generated.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from pykbroker.records import NewRecord, build_batch
from tests.broker.harness import Client, running_broker


def _meta(*names: str, auto: bool = True) -> MetadataRequest:
    return MetadataRequest([MetadataRequestTopic(name=n) for n in names],
                           allow_auto_topic_creation=auto)


@pytest.mark.trio
async def test_metadata_auto_creation_and_versions(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **{"num.partitions": 3}) as broker:
        c = await Client.connect(broker)
        resp = await c.send(3, 12, _meta("auto1"))
        # The creating request is answered LEADER_NOT_AVAILABLE, as Kafka does.
        assert resp.topics[0].error_code == ErrorCode.LEADER_NOT_AVAILABLE
        assert resp.topics[0].partitions == []
        resp = await c.send(3, 12, _meta("auto1"))
        t = resp.topics[0]
        assert t.error_code == 0 and len(t.partitions) == 3 and t.topic_id != uuid.UUID(int=0)
        assert resp.cluster_id == broker.services.cluster_id  # type: ignore[union-attr]
        assert resp.controller_id == 1 and resp.brokers[0].port == broker.bound_ports["PLAINTEXT"]
        # The request flag turns auto-creation off (v4+).
        resp = await c.send(3, 12, _meta("auto2", auto=False))
        assert resp.topics[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        # v0: an empty list means every topic; v1+: null means every topic.
        resp = await c.send(3, 0, MetadataRequest([]))
        assert [t.name for t in resp.topics] == ["auto1"]
        resp = await c.send(3, 1, MetadataRequest(None))
        assert [t.name for t in resp.topics] == ["auto1"]
        # By topic id (v12: name null).
        tid = (await c.send(3, 12, _meta("auto1"))).topics[0].topic_id
        resp = await c.send(3, 12, MetadataRequest([MetadataRequestTopic(topic_id=tid, name=None)]))
        assert resp.topics[0].name == "auto1"
        resp = await c.send(3, 12, MetadataRequest([MetadataRequestTopic(topic_id=uuid.uuid4(),
                                                                         name=None)]))
        assert resp.topics[0].error_code == ErrorCode.UNKNOWN_TOPIC_ID
        # An illegal name is refused, not created.
        resp = await c.send(3, 12, _meta("bad name!"))
        assert resp.topics[0].error_code == ErrorCode.INVALID_TOPIC_EXCEPTION
        await c.aclose()


@pytest.mark.trio
async def test_auto_creation_disabled_by_config(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **{"auto.create.topics.enable": "false"}) as broker:
        c = await Client.connect(broker)
        resp = await c.send(3, 12, _meta("nope"))
        assert resp.topics[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        assert broker.services.topics.get("nope") is None  # type: ignore[union-attr]
        await c.aclose()


async def _produce(c: Client, topic: str, timestamps: list[int]) -> None:
    batch = build_batch([NewRecord(b"k", b"v", timestamp=ts) for ts in timestamps])
    resp = await c.send(0, 9, ProduceRequest(None, 1, 5000, [TopicProduceData(topic, [
        PartitionProduceData(0, batch)])]))
    assert resp.responses[0].partition_responses[0].error_code == 0


async def _list(c: Client, topic: str, ts: int, version: int = 9) -> tuple[int, int, int]:
    resp = await c.send(2, version, ListOffsetsRequest(-1, 0, [ListOffsetsTopic(topic, [
        ListOffsetsPartition(0, timestamp=ts)])]))
    p = resp.topics[0].partitions[0]
    return p.error_code, p.timestamp, p.offset


@pytest.mark.trio
async def test_list_offsets_and_leader_epochs(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as broker:
        c = await Client.connect(broker)
        await c.send(3, 12, _meta("lo"))
        base = int(time.time() * 1000) - 100_000
        await _produce(c, "lo", [base + 10, base + 30, base + 20])   # offsets 0-2
        await _produce(c, "lo", [base + 50, base + 40])              # offsets 3-4
        assert await _list(c, "lo", -2) == (0, -1, 0)
        assert await _list(c, "lo", -1) == (0, -1, 5)
        assert await _list(c, "lo", -3) == (0, base + 50, 3)         # max timestamp
        assert await _list(c, "lo", base + 15) == (0, base + 30, 1)
        assert await _list(c, "lo", base + 35) == (0, base + 50, 3)
        assert await _list(c, "lo", base + 999) == (0, -1, -1)
        assert (await _list(c, "missing", -1))[0] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        for version in range(1, 10):  # every served version encodes (leader epoch from v4)
            assert await _list(c, "lo", -1, version) == (0, -1, 5)
        # OffsetForLeaderEpoch: the current epoch ends at the log end offset.
        resp = await c.send(23, 4, OffsetForLeaderEpochRequest(-1, [OffsetForLeaderTopic(
            "lo", [OffsetForLeaderPartition(0, -1, 0)])]))
        p = resp.topics[0].partitions[0]
        assert (p.error_code, p.leader_epoch, p.end_offset) == (0, 0, 5)
        # DeleteRecords raises the log start offset; ListOffsets earliest follows.
        resp = await c.send(21, 2, DeleteRecordsRequest([DeleteRecordsTopic("lo", [
            DeleteRecordsPartition(0, 2)])], 5000))
        assert resp.topics[0].partitions[0].low_watermark == 2
        assert await _list(c, "lo", -2) == (0, -1, 2)
        resp = await c.send(21, 2, DeleteRecordsRequest([DeleteRecordsTopic("lo", [
            DeleteRecordsPartition(0, 99)])], 5000))
        assert resp.topics[0].partitions[0].error_code == ErrorCode.OFFSET_OUT_OF_RANGE
        # DescribeLogDirs reports the partition and its size.
        resp = await c.send(35, 4, DescribeLogDirsRequest(None))
        dirs = resp.results
        assert len(dirs) == 1 and dirs[0].total_bytes > 0
        part = dirs[0].topics[0].partitions[0]
        assert dirs[0].topics[0].name == "lo" and part.partition_size > 0
        await c.aclose()
