"""Partition leader election and the leader/ISR state it rewrites, as Kafka 3.9's ZK controller.

Pure functions over replica ids. Sources (Kafka 3.9): the choice of leader is
``core/src/main/scala/kafka/controller/PartitionStateMachine.scala``
(PartitionLeaderElectionAlgorithms, initializeLeaderAndIsrForPartitions); the new ISR and epochs
are ``core/src/main/scala/kafka/controller/Election.scala`` (leaderForOffline, leaderForReassign,
leaderForPreferredReplica, leaderForControlledShutdown),
``core/src/main/scala/kafka/api/LeaderAndIsr.scala``,
``core/src/main/scala/kafka/controller/ReplicaStateMachine.scala`` (doRemoveReplicasFromIsr) and
``core/src/main/scala/kafka/controller/KafkaController.scala`` (tryProcessAlterPartition).

Every election walks the replica list in order, so the earliest eligible replica wins. ``live``
means what Kafka's ``isReplicaOnline`` means: a registered broker that is not shutting down and
whose log directory for the partition is online. When an election finds no leader, nothing is
written: the functions then return the ISR unchanged.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace

__all__ = [
    "EPOCH_DURING_DELETE",
    "INITIAL_LEADER_EPOCH",
    "INITIAL_PARTITION_EPOCH",
    "LEADER_DURING_DELETE",
    "NO_EPOCH",
    "NO_LEADER",
    "RECOVERED",
    "RECOVERING",
    "LeaderAndIsr",
    "controlled_shutdown",
    "initialize_leader_and_isr",
    "offline",
    "preferred",
    "reassign",
]

INITIAL_LEADER_EPOCH = 0
INITIAL_PARTITION_EPOCH = 0
NO_LEADER = -1
NO_EPOCH = -1
LEADER_DURING_DELETE = -2
EPOCH_DURING_DELETE = -2

# org.apache.kafka.metadata.LeaderRecoveryState values.
RECOVERED = 0
RECOVERING = 1


@dataclass(frozen=True, slots=True)
class LeaderAndIsr:
    """A partition's state znode content: leader, leader epoch, ISR, recovery state.

    ``partition_epoch`` is, in ZK mode, the ZooKeeper version of
    ``/brokers/topics/<t>/partitions/<p>/state``: a new state keeps the version it was derived
    from, which is the expected version of the conditional write, and the write's new version
    (old + 1) is put in with ``with_partition_epoch`` (KafkaZkClient.updateLeaderAndIsr).

    When the leader epoch moves (LeaderAndIsr.scala, ReplicaStateMachine.scala,
    KafkaController.scala):

    * every controller-made change bumps it by one, ISR-only changes included: elections
      (``newLeader``/``newLeaderAndIsr``/``newRecoveringLeaderAndIsr``) and taking an offline
      or shutting-down follower out of the ISR (doRemoveReplicasFromIsr calls
      ``newLeaderAndIsr(sameLeader, smallerIsr)``): ``new_leader``, ``remove_replica_from_isr``;
    * an ISR change the leader asks for with AlterPartition keeps the leader epoch (the request
      carries the current one and the controller writes it back as is); only the partition
      epoch (ZK version) moves: ``new_isr``.
    """

    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    partition_epoch: int
    leader_recovery_state: int = RECOVERED

    @classmethod
    def initial(cls, leader: int, isr: Iterable[int]) -> LeaderAndIsr:
        """Epochs 0, recovered: Kafka's ``LeaderAndIsr(leader, isr)``."""
        return cls(leader, INITIAL_LEADER_EPOCH, tuple(isr), INITIAL_PARTITION_EPOCH)

    @property
    def zk_version(self) -> int:
        """The ZK-mode name of ``partition_epoch``."""
        return self.partition_epoch

    @property
    def leader_opt(self) -> int | None:
        return None if self.leader == NO_LEADER else self.leader

    def new_leader(self, leader: int, isr: Iterable[int] | None = None, *,
                   recovering: bool = False) -> LeaderAndIsr:
        """Controller change: ``leader_epoch + 1``; the ISR is kept unless given.

        ``recovering`` marks an unclean election (Kafka's newRecoveringLeaderAndIsr); otherwise
        the recovery state is kept, as newLeader/newLeaderAndIsr do.
        """
        return replace(self, leader=leader, leader_epoch=self.leader_epoch + 1,
                       isr=self.isr if isr is None else tuple(isr),
                       leader_recovery_state=RECOVERING if recovering
                       else self.leader_recovery_state)

    def new_epoch(self) -> LeaderAndIsr:
        """Same leader and ISR, ``leader_epoch + 1`` (Kafka's newEpoch)."""
        return self.new_leader(self.leader)

    def new_isr(self, isr: Iterable[int],
                leader_recovery_state: int | None = None) -> LeaderAndIsr:
        """The state an accepted AlterPartition writes: new ISR (and recovery state, if the
        leader sent one), same leader and leader epoch."""
        return replace(self, isr=tuple(isr),
                       leader_recovery_state=self.leader_recovery_state
                       if leader_recovery_state is None else leader_recovery_state)

    def remove_replica_from_isr(self, replica_id: int) -> LeaderAndIsr:
        """Controller taking an offline replica out of the ISR (doRemoveReplicasFromIsr).

        Unchanged if the replica is not in the ISR (nothing is written). Otherwise the leader
        becomes NO_LEADER if it was that replica, the ISR loses it unless it is the last member
        (an ISR is never emptied: its last member is the one a clean election waits for), and
        the leader epoch goes up by one.
        """
        if replica_id not in self.isr:
            return self
        leader = NO_LEADER if self.leader == replica_id else self.leader
        isr = self.isr if len(self.isr) == 1 else tuple(r for r in self.isr if r != replica_id)
        return self.new_leader(leader, isr)

    def with_partition_epoch(self, partition_epoch: int) -> LeaderAndIsr:
        """The state as stored by a write that produced ZK version ``partition_epoch``."""
        return replace(self, partition_epoch=partition_epoch)


def initialize_leader_and_isr(assignment: Sequence[int],
                              live: Collection[int]) -> LeaderAndIsr | None:
    """A new partition's first state: ISR = its live replicas in assignment order, the first
    of them leading, epochs 0; None if no replica is live (the partition stays New)."""
    live_replicas = [r for r in assignment if r in live]
    if not live_replicas:
        return None
    return LeaderAndIsr.initial(live_replicas[0], live_replicas)


def offline(assignment: Sequence[int], isr: Sequence[int], live: Collection[int],
            unclean_enabled: bool) -> tuple[int | None, tuple[int, ...], bool]:
    """Leader for a new or offline partition: ``(leader, new ISR, unclean)``.

    The first assigned replica that is live and in the ISR; the new ISR is the old one without
    its offline members. If none and unclean election is enabled (the topic's
    ``unclean.leader.election.enable``, or an unclean ElectLeaders), the first live assigned
    replica, with ISR ``[leader]`` and ``unclean`` True: Kafka then marks the partition
    RECOVERING (``LeaderAndIsr.new_leader(..., recovering=True)``).
    """
    leader = next((r for r in assignment if r in live and r in isr), None)
    if leader is not None:
        return leader, tuple(r for r in isr if r in live), False
    if unclean_enabled:
        leader = next((r for r in assignment if r in live), None)
        if leader is not None:
            return leader, (leader,), True
    return None, tuple(isr), False


def reassign(target_replicas: Sequence[int], isr: Sequence[int],
             live: Collection[int]) -> tuple[int | None, tuple[int, ...]]:
    """Leader during a reassignment: the first target replica that is live and in the ISR.
    The ISR is kept (Kafka's newLeader)."""
    leader = next((r for r in target_replicas if r in live and r in isr), None)
    return leader, tuple(isr)


def preferred(assignment: Sequence[int], isr: Sequence[int],
              live: Collection[int]) -> tuple[int | None, tuple[int, ...]]:
    """Preferred-leader election: the first assigned replica, only if it is live and in the
    ISR; no fallback to another replica. The ISR is kept."""
    leader = assignment[0] if assignment and assignment[0] in live and assignment[0] in isr \
        else None
    return leader, tuple(isr)


def controlled_shutdown(assignment: Sequence[int], isr: Sequence[int], live: Collection[int],
                        shutting_down: Collection[int]) -> tuple[int | None, tuple[int, ...]]:
    """New leader for a partition led by a broker that is shutting down: ``(leader, new ISR)``.

    The first assigned replica that is live, in the ISR and not shutting down (``live`` may
    include the shutting-down brokers, as Kafka's ``includeShuttingDownBrokers = true`` does).
    The new ISR is the old one without every shutting-down broker.
    """
    leader = next((r for r in assignment
                   if r in live and r in isr and r not in shutting_down), None)
    if leader is None:
        return None, tuple(isr)
    return leader, tuple(r for r in isr if r not in shutting_down)
