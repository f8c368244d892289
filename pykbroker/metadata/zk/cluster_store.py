"""The cluster's ZooKeeper store as the broker and its controller use it.

One object per broker over one ZooKeeper session: it speaks in the cluster's terms (topics,
partition states, live brokers, endpoints) and keeps ZooKeeper's errors, watches and
Kafka's znode layout behind it, so ``cluster/`` and ``controller/`` never import kazoo.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pykbroker.cluster.metadata_cache import Endpoint
from pykbroker.cluster.topics import TopicInfo
from pykbroker.controller.leader_election import LeaderAndIsr
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.metadata.zk.admin import DELETE_TOPICS_PATH, DeleteTopic
from pykbroker.metadata.zk.brokers import BROKER_IDS_PATH, BrokerRegistration, EndPoint
from pykbroker.metadata.zk.client import Watch, ZkClient, ZkNodeExists, ZkNoNode
from pykbroker.metadata.zk.configs import CHANGES_PATH
from pykbroker.metadata.zk.controller import ControllerRegistration
from pykbroker.metadata.zk.kafka_zk import ControllerMovedError, KafkaZk, TopicZnode
from pykbroker.metadata.zk.topics import TOPICS_PATH, PartitionState, ReplicaAssignment

log = logging.getLogger("pykbroker.metadata.zk")

TopicPartition = tuple[str, int]


class ZkClusterStore:
    def __init__(self, client: ZkClient) -> None:
        self.client = client
        self.kafka = KafkaZk(client)

    @classmethod
    async def connect(cls, hosts: str, *, session_timeout_ms: int,
                      connection_timeout_ms: int) -> ZkClusterStore:
        client = await ZkClient.connect(hosts, session_timeout_ms=session_timeout_ms,
                                        connection_timeout_ms=connection_timeout_ms)
        store = cls(client)
        await store.kafka.create_top_level_paths()
        return store

    async def close(self) -> None:
        await self.client.close()

    def on_session_expired(self, callback: Callable[[], None]) -> None:
        """``callback`` once a new session replaced an expired one (ephemerals are gone)."""
        expired = False

        def on_state(state: str) -> None:
            nonlocal expired
            if state == "expired":
                expired = True
            elif state == "connected" and expired:
                expired = False
                callback()

        self.client.on_state(on_state)

    # -- cluster id, brokers, producer ids ------------------------------------------------------

    async def get_or_create_cluster_id(self, new_id: str) -> str:
        return await self.kafka.get_or_create_cluster_id(new_id)

    async def register_broker(self, broker_id: int, endpoints: Iterable[Endpoint],
                              rack: str | None, timestamp: int) -> int:
        registration = BrokerRegistration(
            tuple(EndPoint(ep.listener, ep.security_protocol, ep.host or None, ep.port)
                  for ep in endpoints), timestamp=timestamp, rack=rack)
        return await self.kafka.register_broker(broker_id, registration)

    async def generate_broker_id(self, reserved_max: int) -> int:
        return await self.kafka.generate_broker_id(reserved_max)

    async def get_all_brokers(self) -> dict[int, tuple[BrokerRegistration, int]]:
        return await self.kafka.get_all_brokers()

    async def allocate_producer_id_block(self, broker_id: int, size: int) -> tuple[int, int]:
        return await self.kafka.allocate_producer_id_block(broker_id, size)

    # -- controller election ------------------------------------------------------------------

    async def watch_controller(self, callback: Callable[..., None]) -> Watch:
        return await self.client.watch_data(ControllerRegistration.path(), callback)

    async def get_controller_id(self) -> int | None:
        return await self.kafka.get_controller_id()

    async def try_become_controller(self, broker_id: int) -> int | None:
        return await self.kafka.try_become_controller(broker_id)

    async def delete_controller_if_ours(self, broker_id: int) -> None:
        version = self.kafka.controller_epoch_zk_version
        if version is not None and await self.get_controller_id() == broker_id:
            await self.kafka.resign_controller(version)

    # -- watches the active controller keeps --------------------------------------------------

    async def watch_brokers(self, callback: Callable[..., None]) -> Watch:
        return await self.client.watch_children(BROKER_IDS_PATH, callback)

    async def watch_topics(self, callback: Callable[..., None]) -> Watch:
        return await self.client.watch_children(TOPICS_PATH, callback)

    async def watch_deletions(self, callback: Callable[..., None]) -> Watch:
        return await self.client.watch_children(DELETE_TOPICS_PATH, callback)

    async def watch_topic(self, name: str, callback: Callable[..., None]) -> Watch:
        return await self.client.watch_data(f"{TOPICS_PATH}/{name}", callback)

    # -- topics -------------------------------------------------------------------------------

    async def get_all_topics(self) -> list[str]:
        return await self.kafka.get_all_topics()

    async def get_topic(self, name: str) -> TopicZnode | None:
        return await self.kafka.get_topic(name)

    async def set_topic_id(self, name: str, znode: TopicZnode, topic_id: Any) -> None:
        await self.kafka.set_topic_assignment(name, znode.partitions, topic_id,
                                              znode.zk_version)

    async def set_assignment(self, name: str, topic_id: Any,
                             partitions: Mapping[int, tuple[tuple[int, ...], tuple[int, ...],
                                                            tuple[int, ...]]]) -> None:
        """The controller's rewrite of a topic's replicas (reassignments), fenced."""
        znode = await self.kafka.get_topic(name)
        version = znode.zk_version if znode is not None else -1
        assignment = {p: ReplicaAssignment(tuple(r), tuple(a), tuple(d))
                      for p, (r, a, d) in partitions.items()}
        await self.kafka.set_topic_assignment(
            name, assignment, topic_id, version,
            controller_epoch_zk_version=self.kafka.controller_epoch_zk_version)

    async def get_topic_config(self, name: str) -> dict[str, str]:
        return await self.kafka.get_entity_config("topics", name)

    async def create_topic(self, topic: TopicInfo) -> None:
        try:
            await self.kafka.create_topic(topic.name, topic.topic_id, topic.assignment,
                                          topic.configs)
        except ZkNodeExists as exc:
            raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS,
                             f"Topic '{topic.name}' already exists.") from exc

    async def add_partitions(self, topic: TopicInfo, new: Mapping[int, list[int]]) -> None:
        znode = await self.kafka.get_topic(topic.name)
        if znode is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                             f"The topic '{topic.name}' does not exist.")
        assignment = dict(znode.partitions)
        assignment.update({p: ReplicaAssignment(tuple(r)) for p, r in new.items()})
        try:
            await self.kafka.set_topic_assignment(topic.name, assignment, znode.topic_id,
                                                  znode.zk_version)
        except Exception as exc:  # another CreatePartitions won: Kafka answers the same
            raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                             f"Topic {topic.name} was changed concurrently; retry") from exc

    async def mark_topic_for_deletion(self, name: str) -> None:
        await self.kafka.mark_topic_for_deletion([name])

    async def get_topics_marked_for_deletion(self) -> list[str]:
        return await self.kafka.get_topics_marked_for_deletion()

    async def remove_deletion_markers(self, names: Iterable[str]) -> None:
        for name in names:
            try:
                await self.client.delete(DeleteTopic.path(name))
            except ZkNoNode:
                pass

    async def delete_topic(self, name: str) -> None:
        await self.kafka.delete_topic_znodes(name, self.kafka.controller_epoch_zk_version)

    # -- dynamic configs ----------------------------------------------------------------------

    async def get_entity_config(self, kind: str, name: str) -> dict[str, str]:
        return await self.kafka.get_entity_config(kind, name)

    async def change_entity_config(self, kind: str, name: str,
                                   configs: Mapping[str, str]) -> None:
        """Write ``/config/<kind>/<name>`` and announce it in ``/config/changes``."""
        await self.kafka.change_entity_config(kind, name, configs)

    async def watch_config_changes(self, callback: Callable[..., None]) -> Watch:
        return await self.client.watch_children(CHANGES_PATH, callback)

    async def config_changes_since(self, seq: int) -> list[tuple[int, str, str]]:
        """(sequence number, entity kind, entity name) of each change after ``seq``."""
        return [(n, c.entity_type, c.entity_name)
                for n, c in await self.kafka.get_config_changes_since(seq)]

    # -- partition states ---------------------------------------------------------------------

    async def get_partition_states(self, topic: str) -> dict[int, tuple[PartitionState, int]]:
        return await self.kafka.get_partition_states(topic)

    async def write_partition_states(self, changes: Mapping[TopicPartition, LeaderAndIsr],
                                     controller_epoch: int, *, create: bool
                                     ) -> dict[TopicPartition, int | None] | None:
        """Fenced writes of new states: the new version per partition (None where another
        writer got there first), or None when this controller has been fenced."""
        fence = self.kafka.controller_epoch_zk_version
        if fence is None:
            return None
        znodes = {tp: PartitionState(s.leader, s.leader_epoch, tuple(s.isr), controller_epoch,
                                     s.leader_recovery_state) for tp, s in changes.items()}
        try:
            if create:
                writes = await self.kafka.create_partition_states(znodes, controller_epoch,
                                                                  fence)
            else:
                writes = await self.kafka.update_partition_states(
                    {tp: (z, changes[tp].partition_epoch) for tp, z in znodes.items()},
                    controller_epoch, fence)
        except ControllerMovedError:
            return None
        if any(isinstance(e, ControllerMovedError) for e in writes.failed.values()):
            return None
        for tp, error in writes.failed.items():
            log.warning("writing the state of %s-%d failed: %s", *tp, error)
        result: dict[TopicPartition, int | None] = dict.fromkeys(changes)
        result.update(writes.written)
        return result
