"""Replica assignment for new topics and added partitions, as Kafka 3.9's ZooKeeper mode does it.

Same results as Kafka for the same inputs and start indexes, so a topic created here is laid out
as Kafka would lay it out. Sources (Kafka 3.9):
``server-common/src/main/java/org/apache/kafka/admin/AdminUtils.java`` (assignReplicasToBrokers,
getRackAlternatedBrokerList, replicaIndex), ``core/src/main/scala/kafka/zk/AdminZkClient.scala``
(getBrokerMetadatas, createNewPartitionsAssignment) and
``core/src/main/scala/kafka/server/ZkAdminManager.scala`` (createTopics, createPartitions).

Both layouts walk a broker list round-robin: partition ``p``'s first replica (its preferred
leader) is list entry ``(p + start_index) % n``; the others follow at a shift that grows by one
after every ``n`` partitions, so the followers of one broker's partitions spread over the others.
The rack-aware layout walks a list that alternates racks and skips a broker whose rack (or the
broker itself) already holds a replica while some rack (or broker) holds none.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError

__all__ = [
    "AdminOperationError",
    "RandomSource",
    "assign_added_partitions",
    "assign_replicas",
    "rack_alternated_broker_list",
    "replica_index",
]


class RandomSource(Protocol):
    """Where random start indexes come from (the ``random`` module or a seeded ``Random``)."""

    def randrange(self, start: int, /) -> int: ...


class AdminOperationError(KafkaError):
    """Kafka's AdminOperationException, which is not an ApiException.

    ZK-mode CreateTopics (catch-all ``Throwable``) and CreatePartitions (``AdminOperationException``,
    or the whole request when it comes from ``getBrokerMetadatas``) answer it through
    ``ApiError.fromThrowable``: UNKNOWN_SERVER_ERROR with a null error message, the text being
    hidden from clients. So ``detail`` is None and the text is kept in ``message`` for logs.
    """

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.UNKNOWN_SERVER_ERROR, message)
        self.detail = None


def replica_index(first_replica_index: int, second_replica_shift: int, replica_index: int,
                  n_brokers: int) -> int:
    """Position of a follower: ``1 + (shift + j) % (n - 1)`` after the first replica, so never
    the first replica itself (Kafka's AdminUtils.replicaIndex)."""
    shift = 1 + (second_replica_shift + replica_index) % (n_brokers - 1)
    return (first_replica_index + shift) % n_brokers


def rack_alternated_broker_list(broker_racks: Mapping[int, str]) -> list[int]:
    """Brokers taken one per rack in turn (racks by name, brokers by id within a rack).

    {0: r1, 1: r3, 2: r3, 3: r2, 4: r2, 5: r1} -> [0, 3, 1, 5, 4, 2], so round-robin over the
    result visits every rack before it visits one twice (Kafka's getRackAlternatedBrokerList).
    """
    by_rack: dict[str, list[int]] = {}
    for broker, rack in broker_racks.items():
        by_rack.setdefault(rack, []).append(broker)
    columns = [sorted(by_rack[rack]) for rack in sorted(by_rack)]
    depth = max((len(c) for c in columns), default=0)
    return [c[i] for i in range(depth) for c in columns if i < len(c)]


def assign_replicas(n_partitions: int, replication_factor: int,
                    brokers: Mapping[int, str | None], *, fixed_start_index: int = -1,
                    start_partition_id: int = -1,
                    rng: RandomSource = random) -> dict[int, list[int]]:
    """Partition id -> replica broker ids, the first being the preferred leader.

    ``brokers`` maps broker id -> rack (None: no rack). With no rack anywhere the layout is
    rack-unaware over the brokers in the mapping's order (Kafka keeps its collection's order: ZK
    CreatePartitions sorts by id; pass them sorted); once any broker has a rack every broker must.
    A negative ``fixed_start_index`` draws the start index and then the follower shift at random,
    as Kafka does; ``start_partition_id`` numbers the partitions from there (added partitions).

    Raises KafkaError INVALID_PARTITIONS / INVALID_REPLICATION_FACTOR with Kafka's messages, in
    Kafka's order, and AdminOperationError when only some brokers have a rack.
    """
    if n_partitions <= 0:
        raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                         "Number of partitions must be larger than 0.")
    if replication_factor <= 0:
        raise KafkaError(ErrorCode.INVALID_REPLICATION_FACTOR,
                         "Replication factor must be larger than 0.")
    if replication_factor > len(brokers):
        raise KafkaError(ErrorCode.INVALID_REPLICATION_FACTOR,
                         f"Replication factor: {replication_factor} larger than available "
                         f"brokers: {len(brokers)}.")
    if all(rack is None for rack in brokers.values()):
        return _rack_unaware(n_partitions, replication_factor, list(brokers),
                             fixed_start_index, start_partition_id, rng)
    racks: dict[int, str] = {}
    for broker, rack in brokers.items():
        if rack is None:
            raise AdminOperationError(
                "Not all brokers have rack information for replica rack aware assignment.")
        racks[broker] = rack
    return _rack_aware(n_partitions, replication_factor, racks, fixed_start_index,
                       start_partition_id, rng)


def assign_added_partitions(existing: Mapping[int, Sequence[int]], new_total: int,
                            brokers: Mapping[int, str | None], *,
                            topic: str = "") -> dict[int, list[int]]:
    """Replicas of the partitions CreatePartitions adds (ids ``len(existing)`` up), ZK mode.

    ``brokers`` are the brokers registered in ZooKeeper. As ZkAdminManager.createPartitions and
    AdminZkClient.createNewPartitionsAssignment do: brokers sorted by id (getBrokerMetadatas, which
    refuses a partial rack map before anything else), replication factor = partition 0's replica
    count, start index = position of the first broker whose id >= partition 0's first replica
    (0 if none), used for the follower shift too, so the result is deterministic.
    """
    with_rack = sum(rack is not None for rack in brokers.values())
    if 0 < with_rack < len(brokers):
        raise AdminOperationError(
            "Not all brokers have rack information. Add --disable-rack-aware in command line"
            " to make replica assignment without rack information.")
    if not existing:
        raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                         f"The topic '{topic}' does not exist.")
    old_total = len(existing)
    if new_total < old_total:
        raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                         f"Topic currently has {old_total} partitions, which is higher than the "
                         f"requested {new_total}.")
    if new_total == old_total:
        raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                         f"Topic already has {old_total} partitions.")
    partition0 = existing.get(0)
    if partition0 is None:
        raise AdminOperationError(
            f"Unexpected existing replica assignment for topic '{topic}', partition id 0 is "
            f"missing. Assignment: {dict(existing)}")
    if not partition0:  # Kafka fails on ``.head`` here: also UNKNOWN_SERVER_ERROR
        raise AdminOperationError(f"Partition 0 of topic '{topic}' has no replicas.")
    ordered = {broker: brokers[broker] for broker in sorted(brokers)}
    start_index = next((i for i, b in enumerate(ordered) if b >= partition0[0]), 0)
    return assign_replicas(new_total - old_total, len(partition0), ordered,
                           fixed_start_index=start_index, start_partition_id=old_total)


def _first_replicas(n_partitions: int, n_brokers: int, fixed_start_index: int,
                    start_partition_id: int,
                    rng: RandomSource) -> Iterator[tuple[int, int, int]]:
    """(partition id, index of its first replica, follower shift) per partition to assign."""
    start_index = fixed_start_index if fixed_start_index >= 0 else rng.randrange(n_brokers)
    shift = fixed_start_index if fixed_start_index >= 0 else rng.randrange(n_brokers)
    first_id = max(0, start_partition_id)
    for partition in range(first_id, first_id + n_partitions):
        if partition > 0 and partition % n_brokers == 0:
            shift += 1
        yield partition, (partition + start_index) % n_brokers, shift


def _rack_unaware(n_partitions: int, replication_factor: int, broker_list: list[int],
                  fixed_start_index: int, start_partition_id: int,
                  rng: RandomSource) -> dict[int, list[int]]:
    n = len(broker_list)
    out: dict[int, list[int]] = {}
    for partition, first, shift in _first_replicas(n_partitions, n, fixed_start_index,
                                                   start_partition_id, rng):
        out[partition] = [broker_list[first]] + [
            broker_list[replica_index(first, shift, j, n)] for j in range(replication_factor - 1)
        ]
    return out


def _rack_aware(n_partitions: int, replication_factor: int, racks: dict[int, str],
                fixed_start_index: int, start_partition_id: int,
                rng: RandomSource) -> dict[int, list[int]]:
    arranged = rack_alternated_broker_list(racks)
    n = len(arranged)
    n_racks = len(set(racks.values()))
    out: dict[int, list[int]] = {}
    for partition, first, shift in _first_replicas(n_partitions, n, fixed_start_index,
                                                   start_partition_id, rng):
        leader = arranged[first]
        replicas = [leader]
        racks_used = {racks[leader]}
        k = 0
        while len(replicas) < replication_factor:
            broker = arranged[replica_index(first, shift * n_racks, k, n)]
            k += 1
            rack = racks[broker]
            # Skip a broker whose rack already has a replica while some rack has none, and a
            # broker already chosen while some broker is not (Kafka's two skip rules).
            if rack in racks_used and len(racks_used) < n_racks:
                continue
            if broker in replicas and len(replicas) < n:
                continue
            replicas.append(broker)
            racks_used.add(rack)
        out[partition] = replicas
    return out
