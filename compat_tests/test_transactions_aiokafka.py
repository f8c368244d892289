"""aiokafka idempotent and transactional producers against a real pykbroker (each test drives
its coroutine with asyncio.run).

- An idempotent producer behind a proxy that drops connections and responses (so retries
  re-send batches the broker already appended) still delivers every record exactly once
  and in order.
- Transactions spanning 3 partitions (``async with producer.transaction()``, an exception
  inside aborts): read_committed consumers see only committed records, read_uncommitted
  ones see aborted records too; an open transaction holds the last stable offset back.
- Consume-transform-produce: send_offsets_to_transaction() commits the group's offsets only
  when the transaction commits.
- A second producer with the same transactional_id aborts the first one's open transaction
  and fences it: the first one's commit raises ProducerFenced.

Client limitations (aiokafka 0.14): the transactional APIs are sent at version 0
(InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit), so
send_offsets_to_transaction() takes a bare group id and carries no generation/member id
(no KIP-447 fencing of zombie consumers), and fencing must come back as the pre-KIP-588
INVALID_PRODUCER_EPOCH, the only code aiokafka maps to ProducerFenced (Kafka downgrades
PRODUCER_FENCED to it below InitProducerId v4 and AddPartitionsToTxn / AddOffsetsToTxn /
EndTxn v2).

That v0 TxnOffsetCommit carries no member id or generation: like Kafka, the broker accepts
it whether the group has members (a subscribe()d consumer) or not (assign()).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import ProducerFenced

from compat_tests.broker_process import BrokerProcess
from compat_tests.chaos_proxy import broker_behind_proxy
from compat_tests.kp_helpers import admin_client, create_topic

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.broker_config(**{"group.initial.rebalance.delay.ms": "0"})]

PARTITIONS = 3
CLIENT: dict[str, Any] = {"request_timeout_ms": 10000}


def txn_id() -> str:
    return f"tx-{uuid.uuid4().hex[:12]}"


def run(coro_fn: Callable[[], Awaitable[None]], timeout: float = 45.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coro_fn(), timeout)

    asyncio.run(bounded())


def values(tag: str, n: int) -> dict[int, list[bytes]]:
    """``n`` values per partition, tagged."""
    return {p: [b"%s-%d-%d" % (tag.encode(), p, i) for i in range(n)] for p in range(PARTITIONS)}


def merged(*runs: dict[int, list[bytes]]) -> dict[int, list[bytes]]:
    return {p: [v for run in runs for v in run[p]] for p in range(PARTITIONS)}


async def send_by_partition(p: AIOKafkaProducer, topic: str,
                            by_partition: dict[int, list[bytes]]) -> None:
    futures = []
    for i in range(max(len(v) for v in by_partition.values())):
        for part, vals in by_partition.items():
            if i < len(vals):
                futures.append(await p.send(topic, value=vals[i], key=b"k%d" % part,
                                            partition=part))
    await asyncio.gather(*futures)


async def started_consumer(bootstrap: str, isolation_level: str, **extra: Any
                           ) -> AIOKafkaConsumer:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation_level,
                         auto_offset_reset="earliest", enable_auto_commit=False,
                         fetch_max_wait_ms=100, **{**CLIENT, **extra})
    await c.start()
    return c


async def read_all(bootstrap: str, topic: str, isolation_level: str, expected: int,
                   timeout: float = 15.0, settle: float = 0.7) -> dict[int, list[bytes]]:
    """Every value of ``topic`` from offset 0 by partition, in offset order: poll until
    ``expected`` records arrived, then ``settle`` seconds more so extra records show up."""
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    out: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    offsets: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
    c = await started_consumer(bootstrap, isolation_level)
    try:
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        got = 0
        while time.monotonic() < deadline:
            for tp, records in (await c.getmany(timeout_ms=100)).items():
                for r in records:
                    out[tp.partition].append(r.value)
                    offsets[tp.partition].append(r.offset)
                    got += 1
            if got >= expected:
                deadline = min(deadline, time.monotonic() + settle)
    finally:
        await c.stop()
    for p in range(PARTITIONS):
        assert offsets[p] == sorted(offsets[p]), f"partition {p} out of offset order"
    return out


async def end_offsets(bootstrap: str, topic: str, isolation_level: str) -> list[int]:
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    c = await started_consumer(bootstrap, isolation_level)
    try:
        ends = await c.end_offsets(tps)
    finally:
        await c.stop()
    return [ends[tp] for tp in tps]


def make_topics(broker: BrokerProcess, *names: str) -> None:
    with admin_client(broker.bootstrap) as admin:
        for name in names:
            create_topic(admin, name, PARTITIONS)


@pytest.mark.timeout(90)
def test_idempotent_producer_exactly_once_in_order_through_dropped_connections(
    tmp_path: Path, topic_name: str
) -> None:
    n = 6000

    async def scenario() -> None:
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                             linger_ms=5, max_batch_size=2048, retry_backoff_ms=20,
                             request_timeout_ms=5000)
        await p.start()
        try:
            proxy.chaos.set()
            futures = []
            for i in range(n):
                futures.append(await p.send(topic_name, value=b"%d" % i,
                                            partition=i % PARTITIONS))
                if i % 100 == 99:
                    await asyncio.sleep(0.05)  # spread over ~3 s: several drops mid-stream
            metas = await asyncio.gather(*futures)
        finally:
            proxy.chaos.clear()
            await p.stop()
        assert proxy.drops > 0 and proxy.response_drops > 0, "the proxy must really drop"
        # The acknowledged offsets are dense and in send order per partition.
        for part in range(PARTITIONS):
            assert [m.offset for m in metas[part::PARTITIONS]] == list(range(n // PARTITIONS))
        got = await read_all(bootstrap, topic_name, "read_uncommitted", n)
        for part in range(PARTITIONS):
            assert got[part] == [b"%d" % i for i in range(part, n, PARTITIONS)], \
                f"partition {part} has duplicates, gaps or reordering"

    with broker_behind_proxy(tmp_path / "data", drop_every_s=0.4,
                             response_drop_probability=0.05) as (proxy, bootstrap):
        with admin_client(bootstrap) as admin:
            create_topic(admin, topic_name, PARTITIONS)
        run(scenario, timeout=75)


def test_commit_and_abort_across_three_partitions(broker: BrokerProcess,
                                                  topic_name: str) -> None:
    make_topics(broker, topic_name)
    first, aborted, second, late = (values(t, 4) for t in ("c1", "ab", "c2", "late"))
    bootstrap = broker.bootstrap

    class Abort(Exception):
        pass

    async def scenario() -> None:
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=txn_id(), **CLIENT)
        await p.start()
        try:
            async with p.transaction():
                await send_by_partition(p, topic_name, first)
            with pytest.raises(Abort):
                async with p.transaction():
                    await send_by_partition(p, topic_name, aborted)  # acknowledged: in the log
                    raise Abort
            async with p.transaction():
                await send_by_partition(p, topic_name, second)

            # Per partition: 4 + marker, 4 + marker, 4 + marker.
            assert await end_offsets(bootstrap, topic_name, "read_committed") == [15] * 3
            assert await end_offsets(bootstrap, topic_name, "read_uncommitted") == [15] * 3

            # An open transaction: its records are in the log (high watermark moves) but the
            # last stable offset stays at its first offset until it ends.
            await p.begin_transaction()
            await send_by_partition(p, topic_name, late)
            assert await end_offsets(bootstrap, topic_name, "read_committed") == [15] * 3
            assert await end_offsets(bootstrap, topic_name, "read_uncommitted") == [19] * 3
            assert await read_all(bootstrap, topic_name, "read_committed", 24) == \
                merged(first, second)
            assert await read_all(bootstrap, topic_name, "read_uncommitted", 48) == \
                merged(first, aborted, second, late)
            await p.commit_transaction()
        finally:
            await p.stop()

        assert await end_offsets(bootstrap, topic_name, "read_committed") == [20] * 3
        assert await read_all(bootstrap, topic_name, "read_committed", 36) == \
            merged(first, second, late)
        assert await read_all(bootstrap, topic_name, "read_uncommitted", 48) == \
            merged(first, aborted, second, late)

    run(scenario)


@pytest.mark.parametrize("membership", [
    "assign",
    "subscribe",
])
def test_send_offsets_to_transaction_commits_offsets_only_with_the_transaction(
    broker: BrokerProcess, topic_name: str, group_name: str, membership: str
) -> None:
    """``membership``: the consumer assign()s the partitions (the group stays empty) or
    subscribe()s (a group member: the usual consume-transform-produce loop)."""
    source, sink = topic_name, f"{topic_name}-out"
    n_per_partition = 5
    make_topics(broker, source, sink)
    inputs = values("in", n_per_partition)
    bootstrap = broker.bootstrap
    tps = [TopicPartition(source, p) for p in range(PARTITIONS)]

    async def group_consumer() -> AIOKafkaConsumer:
        c = await started_consumer(bootstrap, "read_committed", group_id=group_name)
        if membership == "assign":
            c.assign(tps)
        else:
            c.subscribe([source])
        return c

    async def consume_batch(c: AIOKafkaConsumer) -> dict[TopicPartition, list[Any]]:
        got: dict[TopicPartition, list[Any]] = {}
        deadline = time.monotonic() + 15
        while sum(map(len, got.values())) < PARTITIONS * n_per_partition:
            assert time.monotonic() < deadline, f"consumed only {got}"
            for tp, records in (await c.getmany(timeout_ms=200)).items():
                got.setdefault(tp, []).extend(records)
        return got

    async def committed() -> dict[TopicPartition, int | None]:
        c = await started_consumer(bootstrap, "read_uncommitted", group_id=group_name)
        try:
            return {tp: await c.committed(tp) for tp in tps}
        finally:
            await c.stop()

    async def scenario() -> None:
        plain = AIOKafkaProducer(bootstrap_servers=bootstrap, **CLIENT)
        await plain.start()
        try:
            await send_by_partition(plain, source, inputs)
        finally:
            await plain.stop()

        p = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=txn_id(), **CLIENT)
        await p.start()
        try:
            for attempt in ("abort", "commit"):
                c = await group_consumer()
                try:
                    batch = await consume_batch(c)
                    # After the abort the group still has no offsets: everything is re-read.
                    assert {tp: [r.value for r in rs] for tp, rs in batch.items()} == \
                        {TopicPartition(source, part): v for part, v in inputs.items()}
                    await p.begin_transaction()
                    futures = [await p.send(sink, value=r.value.upper(), partition=tp.partition)
                               for tp, records in batch.items() for r in records]
                    await p.send_offsets_to_transaction(
                        {tp: rs[-1].offset + 1 for tp, rs in batch.items()}, group_name)
                    await asyncio.gather(*futures)
                    # Pending: not the group's offsets until the transaction commits.
                    assert await committed() == dict.fromkeys(tps)
                    if attempt == "abort":
                        await p.abort_transaction()
                    else:
                        await p.commit_transaction()
                finally:
                    await c.stop()
                if attempt == "abort":
                    assert await committed() == dict.fromkeys(tps)
                else:
                    assert await committed() == dict.fromkeys(tps, n_per_partition)
        finally:
            await p.stop()

        # A restarted member resumes after the transaction's offsets: nothing left to read.
        c = await group_consumer()
        try:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                assert await c.getmany(timeout_ms=200) == {}
            assert {tp: await c.position(tp) for tp in tps} == \
                dict.fromkeys(tps, n_per_partition)
        finally:
            await c.stop()
        upper = {part: [v.upper() for v in vs] for part, vs in inputs.items()}
        assert await read_all(bootstrap, sink, "read_committed", 15) == upper
        assert await read_all(bootstrap, sink, "read_uncommitted", 30) == merged(upper, upper)

    run(scenario)


def test_second_producer_with_same_transactional_id_fences_the_first(
    broker: BrokerProcess, topic_name: str
) -> None:
    make_topics(broker, topic_name)
    tid = txn_id()
    old_run, new_run = values("old", 3), values("new", 3)
    bootstrap = broker.bootstrap

    async def scenario() -> None:
        old = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=tid, **CLIENT)
        new = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=tid, **CLIENT)
        await old.start()
        try:
            await old.begin_transaction()
            await send_by_partition(old, topic_name, old_run)

            # The newcomer's InitProducerId aborts the open transaction and bumps the epoch.
            await new.start()
            await new.begin_transaction()
            assert await end_offsets(bootstrap, topic_name, "read_committed") == [4] * 3

            with pytest.raises(ProducerFenced):
                await old.commit_transaction()

            await send_by_partition(new, topic_name, new_run)
            await new.commit_transaction()
        finally:
            await old.stop()
            await new.stop()

        assert await read_all(bootstrap, topic_name, "read_committed", 9) == new_run
        assert await read_all(bootstrap, topic_name, "read_uncommitted", 18) == \
            merged(old_run, new_run)

    run(scenario)
