"""A user's test suite written only against pykbroker's pytest fixtures.

It runs against the in-process broker, and (tests/test_testing_plugin.py) unchanged with
``--kafka-bootstrap`` pointed at a separately started broker.
"""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition


def test_confluent_produce_consume(kafka_bootstrap_servers: str, kafka_topic: str) -> None:
    producer = Producer({"bootstrap.servers": kafka_bootstrap_servers})
    for i in range(10):
        producer.produce(kafka_topic, key=b"k", value=b"v%d" % i)
    assert producer.flush(15) == 0
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap_servers, "group.id": "fx",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(kafka_topic, 0, 0)])
    got = []
    for _ in range(50):
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
        if len(got) == 10:
            break
    consumer.close()
    assert got == [b"v%d" % i for i in range(10)]


@pytest.mark.kafka_topic(partitions=3)
def test_kafka_python_partitions(kafka_bootstrap_servers: str, kafka_topic: str) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap_servers)
    for p in range(3):
        producer.send(kafka_topic, value=b"p%d" % p, partition=p)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap_servers,
                             consumer_timeout_ms=3000, auto_offset_reset="earliest")
    consumer.assign([KpTopicPartition(kafka_topic, p) for p in range(3)])
    values = sorted(m.value for m in consumer)
    consumer.close()
    assert values == [b"p0", b"p1", b"p2"]


@pytest.mark.kafka_topic(configs={"cleanup.policy": "compact"})
def test_topic_configs_from_marker(kafka_bootstrap_servers: str, kafka_topic: str) -> None:
    from confluent_kafka.admin import AdminClient, ConfigResource

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap_servers})
    res = admin.describe_configs([ConfigResource("topic", kafka_topic)])
    configs = next(iter(res.values())).result(15)
    assert configs["cleanup.policy"].value == "compact"
