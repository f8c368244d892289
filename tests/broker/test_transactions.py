"""Transactions through a real socket to an in-process broker: InitProducerId epochs and
fencing, AddPartitionsToTxn/EndTxn, read_committed Fetch and ListOffsets at the last stable
offset with aborted transactions, timeouts, the admin views, WriteTxnMarkers,
TxnOffsetCommit with OffsetFetch(require_stable), and a restart in PrepareCommit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from pykbroker.broker import Broker
from pykbroker.coordinator.transaction import TxnState
from pykbroker.error_codes import ErrorCode
from pykbroker.log.checkpoints import CLEAN_SHUTDOWN_FILE
from pykbroker.protocol._generated.add_offsets_to_txn_request import AddOffsetsToTxnRequest
from pykbroker.protocol._generated.add_partitions_to_txn_request import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnTopic,
    AddPartitionsToTxnTransaction,
)
from pykbroker.protocol._generated.create_topics_request import CreatableTopic, CreateTopicsRequest
from pykbroker.protocol._generated.describe_producers_request import (
    DescribeProducersRequest,
    TopicRequest,
)
from pykbroker.protocol._generated.describe_transactions_request import (
    DescribeTransactionsRequest,
)
from pykbroker.protocol._generated.end_txn_request import EndTxnRequest
from pykbroker.protocol._generated.fetch_request import FetchPartition, FetchRequest, FetchTopic
from pykbroker.protocol._generated.find_coordinator_request import FindCoordinatorRequest
from pykbroker.protocol._generated.init_producer_id_request import InitProducerIdRequest
from pykbroker.protocol._generated.list_offsets_request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from pykbroker.protocol._generated.list_transactions_request import ListTransactionsRequest
from pykbroker.protocol._generated.offset_fetch_request import (
    OffsetFetchRequest,
    OffsetFetchRequestTopic,
)
from pykbroker.protocol._generated.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from pykbroker.protocol._generated.txn_offset_commit_request import (
    TxnOffsetCommitRequest,
    TxnOffsetCommitRequestPartition,
    TxnOffsetCommitRequestTopic,
)
from pykbroker.protocol._generated.write_txn_markers_request import (
    WritableTxnMarker,
    WritableTxnMarkerTopic,
    WriteTxnMarkersRequest,
)
from pykbroker.protocol.api import ApiKey
from pykbroker.records import NewRecord, build_batch, iter_batches, iter_records
from tests.broker.harness import Client, running_broker

FAST = {"transaction.state.log.num.partitions": 2, "offsets.topic.num.partitions": 1}
E = ErrorCode


def _records(data: bytes | memoryview | None) -> list[tuple[int, bytes]]:
    """(offset, value) of the data records (control batches skipped)."""
    raw = bytes(data or b"")
    return [(r.offset, bytes(r.value or b"")) for pos, h in iter_batches(raw)
            if not h.is_control for r in iter_records(raw, pos)]


class Txn:
    """One transactional producer speaking the raw protocol."""

    def __init__(self, c: Client, txn_id: str, timeout_ms: int = 60000) -> None:
        self.c, self.txn_id, self.timeout_ms = c, txn_id, timeout_ms
        self.pid, self.epoch = -1, -1
        self.seq: dict[tuple[str, int], int] = {}

    @classmethod
    async def ready(cls, c: Client, txn_id: str, timeout_ms: int = 60000) -> Txn:
        """A producer that has found its coordinator and holds an id and epoch."""
        txn = cls(c, txn_id, timeout_ms)
        await txn.find_coordinator()
        await txn.init()
        return txn

    async def find_coordinator(self) -> None:
        resp = await self.c.send(ApiKey.FIND_COORDINATOR, 4, FindCoordinatorRequest(
            key_type=1, coordinator_keys=[self.txn_id]))
        assert resp.coordinators[0].error_code == 0

    async def init(self, version: int = 4, *, expect: ErrorCode = E.NONE,
                   kip360: bool = False) -> Any:
        resp = await self.c.send(ApiKey.INIT_PRODUCER_ID, version, InitProducerIdRequest(
            transactional_id=self.txn_id, transaction_timeout_ms=self.timeout_ms,
            producer_id=self.pid if kip360 else -1, producer_epoch=self.epoch if kip360 else -1))
        assert resp.error_code == expect, E(resp.error_code)
        if expect == E.NONE:
            if resp.producer_id != self.pid or resp.producer_epoch != self.epoch:
                self.seq.clear()
            self.pid, self.epoch = resp.producer_id, resp.producer_epoch
        return resp

    async def add(self, *tps: tuple[str, int], version: int = 3, epoch: int | None = None
                  ) -> dict[tuple[str, int], int]:
        by_topic: dict[str, list[int]] = {}
        for t, p in tps:
            by_topic.setdefault(t, []).append(p)
        resp = await self.c.send(ApiKey.ADD_PARTITIONS_TO_TXN, version, AddPartitionsToTxnRequest(
            v3_and_below_transactional_id=self.txn_id, v3_and_below_producer_id=self.pid,
            v3_and_below_producer_epoch=self.epoch if epoch is None else epoch,
            v3_and_below_topics=[AddPartitionsToTxnTopic(t, ps) for t, ps in by_topic.items()]))
        return {(t.name, r.partition_index): r.partition_error_code
                for t in resp.results_by_topic_v3_and_below for r in t.results_by_partition}

    async def produce(self, topic: str, partition: int, *values: bytes,
                      epoch: int | None = None, transactional_id: str | None = "",
                      version: int = 9) -> Any:
        tp = (topic, partition)
        seq = self.seq.get(tp, 0)
        batch = build_batch([NewRecord(b"k", v) for v in values], producer_id=self.pid,
                            producer_epoch=self.epoch if epoch is None else epoch,
                            base_sequence=seq, is_transactional=True)
        resp = await self.c.send(ApiKey.PRODUCE, version, ProduceRequest(
            self.txn_id if transactional_id == "" else transactional_id, -1, 5000,
            [TopicProduceData(topic, [PartitionProduceData(partition, batch)])]))
        part = resp.responses[0].partition_responses[0]
        if part.error_code == 0:
            self.seq[tp] = seq + len(values)
        return part

    async def end(self, commit: bool, *, epoch: int | None = None) -> int:
        resp = await self.c.send(ApiKey.END_TXN, 3, EndTxnRequest(
            transactional_id=self.txn_id, producer_id=self.pid,
            producer_epoch=self.epoch if epoch is None else epoch, committed=commit))
        return int(resp.error_code)


async def _setup(broker: Broker, *topics: tuple[str, int]) -> Client:
    c = await Client.connect(broker)
    resp = await c.send(ApiKey.CREATE_TOPICS, 7, CreateTopicsRequest(
        [CreatableTopic(name, n, 1) for name, n in topics]))
    assert all(t.error_code == 0 for t in resp.topics)
    return c


async def _plain(c: Client, topic: str, partition: int, *values: bytes) -> int:
    batch = build_batch([NewRecord(b"k", v) for v in values])
    resp = await c.send(ApiKey.PRODUCE, 9, ProduceRequest(None, -1, 5000, [TopicProduceData(
        topic, [PartitionProduceData(partition, batch)])]))
    part = resp.responses[0].partition_responses[0]
    assert part.error_code == 0
    return int(part.base_offset)


async def _fetch(c: Client, topic: str, partition: int, offset: int, *, committed: bool = True,
                 version: int = 11, max_bytes: int = 1 << 20) -> Any:
    resp = await c.send(ApiKey.FETCH, version, FetchRequest(
        max_wait_ms=0, min_bytes=0, max_bytes=max_bytes, isolation_level=int(committed),
        topics=[FetchTopic(topic=topic, partitions=[FetchPartition(
            partition=partition, fetch_offset=offset, partition_max_bytes=max_bytes)])]))
    return resp.responses[0].partitions[0]


async def _latest(c: Client, topic: str, partition: int, *, committed: bool,
                  version: int = 5) -> int:
    resp = await c.send(ApiKey.LIST_OFFSETS, version, ListOffsetsRequest(
        replica_id=-1, isolation_level=int(committed) if version >= 2 else 0,
        topics=[ListOffsetsTopic(
            topic, [ListOffsetsPartition(partition, -1, -1)])]))
    part = resp.topics[0].partitions[0]
    assert part.error_code == 0
    return int(part.offset)


def _aborted(part: Any) -> list[tuple[int, int]] | None:
    if part.aborted_transactions is None:
        return None
    return [(a.producer_id, a.first_offset) for a in part.aborted_transactions]


# -- the happy paths ---------------------------------------------------------------------------


@pytest.mark.trio
async def test_read_committed_stops_at_the_lso_and_lists_aborts(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **FAST) as broker:
        c = await _setup(broker, ("t", 1))
        a, b = Txn(c, "a"), Txn(c, "b")
        for p in (a, b):
            await p.find_coordinator()
            assert (await p.init()).producer_epoch == 0
        assert await _plain(c, "t", 0, b"p0") == 0                          # 0
        assert await a.add(("t", 0)) == {("t", 0): 0}
        assert (await a.produce("t", 0, b"a1", b"a2")).base_offset == 1     # 1-2
        assert await b.add(("t", 0)) == {("t", 0): 0}
        assert (await b.produce("t", 0, b"b1")).base_offset == 3            # 3
        await _plain(c, "t", 0, b"p4")                                      # 4
        # Both transactions are open: the LSO is a's first offset.
        part = await _fetch(c, "t", 0, 0)
        assert (part.high_watermark, part.last_stable_offset) == (5, 1)
        assert _records(part.records) == [(0, b"p0")] and _aborted(part) == []
        assert await _latest(c, "t", 0, committed=True) == 1
        assert await _latest(c, "t", 0, committed=False) == 5
        # read_uncommitted sees everything and gets no aborted list.
        part = await _fetch(c, "t", 0, 0, committed=False)
        assert [o for o, _ in _records(part.records)] == [0, 1, 2, 3, 4]
        assert part.aborted_transactions is None
        assert await a.end(False) == 0                                      # ABORT at 5
        part = await _fetch(c, "t", 0, 0)
        assert part.last_stable_offset == 3                                 # b still open
        assert [o for o, _ in _records(part.records)] == [0, 1, 2]
        assert _aborted(part) == [(a.pid, 1)]
        # Fetch v4, the first with an isolation level, answers the same.
        part = await _fetch(c, "t", 0, 0, version=4)
        assert (part.last_stable_offset, _aborted(part)) == (3, [(a.pid, 1)])
        assert [o for o, _ in _records(part.records)] == [0, 1, 2]
        assert await b.end(True) == 0                                       # COMMIT at 6
        part = await _fetch(c, "t", 0, 0)
        assert (part.high_watermark, part.last_stable_offset) == (7, 7)
        assert [o for o, _ in _records(part.records)] == [0, 1, 2, 3, 4]
        assert _aborted(part) == [(a.pid, 1)]
        assert await _latest(c, "t", 0, committed=True) == 7
        # From inside the aborted transaction, or past its data but before its ABORT at 5:
        # listed (Kafka's overlap rule); from past its ABORT: not.
        for offset in (2, 3, 5):
            assert _aborted(await _fetch(c, "t", 0, offset)) == [(a.pid, 1)]
        part = await _fetch(c, "t", 0, 6)
        assert _aborted(part) == [] and _records(part.records) == []
        # The next transaction of a continues its sequence and is committed.
        await a.add(("t", 0))
        assert (await a.produce("t", 0, b"a3")).base_offset == 7
        assert await _latest(c, "t", 0, committed=True) == 7
        assert await a.end(True) == 0
        part = await _fetch(c, "t", 0, 7)
        assert _records(part.records) == [(7, b"a3")] and _aborted(part) == []
        assert await _latest(c, "t", 0, committed=True) == 9
        # ListOffsets v1 has no isolation level: the high watermark.
        await a.add(("t", 0))
        await a.produce("t", 0, b"a4")
        assert await _latest(c, "t", 0, committed=True, version=1) == 10
        assert await _latest(c, "t", 0, committed=True, version=2) == 9
        await c.aclose()


@pytest.mark.trio
async def test_epochs_fencing_and_errors(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **FAST) as broker:
        c = await _setup(broker, ("t", 2))
        old = Txn(c, "x")
        await old.find_coordinator()
        r0 = await old.init()
        r1 = await old.init()
        assert (r1.producer_id, r1.producer_epoch) == (r0.producer_id, 1)
        # EndTxn with nothing started.
        assert await old.end(True) == E.INVALID_TXN_STATE
        # A transactional produce to a partition not added.
        assert (await old.produce("t", 1, b"v")).error_code == E.INVALID_TXN_STATE
        # Unknown partitions: the known ones are not attempted.
        assert await old.add(("t", 0), ("t", 9), ("nope", 0)) == {
            ("t", 0): E.OPERATION_NOT_ATTEMPTED, ("t", 9): E.UNKNOWN_TOPIC_OR_PARTITION,
            ("nope", 0): E.UNKNOWN_TOPIC_OR_PARTITION}
        assert await old.add(("t", 0)) == {("t", 0): 0}
        assert (await old.produce("t", 0, b"v1")).error_code == 0
        # Transactional records need the request's transactional id.
        assert (await old.produce("t", 0, b"v", transactional_id=None)).error_code == \
            E.INVALID_RECORD
        # A second producer with the same id: the ongoing transaction is aborted.
        new = Txn(c, "x")
        await new.init(expect=E.CONCURRENT_TRANSACTIONS)
        resp = await new.init()
        assert (resp.producer_id, resp.producer_epoch) == (r0.producer_id, 3)
        # The old producer is fenced everywhere.
        assert await old.add(("t", 1)) == {("t", 1): E.PRODUCER_FENCED}
        assert await old.end(True) == E.PRODUCER_FENCED
        assert (await old.produce("t", 0, b"v2")).error_code == E.INVALID_PRODUCER_EPOCH
        part = await _fetch(c, "t", 0, 0)
        # Aborted records are returned; the list tells the consumer to drop them.
        assert _records(part.records) == [(0, b"v1")]
        assert _aborted(part) == [(r0.producer_id, 0)]
        assert part.last_stable_offset == part.high_watermark == 2
        # EndTxn commit retried after it completed: NONE; abort then is refused.
        assert await new.add(("t", 1)) == {("t", 1): 0}
        assert (await new.produce("t", 1, b"n1")).error_code == 0
        assert await new.end(True) == 0
        assert await new.end(True) == 0
        assert await new.end(False) == E.INVALID_TXN_STATE
        assert _records((await _fetch(c, "t", 1, 0)).records) == [(0, b"n1")]
        # A wrong producer id for the transactional id.
        new.pid += 1
        assert await new.end(True) == E.INVALID_PRODUCER_ID_MAPPING
        new.pid -= 1
        # InitProducerId v3+ (KIP-360) with the fenced producer's epoch is fenced too ...
        await old.init(kip360=True, expect=E.PRODUCER_FENCED)
        # ... with the current epoch it bumps; a producer id without an epoch is malformed.
        assert (await new.init(kip360=True)).producer_epoch == 4
        new.epoch = -1
        await new.init(kip360=True, expect=E.INVALID_REQUEST)
        new.epoch = 4
        # An unknown transactional id in EndTxn is a mapping error.
        ghost = Txn(c, "ghost")
        ghost.pid, ghost.epoch = r0.producer_id, 0
        assert await ghost.end(True) == E.INVALID_PRODUCER_ID_MAPPING
        await c.aclose()


@pytest.mark.trio
async def test_timed_out_transaction_is_aborted(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **FAST, **{
            "transaction.abort.timed.out.transaction.cleanup.interval.ms": 20}) as broker:
        c = await _setup(broker, ("t", 1))
        p = await Txn.ready(c, "slow", timeout_ms=100)
        await p.add(("t", 0))
        assert (await p.produce("t", 0, b"v")).error_code == 0
        assert await _latest(c, "t", 0, committed=True) == 0
        with trio.fail_after(5):
            while await _latest(c, "t", 0, committed=True) != 2:
                await trio.sleep(0.02)
        part = await _fetch(c, "t", 0, 0)
        assert _aborted(part) == [(p.pid, 0)] and _records(part.records) == [(0, b"v")]
        assert await p.end(True) == E.PRODUCER_FENCED
        assert (await p.produce("t", 0, b"late")).error_code == E.INVALID_PRODUCER_EPOCH
        resp = await c.send(ApiKey.DESCRIBE_TRANSACTIONS, 0,
                            DescribeTransactionsRequest(["slow"]))
        s = resp.transaction_states[0]
        assert (s.transaction_state, s.producer_epoch) == ("CompleteAbort", p.epoch + 1)
        await c.aclose()


@pytest.mark.trio
async def test_admin_views(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **FAST) as broker:
        c = await _setup(broker, ("t", 2))
        a, b = Txn(c, "view-a", timeout_ms=12345), Txn(c, "view-b")
        for p in (a, b):
            await p.find_coordinator()
            await p.init()
        await a.add(("t", 0), ("t", 1))
        await a.produce("t", 1, b"x", b"y")
        resp = await c.send(ApiKey.DESCRIBE_TRANSACTIONS, 0,
                            DescribeTransactionsRequest(["view-a", "view-b", "nobody"]))
        sa, sb, sn = resp.transaction_states
        assert (sa.error_code, sa.transaction_state, sa.transaction_timeout_ms) == (
            0, "Ongoing", 12345)
        assert (sa.producer_id, sa.producer_epoch) == (a.pid, 0)
        assert sa.transaction_start_time_ms > 0
        assert [(t.topic, t.partitions) for t in sa.topics] == [("t", [0, 1])]
        assert (sb.transaction_state, sb.topics, sb.transaction_start_time_ms) == (
            "Empty", [], -1)
        assert sn.error_code == E.TRANSACTIONAL_ID_NOT_FOUND
        # ListTransactions: all, by state, by producer id, unknown state names.
        resp = await c.send(ApiKey.LIST_TRANSACTIONS, 0, ListTransactionsRequest())
        assert resp.error_code == 0
        assert sorted((s.transactional_id, s.producer_id, s.transaction_state)
                      for s in resp.transaction_states) == [
            ("view-a", a.pid, "Ongoing"), ("view-b", b.pid, "Empty")]
        resp = await c.send(ApiKey.LIST_TRANSACTIONS, 0, ListTransactionsRequest(
            state_filters=["Ongoing"]))
        assert [s.transactional_id for s in resp.transaction_states] == ["view-a"]
        resp = await c.send(ApiKey.LIST_TRANSACTIONS, 0, ListTransactionsRequest(
            producer_id_filters=[b.pid]))
        assert [s.transactional_id for s in resp.transaction_states] == ["view-b"]
        resp = await c.send(ApiKey.LIST_TRANSACTIONS, 0, ListTransactionsRequest(
            state_filters=["Bogus"]))
        assert resp.unknown_state_filters == ["Bogus"] and resp.transaction_states == []
        resp = await c.send(ApiKey.LIST_TRANSACTIONS, 1, ListTransactionsRequest(
            duration_filter=3_600_000))
        assert resp.transaction_states == []
        # DescribeProducers: the open transaction's start offset and the sequence.
        resp = await c.send(ApiKey.DESCRIBE_PRODUCERS, 0, DescribeProducersRequest(
            [TopicRequest("t", [1, 0, 7])]))
        p1, p0, p7 = resp.topics[0].partitions
        assert p0.error_code == 0 and p0.active_producers == []
        assert p7.error_code == E.UNKNOWN_TOPIC_OR_PARTITION
        (state,) = p1.active_producers
        assert (state.producer_id, state.producer_epoch, state.last_sequence,
                state.current_txn_start_offset) == (a.pid, 0, 1, 0)
        assert await a.end(True) == 0
        resp = await c.send(ApiKey.DESCRIBE_PRODUCERS, 0, DescribeProducersRequest(
            [TopicRequest("t", [1])]))
        (state,) = resp.topics[0].partitions[0].active_producers
        assert state.current_txn_start_offset == -1 and state.last_sequence == 1
        resp = await c.send(ApiKey.LIST_TRANSACTIONS, 0, ListTransactionsRequest(
            state_filters=["CompleteCommit"]))
        assert [s.transactional_id for s in resp.transaction_states] == ["view-a"]
        await c.aclose()


@pytest.mark.trio
async def test_add_partitions_v4_verify_only(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **FAST) as broker:
        c = await _setup(broker, ("t", 2))
        p = await Txn.ready(c, "v")
        await p.add(("t", 0))

        def req(verify_only: bool, *parts: int, epoch: int | None = None
                ) -> AddPartitionsToTxnRequest:
            return AddPartitionsToTxnRequest(transactions=[AddPartitionsToTxnTransaction(
                transactional_id="v", producer_id=p.pid,
                producer_epoch=p.epoch if epoch is None else epoch, verify_only=verify_only,
                topics=[AddPartitionsToTxnTopic("t", list(parts))])])

        def codes(resp: Any) -> dict[int, int]:
            (txn,) = resp.results_by_transaction
            assert txn.transactional_id == "v"
            return {r.partition_index: r.partition_error_code
                    for t in txn.topic_results for r in t.results_by_partition}

        resp = await c.send(ApiKey.ADD_PARTITIONS_TO_TXN, 4, req(True, 0, 1))
        assert resp.error_code == 0
        assert codes(resp) == {0: 0, 1: E.INVALID_TXN_STATE}
        # verify_only adds nothing.
        assert codes(await c.send(ApiKey.ADD_PARTITIONS_TO_TXN, 4, req(True, 1))) == {
            1: E.INVALID_TXN_STATE}
        assert codes(await c.send(ApiKey.ADD_PARTITIONS_TO_TXN, 4, req(True, 0, epoch=9))) == {
            0: E.PRODUCER_FENCED}
        # Not verify_only: a broker adding on a client's behalf.
        assert codes(await c.send(ApiKey.ADD_PARTITIONS_TO_TXN, 5, req(False, 1))) == {1: 0}
        assert codes(await c.send(ApiKey.ADD_PARTITIONS_TO_TXN, 4, req(True, 0, 1))) == {
            0: 0, 1: 0}
        await c.aclose()


@pytest.mark.trio
async def test_write_txn_markers(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **FAST) as broker:
        c = await _setup(broker, ("t", 2))
        pid = 4242
        for i, v in enumerate((b"a", b"b")):
            batch = build_batch([NewRecord(b"k", v)], producer_id=pid, producer_epoch=3,
                                base_sequence=0, is_transactional=True)
            # Written as a follower would: straight to the log, bypassing verification.
            assert broker.services is not None
            part = broker.services.replicas.partition("t", i)
            part.log.append_as_leader(bytearray(batch), leader_epoch=part.leader_epoch)
        assert await _latest(c, "t", 0, committed=True) == 0

        def markers(commit: bool, epoch: int, *parts: int) -> WriteTxnMarkersRequest:
            return WriteTxnMarkersRequest([WritableTxnMarker(
                producer_id=pid, producer_epoch=epoch, transaction_result=commit,
                topics=[WritableTxnMarkerTopic("t", list(parts)),
                        WritableTxnMarkerTopic("missing", [0])],
                coordinator_epoch=0)])

        resp = await c.send(ApiKey.WRITE_TXN_MARKERS, 1, markers(True, 3, 0))
        (m,) = resp.markers
        assert m.producer_id == pid
        assert {(t.name, p.partition_index): p.error_code for t in m.topics
                for p in t.partitions} == {("t", 0): 0,
                                           ("missing", 0): E.UNKNOWN_TOPIC_OR_PARTITION}
        resp = await c.send(ApiKey.WRITE_TXN_MARKERS, 1, markers(False, 2, 1))
        assert resp.markers[0].topics[0].partitions[0].error_code == E.INVALID_PRODUCER_EPOCH
        resp = await c.send(ApiKey.WRITE_TXN_MARKERS, 0, markers(False, 3, 1))
        assert resp.markers[0].topics[0].partitions[0].error_code == 0
        p0, p1 = await _fetch(c, "t", 0, 0), await _fetch(c, "t", 1, 0)
        assert _records(p0.records) == [(0, b"a")] and _aborted(p0) == []
        assert _records(p1.records) == [(0, b"b")] and _aborted(p1) == [(pid, 0)]
        assert p0.last_stable_offset == p1.last_stable_offset == 2
        await c.aclose()


@pytest.mark.trio
async def test_txn_offset_commit_is_unstable_until_the_commit(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **FAST) as broker:
        c = await _setup(broker, ("t", 1))
        p = await Txn.ready(c, "eos")
        resp = await c.send(ApiKey.FIND_COORDINATOR, 4, FindCoordinatorRequest(
            key_type=0, coordinator_keys=["g"]))
        assert resp.coordinators[0].error_code == 0

        async def txn_commit(offset: int, epoch: int | None = None) -> int:
            resp = await c.send(ApiKey.TXN_OFFSET_COMMIT, 3, TxnOffsetCommitRequest(
                transactional_id="eos", group_id="g", producer_id=p.pid,
                producer_epoch=p.epoch if epoch is None else epoch, generation_id=-1,
                member_id="", topics=[TxnOffsetCommitRequestTopic("t", [
                    TxnOffsetCommitRequestPartition(0, offset, -1, "meta")])]))
            return int(resp.topics[0].partitions[0].error_code)

        async def fetch_offset(stable: bool = True) -> tuple[int, int]:
            resp = await c.send(ApiKey.OFFSET_FETCH, 7, OffsetFetchRequest(
                group_id="g", topics=[OffsetFetchRequestTopic("t", [0])],
                require_stable=stable))
            part = resp.topics[0].partitions[0]
            return int(part.error_code), int(part.committed_offset)

        # Without AddOffsetsToTxn the group's partition is not in the transaction.
        assert await txn_commit(5) == E.INVALID_TXN_STATE
        resp = await c.send(ApiKey.ADD_OFFSETS_TO_TXN, 3, AddOffsetsToTxnRequest(
            transactional_id="eos", producer_id=p.pid, producer_epoch=p.epoch, group_id="g"))
        assert resp.error_code == 0
        # A fenced producer reads INVALID_PRODUCER_EPOCH here, as in Kafka.
        assert await txn_commit(5, epoch=p.epoch + 1) == E.INVALID_PRODUCER_EPOCH
        assert await txn_commit(5) == 0
        assert await fetch_offset() == (E.UNSTABLE_OFFSET_COMMIT, -1)
        assert await fetch_offset(stable=False) == (0, -1)
        assert await p.end(True) == 0
        assert await fetch_offset() == (0, 5)
        # An aborted transaction's offsets never show.
        await c.send(ApiKey.ADD_OFFSETS_TO_TXN, 3, AddOffsetsToTxnRequest(
            transactional_id="eos", producer_id=p.pid, producer_epoch=p.epoch, group_id="g"))
        assert await txn_commit(9) == 0
        # Kafka answers no offset with UNSTABLE_OFFSET_COMMIT; without require_stable, the
        # last stable commit.
        assert await fetch_offset() == (E.UNSTABLE_OFFSET_COMMIT, -1)
        assert await fetch_offset(stable=False) == (0, 5)
        assert await p.end(False) == 0
        assert await fetch_offset() == (0, 5)
        await c.aclose()


# -- restarts ----------------------------------------------------------------------------------


@pytest.mark.trio
@pytest.mark.parametrize("clean", [True, False])
async def test_restart_completes_a_prepared_commit(tmp_path: Path, clean: bool) -> None:
    """``clean=False``: the clean-shutdown marker is removed, so the logs are recovered."""
    async with running_broker(tmp_path, **FAST) as broker:
        c = await _setup(broker, ("t", 2), ("in", 1))
        p = await Txn.ready(c, "crash")
        await p.add(("t", 0), ("t", 1))
        await p.produce("t", 0, b"zero")
        await p.produce("t", 1, b"one")
        # The consumed offsets go with it (exactly-once: consume-transform-produce).
        await c.send(ApiKey.FIND_COORDINATOR, 4, FindCoordinatorRequest(
            key_type=0, coordinator_keys=["g"]))
        resp = await c.send(ApiKey.ADD_OFFSETS_TO_TXN, 3, AddOffsetsToTxnRequest(
            transactional_id="crash", producer_id=p.pid, producer_epoch=p.epoch, group_id="g"))
        assert resp.error_code == 0
        resp = await c.send(ApiKey.TXN_OFFSET_COMMIT, 3, TxnOffsetCommitRequest(
            transactional_id="crash", group_id="g", producer_id=p.pid,
            producer_epoch=p.epoch, generation_id=-1, member_id="",
            topics=[TxnOffsetCommitRequestTopic("in", [
                TxnOffsetCommitRequestPartition(0, 42, -1, "")])]))
        assert resp.topics[0].partitions[0].error_code == 0
        ab = await Txn.ready(c, "aborted")
        await ab.add(("t", 0))
        await ab.produce("t", 0, b"gone")
        assert await ab.end(False) == 0
        assert broker.services is not None
        txns = broker.services.transactions
        txns.prepare_end(txns.txns["crash"], commit=True)  # the broker dies right here
        assert txns.txns["crash"].state is TxnState.PREPARE_COMMIT
        assert await _latest(c, "t", 0, committed=True) == 0
        await c.aclose()
    if not clean:
        (tmp_path / CLEAN_SHUTDOWN_FILE).unlink()
    async with running_broker(tmp_path, **FAST) as broker:
        assert broker.services is not None
        meta = broker.services.transactions.txns["crash"]
        assert meta.state is TxnState.COMPLETE_COMMIT and meta.producer_id == p.pid
        c = await Client.connect(broker)
        p0, p1 = await _fetch(c, "t", 0, 0), await _fetch(c, "t", 1, 0)
        assert _records(p0.records) == [(0, b"zero"), (1, b"gone")]
        assert _records(p1.records) == [(0, b"one")]
        # The aborted transaction is still reported after the restart.
        assert _aborted(p0) == [(ab.pid, 1)]
        assert p0.last_stable_offset == p0.high_watermark
        assert p1.last_stable_offset == p1.high_watermark == 2
        resp = await c.send(ApiKey.DESCRIBE_TRANSACTIONS, 0,
                            DescribeTransactionsRequest(["crash", "aborted"]))
        assert [s.transaction_state for s in resp.transaction_states] == [
            "CompleteCommit", "CompleteAbort"]
        # The transactional offset commit was completed by the COMMIT marker.
        resp = await c.send(ApiKey.OFFSET_FETCH, 7, OffsetFetchRequest(
            group_id="g", topics=[OffsetFetchRequestTopic("in", [0])], require_stable=True))
        part = resp.topics[0].partitions[0]
        assert (part.error_code, part.committed_offset) == (0, 42)
        # The producer goes on with the next epoch.
        p.c = c
        assert (await p.init()).producer_epoch == 1
        await c.aclose()


@pytest.mark.trio
async def test_restart_keeps_an_open_transaction_open(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **FAST) as broker:
        c = await _setup(broker, ("t", 1))
        p = await Txn.ready(c, "open")
        await _plain(c, "t", 0, b"before")
        await p.add(("t", 0))
        await p.produce("t", 0, b"pending")
        await c.aclose()
    async with running_broker(tmp_path, **FAST) as broker:
        c = await Client.connect(broker)
        p.c = c
        assert await _latest(c, "t", 0, committed=True) == 1
        part = await _fetch(c, "t", 0, 0)
        assert part.last_stable_offset == 1 and _records(part.records) == [(0, b"before")]
        assert await p.end(False) == 0
        part = await _fetch(c, "t", 0, 0)
        assert _aborted(part) == [(p.pid, 1)] and part.last_stable_offset == 3
        await c.aclose()
