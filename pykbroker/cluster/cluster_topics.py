"""Topic administration in a ZooKeeper cluster: validate here, record in ZooKeeper.

As Kafka's ZK-mode brokers (ZkAdminManager), any broker validates CreateTopics, DeleteTopics
and CreatePartitions, writes the result to ZooKeeper, and lets the controller do the rest:
elect leaders, tell replicas (LeaderAndIsr) and every broker (UpdateMetadata). The request
handler then waits for the outcome to reach this broker's metadata cache. Checks and error
messages are the single broker's (:class:`TopicManager`); only where the truth lives differs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from pykbroker.cluster.metadata_cache import MetadataCache
from pykbroker.cluster.topic_manager import TopicManager
from pykbroker.cluster.topics import TopicInfo
from pykbroker.controller.assignment import assign_added_partitions, assign_replicas
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError

log = logging.getLogger("pykbroker.cluster.cluster_topics")


class ClusterTopicStore:
    """The topics this broker knows, for the checks TopicManager makes (names, counts,
    overrides): built from the metadata cache and the topic configs read from ZooKeeper."""

    def __init__(self, cache: MetadataCache, configs: Callable[[str], dict[str, str]]) -> None:
        self.cache = cache
        self._configs = configs
        self.broker_configs: dict[str, str] = {}

    @property
    def topics(self) -> dict[str, TopicInfo]:
        return {name: info for name in self.cache.topic_names()
                if (info := self.topic(name)) is not None}

    def topic(self, name: str) -> TopicInfo | None:
        meta = self.cache.topic(name)
        if meta is None:
            return None
        return TopicInfo(name, meta.topic_id,
                         {i: list(s.replicas) for i, s in meta.partitions.items()},
                         dict(self._configs(name)))

    def topic_by_id(self, topic_id: Any) -> TopicInfo | None:
        meta = self.cache.topic_by_id(topic_id)
        return None if meta is None else self.topic(meta.name)

    # The fetch paths' lookups, straight from the cache: ``topic()`` and ``topics`` build
    # TopicInfo copies (assignment, configs) that a fetch never needs.

    def topic_id_of(self, name: str) -> Any:
        meta = self.cache.topic(name)
        return None if meta is None else meta.topic_id

    def name_of(self, topic_id: Any) -> str | None:
        meta = self.cache.topic_by_id(topic_id)
        return None if meta is None else meta.name

    def set_broker_configs(self, configs: dict[str, str]) -> None:
        raise KafkaError(ErrorCode.INVALID_REQUEST, "dynamic broker configs are not yet "
                                                    "supported in a ZooKeeper cluster")


class ClusterTopicManager(TopicManager):
    """TopicManager whose changes are written to ZooKeeper by the caller (``pending``)."""

    store: ClusterTopicStore  # type: ignore[assignment]

    def __init__(self, store: ClusterTopicStore, replicas: Any, *, node_id: int,
                 racks: Callable[[], dict[int, str | None]], **kwargs: Any) -> None:
        super().__init__(store, replicas, node_id=node_id, **kwargs)  # type: ignore[arg-type]
        self.racks = racks
        # Set by the cluster member: writes a planned topic to ZooKeeper in the background.
        self.on_create: Callable[[TopicInfo], None] = lambda topic: None

    @property
    def live_brokers(self) -> list[int]:
        return sorted(self.racks())

    def start(self) -> None:
        """Nothing to host yet: the controller's LeaderAndIsr says what this broker hosts."""

    def get(self, name: str) -> TopicInfo | None:
        return self.store.topic(name)

    def _assignment(self, first: int, count: int, replication_factor: int,
                    manual: Mapping[int, list[int]] | None) -> dict[int, list[int]]:
        if manual:
            return super()._assignment(first, count, replication_factor, manual)
        racks = {b: r for b, r in sorted(self.racks().items())}
        if first == 0:
            return assign_replicas(count, replication_factor, racks)
        raise AssertionError("added partitions go through plan_partitions")

    def plan_topic(self, name: str, num_partitions: int = -1, replication_factor: int = -1, *,
                   assignment: Mapping[int, list[int]] | None = None,
                   configs: Mapping[str, str | None] | None = None) -> TopicInfo:
        """Validate a new topic and choose its replicas; nothing is written."""
        return super().create_topic(name, num_partitions, replication_factor,
                                    assignment=assignment, configs=configs, validate_only=True)

    def create_topic(self, name: str, num_partitions: int = -1, replication_factor: int = -1,
                     *, assignment: Mapping[int, list[int]] | None = None,
                     configs: Mapping[str, str | None] | None = None,
                     validate_only: bool = False) -> TopicInfo:
        topic = self.plan_topic(name, num_partitions, replication_factor,
                                assignment=assignment, configs=configs)
        if not validate_only:
            # Callers that cannot wait (auto-creation, coordinators) learn the topic exists
            # once the controller has elected its leaders, as Kafka's clients retry.
            self.on_create(topic)
            raise KafkaError(ErrorCode.LEADER_NOT_AVAILABLE,
                             f"Topic {name} is being created")
        return topic

    def delete_topic(self, name: str) -> TopicInfo:
        if not self.delete_enabled():
            raise KafkaError(ErrorCode.TOPIC_DELETION_DISABLED)
        topic = self.get(name)
        if topic is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        return topic

    def plan_partitions(self, name: str, total: int, assignment: list[list[int]] | None
                        ) -> tuple[TopicInfo, dict[int, list[int]]]:
        """Validate CreatePartitions; returns the topic and the new partitions' replicas."""
        topic = self.get(name)
        if topic is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                             f"The topic '{name}' does not exist.")
        super().create_partitions(name, total, assignment, validate_only=True) \
            if assignment is not None else self._check_count(topic, total)
        if assignment is not None:
            current = topic.partition_count
            new = {current + i: list(r) for i, r in enumerate(assignment)}
        else:
            racks = {b: r for b, r in sorted(self.racks().items())}
            new = {p: r for p, r in assign_added_partitions(topic.assignment, total, racks,
                                                            topic=name).items()
                   if p not in topic.assignment}
        return topic, new

    def _check_count(self, topic: TopicInfo, total: int) -> None:
        current = topic.partition_count
        if total < current:
            raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                             f"Topic currently has {current} partitions, which is higher than "
                             f"the requested {total}.")
        if total == current:
            raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                             f"Topic already has {current} partitions.")
