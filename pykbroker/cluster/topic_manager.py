"""Creating, deleting and growing topics on one broker, with Kafka's checks and errors.

This is the part of Kafka's controller that a single node needs: it validates the request,
records the topic in the metadata store, then hosts the partitions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from pykbroker.cluster.metadata_store import LocalMetadataStore
from pykbroker.cluster.replica_manager import ReplicaManager
from pykbroker.cluster.topics import (
    TopicInfo,
    collision_key,
    new_topic_id,
    validate_topic_name,
)
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError

log = logging.getLogger("pykbroker.cluster.topic_manager")

MAX_PARTITIONS = 100_000


class TopicManager:
    def __init__(
        self,
        store: LocalMetadataStore,
        replicas: ReplicaManager,
        *,
        node_id: int,
        default_partitions: Callable[[], int],
        default_replication_factor: Callable[[], int],
        validate_configs: Callable[[Mapping[str, str | None]], Any],
        delete_enabled: Callable[[], bool],
    ) -> None:
        self.store = store
        self.replicas = replicas
        self.node_id = node_id
        self.default_partitions = default_partitions
        self.default_replication_factor = default_replication_factor
        self.validate_configs = validate_configs
        self.delete_enabled = delete_enabled

    @property
    def live_brokers(self) -> list[int]:
        return [self.node_id]

    def start(self) -> None:
        """Host every known topic's partitions (at broker start)."""
        for topic in self.store.topics.values():
            self.replicas.host(topic, sorted(topic.assignment))

    def get(self, name: str) -> TopicInfo | None:
        return self.store.topics.get(name)

    def _check_new_name(self, name: str) -> None:
        validate_topic_name(name)
        if name in self.store.topics:
            raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
        key = collision_key(name)
        for other in self.store.topics:
            if collision_key(other) == key:
                raise KafkaError(
                    ErrorCode.INVALID_TOPIC_EXCEPTION,
                    f"Topic '{name}' collides with existing topic: {other}",
                )

    def _assignment(
        self,
        first: int,
        count: int,
        replication_factor: int,
        manual: Mapping[int, list[int]] | None,
    ) -> dict[int, list[int]]:
        brokers = self.live_brokers
        if manual:
            out: dict[int, list[int]] = {}
            for p, replicas in manual.items():
                if not replicas or len(set(replicas)) != len(replicas):
                    raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                     f"Duplicate or empty replica assignment for partition {p}")
                unknown = [b for b in replicas if b not in brokers]
                if unknown:
                    raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                     f"Unknown broker(s) {unknown} in replica assignment")
                out[p] = list(replicas)
            if sorted(out) != list(range(first, first + len(out))):
                raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                 f"partitions should be a consecutive {first}-based integer "
                                 "sequence")
            return out
        if replication_factor > len(brokers):
            raise KafkaError(
                ErrorCode.INVALID_REPLICATION_FACTOR,
                f"Replication factor: {replication_factor} larger than available brokers: "
                f"{len(brokers)}.",
            )
        return {
            p: [brokers[(p + i) % len(brokers)] for i in range(replication_factor)]
            for p in range(first, first + count)
        }

    def create_topic(
        self,
        name: str,
        num_partitions: int = -1,
        replication_factor: int = -1,
        *,
        assignment: Mapping[int, list[int]] | None = None,
        configs: Mapping[str, str | None] | None = None,
        validate_only: bool = False,
    ) -> TopicInfo:
        self._check_new_name(name)
        if assignment:
            if num_partitions != -1 or replication_factor != -1:
                raise KafkaError(
                    ErrorCode.INVALID_REQUEST,
                    "Both numPartitions or replicationFactor and replicasAssignments were set. "
                    "Both cannot be used at the same time.",
                )
        else:
            if num_partitions == -1:
                num_partitions = self.default_partitions()
            if replication_factor == -1:
                replication_factor = self.default_replication_factor()
            if num_partitions <= 0 or num_partitions > MAX_PARTITIONS:
                raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                                 "Number of partitions must be larger than 0.")
            if replication_factor <= 0:
                raise KafkaError(ErrorCode.INVALID_REPLICATION_FACTOR,
                                 "Replication factor must be larger than 0.")
        overrides = {k: v for k, v in (configs or {}).items()}
        try:
            self.validate_configs(overrides)
        except KafkaError:
            raise
        except Exception as exc:  # ConfigError carries Kafka's INVALID_CONFIG meaning
            raise KafkaError(ErrorCode.INVALID_CONFIG, str(exc)) from exc
        parts = self._assignment(0, num_partitions, replication_factor, assignment)
        topic = TopicInfo(
            name=name,
            topic_id=new_topic_id(),
            assignment=parts,
            configs={k: v for k, v in overrides.items() if v is not None},
        )
        if validate_only:
            return topic
        self.store.put_topic(topic)
        self.replicas.host(topic, sorted(parts))
        log.info("created topic %s with %d partitions (id %s)", name, len(parts),
                 topic.topic_id)
        return topic

    def delete_topic(self, name: str) -> TopicInfo:
        if not self.delete_enabled():
            raise KafkaError(ErrorCode.TOPIC_DELETION_DISABLED)
        topic = self.store.topics.get(name)
        if topic is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        self.store.delete_topic(name)
        self.replicas.drop_topic(name)
        log.info("deleted topic %s", name)
        return topic

    def create_partitions(
        self,
        name: str,
        total: int,
        assignment: list[list[int]] | None = None,
        *,
        validate_only: bool = False,
    ) -> TopicInfo:
        topic = self.store.topics.get(name)
        if topic is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                             f"The topic '{name}' does not exist.")
        current = topic.partition_count
        if total < current:
            raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                             f"Topic currently has {current} partitions, which is higher than "
                             f"the requested {total}.")
        if total == current:
            raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                             f"Topic already has {current} partitions.")
        if total > MAX_PARTITIONS:
            raise KafkaError(ErrorCode.INVALID_PARTITIONS, "Too many partitions requested.")
        rf = len(next(iter(topic.assignment.values())))
        manual = None
        if assignment is not None:
            if len(assignment) != total - current:
                raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                 f"Increasing the number of partitions by {total - current} "
                                 f"but {len(assignment)} assignments provided.")
            manual = {current + i: list(r) for i, r in enumerate(assignment)}
        new = self._assignment(current, total - current, rf, manual)
        if validate_only:
            return topic
        topic.assignment.update(new)
        self.store.put_topic(topic)
        self.replicas.host(topic, sorted(new))
        return topic

    def set_topic_configs(self, name: str, configs: dict[str, str], *,
                          validate_only: bool = False) -> None:
        topic = self.store.topics.get(name)
        if topic is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                             f"The topic '{name}' does not exist.")
        try:
            self.validate_configs(configs)
        except KafkaError:
            raise
        except Exception as exc:
            raise KafkaError(ErrorCode.INVALID_CONFIG, str(exc)) from exc
        if validate_only:
            return
        topic.configs = dict(configs)
        self.store.put_topic(topic)
        self.replicas.reconfigure(topic)
