"""flush.messages=1: acked batches are fsynced first, and concurrent appends share fsyncs."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
import trio

from pykbroker.protocol._generated.api_versions_request import ApiVersionsRequest
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


async def _durable_topic(broker: Any, name: str, partitions: int) -> None:
    admin = await Client.connect(broker)
    created = await admin.send(19, 7, CreateTopicsRequest([CreatableTopic(
        name, partitions, 1, configs=[CreatableTopicConfig("flush.messages", "1")])]))
    assert created.topics[0].error_code == 0
    await admin.aclose()


def _produce(topic: str, partition: int, value: bytes) -> ProduceRequest:
    batch = build_batch([NewRecord(b"k", value)])
    return ProduceRequest(None, -1, 5000, [
        TopicProduceData(topic, [PartitionProduceData(partition, batch)])])


def _stick_fdatasync(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """From now on fdatasync waits (in its worker thread) until the returned gate is set."""
    gate = threading.Event()
    real_fdatasync = os.fdatasync

    def stuck_fdatasync(fd: int) -> None:
        gate.wait(10)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", stuck_fdatasync)
    return gate


@pytest.mark.trio
async def test_next_request_is_served_while_a_produce_waits_for_its_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pipelined requests: the second produce is appended while the first one's fsync is
    stuck, yet no response overtakes the first, and all arrive in request order."""
    async with running_broker(tmp_path) as broker:
        await _durable_topic(broker, "pipelined", 2)
        gate = _stick_fdatasync(monkeypatch)
        replicas = broker.services.replicas  # type: ignore[union-attr]
        p0, p1 = replicas.partition("pipelined", 0), replicas.partition("pipelined", 1)
        client = await Client.connect(broker)
        corrs = [await client.send_only(0, 9, _produce("pipelined", 0, b"first")),
                 await client.send_only(0, 9, _produce("pipelined", 1, b"second")),
                 await client.send_only(18, 3, ApiVersionsRequest("t", "1"))]
        with trio.fail_after(5):
            while p1.log.log_end_offset < 1:  # the second request was served...
                await trio.sleep(0.01)
        assert p0.log.log_end_offset == 1
        assert p0.log.durable_offset == 0  # ...while the first is still not on disk
        with trio.move_on_after(0.2):
            await client.stream.receive_some(1)
            pytest.fail("a response left before the first produce was durable")
        gate.set()
        got = []
        with trio.fail_after(10):
            for api_key, version in ((0, 9), (0, 9), (18, 3)):
                corr, resp = await client.receive(api_key, version)
                got.append(corr)
                if api_key == 0:
                    assert resp.responses[0].partition_responses[0].error_code == 0
                else:
                    assert resp.error_code == 0
        assert got == corrs
        assert p0.log.durable_offset == 1 and p1.log.durable_offset == 1
        await client.aclose()


@pytest.mark.trio
async def test_failed_fsync_fails_the_partition_and_the_connection_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fdatasync = os.fdatasync
    failures = [OSError(5, "Input/output error")]

    def failing_fdatasync(fd: int) -> None:
        if failures:
            raise failures.pop()
        real_fdatasync(fd)

    async with running_broker(tmp_path) as broker:
        await _durable_topic(broker, "eio", 1)
        monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
        client = await Client.connect(broker)
        resp = await client.send(0, 9, _produce("eio", 0, b"lost?"))
        p = resp.responses[0].partition_responses[0]
        assert p.error_code == 56 and p.base_offset == -1  # KAFKA_STORAGE_ERROR
        assert "Input/output error" in p.error_message
        resp = await client.send(0, 9, _produce("eio", 0, b"retried"))
        p = resp.responses[0].partition_responses[0]
        assert p.error_code == 0 and p.base_offset == 1
        part = broker.services.replicas.partition("eio", 0)  # type: ignore[union-attr]
        assert part.log.durable_offset == 2  # the retry's fsync covered the first batch too
        await client.aclose()


@pytest.mark.trio
async def test_a_bad_request_behind_a_waiting_produce_still_lets_its_answer_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_broker(tmp_path) as broker:
        await _durable_topic(broker, "answered", 1)
        gate = _stick_fdatasync(monkeypatch)
        part = broker.services.replicas.partition("answered", 0)  # type: ignore[union-attr]
        first, second = await Client.connect(broker), await Client.connect(broker)
        await first.send_only(0, 9, _produce("answered", 0, b"starts the fsync"))
        corr = await second.send_only(0, 9, _produce("answered", 0, b"waits for the next"))
        with trio.fail_after(5):
            while part.log.log_end_offset < 2:
                await trio.sleep(0.01)
        await second.stream.send_all(b"\x00\x00\x00\x02\xff\xff")  # a header cut short
        await trio.sleep(0.1)
        gate.set()
        with trio.fail_after(10):
            got, resp = await second.receive(0, 9)
            assert got == corr and resp.responses[0].partition_responses[0].error_code == 0
            assert await second.stream.receive_some(1) == b""  # then the connection closes
            await first.receive(0, 9)
        await first.aclose()
        await second.aclose()


@pytest.mark.trio
async def test_at_most_max_deferred_produce_requests_wait_per_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection keeps reading while produces wait for their acknowledgement, up to
    MAX_DEFERRED of them; the next request waits unread until the oldest is answered, and
    every response still leaves in request order."""
    from pykbroker.server.connection import MAX_DEFERRED

    async with running_broker(tmp_path) as broker:
        await _durable_topic(broker, "deep", 1)
        gate = _stick_fdatasync(monkeypatch)
        part = broker.services.replicas.partition("deep", 0)  # type: ignore[union-attr]
        client = await Client.connect(broker)
        sent = MAX_DEFERRED + 3
        corrs = [await client.send_only(0, 9, _produce("deep", 0, b"%d" % i))
                 for i in range(sent)]
        with trio.fail_after(5):
            while part.log.log_end_offset < MAX_DEFERRED:
                await trio.sleep(0.01)
        await trio.sleep(0.3)
        # The request after the MAX_DEFERRED waiting ones has not been read (nor appended).
        assert part.log.log_end_offset == MAX_DEFERRED
        gate.set()
        got, offsets = [], []
        with trio.fail_after(10):
            for _ in range(sent):
                corr, resp = await client.receive(0, 9)
                p = resp.responses[0].partition_responses[0]
                assert p.error_code == 0
                got.append(corr)
                offsets.append(p.base_offset)
        assert got == corrs and offsets == list(range(sent))
        await client.aclose()
