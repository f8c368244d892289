"""Leader election and LeaderAndIsr transitions against Kafka 3.9's expectations, then as
properties.

Examples come from core/src/test/scala/unit/kafka/controller/
PartitionLeaderElectionAlgorithmsTest.scala, PartitionStateMachineTest.scala,
ReplicaStateMachineTest.scala and core/src/test/scala/kafka/api/LeaderAndIsrTest.scala.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykbroker.controller.leader_election import (
    NO_LEADER,
    RECOVERED,
    RECOVERING,
    LeaderAndIsr,
    controlled_shutdown,
    initialize_leader_and_isr,
    offline,
    preferred,
    reassign,
)

_SETTINGS = settings(max_examples=300, deadline=None)

BROKER, OTHER = 1, 2  # PartitionStateMachineTest's brokerId and brokerId + 1


# --- PartitionLeaderElectionAlgorithmsTest ------------------------------------------------

def test_offline_election() -> None:
    assert offline([2, 4], [2, 4], {4}, False) == (4, (4,), False)


def test_offline_last_isr_offline_unclean_disabled() -> None:
    assert offline([2, 4], [2], {4}, False) == (None, (2,), False)


def test_offline_last_isr_offline_unclean_enabled() -> None:
    assert offline([2, 4], [2], {4}, True) == (4, (4,), True)


def test_reassign_election() -> None:
    assert reassign([2, 4], [2, 4], {4}) == (4, (2, 4))


def test_reassign_with_no_live_isr() -> None:
    assert reassign([2, 4], [2], set()) == (None, (2,))


def test_reassign_with_empty_isr() -> None:
    assert reassign([2, 4], [], {2}) == (None, ())


def test_preferred_election() -> None:
    assert preferred([2, 4], [2, 4], {2, 4}) == (2, (2, 4))


def test_preferred_in_isr_not_live() -> None:
    assert preferred([2, 4], [2], set()) == (None, (2,))


def test_preferred_not_in_isr_live() -> None:
    assert preferred([2, 4], [4], {2, 4}) == (None, (4,))


def test_preferred_not_in_isr_not_live() -> None:
    assert preferred([2, 4], [], set()) == (None, ())


def test_controlled_shutdown_election() -> None:
    assert controlled_shutdown([2, 4], [2, 4], {2, 4}, {2}) == (4, (4,))


def test_controlled_shutdown_last_isr_shutting_down() -> None:
    assert controlled_shutdown([2, 4], [2], {2, 4}, {2}) == (None, (2,))


def test_controlled_shutdown_all_isr_shutting_down() -> None:
    assert controlled_shutdown([2, 4], [2, 4], {2, 4}, {2, 4}) == (None, (2, 4))


# --- PartitionStateMachineTest / ReplicaStateMachineTest -----------------------------------

def test_new_partition_to_online() -> None:
    assert initialize_leader_and_isr([BROKER], {BROKER}) == LeaderAndIsr(BROKER, 0, (BROKER,), 0)
    assert initialize_leader_and_isr([3, BROKER, OTHER], {OTHER, BROKER}) \
        == LeaderAndIsr(BROKER, 0, (BROKER, OTHER), 0)
    assert initialize_leader_and_isr([3, 4], {BROKER}) is None


def test_offline_to_online() -> None:
    state = LeaderAndIsr.initial(NO_LEADER, [BROKER])
    leader, isr, unclean = offline([BROKER], state.isr, {BROKER}, False)
    assert (leader, isr, unclean) == (BROKER, (BROKER,), False)
    assert leader is not None
    assert state.new_leader(leader, isr) == LeaderAndIsr(BROKER, 1, (BROKER,), 0)


def test_offline_to_unclean_online_marks_recovering() -> None:
    """Leader X, ISR [X], replicas [X, Y], live [Y] -> leader Y, ISR [Y], RECOVERING."""
    state = LeaderAndIsr.initial(OTHER, [OTHER])
    leader, isr, unclean = offline([OTHER, BROKER], state.isr, {BROKER}, True)
    assert (leader, isr, unclean) == (BROKER, (BROKER,), True)
    assert leader is not None
    assert state.new_leader(leader, isr, recovering=unclean) \
        == LeaderAndIsr(BROKER, 1, (BROKER,), 0, RECOVERING)


def test_online_to_online_for_controlled_shutdown() -> None:
    state = LeaderAndIsr.initial(BROKER, [BROKER, OTHER])
    leader, isr = controlled_shutdown([BROKER, OTHER], state.isr, {BROKER, OTHER}, {BROKER})
    assert (leader, isr) == (OTHER, (OTHER,))
    assert state.new_leader(OTHER, isr) == LeaderAndIsr(OTHER, 1, (OTHER,), 0)


def test_online_to_online_preferred_keeps_isr() -> None:
    state = LeaderAndIsr.initial(BROKER, [BROKER])
    leader, isr = preferred([BROKER], state.isr, {BROKER})
    assert leader == BROKER and isr == state.isr
    assert state.new_leader(BROKER) == LeaderAndIsr(BROKER, 1, (BROKER,), 0)


def test_online_replica_to_offline_replica() -> None:
    """doRemoveReplicasFromIsr: newLeaderAndIsr(NoLeader, [other]), written at version + 1."""
    state = LeaderAndIsr.initial(BROKER, [BROKER, OTHER])
    adjusted = state.remove_replica_from_isr(BROKER)
    assert adjusted == LeaderAndIsr(NO_LEADER, 1, (OTHER,), 0)
    assert adjusted.with_partition_epoch(adjusted.partition_epoch + 1).zk_version == 1


def test_remove_follower_keeps_leader_bumps_epoch() -> None:
    state = LeaderAndIsr(3, 7, (3, 1, 2), 11)
    assert state.remove_replica_from_isr(1) == LeaderAndIsr(3, 8, (3, 2), 11)


def test_remove_last_isr_member_keeps_it() -> None:
    state = LeaderAndIsr(3, 7, (3,), 11)
    assert state.remove_replica_from_isr(3) == LeaderAndIsr(NO_LEADER, 8, (3,), 11)


def test_remove_replica_not_in_isr_changes_nothing() -> None:
    state = LeaderAndIsr(3, 7, (3, 1), 11)
    assert state.remove_replica_from_isr(2) is state


# --- LeaderAndIsrTest ---------------------------------------------------------------------

def test_recovering_leader_and_isr() -> None:
    new = LeaderAndIsr.initial(1, [1, 2]).new_leader(3, [3], recovering=True)
    assert (new.leader, new.isr, new.leader_recovery_state) == (3, (3,), RECOVERING)


def test_new_leader_and_isr() -> None:
    new = LeaderAndIsr.initial(1, [1, 2]).new_leader(2, [1, 2])
    assert (new.leader, new.isr, new.leader_recovery_state) == (2, (1, 2), RECOVERED)


def test_new_leader_keeps_isr() -> None:
    state = LeaderAndIsr.initial(2, [1, 2, 3])
    assert (state.leader, state.isr) == (2, (1, 2, 3))
    new = state.new_leader(3)
    assert (new.leader, new.isr) == (3, (1, 2, 3))


def test_new_epoch() -> None:
    state = LeaderAndIsr.initial(3, [1, 2, 3])
    assert state.leader_epoch == 0
    assert state.new_epoch().leader_epoch == 1


def test_leader_opt() -> None:
    assert LeaderAndIsr.initial(2, [1, 2, 3]).leader_opt == 2
    assert LeaderAndIsr.initial(NO_LEADER, [1]).leader_opt is None


def test_clean_election_keeps_recovering_state() -> None:
    state = LeaderAndIsr(1, 4, (1,), 9, RECOVERING)
    assert state.new_leader(1, [1]).leader_recovery_state == RECOVERING


# --- AlterPartition (KafkaController.tryProcessAlterPartition) -----------------------------

def test_alter_partition_keeps_leader_epoch() -> None:
    state = LeaderAndIsr(1, 5, (1, 2, 3), 8)
    shrunk = state.new_isr([1, 3])
    assert shrunk == LeaderAndIsr(1, 5, (1, 3), 8)
    assert shrunk.with_partition_epoch(9) == LeaderAndIsr(1, 5, (1, 3), 9)
    recovered = LeaderAndIsr(1, 5, (1,), 8, RECOVERING).new_isr([1], RECOVERED)
    assert recovered == LeaderAndIsr(1, 5, (1,), 8, RECOVERED)


# --- properties ---------------------------------------------------------------------------

@st.composite
def partitions(draw: st.DrawFn) -> tuple[list[int], list[int], set[int]]:
    """(assignment, ISR, live brokers); the ISR may hold replicas that left the assignment."""
    assignment = draw(st.lists(st.integers(0, 9), min_size=1, max_size=6, unique=True))
    isr = draw(st.lists(st.integers(0, 11), max_size=6, unique=True))
    live = draw(st.sets(st.integers(0, 11)))
    return assignment, isr, live


@_SETTINGS
@given(partitions(), st.booleans())
def test_offline_picks_a_live_replica_from_the_isr_unless_unclean(
        partition: tuple[list[int], list[int], set[int]], unclean_enabled: bool) -> None:
    assignment, isr, live = partition
    leader, new_isr, unclean = offline(assignment, isr, live, unclean_enabled)
    if leader is None:
        assert new_isr == tuple(isr) and not unclean
        assert not any(r in live for r in assignment) or not unclean_enabled
        assert not any(r in live and r in isr for r in assignment)
        return
    assert leader in assignment and leader in live
    earlier = assignment[:assignment.index(leader)]
    if unclean:
        assert unclean_enabled and leader not in isr and new_isr == (leader,)
        assert not any(r in live and r in isr for r in assignment)
        assert not any(r in live for r in earlier)
    else:
        assert leader in isr and leader in new_isr
        assert new_isr == tuple(r for r in isr if r in live)
        assert not any(r in live and r in isr for r in earlier)


@_SETTINGS
@given(partitions())
def test_unclean_only_matters_without_a_live_isr_member(
        partition: tuple[list[int], list[int], set[int]]) -> None:
    assignment, isr, live = partition
    clean = offline(assignment, isr, live, False)
    if clean[0] is not None:
        assert offline(assignment, isr, live, True) == clean


@_SETTINGS
@given(partitions())
def test_reassign_and_preferred_pick_live_isr_members(
        partition: tuple[list[int], list[int], set[int]]) -> None:
    assignment, isr, live = partition
    for leader, new_isr in (reassign(assignment, isr, live), preferred(assignment, isr, live)):
        assert new_isr == tuple(isr)
        if leader is not None:
            assert leader in assignment and leader in live and leader in isr
    leader, _ = preferred(assignment, isr, live)
    assert leader in (None, assignment[0])
    assert (leader is None) == (assignment[0] not in live or assignment[0] not in isr)
    leader, _ = reassign(assignment, isr, live)
    assert (leader is None) == (not any(r in live and r in isr for r in assignment))


@_SETTINGS
@given(partitions(), st.sets(st.integers(0, 11)))
def test_controlled_shutdown_never_picks_a_shutting_down_broker(
        partition: tuple[list[int], list[int], set[int]], shutting_down: set[int]) -> None:
    assignment, isr, live = partition
    leader, new_isr = controlled_shutdown(assignment, isr, live | shutting_down, shutting_down)
    if leader is None:
        assert new_isr == tuple(isr)
        assert all(r not in isr or r in shutting_down or r not in live | shutting_down
                   for r in assignment)
        return
    assert leader not in shutting_down
    assert leader in assignment and leader in live and leader in isr
    assert leader in new_isr
    assert new_isr == tuple(r for r in isr if r not in shutting_down)
    # Live given with or without the shutting-down brokers: the same answer.
    assert controlled_shutdown(assignment, isr, live - shutting_down, shutting_down) \
        == (leader, new_isr)


@_SETTINGS
@given(st.lists(st.integers(0, 9), min_size=1, max_size=6, unique=True),
       st.integers(0, 100), st.integers(0, 100), st.data())
def test_remove_replica_from_isr_rules(isr: list[int], epoch: int, version: int,
                                       data: st.DataObject) -> None:
    leader = data.draw(st.sampled_from([*isr, NO_LEADER]))
    replica = data.draw(st.integers(0, 9))
    state = LeaderAndIsr(leader, epoch, tuple(isr), version)
    new = state.remove_replica_from_isr(replica)
    if replica not in isr:
        assert new == state
        return
    assert new.leader_epoch == epoch + 1 and new.partition_epoch == version
    assert new.leader == (NO_LEADER if leader == replica else leader)
    assert new.isr == (tuple(isr) if len(isr) == 1 else tuple(r for r in isr if r != replica))


@_SETTINGS
@given(st.lists(st.integers(0, 9), min_size=1, max_size=6, unique=True), st.data())
def test_initial_state_leads_with_first_live_replica(assignment: list[int],
                                                     data: st.DataObject) -> None:
    live = data.draw(st.sets(st.integers(0, 9)))
    state = initialize_leader_and_isr(assignment, live)
    live_replicas = [r for r in assignment if r in live]
    if state is None:
        assert not live_replicas
        return
    assert state == LeaderAndIsr(live_replicas[0], 0, tuple(live_replicas), 0, RECOVERED)


@pytest.mark.parametrize("isr", [(), (1,), (1, 2)])
def test_isr_is_a_tuple(isr: tuple[int, ...]) -> None:
    state = LeaderAndIsr.initial(1, list(isr))
    assert state.isr == isr and isinstance(state.isr, tuple)
    assert isinstance(state.new_isr(list(isr)).isr, tuple)
    assert isinstance(state.new_leader(1, list(isr)).isr, tuple)
