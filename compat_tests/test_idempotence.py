"""Idempotent producers through connections dropped mid-flight: exactly once, in order."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from compat_tests.chaos_proxy import broker_behind_proxy

N = 100_000
PARTITIONS = 3


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_confluent_idempotent_producer_survives_connection_drops(
    tmp_path: Path, topic_name: str
) -> None:
    with broker_behind_proxy(tmp_path / "data", drop_every_s=0.4,
                             response_drop_probability=0.03) as (proxy, bootstrap):
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic_name, PARTITIONS, 1)])[topic_name].result(30)
        proxy.chaos.set()
        producer = Producer({
            "bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "batch.num.messages": 500, "message.timeout.ms": 120_000,
            "retry.backoff.ms": 50, "reconnect.backoff.ms": 10,
        })
        failures: list[str] = []

        def report(err: object, msg: object) -> None:
            if err is not None:
                failures.append(str(err))

        for i in range(N):
            while True:
                try:
                    producer.produce(topic_name, key=str(i % PARTITIONS).encode(),
                                     value=b"%d" % i, partition=i % PARTITIONS,
                                     on_delivery=report)
                    break
                except BufferError:
                    producer.poll(0.05)
            if i % 1000 == 0:
                producer.poll(0)
        assert producer.flush(180) == 0
        assert failures == []
        assert proxy.drops > 3 and proxy.response_drops > 3, "the proxy must really drop"
        proxy.chaos.clear()

        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "verify",
                             "enable.auto.commit": False, "fetch.max.bytes": 10_000_000})
        consumer.assign([TopicPartition(topic_name, p, 0) for p in range(PARTITIONS)])
        seen: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
        deadline = time.monotonic() + 120
        total = 0
        while total < N and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, 1.0):
                assert msg.error() is None, msg.error()
                seen[msg.partition()].append(int(msg.value()))
                total += 1
        consumer.close()
        for p in range(PARTITIONS):
            assert seen[p] == list(range(p, N, PARTITIONS)), f"partition {p} differs"
