"""Hypothesis strategies for every znode codec, within the values Kafka's JSON can carry."""

from __future__ import annotations

import string
from typing import Any

from hypothesis import strategies as st

from pykbroker.metadata.zk.admin import PartitionReassignment, PreferredReplicaElection
from pykbroker.metadata.zk.brokers import (
    SECURITY_PROTOCOLS,
    BrokerRegistration,
    EndPoint,
    SupportedVersionRange,
)
from pykbroker.metadata.zk.cluster_id import ClusterId
from pykbroker.metadata.zk.configs import ENTITY_TYPES, ConfigChangeNotification, EntityConfig
from pykbroker.metadata.zk.controller import ControllerEpoch, ControllerRegistration
from pykbroker.metadata.zk.features import FeatureZNode
from pykbroker.metadata.zk.isr_changes import IsrChangeNotification
from pykbroker.metadata.zk.producer_ids import ProducerIdBlock
from pykbroker.metadata.zk.topics import PartitionState, ReplicaAssignment, TopicAssignment

int32 = st.integers(-(2**31), 2**31 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)
replicas = st.lists(int32, max_size=5).map(tuple)
topic_partitions = st.tuples(st.text(max_size=20), int32)

# SocketServerConfigs.URI_PARSE_REGEXP allows these in a host; listener names are upper case.
hosts = st.none() | st.text(string.ascii_letters + string.digits + "-%._:", min_size=1)
listener_names = st.text(string.ascii_uppercase + string.digits + "_", min_size=1, max_size=12)


def endpoints(*, default_names: bool) -> st.SearchStrategy[tuple[EndPoint, ...]]:
    """Endpoints with distinct listener names; with ``default_names`` each name is its protocol
    (what registrations without a listener_security_protocol_map, versions 2 and 3, need)."""
    if default_names:
        one = st.sampled_from(SECURITY_PROTOCOLS).flatmap(
            lambda p: st.builds(EndPoint, st.just(p), st.just(p), hosts, int32)
        )
    else:
        one = st.builds(EndPoint, listener_names, st.sampled_from(SECURITY_PROTOCOLS), hosts, int32)
    return st.lists(one, max_size=4, unique_by=lambda e: e.listener_name).map(tuple)


version_ranges = st.integers(0, 0x7FFF).flatmap(
    lambda low: st.builds(SupportedVersionRange, st.just(low), st.integers(low, 0x7FFF))
)


@st.composite
def broker_registrations(draw: st.DrawFn) -> BrokerRegistration:
    version = draw(st.integers(2, 7))
    return BrokerRegistration(
        endpoints=draw(endpoints(default_names=version < 4)),
        timestamp=draw(int64),
        jmx_port=draw(int32),
        rack=draw(st.none() | st.text()) if version >= 3 else None,
        features=draw(st.dictionaries(st.text(), version_ranges)) if version >= 5 else {},
        version=version,
    )


topic_assignments = st.builds(
    TopicAssignment,
    st.dictionaries(
        st.integers(0, 2**31 - 1), st.builds(ReplicaAssignment, replicas, replicas, replicas)
    ),
    st.none() | st.uuids(),
)
partition_states = st.builds(PartitionState, int32, int32, replicas, int32, st.sampled_from([0, 1]))
controller_registrations = st.builds(ControllerRegistration, int32, int64, int32)
controller_epochs = st.builds(ControllerEpoch, int32)
cluster_ids = st.builds(ClusterId, st.text())
entity_configs = st.builds(EntityConfig, st.dictionaries(st.text(), st.text()))
config_changes = st.builds(ConfigChangeNotification, st.sampled_from(ENTITY_TYPES), st.text())
reassignments = st.builds(PartitionReassignment, st.dictionaries(topic_partitions, replicas))
preferred_elections = st.builds(
    PreferredReplicaElection, st.lists(topic_partitions, max_size=5).map(tuple)
)
isr_changes = st.builds(IsrChangeNotification, st.lists(topic_partitions, max_size=5).map(tuple))
producer_id_blocks = st.builds(
    lambda broker, start, size: ProducerIdBlock(broker, start, start + size - 1),
    int32,
    st.integers(0, 2**62),
    st.integers(0, 2**31 - 1),
)
feature_znodes = st.builds(
    FeatureZNode,
    st.dictionaries(st.text(), st.integers(1, 0x7FFF)),
    st.sampled_from([0, 1]),
    st.sampled_from([1, 2]),
)

ALL_CODECS: dict[type[Any], st.SearchStrategy[Any]] = {
    BrokerRegistration: broker_registrations(),
    TopicAssignment: topic_assignments,
    PartitionState: partition_states,
    ControllerRegistration: controller_registrations,
    ControllerEpoch: controller_epochs,
    ClusterId: cluster_ids,
    EntityConfig: entity_configs,
    ConfigChangeNotification: config_changes,
    PartitionReassignment: reassignments,
    PreferredReplicaElection: preferred_elections,
    IsrChangeNotification: isr_changes,
    ProducerIdBlock: producer_id_blocks,
    FeatureZNode: feature_znodes,
}
