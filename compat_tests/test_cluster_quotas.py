"""Client quotas in a ZooKeeper cluster (issue #17): set through one broker, kept in Kafka's
/config/clients and /config/users znodes, described and enforced by every broker."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Producer, ThrottleEvent

from pykbroker.protocol._generated.alter_client_quotas_request import (
    AlterClientQuotasRequest,
    EntityData,
    EntryData,
    OpData,
)
from pykbroker.protocol._generated.describe_client_quotas_request import (
    ComponentData,
    DescribeClientQuotasRequest,
)
from pykbroker.testing import KafkaCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


def alter(cluster: KafkaCluster, broker: int, client_id: str, rate: float | None) -> None:
    resp = cluster._request(broker, 49, 1, AlterClientQuotasRequest(entries=[EntryData(
        entity=[EntityData("client-id", client_id)],
        ops=[OpData("producer_byte_rate", rate or 0.0, rate is None)])]))
    (entry,) = resp.entries
    assert entry.error_code == 0, entry.error_message


def described_rate(cluster: KafkaCluster, broker: int, client_id: str) -> float | None:
    resp = cluster._request(broker, 48, 1, DescribeClientQuotasRequest(
        components=[ComponentData("client-id", 0, client_id)], strict=False))
    assert resp.error_code == 0, resp.error_message
    for entry in resp.entries:
        for value in entry.values:
            if value.key == "producer_byte_rate":
                return float(value.value)
    return None


def wait_everywhere(cluster: KafkaCluster, client_id: str, want: float | None) -> None:
    deadline = time.monotonic() + 10
    while True:
        seen = {b: described_rate(cluster, b, client_id) for b in cluster.broker_ids}
        if all(v == want for v in seen.values()):
            return
        assert time.monotonic() < deadline, f"brokers disagree: {seen}"
        time.sleep(0.1)


def test_a_quota_set_on_one_broker_is_enforced_by_the_leader(
        kafka_cluster: KafkaCluster) -> None:
    topic, client_id = f"quota-{uuid.uuid4().hex[:8]}", f"slow app {uuid.uuid4().hex[:6]}"
    kafka_cluster.create_topic(topic)
    leader = kafka_cluster.leader_of(topic, 0)
    elsewhere = next(b for b in kafka_cluster.broker_ids if b != leader)

    alter(kafka_cluster, elsewhere, client_id, 20_000)  # not through the leader
    wait_everywhere(kafka_cluster, client_id, 20_000.0)
    assert kafka_cluster.zk.json(f"/config/clients/slow%20app%20{client_id[-6:]}") == {
        "version": 1, "config": {"producer_byte_rate": "20000"}}

    # The leader throttles the client (librdkafka's throttle_cb names it).
    events: list[ThrottleEvent] = []
    producer = Producer({"bootstrap.servers": kafka_cluster.bootstrap_servers,
                         "client.id": client_id, "linger.ms": 5, "batch.size": 16384,
                         "throttle_cb": events.append})
    for _ in range(300):
        producer.produce(topic, b"x" * 1000, partition=0)
        producer.poll(0)
    producer.flush(60)
    throttled = {e.broker_id for e in events if e.throttle_time > 0}
    assert throttled == {leader}, [(e.broker_id, e.throttle_time) for e in events]

    # A restarted broker reads the quota back; removed through a third broker, it is gone.
    kafka_cluster.restart(leader, kill=True)
    assert described_rate(kafka_cluster, leader, client_id) == 20_000.0
    third = kafka_cluster.broker_ids[-1] if kafka_cluster.broker_ids[-1] != elsewhere \
        else kafka_cluster.broker_ids[0]
    alter(kafka_cluster, third, client_id, None)
    wait_everywhere(kafka_cluster, client_id, None)
