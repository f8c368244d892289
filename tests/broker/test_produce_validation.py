"""Produce validation through a real socket: Kafka's partition errors and KIP-467 record
errors, and acks=0 answered with nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pykbroker.error_codes import ErrorCode
from pykbroker.protocol._generated.create_topics_request import (
    CreatableTopic,
    CreatableTopicConfig,
    CreateTopicsRequest,
)
from pykbroker.protocol._generated.metadata_request import MetadataRequest
from pykbroker.protocol._generated.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from pykbroker.records import NewRecord, build_batch
from tests.broker.harness import Client, running_broker


def _produce(topic: str, records: bytes | None, acks: int = 1) -> ProduceRequest:
    return ProduceRequest(None, acks, 5000, [TopicProduceData(topic, [
        PartitionProduceData(0, records)])])


async def _create(client: Client, name: str, **configs: str) -> None:
    resp = await client.send(19, 7, CreateTopicsRequest([CreatableTopic(name, 1, 1, configs=[
        CreatableTopicConfig(k.replace("_", "."), v) for k, v in configs.items()])]))
    assert resp.topics[0].error_code == 0, resp


@pytest.mark.trio
async def test_partition_errors(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as broker:
        c = await Client.connect(broker)
        await _create(c, "t")
        good = build_batch([NewRecord(b"k", b"v")])

        async def code(req: ProduceRequest) -> int:
            resp = await c.send(0, 9, req)
            return resp.responses[0].partition_responses[0].error_code  # type: ignore[no-any-return]

        assert await code(_produce("t", good)) == 0
        assert await code(_produce("nope", good)) == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        assert await code(_produce("t", good + good)) == ErrorCode.INVALID_RECORD
        assert await code(_produce("t", None)) == ErrorCode.INVALID_RECORD
        corrupt = bytearray(good)
        corrupt[-1] ^= 0xFF
        assert await code(_produce("t", bytes(corrupt))) == ErrorCode.CORRUPT_MESSAGE
        assert await code(_produce("t", good[:-3])) in (ErrorCode.CORRUPT_MESSAGE,
                                                        ErrorCode.INVALID_RECORD)
        assert await code(_produce("t", good, acks=2)) == ErrorCode.INVALID_REQUIRED_ACKS
        big = build_batch([NewRecord(b"k", b"x" * 2_000_000)])
        assert await code(_produce("t", big)) == ErrorCode.MESSAGE_TOO_LARGE
        await c.aclose()


@pytest.mark.trio
async def test_record_errors_kip_467(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as broker:
        c = await Client.connect(broker)
        await _create(c, "ts", message_timestamp_before_max_ms="60000")
        await _create(c, "compacted", cleanup_policy="compact")
        now = int(time.time() * 1000)
        batch = build_batch([NewRecord(b"a", b"1", timestamp=now),
                             NewRecord(b"b", b"2", timestamp=now - 3_600_000),
                             NewRecord(b"c", b"3", timestamp=now - 7_200_000)])
        part = (await c.send(0, 9, _produce("ts", batch))).responses[0].partition_responses[0]
        assert part.error_code == ErrorCode.INVALID_TIMESTAMP
        assert [e.batch_index for e in part.record_errors] == [1, 2]
        assert "out of range" in (part.record_errors[0].batch_index_error_message or "")
        batch = build_batch([NewRecord(b"a", b"1"), NewRecord(None, b"2")])
        part = (await c.send(0, 9, _produce("compacted", batch))).responses[0]\
            .partition_responses[0]
        assert part.error_code == ErrorCode.INVALID_RECORD
        assert [e.batch_index for e in part.record_errors] == [1]
        # Nothing was appended by the rejected batches.
        assert broker.services.replicas.partition("ts", 0).log_end_offset == 0  # type: ignore[union-attr]
        await c.aclose()


@pytest.mark.trio
async def test_acks_zero_gets_no_response(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as broker:
        c = await Client.connect(broker)
        await _create(c, "z")
        # Send acks=0 then a Metadata request; the first frame back answers the Metadata.
        from pykbroker.protocol.framing import encode_request

        await c.stream.send_all(encode_request(0, 9, 77, "t", _produce(
            "z", build_batch([NewRecord(b"k", b"v")]), acks=0)))
        meta = await c.send(3, 12, MetadataRequest(topics=None))
        assert [t.name for t in meta.topics] == ["z"]
        assert broker.services.replicas.partition("z", 0).log_end_offset == 1  # type: ignore[union-attr]
        await c.aclose()
