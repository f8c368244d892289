"""The classic group state machine and its bookkeeping, without a broker."""

from __future__ import annotations

import pytest

from pykbroker.coordinator.group.classic import (
    ClassicGroup,
    ClassicMember,
    GroupState,
    IllegalStateTransition,
    JoinResult,
)
from pykbroker.coordinator.group.offsets import OffsetAndMetadata, expired_offsets
from pykbroker.error_codes import ErrorCode

S = GroupState
ALLOWED = {
    (S.EMPTY, S.PREPARING_REBALANCE),
    (S.STABLE, S.PREPARING_REBALANCE),
    (S.COMPLETING_REBALANCE, S.PREPARING_REBALANCE),
    (S.PREPARING_REBALANCE, S.COMPLETING_REBALANCE),
    (S.PREPARING_REBALANCE, S.EMPTY),
    (S.COMPLETING_REBALANCE, S.STABLE),
    *((s, S.DEAD) for s in GroupState),
}


@pytest.mark.parametrize("source", list(GroupState))
@pytest.mark.parametrize("target", list(GroupState))
def test_transitions_follow_kafka(source: GroupState, target: GroupState) -> None:
    group = ClassicGroup("g", 0, source)
    if (source, target) in ALLOWED:
        group.transition_to(target, 5)
        assert group.state is target and group.state_timestamp == 5
    else:
        with pytest.raises(IllegalStateTransition):
            group.transition_to(target, 5)
        assert group.state is source


def member(mid: str, protocols: list[tuple[str, bytes]], instance: str | None = None,
           rebalance: int = 1000) -> ClassicMember:
    return ClassicMember(mid, instance, "client", "/127.0.0.1", rebalance, 6000, "consumer",
                         protocols)


def test_first_member_sets_protocol_type_and_leader() -> None:
    group = ClassicGroup("g", 0)
    assert group.supports_protocols("consumer", {"range"})
    assert not group.supports_protocols("", {"range"})
    assert not group.supports_protocols("consumer", set())
    group.add(member("a", [("range", b"1")]), lambda r: None)
    group.transition_to(S.PREPARING_REBALANCE, 0)
    assert group.protocol_type == "consumer" and group.leader_id == "a"
    assert group.num_awaiting_join == 1 and group.has_all_members_joined()
    assert not group.supports_protocols("other", {"range"})
    assert not group.supports_protocols("consumer", {"roundrobin"})


def test_protocol_selection_votes_among_common_protocols() -> None:
    group = ClassicGroup("g", 0)
    group.add(member("a", [("roundrobin", b""), ("range", b"")]))
    group.add(member("b", [("range", b""), ("roundrobin", b"")]))
    group.add(member("c", [("sticky", b""), ("range", b""), ("roundrobin", b"")]))
    # Common: range and roundrobin; votes: a->roundrobin, b->range, c->range.
    assert group.select_protocol() == "range"
    group.transition_to(S.PREPARING_REBALANCE, 0)
    group.init_next_generation(1)
    assert group.state is S.COMPLETING_REBALANCE and group.generation_id == 1
    assert group.protocol_name == "range"


def test_remove_moves_leadership_and_counts() -> None:
    group = ClassicGroup("g", 0)
    group.add(member("a", [("range", b"")]), lambda r: None)
    group.add(member("b", [("range", b"")], instance="i-b"), lambda r: None)
    assert group.static_member_id("i-b") == "b"
    group.remove("a")
    assert group.leader_id == "b" and group.num_awaiting_join == 1
    group.remove("b")
    assert group.leader_id is None and group.static_members == {}
    assert group.supported_protocols["range"] == 0


def test_replacing_a_static_member_fences_the_old_requests() -> None:
    group = ClassicGroup("g", 0)
    results: list[JoinResult] = []
    group.add(member("old", [("range", b"")], instance="inst"), results.append)
    replaced = group.replace_static_member("inst", "old", "new")
    assert results[0].error == ErrorCode.FENCED_INSTANCE_ID
    assert replaced.member_id == "new" and group.leader_id == "new"
    assert group.is_static_member_fenced("inst", "old")
    assert not group.is_static_member_fenced("inst", "new")


def test_duplicate_join_answers_the_replaced_request() -> None:
    group = ClassicGroup("g", 0)
    first: list[JoinResult] = []
    m = member("a", [("range", b"")])
    group.add(m, first.append)
    group.update_member(m, [("range", b"2")], 1000, 6000, lambda r: None)
    assert first and first[0].error == ErrorCode.REBALANCE_IN_PROGRESS
    assert group.num_awaiting_join == 1


def test_elect_new_leader_among_rejoined_members() -> None:
    group = ClassicGroup("g", 0)
    group.add(member("a", [("range", b"")]))
    group.add(member("b", [("range", b"")]), lambda r: None)
    assert group.maybe_elect_new_joined_leader() and group.leader_id == "b"
    group.invoke_join(group.members["b"], JoinResult(ErrorCode.NONE, "b"))
    assert not group.maybe_elect_new_joined_leader()


def test_offset_expiry_rules() -> None:
    offsets = {("t", 0): OffsetAndMetadata(1, commit_timestamp=100),
               ("t", 1): OffsetAndMetadata(1, commit_timestamp=900),
               ("u", 0): OffsetAndMetadata(1, commit_timestamp=0, expire_timestamp=2000)}
    # Aged from each commit: only t-0 is older than 500 ms at 700.
    assert expired_offsets(offsets, 700, 500, None) == [("t", 0)]
    # Aged from when the group became empty (at 300): nothing before 800, then both t.
    assert expired_offsets(offsets, 799, 500, 300) == []
    assert sorted(expired_offsets(offsets, 800, 500, 300)) == [("t", 0), ("t", 1)]
    # Explicit expire timestamps win; subscribed topics are kept.
    assert sorted(expired_offsets(offsets, 2000, 500, None, keep_topics=["t"])) == [("u", 0)]
