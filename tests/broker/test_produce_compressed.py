"""Produce-time inspection of compressed batches through a real socket: valid batches of every
codec are stored, records that disagree with their header get INVALID_RECORD, bombs get
MESSAGE_TOO_LARGE on every topic and nothing is appended, and a large batch is checked in a
worker thread while the event loop keeps answering other connections."""

from __future__ import annotations

import os
import threading
import zlib
from pathlib import Path
from typing import Any

import pytest
import trio

from pykbroker.error_codes import ErrorCode
from pykbroker.handlers import produce as produce_handler
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
from pykbroker.records import GZIP, LZ4, SNAPPY, ZSTD, NewRecord, build_batch, compress
from tests.broker.harness import Client, running_broker
from tests.records.helpers import raw_batch, raw_record, zz

CODECS = [GZIP, SNAPPY, LZ4, ZSTD]
CODEC_IDS = ["gzip", "snappy", "lz4", "zstd"]


def _produce(topic: str, records: bytes, acks: int = 1) -> ProduceRequest:
    return ProduceRequest(None, acks, 5000, [TopicProduceData(topic, [
        PartitionProduceData(0, records)])])


async def _create(client: Client, name: str, **configs: str) -> None:
    resp = await client.send(19, 7, CreateTopicsRequest([CreatableTopic(name, 1, 1, configs=[
        CreatableTopicConfig(k.replace("_", "."), v) for k, v in configs.items()])]))
    assert resp.topics[0].error_code == 0, resp


async def _answer(client: Client, req: ProduceRequest) -> Any:
    resp = await client.send(0, 9, req)
    return resp.responses[0].partition_responses[0]


def _leo(broker: Any, topic: str) -> int:
    return int(broker.services.replicas.partition(topic, 0).log_end_offset)


def _gzip_bomb(inflated: int) -> bytes:
    """One record declaring ``inflated`` bytes of zero value, gzip-compressed (~1000:1)."""
    head = zz(inflated) + b"\x00\x00\x00\x01" + zz(inflated - 5)
    gz = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [gz.compress(head)]
    block = bytes(1 << 20)
    parts += [gz.compress(block) for _ in range(inflated >> 20)]
    parts.append(gz.flush())
    return raw_batch(b"".join(parts), 1, attributes=GZIP)


@pytest.mark.trio
@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
async def test_valid_and_invalid_compressed_batches(tmp_path: Path, codec: int) -> None:
    async with running_broker(tmp_path) as broker:
        c = await Client.connect(broker)
        await _create(c, "t")
        small = build_batch([NewRecord(b"k", b"v" * i) for i in range(50)], compression=codec)
        # Over a MiB decompressed, so finished in a worker thread.
        large = build_batch([NewRecord(b"k", os.urandom(100) * 10) for _ in range(2000)],
                            compression=codec)
        assert len(large) < 1 << 20
        assert (await _answer(c, _produce("t", small))).error_code == 0
        assert (await _answer(c, _produce("t", large))).error_code == 0
        assert _leo(broker, "t") == 2050

        records = b"".join(raw_record(b"k", b"v", offset_delta=i) for i in range(5))
        for section, count in [(records, 6), (records + b"\x00", 5)]:
            bad = raw_batch(compress(codec, section), count, attributes=codec)
            part = await _answer(c, _produce("t", bad))
            assert part.error_code == ErrorCode.INVALID_RECORD
            assert part.error_message
        big_section = b"".join(raw_record(b"k", os.urandom(100) * 10, offset_delta=i)
                               for i in range(2000))
        assert len(big_section) > produce_handler.INLINE_DECOMPRESSED
        bad = raw_batch(compress(codec, big_section), 2001, attributes=codec)
        part = await _answer(c, _produce("t", bad))
        assert part.error_code == ErrorCode.INVALID_RECORD
        assert "declares 2001 records" in part.error_message
        truncated = raw_batch(compress(codec, records)[:-6], 5, attributes=codec)
        assert (await _answer(c, _produce("t", truncated))).error_code in (
            ErrorCode.CORRUPT_MESSAGE, ErrorCode.INVALID_RECORD)
        assert _leo(broker, "t") == 2050
        await c.aclose()


@pytest.mark.trio
async def test_bomb_is_refused_on_every_topic(tmp_path: Path) -> None:
    """A gzip batch of ~300 KB inflating to 300 MiB: MESSAGE_TOO_LARGE on an ordinary, a
    compacted and a timestamp-checked topic, nothing appended; acks=0 closes the connection."""
    bomb = _gzip_bomb(300 << 20)
    assert len(bomb) < 1 << 20
    async with running_broker(tmp_path) as broker:
        c = await Client.connect(broker)
        await _create(c, "plain")
        await _create(c, "compacted", cleanup_policy="compact")
        await _create(c, "stamped", message_timestamp_before_max_ms="60000")
        for topic in ("plain", "compacted", "stamped"):
            part = await _answer(c, _produce(topic, bomb))
            assert part.error_code == ErrorCode.MESSAGE_TOO_LARGE, (topic, part)
            assert "limit on decompressed batches" in part.error_message
            assert _leo(broker, topic) == 0
        await c.send_only(0, 9, _produce("plain", bomb, acks=0))
        with pytest.raises((EOFError, trio.BrokenResourceError)):
            await c.receive(0, 9)
        assert _leo(broker, "plain") == 0


@pytest.mark.trio
async def test_large_check_runs_off_the_event_loop(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """While a large batch's check is held in its worker thread, another connection's produce
    is answered; then the held one completes normally."""
    entered, release = threading.Event(), threading.Event()
    original = produce_handler._finish_checks

    def held(pending: Any) -> Any:
        entered.set()
        release.wait(30)
        return original(pending)

    monkeypatch.setattr(produce_handler, "_finish_checks", held)
    large = build_batch([NewRecord(b"k", os.urandom(100) * 10) for _ in range(2000)],
                        compression=LZ4)
    small = build_batch([NewRecord(b"k", b"v")], compression=LZ4)
    async with running_broker(tmp_path) as broker:
        a = await Client.connect(broker)
        b = await Client.connect(broker)
        await _create(a, "t")
        try:
            corr = await a.send_only(0, 9, _produce("t", large))
            assert await trio.to_thread.run_sync(entered.wait, 30)
            part = await _answer(b, _produce("t", small))
            assert (part.error_code, part.base_offset) == (0, 0)
        finally:
            release.set()
        got, resp = await a.receive(0, 9)
        assert got == corr
        part = resp.responses[0].partition_responses[0]
        assert (part.error_code, part.base_offset) == (0, 1)
        assert _leo(broker, "t") == 2001
        await a.aclose()
        await b.aclose()


@pytest.mark.trio
async def test_inline_budget_is_per_request(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Several partitions' batches in one request share the inline budget: past it, the rest
    are checked in the worker thread, each with its own outcome."""
    threaded: list[int] = []
    original = produce_handler._finish_checks

    def counting(pending: Any) -> Any:
        threaded.append(len(pending))
        return original(pending)

    monkeypatch.setattr(produce_handler, "_finish_checks", counting)
    records = [NewRecord(b"k", os.urandom(100) * 6) for _ in range(1000)]  # ~600 KB each
    good = build_batch(records, compression=ZSTD)
    section = b"".join(raw_record(b"k", os.urandom(100) * 6, offset_delta=i) for i in range(1000))
    bad = raw_batch(compress(ZSTD, section), 999, attributes=ZSTD)
    async with running_broker(tmp_path) as broker:
        c = await Client.connect(broker)
        resp = await c.send(19, 7, CreateTopicsRequest([CreatableTopic("m", 4, 1)]))
        assert resp.topics[0].error_code == 0
        req = ProduceRequest(None, 1, 5000, [TopicProduceData("m", [
            PartitionProduceData(0, good), PartitionProduceData(1, good),
            PartitionProduceData(2, bad), PartitionProduceData(3, good)])])
        parts = (await c.send(0, 9, req)).responses[0].partition_responses
        assert [p.error_code for p in parts] == [0, 0, ErrorCode.INVALID_RECORD, 0]
        assert threaded == [3], "the first batch used most of the budget, the rest threaded"
        assert [int(broker.services.replicas.partition("m", i).log_end_offset)
                for i in range(4)] == [1000, 1000, 0, 1000]
        await c.aclose()
