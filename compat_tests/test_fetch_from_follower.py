"""Fetch from followers (KIP-392, issue #15): with Kafka's rack-aware replica selector, a
consumer naming its rack reads from the in-sync replica in that rack, not from the leader."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from compat_tests.cluster import Cluster
from pykbroker.metadata.zk.server import ZooKeeperServer

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

SELECTOR = "org.apache.kafka.common.replica.RackAwareReplicaSelector"


def _consumer_fetches(cluster: Cluster, broker_id: int) -> int:
    """Fetch requests from consumers (not from replicas) in a broker's request log."""
    return len(re.findall(r"FETCH v\d+ corr=\d+ client=rdkafka ",
                          cluster.brokers[broker_id].log()))


@pytest.mark.parametrize("selector", [SELECTOR, None])
def test_consumer_reads_from_the_replica_in_its_rack(zookeeper_server: ZooKeeperServer,
                                                     selector: str | None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # The brokers log each request at DEBUG (Kafka's logger name, as the apache/kafka image
    # sets it), so the test can count which broker served the consumer.
    monkeypatch.setenv("KAFKA_LOG4J_LOGGERS", "kafka.request.logger=DEBUG")
    overrides: dict[str, str] = {}
    if selector:
        overrides["replica.selector.class"] = selector
    cluster = Cluster(zookeeper_server, 3, overrides=overrides)
    for i, broker in cluster.brokers.items():
        broker.overrides["broker.rack"] = f"rack-{i}"
    with cluster:
        cluster.wait_formed()
        topic = f"kip392-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap(1)})
        futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=-1,
                                                replica_assignment=[[1, 2, 3]])],
                                      request_timeout=20)
        futures[topic].result(30)
        cluster.wait_topic(topic, 1)
        producer = Producer({"bootstrap.servers": cluster.bootstrap(2), "acks": "all"})
        for n in range(200):
            producer.produce(topic, str(n).encode())
        assert producer.flush(30) == 0
        # Wait until every replica is in the ISR (the rack-3 replica must be in sync).
        cluster.wait_until(lambda: sorted(cluster.metadata(1).topics[topic][0].isr) == [1, 2, 3],
                           30)
        before = {i: _consumer_fetches(cluster, i) for i in (1, 3)}
        consumer = Consumer({"bootstrap.servers": cluster.bootstrap(1),
                             "group.id": f"g-{uuid.uuid4().hex[:6]}", "client.rack": "rack-3",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        consumer.assign([TopicPartition(topic, 0, 0)])
        values = []
        deadline = time.monotonic() + 30
        while len(values) < 200 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                values.append(int(msg.value()))
        consumer.close()
        assert values == list(range(200))
        after = {i: _consumer_fetches(cluster, i) for i in (1, 3)}
        if selector:
            assert after[3] > before[3], "the rack-3 follower served no consumer fetch"
        else:
            assert after[3] == before[3], "without a selector only the leader serves"
