"""The leader's view of its followers and the follower's truncation, on real partition logs:
high watermark over the (maximal) ISR, caught-up times, who may join or must leave the ISR,
and where a diverging follower truncates."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from pykbroker.cluster.replica_manager import FollowerState, Partition, ReplicaManager
from pykbroker.cluster.topics import TopicInfo
from pykbroker.error_codes import ErrorCode
from pykbroker.log import LogConfig, LogManager
from pykbroker.replication.fetcher import truncation_offset
from pykbroker.replication.isr import lagging_replicas, may_join_isr
from tests.log.helpers import batch

TOPIC = TopicInfo("t", uuid.uuid4(), {0: [1, 2, 3]})


def _manager(tmp_path: Path) -> ReplicaManager:
    logs = LogManager([tmp_path], LogConfig.from_mapping({}))
    return ReplicaManager(logs, lambda topic: LogConfig.from_mapping({}))


def _leader(tmp_path: Path, records: int = 10, epoch: int = 3) -> Partition:
    """Broker 1 leading t-0 (replicas 1, 2, 3) with ``records`` records in ``epoch``."""
    replicas = _manager(tmp_path)
    part = replicas.make_leader_or_follower(TOPIC, 0, 1, epoch, [1, 2, 3], [1, 2, 3], 0, 1)
    for _ in range(records):
        part.log.append_as_leader(batch(), leader_epoch=epoch)
    return part


def test_a_lone_broker_sees_its_log_end(tmp_path: Path) -> None:
    """A single broker (no cluster: no leader id, no followers): high watermark = log end."""
    replicas = _manager(tmp_path)
    replicas.host(TopicInfo("solo", uuid.uuid4(), {0: [1]}), [0])
    part = replicas.partition("solo", 0)
    assert part.high_watermark == 0
    part.log.append_as_leader(batch(3), leader_epoch=0)
    assert part.high_watermark == 3


def test_high_watermark_waits_for_every_isr_member(tmp_path: Path) -> None:
    part = _leader(tmp_path)
    assert part.high_watermark == 0  # followers have not fetched: unknown
    part.follower_state(2).on_fetch(7, 10, 1000)
    assert part.high_watermark == 0
    part.follower_state(3).on_fetch(4, 10, 1000)
    assert part.high_watermark == 4
    part.follower_state(3).on_fetch(10, 10, 1001)
    assert part.high_watermark == 7
    part.isr = [1, 3]  # 2 left the ISR: no longer waited for
    assert part.high_watermark == 10


def test_high_watermark_never_moves_back(tmp_path: Path) -> None:
    part = _leader(tmp_path)
    for r in (2, 3):
        part.follower_state(r).on_fetch(8, 10, 1000)
    assert part.high_watermark == 8
    part.isr = [1, 2, 3]
    part.follower_state(2).on_fetch(2, 10, 1001)  # a truncated follower: not below 8
    assert part.high_watermark == 8


def test_pending_expansion_is_waited_for(tmp_path: Path) -> None:
    part = _leader(tmp_path)
    part.isr = [1, 2]
    part.follower_state(2).on_fetch(10, 10, 1000)
    part.follower_state(3).on_fetch(5, 10, 1000)
    part.pending_isr = [1, 2, 3]  # proposed, not yet accepted: counted (maximal ISR)
    assert part.high_watermark == 5
    part.pending_isr = None
    assert part.high_watermark == 10


def test_caught_up_time_follows_kafkas_rule() -> None:
    state = FollowerState()
    state.on_fetch(5, 10, now=100)  # behind: never caught up yet
    assert state.last_caught_up_ms == 0
    state.on_fetch(10, 12, now=200)  # reached the end the leader had at the previous fetch
    assert state.last_caught_up_ms == 100
    state.on_fetch(12, 12, now=300)  # at the end now
    assert state.last_caught_up_ms == 300


def test_lagging_and_joining(tmp_path: Path) -> None:
    part = _leader(tmp_path)
    for r in (2, 3):
        part.follower_state(r).on_fetch(10, 10, 1_000)
    part.follower_state(3).last_caught_up_ms = 0
    assert lagging_replicas(part, now=20_000, lag_time_ms=10_000) == [3]
    part.isr = [1, 2]
    assert part.high_watermark == 10
    assert may_join_isr(part, 3)  # holds everything up to the high watermark
    part.follower_state(3).on_fetch(9, 10, 21_000)
    assert not may_join_isr(part, 3)
    assert not may_join_isr(part, 2)  # already in
    assert not may_join_isr(part, 7)  # not a replica


def test_joining_needs_the_current_epochs_first_offset(tmp_path: Path) -> None:
    part = _leader(tmp_path, records=4, epoch=3)
    replicas_again = part  # the same broker becomes leader again in epoch 5 at offset 4
    part.leader_epoch = 5
    part.log.leader_epoch_cache.assign(5, 4)
    part.isr = [1]
    part.follower_state(2).on_fetch(3, 4, 1000)
    assert part.high_watermark == 4
    assert not may_join_isr(replicas_again, 2)
    part.follower_state(2).on_fetch(4, 4, 1001)
    assert may_join_isr(part, 2)


def _follower_log(tmp_path: Path, epochs: list[int]) -> Partition:
    """Broker 2 following t-0, with one record per entry of ``epochs``."""
    replicas = _manager(tmp_path)
    part = replicas.make_leader_or_follower(TOPIC, 0, 1, max(epochs), [1, 2, 3], [1, 2, 3], 0,
                                            2)
    for epoch in epochs:
        part.log.append_as_leader(batch(), leader_epoch=epoch)
    return part


@pytest.mark.parametrize(("epochs", "leader_epoch", "leader_end", "expected"), [
    # Same epoch, leader's epoch ends earlier: truncate to the leader's end.
    ([1, 1, 2, 2, 2], 2, 3, 3),
    # Same epoch, follower's ends earlier: keep what it has of that epoch.
    ([1, 1, 2], 2, 5, 3),
    # Follower never had the leader's epoch: its own end for that epoch (the next one's start).
    ([1, 1, 3, 3], 2, 4, 2),
    # Follower ahead in an epoch the leader does not know: back to the leader's epoch end.
    ([1, 1, 1, 4], 1, 3, 3),
])
def test_truncation_offset(tmp_path: Path, epochs: list[int], leader_epoch: int,
                           leader_end: int, expected: int) -> None:
    part = _follower_log(tmp_path, epochs)
    assert truncation_offset(part, leader_epoch, leader_end) == expected


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=12).map(sorted),
       st.integers(0, 7), st.integers(0, 14))
def test_truncation_never_goes_past_the_log_end(tmp_path_factory: pytest.TempPathFactory,
                                                epochs: list[int], epoch: int,
                                                end: int) -> None:
    part = _follower_log(tmp_path_factory.mktemp("f"), epochs)
    offset = truncation_offset(part, epoch, end)
    assert 0 <= offset <= part.log.log_end_offset
    part.log.truncate_to(offset)
    assert part.log.log_end_offset == offset


def _waiting(part: Partition) -> tuple[trio.Event, trio.Event]:
    client, replica = trio.Event(), trio.Event()
    part.add_waiter(client)
    part.add_waiter(replica, replica=True)
    return client, replica


def test_an_append_to_a_replicated_partition_wakes_followers_not_clients(tmp_path: Path
                                                                          ) -> None:
    """Consumers and acks=all produces wait for the high watermark, which an append to a
    partition with followers in its ISR does not move; the followers' fetches wait for it."""
    replicas = _manager(tmp_path)
    part = replicas.make_leader_or_follower(TOPIC, 0, 1, 3, [1, 2, 3], [1, 2, 3], 0, 1)
    for replica in (2, 3):
        part.follower_state(replica).on_fetch(0, 0, 0)
    client, replica = _waiting(part)
    replicas.append(part, batch())
    assert replica.is_set() and not client.is_set()
    part.follower_state(2).on_fetch(1, 1, 0)
    assert not part.advance_high_watermark() and not client.is_set()  # 3 is still at 0
    part.follower_state(3).on_fetch(1, 1, 0)
    assert part.advance_high_watermark()  # (IsrManager.on_follower_fetch calls it)
    assert client.is_set()  # the move woke the clients


def test_an_append_wakes_clients_where_the_leader_alone_is_in_sync(tmp_path: Path) -> None:
    replicas = _manager(tmp_path)
    shrunk = replicas.make_leader_or_follower(TOPIC, 0, 1, 3, [1], [1, 2, 3], 0, 1)
    client, replica = _waiting(shrunk)
    replicas.append(shrunk, batch())
    assert client.is_set() and replica.is_set()
    assert shrunk.high_watermark == 1

    lone = _manager(tmp_path / "lone")
    lone.host(TOPIC, [0])
    part = lone.partitions[("t", 0)]
    client, _ = _waiting(part)
    lone.append(part, batch())
    assert client.is_set()


def test_whoever_sees_the_high_watermark_move_wakes_the_clients(tmp_path: Path) -> None:
    """Appends wake only followers, so a move of the high watermark must wake the clients
    even when a reader of ``high_watermark`` (a consumer's fetch) computes it before the
    follower fetch that caused it does: otherwise acks=all produces wait on, and with every
    write of the producer in flight no append comes to wake them (the crash-loop stall)."""
    replicas = _manager(tmp_path)
    part = replicas.make_leader_or_follower(TOPIC, 0, 1, 3, [1, 2, 3], [1, 2, 3], 0, 1)
    for replica in (2, 3):
        part.follower_state(replica).on_fetch(0, 0, 0)
    replicas.append(part, batch())
    producer, _ = _waiting(part)
    for replica in (2, 3):  # the followers' states, as their fetches record them
        part.follower_state(replica).on_fetch(1, 1, 0)
    assert part.high_watermark == 1  # seen first by a consumer's fetch
    assert producer.is_set()
    assert not part.advance_high_watermark()  # the follower fetch finds nothing left to do


def test_a_refused_isr_expansion_lets_the_high_watermark_move(tmp_path: Path) -> None:
    """A pending expansion holds the high watermark back for the joining replica (Kafka's
    maximal ISR); when the controller refuses it, the high watermark moves and the clients
    waiting on it wake."""
    from types import SimpleNamespace

    from pykbroker.replication.isr import IsrManager

    replicas = _manager(tmp_path)
    part = replicas.make_leader_or_follower(TOPIC, 0, 1, 3, [1, 2], [1, 2, 3], 0, 1)
    part.follower_state(2).on_fetch(0, 0, 0)
    part.follower_state(3).on_fetch(0, 0, 0)
    replicas.append(part, batch())
    part.pending_isr = [1, 2, 3]
    part.follower_state(2).on_fetch(1, 1, 0)
    assert part.high_watermark == 0  # 3 is joining: waited for
    producer, _ = _waiting(part)
    refused = SimpleNamespace(error_code=int(ErrorCode.NOT_CONTROLLER), topics=[])
    isr = IsrManager.__new__(IsrManager)  # _apply's bookkeeping only
    isr._apply(part, [1, 2, 3], 3, refused)
    assert part.pending_isr is None and producer.is_set()
    assert part.high_watermark == 1


def test_wake_reaches_every_waiter(tmp_path: Path) -> None:
    """Leadership changes and markers wake both kinds."""
    part = _leader(tmp_path, records=0)
    client, replica = _waiting(part)
    part.wake()
    assert client.is_set() and replica.is_set()

def test_a_follower_wakes_its_consumers_when_the_leaders_high_watermark_arrives(
        tmp_path: Path) -> None:
    """Consumers reading from a follower (KIP-392) long-poll on it: the high watermark a
    fetch response brings wakes them, records alone or an unchanged one do not."""
    from pykbroker.protocol._generated.fetch_response import EpochEndOffset, PartitionData
    from pykbroker.replication.fetcher import ReplicaFetcher

    replicas = _manager(tmp_path)
    part = replicas.make_leader_or_follower(TOPIC, 0, 2, 3, [1, 2, 3], [1, 2, 3], 0, 1)
    assert not part.is_leader
    leader_log = _leader(tmp_path / "leader", records=2).log
    fetched = leader_log.read(0, 1 << 20, max_offset=2).data
    fetcher = ReplicaFetcher(None, 2)  # type: ignore[arg-type]  # _apply's success path only

    def response(hw: int, records: object) -> PartitionData:
        return PartitionData(partition_index=0, error_code=0, high_watermark=hw,
                             last_stable_offset=hw, log_start_offset=0,
                             diverging_epoch=EpochEndOffset(epoch=-1, end_offset=-1),
                             records=records)

    def waiting() -> trio.Event:
        event = trio.Event()
        part.add_waiter(event)
        return event

    consumer = waiting()
    trio.run(fetcher._apply, part, response(0, fetched))  # records, high watermark still 0
    assert part.log.log_end_offset == 2 and part.high_watermark == 0
    assert not consumer.is_set()
    trio.run(fetcher._apply, part, response(2, b""))
    assert part.high_watermark == 2 and consumer.is_set()
    again = waiting()
    trio.run(fetcher._apply, part, response(2, b""))
    assert not again.is_set()
