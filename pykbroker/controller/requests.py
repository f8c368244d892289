"""The controller's requests to brokers, built from its context (pure: no I/O).

LeaderAndIsr tells replicas their role, UpdateMetadata tells every broker the cluster's
state, StopReplica takes replicas away; the versions are the newest a Kafka 3.9 ZK-mode
controller sends, which every pykbroker broker serves.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pykbroker.cluster.metadata_cache import LiveBroker
from pykbroker.controller.leader_election import LEADER_DURING_DELETE, LeaderAndIsr
from pykbroker.protocol._generated.leader_and_isr_request import (
    LeaderAndIsrLiveLeader,
    LeaderAndIsrPartitionState,
    LeaderAndIsrRequest,
    LeaderAndIsrTopicState,
)
from pykbroker.protocol._generated.stop_replica_request import (
    StopReplicaPartitionState,
    StopReplicaRequest,
    StopReplicaTopicState,
)
from pykbroker.protocol._generated.update_metadata_request import (
    UpdateMetadataBroker,
    UpdateMetadataEndpoint,
    UpdateMetadataPartitionState,
    UpdateMetadataRequest,
    UpdateMetadataTopicState,
)
from pykbroker.protocol.api import ApiKey

LEADER_AND_ISR_VERSION = 7
UPDATE_METADATA_VERSION = 8
STOP_REPLICA_VERSION = 4
SECURITY_PROTOCOL_IDS = {"PLAINTEXT": 0, "SSL": 1, "SASL_PLAINTEXT": 2, "SASL_SSL": 3}

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """What the controller sends about one partition."""

    topic: str
    index: int
    topic_id: uuid.UUID
    replicas: tuple[int, ...]
    state: LeaderAndIsr
    controller_epoch: int  # the epoch of the controller that wrote the state


def leader_and_isr(controller_id: int, controller_epoch: int, broker_epoch: int,
                   parts: Iterable[PartitionInfo], is_new: set[TopicPartition],
                   live: Mapping[int, LiveBroker], listener: str) -> LeaderAndIsrRequest:
    topics: dict[str, LeaderAndIsrTopicState] = {}
    leaders: set[int] = set()
    for p in parts:
        topic = topics.get(p.topic)
        if topic is None:
            topic = topics[p.topic] = LeaderAndIsrTopicState(
                topic_name=p.topic, topic_id=p.topic_id, partition_states=[])
        topic.partition_states.append(LeaderAndIsrPartitionState(
            topic_name=p.topic, partition_index=p.index, controller_epoch=p.controller_epoch,
            leader=p.state.leader, leader_epoch=p.state.leader_epoch, isr=list(p.state.isr),
            partition_epoch=p.state.partition_epoch, replicas=list(p.replicas),
            adding_replicas=[], removing_replicas=[], is_new=(p.topic, p.index) in is_new,
            leader_recovery_state=p.state.leader_recovery_state))
        leaders.add(p.state.leader)
    live_leaders = []
    for broker_id in sorted(leaders):
        broker = live.get(broker_id)
        ep = broker.endpoint(listener) if broker is not None else None
        if ep is not None:
            live_leaders.append(LeaderAndIsrLiveLeader(broker_id, ep.host, ep.port))
    return LeaderAndIsrRequest(
        controller_id=controller_id, is_k_raft_controller=False,
        controller_epoch=controller_epoch, broker_epoch=broker_epoch, type=0,
        ungrouped_partition_states=[], topic_states=list(topics.values()),
        live_leaders=live_leaders)


def update_metadata(controller_id: int, controller_epoch: int, broker_epoch: int,
                    parts: Iterable[PartitionInfo], live: Mapping[int, LiveBroker],
                    deleting: Iterable[PartitionInfo] = ()) -> UpdateMetadataRequest:
    topics: dict[str, UpdateMetadataTopicState] = {}

    def add(p: PartitionInfo, leader: int, leader_epoch: int) -> None:
        topic = topics.get(p.topic)
        if topic is None:
            topic = topics[p.topic] = UpdateMetadataTopicState(
                topic_name=p.topic, topic_id=p.topic_id, partition_states=[])
        offline = [r for r in p.replicas if r not in live]
        topic.partition_states.append(UpdateMetadataPartitionState(
            topic_name=p.topic, partition_index=p.index, controller_epoch=p.controller_epoch,
            leader=leader, leader_epoch=leader_epoch, isr=list(p.state.isr),
            zk_version=p.state.partition_epoch, replicas=list(p.replicas),
            offline_replicas=offline))

    for p in parts:
        add(p, p.state.leader, p.state.leader_epoch)
    for p in deleting:
        add(p, LEADER_DURING_DELETE, p.state.leader_epoch)
    brokers = [
        UpdateMetadataBroker(
            id=b.id, v0_host="", v0_port=-1, rack=b.rack,
            endpoints=[UpdateMetadataEndpoint(port=ep.port, host=ep.host, listener=ep.listener,
                                              security_protocol=SECURITY_PROTOCOL_IDS.get(
                                                  ep.security_protocol, 0))
                       for ep in b.endpoints])
        for _, b in sorted(live.items())
    ]
    return UpdateMetadataRequest(
        controller_id=controller_id, is_k_raft_controller=False, type=0,
        controller_epoch=controller_epoch, broker_epoch=broker_epoch,
        ungrouped_partition_states=[], topic_states=list(topics.values()), live_brokers=brokers)


def stop_replica(controller_id: int, controller_epoch: int, broker_epoch: int,
                 parts: Iterable[tuple[str, int, int]], delete: bool) -> StopReplicaRequest:
    """``parts``: (topic, partition, leader epoch); deletion sends Kafka's EpochDuringDelete."""
    topics: dict[str, StopReplicaTopicState] = {}
    for topic, index, leader_epoch in parts:
        state = topics.get(topic)
        if state is None:
            state = topics[topic] = StopReplicaTopicState(topic_name=topic, partition_states=[])
        state.partition_states.append(StopReplicaPartitionState(
            partition_index=index, leader_epoch=-2 if delete else leader_epoch,
            delete_partition=delete))
    return StopReplicaRequest(
        controller_id=controller_id, is_k_raft_controller=False,
        controller_epoch=controller_epoch, broker_epoch=broker_epoch,
        delete_partitions=False,  # v0-2 only; v3+ says it per partition
        ungrouped_partitions=[], topics=[], topic_states=list(topics.values()))


VERSIONS = {
    int(ApiKey.LEADER_AND_ISR): LEADER_AND_ISR_VERSION,
    int(ApiKey.UPDATE_METADATA): UPDATE_METADATA_VERSION,
    int(ApiKey.STOP_REPLICA): STOP_REPLICA_VERSION,
}
