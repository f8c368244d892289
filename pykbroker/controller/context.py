"""What the active controller knows: live brokers, topics, partition states (ControllerContext).

Loaded from ZooKeeper when a broker becomes controller and kept in step with its writes, so
decisions are made on one consistent, in-memory picture (Kafka's ControllerContext).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from pykbroker.cluster.metadata_cache import LiveBroker
from pykbroker.controller.leader_election import NO_LEADER, LeaderAndIsr
from pykbroker.controller.requests import PartitionInfo

TopicPartition = tuple[str, int]


@dataclass(slots=True)
class PartitionRecord:
    replicas: tuple[int, ...]
    state: LeaderAndIsr | None = None  # None: a new partition not yet elected
    controller_epoch: int = -1  # epoch of the controller that wrote ``state``
    # An ongoing reassignment (KIP-455): ``replicas`` is then target + original.
    adding: tuple[int, ...] = ()
    removing: tuple[int, ...] = ()

    @property
    def target(self) -> tuple[int, ...]:
        return tuple(r for r in self.replicas if r not in self.removing)

    @property
    def original(self) -> tuple[int, ...]:
        return tuple(r for r in self.replicas if r not in self.adding)

    @property
    def reassigning(self) -> bool:
        return bool(self.adding or self.removing)


@dataclass(slots=True)
class TopicRecord:
    topic_id: uuid.UUID
    partitions: dict[int, PartitionRecord] = field(default_factory=dict)
    unclean_override: bool | None = None  # the topic's unclean.leader.election.enable


@dataclass(slots=True)
class ControllerContext:
    epoch: int = -1
    live: dict[int, LiveBroker] = field(default_factory=dict)
    broker_epochs: dict[int, int] = field(default_factory=dict)
    shutting_down: set[int] = field(default_factory=set)
    topics: dict[str, TopicRecord] = field(default_factory=dict)

    def live_or_shutting_down(self) -> set[int]:
        return set(self.live)

    def online(self) -> set[int]:
        """Brokers that may lead or stay in an ISR: live and not shutting down."""
        return set(self.live) - self.shutting_down

    def partitions(self) -> Iterator[tuple[str, int, TopicRecord, PartitionRecord]]:
        for name in sorted(self.topics):
            topic = self.topics[name]
            for index in sorted(topic.partitions):
                yield name, index, topic, topic.partitions[index]

    def info(self, name: str, index: int) -> PartitionInfo | None:
        topic = self.topics.get(name)
        record = topic.partitions.get(index) if topic is not None else None
        if topic is None or record is None or record.state is None:
            return None
        return PartitionInfo(name, index, topic.topic_id, record.replicas, record.state,
                             record.controller_epoch)

    def all_infos(self) -> list[PartitionInfo]:
        out = []
        for name, index, _, _ in self.partitions():
            info = self.info(name, index)
            if info is not None:
                out.append(info)
        return out

    def offline_partitions(self) -> list[TopicPartition]:
        """Partitions with no live leader (new ones included)."""
        online = self.online()
        return [(name, index) for name, index, _, record in self.partitions()
                if record.state is None or record.state.leader == NO_LEADER
                or record.state.leader not in online]
