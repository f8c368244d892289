"""The Prometheus endpoint: a real broker, real clients, scrapes over HTTP."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from confluent_kafka import Consumer, Producer

from pykbroker.metrics_http import parse_head, render
from pykbroker.testing import KafkaBroker, open_broker
from tests.zk_fixtures import ZooKeeperChroot

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, line
        labels = frozenset(_LABEL.findall(m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum over every series of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def scrape(port: int) -> Samples:
    status, content_type, body = get(port, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    return parse(body)


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    with KafkaBroker(**{"metrics.port": "0"}) as b:
        yield b


@pytest.fixture
def port(broker: KafkaBroker) -> int:
    assert broker.broker is not None and broker.broker.metrics_port
    return broker.broker.metrics_port


def test_health_endpoints(port: int) -> None:
    assert get(port, "/healthz")[0] == 200
    assert get(port, "/readyz")[0] == 200
    assert get(port, "/nope")[0] == 404


def test_produce_consume_move_the_series(broker: KafkaBroker, port: int) -> None:
    topic = f"metrics-{uuid.uuid4().hex[:8]}"
    broker.create_topic(topic, partitions=2)
    before = scrape(port)
    n = 25
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 5})
    for i in range(n):
        producer.produce(topic, key=str(i).encode(), value=b"x" * 100)
    assert producer.flush(15) == 0
    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        got = 0
        deadline = time.monotonic() + 20
        while got < n and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got += 1
        assert got == n
        consumer.commit(asynchronous=False)
        after = scrape(port)
    finally:
        consumer.close()

    m_in = "kafka_server_brokertopicmetrics_messagesin_total"
    assert value(after, m_in, topic=topic) - value(before, m_in, topic=topic) == n
    assert value(after, m_in) >= value(before, m_in) + n  # the all-topics series
    b_in = "kafka_server_brokertopicmetrics_bytesin_total"
    assert value(after, b_in, topic=topic) > n * 100
    b_out = "kafka_server_brokertopicmetrics_bytesout_total"
    assert value(after, b_out, topic=topic) > value(before, b_out, topic=topic)
    assert value(after, b_out, topic=topic) >= n * 100

    reqs = "kafka_network_requestmetrics_requests_total"
    for request in ("Produce", "Fetch", "Metadata", "ApiVersions"):
        assert total(after, reqs, request=request) > total(before, reqs, request=request), \
            request
    versions = {dict(ls)["version"] for name, ls in after
                if name == reqs and ("request", "Produce") in ls}
    assert versions and all(v.isdigit() for v in versions)
    lat = "kafka_network_requestmetrics_totaltimems"
    assert total(after, lat + "_count", request="Fetch") == total(after, reqs, request="Fetch")
    assert total(after, lat + "_bucket", request="Produce", le="+Inf") >= 1
    assert total(after, lat + "_sum", request="Produce") > 0

    lv = {"topic": topic, "partition": "0"}
    assert ("kafka_log_log_size", frozenset(lv.items())) in after
    sizes = sum(value(after, "kafka_log_log_size", topic=topic, partition=str(p))
                for p in range(2))
    assert sizes > n * 100
    offsets = sum(value(after, "kafka_topic_partition_current_offset", topic=topic,
                        partition=str(p)) for p in range(2))
    assert offsets == n
    assert value(after, "kafka_topic_partition_oldest_offset", **lv) == 0
    assert value(after, "kafka_topic_partitions", topic=topic) == 2
    assert value(after, "kafka_server_replicamanager_partitioncount") >= 2
    assert ("kafka_server_replicamanager_underreplicatedpartitions", frozenset()) in after
    assert value(after, "kafka_server_replicamanager_underreplicatedpartitions") == 0
    assert total(after, "kafka_server_socket_server_metrics_connection_count",
                 listener="PLAINTEXT") >= 1
    assert total(after, "kafka_server_socket_server_metrics_outgoing_byte_total") > 0

    # Everything consumed and committed: lag 0 on each partition the group committed.
    lags = {ls: v for (name, ls), v in after.items()
            if name == "kafka_consumergroup_lag" and ("consumergroup", group) in ls}
    assert lags and all(v == 0 for v in lags.values())
    committed = total(after, "kafka_consumergroup_current_offset", consumergroup=group)
    assert committed == n
    assert value(after, "pykbroker_info", version=_version(after),
                 node_id=_node(after)) == 1


def _version(samples: Samples) -> str:
    return next(dict(ls)["version"] for n, ls in samples if n == "pykbroker_info")


def _node(samples: Samples) -> str:
    return next(dict(ls)["node_id"] for n, ls in samples if n == "pykbroker_info")


def test_a_lone_broker_is_the_active_controller_leading_all(broker: KafkaBroker,
                                                            port: int) -> None:
    topic = f"ctl-{uuid.uuid4().hex[:8]}"
    broker.create_topic(topic, partitions=3)
    samples = scrape(port)
    ctl = "kafka_controller_kafkacontroller_"
    assert value(samples, ctl + "activecontrollercount") == 1
    assert value(samples, ctl + "offlinepartitionscount") == 0
    assert value(samples, ctl + "preferredreplicaimbalancecount") == 0
    assert value(samples, ctl + "globaltopiccount") == sum(
        1 for n, _ in samples if n == "kafka_topic_partitions")
    rm = "kafka_server_replicamanager_"
    hosted = value(samples, rm + "partitioncount")
    assert hosted >= 3
    assert value(samples, rm + "leadercount") == hosted
    assert value(samples, ctl + "globalpartitioncount") == hosted
    assert value(samples, rm + "atminisrpartitioncount") == hosted  # ISR 1, min.insync 1
    assert value(samples, rm + "underminisrpartitioncount") == 0


def test_lag_follows_new_messages(broker: KafkaBroker, port: int) -> None:
    topic = f"lag-{uuid.uuid4().hex[:8]}"
    broker.create_topic(topic)
    group = f"g-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    for _ in range(3):
        producer.produce(topic, b"a")
    producer.flush(10)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        got = 0
        deadline = time.monotonic() + 20
        while got < 3 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got += 1
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    for _ in range(4):
        producer.produce(topic, b"b")
    producer.flush(10)
    after = scrape(port)
    assert value(after, "kafka_consumergroup_lag", consumergroup=group, topic=topic,
                 partition="0") == 4


def test_http_parsing() -> None:
    assert parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nAccept: text/plain\r\nHost: a") == (
        "GET", "/metrics", {"accept": "text/plain", "host": "a"})
    assert parse_head(b"garbage") is None
    assert parse_head(b"GET / SPDY/3") is None
    assert render(200, "text/plain", b"hi", head_only=True).endswith(b"\r\n\r\n")
    assert b"Content-Length: 2" in render(200, "text/plain", b"hi")


@pytest.mark.trio
async def test_readyz_is_503_during_shutdown() -> None:
    async with open_broker(**{"metrics.port": "0"}) as broker:
        port = broker.metrics_port
        assert port

        async def probe(path: str) -> int:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                data = b""
                while chunk := await stream.receive_some(65536):
                    data += chunk
            return int(data.split(b" ", 2)[1])

        assert await probe("/readyz") == 200
        assert broker.services is not None
        broker.services.replicas.shutting_down = True  # what shutdown sets first
        assert await probe("/readyz") == 503
        assert await probe("/healthz") == 200
        broker.services.replicas.shutting_down = False


def test_readyz_in_a_cluster_waits_for_the_controllers_metadata(
        tmp_path: Path, zookeeper: ZooKeeperChroot) -> None:
    """A cluster member is ready once the controller's UpdateMetadata came (its Metadata
    answers are the cluster's), not merely once its listeners accept."""
    with KafkaBroker(tmp_path, **{"zookeeper.connect": zookeeper.hosts, "broker.id": "1",
                                  "metrics.port": "0"}) as b:
        assert b.broker is not None and b.broker.metrics_port and b.broker.services
        port, member = b.broker.metrics_port, b.broker.services.cluster
        assert member is not None
        deadline = time.monotonic() + 20
        while get(port, "/readyz")[0] != 200:
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.05)
        assert member.cache.controller_epoch >= 0  # the controller (itself) sent it
        epoch, member.cache.controller_epoch = member.cache.controller_epoch, -1
        try:  # as before the first UpdateMetadata
            assert get(port, "/readyz")[0] == 503
            assert get(port, "/healthz")[0] == 200
        finally:
            member.cache.controller_epoch = epoch
        assert get(port, "/readyz")[0] == 200


@pytest.mark.trio
async def test_metrics_off_by_default() -> None:
    async with open_broker() as broker:
        assert broker.metrics is None and broker.metrics_port is None


_CLEANER = ("kafka_log_logcleaner_max_clean_time_secs",
            "kafka_log_logcleaner_cleaner_recopy_percent",
            "kafka_log_logcleanermanager_max_dirty_percent")


def test_log_cleaner_gauges_follow_a_cleaning() -> None:
    with KafkaBroker(**{"metrics.port": "0", "log.cleaner.backoff.ms": "50"}) as broker:
        assert broker.broker is not None and broker.broker.metrics_port
        port = broker.broker.metrics_port
        before = scrape(port)
        for name in _CLEANER:
            assert (name, frozenset()) in before, name
            assert value(before, name) == 0, name
        topic = f"compact-{uuid.uuid4().hex[:8]}"
        broker.create_topic(topic, configs={
            "cleanup.policy": "compact", "segment.bytes": "4096",
            "min.cleanable.dirty.ratio": "0.01"})
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 5,
                             "batch.num.messages": 20})  # many batches: segments roll
        for i in range(2000):  # 10 keys, 200 values each: mostly duplicates
            producer.produce(topic, key=str(i % 10).encode(), value=b"v" * 50)
        assert producer.flush(15) == 0
        cleaner = broker.broker.log_cleaner
        deadline = time.monotonic() + 20
        while cleaner.cleanings == 0:
            assert time.monotonic() < deadline, "no cleaning"
            time.sleep(0.05)
        after = scrape(port)
        clean_time = value(after, _CLEANER[0])
        assert clean_time == pytest.approx(cleaner.max_clean_time_secs)
        assert 0 < clean_time < 20
        recopy = value(after, _CLEANER[1])
        assert recopy == pytest.approx(cleaner.cleaner_recopy_percent)
        assert 0 < recopy < 50  # ten records kept of 2000
        dirty = value(after, _CLEANER[2])
        assert dirty == pytest.approx(cleaner.max_dirty_percent)
        assert 0 <= dirty <= 100


def test_quota_metrics_follow_a_throttled_client(tmp_path: object) -> None:
    """Kafka's per-client quota metrics: none before a quota exists, then byte rate,
    throttle time and throttled responses for the client's sensor."""
    from pykbroker.protocol._generated.alter_client_quotas_request import (
        AlterClientQuotasRequest,
        EntityData,
        EntryData,
        OpData,
    )
    from tests.quotas.test_broker_quotas import Client

    with KafkaBroker(**{"metrics.port": "0"}) as broker:
        assert broker.broker is not None and broker.broker.metrics_port
        port = broker.broker.metrics_port
        assert not total(scrape(port), "kafka_server_produce_byte_rate")
        admin = Client(broker.bootstrap_servers, "admin")
        try:
            resp = admin.send(49, 1, AlterClientQuotasRequest(entries=[EntryData(
                entity=[EntityData("client-id", "metered")],
                ops=[OpData("producer_byte_rate", 5000.0, False)])]))
            assert resp.entries[0].error_code == 0
        finally:
            admin.close()
        topic = f"quota-{uuid.uuid4().hex[:8]}"
        broker.create_topic(topic)
        throttles: list[float] = []
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers,
                             "client.id": "metered", "linger.ms": 5, "batch.size": 8192,
                             "throttle_cb": lambda e: throttles.append(e.throttle_time)})
        for _ in range(80):  # ~10 s of quota is allowed at once (the window), then throttled
            producer.produce(topic, b"m" * 1000)
            producer.poll(0)
        assert producer.flush(60) == 0
        assert any(t > 0 for t in throttles)
        samples = scrape(port)
        labels = {"user": "", "client_id": "metered"}
        assert value(samples, "kafka_server_produce_byte_rate", **labels) > 0
        assert value(samples, "kafka_server_produce_throttle_time_ms_total", **labels) > 0
        assert value(samples, "kafka_server_produce_throttled_requests_total", **labels) > 0
