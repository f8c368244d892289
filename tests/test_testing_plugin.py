"""pykbroker.testing: the fixtures against an external broker, fault injection, trio."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio
from confluent_kafka import Producer

from compat_tests.broker_process import BrokerProcess
from pykbroker.error_codes import ErrorCode
from pykbroker.protocol.api import ApiKey
from pykbroker.testing import KafkaBroker, open_broker

SUITE = Path(__file__).parent / "fixture_suite"


@pytest.mark.timeout(180)
def test_same_suite_passes_with_kafka_bootstrap(tmp_path: Path) -> None:
    external = BrokerProcess(tmp_path / "data").start()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(SUITE),
             f"--kafka-bootstrap={external.bootstrap}"],
            capture_output=True, text=True, timeout=170)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "3 passed" in result.stdout
        # The topics were created on the external broker, not an in-process one.
        assert external.log().count("created topic test-") == 3
    finally:
        external.close()


@pytest.mark.timeout(60)
def test_produce_fails_twice_then_confluent_retries(kafka_broker: KafkaBroker,
                                                    kafka_topic: str) -> None:
    faults = kafka_broker.faults
    before = faults.count(ApiKey.PRODUCE)
    faults.fail_next(ApiKey.PRODUCE, ErrorCode.NOT_LEADER_OR_FOLLOWER, count=2)
    delivered: list[tuple[object, int]] = []
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap_servers,
                         "retry.backoff.ms": 10, "linger.ms": 0})
    producer.produce(kafka_topic, value=b"hello",
                     on_delivery=lambda err, msg: delivered.append((err, msg.offset())))
    assert producer.flush(30) == 0
    assert delivered == [(None, 0)]
    # Two failed attempts and the successful one.
    assert faults.count(ApiKey.PRODUCE) - before == 3


@pytest.mark.timeout(60)
def test_latency_and_dropped_connections(kafka_broker: KafkaBroker, kafka_topic: str) -> None:
    faults = kafka_broker.faults
    faults.drop_next(ApiKey.PRODUCE, 1)
    faults.add_latency(ApiKey.PRODUCE, 0.3)
    try:
        producer = Producer({"bootstrap.servers": kafka_broker.bootstrap_servers,
                             "retry.backoff.ms": 10})
        started = time.monotonic()
        producer.produce(kafka_topic, value=b"x")
        assert producer.flush(30) == 0
        assert time.monotonic() - started >= 0.3
    finally:
        faults.reset()


def test_start_up_to_first_metadata_is_fast() -> None:
    from pykbroker.protocol._generated.metadata_request import MetadataRequest
    from pykbroker.testing import _Client

    started = time.monotonic()
    with KafkaBroker() as broker:
        client = _Client(broker.bootstrap_servers)
        resp = client.send(3, 12, MetadataRequest(topics=None))
        elapsed = time.monotonic() - started
        client.close()
    assert resp.brokers[0].node_id == 1
    print(f"start-up to first Metadata answer: {elapsed * 1000:.0f} ms")


@pytest.mark.trio
async def test_open_broker_in_trio() -> None:
    async with open_broker(num_partitions=2) as broker:
        port = broker.bound_ports["PLAINTEXT"]
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.aclose()
        assert broker.config.num_partitions == 2
