"""kcat (librdkafka's command-line client, Debian package ``kcat``) against the broker:
metadata listing (text and JSON), producing lines and consuming them back.

kcat is required, not optional: CI installs it (``apt-get install -y kcat``). Debian's kcat
bundles an older librdkafka than confluent-kafka's wheel, so it uses older API versions.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as TP
from confluent_kafka.admin import AdminClient, NewTopic

from compat_tests.broker_process import BrokerProcess

pytestmark = pytest.mark.timeout(180)

KCAT_TIMEOUT = 30.0


@pytest.fixture
def kcat() -> str:
    path = shutil.which("kcat")
    if path is None:
        pytest.fail("kcat is not installed (it is required): apt-get install -y kcat")
    return path


def run_kcat(kcat: str, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run([kcat, *args], input=stdin, capture_output=True, text=True,
                          timeout=KCAT_TIMEOUT)
    assert proc.returncode == 0, (
        f"kcat {' '.join(args)} exited {proc.returncode}\nstdout: {proc.stdout[-2000:]}\n"
        f"stderr: {proc.stderr[-2000:]}")
    return proc.stdout


def create_topic(broker: BrokerProcess, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=10)[name].result(15)


def consume_with_confluent(broker: BrokerProcess, topic: str, partition: int, count: int
                           ) -> list[tuple[int, bytes | None, bytes | None]]:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "kcat-check",
                         "enable.auto.commit": False})
    try:
        consumer.assign([TP(topic, partition, 0)])
        out: list[tuple[int, bytes | None, bytes | None]] = []
        deadline = time.monotonic() + 15
        while len(out) < count:
            assert time.monotonic() < deadline, f"only {len(out)} of {count} messages"
            for msg in consumer.consume(count, 0.5):
                assert msg.error() is None, msg.error()
                out.append((msg.offset(), msg.key(), msg.value()))
        return out
    finally:
        consumer.close()


def test_kcat_lists_broker_and_topics(broker: BrokerProcess, kcat: str) -> None:
    names = [f"kcat-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    create_topic(broker, names[0], 3)
    create_topic(broker, names[1], 1)
    out = run_kcat(kcat, "-b", broker.bootstrap, "-L", "-m", "10")
    lines = [line.strip() for line in out.splitlines()]
    assert "1 brokers:" in lines, out
    assert any(line.startswith(f"broker 1 at {broker.bootstrap}") for line in lines), out
    assert "2 topics:" in lines, out
    assert f'topic "{names[0]}" with 3 partitions:' in lines, out
    assert f'topic "{names[1]}" with 1 partitions:' in lines, out
    for p in range(3):
        assert f"partition {p}, leader 1, replicas: 1, isrs: 1" in lines, out
    # One topic only.
    out = run_kcat(kcat, "-b", broker.bootstrap, "-L", "-t", names[1], "-m", "10")
    assert f'topic "{names[1]}" with 1 partitions:' in out and names[0] not in out, out


def test_kcat_metadata_json(broker: BrokerProcess, kcat: str) -> None:
    topic = f"kcat-{uuid.uuid4().hex[:8]}"
    create_topic(broker, topic, 3)
    md = json.loads(run_kcat(kcat, "-b", broker.bootstrap, "-L", "-J", "-m", "10"))
    assert md["brokers"] == [{"id": 1, "name": broker.bootstrap}]
    assert md["controllerid"] == 1
    assert md["originating_broker"]["id"] == 1
    (entry,) = [t for t in md["topics"] if t["topic"] == topic]
    assert "error" not in entry, entry
    parts = sorted(entry["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in parts] == [0, 1, 2]
    for p in parts:
        assert p["leader"] == 1, p
        assert p["replicas"] == [{"id": 1}], p
        assert p["isrs"] == [{"id": 1}], p
        assert "error" not in p, p
    # An unknown topic is reported with its error (and not auto-created by a listing).
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    md = json.loads(run_kcat(kcat, "-b", broker.bootstrap, "-L", "-J", "-t", missing, "-m", "10",
                             "-X", "allow.auto.create.topics=false"))
    assert md["topics"] == [
        {"topic": missing, "error": "Broker: Unknown topic or partition", "partitions": []}]


LINES = [f"key-{i}:value number {i}" for i in range(50)]
FORMAT = "%k=%s@%o\\n"


def _produce_lines(broker: BrokerProcess, kcat: str, topic: str, *partition: str) -> None:
    run_kcat(kcat, "-b", broker.bootstrap, "-P", "-t", topic, *partition, "-K", ":",
             "-X", "message.timeout.ms=10000", stdin="\n".join(LINES) + "\n")


def _expected() -> list[str]:
    return [f"{line.replace(':', '=', 1)}@{i}" for i, line in enumerate(LINES)]


def test_kcat_produce_then_consume_from_offset_0(broker: BrokerProcess, kcat: str) -> None:
    topic = f"kcat-{uuid.uuid4().hex[:8]}"
    create_topic(broker, topic, 1)
    _produce_lines(broker, kcat, topic, "-p", "0")
    # What kcat produced is what a different client reads, at offsets 0..n-1.
    got = consume_with_confluent(broker, topic, 0, len(LINES))
    assert [(o, k, v) for o, k, v in got] == [
        (i, line.split(":", 1)[0].encode(), line.split(":", 1)[1].encode())
        for i, line in enumerate(LINES)]
    out = run_kcat(kcat, "-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "0", "-e",
                   "-f", FORMAT)
    assert out.splitlines() == _expected()


def test_kcat_produce_then_consume_from_beginning(broker: BrokerProcess, kcat: str) -> None:
    topic = f"kcat-{uuid.uuid4().hex[:8]}"
    create_topic(broker, topic, 1)
    _produce_lines(broker, kcat, topic, "-p", "0")
    out = run_kcat(kcat, "-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning",
                   "-e", "-f", FORMAT)
    assert out.splitlines() == _expected()


def test_kcat_all_partitions_from_beginning(broker: BrokerProcess, kcat: str) -> None:
    """Without -p kcat spreads keyed lines over partitions and reads all of them back."""
    topic = f"kcat-{uuid.uuid4().hex[:8]}"
    create_topic(broker, topic, 3)
    _produce_lines(broker, kcat, topic)
    out = run_kcat(kcat, "-b", broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e",
                   "-f", "%k=%s\\n")
    assert sorted(out.splitlines()) == sorted(line.replace(":", "=", 1) for line in LINES)
