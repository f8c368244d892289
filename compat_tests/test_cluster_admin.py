"""Admin operations in a cluster take effect on every broker (issue #14): DeleteTopics,
CreatePartitions, ElectLeaders (preferred), AlterPartitionReassignments /
ListPartitionReassignments, and IncrementalAlterConfigs of a topic and of a broker — each
sent to one broker, checked on all three."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import ElectionType, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)
from kafka import TopicPartition as KpTopicPartition
from kafka.admin import KafkaAdminClient

from compat_tests.cluster import Cluster
from pykbroker.metadata.zk.server import ZooKeeperServer

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


_ADMINS: dict[str, AdminClient] = {}


@pytest.fixture(autouse=True)
def _forget_admins() -> Iterator[None]:
    yield
    _ADMINS.clear()


def _admin(cluster: Cluster, i: int) -> AdminClient:
    """One client per broker address, kept alive: a dropped client fails its futures."""
    bootstrap = cluster.bootstrap(i)
    if bootstrap not in _ADMINS:
        _ADMINS[bootstrap] = AdminClient({"bootstrap.servers": bootstrap})
    return _ADMINS[bootstrap]


def _create(cluster: Cluster, via: int, topic: NewTopic) -> None:
    _admin(cluster, via).create_topics([topic], request_timeout=20)[topic.topic].result(30)


def test_delete_topics_and_create_partitions_reach_every_broker(cluster: Cluster) -> None:
    cluster.wait_formed()
    keep, drop = _name("keep"), _name("drop")
    _create(cluster, 1, NewTopic(keep, 2, 3))
    _create(cluster, 1, NewTopic(drop, 3, 2))
    cluster.wait_topic(keep, 2)
    cluster.wait_topic(drop, 3)
    _admin(cluster, 2).create_partitions([NewPartitions(keep, 5)],
                                         request_timeout=20)[keep].result(30)
    _admin(cluster, 3).delete_topics([drop], request_timeout=20)[drop].result(30)
    parts = cluster.wait_topic(keep, 5)
    assert all(len(set(p.replicas)) == 3 for p in parts.values())
    cluster.wait_until(lambda: all(drop not in cluster.metadata(i).topics for i in (1, 2, 3)),
                       20, what=f"{drop} gone from every broker")
    # The deleted topic's replicas left the brokers' disks.
    cluster.wait_until(lambda: not any(
        d.name.startswith(f"{drop}-") for b in cluster.brokers.values()
        for d in b.data_dir.iterdir()), 20, what=f"{drop} partition directories removed")


def test_incremental_alter_configs_of_a_topic_and_a_broker(cluster: Cluster) -> None:
    cluster.wait_formed()
    topic = _name("cfg")
    _create(cluster, 1, NewTopic(topic, 1, 3))
    cluster.wait_topic(topic, 1)
    resource = ConfigResource("topic", topic, incremental_configs=[ConfigEntry(
        "retention.ms", "123456", incremental_operation=AlterConfigOpType.SET)])
    _admin(cluster, 2).incremental_alter_configs([resource])[resource].result(30)
    broker3 = ConfigResource("broker", "3", incremental_configs=[ConfigEntry(
        "log.retention.ms", "7654321", incremental_operation=AlterConfigOpType.SET)])
    _admin(cluster, 1).incremental_alter_configs([broker3])[broker3].result(30)

    def topic_value(i: int) -> str | None:
        res = ConfigResource("topic", topic)
        return _admin(cluster, i).describe_configs([res])[res].result(10)["retention.ms"].value

    cluster.wait_until(lambda: all(topic_value(i) == "123456" for i in (1, 2, 3)), 20,
                       what="the topic config on every broker")
    res = ConfigResource("broker", "3")

    def broker3_entry() -> ConfigEntry | None:
        entry = _admin(cluster, 3).describe_configs([res])[res].result(10)["log.retention.ms"]
        return entry if entry.value == "7654321" else None

    entry = cluster.wait_until(broker3_entry, 20, what="broker 3's dynamic config")
    assert entry.source == 2  # DYNAMIC_BROKER_CONFIG
    res1 = ConfigResource("broker", "1")
    other = _admin(cluster, 1).describe_configs([res1])[res1].result(10)["log.retention.ms"]
    assert other.value != "7654321"  # broker 1 was not altered


def test_preferred_leader_election_brings_leadership_back(cluster: Cluster) -> None:
    cluster.wait_formed()
    topic = _name("pref")
    _admin(cluster, 1).create_topics([NewTopic(topic, num_partitions=1, replication_factor=-1,
                                               replica_assignment=[[1, 2, 3]])],
                                     request_timeout=20)[topic].result(30)
    cluster.wait_topic(topic, 1)
    producer = Producer({"bootstrap.servers": cluster.bootstrap(2), "acks": "all"})
    for n in range(50):
        producer.produce(topic, str(n).encode())
    assert producer.flush(30) == 0
    cluster.kill(1)
    cluster.wait_until(lambda: cluster.metadata(2).topics[topic][0].leader in (2, 3), 20,
                       what="a new leader")
    cluster.start(1)
    cluster.wait_until(lambda: sorted(cluster.metadata(2).topics[topic][0].isr) == [1, 2, 3],
                       40, what="broker 1 back in the ISR")
    assert cluster.metadata(2).topics[topic][0].leader != 1
    controller = cluster.controller_id()
    assert controller is not None
    results = _admin(cluster, controller).elect_leaders(
        ElectionType.PREFERRED, [TopicPartition(topic, 0)]).result(30)
    assert all(err is None for err in results.values()), results
    cluster.wait_until(lambda: all(cluster.metadata(i).topics[topic][0].leader == 1
                                   for i in (1, 2, 3)), 20, what="broker 1 leading again")
    again = _admin(cluster, controller).elect_leaders(
        ElectionType.PREFERRED, [TopicPartition(topic, 0)]).result(30)
    assert "ELECTION_NOT_NEEDED" in str(again[TopicPartition(topic, 0)])


def test_partition_reassignment_moves_data_and_leadership(cluster: Cluster) -> None:
    cluster.wait_formed()
    topic = _name("move")
    _admin(cluster, 1).create_topics([NewTopic(topic, num_partitions=1, replication_factor=-1,
                                               replica_assignment=[[1, 2]])],
                                     request_timeout=20)[topic].result(30)
    cluster.wait_topic(topic, 1)
    producer = Producer({"bootstrap.servers": cluster.bootstrap(1), "acks": "all"})
    for n in range(300):
        producer.produce(topic, str(n).encode())
    assert producer.flush(30) == 0
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap(3))
    try:
        admin.alter_partition_reassignments({KpTopicPartition(topic, 0): [3, 2]})
        cluster.wait_until(
            lambda: all(cluster.metadata(i).topics[topic][0].replicas == (3, 2)
                        for i in (1, 2, 3)), 40, what="replicas (3, 2) everywhere")
        assert admin.list_partition_reassignments() == {}
    finally:
        admin.close()
    view = cluster.metadata(1).topics[topic][0]
    assert view.leader == 3 and sorted(view.isr) == [2, 3]
    cluster.wait_until(lambda: not (cluster.brokers[1].data_dir / f"{topic}-0").exists(), 20,
                       what="the removed replica's directory deleted")
    # Every record is read back from the new leader.
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": cluster.bootstrap(3), "group.id": _name("g"),
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    values: list[int] = []
    while len(values) < 300:
        msg = consumer.poll(10)
        assert msg is not None, f"only {len(values)} records read back"
        if not msg.error():
            values.append(int(msg.value()))
    consumer.close()
    assert values == list(range(300))


def test_generated_broker_ids_are_kept_across_restarts(zookeeper_server: ZooKeeperServer
                                                       ) -> None:
    """broker.id=-1 with broker.id.generation.enable (Kafka's defaults): ids above
    reserved.broker.max.id from /brokers/seqid, kept in meta.properties over a restart."""
    cluster = Cluster(zookeeper_server, 2, overrides={"reserved.broker.max.id": "100"})
    for broker in cluster.brokers.values():
        broker.overrides["broker.id"] = "-1"
    with cluster:
        ids = cluster.wait_until(lambda: ids if len(ids := cluster.registered_ids()) == 2
                                 else None, 30, what="two registered brokers")
        assert all(i > 100 for i in ids) and len(set(ids)) == 2
        cluster.terminate(1)
        cluster.wait_until(lambda: len(cluster.registered_ids()) == 1, 30, what="one left")
        cluster.start(1)
        assert cluster.wait_until(lambda: sorted(cluster.registered_ids()) == sorted(ids)
                                  or None, 30, what="the same ids again")
