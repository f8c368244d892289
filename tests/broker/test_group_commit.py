"""flush.messages=1: acked batches are fsynced first, and concurrent appends share fsyncs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from pykbroker.protocol._generated.create_topics_request import (
    CreatableTopic,
    CreatableTopicConfig,
    CreateTopicsRequest,
)
from pykbroker.protocol._generated.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from pykbroker.records import NewRecord, build_batch
from tests.broker.harness import Client, running_broker


@pytest.mark.trio
async def test_flush_messages_one_fsyncs_before_ack_and_shares_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsyncs = 0
    real_fdatasync = os.fdatasync

    def counting_fdatasync(fd: int) -> None:
        nonlocal fsyncs
        fsyncs += 1
        import time

        time.sleep(0.005)  # a slow disk makes concurrent appends pile up behind one flush
        real_fdatasync(fd)

    async with running_broker(tmp_path) as broker:
        admin = await Client.connect(broker)
        created = await admin.send(19, 7, CreateTopicsRequest([CreatableTopic(
            "durable", 1, 1, configs=[CreatableTopicConfig("flush.messages", "1")])]))
        assert created.topics[0].error_code == 0
        monkeypatch.setattr(os, "fdatasync", counting_fdatasync)
        part = broker.services.replicas.partition("durable", 0)  # type: ignore[union-attr]
        acked: list[int] = []

        async def producer(i: int) -> None:
            client = await Client.connect(broker)
            for j in range(5):
                batch = build_batch([NewRecord(b"k", b"%d-%d" % (i, j))])
                resp = await client.send(0, 9, ProduceRequest(None, -1, 5000, [
                    TopicProduceData("durable", [PartitionProduceData(0, batch)])]))
                p = resp.responses[0].partition_responses[0]
                assert p.error_code == 0
                # Acknowledged means durable: the log data covers the batch.
                assert part.log.durable_offset > p.base_offset
                acked.append(p.base_offset)
            await client.aclose()

        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(producer, i)
        await admin.aclose()
    assert sorted(acked) == list(range(50))
    # An acknowledgement needs one fdatasync of the log file; 50 separate ones would be 50.
    assert 0 < fsyncs < 50 * 0.6, fsyncs
