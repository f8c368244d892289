"""What this broker tells clients about the cluster: live brokers, controller, partition states.

Handlers read the cluster only through :class:`MetadataView`, so a single broker and a
member of a ZooKeeper cluster answer Metadata, DescribeCluster and FindCoordinator with the
same code:

* :class:`LocalMetadataView` (one broker, the default): this broker is every partition's
  leader and the controller; computed from the topics it hosts.
* :class:`MetadataCache` (a cluster): replaced piece by piece by the controller's
  UpdateMetadata requests, as Kafka's ZK-mode ``MetadataCache``, so every broker gives the
  same answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Protocol

import trio

from pykbroker.cluster.topics import TopicInfo

# UpdateMetadata's leader value for a partition whose topic is being deleted (Kafka's
# LeaderAndIsr.LeaderDuringDelete).
LEADER_DURING_DELETE = -2
NO_LEADER = -1


# Plain slotted classes rather than dataclasses: this module is on the broker's start-up path,
# and building a dataclass costs about as much as importing a small module.
class Endpoint:
    __slots__ = ("listener", "host", "port", "security_protocol")

    def __init__(self, listener: str, host: str, port: int,
                 security_protocol: str = "PLAINTEXT") -> None:
        self.listener, self.host, self.port = listener, host, port
        self.security_protocol = security_protocol

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Endpoint) and (
            self.listener, self.host, self.port, self.security_protocol) == (
            other.listener, other.host, other.port, other.security_protocol)

    def __hash__(self) -> int:
        return hash((self.listener, self.host, self.port))

    def __repr__(self) -> str:
        return f"{self.listener}://{self.host}:{self.port} ({self.security_protocol})"


class LiveBroker:
    """A registered broker as the cluster advertises it."""

    __slots__ = ("id", "endpoints", "rack")

    def __init__(self, id: int, endpoints: tuple[Endpoint, ...], rack: str | None = None
                 ) -> None:
        self.id, self.endpoints, self.rack = id, endpoints, rack

    def endpoint(self, listener: str) -> Endpoint | None:
        for ep in self.endpoints:
            if ep.listener == listener:
                return ep
        return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LiveBroker) and (self.id, self.endpoints, self.rack) == (
            other.id, other.endpoints, other.rack)

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"LiveBroker({self.id}, {list(self.endpoints)}, rack={self.rack})"


class PartitionState:
    """Leader, epochs and replica sets of one partition (UpdateMetadata's partition state);
    ``partition_epoch`` is the state znode's version in ZooKeeper mode."""

    __slots__ = ("leader", "leader_epoch", "isr", "replicas", "offline_replicas",
                 "partition_epoch")

    def __init__(self, leader: int, leader_epoch: int, isr: list[int], replicas: list[int],
                 offline_replicas: list[int] | None = None, partition_epoch: int = 0) -> None:
        self.leader, self.leader_epoch = leader, leader_epoch
        self.isr, self.replicas = isr, replicas
        self.offline_replicas = offline_replicas if offline_replicas is not None else []
        self.partition_epoch = partition_epoch

    def __repr__(self) -> str:
        return (f"PartitionState(leader={self.leader}, epoch={self.leader_epoch}, "
                f"isr={self.isr}, replicas={self.replicas})")


class TopicMetadata:
    __slots__ = ("name", "topic_id", "partitions")

    def __init__(self, name: str, topic_id: uuid.UUID,
                 partitions: dict[int, PartitionState]) -> None:
        self.name, self.topic_id, self.partitions = name, topic_id, partitions


class MetadataView(Protocol):
    """The cluster as handlers see it."""

    @property
    def controller_id(self) -> int: ...

    def live_brokers(self) -> list[LiveBroker]: ...

    def topic_names(self) -> list[str]: ...

    def topic(self, name: str) -> TopicMetadata | None: ...

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicMetadata | None: ...


class LocalMetadataView:
    """One broker: itself the controller and every partition's leader, ISR = replicas."""

    def __init__(self, node_id: int, rack: str | None,
                 endpoints: Callable[[], Iterable[Endpoint]],
                 topics: Callable[[], dict[str, TopicInfo]],
                 leader_epoch: Callable[[str, int], int]) -> None:
        self.node_id = node_id
        self.rack = rack
        self._endpoints = endpoints
        self._topics = topics
        self._leader_epoch = leader_epoch

    @property
    def controller_id(self) -> int:
        return self.node_id

    def live_brokers(self) -> list[LiveBroker]:
        return [LiveBroker(self.node_id, tuple(self._endpoints()), self.rack)]

    def topic_names(self) -> list[str]:
        return sorted(self._topics())

    def _metadata(self, info: TopicInfo) -> TopicMetadata:
        parts = {
            index: PartitionState(self.node_id, self._leader_epoch(info.name, index),
                                  list(replicas), list(replicas))
            for index, replicas in sorted(info.assignment.items())
        }
        return TopicMetadata(info.name, info.topic_id, parts)

    def topic(self, name: str) -> TopicMetadata | None:
        info = self._topics().get(name)
        return None if info is None else self._metadata(info)

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicMetadata | None:
        for info in self._topics().values():
            if info.topic_id == topic_id:
                return self._metadata(info)
        return None


class MetadataCache:
    """The controller's view, as last sent to this broker by UpdateMetadata."""

    def __init__(self) -> None:
        self._controller_id = NO_LEADER
        self.controller_epoch = -1
        self._brokers: dict[int, LiveBroker] = {}
        self._topics: dict[str, TopicMetadata] = {}
        self._changed = trio.Event()

    @property
    def controller_id(self) -> int:
        return self._controller_id

    def live_brokers(self) -> list[LiveBroker]:
        return [self._brokers[b] for b in sorted(self._brokers)]

    def broker(self, broker_id: int) -> LiveBroker | None:
        return self._brokers.get(broker_id)

    def topic_names(self) -> list[str]:
        return sorted(self._topics)

    def topic(self, name: str) -> TopicMetadata | None:
        return self._topics.get(name)

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicMetadata | None:
        for meta in self._topics.values():
            if meta.topic_id == topic_id:
                return meta
        return None

    def update(self, controller_id: int, controller_epoch: int, brokers: Iterable[LiveBroker],
               states: Iterable[tuple[str, uuid.UUID, int, PartitionState]]) -> list[str]:
        """Apply one UpdateMetadata: the broker list is replaced, partition states are
        upserted, a LEADER_DURING_DELETE state removes its partition. Returns the topics
        that disappeared."""
        self._controller_id = controller_id
        self.controller_epoch = controller_epoch
        self._brokers = {b.id: b for b in brokers}
        touched: set[str] = set()
        for name, topic_id, index, state in states:
            meta = self._topics.get(name)
            if state.leader == LEADER_DURING_DELETE:
                if meta is not None:
                    meta.partitions.pop(index, None)
                    touched.add(name)
                continue
            if meta is None or (topic_id.int and meta.topic_id != topic_id):
                meta = self._topics[name] = TopicMetadata(name, topic_id, {})
            meta.partitions[index] = state
        gone = [n for n in touched if not self._topics[n].partitions]
        for name in gone:
            del self._topics[name]
        self._changed.set()
        self._changed = trio.Event()
        return gone

    def seed(self, controller_id: int, brokers: Iterable[LiveBroker]) -> None:
        """Before the first UpdateMetadata only (ignored after it): the controller and live
        brokers as read from ZooKeeper, so that a just (re)started broker does not tell
        clients there is no controller and no broker."""
        if self.controller_epoch < 0:
            self._controller_id = controller_id
            self._brokers = {b.id: b for b in brokers}

    async def wait_for_change(self) -> None:
        """Return after the next update (CreateTopics waits for its leaders this way)."""
        await self._changed.wait()
