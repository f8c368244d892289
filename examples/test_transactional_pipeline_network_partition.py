"""A transactional consume-transform-produce loop survives a network partition that cuts its
transaction coordinator off from the other brokers for a while: every input message ends up
in the output topic exactly once (as a read_committed consumer sees it).

Needs pykbroker installed (its pytest plugin gives the ``kafka_cluster`` fixture) and a
ZooKeeper (``apt-get install zookeeper`` or ``ZOOKEEPER_HOME``); otherwise the test skips.
"""

import threading
import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

N = 60


class ConfluentPipeline:
    def __init__(self, bootstrap, source, sink, group):
        self.source, self.sink = source, sink
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                  "enable.auto.commit": False,
                                  "isolation.level": "read_committed"})
        self.producer = Producer({"bootstrap.servers": bootstrap,
                                  "transactional.id": f"{group}-txn"})
        self.producer.init_transactions(30)
        self.committed_up_to = 0
        self.rewind()

    def rewind(self):
        """Go back to the offset the last committed transaction stored."""
        committed = self.consumer.committed([TopicPartition(self.source, 0)], timeout=30)[0]
        offset = committed.offset if committed.offset >= 0 else OFFSET_BEGINNING
        self.committed_up_to = max(committed.offset, 0)
        self.consumer.assign([TopicPartition(self.source, 0, offset)])

    def process_batch(self):
        msgs = [m for m in self.consumer.consume(10, timeout=1.0) if not m.error()]
        if not msgs:
            return
        self.producer.begin_transaction()
        for msg in msgs:
            self.producer.produce(self.sink, msg.value().upper(), partition=0)
        self.producer.send_offsets_to_transaction(
            [TopicPartition(self.source, 0, msgs[-1].offset() + 1)],
            self.consumer.consumer_group_metadata(), 30)
        while True:
            try:
                self.producer.commit_transaction(30)
                self.committed_up_to = msgs[-1].offset() + 1
                return
            except KafkaException as exc:
                if exc.args[0].retriable():
                    continue
                if not exc.args[0].txn_requires_abort():
                    raise
                self.producer.abort_transaction(30)
                self.rewind()
                return


class KafkaPythonPipeline:
    def __init__(self, bootstrap, source, sink, group):
        self.sink, self.group = sink, group
        self.partition = KafkaTopicPartition(source, 0)
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                      enable_auto_commit=False, auto_offset_reset="earliest",
                                      isolation_level="read_committed")
        self.consumer.assign([self.partition])
        self.producer = KafkaProducer(bootstrap_servers=bootstrap,
                                      transactional_id=f"{group}-txn")
        self.producer.init_transactions()
        self.committed_up_to = 0
        self.rewind()

    def rewind(self):
        """Go back to the offset the last committed transaction stored."""
        self.committed_up_to = self.consumer.committed(self.partition) or 0
        self.consumer.seek(self.partition, self.committed_up_to)

    def process_batch(self):
        records = self.consumer.poll(timeout_ms=1000, max_records=10).get(self.partition, [])
        if not records:
            return
        try:
            self.producer.begin_transaction()
            for record in records:
                self.producer.send(self.sink, record.value.upper(), partition=0)
            self.producer.send_offsets_to_transaction(
                {self.partition: OffsetAndMetadata(records[-1].offset + 1, "", -1)}, self.group)
            self.producer.commit_transaction()
            self.committed_up_to = records[-1].offset + 1
        except KafkaError:
            self.producer.abort_transaction()
            self.rewind()


PIPELINES = {"confluent-kafka": ConfluentPipeline, "kafka-python": KafkaPythonPipeline}


def committed_output(bootstrap, topic):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "checker",
                         "isolation.level": "read_committed"})
    _, end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.assign([TopicPartition(topic, 0, 0)])
    values, position = [], 0
    while position < end - 1:  # the last offset of a committed topic is a commit marker
        msg = consumer.poll(1.0)
        if msg is None:
            break
        if not msg.error():
            values.append(msg.value())
            position = msg.offset()
    consumer.close()
    return values


@pytest.mark.timeout(180)
@pytest.mark.parametrize("client", sorted(PIPELINES))
def test_transactional_pipeline_survives_network_partition(kafka_cluster, client):
    tag = uuid.uuid4().hex[:8]
    source, sink = f"words-{tag}", f"shouted-{tag}"
    for topic in (source, sink):
        kafka_cluster.create_topic(topic, partitions=1, replication_factor=3)
    producer = Producer({"bootstrap.servers": kafka_cluster.bootstrap_servers, "acks": "all"})
    for i in range(N):
        producer.produce(source, b"word-%d" % i, partition=0)
    assert producer.flush(30) == 0

    pipeline = PIPELINES[client](kafka_cluster.bootstrap_servers, source, sink, f"app-{tag}")
    for _ in range(2):
        pipeline.process_batch()
    # One partition for __transaction_state: its leader is every transaction's coordinator.
    coordinator = kafka_cluster.leader_of("__transaction_state", 0)
    others = [b for b in kafka_cluster.broker_ids if b != coordinator]
    kafka_cluster.partition([coordinator], others)
    healer = threading.Timer(8.0, kafka_cluster.heal)
    healer.start()
    try:
        deadline = time.monotonic() + 120
        while pipeline.committed_up_to < N:
            assert time.monotonic() < deadline
            pipeline.process_batch()
    finally:
        healer.join()

    output = committed_output(kafka_cluster.bootstrap_servers, sink)
    assert sorted(output) == sorted(b"WORD-%d" % i for i in range(N))  # each exactly once
