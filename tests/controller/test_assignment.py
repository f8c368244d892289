"""Replica assignment against Kafka 3.9's own expectations, then as properties.

Examples come from core/src/test/scala/unit/kafka/admin/AdminRackAwareTest.scala (with its
RackAwareTest.checkReplicaDistribution) and AddPartitionsTest.scala (ZK placement of added
partitions); a few are worked by hand from AdminUtils.java and say so.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykbroker.controller.assignment import (
    AdminOperationError,
    assign_added_partitions,
    assign_replicas,
    rack_alternated_broker_list,
    replica_index,
)
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError

_SETTINGS = settings(max_examples=200, deadline=None)


class FixedDraws:
    """An rng answering the given draws in order (Kafka draws start index, then shift)."""

    def __init__(self, *draws: int) -> None:
        self.draws = list(draws)

    def randrange(self, start: int, /) -> int:
        value = self.draws.pop(0)
        assert 0 <= value < start
        return value


def no_racks(*ids: int) -> dict[int, str | None]:
    return dict.fromkeys(ids)


def leader_counts(assignment: Mapping[int, Sequence[int]]) -> Counter[int]:
    return Counter(replicas[0] for replicas in assignment.values())


def replica_counts(assignment: Mapping[int, Sequence[int]]) -> Counter[int]:
    return Counter(b for replicas in assignment.values() for b in replicas)


def check_replica_distribution(assignment: Mapping[int, Sequence[int]],
                               racks: Mapping[int, str], n_partitions: int,
                               replication_factor: int, *, rack_aware: bool = True,
                               leaders: bool = True, replicas: bool = True) -> None:
    """Kafka's RackAwareTest.checkReplicaDistribution."""
    n_brokers = len(racks)
    for brokers in assignment.values():
        assert len(set(brokers)) == len(brokers)
    if rack_aware:
        assert [len({racks[b] for b in brokers}) for brokers in assignment.values()] \
            == [replication_factor] * n_partitions
    if leaders:
        counts = leader_counts(assignment)
        assert [counts[b] for b in racks] == [n_partitions // n_brokers] * n_brokers
    if replicas:
        counts = replica_counts(assignment)
        assert [counts[b] for b in racks] \
            == [n_partitions * replication_factor // n_brokers] * n_brokers


# --- AdminRackAwareTest -------------------------------------------------------------------

RACKS_6 = {0: "rack1", 1: "rack3", 2: "rack3", 3: "rack2", 4: "rack2", 5: "rack1"}
RACKS_6B = {0: "rack1", 1: "rack2", 2: "rack2", 3: "rack3", 4: "rack3", 5: "rack1"}


def test_rack_alternated_broker_list() -> None:
    assert rack_alternated_broker_list(RACKS_6) == [0, 3, 1, 5, 4, 2]
    without_5 = {b: r for b, r in RACKS_6.items() if b != 5}
    assert rack_alternated_broker_list(without_5) == [0, 3, 1, 4, 2]


def test_rack_aware_assignment_fixed_start() -> None:
    assert assign_replicas(7, 3, RACKS_6, fixed_start_index=0, start_partition_id=0) == {
        0: [0, 3, 1],
        1: [3, 1, 5],
        2: [1, 5, 4],
        3: [5, 4, 2],
        4: [4, 2, 0],
        5: [2, 0, 3],
        6: [0, 4, 2],  # second round: followers shifted, not a repeat of partition 0
    }


def test_rack_unaware_assignment_fixed_start() -> None:
    assert assign_replicas(10, 3, no_racks(0, 1, 2, 3, 4), fixed_start_index=0) == {
        0: [0, 1, 2],
        1: [1, 2, 3],
        2: [2, 3, 4],
        3: [3, 4, 0],
        4: [4, 0, 1],
        5: [0, 2, 3],
        6: [1, 3, 4],
        7: [2, 4, 0],
        8: [3, 0, 1],
        9: [4, 1, 2],
    }


@pytest.mark.parametrize("racks, n_partitions, rf, fixed, start, checks", [
    pytest.param(RACKS_6B, 6, 3, 2, 0, {}, id="testAssignmentWithRackAware"),
    pytest.param(RACKS_6B, 6, 3, -1, -1, {}, id="WithRandomStartIndex"),
    pytest.param(RACKS_6B, 13, 3, 0, 0, {"leaders": False, "replicas": False},
                 id="WithUnevenReplicas"),
    pytest.param({0: "rack1", 1: "rack1", 2: "rack2", 3: "rack3", 4: "rack3", 5: "rack1"},
                 12, 3, -1, -1, {"replicas": False}, id="WithUnevenRacks"),
    pytest.param(RACKS_6B, 12, 2, -1, -1, {}, id="With2ReplicasRackAware"),
    pytest.param({6: "rack1", 7: "rack2", 8: "rack2", 9: "rack3", 10: "rack3", 11: "rack1"},
                 12, 2, -1, 12, {}, id="testRackAwareExpansion"),
    pytest.param(RACKS_6B, 6, 2, -1, -1, {}, id="With2ReplicasRackAwareWith6Partitions"),
    pytest.param({0: "rack1", 1: "rack2", 4: "rack3"}, 3, 2, -1, -1, {},
                 id="With2ReplicasRackAwareWith6PartitionsAnd3Brokers"),
    pytest.param({0: "rack1", 1: "rack2", 2: "rack2", 3: "rack3", 4: "rack3", 5: "rack1",
                  6: "rack1", 7: "rack2", 8: "rack2", 9: "rack3", 10: "rack1", 11: "rack3"},
                 96, 3, -1, -1, {}, id="testLargeNumberPartitionsAssignment"),
    pytest.param({0: "a", 1: "b", 2: "c", 3: "a", 4: "a"}, 6, 4, 2, -1,
                 {"rack_aware": False, "leaders": False, "replicas": False},
                 id="testSkipBrokerWithReplicaAlreadyAssigned"),
])
@pytest.mark.parametrize("seed", range(5))
def test_kafka_rack_aware_distributions(racks: dict[int, str], n_partitions: int, rf: int,
                                        fixed: int, start: int, checks: dict[str, bool],
                                        seed: int) -> None:
    assignment = assign_replicas(n_partitions, rf, racks, fixed_start_index=fixed,
                                 start_partition_id=start, rng=random.Random(seed))
    check_replica_distribution(assignment, racks, n_partitions, rf, **checks)


@pytest.mark.parametrize("seed", range(5))
def test_more_replicas_than_racks(seed: int) -> None:
    racks = {0: "rack1", 1: "rack2", 2: "rack2", 3: "rack3", 4: "rack3", 5: "rack2"}
    assignment = assign_replicas(6, 5, racks, rng=random.Random(seed))
    assert [len(r) for r in assignment.values()] == [5] * 6
    assert all(len({racks[b] for b in r}) == 3 for r in assignment.values())


@pytest.mark.parametrize("seed", range(5))
def test_less_replicas_than_racks(seed: int) -> None:
    racks = {0: "rack1", 1: "rack2", 2: "rack2", 3: "rack3", 4: "rack3", 5: "rack2"}
    assignment = assign_replicas(6, 2, racks, rng=random.Random(seed))
    assert [len(r) for r in assignment.values()] == [2] * 6
    assert all(len({racks[b] for b in r}) == 2 for r in assignment.values())


@pytest.mark.parametrize("seed", range(5))
def test_single_rack(seed: int) -> None:
    racks = dict.fromkeys(range(6), "rack1")
    assignment = assign_replicas(6, 3, racks, rng=random.Random(seed))
    assert [len(r) for r in assignment.values()] == [3] * 6
    assert all(len({racks[b] for b in r}) == 1 for r in assignment.values())
    assert leader_counts(assignment) == Counter(range(6))


def test_replica_assignment_errors() -> None:
    brokers = no_racks(0, 1, 2, 3, 4)
    with pytest.raises(KafkaError) as e:
        assign_replicas(10, 0, brokers)
    assert e.value.error_code is ErrorCode.INVALID_REPLICATION_FACTOR
    assert e.value.detail == "Replication factor must be larger than 0."
    with pytest.raises(KafkaError) as e:
        assign_replicas(10, 6, brokers)
    assert e.value.error_code is ErrorCode.INVALID_REPLICATION_FACTOR
    assert e.value.detail == "Replication factor: 6 larger than available brokers: 5."


def test_invalid_parameters_in_kafka_order() -> None:
    """testAssignReplicasToBrokersWithInvalidParameters: partitions are checked first, the
    replication factor next, the racks last."""
    brokers: dict[int, str | None] = {0: "rack1", 1: "rack3", 2: "rack3", 3: "rack2", 4: None}
    with pytest.raises(KafkaError) as e:
        assign_replicas(0, 0, brokers)
    assert e.value.error_code is ErrorCode.INVALID_PARTITIONS
    assert e.value.detail == "Number of partitions must be larger than 0."
    for rf in (0, 6):
        with pytest.raises(KafkaError) as e:
            assign_replicas(10, rf, brokers)
        assert e.value.error_code is ErrorCode.INVALID_REPLICATION_FACTOR
    with pytest.raises(AdminOperationError) as admin:
        assign_replicas(10, 5, brokers)
    assert admin.value.error_code is ErrorCode.UNKNOWN_SERVER_ERROR
    assert admin.value.detail is None  # ApiError.fromThrowable hides it
    assert admin.value.message == \
        "Not all brokers have rack information for replica rack aware assignment."


def test_no_brokers() -> None:
    with pytest.raises(KafkaError) as e:
        assign_replicas(1, 1, {})
    assert e.value.detail == "Replication factor: 1 larger than available brokers: 0."


# --- worked by hand from AdminUtils.java -------------------------------------------------

def test_random_draws_are_start_index_then_shift() -> None:
    # On [0, 1, 2] from index 1: shift 0 puts the follower 1 + 0 % 2 = 1 further on,
    # shift 1 puts it 1 + 1 % 2 = 2 further on.
    assert assign_replicas(3, 2, no_racks(0, 1, 2), rng=FixedDraws(1, 0)) \
        == {0: [1, 2], 1: [2, 0], 2: [0, 1]}
    assert assign_replicas(3, 2, no_racks(0, 1, 2), rng=FixedDraws(1, 1)) \
        == {0: [1, 0], 1: [2, 1], 2: [0, 2]}
    assert assign_replicas(5, 3, no_racks(0, 1, 2, 3), rng=FixedDraws(2, 2)) \
        == assign_replicas(5, 3, no_racks(0, 1, 2, 3), fixed_start_index=2)


def test_rack_unaware_uses_the_given_order() -> None:
    assert assign_replicas(2, 2, no_racks(5, 1, 3), fixed_start_index=0) \
        == {0: [5, 1], 1: [1, 3]}


def test_start_partition_id_continues_the_shift_schedule() -> None:
    # Partition 3 of 3 brokers starts the second round: shift 0 -> 1 there.
    assert assign_replicas(2, 2, no_racks(0, 1, 2), fixed_start_index=0,
                           start_partition_id=2) == {2: [2, 0], 3: [0, 2]}


def test_replica_index_never_hits_the_first_replica() -> None:
    for n in range(2, 8):
        for first in range(n):
            for shift in range(3 * n):
                for j in range(n):
                    assert replica_index(first, shift, j, n) != first


def test_seeded_rng_is_reproducible_and_module_default_works() -> None:
    brokers = no_racks(0, 1, 2, 3)
    assert assign_replicas(8, 2, brokers, rng=random.Random(7)) \
        == assign_replicas(8, 2, brokers, rng=random.Random(7))
    assert sorted(assign_replicas(8, 2, brokers)) == list(range(8))


# --- AddPartitionsTest (ZK placement) ------------------------------------------------------

def test_added_partitions_all_servers() -> None:
    """testReplicaPlacementAllServers: [2,3,0,1] on 4 brokers, increased to 7."""
    added = assign_added_partitions({0: [2, 3, 0, 1]}, 7, no_racks(0, 1, 2, 3))
    assert {p: (r[0], set(r)) for p, r in added.items()} == {
        1: (3, {0, 1, 2, 3}),
        2: (0, {0, 1, 2, 3}),
        3: (1, {0, 1, 2, 3}),
        4: (2, {0, 1, 2, 3}),
        5: (3, {0, 1, 2, 3}),
        6: (0, {0, 1, 2, 3}),
    }
    # The exact lists, from AdminUtils with start index 2 and start partition 1.
    assert added == {1: [3, 2, 0, 1], 2: [0, 3, 1, 2], 3: [1, 0, 2, 3], 4: [2, 3, 0, 1],
                     5: [3, 0, 1, 2], 6: [0, 1, 2, 3]}


def test_added_partitions_partial_servers() -> None:
    """testReplicaPlacementPartialServers: [1,2] on 4 brokers, increased to 3."""
    added = assign_added_partitions({0: [1, 2]}, 3, no_racks(0, 1, 2, 3))
    assert added == {1: [2, 0], 2: [3, 1]}


def test_added_partitions_start_index_from_sorted_ids() -> None:
    # Brokers given unsorted; partition 0 led by absent broker 2 -> first id >= 2 is 3 (index 2).
    added = assign_added_partitions({0: [2, 0], 1: [0, 1]}, 3, no_racks(3, 1, 0))
    assert added == assign_replicas(1, 2, no_racks(0, 1, 3), fixed_start_index=2,
                                    start_partition_id=2)
    # No id >= the leader: start index 0.
    added = assign_added_partitions({0: [9]}, 2, no_racks(2, 1))
    assert added == {1: [2]}


def test_added_partitions_rack_aware() -> None:
    # Start index 1 comes from the id-sorted list but indexes the rack-alternated one
    # [0, 2, 1, 3], as in Kafka: p1 first = arranged[2] = 1, p2 first = arranged[3] = 3.
    racks: dict[int, str | None] = {0: "a", 1: "a", 2: "b", 3: "b"}
    assert assign_added_partitions({0: [1, 3]}, 3, racks) == {1: [1, 2], 2: [3, 1]}


def test_added_partitions_errors() -> None:
    brokers = no_racks(0, 1, 2)
    with pytest.raises(KafkaError) as e:
        assign_added_partitions({0: [0], 1: [1], 2: [2]}, 2, brokers)
    assert e.value.error_code is ErrorCode.INVALID_PARTITIONS
    assert e.value.detail == "Topic currently has 3 partitions, which is higher than the " \
        "requested 2."
    with pytest.raises(KafkaError) as e:
        assign_added_partitions({0: [0]}, 1, brokers)
    assert e.value.error_code is ErrorCode.INVALID_PARTITIONS
    assert e.value.detail == "Topic already has 1 partitions."
    with pytest.raises(KafkaError) as e:
        assign_added_partitions({}, 3, brokers, topic="t")
    assert e.value.error_code is ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert e.value.detail == "The topic 't' does not exist."
    with pytest.raises(AdminOperationError) as admin:
        assign_added_partitions({1: [0, 1]}, 3, brokers, topic="new-topic5")
    assert admin.value.error_code is ErrorCode.UNKNOWN_SERVER_ERROR
    assert "Unexpected existing replica assignment for topic 'new-topic5', partition id 0 " \
        "is missing" in admin.value.message
    with pytest.raises(KafkaError) as e:
        assign_added_partitions({0: [0, 1, 2, 3]}, 2, brokers)
    assert e.value.error_code is ErrorCode.INVALID_REPLICATION_FACTOR
    assert e.value.detail == "Replication factor: 4 larger than available brokers: 3."


def test_added_partitions_partial_racks_refused_first() -> None:
    """getBrokerMetadatas(Enforced) runs before any per-topic check."""
    with pytest.raises(AdminOperationError) as admin:
        assign_added_partitions({}, 0, {0: "a", 1: None})
    assert admin.value.detail is None
    assert admin.value.message == (
        "Not all brokers have rack information. Add --disable-rack-aware in command line to "
        "make replica assignment without rack information.")


# --- properties ---------------------------------------------------------------------------

@st.composite
def clusters(draw: st.DrawFn, racked: bool | None = None) -> dict[int, str | None]:
    """Distinct broker ids, each with a rack (racked), none (not racked) or drawn."""
    ids = draw(st.lists(st.integers(0, 1000), min_size=1, max_size=12, unique=True))
    if racked is None:
        racked = draw(st.booleans())
    if not racked:
        return dict.fromkeys(ids)
    n_racks = draw(st.integers(1, len(ids)))
    return {b: f"rack{draw(st.integers(0, n_racks - 1))}" for b in ids}


@st.composite
def requests(draw: st.DrawFn, racked: bool | None = None
             ) -> tuple[dict[int, str | None], int, int, int, int]:
    brokers = draw(clusters(racked))
    rf = draw(st.integers(1, len(brokers)))
    n_partitions = draw(st.integers(1, 60))
    start_partition_id = draw(st.integers(-1, 100))
    seed = draw(st.integers(0, 2**32))
    return brokers, rf, n_partitions, start_partition_id, seed


@_SETTINGS
@given(requests())
def test_every_partition_gets_rf_distinct_brokers(
        request: tuple[dict[int, str | None], int, int, int, int]) -> None:
    brokers, rf, n_partitions, start, seed = request
    assignment = assign_replicas(n_partitions, rf, brokers, start_partition_id=start,
                                 rng=random.Random(seed))
    first = max(0, start)
    assert list(assignment) == list(range(first, first + n_partitions))
    for replicas in assignment.values():
        assert len(replicas) == rf
        assert len(set(replicas)) == rf
        assert set(replicas) <= set(brokers)


@_SETTINGS
@given(requests(racked=True))
def test_rack_aware_spreads_over_racks(
        request: tuple[dict[int, str | None], int, int, int, int]) -> None:
    brokers, rf, n_partitions, start, seed = request
    n_racks = len(set(brokers.values()))
    assignment = assign_replicas(n_partitions, rf, brokers, start_partition_id=start,
                                 rng=random.Random(seed))
    for replicas in assignment.values():
        racks = {brokers[b] for b in replicas}
        # Distinct racks while there are enough; every rack once there are more replicas.
        assert len(racks) == min(rf, n_racks)


@_SETTINGS
@given(requests())
def test_leaders_balanced_within_one(
        request: tuple[dict[int, str | None], int, int, int, int]) -> None:
    brokers, rf, n_partitions, start, seed = request
    counts = leader_counts(assign_replicas(n_partitions, rf, brokers, start_partition_id=start,
                                           rng=random.Random(seed)))
    per_broker = [counts[b] for b in brokers]
    assert max(per_broker) - min(per_broker) <= 1
    if n_partitions % len(brokers) == 0:
        assert set(per_broker) == {n_partitions // len(brokers)}


@_SETTINGS
@given(st.integers(1, 8), st.integers(1, 4), st.integers(1, 4), st.booleans(),
       st.integers(0, 5), st.integers(0, 2**32), st.data())
def test_replicas_balanced_on_even_clusters(per_rack: int, n_racks: int, rounds: int,
                                            racked: bool, first_round: int, seed: int,
                                            data: st.DataObject) -> None:
    """Kafka's promise: with whole rounds of partitions and racks of equal size (or no racks),
    every broker holds the same number of replicas."""
    n = per_rack * n_racks
    brokers: dict[int, str | None] = {
        b: (f"rack{b % n_racks}" if racked else None) for b in range(n)}
    rf = data.draw(st.integers(1, n))
    assignment = assign_replicas(rounds * n, rf, brokers, start_partition_id=first_round * n,
                                 rng=random.Random(seed))
    assert set(replica_counts(assignment).values()) == {rounds * rf}
    assert set(leader_counts(assignment).values()) == {rounds}


@pytest.mark.parametrize("seed", range(20))
def test_twelve_partitions_rf3_three_brokers(seed: int) -> None:
    assignment = assign_replicas(12, 3, no_racks(1, 2, 3), rng=random.Random(seed))
    assert leader_counts(assignment) == {1: 4, 2: 4, 3: 4}
    assert all(sorted(r) == [1, 2, 3] for r in assignment.values())


@_SETTINGS
@given(requests(), st.integers(1, 40))
def test_added_partitions_follow_partition_zero(
        request: tuple[dict[int, str | None], int, int, int, int], added: int) -> None:
    brokers, rf, n_existing, _, seed = request
    existing = assign_replicas(n_existing, rf, brokers, rng=random.Random(seed))
    new = assign_added_partitions(existing, n_existing + added, brokers)
    assert list(new) == list(range(n_existing, n_existing + added))
    ids = sorted(brokers)
    start = next((i for i, b in enumerate(ids) if b >= existing[0][0]), 0)
    assert new == assign_replicas(added, rf, {b: brokers[b] for b in ids},
                                  fixed_start_index=start, start_partition_id=n_existing)
    for replicas in new.values():
        assert len(set(replicas)) == rf
