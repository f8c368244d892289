"""A consumer group survives a pause (SIGSTOP) of its group coordinator: the coordinator
moves to another broker, the consumer goes on reading and committing, and in the end it has
seen every message and committed the end of the partition.

Needs pykbroker installed (its pytest plugin gives the ``kafka_cluster`` fixture) and a
ZooKeeper (``apt-get install zookeeper`` or ``ZOOKEEPER_HOME``); otherwise the test skips.
"""

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata


class ConfluentGroupReader:
    def __init__(self, bootstrap, topic, group):
        self.topic = topic
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                  "session.timeout.ms": 30000,
                                  # A paused broker keeps its sockets open and answers nothing:
                                  # give up on a request after 10 s (default 60 s), as with
                                  # kafka-python's request_timeout_ms below.
                                  "socket.timeout.ms": 10000})
        self.consumer.subscribe([topic])

    def poll(self):
        msg = self.consumer.poll(0.5)
        return [] if msg is None or msg.error() else [msg.value()]

    def commit(self, offset):
        self.consumer.commit(offsets=[TopicPartition(self.topic, 0, offset)],
                             asynchronous=False)

    def committed(self, topic):
        return self.consumer.committed([TopicPartition(topic, 0)], timeout=10)[0].offset

    def close(self):
        self.consumer.close()


class KafkaPythonGroupReader:
    def __init__(self, bootstrap, topic, group):
        self.topic = topic
        self.consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                      auto_offset_reset="earliest", enable_auto_commit=False,
                                      session_timeout_ms=10000, heartbeat_interval_ms=1000,
                                      request_timeout_ms=12000)

    def poll(self):
        batches = self.consumer.poll(timeout_ms=500).values()
        return [record.value for records in batches for record in records]

    def commit(self, offset):
        self.consumer.commit({KafkaTopicPartition(self.topic, 0): OffsetAndMetadata(offset, "", -1)})

    def committed(self, topic):
        return self.consumer.committed(KafkaTopicPartition(topic, 0))

    def close(self):
        self.consumer.close()


READERS = {"confluent-kafka": ConfluentGroupReader, "kafka-python": KafkaPythonGroupReader}


def read_and_commit(reader, seen, until, timeout=60):
    """Poll until ``until`` distinct values were seen, then commit offset ``until``. While
    the coordinator moves the commit fails: retry, polling meanwhile (the consumer may have
    to join the group again)."""
    deadline = time.monotonic() + timeout
    while len(set(seen)) < until:
        assert time.monotonic() < deadline, f"read {len(set(seen))} of {until}"
        seen += reader.poll()
    while True:
        try:
            reader.commit(until)
            return
        except (KafkaException, KafkaError):
            assert time.monotonic() < deadline, "could not commit"
            seen += reader.poll()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("client", sorted(READERS))
def test_consumer_group_survives_coordinator_pause(kafka_cluster, client):
    topic = f"events-{uuid.uuid4().hex[:8]}"
    kafka_cluster.create_topic(topic, partitions=1, replication_factor=3)
    producer = Producer({"bootstrap.servers": kafka_cluster.bootstrap_servers, "acks": "all"})
    for i in range(200):
        producer.produce(topic, b"event-%d" % i)
    assert producer.flush(30) == 0

    reader = READERS[client](kafka_cluster.bootstrap_servers, topic, f"group-{client}")
    seen = []
    read_and_commit(reader, seen, until=100)
    # One partition for __consumer_offsets: its leader is every group's coordinator.
    coordinator = kafka_cluster.leader_of("__consumer_offsets", 0)
    kafka_cluster.pause(coordinator)  # SIGSTOP: sockets open, no answers
    read_and_commit(reader, seen, until=200)
    assert kafka_cluster.leader_of("__consumer_offsets", 0) != coordinator
    kafka_cluster.resume(coordinator)

    assert sorted(set(seen)) == sorted(b"event-%d" % i for i in range(200))
    assert reader.committed(topic) == 200
    reader.close()
