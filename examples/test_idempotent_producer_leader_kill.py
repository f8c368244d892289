"""An idempotent producer survives the kill of its partition leader: every acknowledged
message is in the topic exactly once.

Needs pykbroker installed (its pytest plugin gives the ``kafka_cluster`` fixture) and a
ZooKeeper (``apt-get install zookeeper`` or ``ZOOKEEPER_HOME``); otherwise the test skips.
"""

import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition


def send_all(client, bootstrap, topic, values):
    """Send every value with the producer of ``client``; return those acknowledged."""
    if client == "confluent-kafka":
        acked = set()
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                             "acks": "all", "message.timeout.ms": 60000})
        for value in values:
            producer.produce(topic, value, partition=0,
                             on_delivery=lambda err, msg: err or acked.add(msg.value()))
            producer.poll(0)
        producer.flush(70)
        return acked
    producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                             delivery_timeout_ms=60000)
    futures = [(value, producer.send(topic, value, partition=0)) for value in values]
    producer.flush(70)
    producer.close()
    return {value for value, future in futures if future.succeeded()}


def read_all(client, bootstrap, topic):
    """Every value of partition 0, read with the consumer of ``client``."""
    if client == "confluent-kafka":
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader",
                             "auto.offset.reset": "earliest"})
        _, end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, 0)])
        values = []
        while len(values) < end:
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                values.append(msg.value())
        consumer.close()
        return values
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    partition = KafkaTopicPartition(topic, 0)
    consumer.assign([partition])
    end = consumer.end_offsets([partition])[partition]
    values = []
    while len(values) < end:
        for records in consumer.poll(timeout_ms=1000).values():
            values += [record.value for record in records]
    consumer.close()
    return values


@pytest.mark.timeout(120)
@pytest.mark.parametrize("client", ["confluent-kafka", "kafka-python"])
def test_idempotent_producer_survives_leader_kill(kafka_cluster, client):
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    kafka_cluster.create_topic(topic, partitions=1, replication_factor=3,
                               configs={"min.insync.replicas": "2"})
    leader = kafka_cluster.leader_of(topic, 0)

    acked = send_all(client, kafka_cluster.bootstrap_servers, topic,
                     [b"before-%d" % i for i in range(100)])
    kafka_cluster.kill(leader)  # SIGKILL: no goodbye to anyone
    acked |= send_all(client, kafka_cluster.bootstrap_servers, topic,
                      [b"after-%d" % i for i in range(100)])

    assert kafka_cluster.leader_of(topic, 0) not in (leader, -1)
    assert len(acked) == 200  # the producer retried until the new leader took them
    values = read_all(client, kafka_cluster.bootstrap_servers, topic)
    assert sorted(values) == sorted(acked)  # each acknowledged message exactly once
