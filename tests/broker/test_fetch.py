"""Fetch through a real socket: whole batches, limits, long poll, topic ids, sessions."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import trio

from pykbroker.error_codes import ErrorCode
from pykbroker.file_slice import FileSlice
from pykbroker.protocol._generated.create_topics_request import CreatableTopic, CreateTopicsRequest
from pykbroker.protocol._generated.fetch_request import (
    FetchPartition,
    FetchRequest,
    FetchTopic,
    ForgottenTopic,
)
from pykbroker.protocol._generated.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from pykbroker.records import NewRecord, build_batch, iter_batches, iter_records
from tests.broker.harness import Client, running_broker


async def _setup(c: Client, name: str = "f", partitions: int = 2) -> uuid.UUID:
    resp = await c.send(19, 7, CreateTopicsRequest([CreatableTopic(name, partitions, 1)]))
    assert resp.topics[0].error_code == 0
    return resp.topics[0].topic_id  # type: ignore[no-any-return]


async def _produce(c: Client, topic: str, partition: int, n: int, size: int = 10) -> int:
    batch = build_batch([NewRecord(b"k", b"x" * size) for _ in range(n)])
    resp = await c.send(0, 9, ProduceRequest(None, 1, 5000, [TopicProduceData(topic, [
        PartitionProduceData(partition, batch)])]))
    part = resp.responses[0].partition_responses[0]
    assert part.error_code == 0
    return part.base_offset  # type: ignore[no-any-return]


def _fetch(topic: str, offsets: dict[int, int], *, version: int = 12, max_bytes: int = 1 << 20,
           part_max: int = 1 << 20, wait: int = 0, min_bytes: int = 1,
           session: tuple[int, int] = (0, -1), topic_id: uuid.UUID | None = None,
           forgotten: list[ForgottenTopic] | None = None) -> FetchRequest:
    parts = [FetchPartition(partition=p, fetch_offset=o, partition_max_bytes=part_max)
             for p, o in offsets.items()]
    topics = [FetchTopic(topic=topic if version < 13 else "",
                         topic_id=topic_id or uuid.UUID(int=0), partitions=parts)] if parts else []
    return FetchRequest(max_wait_ms=wait, min_bytes=min_bytes, max_bytes=max_bytes,
                        session_id=session[0], session_epoch=session[1], topics=topics,
                        forgotten_topics_data=forgotten or [])


def _offsets(records: bytes | memoryview | None) -> list[int]:
    data = bytes(records or b"")
    return [r.offset for pos, h in iter_batches(data) for r in iter_records(data[pos:pos + h.size])]


@pytest.mark.trio
async def test_whole_batches_and_limits(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as broker:
        c = await Client.connect(broker)
        await _setup(c)
        await _produce(c, "f", 0, 5)          # offsets 0-4
        await _produce(c, "f", 0, 5, 3000)    # offsets 5-9, ~15 KB batch
        await _produce(c, "f", 0, 5)          # offsets 10-14
        # An offset inside a batch returns that whole batch.
        resp = await c.send(1, 12, _fetch("f", {0: 7}))
        data = resp.responses[0].partitions[0]
        assert _offsets(data.records)[:1] == [5] and data.high_watermark == 15
        # A limit below the first batch's size still returns that batch whole, and no more.
        resp = await c.send(1, 12, _fetch("f", {0: 5}, max_bytes=100, part_max=100))
        assert _offsets(resp.responses[0].partitions[0].records) == [5, 6, 7, 8, 9]
        # Out of range.
        resp = await c.send(1, 12, _fetch("f", {0: 99}))
        assert resp.responses[0].partitions[0].error_code == ErrorCode.OFFSET_OUT_OF_RANGE
        # Only the first partition with data may exceed the limit.
        await _produce(c, "f", 1, 5, 3000)
        resp = await c.send(1, 12, _fetch("f", {0: 5, 1: 0}, max_bytes=100, part_max=100000))
        sizes = [len(p.records or b"") for p in resp.responses[0].partitions]
        assert sizes[0] > 100 and sizes[1] == 0
        await c.aclose()


@pytest.mark.trio
async def test_long_poll_wakes_on_append(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as broker:
        c = await Client.connect(broker)
        producer = await Client.connect(broker)
        await _setup(c)
        result: dict[str, float] = {}

        async def waiting_fetch() -> None:
            start = trio.current_time()
            resp = await c.send(1, 12, _fetch("f", {0: 0}, wait=10_000))
            result["elapsed"] = trio.current_time() - start
            result["records"] = len(_offsets(resp.responses[0].partitions[0].records))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiting_fetch)
            await trio.sleep(0.3)
            await _produce(producer, "f", 0, 3)
        assert result["records"] == 3
        assert 0.25 < result["elapsed"] < 5.0  # woken by the append, not by max_wait
        # With nothing to read, max_wait_ms bounds the wait.
        start = trio.current_time()
        await c.send(1, 12, _fetch("f", {1: 0}, wait=200))
        assert 0.15 < trio.current_time() - start < 3.0
        await c.aclose()
        await producer.aclose()


@pytest.mark.trio
async def test_topic_ids_from_v13(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as broker:
        c = await Client.connect(broker)
        tid = await _setup(c)
        await _produce(c, "f", 0, 2)
        resp = await c.send(1, 13, _fetch("f", {0: 0}, version=13, topic_id=tid))
        assert resp.responses[0].topic_id == tid
        assert _offsets(resp.responses[0].partitions[0].records) == [0, 1]
        resp = await c.send(1, 13, _fetch("f", {0: 0}, version=13, topic_id=uuid.uuid4()))
        assert resp.responses[0].partitions[0].error_code == ErrorCode.UNKNOWN_TOPIC_ID
        await c.aclose()


@pytest.mark.trio
async def test_incremental_fetch_sessions(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as broker:
        c = await Client.connect(broker)
        await _setup(c)
        await _produce(c, "f", 0, 2)
        # A full fetch that opens a session (epoch 0).
        full = await c.send(1, 12, _fetch("f", {0: 0, 1: 0}, session=(0, 0)))
        sid = full.session_id
        assert sid != 0 and len(full.responses[0].partitions) == 2
        # Incremental with nothing new: no partitions at all.
        inc = await c.send(1, 12, _fetch("f", {0: 2}, session=(sid, 1)))
        assert inc.error_code == 0 and inc.responses == []
        # New data on partition 1 (not named in the request): reported.
        await _produce(c, "f", 1, 3)
        inc = await c.send(1, 12, _fetch("f", {}, session=(sid, 2)))
        parts = inc.responses[0].partitions
        assert [p.partition_index for p in parts] == [1]
        assert _offsets(parts[0].records) == [0, 1, 2] and parts[0].high_watermark == 3
        # Forget partition 1; new data there is no longer reported.
        inc = await c.send(1, 12, _fetch("f", {}, session=(sid, 3), forgotten=[
            ForgottenTopic(topic="f", partitions=[1])]))
        await _produce(c, "f", 1, 1)
        inc = await c.send(1, 12, _fetch("f", {}, session=(sid, 4)))
        assert inc.responses == []
        # Wrong epoch and unknown session.
        bad = await c.send(1, 12, _fetch("f", {}, session=(sid, 9)))
        assert bad.error_code == ErrorCode.INVALID_FETCH_SESSION_EPOCH
        bad = await c.send(1, 12, _fetch("f", {}, session=(sid + 1, 1)))
        assert bad.error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
        # Closing (epoch -1) makes a sessionless full fetch.
        closed = await c.send(1, 12, _fetch("f", {0: 0}, session=(sid, -1)))
        assert closed.session_id == 0 and len(closed.responses[0].partitions) == 1
        bad = await c.send(1, 12, _fetch("f", {}, session=(sid, 5)))
        assert bad.error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
        await c.aclose()


@pytest.mark.trio
@pytest.mark.parametrize("version", [4, 11, 12, 16])
async def test_large_batches_go_out_by_sendfile_intact(tmp_path: Path, version: int) -> None:
    """Batches of 64 KiB and more leave as FileSlices (sendfile); beside a small batch of
    another partition, in old and flexible versions, the bytes are those stored."""
    async with running_broker(tmp_path) as broker:
        c = await Client.connect(broker)
        tid = await _setup(c)
        for _ in range(3):
            await _produce(c, "f", 0, 4, 50_000)  # ~200 KB batches
        await _produce(c, "f", 1, 3)
        part = broker.services.replicas.partition("f", 0)  # type: ignore[union-attr]
        stored = bytes(part.log.read(0, 1 << 30).data)
        assert isinstance(part.log.read(0, 1 << 30, zero_copy=True).data, FileSlice)
        resp = await c.send(1, version, _fetch("f", {0: 0, 1: 0}, version=version,
                                               max_bytes=10 << 20, part_max=10 << 20,
                                               topic_id=tid))
        p0, p1 = resp.responses[0].partitions
        assert bytes(p0.records) == stored and _offsets(p0.records) == list(range(12))
        assert _offsets(p1.records) == [0, 1, 2]
        # A budget of 1.5 batches: one whole batch.
        resp = await c.send(1, version, _fetch("f", {0: 4}, version=version,
                                               max_bytes=300_000, part_max=300_000,
                                               topic_id=tid))
        assert _offsets(resp.responses[0].partitions[0].records) == [4, 5, 6, 7]
        await c.aclose()


@pytest.mark.trio
@pytest.mark.parametrize("version", [12, 15])
async def test_a_client_claiming_a_replica_id_is_refused(tmp_path: Path, version: int) -> None:
    """Only replicas fetch as replicas (CVE-2018-1288's class): a lone broker's partitions have
    no other, so a Fetch that names a replica id gets Kafka's answer for a non-replica
    (NOT_LEADER_OR_FOLLOWER) and no record."""
    from pykbroker.protocol._generated.fetch_request import ReplicaState

    async with running_broker(tmp_path) as broker:
        c = await Client.connect(broker)
        topic_id = await _setup(c, "claim", 1)
        await _produce(c, "claim", 0, 3)
        req = _fetch("claim", {0: 0}, version=version, topic_id=topic_id)
        if version >= 15:
            req.replica_state = ReplicaState(replica_id=2, replica_epoch=1)
        else:
            req.replica_id = 2
        resp = await c.send(1, version, req)
        [part] = resp.responses[0].partitions
        assert part.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
        assert not part.records
        # The same fetch as a consumer reads the records.
        req = _fetch("claim", {0: 0}, version=version, topic_id=topic_id)
        resp = await c.send(1, version, req)
        assert resp.responses[0].partitions[0].records
