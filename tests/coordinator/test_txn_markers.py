"""The transaction marker channel (Kafka's TransactionMarkerChannelManager): grouping markers
by partition leader, one request per broker, retries with backoff on NOT_LEADER_OR_FOLLOWER,
connection errors and leader changes, partitions of deleted topics dropped, fencing errors
stopping a transaction, and completion only when every partition's marker is written."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import trio
import trio.testing

from pykbroker.cluster.broker_client import BrokerConnectionError
from pykbroker.cluster.metadata_cache import Endpoint, LiveBroker, MetadataCache, PartitionState
from pykbroker.cluster.txn_markers import (
    DELETED,
    NO_LEADER,
    RETRY_BACKOFF_MAX_S,
    RETRY_BACKOFF_S,
    MarkerQueue,
    Outcome,
    TxnMarkerChannel,
    TxnMarkerEntry,
    backoff,
    build_request,
    cache_lookups,
    classify,
    response_codes,
)
from pykbroker.error_codes import ErrorCode
from pykbroker.protocol._generated.write_txn_markers_request import WriteTxnMarkersRequest
from pykbroker.protocol._generated.write_txn_markers_response import (
    WritableTxnMarkerPartitionResult,
    WritableTxnMarkerResult,
    WritableTxnMarkerTopicResult,
    WriteTxnMarkersResponse,
)
from pykbroker.protocol.api import ApiKey

E = ErrorCode


def entry(txn_id: str, pid: int, *tps: tuple[str, int], done: list[str] | None = None,
          commit: bool = True) -> TxnMarkerEntry:
    return TxnMarkerEntry(txn_id, pid, 3, commit, 7, set(tps),
                          (lambda: done.append(txn_id)) if done is not None else lambda: None)


# -- the pure bookkeeping ---------------------------------------------------------------------


def test_classify_is_kafkas_completion_handler() -> None:
    assert classify(E.NONE) is Outcome.WRITTEN
    for code in (E.UNSUPPORTED_FOR_MESSAGE_FORMAT, E.UNSUPPORTED_VERSION):
        assert classify(code) is Outcome.WRITTEN  # Kafka skips such partitions
    for code in (E.NOT_LEADER_OR_FOLLOWER, E.UNKNOWN_TOPIC_OR_PARTITION,
                 E.NOT_ENOUGH_REPLICAS, E.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                 E.REQUEST_TIMED_OUT, E.KAFKA_STORAGE_ERROR, E.NETWORK_EXCEPTION,
                 E.UNKNOWN_SERVER_ERROR):
        assert classify(code) is Outcome.RETRY
    for code in (E.INVALID_PRODUCER_EPOCH, E.TRANSACTION_COORDINATOR_FENCED,
                 E.CORRUPT_MESSAGE, E.MESSAGE_TOO_LARGE, E.RECORD_LIST_TOO_LARGE,
                 E.INVALID_REQUIRED_ACKS):
        assert classify(code) is Outcome.STOP


def test_backoff_doubles_up_to_its_cap() -> None:
    assert backoff(1) == RETRY_BACKOFF_S
    assert backoff(2) == 2 * RETRY_BACKOFF_S
    assert backoff(3) == 4 * RETRY_BACKOFF_S
    assert backoff(100) == RETRY_BACKOFF_MAX_S


def test_ready_groups_partitions_of_several_transactions_by_leader() -> None:
    leaders = {("a", 0): 1, ("a", 1): 2, ("b", 0): 2, ("b", 1): 3, ("c", 0): NO_LEADER,
               ("gone", 0): DELETED}
    q = MarkerQueue()
    done: list[str] = []
    t1 = entry("t1", 10, ("a", 0), ("a", 1), ("b", 0), done=done)
    t2 = entry("t2", 20, ("b", 0), ("b", 1), ("c", 0), ("gone", 0), done=done)
    q.add(t1)
    q.add(t2)
    batches, waiting = q.ready(0.0, lambda t, i: leaders[(t, i)])
    assert waiting  # ("c", 0) has no leader
    assert {b: [(e.transactional_id, tps) for e, tps in batch]
            for b, batch in batches.items()} == {
        1: [("t1", [("a", 0)])],
        2: [("t1", [("a", 1), ("b", 0)]), ("t2", [("b", 0)])],
        3: [("t2", [("b", 1)])],
    }
    assert t2.pending == {("b", 0), ("b", 1), ("c", 0)}  # the deleted one is dropped
    # A busy broker's partitions wait; in-flight ones are not sent twice.
    q.mark_in_flight(batches[1])
    batches, _ = q.ready(0.0, lambda t, i: leaders[(t, i)], busy={2})
    assert sorted(batches) == [3]
    assert done == []


def test_an_entry_completes_when_its_last_partition_is_written_or_deleted() -> None:
    q = MarkerQueue()
    done: list[str] = []
    t = entry("t", 1, ("a", 0), ("a", 1), done=done)
    q.add(t)
    q.mark_in_flight([(t, [("a", 0), ("a", 1)])])
    assert q.record(t, ("a", 0), E.NONE, 0.0) is Outcome.WRITTEN
    assert done == [] and t.pending == {("a", 1)}
    assert q.record(t, ("a", 1), E.NOT_LEADER_OR_FOLLOWER, 0.0) is Outcome.RETRY
    assert done == [] and "t" in q.entries
    assert q.record(t, ("a", 1), E.NONE, 1.0) is Outcome.WRITTEN
    assert done == ["t"] and not q.entries
    assert q.record(t, ("a", 1), E.NONE, 1.0) is None  # late duplicates are ignored
    assert done == ["t"]
    # Dropping the last partition (a deleted topic) completes too, as does nothing at all.
    u = entry("u", 2, ("x", 0), done=done)
    q.add(u)
    q.ready(0.0, lambda t, i: DELETED)
    assert done == ["t", "u"] and not q.entries
    q.add(entry("v", 3, done=done))
    assert done == ["t", "u", "v"] and not q.entries


def test_retries_back_off_and_a_metadata_change_retries_now() -> None:
    q = MarkerQueue()
    t = entry("t", 1, ("a", 0))
    q.add(t)
    for attempt, expected in enumerate((0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0), start=1):
        q.mark_in_flight([(t, [("a", 0)])])
        assert q.next_retry(10.0) is None  # in flight: no deadline
        q.record(t, ("a", 0), E.NETWORK_EXCEPTION, 10.0)
        assert t.attempts[("a", 0)] == attempt
        assert q.next_retry(10.0) == pytest.approx(10.0 + expected)
        assert q.ready(10.0, lambda t, i: 1)[0] == {}  # still backing off
        assert q.ready(10.0 + expected, lambda t, i: 1)[0] == {1: [(t, [("a", 0)])]}
    q.retry_now()
    assert q.next_retry(10.0) is None
    assert q.ready(10.0, lambda t, i: 1)[0] == {1: [(t, [("a", 0)])]}


def test_fencing_errors_stop_the_transaction_without_completing_it() -> None:
    q = MarkerQueue()
    done: list[str] = []
    t = entry("t", 1, ("a", 0), ("a", 1), done=done)
    q.add(t)
    assert q.record(t, ("a", 0), E.TRANSACTION_COORDINATOR_FENCED, 0.0) is Outcome.STOP
    assert not q.entries
    assert q.record(t, ("a", 1), E.NONE, 0.0) is None
    assert done == []


def test_a_replaced_or_removed_entry_ignores_late_answers() -> None:
    q = MarkerQueue()
    done: list[str] = []
    old = entry("t", 1, ("a", 0), done=done)
    q.add(old)
    new = entry("t", 1, ("a", 0), ("a", 1), done=done)
    q.add(new)
    assert q.record(old, ("a", 0), E.NONE, 0.0) is None
    assert new.pending == {("a", 0), ("a", 1)}
    assert q.remove(["t", "other"]) == 1
    assert q.record(new, ("a", 0), E.NONE, 0.0) is None
    assert done == []


def test_request_and_response_shapes() -> None:
    t1 = entry("t1", 10, commit=True)
    t2 = entry("t2", 20, commit=False)
    request = build_request([(t1, [("a", 0), ("b", 1), ("a", 2)]), (t2, [("b", 0)])])
    data = request.to_bytes(1)
    back, _ = WriteTxnMarkersRequest.decode(data, 0, 1)
    assert [(m.producer_id, m.producer_epoch, m.transaction_result, m.coordinator_epoch,
             [(tp.name, tp.partition_indexes) for tp in m.topics]) for m in back.markers] == [
        (10, 3, True, 7, [("a", [0, 2]), ("b", [1])]),
        (20, 3, False, 7, [("b", [0])])]
    response = WriteTxnMarkersResponse(markers=[WritableTxnMarkerResult(10, [
        WritableTxnMarkerTopicResult("a", [WritableTxnMarkerPartitionResult(0, 0),
                                           WritableTxnMarkerPartitionResult(2, 6)])])])
    assert response_codes(response) == {(10, "a", 0): E.NONE,
                                        (10, "a", 2): E.NOT_LEADER_OR_FOLLOWER}


def test_cache_lookups() -> None:
    cache = MetadataCache()
    leader_of, endpoint_of = cache_lookups(cache, "INTERNAL")
    # Before the first UpdateMetadata nothing is known, which is not a deletion.
    assert leader_of("t", 0) == NO_LEADER
    topic_id = uuid.uuid4()
    cache.update(1, 1, [LiveBroker(2, (Endpoint("INTERNAL", "h2", 92),
                                       Endpoint("EXTERNAL", "x", 1))),
                        LiveBroker(3, (Endpoint("EXTERNAL", "y", 2),))],
                 [("t", topic_id, 0, PartitionState(2, 0, [2], [2])),
                  ("t", topic_id, 1, PartitionState(-1, 0, [], [4]))])
    assert leader_of("t", 0) == 2 and endpoint_of(2) == ("h2", 92)
    assert leader_of("t", 1) == NO_LEADER
    assert leader_of("t", 2) == DELETED and leader_of("u", 0) == DELETED
    assert endpoint_of(3) is None and endpoint_of(4) is None  # no such listener / not live


# -- the channel ------------------------------------------------------------------------------


class FakeBroker:
    """A broker's WriteTxnMarkers answers: what it leads, or scripted failures."""

    def __init__(self, broker_id: int, leads: set[tuple[str, int]]) -> None:
        self.broker_id = broker_id
        self.leads = leads
        self.failures: list[Exception | ErrorCode] = []
        self.requests: list[list[tuple[int, bool, list[tuple[str, int]]]]] = []
        self.written: list[tuple[int, bool, str, int]] = []
        self.closed = 0

    async def request(self, api_key: int, api_version: int, body: Any,
                      timeout_s: float = 30.0) -> Any:
        assert api_key == ApiKey.WRITE_TXN_MARKERS and api_version == 1
        body, _ = WriteTxnMarkersRequest.decode(body.to_bytes(1), 0, 1)
        await trio.sleep(0.01)
        self.requests.append([(m.producer_id, m.transaction_result,
                               [(t.name, p) for t in m.topics for p in t.partition_indexes])
                              for m in body.markers])
        failure = self.failures.pop(0) if self.failures else None
        if isinstance(failure, Exception):
            raise failure
        results = []
        for m in body.markers:
            topics = []
            for t in m.topics:
                parts = []
                for p in t.partition_indexes:
                    code = failure or (E.NONE if (t.name, p) in self.leads
                                       else E.NOT_LEADER_OR_FOLLOWER)
                    if code == E.NONE:
                        self.written.append((m.producer_id, m.transaction_result, t.name, p))
                    parts.append(WritableTxnMarkerPartitionResult(p, int(code)))
                topics.append(WritableTxnMarkerTopicResult(t.name, parts))
            results.append(WritableTxnMarkerResult(m.producer_id, topics))
        return WriteTxnMarkersResponse(markers=results)

    async def close(self) -> None:
        self.closed += 1


class Cluster:
    """Broker 1 is ``self``; the others are FakeBrokers at port == id."""

    def __init__(self) -> None:
        self.leaders: dict[tuple[str, int], int] = {}
        self.alive = {1, 2, 3}
        self.brokers = {i: FakeBroker(i, set()) for i in (2, 3)}
        self.local: list[tuple[int, bool, str, int]] = []
        self.local_failures: dict[tuple[str, int], ErrorCode] = {}
        self.changed = trio.Event()
        self.channel = TxnMarkerChannel(
            1, self.leader_of, lambda b: ("h", b) if b in self.alive else None,
            self.write_local, connect=lambda host, port: self.brokers[port],
            changes=self.wait_for_change)

    def lead(self, broker: int, *tps: tuple[str, int]) -> None:
        for tp in tps:
            self.leaders[tp] = broker
            for b in self.brokers.values():
                b.leads.discard(tp)
            if broker in self.brokers:
                self.brokers[broker].leads.add(tp)

    def leader_of(self, topic: str, index: int) -> int:
        return self.leaders.get((topic, index), DELETED)

    def write_local(self, topic: str, index: int, pid: int, epoch: int, commit: bool,
                    coordinator_epoch: int) -> ErrorCode:
        if (topic, index) in self.local_failures:
            return self.local_failures[(topic, index)]
        if self.leaders.get((topic, index)) != 1:
            return E.NOT_LEADER_OR_FOLLOWER
        self.local.append((pid, commit, topic, index))
        return E.NONE

    async def wait_for_change(self) -> None:
        await self.changed.wait()

    def metadata_changed(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


@pytest.mark.trio
async def test_local_partitions_are_written_before_send_returns() -> None:
    c = Cluster()
    c.lead(1, ("a", 0), ("a", 1))
    done: list[str] = []
    c.channel.send("t", 5, 0, True, 2, [("a", 0), ("a", 1)], lambda: done.append("t"))
    assert done == ["t"] and c.local == [(5, True, "a", 0), (5, True, "a", 1)]
    assert not c.channel.pending("t")


@pytest.mark.trio
async def test_markers_reach_every_leader_in_one_request_per_broker(
        autojump_clock: trio.testing.MockClock) -> None:
    c = Cluster()
    c.lead(1, ("a", 0))
    c.lead(2, ("a", 1), ("b", 0))
    c.lead(3, ("a", 2))
    done: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(c.channel.run)
        c.channel.send("t1", 5, 0, True, 2, [("a", 0), ("a", 1), ("a", 2)],
                       lambda: done.append("t1"))
        c.channel.send("t2", 6, 0, False, 2, [("b", 0), ("a", 2)], lambda: done.append("t2"))
        assert c.local == [(5, True, "a", 0)] and done == []
        assert c.channel.pending("t1") and c.channel.pending("t2")
        await trio.sleep(1)
        assert sorted(done) == ["t1", "t2"]
        assert c.brokers[2].requests == [[(5, True, [("a", 1)]), (6, False, [("b", 0)])]]
        assert c.brokers[3].requests == [[(5, True, [("a", 2)]), (6, False, [("a", 2)])]]
        nursery.cancel_scope.cancel()
    assert c.brokers[2].closed == c.brokers[3].closed == 1


@pytest.mark.trio
async def test_not_leader_is_retried_at_the_new_leader(
        autojump_clock: trio.testing.MockClock) -> None:
    c = Cluster()
    c.lead(2, ("a", 0), ("a", 1))
    c.brokers[2].leads.discard(("a", 1))  # broker 2 lost it; our metadata is stale
    done: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(c.channel.run)
        c.channel.send("t", 5, 0, True, 2, [("a", 0), ("a", 1)], lambda: done.append("t"))
        await trio.sleep(0.5)
        assert done == [] and len(c.brokers[2].requests) >= 2  # retried, backing off
        assert c.brokers[2].requests[1] == [(5, True, [("a", 1)])]  # only the failed one
        c.lead(3, ("a", 1))
        c.metadata_changed()
        await trio.sleep(0.05)
        assert done == ["t"]
        assert c.brokers[3].written == [(5, True, "a", 1)]
        assert c.brokers[2].written == [(5, True, "a", 0)]
        # A partition that moved here is written locally.
        c.lead(3, ("b", 0))
        c.brokers[3].leads.discard(("b", 0))
        c.channel.send("u", 6, 0, False, 2, [("b", 0)], lambda: done.append("u"))
        await trio.sleep(0.5)
        c.lead(1, ("b", 0))
        await trio.sleep(2)
        assert done == ["t", "u"] and c.local == [(6, False, "b", 0)]
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_connection_errors_and_dead_leaders_are_waited_out(
        autojump_clock: trio.testing.MockClock) -> None:
    c = Cluster()
    c.lead(2, ("a", 0))
    c.lead(3, ("a", 1))
    c.brokers[2].failures = [BrokerConnectionError("refused")] * 3
    c.alive.discard(3)  # leader known, broker not alive: wait for it
    done: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(c.channel.run)
        start = trio.current_time()
        c.channel.send("t", 5, 0, True, 2, [("a", 0), ("a", 1)], lambda: done.append("t"))
        await trio.sleep(5)
        assert len(c.brokers[2].requests) == 4 and c.brokers[2].written == [(5, True, "a", 0)]
        assert c.brokers[3].requests == [] and done == []
        c.alive.add(3)
        await trio.sleep(1)  # no metadata change needed: polled
        assert done == ["t"] and c.brokers[3].written == [(5, True, "a", 1)]
        assert trio.current_time() - start < 7
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_fenced_coordinator_stops_and_removal_drops(
        autojump_clock: trio.testing.MockClock) -> None:
    c = Cluster()
    c.lead(2, ("a", 0), ("a", 1))
    c.brokers[2].failures = [E.TRANSACTION_COORDINATOR_FENCED]
    done: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(c.channel.run)
        c.channel.send("t", 5, 0, True, 2, [("a", 0), ("a", 1)], lambda: done.append("t"))
        await trio.sleep(2)
        assert done == [] and not c.channel.pending("t")
        assert len(c.brokers[2].requests) == 1
        # The coordinator moved away: its transactions' markers stop (Kafka's
        # removeMarkersForTxnTopicPartition).
        c.alive.discard(2)
        c.channel.send("u", 6, 0, True, 2, [("a", 0)], lambda: done.append("u"))
        assert c.channel.pending("u")
        assert c.channel.remove(["u"]) == 1
        c.alive.add(2)
        await trio.sleep(2)
        assert done == [] and len(c.brokers[2].requests) == 1
        # A local fencing error stops at once, too.
        c.lead(1, ("b", 0))
        c.local_failures[("b", 0)] = E.INVALID_PRODUCER_EPOCH
        c.channel.send("v", 7, 0, True, 2, [("b", 0), ("a", 0)], lambda: done.append("v"))
        assert not c.channel.pending("v") and done == []
        nursery.cancel_scope.cancel()
