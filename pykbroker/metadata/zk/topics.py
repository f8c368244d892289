"""``/brokers/topics/<topic>`` and its ``partitions/<p>/state``: assignment and leadership.

The topic znode holds the replica assignment (written at creation and by reassignment); each
partition's ``state`` znode holds leader, leader epoch and ISR, written by the controller
(ISR changes too: leaders ask for them with AlterPartition). The state znode's ZooKeeper
version is the partition epoch: every update is a set conditional on it
(``KafkaZkClient.updateLeaderAndIsr``), so a stale writer fails with BADVERSION.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from pykbroker.metadata.zk.codec import (
    JsonObject,
    ZNodeDecodeError,
    dump_json,
    kafka_uuid_from_str,
    kafka_uuid_to_str,
    parse_java_int,
)

__all__ = [
    "LEADER_RECOVERY_RECOVERED",
    "LEADER_RECOVERY_RECOVERING",
    "TOPICS_PATH",
    "PartitionState",
    "ReplicaAssignment",
    "TopicAssignment",
    "partition_path",
    "partitions_path",
]

TOPICS_PATH: Final = "/brokers/topics"
# org.apache.kafka.metadata.LeaderRecoveryState values (KIP-704).
LEADER_RECOVERY_RECOVERED: Final = 0
LEADER_RECOVERY_RECOVERING: Final = 1


def partitions_path(topic: str) -> str:
    return f"{TOPICS_PATH}/{topic}/partitions"


def partition_path(topic: str, partition: int) -> str:
    return f"{partitions_path(topic)}/{partition}"


@dataclass(frozen=True)
class ReplicaAssignment:
    """A partition's replicas, with those being added and removed by a reassignment (KIP-455)."""

    replicas: tuple[int, ...]
    adding_replicas: tuple[int, ...] = ()
    removing_replicas: tuple[int, ...] = ()


@dataclass(frozen=True)
class TopicAssignment:
    """Version 3: ``{"partitions":{"0":[1,2]},"topic_id":"..","adding_replicas":{},
    "removing_replicas":{},"version":3}``.

    ``topic_id`` is absent in znodes written before 2.8 (the controller then adds one);
    ``adding_replicas``/``removing_replicas`` list only partitions being reassigned.
    """

    partitions: Mapping[int, ReplicaAssignment]
    topic_id: uuid.UUID | None = None

    @staticmethod
    def path(topic: str) -> str:
        return f"{TOPICS_PATH}/{topic}"

    def to_json(self) -> bytes:
        """``TopicZNode.encode``; keys in the order Kafka's HashMap writes them."""
        ordered = sorted(self.partitions.items())
        adding = [(p, a) for p, a in ordered if a.adding_replicas]
        removing = [(p, a) for p, a in ordered if a.removing_replicas]
        pairs: list[tuple[str, object]] = [
            ("partitions", {str(p): list(a.replicas) for p, a in ordered}),
        ]
        if self.topic_id is not None:
            pairs.append(("topic_id", kafka_uuid_to_str(self.topic_id)))
        pairs += [
            ("adding_replicas", {str(p): list(a.adding_replicas) for p, a in adding}),
            ("removing_replicas", {str(p): list(a.removing_replicas) for p, a in removing}),
            ("version", 3),
        ]
        return dump_json(pairs)

    @classmethod
    def from_json(cls, data: bytes) -> TopicAssignment:
        """``TopicZNode.decode``: every key is optional, as in versions 1 and 2."""
        obj = JsonObject.parse(data, "topic znode")
        topic_id_text = obj.opt_str("topic_id")
        topic_id = None
        if topic_id_text is not None:
            topic_id = kafka_uuid_from_str(topic_id_text, "topic znode topic_id")
        adding = obj.opt_object("adding_replicas")
        removing = obj.opt_object("removing_replicas")
        partitions: dict[int, ReplicaAssignment] = {}
        replicas_by_partition = obj.opt_object("partitions")
        if replicas_by_partition is not None:
            for key, _ in replicas_by_partition.items():
                try:
                    partition = parse_java_int(key, "partition")
                except ZNodeDecodeError as exc:
                    raise obj.error(str(exc)) from None
                partitions[partition] = ReplicaAssignment(
                    replicas_by_partition.int_list(key),
                    _replicas(adding, key),
                    _replicas(removing, key),
                )
        return cls(partitions, topic_id)


def _replicas(by_partition: JsonObject | None, key: str) -> tuple[int, ...]:
    if by_partition is None or not by_partition.has(key):
        return ()
    return by_partition.int_list(key)


@dataclass(frozen=True)
class PartitionState:
    """``{"controller_epoch":1,"leader":1,"version":1,"leader_epoch":0,"isr":[1,2]}``.

    ``leader_recovery_state`` is written only when not RECOVERED (an unclean election's
    leader is RECOVERING until it has truncated); absent reads as RECOVERED. The znode's
    version is the partition epoch and is not part of the JSON.
    """

    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    controller_epoch: int
    leader_recovery_state: int = LEADER_RECOVERY_RECOVERED

    def __post_init__(self) -> None:
        if self.leader_recovery_state not in (
            LEADER_RECOVERY_RECOVERED,
            LEADER_RECOVERY_RECOVERING,
        ):
            raise ValueError(f"unknown leader recovery state {self.leader_recovery_state}")

    @staticmethod
    def path(topic: str, partition: int) -> str:
        return f"{partition_path(topic, partition)}/state"

    def to_json(self) -> bytes:
        """``TopicPartitionStateZNode.encode``; keys in the order Kafka's HashMap writes them."""
        pairs: list[tuple[str, object]] = [
            ("controller_epoch", self.controller_epoch),
            ("leader", self.leader),
            ("version", 1),
        ]
        if self.leader_recovery_state != LEADER_RECOVERY_RECOVERED:
            pairs.append(("leader_recovery_state", self.leader_recovery_state))
        pairs += [("leader_epoch", self.leader_epoch), ("isr", list(self.isr))]
        return dump_json(pairs)

    @classmethod
    def from_json(cls, data: bytes) -> PartitionState:
        obj = JsonObject.parse(data, "partition state znode")
        recovery = obj.opt_int("leader_recovery_state")
        try:
            return cls(
                leader=obj.get_int("leader"),
                leader_epoch=obj.get_int("leader_epoch"),
                isr=obj.int_list("isr"),
                controller_epoch=obj.get_int("controller_epoch"),
                leader_recovery_state=LEADER_RECOVERY_RECOVERED if recovery is None else recovery,
            )
        except ZNodeDecodeError:
            raise
        except ValueError as exc:
            raise obj.error(str(exc)) from None
