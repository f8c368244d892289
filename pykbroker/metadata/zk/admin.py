"""``/admin``: requests that tools leave in ZooKeeper for the controller to act on.

``delete_topics/<topic>`` marks a topic for deletion (no data); ``reassign_partitions`` is the
pre-2.4 way to start a reassignment (KIP-455 replaced it with an API, but the 3.9 controller
still reads it); ``preferred_replica_election`` asks for the preferred leaders. The
controller deletes each once it has acted (ZkData ``DeleteTopicsTopicZNode``,
``ReassignPartitionsZNode``, ``PreferredReplicaElectionZNode``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from pykbroker.metadata.zk.codec import JsonObject, dump_json

__all__ = [
    "ADMIN_PATH",
    "DELETE_TOPICS_PATH",
    "DeleteTopic",
    "PartitionReassignment",
    "PreferredReplicaElection",
    "TopicPartition",
]

ADMIN_PATH: Final = "/admin"
DELETE_TOPICS_PATH: Final = "/admin/delete_topics"

TopicPartition = tuple[str, int]


def _topic_partitions(obj: JsonObject) -> tuple[TopicPartition, ...]:
    return tuple((p.get_str("topic"), p.get_int("partition")) for p in obj.objects("partitions"))


class DeleteTopic:
    """``/admin/delete_topics/<topic>``: its existence is the request; Kafka writes no data."""

    DATA: Final = b""

    @staticmethod
    def path(topic: str) -> str:
        return f"{DELETE_TOPICS_PATH}/{topic}"


@dataclass(frozen=True)
class PartitionReassignment:
    """``{"version":1,"partitions":[{"topic":"foo","partition":0,"replicas":[1,2]}]}``."""

    partitions: Mapping[TopicPartition, tuple[int, ...]]

    @staticmethod
    def path() -> str:
        return f"{ADMIN_PATH}/reassign_partitions"

    def to_json(self) -> bytes:
        entries = [
            {"topic": topic, "partition": partition, "replicas": list(replicas)}
            for (topic, partition), replicas in self.partitions.items()
        ]
        return dump_json([("version", 1), ("partitions", entries)])

    @classmethod
    def from_json(cls, data: bytes) -> PartitionReassignment:
        obj = JsonObject.parse(data, "partition reassignment znode")
        return cls(
            {
                (p.get_str("topic"), p.get_int("partition")): p.int_list("replicas")
                for p in obj.objects("partitions")
            }
        )


@dataclass(frozen=True)
class PreferredReplicaElection:
    """``{"version":1,"partitions":[{"topic":"topic-a","partition":0}]}``."""

    partitions: tuple[TopicPartition, ...]

    @staticmethod
    def path() -> str:
        return f"{ADMIN_PATH}/preferred_replica_election"

    def to_json(self) -> bytes:
        entries = [{"topic": topic, "partition": partition} for topic, partition in self.partitions]
        return dump_json([("version", 1), ("partitions", entries)])

    @classmethod
    def from_json(cls, data: bytes) -> PreferredReplicaElection:
        obj = JsonObject.parse(data, "preferred replica election znode")
        return cls(_topic_partitions(obj))
