"""Consumer groups over real sockets: join/sync/heartbeat/leave, static members, timeouts,
offset commits and their errors, administration, and replay after a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from pykbroker.broker import Broker
from pykbroker.coordinator.group import OFFSETS_TOPIC, GroupCoordinator
from pykbroker.error_codes import ErrorCode
from pykbroker.protocol._generated.create_topics_request import (
    CreatableTopic,
    CreateTopicsRequest,
)
from pykbroker.protocol._generated.delete_groups_request import DeleteGroupsRequest
from pykbroker.protocol._generated.describe_groups_request import DescribeGroupsRequest
from pykbroker.protocol._generated.find_coordinator_request import FindCoordinatorRequest
from pykbroker.protocol._generated.heartbeat_request import HeartbeatRequest
from pykbroker.protocol._generated.join_group_request import (
    JoinGroupRequest,
    JoinGroupRequestProtocol,
)
from pykbroker.protocol._generated.leave_group_request import LeaveGroupRequest, MemberIdentity
from pykbroker.protocol._generated.list_groups_request import ListGroupsRequest
from pykbroker.protocol._generated.offset_commit_request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from pykbroker.protocol._generated.offset_delete_request import (
    OffsetDeleteRequest,
    OffsetDeleteRequestPartition,
    OffsetDeleteRequestTopic,
)
from pykbroker.protocol._generated.offset_fetch_request import (
    OffsetFetchRequest,
    OffsetFetchRequestGroup,
    OffsetFetchRequestTopic,
    OffsetFetchRequestTopics,
)
from pykbroker.protocol._generated.sync_group_request import (
    SyncGroupRequest,
    SyncGroupRequestAssignment,
)
from pykbroker.protocol.api import ApiKey
from tests.broker.harness import Client, running_broker

FAST = {"group.initial.rebalance.delay.ms": 0, "group.min.session.timeout.ms": 100,
        "offsets.topic.num.partitions": 3}
PROTOCOLS = [("range", b"\x00\x01range-meta"), ("roundrobin", b"rr")]


def groups_of(broker: Broker) -> GroupCoordinator:
    assert broker.services is not None
    return broker.services.groups


async def join(c: Client, group: str, member_id: str = "", *, version: int = 7,
               instance: str | None = None, session: int = 6000, rebalance: int = 5000,
               protocols: list[tuple[str, bytes]] = PROTOCOLS,
               protocol_type: str = "consumer") -> Any:
    req = JoinGroupRequest(group_id=group, session_timeout_ms=session,
                           rebalance_timeout_ms=rebalance, member_id=member_id,
                           group_instance_id=instance, protocol_type=protocol_type,
                           protocols=[JoinGroupRequestProtocol(n, m) for n, m in protocols])
    return await c.send(ApiKey.JOIN_GROUP, version, req)


async def join_new(c: Client, group: str, **kw: Any) -> Any:
    """KIP-394: the first JoinGroup only hands out the member id."""
    first = await join(c, group, **kw)
    assert first.error_code == ErrorCode.MEMBER_ID_REQUIRED and first.member_id
    return await join(c, group, first.member_id, **kw)


async def sync(c: Client, group: str, gen: int, member: str,
               assignments: dict[str, bytes] | None = None, version: int = 5,
               instance: str | None = None) -> Any:
    req = SyncGroupRequest(group_id=group, generation_id=gen, member_id=member,
                           group_instance_id=instance, protocol_type="consumer",
                           protocol_name="range",
                           assignments=[SyncGroupRequestAssignment(m, a)
                                        for m, a in (assignments or {}).items()])
    return await c.send(ApiKey.SYNC_GROUP, version, req)


async def heartbeat(c: Client, group: str, gen: int, member: str,
                    instance: str | None = None) -> int:
    resp = await c.send(ApiKey.HEARTBEAT, 4, HeartbeatRequest(group, gen, member, instance))
    return int(resp.error_code)


async def describe(c: Client, group: str) -> Any:
    resp = await c.send(ApiKey.DESCRIBE_GROUPS, 5, DescribeGroupsRequest([group]))
    return resp.groups[0]


async def find(c: Client, group: str) -> None:
    resp = await c.send(ApiKey.FIND_COORDINATOR, 3, FindCoordinatorRequest(key=group))
    assert resp.error_code == 0


async def create_topic(c: Client, name: str, partitions: int = 3) -> None:
    resp = await c.send(ApiKey.CREATE_TOPICS, 7, CreateTopicsRequest(
        topics=[CreatableTopic(name=name, num_partitions=partitions, replication_factor=1)],
        timeout_ms=5000))
    assert resp.topics[0].error_code == 0


async def commit(c: Client, group: str, gen: int, member: str,
                 offsets: dict[tuple[str, int], tuple[int, str | None]], version: int = 8,
                 instance: str | None = None) -> dict[tuple[str, int], int]:
    topics: dict[str, list[OffsetCommitRequestPartition]] = {}
    for (t, p), (off, meta) in offsets.items():
        topics.setdefault(t, []).append(OffsetCommitRequestPartition(
            partition_index=p, committed_offset=off, committed_leader_epoch=3,
            committed_metadata=meta))
    resp = await c.send(ApiKey.OFFSET_COMMIT, version, OffsetCommitRequest(
        group_id=group, generation_id_or_member_epoch=gen, member_id=member,
        group_instance_id=instance,
        topics=[OffsetCommitRequestTopic(t, ps) for t, ps in topics.items()]))
    return {(t.name, p.partition_index): p.error_code for t in resp.topics for p in t.partitions}


async def fetch(c: Client, group: str, partitions: dict[str, list[int]] | None,
                version: int = 7) -> Any:
    topics = None if partitions is None else [OffsetFetchRequestTopic(t, ps)
                                              for t, ps in partitions.items()]
    return await c.send(ApiKey.OFFSET_FETCH, version,
                        OffsetFetchRequest(group_id=group, topics=topics))


async def stable_member(broker: Broker, group: str, assignment: bytes = b"A",
                        **kw: Any) -> tuple[Client, str, int]:
    c = await Client.connect(broker)
    await find(c, group)
    joined = await join_new(c, group, **kw)
    assert joined.error_code == 0 and joined.leader == joined.member_id
    synced = await sync(c, group, joined.generation_id, joined.member_id,
                        {joined.member_id: assignment})
    assert synced.error_code == 0 and synced.assignment == assignment
    return c, joined.member_id, joined.generation_id


@pytest.mark.trio
async def test_find_coordinator_creates_the_offsets_topic(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **FAST) as broker:
        c = await Client.connect(broker)
        for v in range(4):
            resp = await c.send(ApiKey.FIND_COORDINATOR, v, FindCoordinatorRequest(key="g"))
            assert resp.error_code == 0 and resp.node_id == 1
            assert resp.port == broker.bound_ports["PLAINTEXT"]
            if v >= 1:
                assert resp.error_message == "NONE"
        resp = await c.send(ApiKey.FIND_COORDINATOR, 4, FindCoordinatorRequest(
            key_type=0, coordinator_keys=["a", "b"]))
        assert [(x.key, x.error_code, x.node_id) for x in resp.coordinators] == [
            ("a", 0, 1), ("b", 0, 1)]
        resp = await c.send(ApiKey.FIND_COORDINATOR, 6, FindCoordinatorRequest(
            key_type=1, coordinator_keys=["txn"]))
        # Transaction coordinators are served too: __transaction_state is made on demand.
        assert resp.coordinators[0].error_code == 0
        assert resp.coordinators[0].node_id == 1
        assert broker.services is not None
        assert broker.services.topics.get("__transaction_state") is not None
        topic = broker.services.topics.get(OFFSETS_TOPIC)
        assert topic is not None and topic.partition_count == 3
        assert topic.configs["cleanup.policy"] == "compact"


@pytest.mark.trio
async def test_join_sync_heartbeat_leave(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **FAST) as broker:
        c, member, gen = await stable_member(broker, "g1", b"\x00\x01assign\xff")
        assert gen == 1
        assert await heartbeat(c, "g1", gen, member) == 0
        assert await heartbeat(c, "g1", gen + 1, member) == ErrorCode.ILLEGAL_GENERATION
        assert await heartbeat(c, "g1", gen, "nobody") == ErrorCode.UNKNOWN_MEMBER_ID
        assert await heartbeat(c, "nope", gen, member) == ErrorCode.UNKNOWN_MEMBER_ID
        # A stable member syncing again gets its assignment byte for byte.
        again = await sync(c, "g1", gen, member)
        assert again.assignment == b"\x00\x01assign\xff" and again.protocol_name == "range"
        d = await describe(c, "g1")
        assert (d.group_state, d.protocol_type, d.protocol_data) == ("Stable", "consumer",
                                                                     "range")
        assert d.members[0].member_metadata == PROTOCOLS[0][1]
        assert d.members[0].member_assignment == b"\x00\x01assign\xff"
        assert d.members[0].client_host == "/127.0.0.1"
        resp = await c.send(ApiKey.LEAVE_GROUP, 1, LeaveGroupRequest(group_id="g1",
                                                                     member_id=member))
        assert resp.error_code == 0
        await trio.sleep(0.05)
        assert (await describe(c, "g1")).group_state == "Empty"
        resp = await c.send(ApiKey.LEAVE_GROUP, 1, LeaveGroupRequest(group_id="g1",
                                                                     member_id=member))
        assert resp.error_code == ErrorCode.UNKNOWN_MEMBER_ID


@pytest.mark.trio
async def test_join_errors(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **FAST) as broker:
        c, member, gen = await stable_member(broker, "g")
        other = await Client.connect(broker)
        resp = await join(other, "g", "unknown-member")
        assert resp.error_code == ErrorCode.UNKNOWN_MEMBER_ID
        resp = await join(other, "no-such-group", "unknown-member")
        assert resp.error_code == ErrorCode.UNKNOWN_MEMBER_ID
        resp = await join(other, "g", protocols=[("sticky", b"")])
        assert resp.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        resp = await join(other, "g", protocol_type="connect")
        assert resp.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        resp = await join(other, "", version=7)
        assert resp.error_code == ErrorCode.INVALID_GROUP_ID
        resp = await join(other, "g2", session=10)
        assert resp.error_code == ErrorCode.INVALID_SESSION_TIMEOUT
        # Versions before 4 get a member id at once.
        resp = await join(other, "g3", version=3)
        assert resp.error_code == 0 and resp.generation_id == 1 and resp.member_id
        assert resp.protocol_name == "range"


@pytest.mark.trio
async def test_group_max_size(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **FAST, **{"group.max.size": 1}) as broker:
        await stable_member(broker, "g")
        other = await Client.connect(broker)
        resp = await join(other, "g")
        assert resp.error_code == ErrorCode.GROUP_MAX_SIZE_REACHED and resp.member_id == ""


@pytest.mark.trio
async def test_second_member_triggers_rebalance(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **FAST) as broker:
        a, a_id, gen = await stable_member(broker, "g")
        b = await Client.connect(broker)
        first = await join(b, "g")
        results: dict[str, Any] = {}

        async def join_b() -> None:
            results["b"] = await join(b, "g", first.member_id)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(join_b)
            await trio.sleep(0.05)
            assert await heartbeat(a, "g", gen, a_id) == ErrorCode.REBALANCE_IN_PROGRESS
            results["a"] = await join(a, "g", a_id)
        ra, rb = results["a"], results["b"]
        assert ra.generation_id == rb.generation_id == gen + 1
        assert ra.leader == a_id and rb.leader == a_id
        assert sorted(m.member_id for m in ra.members) == sorted([a_id, rb.member_id])
        assert rb.members == []
        # The follower's SyncGroup waits for the leader's assignment.
        async with trio.open_nursery() as nursery:
            async def sync_b() -> None:
                results["sb"] = await sync(b, "g", rb.generation_id, rb.member_id)

            nursery.start_soon(sync_b)
            await trio.sleep(0.05)
            assert "sb" not in results
            sa = await sync(a, "g", ra.generation_id, a_id,
                            {a_id: b"for-a", rb.member_id: b"for-b\x00"})
        assert sa.assignment == b"for-a" and results["sb"].assignment == b"for-b\x00"
        assert (await describe(a, "g")).group_state == "Stable"


@pytest.mark.trio
async def test_static_membership_and_fencing(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **FAST) as broker:
        c = await Client.connect(broker)
        await find(c, "g")
        # A static member gets its id at once, even on v5+.
        j = await join(c, "g", instance="inst-1")
        assert j.error_code == 0 and j.member_id.startswith("inst-1-")
        s = await sync(c, "g", j.generation_id, j.member_id, {j.member_id: b"mine"},
                       instance="inst-1")
        assert s.assignment == b"mine"
        # The same instance restarts (no member id): it replaces the old id, keeps the
        # generation and its assignment, and no rebalance happens.
        c2 = await Client.connect(broker)
        j2 = await join(c2, "g", instance="inst-1", version=9)
        assert j2.error_code == 0 and j2.member_id != j.member_id
        assert j2.generation_id == j.generation_id and j2.skip_assignment
        assert (await describe(c, "g")).group_state == "Stable"
        s2 = await sync(c2, "g", j2.generation_id, j2.member_id, instance="inst-1")
        assert s2.assignment == b"mine"
        # The old incarnation is fenced everywhere.
        assert await heartbeat(c, "g", j.generation_id, j.member_id, "inst-1") == \
            ErrorCode.FENCED_INSTANCE_ID
        r = await join(c, "g", j.member_id, instance="inst-1")
        assert r.error_code == ErrorCode.FENCED_INSTANCE_ID
        errs = await commit(c, "g", j.generation_id, j.member_id, {("t", 0): (1, "")},
                            instance="inst-1")
        assert set(errs.values()) in ({ErrorCode.FENCED_INSTANCE_ID},
                                      {ErrorCode.UNKNOWN_TOPIC_OR_PARTITION})
        # Administrative removal by instance id (LeaveGroup v3+).
        resp = await c.send(ApiKey.LEAVE_GROUP, 5, LeaveGroupRequest(
            group_id="g", members=[MemberIdentity(member_id="", group_instance_id="inst-1"),
                                   MemberIdentity(member_id="", group_instance_id="none")]))
        assert [m.error_code for m in resp.members] == [0, ErrorCode.UNKNOWN_MEMBER_ID]
        await trio.sleep(0.05)
        assert (await describe(c, "g")).group_state == "Empty"


@pytest.mark.trio
async def test_session_timeout_removes_a_silent_member(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **FAST) as broker:
        a, a_id, gen = await stable_member(broker, "g", session=300)
        b, b_id, _ = await stable_member(broker, "g-other", session=300)
        with trio.move_on_after(1.0):
            while True:  # b keeps heartbeating, a stays silent
                assert await heartbeat(b, "g-other", 1, b_id) == 0
                await trio.sleep(0.1)
        d = await describe(b, "g")
        assert d.group_state == "Empty" and d.members == []
        assert await heartbeat(a, "g", gen, a_id) == ErrorCode.UNKNOWN_MEMBER_ID
        assert (await describe(b, "g-other")).group_state == "Stable"


@pytest.mark.trio
async def test_rebalance_timeout_drops_members_that_do_not_rejoin(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **FAST) as broker:
        a, a_id, gen = await stable_member(broker, "g", session=5000, rebalance=400)
        b = await Client.connect(broker)
        with trio.fail_after(3):
            joined = await join_new(b, "g", session=5000, rebalance=400)
        # a never rejoined: after the rebalance timeout the group goes on without it.
        assert joined.error_code == 0 and joined.leader == joined.member_id
        assert [m.member_id for m in joined.members] == [joined.member_id]
        assert await heartbeat(a, "g", gen, a_id) == ErrorCode.UNKNOWN_MEMBER_ID


@pytest.mark.trio
async def test_commit_generation_checks_and_metadata_round_trip(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **FAST) as broker:
        c, member, gen = await stable_member(broker, "g")
        await create_topic(c, "t", 3)
        meta = "héllo\x00 metadata ✓" * 10
        errs = await commit(c, "g", gen, member, {("t", 0): (10, meta), ("t", 1): (20, None),
                                                 ("t", 7): (1, ""), ("x", 0): (1, "")})
        assert errs == {("t", 0): 0, ("t", 1): 0,
                        ("t", 7): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                        ("x", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION}
        assert set((await commit(c, "g", gen + 1, member, {("t", 0): (1, "")})).values()) \
            == {ErrorCode.ILLEGAL_GENERATION}
        assert set((await commit(c, "g", gen, "who", {("t", 0): (1, "")})).values()) \
            == {ErrorCode.UNKNOWN_MEMBER_ID}
        # Simple commits (no generation) are refused while the group has members.
        assert set((await commit(c, "g", -1, "", {("t", 0): (1, "")})).values()) \
            == {ErrorCode.UNKNOWN_MEMBER_ID}
        big = "x" * 4097
        assert await commit(c, "g", gen, member, {("t", 2): (1, big)}) == \
            {("t", 2): ErrorCode.OFFSET_METADATA_TOO_LARGE}
        for v in (1, 5, 7):
            resp = await fetch(c, "g", {"t": [0, 1, 2]}, version=v)
            parts = {p.partition_index: p for t in resp.topics for p in t.partitions}
            assert (parts[0].committed_offset, parts[0].metadata) == (10, meta)
            assert (parts[1].committed_offset, parts[1].metadata) == (20, "")
            assert (parts[2].committed_offset, parts[2].metadata) == (-1, "")
            if v >= 5:
                assert parts[0].committed_leader_epoch == 3
        resp = await fetch(c, "g", None)
        assert sorted((t.name, p.partition_index) for t in resp.topics for p in t.partitions) \
            == [("t", 0), ("t", 1)]
        # v8: several groups at once, one unknown.
        resp = await c.send(ApiKey.OFFSET_FETCH, 8, OffsetFetchRequest(groups=[
            OffsetFetchRequestGroup(group_id="g", topics=[OffsetFetchRequestTopics("t", [0])]),
            OffsetFetchRequestGroup(group_id="unknown", topics=None)]))
        assert resp.groups[0].topics[0].partitions[0].committed_offset == 10
        assert resp.groups[1].error_code == 0 and resp.groups[1].topics == []
        # Simple commits to a group nobody joined.
        assert await commit(c, "simple", -1, "", {("t", 0): (5, "s")}, version=2) == \
            {("t", 0): 0}
        resp = await fetch(c, "simple", {"t": [0]}, version=3)
        assert resp.topics[0].partitions[0].committed_offset == 5


@pytest.mark.trio
async def test_commit_during_completing_rebalance(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **FAST) as broker:
        c = await Client.connect(broker)
        await find(c, "g")
        await create_topic(c, "t", 1)
        joined = await join_new(c, "g")
        errs = await commit(c, "g", joined.generation_id, joined.member_id, {("t", 0): (1, "")})
        assert errs == {("t", 0): ErrorCode.REBALANCE_IN_PROGRESS}


@pytest.mark.trio
async def test_admin_list_describe_delete(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **FAST) as broker:
        c, member, gen = await stable_member(broker, "busy")
        await create_topic(c, "t", 2)
        assert await commit(c, "idle", -1, "", {("t", 0): (1, ""), ("t", 1): (2, "")}) == \
            {("t", 0): 0, ("t", 1): 0}
        resp = await c.send(ApiKey.LIST_GROUPS, 5, ListGroupsRequest())
        assert sorted((g.group_id, g.protocol_type, g.group_state, g.group_type)
                      for g in resp.groups) == [("busy", "consumer", "Stable", "classic"),
                                                ("idle", "", "Empty", "classic")]
        resp = await c.send(ApiKey.LIST_GROUPS, 4, ListGroupsRequest(states_filter=["stable"]))
        assert [g.group_id for g in resp.groups] == ["busy"]
        resp = await c.send(ApiKey.LIST_GROUPS, 5, ListGroupsRequest(types_filter=["consumer"]))
        assert resp.groups == []
        assert (await describe(c, "missing")).group_state == "Dead"
        # OffsetDelete: a subscribed topic is refused for an active group.
        resp = await c.send(ApiKey.OFFSET_DELETE, 0, OffsetDeleteRequest(
            group_id="idle", topics=[OffsetDeleteRequestTopic("t", [
                OffsetDeleteRequestPartition(0), OffsetDeleteRequestPartition(9)])]))
        assert resp.error_code == 0
        assert [p.error_code for p in resp.topics[0].partitions] == [
            0, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION]
        resp = await fetch(c, "idle", None)
        assert [p.partition_index for p in resp.topics[0].partitions] == [1]
        resp = await c.send(ApiKey.OFFSET_DELETE, 0, OffsetDeleteRequest(
            group_id="missing", topics=[OffsetDeleteRequestTopic("t", [
                OffsetDeleteRequestPartition(0)])]))
        assert resp.error_code == ErrorCode.GROUP_ID_NOT_FOUND
        resp = await c.send(ApiKey.DELETE_GROUPS, 2, DeleteGroupsRequest(
            ["busy", "idle", "missing"]))
        assert {r.group_id: r.error_code for r in resp.results} == {
            "busy": ErrorCode.NON_EMPTY_GROUP, "idle": 0, "missing": ErrorCode.GROUP_ID_NOT_FOUND}
        resp = await fetch(c, "idle", {"t": [1]})
        assert resp.topics[0].partitions[0].committed_offset == -1


@pytest.mark.trio
async def test_state_is_replayed_after_restart(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **FAST) as broker:
        c, member, gen = await stable_member(broker, "g", b"assign-bytes")
        await create_topic(c, "t", 2)
        assert await commit(c, "g", gen, member, {("t", 0): (7, "m0"), ("t", 1): (8, "m1")}) \
            == {("t", 0): 0, ("t", 1): 0}
        assert await commit(c, "simple", -1, "", {("t", 0): (3, "s")}) == {("t", 0): 0}
        assert await commit(c, "gone", -1, "", {("t", 0): (3, "s")}) == {("t", 0): 0}
        resp = await c.send(ApiKey.DELETE_GROUPS, 2, DeleteGroupsRequest(["gone"]))
        assert resp.results[0].error_code == 0
        await c.aclose()
    async with running_broker(tmp_path, **FAST) as broker:
        c = await Client.connect(broker)
        resp = await fetch(c, "g", None)
        got = {(t.name, p.partition_index): (p.committed_offset, p.metadata,
                                             p.committed_leader_epoch)
               for t in resp.topics for p in t.partitions}
        assert got == {("t", 0): (7, "m0", 3), ("t", 1): (8, "m1", 3)}
        d = await describe(c, "g")
        assert d.group_state == "Stable" and d.members[0].member_id == member
        assert d.members[0].member_assignment == b"assign-bytes"
        # The member carries on with its generation.
        assert await heartbeat(c, "g", gen, member) == 0
        again = await sync(c, "g", gen, member)
        assert again.assignment == b"assign-bytes"
        assert (await fetch(c, "simple", {"t": [0]})).topics[0].partitions[0].committed_offset \
            == 3
        assert (await describe(c, "gone")).group_state == "Dead"


@pytest.mark.trio
async def test_offsets_expire_after_retention_once_empty(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **FAST) as broker:
        c, member, gen = await stable_member(broker, "g")
        await create_topic(c, "t", 1)
        assert await commit(c, "g", gen, member, {("t", 0): (7, "")}) == {("t", 0): 0}
        coordinator = groups_of(broker)
        real = coordinator.manager.now_ms
        week = coordinator.config.offsets_retention_ms
        coordinator.manager.now_ms = lambda: real() + 2 * week
        # Still subscribed by a stable consumer group: kept.
        assert coordinator.cleanup_expired_offsets() == 0
        resp = await c.send(ApiKey.LEAVE_GROUP, 1, LeaveGroupRequest("g", member))
        assert resp.error_code == 0
        await trio.sleep(0.05)
        # Empty since "now"; the retention runs from then.
        assert coordinator.cleanup_expired_offsets() == 0
        coordinator.manager.now_ms = lambda: real() + 4 * week
        assert coordinator.cleanup_expired_offsets() == 1
        assert (await describe(c, "g")).group_state == "Dead"
