"""The znode codecs against a real ZooKeeper through kazoo, the way Kafka's ZK client uses it."""

from __future__ import annotations

import uuid

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from pykbroker.metadata.zk.brokers import (
    BROKER_IDS_PATH,
    BrokerRegistration,
    BrokerSequenceId,
    EndPoint,
)
from pykbroker.metadata.zk.configs import ConfigChangeNotification, EntityConfig
from pykbroker.metadata.zk.controller import ControllerEpoch, ControllerRegistration
from pykbroker.metadata.zk.layout import PERSISTENT_PATHS
from pykbroker.metadata.zk.producer_ids import ProducerIdBlock
from pykbroker.metadata.zk.topics import PartitionState, ReplicaAssignment, TopicAssignment
from tests.zk_fixtures import ZooKeeperChroot


def _registration(port: int) -> BrokerRegistration:
    return BrokerRegistration(
        endpoints=(EndPoint("PLAINTEXT", "PLAINTEXT", "127.0.0.1", port),),
        timestamp=1700000000000,
        rack="r1",
    )


def test_ephemeral_broker_registration(
    zookeeper: ZooKeeperChroot, kazoo_client: KazooClient
) -> None:
    for path in PERSISTENT_PATHS:
        kazoo_client.ensure_path(path)
    registration = _registration(9092)
    # Kafka's CheckedEphemeral: create empty, then set the data at version 0, in one multi-op.
    path = BrokerRegistration.path(1)
    tx = kazoo_client.transaction()
    tx.create(path, b"", ephemeral=True)
    tx.set_data(path, registration.to_json(), version=0)
    created, stat = tx.commit()
    assert created == path and stat.version == 1
    data, stat = kazoo_client.get(path)
    assert BrokerRegistration.from_json(data) == registration
    assert stat.ephemeralOwner == kazoo_client.client_id[0]
    broker_epoch = stat.czxid
    assert broker_epoch > 0
    assert kazoo_client.get_children(BROKER_IDS_PATH) == ["1"]
    with pytest.raises(NodeExistsError):
        kazoo_client.create(path, _registration(9093).to_json(), ephemeral=True)

    # Another session sees it, and sees it vanish with the owning session.
    other = KazooClient(hosts=zookeeper.hosts)
    other.start(timeout=10)
    try:
        assert BrokerRegistration.from_json(other.get(path)[0]) == registration
        kazoo_client.stop()
        assert other.exists(path) is None
    finally:
        other.stop()
        other.close()


def test_topic_assignment_and_partition_state(kazoo_client: KazooClient) -> None:
    topic_id = uuid.uuid4()
    assignment = TopicAssignment(
        {0: ReplicaAssignment((1, 2)), 1: ReplicaAssignment((2, 1))}, topic_id=topic_id
    )
    kazoo_client.create(
        EntityConfig.path("topics", "orders"),
        EntityConfig({"retention.ms": "1000"}).to_json(),
        makepath=True,
    )
    kazoo_client.create(TopicAssignment.path("orders"), assignment.to_json(), makepath=True)
    state = PartitionState(leader=1, leader_epoch=0, isr=(1, 2), controller_epoch=1)
    for partition, replicas in assignment.partitions.items():
        kazoo_client.create(
            PartitionState.path("orders", partition),
            PartitionState(replicas.replicas[0], 0, replicas.replicas, 1).to_json(),
            makepath=True,
        )

    assert (
        TopicAssignment.from_json(kazoo_client.get(TopicAssignment.path("orders"))[0]) == assignment
    )
    assert kazoo_client.get_children("/brokers/topics/orders/partitions") in (
        ["0", "1"],
        ["1", "0"],
    )
    data, stat = kazoo_client.get(PartitionState.path("orders", 0))
    assert PartitionState.from_json(data) == state
    partition_epoch = stat.version  # LeaderAndIsr.partitionEpoch is the znode version
    assert partition_epoch == 0
    config = kazoo_client.get(EntityConfig.path("topics", "orders"))[0]
    assert EntityConfig.from_json(config).config == {"retention.ms": "1000"}

    # The leader shrinks the ISR, conditional on the partition epoch it knows ...
    shrunk = PartitionState(leader=1, leader_epoch=0, isr=(1,), controller_epoch=1)
    new_stat = kazoo_client.set(
        PartitionState.path("orders", 0), shrunk.to_json(), version=partition_epoch
    )
    assert new_stat.version == partition_epoch + 1
    # ... and a writer still holding the old epoch (a deposed controller) fails.
    stale = PartitionState(leader=2, leader_epoch=1, isr=(2,), controller_epoch=1)
    with pytest.raises(BadVersionError):
        kazoo_client.set(PartitionState.path("orders", 0), stale.to_json(), version=partition_epoch)
    assert PartitionState.from_json(kazoo_client.get(PartitionState.path("orders", 0))[0]) == shrunk


def test_controller_election_multi_op(
    zookeeper: ZooKeeperChroot, kazoo_client: KazooClient
) -> None:
    """registerControllerAndIncrementControllerEpoch: create /controller and bump the epoch at
    the version read, atomically; a second candidate with the same read loses."""
    kazoo_client.create(ControllerEpoch.path(), ControllerEpoch(0).to_json())
    epoch_data, epoch_stat = kazoo_client.get(ControllerEpoch.path())
    epoch = ControllerEpoch.from_json(epoch_data).epoch

    def elect(client: KazooClient, broker_id: int) -> list[object]:
        tx = client.transaction()
        tx.create(
            ControllerRegistration.path(),
            ControllerRegistration(broker_id, 1).to_json(),
            ephemeral=True,
        )
        tx.set_data(
            ControllerEpoch.path(), ControllerEpoch(epoch + 1).to_json(), version=epoch_stat.version
        )
        return list(tx.commit())

    won = elect(kazoo_client, 1)
    assert won[0] == ControllerRegistration.path()
    other = KazooClient(hosts=zookeeper.hosts)
    other.start(timeout=10)
    try:
        lost = elect(other, 2)
        assert isinstance(lost[0], NodeExistsError)
    finally:
        other.stop()
        other.close()
    assert ControllerRegistration.from_json(kazoo_client.get("/controller")[0]).broker_id == 1
    assert ControllerEpoch.from_json(kazoo_client.get("/controller_epoch")[0]) == ControllerEpoch(1)


def test_sequential_and_versioned_nodes(kazoo_client: KazooClient) -> None:
    for path in PERSISTENT_PATHS:
        kazoo_client.ensure_path(path)
    change = ConfigChangeNotification("topics", "orders")
    created = kazoo_client.create(
        ConfigChangeNotification.create_path(), change.to_json(), sequence=True
    )
    assert created == "/config/changes/config_change_0000000000"
    node = kazoo_client.get_children("/config/changes")[0]
    assert ConfigChangeNotification.sequence_number(node) == 0
    assert ConfigChangeNotification.from_json(kazoo_client.get(created)[0]) == change

    # Broker id generation: an unconditional set of /brokers/seqid bumps its version.
    stat = kazoo_client.set(BrokerSequenceId.path(), BrokerSequenceId.DATA)
    assert BrokerSequenceId.broker_id(stat.version, 1000) == 1001

    # Producer id blocks: the znode starts empty; take blocks with conditional sets.
    data, stat = kazoo_client.get(ProducerIdBlock.path())
    assert ProducerIdBlock.from_json_or_none(data) is None
    first = ProducerIdBlock.first(1)
    kazoo_client.set(ProducerIdBlock.path(), first.to_json(), version=stat.version)
    with pytest.raises(BadVersionError):
        kazoo_client.set(
            ProducerIdBlock.path(), ProducerIdBlock.first(2).to_json(), version=stat.version
        )
    data, _ = kazoo_client.get(ProducerIdBlock.path())
    assert ProducerIdBlock.from_json_or_none(data) == first
    with pytest.raises(NoNodeError):
        kazoo_client.get("/brokers/topics/missing")


def test_chroots_do_not_share_state(zookeeper: ZooKeeperChroot, kazoo_client: KazooClient) -> None:
    assert kazoo_client.get_children("/") == []
    root = KazooClient(hosts=zookeeper.server.hosts)
    root.start(timeout=10)
    try:
        assert zookeeper.chroot.lstrip("/") in root.get_children("/")
    finally:
        root.stop()
        root.close()
