"""KIP-848 over real sockets: ConsumerGroupHeartbeat join, revocation then reassignment,
ConsumerGroupDescribe, ListGroups, offset commits with member epochs, protocol conflicts."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from pykbroker.error_codes import ErrorCode
from pykbroker.protocol._generated.consumer_group_describe_request import (
    ConsumerGroupDescribeRequest,
)
from pykbroker.protocol._generated.consumer_group_heartbeat_request import (
    ConsumerGroupHeartbeatRequest,
    TopicPartitions,
)
from pykbroker.protocol._generated.delete_groups_request import DeleteGroupsRequest
from pykbroker.protocol._generated.list_groups_request import ListGroupsRequest
from pykbroker.protocol.api import ApiKey
from tests.broker.harness import Client, running_broker
from tests.broker.test_groups import FAST, commit, create_topic, find, join

Owned = dict[uuid.UUID, list[int]]


async def hb(c: Client, member_id: str, epoch: int, owned: Owned | None = None, *,
             group: str = "cg", topics: list[str] | None = None, version: int = 1) -> Any:
    req = ConsumerGroupHeartbeatRequest(
        group_id=group, member_id=member_id, member_epoch=epoch,
        rebalance_timeout_ms=5000 if epoch == 0 else -1,
        subscribed_topic_names=topics if epoch == 0 else None,
        topic_partitions=None if owned is None else
        [TopicPartitions(topic_id=t, partitions=p) for t, p in owned.items()])
    return await c.send(ApiKey.CONSUMER_GROUP_HEARTBEAT, version, req)


def owned_of(resp: Any) -> Owned:
    assert resp.assignment is not None
    return {tp.topic_id: list(tp.partitions) for tp in resp.assignment.topic_partitions}


def count(o: Owned) -> int:
    return sum(len(p) for p in o.values())


@pytest.mark.trio
async def test_join_then_revocation_before_reassignment(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **FAST) as broker:
        c = await Client.connect(broker)
        await create_topic(c, "t", 4)
        await find(c, "cg")
        a = await hb(c, "", 0, {}, topics=["t"])
        assert a.error_code == 0 and a.member_id and a.member_epoch == 1
        a_owned = owned_of(a)
        assert count(a_owned) == 4
        b = await hb(c, "", 0, {}, topics=["t"])
        assert b.error_code == 0 and b.member_epoch == 2 and count(owned_of(b)) == 0
        # a must revoke first (its epoch stays), b gets nothing meanwhile
        a2 = await hb(c, a.member_id, 1, a_owned)
        assert a2.member_epoch == 1 and count(owned_of(a2)) == 2
        b2 = await hb(c, b.member_id, 2, {})
        assert b2.assignment is None
        a3 = await hb(c, a.member_id, 1, owned_of(a2))
        assert a3.member_epoch == 2
        b3 = await hb(c, b.member_id, 2, {})
        assert count(owned_of(b3)) == 2
        both = [p for o in (owned_of(a2), owned_of(b3)) for ps in o.values() for p in ps]
        assert sorted(both) == [0, 1, 2, 3]

        desc = await c.send(ApiKey.CONSUMER_GROUP_DESCRIBE, 0,
                            ConsumerGroupDescribeRequest(group_ids=["cg", "nope"]))
        g, missing = desc.groups
        assert g.error_code == 0 and g.group_epoch == 2 and g.assignor_name == "uniform"
        assert {m.member_id for m in g.members} == {a.member_id, b.member_id}
        assert all(tp.topic_name == "t" for m in g.members
                   for tp in m.target_assignment.topic_partitions)
        assert missing.error_code == ErrorCode.GROUP_ID_NOT_FOUND

        listed = await c.send(ApiKey.LIST_GROUPS, 5, ListGroupsRequest(types_filter=["consumer"]))
        assert [(x.group_id, x.group_type) for x in listed.groups] == [("cg", "consumer")]

        # offsets: member id + member epoch as the generation
        assert set((await commit(c, "cg", 2, a.member_id, {("t", 0): (5, None)},
                                 version=9)).values()) == {0}
        assert set((await commit(c, "cg", 1, a.member_id, {("t", 0): (5, None)},
                                 version=9)).values()) == {ErrorCode.STALE_MEMBER_EPOCH}
        assert set((await commit(c, "cg", 2, "who", {("t", 0): (5, None)},
                                 version=9)).values()) == {ErrorCode.UNKNOWN_MEMBER_ID}

        # a classic member cannot join while the consumer group has members
        j = await join(c, "cg")
        assert j.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL

        # leaving hands a's partitions to b
        left = await hb(c, a.member_id, -1)
        assert left.error_code == 0 and left.member_epoch == -1
        b4 = await hb(c, b.member_id, 2, owned_of(b3))
        assert b4.member_epoch == 3 and count(owned_of(b4)) == 4

        # a group with members cannot be deleted; an empty one can, with its offsets
        deleted = await c.send(ApiKey.DELETE_GROUPS, 2, DeleteGroupsRequest(["cg"]))
        assert deleted.results[0].error_code == ErrorCode.NON_EMPTY_GROUP
        assert (await hb(c, b.member_id, -1)).error_code == 0
        deleted = await c.send(ApiKey.DELETE_GROUPS, 2, DeleteGroupsRequest(["cg"]))
        assert deleted.results[0].error_code == 0
        desc = await c.send(ApiKey.CONSUMER_GROUP_DESCRIBE, 0,
                            ConsumerGroupDescribeRequest(group_ids=["cg"]))
        assert desc.groups[0].error_code == ErrorCode.GROUP_ID_NOT_FOUND
        await c.aclose()


@pytest.mark.trio
async def test_errors_and_classic_conflict(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **FAST) as broker:
        c = await Client.connect(broker)
        await create_topic(c, "t", 2)
        await find(c, "classic")
        first = await join(c, "classic")
        assert first.error_code == ErrorCode.MEMBER_ID_REQUIRED
        await join(c, "classic", first.member_id)  # a classic member now
        r = await hb(c, "", 0, {}, group="classic", topics=["t"])
        assert r.error_code == ErrorCode.GROUP_ID_NOT_FOUND
        await find(c, "cg")
        assert (await hb(c, "x", 3, {})).error_code == ErrorCode.GROUP_ID_NOT_FOUND
        ok = await hb(c, "", 0, {}, topics=["t"])
        assert (await hb(c, "x", 1, {})).error_code == ErrorCode.UNKNOWN_MEMBER_ID
        assert (await hb(c, ok.member_id, 9, {})).error_code == ErrorCode.FENCED_MEMBER_EPOCH
        bad = ConsumerGroupHeartbeatRequest(
            group_id="cg", member_id="", member_epoch=0, rebalance_timeout_ms=1000,
            subscribed_topic_names=["t"], server_assignor="sticky", topic_partitions=[])
        r = await c.send(ApiKey.CONSUMER_GROUP_HEARTBEAT, 0, bad)
        assert r.error_code == ErrorCode.UNSUPPORTED_ASSIGNOR
        assert (await hb(c, "", 0, {})).error_code == ErrorCode.INVALID_REQUEST
        await c.aclose()


@pytest.mark.trio
async def test_consumer_group_is_replayed_after_restart(tmp_path: Path) -> None:
    async with running_broker(tmp_path, **FAST) as broker:
        c = await Client.connect(broker)
        await create_topic(c, "t", 4)
        await find(c, "cg")
        a = await hb(c, "", 0, {}, topics=["t"])
        b = await hb(c, "", 0, {}, topics=["t"])
        a2 = await hb(c, a.member_id, 1, owned_of(a))  # revoking half
        gone = await hb(c, "", 0, {}, group="cg", topics=["t"])
        assert (await hb(c, gone.member_id, -1)).error_code == 0
        assert set((await commit(c, "cg", b.member_epoch, b.member_id, {("t", 1): (4, None)},
                                 version=9)).values()) == {0}
        await c.aclose()
    async with running_broker(tmp_path, **FAST) as broker:
        c = await Client.connect(broker)
        await find(c, "cg")
        desc = (await c.send(ApiKey.CONSUMER_GROUP_DESCRIBE, 0,
                             ConsumerGroupDescribeRequest(group_ids=["cg"]))).groups[0]
        assert desc.error_code == 0 and desc.group_epoch == 4 and desc.assignment_epoch == 4
        assert {m.member_id for m in desc.members} == {a.member_id, b.member_id}
        # a carries on where it was: still revoking, then completing the revocation
        a3 = await hb(c, a.member_id, 1, owned_of(a2))
        assert a3.error_code == 0 and a3.member_epoch == 4
        b2 = await hb(c, b.member_id, b.member_epoch, {})
        assert b2.error_code == 0 and count(owned_of(b2)) == 2
        assert (await hb(c, gone.member_id, 3, {})).error_code == ErrorCode.UNKNOWN_MEMBER_ID
        await c.aclose()
