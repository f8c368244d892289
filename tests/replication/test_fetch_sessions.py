"""Incremental fetch sessions (KIP-227) between a follower and its leader, as Kafka's replica
fetchers use them: after one full fetch, a follower names only the partitions whose fetch
state changed (and forgets those it stopped fetching); the leader keeps the rest as last sent
and answers only partitions with news. Real partition logs; the leader's handler and the
fetcher's request builder are called directly."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from pykbroker.cluster.fetch_session import FetchSessionCache
from pykbroker.cluster.replica_manager import ReplicaManager
from pykbroker.cluster.topics import TopicInfo
from pykbroker.error_codes import ErrorCode
from pykbroker.log import LogConfig, LogManager
from pykbroker.protocol._generated.fetch_request import (
    FetchPartition,
    FetchRequest,
    FetchTopic,
    ForgottenTopic,
    ReplicaState,
)
from pykbroker.protocol._generated.fetch_response import FetchResponse, PartitionData
from pykbroker.replication.fetcher import FetcherSettings, ReplicaFetcher
from pykbroker.replication.isr import lagging_replicas, may_join_isr, now_ms
from pykbroker.replication.leader import handle_replica_fetch
from tests.log.helpers import batch

TOPIC = TopicInfo("t", uuid.uuid4(), {0: [1, 2, 3], 1: [1, 2, 3]})


def _replicas(tmp_path: Path, leader: int, records: int) -> ReplicaManager:
    replicas = ReplicaManager(LogManager([tmp_path], LogConfig.from_mapping({})),
                              lambda topic: LogConfig.from_mapping({}))
    for index in (0, 1):
        part = replicas.make_leader_or_follower(TOPIC, index, leader, 3, [1, 2, 3], [1, 2, 3],
                                                0, 1)
        if part.is_leader:
            for _ in range(records):
                part.log.append_as_leader(batch(), leader_epoch=3)
    return replicas


# -- the leader ------------------------------------------------------------------------------

def _append(ctx: Any, index: int) -> None:
    """An append as the broker makes it (ReplicaManager.append): the log, then the wake."""
    part = ctx.services.replicas.partitions[("t", index)]
    part.log.append_as_leader(batch(), leader_epoch=3)
    part.wake_on_append()


def _leader_ctx(tmp_path: Path) -> Any:
    services = SimpleNamespace(
        cluster=SimpleNamespace(cache=SimpleNamespace(broker=lambda r: object())), node_id=1,
        topics=SimpleNamespace(store=SimpleNamespace(
            name_of=lambda tid: TOPIC.name if tid == TOPIC.topic_id else None)),
        replicas=_replicas(tmp_path, leader=1, records=10), fetch_sessions=FetchSessionCache())
    return SimpleNamespace(services=services, api_version=15)


def _fetch(ctx: Any, replica: int, offsets: dict[int, int], session_id: int = 0,
           epoch: int = 0, forget: tuple[int, ...] = (),
           on_follower_fetch: Callable[[Any, int], None] = lambda part, r: None,
           max_wait_ms: int = 0) -> FetchResponse:
    req = FetchRequest(
        replica_id=-1, replica_state=ReplicaState(replica_id=replica, replica_epoch=1),
        max_wait_ms=max_wait_ms, min_bytes=1, max_bytes=1 << 20, session_id=session_id,
        session_epoch=epoch, topics=[FetchTopic(topic="", topic_id=TOPIC.topic_id, partitions=[
            FetchPartition(partition=p, current_leader_epoch=3, fetch_offset=o,
                           last_fetched_epoch=3 if o else -1, log_start_offset=0,
                           partition_max_bytes=1 << 20) for p, o in offsets.items()])]
        if offsets else [],
        forgotten_topics_data=[ForgottenTopic(topic="", topic_id=TOPIC.topic_id,
                                              partitions=list(forget))] if forget else [])
    return trio.run(handle_replica_fetch, ctx, req, replica, on_follower_fetch)


def _answered(resp: FetchResponse) -> dict[int, tuple[int, int]]:
    """partition -> (bytes of records, high watermark)."""
    return {p.partition_index: (len(p.records or b""), p.high_watermark)
            for t in resp.responses for p in t.partitions}


def test_the_leader_answers_an_incremental_fetch_with_only_what_changed(
        tmp_path: Path) -> None:
    ctx = _leader_ctx(tmp_path)
    full = _fetch(ctx, 2, {0: 0, 1: 0})
    assert full.session_id != 0 and full.error_code == 0
    assert set(_answered(full)) == {0, 1}  # a full fetch answers every partition
    sid = full.session_id
    # Follower 2 caught up on partition 0 only; partition 1 stays at 0 in the session.
    resp = _fetch(ctx, 2, {0: 10}, sid, 1)
    got = _answered(resp)
    assert 1 in got and got[1][0] > 0  # the session's cached offset 0: records again
    assert 0 not in got  # nothing new for it, and its high watermark did not move
    # Follower 3 catches up on both: the high watermark of partition 0 moves to 10, which
    # follower 2 hears of though it names no partition at all.
    _fetch(ctx, 3, {0: 10, 1: 10})
    resp = _fetch(ctx, 2, {1: 10}, sid, 2)
    assert _answered(resp) == {0: (0, 10), 1: (0, 10)}
    resp = _fetch(ctx, 2, {}, sid, 3)  # nothing changed anywhere: an empty answer
    assert resp.error_code == 0 and _answered(resp) == {}
    # A forgotten partition is no longer fetched: new records on it are not answered.
    _append(ctx, 1)
    _append(ctx, 0)
    resp = _fetch(ctx, 2, {}, sid, 4, forget=(1,))
    assert set(_answered(resp)) == {0}


# -- idle partitions in a follower's session: not re-read while nothing changed ------------

def _idle_session(tmp_path: Path) -> tuple[Any, int]:
    """A leader whose two partitions are replicated to their log end (10) by followers 3
    and 2, and the session of follower 2, opened by a full fetch that found it caught up on
    both (the state in which the leader stops re-reading them)."""
    ctx = _leader_ctx(tmp_path)
    _fetch(ctx, 3, {0: 10, 1: 10})
    full = _fetch(ctx, 2, {0: 10, 1: 10})
    assert full.session_id != 0 and _answered(full) == {0: (0, 10), 1: (0, 10)}
    return ctx, full.session_id


def _count_reads(monkeypatch: pytest.MonkeyPatch, replica: int = 2) -> list[int]:
    """The partitions the leader reads for ``replica`` from now on."""
    import pykbroker.replication.leader as leader

    reads: list[int] = []
    real = leader._read_for

    def counting(part: Any, reader: int, *args: Any) -> Any:
        if reader == replica:
            reads.append(part.index)
        return real(part, reader, *args)

    monkeypatch.setattr(leader, "_read_for", counting)
    return reads


def _reported(resp: FetchResponse) -> dict[int, PartitionData]:
    return {p.partition_index: p for t in resp.responses for p in t.partitions}


def test_an_idle_partition_is_not_reread_yet_its_follower_stays_caught_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Skipping the read must still count the fetch as the follower catching up, or the
    leader's ISR check would shrink every idle partition out of the ISR."""
    ctx, sid = _idle_session(tmp_path)
    part = ctx.services.replicas.partitions[("t", 0)]
    reads = _count_reads(monkeypatch)
    stale = now_ms() - 60_000  # last caught up a minute ago: lagging for a 30 s lag time
    part.followers[2].last_caught_up_ms = stale
    assert lagging_replicas(part, now_ms(), 30_000) == [2]
    before = now_ms()
    resp = _fetch(ctx, 2, {}, sid, 1)
    assert resp.error_code == 0 and _answered(resp) == {}
    assert reads == []  # neither partition read again
    assert part.followers[2].last_caught_up_ms >= before
    assert lagging_replicas(part, now_ms(), 30_000) == []
    assert part.followers[2].log_end_offset == 10


def test_an_idle_partition_named_again_is_read_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A follower names a partition when its fetch state changed: the leader must read it
    with the new request, not answer from the old one; then it is idle again."""
    ctx, sid = _idle_session(tmp_path)
    reads = _count_reads(monkeypatch)
    resp = _fetch(ctx, 2, {0: 10}, sid, 1)  # the same offset, but a new request for it
    assert reads == [0] and _answered(resp) == {}  # read; still nothing to say
    assert _answered(_fetch(ctx, 2, {}, sid, 2)) == {} and reads == [0]


def test_an_append_to_an_idle_partition_is_answered_at_the_next_fetch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The follower does not name a partition it is caught up on: only the leader's log end
    moving can tell it there is more. Once caught up again, the partition is idle again."""
    ctx, sid = _idle_session(tmp_path)
    reads = _count_reads(monkeypatch)
    assert _answered(_fetch(ctx, 2, {}, sid, 1)) == {} and reads == []
    _append(ctx, 0)
    resp = _fetch(ctx, 2, {}, sid, 2)
    assert _answered(resp) == {0: (len(batch()), 10)} and reads == [0]
    assert _answered(_fetch(ctx, 2, {0: 11}, sid, 3)) == {}  # follower 3 is not at 11 yet
    _fetch(ctx, 3, {0: 11, 1: 10})
    resp = _fetch(ctx, 2, {}, sid, 4)  # not idle: the high watermark moved to 11
    assert _answered(resp) == {0: (0, 11)} and reads == [0, 0, 0]
    assert _answered(_fetch(ctx, 2, {}, sid, 5)) == {} and len(reads) == 3  # idle again


def test_a_fetch_that_waited_still_sends_what_its_first_pass_read(tmp_path: Path) -> None:
    """The first pass reads a partition the follower has just caught up on, with a high
    watermark it has not been told (its fetch moved it): the entry becomes quiet, but this
    answer is still to be sent. A long-poll that waits (no records) and passes again at its
    deadline must send it, not skip the partition as quiet (a follower then never learnt
    the high watermark, and a consumer reading from it saw nothing: KIP-392)."""
    ctx, sid = _idle_session(tmp_path)
    part = ctx.services.replicas.partitions[("t", 0)]
    _append(ctx, 0)
    _fetch(ctx, 3, {0: 11, 1: 10})  # follower 3 has it; the high watermark waits for 2
    assert part.high_watermark == 10
    resp = _fetch(ctx, 2, {0: 11}, sid, 1, on_follower_fetch=lambda p, r: p.wake()
                  if p.advance_high_watermark() else None, max_wait_ms=50)
    assert _answered(resp) == {0: (0, 11)}
    assert _answered(_fetch(ctx, 2, {}, sid, 2)) == {}  # told: quiet from now on


def _delete_records(ctx: Any) -> None:
    part = ctx.services.replicas.partitions[("t", 0)]
    part.log.delete_records_before(5)
    part.wake()  # (as the DeleteRecords handler does)


def _new_leader_epoch(ctx: Any) -> None:
    ctx.services.replicas.make_leader_or_follower(TOPIC, 0, 1, 4, [1, 2, 3], [1, 2, 3], 1, 1)


@pytest.mark.parametrize(("change", "expected"), [
    (_delete_records, (0, 5)),  # the follower must move its own log start
    (_new_leader_epoch, (int(ErrorCode.FENCED_LEADER_EPOCH), -1)),  # its epoch is stale
], ids=["log-start", "leader-epoch"])
def test_an_idle_partition_whose_log_start_or_leader_epoch_changed_is_answered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: Callable[[Any], None],
        expected: tuple[int, int]) -> None:
    """Neither changes the log end, yet the follower must hear of both."""
    ctx, sid = _idle_session(tmp_path)
    reads = _count_reads(monkeypatch)
    change(ctx)
    got = _reported(_fetch(ctx, 2, {}, sid, 1))
    assert set(got) == {0} and reads == [0]
    assert (got[0].error_code, got[0].log_start_offset) == expected


def _quiet_append(ctx: Any) -> None:
    ctx.services.replicas.partitions[("t", 0)].log.append_as_leader(batch(), leader_epoch=3)


def _quiet_delete_records(ctx: Any) -> None:
    ctx.services.replicas.partitions[("t", 0)].log.delete_records_before(5)


def _quiet_isr_shrink(ctx: Any) -> None:
    ctx.services.replicas.partitions[("t", 0)].isr = [1, 3]


@pytest.mark.parametrize("change", [_quiet_append, _quiet_delete_records, _quiet_isr_shrink],
                         ids=["append", "log-start", "isr"])
def test_a_change_that_wakes_no_watch_is_found_within_a_second(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: Callable[[Any], None]) -> None:
    """The broker wakes a partition's followers at every change they must hear of; should a
    change come another way, the leader still checks every idle partition in full at least
    every VERIFY_QUIET_S."""
    import pykbroker.replication.leader as leader

    clock = [1000.0]
    monkeypatch.setattr(leader, "time", SimpleNamespace(time=time.time,
                                                        monotonic=lambda: clock[0]))
    ctx, sid = _idle_session(tmp_path)
    reads = _count_reads(monkeypatch)
    assert _fetch(ctx, 2, {}, sid, 1).error_code == 0 and reads == []  # checked in full
    change(ctx)
    clock[0] += leader.VERIFY_QUIET_S / 2
    assert _answered(_fetch(ctx, 2, {}, sid, 2)) == {} and reads == []  # not yet
    clock[0] += leader.VERIFY_QUIET_S / 2
    _fetch(ctx, 2, {}, sid, 3)
    assert reads == [0]


def test_an_append_wakes_a_long_poll_whose_partitions_are_all_idle(tmp_path: Path) -> None:
    """No waiter is registered per fetch on idle partitions: their watches wake it."""
    ctx, sid = _idle_session(tmp_path)
    answer: list[FetchResponse] = []

    async def main() -> None:
        async def follower_2() -> None:
            req = FetchRequest(
                replica_id=-1, replica_state=ReplicaState(replica_id=2, replica_epoch=1),
                max_wait_ms=10_000, min_bytes=1, max_bytes=1 << 20, session_id=sid,
                session_epoch=1, topics=[], forgotten_topics_data=[])
            answer.append(await handle_replica_fetch(ctx, req, 2, lambda part, r: None))

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(follower_2)
                await trio.sleep(0.05)
                assert not answer  # parked
                _append(ctx, 1)

    trio.run(main)
    assert _answered(answer[0]) == {1: (len(batch()), 10)}


def test_watches_leave_the_partitions_with_their_session_or_request(tmp_path: Path) -> None:
    """An idle entry's watch sits in its partition's follower waiters until it fires; an
    entry named again, forgotten, or closed with its session takes it away, so that the
    waiters do not pile up on partitions that never see an append."""
    ctx, sid = _idle_session(tmp_path)
    parts = [ctx.services.replicas.partitions[("t", i)] for i in (0, 1)]
    assert [len(p._replica_waiters) for p in parts] == [1, 1]
    epoch = 1
    for _ in range(5):  # named again each time: read, idle again, one watch
        _fetch(ctx, 2, {0: 10}, sid, epoch)
        epoch += 1
    assert [len(p._replica_waiters) for p in parts] == [1, 1]
    _fetch(ctx, 2, {}, sid, epoch, forget=(1,))
    assert [len(p._replica_waiters) for p in parts] == [1, 0]
    _fetch(ctx, 2, {}, sid, -1)  # the follower closes its session
    assert [len(p._replica_waiters) for p in parts] == [0, 0]
    sid = _fetch(ctx, 2, {0: 10, 1: 10}).session_id
    assert [len(p._replica_waiters) for p in parts] == [1, 1]
    cache = ctx.services.fetch_sessions
    cache.idle_eviction_s = 0.0
    cache.create()  # evicts the idle session
    assert sid not in cache.sessions and [len(p._replica_waiters) for p in parts] == [0, 0]


def test_an_idle_partition_is_read_for_a_follower_out_of_the_isr(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A follower shrunk out of the ISR gets back in only through the leader's check after
    a read (on_follower_fetch): its caught-up partitions must still be read."""
    ctx, sid = _idle_session(tmp_path)
    part = ctx.services.replicas.partitions[("t", 0)]
    part.isr = [1, 3]
    part.wake_replicas()  # (as an ISR change does, isr.IsrManager)
    reads = _count_reads(monkeypatch)
    checked: list[tuple[int, int]] = []

    def expand(p: Any, replica: int) -> None:  # IsrManager.on_follower_fetch, sans controller
        checked.append((p.index, replica))
        if may_join_isr(p, replica):
            p.isr = sorted([*p.isr, replica])

    assert _answered(_fetch(ctx, 2, {}, sid, 1, on_follower_fetch=expand)) == {}
    assert reads == [0] and checked == [(0, 2)] and part.isr == [1, 2, 3]
    _fetch(ctx, 2, {}, sid, 2, on_follower_fetch=expand)  # back in the ISR: idle again
    assert reads == [0] and checked == [(0, 2)]


def test_the_leader_refuses_a_wrong_epoch_or_another_brokers_session(tmp_path: Path) -> None:
    ctx = _leader_ctx(tmp_path)
    sid = _fetch(ctx, 2, {0: 0, 1: 0}).session_id
    assert _fetch(ctx, 2, {}, sid, 5).error_code == ErrorCode.INVALID_FETCH_SESSION_EPOCH
    assert _fetch(ctx, 3, {}, sid, 1).error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    assert _fetch(ctx, 2, {}, 12345, 1).error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    assert _fetch(ctx, 2, {}, sid, 1).error_code == 0  # the right epoch still works


# -- the follower ----------------------------------------------------------------------------

def _fetcher(tmp_path: Path) -> tuple[ReplicaFetcher, list[Any]]:
    replicas = _replicas(tmp_path, leader=1, records=0)
    manager = SimpleNamespace(settings=FetcherSettings(), node_id=2,
                              broker_epoch=lambda: 1, replicas=replicas)
    parts = [replicas.partitions[("t", 0)], replicas.partitions[("t", 1)]]
    return ReplicaFetcher(manager, 1), parts  # type: ignore[arg-type]


def _named(req: FetchRequest) -> dict[int, int]:
    return {p.partition: p.fetch_offset for t in req.topics for p in t.partitions}


def test_the_follower_names_only_what_changed_once_a_session_is_open(tmp_path: Path) -> None:
    fetcher, parts = _fetcher(tmp_path)
    first = fetcher._request(parts)
    assert (first.session_id, first.session_epoch) == (0, 0) and _named(first) == {0: 0, 1: 0}
    assert fetcher._on_session_answer(SimpleNamespace(error_code=0, session_id=77))
    second = fetcher._request(parts)
    assert (second.session_id, second.session_epoch) == (77, 1)
    assert _named(second) == {} and second.forgotten_topics_data == []
    assert fetcher._on_session_answer(SimpleNamespace(error_code=0, session_id=77))
    leader = _replicas(tmp_path / "leader", leader=1, records=2).partitions[("t", 0)]
    parts[0].log.append_as_follower(leader.log.read(0, 1 << 20, max_offset=2).data)
    third = fetcher._request(parts[:1])  # partition 1 no longer fetched (backing off)
    assert (third.session_id, third.session_epoch) == (77, 2)
    assert _named(third) == {0: 2}
    assert [(f.topic_id, f.partitions) for f in third.forgotten_topics_data] == [
        (TOPIC.topic_id, [1])]


def test_between_walks_the_follower_looks_only_at_partitions_an_answer_touched(
        tmp_path: Path, monkeypatch: Any) -> None:
    """Records applied from an answer are named in the next fetch at once; a change made
    outside the fetcher (here an append; in a broker, retention moving the log start) is
    named at the next walk of every partition, at most WALK_EVERY_S later."""
    import pykbroker.replication.fetcher as fetcher_module

    clock = [1000.0]
    monkeypatch.setattr(fetcher_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    fetcher, parts = _fetcher(tmp_path)
    for part in parts:  # followers of broker 1 (the helper's replicas run as broker 1)
        part.is_leader = False
    by_key = {(p.topic_id, p.index): p for p in parts}
    fetcher._request(by_key)
    assert fetcher._on_session_answer(SimpleNamespace(error_code=0, session_id=77))
    leader = _replicas(tmp_path / "leader", leader=1, records=2).partitions[("t", 0)]
    answer = SimpleNamespace(responses=[SimpleNamespace(topic_id=TOPIC.topic_id, partitions=[
        PartitionData(partition_index=0, error_code=0, high_watermark=2,
                      last_stable_offset=2, log_start_offset=0,
                      records=leader.log.read(0, 1 << 20, max_offset=2).data)])])
    trio.run(fetcher._process, by_key, answer)
    assert int(parts[0].log.log_end_offset) == 2
    assert _named(fetcher._request(by_key)) == {0: 2}
    assert fetcher._on_session_answer(SimpleNamespace(error_code=0, session_id=77))
    other = _replicas(tmp_path / "other", leader=1, records=3).partitions[("t", 1)]
    parts[1].log.append_as_follower(other.log.read(0, 1 << 20, max_offset=3).data)
    assert _named(fetcher._request(by_key)) == {}  # untouched, and no walk yet
    assert fetcher._on_session_answer(SimpleNamespace(error_code=0, session_id=77))
    clock[0] += fetcher_module.WALK_EVERY_S
    assert _named(fetcher._request(by_key)) == {1: 3}


def test_the_follower_starts_over_with_a_full_fetch_when_the_leader_refuses(
        tmp_path: Path) -> None:
    fetcher, parts = _fetcher(tmp_path)
    fetcher._request(parts)
    fetcher._on_session_answer(SimpleNamespace(error_code=0, session_id=77))
    fetcher._request(parts)
    refused = SimpleNamespace(error_code=int(ErrorCode.FETCH_SESSION_ID_NOT_FOUND),
                              session_id=0)
    assert not fetcher._on_session_answer(refused)
    again = fetcher._request(parts)
    assert (again.session_id, again.session_epoch) == (0, 0) and _named(again) == {0: 0, 1: 0}
    # A leader with no session to give: every fetch stays a full one.
    assert fetcher._on_session_answer(SimpleNamespace(error_code=0, session_id=0))
    assert _named(fetcher._request(parts)) == {0: 0, 1: 0}


def test_a_woken_fetch_rereads_only_what_changed_and_answers_current_offsets(
        tmp_path: Path, monkeypatch: Any) -> None:
    """A follower's long-poll woken by another follower moving the high watermark reads
    nothing again (no partition grew); woken by an append, it reads that partition alone,
    and the answer still carries the other partition's new high watermark."""
    import pykbroker.replication.leader as leader

    ctx = _leader_ctx(tmp_path)
    reads: list[tuple[int, int]] = []
    real = leader._read_for

    def counting(part: Any, replica: int, *args: Any) -> Any:
        reads.append((replica, part.index))
        return real(part, replica, *args)

    monkeypatch.setattr(leader, "_read_for", counting)

    def moved(part: Any, replica: int) -> None:
        if part.advance_high_watermark():
            part.wake()

    def request(replica: int, offsets: dict[int, int], wait_ms: int) -> FetchRequest:
        return FetchRequest(
            replica_id=-1, replica_state=ReplicaState(replica_id=replica, replica_epoch=1),
            max_wait_ms=wait_ms, min_bytes=1, max_bytes=1 << 20, session_id=0,
            session_epoch=-1, topics=[FetchTopic(topic="", topic_id=TOPIC.topic_id, partitions=[
                FetchPartition(partition=p, current_leader_epoch=3, fetch_offset=o,
                               last_fetched_epoch=3, log_start_offset=0,
                               partition_max_bytes=1 << 20) for p, o in offsets.items()])])

    answer: list[FetchResponse] = []

    async def main() -> None:
        async def follower_2() -> None:
            answer.append(await handle_replica_fetch(ctx, request(2, {0: 10, 1: 10}, 5000), 2,
                                                     moved))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follower_2)
            await trio.sleep(0.05)
            assert reads == [(2, 0), (2, 1)]  # the first pass, then parked
            await handle_replica_fetch(ctx, request(3, {0: 10}, 0), 3, moved)
            await trio.sleep(0.05)
            assert ctx.services.replicas.partitions[("t", 0)].high_watermark == 10
            assert not answer and reads == [(2, 0), (2, 1), (3, 0)]  # woken, nothing re-read
            ctx.services.replicas.partitions[("t", 1)].log.append_as_leader(
                batch(), leader_epoch=3)
            ctx.services.replicas.partitions[("t", 1)].wake()

    trio.run(main)
    assert reads[3:] == [(2, 1)]  # only the partition that grew
    assert _answered(answer[0]) == {0: (0, 10), 1: (len(batch()), 0)}


def test_a_replica_the_metadata_cache_does_not_know_yet_is_served(tmp_path: Path) -> None:
    """A broker that just started fetches before its UpdateMetadata reaches the leader:
    Kafka serves an assigned replica all the same (the ISR waits for the cache, see
    ReplicaManager.on_follower_fetch); an unassigned id, or the leader's own, is told
    NOT_LEADER_OR_FOLLOWER and read nothing."""
    ctx = _leader_ctx(tmp_path)
    ctx.services.cluster.cache = SimpleNamespace(broker=lambda r: None)  # knows no broker
    seen: list[int] = []
    resp = _fetch(ctx, 2, {0: 0, 1: 0}, on_follower_fetch=lambda part, r: seen.append(r))
    assert all(p.error_code == 0 for t in resp.responses for p in t.partitions)
    assert _answered(resp) == {0: (_answered(resp)[0][0], 0), 1: (_answered(resp)[1][0], 0)}
    assert all(size > 0 for size, _ in _answered(resp).values()) and seen == [2, 2]
    for stranger in (7, 1):
        resp = _fetch(ctx, stranger, {0: 0, 1: 0})
        assert [p.error_code for t in resp.responses for p in t.partitions] == \
            [ErrorCode.NOT_LEADER_OR_FOLLOWER] * 2
        assert not any(p.records for t in resp.responses for p in t.partitions)
