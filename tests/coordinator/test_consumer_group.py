"""KIP-848 consumer groups: the assignors and the heartbeat/reconciliation state machine."""

from __future__ import annotations

import uuid

import pytest

from pykbroker.coordinator.group.assignors import (
    MemberSpec,
    RangeAssignor,
    UniformAssignor,
    assignor_name,
    make_assignors,
)
from pykbroker.coordinator.group.consumer_group import (
    ConsumerGroup,
    ConsumerGroupConfig,
    ConsumerGroupCoordinator,
    HeartbeatRequest,
    HeartbeatResult,
    MemberState,
)
from pykbroker.coordinator.group.consumer_records import ConsumerGroupStore, replay
from pykbroker.coordinator.group.timer import CoordinatorTimer
from pykbroker.error_codes import ErrorCode

T1 = uuid.UUID(int=1)
T2 = uuid.UUID(int=2)


def counts(result: dict[str, dict[uuid.UUID, set[int]]]) -> dict[str, int]:
    return {m: sum(len(p) for p in a.values()) for m, a in result.items()}


def pairs(a: dict[uuid.UUID, set[int]]) -> set[tuple[uuid.UUID, int]]:
    return {(t, p) for t, parts in a.items() for p in parts}


# -- assignors ------------------------------------------------------------------------------


def test_uniform_balances_and_covers_every_partition() -> None:
    members = {f"m{i}": MemberSpec({T1, T2}) for i in range(3)}
    result = UniformAssignor().assign(members, {T1: 6, T2: 4})
    assert sorted(counts(result).values()) == [3, 3, 4]
    everything = [tp for a in result.values() for tp in pairs(a)]
    assert len(everything) == len(set(everything)) == 10


def test_uniform_is_sticky() -> None:
    first = UniformAssignor().assign({"a": MemberSpec({T1}), "b": MemberSpec({T1})}, {T1: 6})
    members = {m: MemberSpec({T1}, a) for m, a in first.items()}
    members["c"] = MemberSpec({T1})
    second = UniformAssignor().assign(members, {T1: 6})
    assert counts(second) == {"a": 2, "b": 2, "c": 2}
    # a and b only gave partitions away; nothing moved between them
    assert pairs(second["a"]) <= pairs(first["a"])
    assert pairs(second["b"]) <= pairs(first["b"])


def test_uniform_heterogeneous_subscriptions() -> None:
    members = {"a": MemberSpec({T1}), "b": MemberSpec({T1, T2})}
    result = UniformAssignor().assign(members, {T1: 2, T2: 2})
    assert T2 not in result["a"]
    assert pairs(result["b"]) >= {(T2, 0), (T2, 1)}
    assert counts(result) == {"a": 2, "b": 2}


def test_range_gives_contiguous_ranges() -> None:
    members = {"b": MemberSpec({T1}), "a": MemberSpec({T1}), "c": MemberSpec({T2})}
    result = RangeAssignor().assign(members, {T1: 5, T2: 2})
    assert result["a"] == {T1: {0, 1, 2}}
    assert result["b"] == {T1: {3, 4}}
    assert result["c"] == {T2: {0, 1}}


def test_assignor_names() -> None:
    assert assignor_name("org.apache.kafka.coordinator.group.assignor.UniformAssignor") == \
        "uniform"
    assert list(make_assignors(["range", "uniform"])) == ["range", "uniform"]
    assert list(make_assignors([])) == ["uniform"]


# -- the heartbeat state machine -----------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def env() -> tuple[ConsumerGroupCoordinator, Clock]:
    clock = Clock()
    topics = {"t": (T1, 4), "other": (T2, 2)}
    coord = ConsumerGroupCoordinator(
        CoordinatorTimer(clock), lambda: topics,
        ConsumerGroupConfig(session_timeout_ms=1000, heartbeat_interval_ms=100))
    return coord, clock


def join(coord: ConsumerGroupCoordinator, member_id: str = "", *, topics: list[str] | None = None,
         regex: str | None = None, assignor: str | None = None) -> HeartbeatResult:
    return coord.heartbeat(HeartbeatRequest(
        "g", member_id, 0, rebalance_timeout_ms=5000,
        subscribed_topic_names=topics if topics is not None or regex is not None else ["t"],
        subscribed_topic_regex=regex, server_assignor=assignor, owned=[]))


def beat(coord: ConsumerGroupCoordinator, r: HeartbeatResult,
         owned: dict[uuid.UUID, set[int]] | None = None, epoch: int | None = None
         ) -> HeartbeatResult:
    assert r.member_id is not None
    return coord.heartbeat(HeartbeatRequest(
        "g", r.member_id, r.member_epoch if epoch is None else epoch,
        owned=None if owned is None else [(t, sorted(p)) for t, p in owned.items()]))


def test_first_member_gets_everything(env: tuple[ConsumerGroupCoordinator, Clock]) -> None:
    coord, _ = env
    r = join(coord)
    assert r.error == ErrorCode.NONE and r.member_id
    assert r.member_epoch == 1
    assert r.assignment == {T1: {0, 1, 2, 3}}
    assert r.heartbeat_interval_ms == 100
    again = beat(coord, r, r.assignment)
    assert again.member_epoch == 1 and again.assignment is None
    assert coord.groups["g"].state == "Stable"


def test_revocation_before_reassignment(env: tuple[ConsumerGroupCoordinator, Clock]) -> None:
    coord, _ = env
    a = join(coord)
    assert a.assignment is not None
    a_owned = a.assignment
    b = join(coord)
    # b joins at the new epoch but its partitions are still a's: it gets none yet
    assert b.member_epoch == 2 and b.assignment == {}
    group = coord.groups["g"]
    assert group.members[b.member_id or ""].state == MemberState.UNRELEASED_PARTITIONS
    # a is asked to revoke two partitions, keeping its epoch
    a2 = beat(coord, a, a_owned)
    assert a2.member_epoch == 1
    assert a2.assignment is not None and len(pairs(a2.assignment)) == 2
    assert group.members[a.member_id or ""].state == MemberState.UNREVOKED_PARTITIONS
    assert group.state == "Reconciling"
    # b still waits while a has not confirmed the revocation
    assert beat(coord, b, {}).assignment is None
    # a confirms: it moves to the new epoch
    a3 = beat(coord, a2, a2.assignment)
    assert a3.member_epoch == 2
    # now b gets the released partitions
    b2 = beat(coord, b, {})
    assert b2.assignment is not None
    assert pairs(b2.assignment) | pairs(a2.assignment) == {(T1, p) for p in range(4)}
    assert not pairs(b2.assignment) & pairs(a2.assignment)
    beat(coord, b2, b2.assignment)
    assert group.state == "Stable"


def test_leave_releases_partitions(env: tuple[ConsumerGroupCoordinator, Clock]) -> None:
    coord, _ = env
    a = join(coord)
    b = join(coord)
    a = beat(coord, a, a.assignment)
    a = beat(coord, a, a.assignment)
    b = beat(coord, b, {})
    assert b.assignment is not None and len(pairs(b.assignment)) == 2
    left = coord.heartbeat(HeartbeatRequest("g", a.member_id or "", -1))
    assert left.error == ErrorCode.NONE and left.member_epoch == -1
    b2 = beat(coord, b, b.assignment)
    assert b2.assignment == {T1: {0, 1, 2, 3}}
    assert b2.member_epoch > b.member_epoch


def test_session_timeout_fences(env: tuple[ConsumerGroupCoordinator, Clock]) -> None:
    coord, clock = env
    a = join(coord)
    b = join(coord)
    clock.now = 0.6
    beat(coord, b, {})
    clock.now = 1.2
    coord.timer.run_due()
    assert list(coord.groups["g"].members) == [b.member_id]
    assert beat(coord, a, a.assignment).error == ErrorCode.UNKNOWN_MEMBER_ID
    b2 = beat(coord, b, {})
    assert b2.assignment == {T1: {0, 1, 2, 3}}


def test_errors(env: tuple[ConsumerGroupCoordinator, Clock]) -> None:
    coord, _ = env
    assert coord.heartbeat(HeartbeatRequest("missing", "x", 1, owned=[])).error == \
        ErrorCode.GROUP_ID_NOT_FOUND
    assert join(coord, assignor="nope").error == ErrorCode.UNSUPPORTED_ASSIGNOR
    assert coord.heartbeat(HeartbeatRequest("", "", 0)).error == ErrorCode.INVALID_REQUEST
    # epoch 0 needs a rebalance timeout and a subscription
    assert coord.heartbeat(HeartbeatRequest("g", "", 0, owned=[])).error == \
        ErrorCode.INVALID_REQUEST
    assert coord.heartbeat(HeartbeatRequest("g", "x", -3)).error == ErrorCode.INVALID_REQUEST
    a = join(coord)
    assert coord.heartbeat(HeartbeatRequest("g", "nobody", 1, owned=[])).error == \
        ErrorCode.UNKNOWN_MEMBER_ID
    assert beat(coord, a, {}, epoch=7).error == ErrorCode.FENCED_MEMBER_EPOCH
    join(coord)
    a = beat(coord, a, a.assignment)  # revoke half
    a = beat(coord, a, a.assignment)  # confirmed: epoch 2, previous 1
    assert a.member_epoch == 2
    # a lost response: the previous epoch is accepted with a subset of the assignment
    assert beat(coord, a, a.assignment, epoch=1).error == ErrorCode.NONE
    assert beat(coord, a, None, epoch=1).error == ErrorCode.FENCED_MEMBER_EPOCH
    assert beat(coord, a, {T1: {0, 1, 2, 3}}, epoch=1).error == ErrorCode.FENCED_MEMBER_EPOCH


def test_offset_commit_checks(env: tuple[ConsumerGroupCoordinator, Clock]) -> None:
    coord, _ = env
    assert coord.commit_error("g", "", -1) == (False, None)
    a = join(coord)
    mid = a.member_id or ""
    assert coord.commit_error("g", mid, 1) == (True, None)
    assert coord.commit_error("g", mid, 0) == (True, ErrorCode.STALE_MEMBER_EPOCH)
    assert coord.commit_error("g", mid, 5) == (True, ErrorCode.FENCED_MEMBER_EPOCH)
    assert coord.commit_error("g", "x", 1) == (True, ErrorCode.UNKNOWN_MEMBER_ID)
    assert coord.commit_error("g", "", -1) == (True, ErrorCode.UNKNOWN_MEMBER_ID)


def test_regex_subscription_and_new_topics() -> None:
    topics = {"orders-1": (T1, 2)}
    coord = ConsumerGroupCoordinator(CoordinatorTimer(Clock()), lambda: topics)
    r = join(coord, topics=[], regex="orders-.*")
    assert r.assignment == {T1: {0, 1}}
    topics["orders-2"] = (T2, 1)
    topics["__consumer_offsets"] = (uuid.UUID(int=9), 50)
    r2 = beat(coord, r, r.assignment)
    assert r2.assignment == {T1: {0, 1}, T2: {0}}


def test_range_assignor_selected(env: tuple[ConsumerGroupCoordinator, Clock]) -> None:
    coord, _ = env
    a = join(coord, "a", assignor="range")
    assert a.member_id == "a"
    b = join(coord, "b", assignor="range")
    a = beat(coord, a, a.assignment)
    a = beat(coord, a, a.assignment)
    b = beat(coord, b, {})
    assert coord.groups["g"].assignor_name == "range"
    assert b.assignment == {T1: {2, 3}}
    assert coord.groups["g"].target["a"] == {T1: {0, 1}}


def test_static_member_rejoin_replaces_old(env: tuple[ConsumerGroupCoordinator, Clock]
                                           ) -> None:
    coord, _ = env
    first = coord.heartbeat(HeartbeatRequest(
        "g", "", 0, instance_id="i1", rebalance_timeout_ms=1000,
        subscribed_topic_names=["t"], owned=[]))
    second = coord.heartbeat(HeartbeatRequest(
        "g", "", 0, instance_id="i1", rebalance_timeout_ms=1000,
        subscribed_topic_names=["t"], owned=[]))
    assert list(coord.groups["g"].members) == [second.member_id]
    assert first.member_id != second.member_id
    assert second.assignment == {T1: {0, 1, 2, 3}}
    left = coord.heartbeat(HeartbeatRequest("g", second.member_id or "", -2, instance_id="i1"))
    assert left.member_epoch == -2 and not coord.groups["g"].members
    assert coord.groups["g"].state == "Empty"


def test_records_round_trip(env: tuple[ConsumerGroupCoordinator, Clock]) -> None:
    coord, _ = env
    a = join(coord)
    b = join(coord, regex="oth.*")
    beat(coord, a, a.assignment)
    beat(coord, b, {})
    written: list[tuple[str, list[tuple[bytes, bytes | None]]]] = []
    store = ConsumerGroupStore(lambda gid, records: written.append((gid, records)))
    group = coord.groups["g"]
    store.store(group)
    store.store(group)  # unchanged: nothing written
    assert len(written) == 1
    groups: dict[str, ConsumerGroup] = {}
    for key, value in written[0][1]:
        assert replay(groups, key, value) == "g"
    copy = groups["g"]
    assert (copy.group_epoch, copy.assignment_epoch) == (group.group_epoch,
                                                        group.assignment_epoch)
    assert copy.subscription_metadata == group.subscription_metadata
    assert copy.target == group.target
    for mid, m in group.members.items():
        c = copy.members[mid]
        assert (c.member_epoch, c.previous_member_epoch, c.state, c.assigned,
                c.pending_revocation, c.subscribed_topic_names, c.subscribed_topic_regex,
                c.rebalance_timeout_ms) == (
            m.member_epoch, m.previous_member_epoch, m.state, m.assigned,
            m.pending_revocation, m.subscribed_topic_names, m.subscribed_topic_regex,
            m.rebalance_timeout_ms)
    # a member leaving writes tombstones for its three records
    coord.heartbeat(HeartbeatRequest("g", b.member_id or "", -1))
    store.store(group)
    tombstones = [k for k, v in written[1][1] if v is None]
    assert len(tombstones) == 3
    for key, value in written[1][1]:
        replay(groups, key, value)
    assert list(groups["g"].members) == [a.member_id]
    assert replay(groups, b"\x00\x01xx", None) is None
