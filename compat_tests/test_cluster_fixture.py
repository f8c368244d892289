"""The ``kafka_cluster`` fixture and ``open_cluster()`` (issue #19): a real cluster (ZooKeeper,
broker subprocesses, a fault proxy on every link) with fault controls, seen by stock clients.

* Start-up and cleanup: ready for clients in under 10 s; nothing left behind (processes,
  listening ports, directories) after a normal close, a failed pytest test, or SIGINT.
* One test per fault control, each showing its effect with confluent-kafka or kafka-python
  and counting every acknowledged message: kill + restart, pause/resume, stop (controlled
  shutdown), isolate + heal, partition, cut_zookeeper, delay, drop, and the per-API hooks
  (fail_next, add_latency, drop_next) on one broker's client link.

Tests that heal their faults share one cluster (the fixture undoes faults and reuses it).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import trio
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource
from kafka import KafkaProducer

from pykbroker.cluster.broker_client import BrokerConnection
from pykbroker.protocol._generated.api_versions_request import ApiVersionsRequest
from pykbroker.protocol._generated.metadata_request import MetadataRequest
from pykbroker.testing import ApiKey, ErrorCode, KafkaCluster, open_cluster, open_cluster_async

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

RDKAFKA_LOG = logging.getLogger("compat.rdkafka")
SESSION_S = 6.0  # the fixture's zookeeper.session.timeout.ms


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def produce(bootstrap: str, topic: str, values: Iterable[bytes], *, timeout: float = 60.0,
            **config: Any) -> set[bytes]:
    """Send every value with confluent-kafka; the set acknowledged (delivery without error)."""
    acked: set[bytes] = set()

    def on_delivery(err: Any, msg: Any) -> None:
        if err is None:
            acked.add(msg.value())

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                         "enable.idempotence": True, "message.timeout.ms": int(timeout * 1000),
                         "logger": RDKAFKA_LOG, **config})
    for value in values:
        producer.produce(topic, value, partition=0, on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(timeout + 10) == 0, "messages still in flight"
    return acked


def read_all(bootstrap: str, topic: str, timeout: float = 30.0) -> list[bytes]:
    """Every record of partition 0 below the high watermark, in order (confluent-kafka)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": name("reader"),
                         "enable.auto.commit": False, "logger": RDKAFKA_LOG})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=timeout)
        consumer.assign([TopicPartition(topic, 0, 0)])
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        position = 0
        while position < high:
            assert time.monotonic() < deadline, f"read {position} of {high}"
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            values.append(msg.value())
            position = msg.offset() + 1
        return values
    finally:
        consumer.close()


def batch(tag: str, n: int) -> list[bytes]:
    return [f"{tag}-{i:05d}".encode() for i in range(n)]


def assert_exactly_once(cluster: KafkaCluster, topic: str, acked: set[bytes]) -> list[bytes]:
    """Every acknowledged value is in the log exactly once."""
    values = read_all(cluster.bootstrap_servers, topic)
    counts: dict[bytes, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    missing = sorted(acked - counts.keys())
    duplicated = sorted(v for v in acked if counts.get(v, 0) > 1)
    assert not missing, f"{len(missing)} acknowledged messages lost: {missing[:5]}"
    assert not duplicated, f"duplicates: {duplicated[:5]}"
    return values


def process_state(pid: int) -> str:
    """The state letter of /proc/<pid>/stat (R, S, T for stopped...)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    try:
        return process_state(pid) != "Z"
    except FileNotFoundError:
        return False


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def footprint(cluster: KafkaCluster) -> dict[str, Any]:
    """What a cluster leaves behind if cleanup fails: pids, ports, directories."""
    pids = [cluster.pid(i) for i in cluster.broker_ids]
    ports = [link.port for link in cluster.links()]
    for broker in cluster.brokers.values():
        listeners = broker.configs["listeners"]
        ports += [int(a.rsplit(":", 1)[1]) for a in listeners.split(",")]
    ports.append(cluster.zookeeper.port)
    assert cluster.zookeeper.directory is not None
    return {"pids": [p for p in pids if p is not None] + [cluster.zookeeper.pid],
            "ports": ports,
            "dirs": [str(cluster.directory), str(cluster.zookeeper.directory)]}


def assert_nothing_left(trace: dict[str, Any]) -> None:
    assert len(trace["pids"]) >= 2 and trace["ports"] and trace["dirs"]
    for pid in trace["pids"]:
        assert not alive(pid), f"process {pid} still running"
    for port in trace["ports"]:
        assert not listening(port), f"port {port} still listening"
    for directory in trace["dirs"]:
        assert not Path(directory).exists(), f"{directory} still exists"


# -- start-up and cleanup ----------------------------------------------------------------------


def test_ready_in_under_ten_seconds_and_nothing_left_behind() -> None:
    began = time.monotonic()
    with open_cluster(3) as cluster:
        ready = time.monotonic() - began
        print(f"three-broker cluster ready for clients in {ready:.2f} s "
              f"(ZooKeeper included; cluster.ready_seconds={cluster.ready_seconds:.2f})")
        assert ready < 10.0
        trace = footprint(cluster)
        for pid in trace["pids"]:
            assert alive(pid)
        for port in [link.port for link in cluster.links()]:
            assert listening(port)
        # Ready means a stock client can use it at once.
        topic = name("ready")
        cluster.create_topic(topic)
        assert produce(cluster.bootstrap_servers, topic, batch("r", 10)) == set(batch("r", 10))
    assert_nothing_left(trace)


FAILING_TEST = textwrap.dedent("""
    import json, os

    import pytest

    @pytest.mark.kafka_cluster(brokers=2, fresh=True)
    def test_fails(kafka_cluster):
        brokers = kafka_cluster.brokers.values()
        trace = {
            "pids": [b.proc.pid for b in brokers] + [kafka_cluster.zookeeper.pid],
            "ports": [link.port for link in kafka_cluster.links()]
                     + [kafka_cluster.zookeeper.port],
            "dirs": [str(kafka_cluster.directory), str(kafka_cluster.zookeeper.directory)],
        }
        with open(os.environ["TRACE_FILE"], "w") as f:
            json.dump(trace, f)
        kafka_cluster.pause(1)  # a fault left in place
        assert False, "this test fails on purpose"
""")

INTERRUPTED_SCRIPT = textwrap.dedent("""
    import faulthandler, json, signal, sys, time

    from pykbroker.testing import open_cluster

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test's stacks on a hang

    # Ctrl-C as at a terminal, even when this run inherited SIGINT ignored (a background
    # job of a non-interactive shell: Python then leaves it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with open_cluster(2) as cluster:
        cluster.isolate(1)
        trace = {
            "pids": [cluster.pid(i) for i in cluster.broker_ids] + [cluster.zookeeper.pid],
            "ports": [link.port for link in cluster.links()] + [cluster.zookeeper.port],
            "dirs": [str(cluster.directory), str(cluster.zookeeper.directory)],
        }
        print(json.dumps(trace), flush=True)
        time.sleep(120)
""")


def test_failed_test_leaves_nothing_behind(tmp_path: Path) -> None:
    test_file = tmp_path / "test_fails_on_purpose.py"
    test_file.write_text(FAILING_TEST)
    trace_file = tmp_path / "trace.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(test_file)], capture_output=True, text=True, timeout=90,
                          cwd=tmp_path, env={**os.environ, "TRACE_FILE": str(trace_file)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed" in proc.stdout, proc.stdout
    assert "kafka_cluster logs" in proc.stdout  # the brokers' logs printed for the failure
    assert_nothing_left(json.loads(trace_file.read_text()))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_leaves_nothing_behind(sig: int) -> None:
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTED_SCRIPT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        trace = json.loads(line)
        for pid in trace["pids"]:
            assert alive(pid)
        proc.send_signal(sig)
        try:
            assert proc.wait(30) != 0
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError(f"no exit within 30 s of {sig!r}; its threads:\n{err}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_nothing_left(trace)


@pytest.mark.kafka_cluster(brokers=2, racks=["rack-a", "rack-b"], fresh=True,
                           broker_configs={2: {"message.max.bytes": "123456"}},
                           **{"num.partitions": "4"})
def test_marker_chooses_brokers_racks_and_configs(kafka_cluster: KafkaCluster) -> None:
    resp = kafka_cluster._request(1, 3, 1, MetadataRequest(topics=[]))
    assert {b.node_id: (f"{b.host}:{b.port}", b.rack) for b in resp.brokers} == {
        1: (kafka_cluster.bootstrap(1), "rack-a"), 2: (kafka_cluster.bootstrap(2), "rack-b")}
    admin = AdminClient({"bootstrap.servers": kafka_cluster.bootstrap_servers,
                         "logger": RDKAFKA_LOG})
    configs = {}
    for i in (1, 2):  # librdkafka asks about one broker per call
        resource = ConfigResource(ConfigResource.Type.BROKER, str(i))
        configs[i] = admin.describe_configs([resource])[resource].result(20)
    assert configs[1]["num.partitions"].value == configs[2]["num.partitions"].value == "4"
    assert configs[2]["message.max.bytes"].value == "123456"
    assert configs[1]["message.max.bytes"].value != "123456"


@pytest.mark.trio
async def test_open_cluster_async_from_trio() -> None:
    async with open_cluster_async(1) as cluster:
        assert await trio.to_thread.run_sync(cluster.controller) == 1
        host, port = cluster.bootstrap(1).rsplit(":", 1)
        connection = BrokerConnection(host, int(port), "trio-test")
        try:
            versions = await connection.request(18, 3, ApiVersionsRequest(
                client_software_name="trio-test", client_software_version="1"))
        finally:
            await connection.close()
        assert versions.error_code == 0
        assert cluster.faults(1).count(ApiKey.API_VERSIONS) == 1  # through the client proxy
        trace = footprint(cluster)
    assert_nothing_left(trace)


# -- process faults -----------------------------------------------------------------------------


def test_kill_leader_elects_a_new_one_and_restart_rejoins(kafka_cluster: KafkaCluster) -> None:
    topic = name("kill")
    kafka_cluster.create_topic(topic, configs={"min.insync.replicas": "2"})
    leader = kafka_cluster.leader_of(topic, 0)
    acked = produce(kafka_cluster.bootstrap_servers, topic, batch("before", 200))
    kafka_cluster.kill(leader)
    new_leader = kafka_cluster.wait_for_leader(topic, 0, not_in=[leader], timeout=SESSION_S + 15)
    assert new_leader != leader
    assert leader not in kafka_cluster.wait_for_isr(topic, 0, 2)
    acked |= produce(kafka_cluster.bootstrap_servers, topic, batch("after", 200))
    assert len(acked) == 400
    kafka_cluster.restart(leader)
    assert kafka_cluster.wait_for_isr(topic, 0, 3) == [1, 2, 3]
    assert_exactly_once(kafka_cluster, topic, acked)


def test_a_restarted_broker_names_the_controller_before_any_update_metadata(
        kafka_cluster: KafkaCluster) -> None:
    """Cut off from the other brokers, a restarted broker gets no UpdateMetadata from the
    controller; it still answers Metadata with the controller and the live brokers, read from
    ZooKeeper (with no controller in the answer librdkafka's admin client waits for one until
    its request times out: seen when a client bootstrapped from a broker just restarted)."""
    controller = kafka_cluster.controller()
    victim = next(i for i in kafka_cluster.broker_ids if i != controller)
    kafka_cluster.stop(victim)
    kafka_cluster.partition([victim])
    try:
        kafka_cluster.start_broker(victim)
        resp = kafka_cluster._request(victim, ApiKey.METADATA, 1, MetadataRequest(topics=[]),
                                      timeout=5.0)
        assert resp.controller_id == controller
        assert sorted(b.node_id for b in resp.brokers) == kafka_cluster.broker_ids
    finally:
        kafka_cluster.heal()
    kafka_cluster.wait_ready()


def test_pause_and_resume(kafka_cluster: KafkaCluster) -> None:
    topic = name("pause")
    kafka_cluster.create_topic(topic, configs={"min.insync.replicas": "2"})
    leader = kafka_cluster.leader_of(topic, 0)
    pid = kafka_cluster.pid(leader)
    assert pid is not None
    acked = produce(kafka_cluster.bootstrap_servers, topic, batch("before", 100))
    kafka_cluster.pause(leader)
    assert process_state(pid) == "T"
    # Its ZooKeeper session expires: the controller moves the leadership.
    kafka_cluster.wait_for_leader(topic, 0, not_in=[leader], timeout=SESSION_S + 15)
    acked |= produce(kafka_cluster.bootstrap_servers, topic, batch("paused", 100))
    kafka_cluster.resume(leader)
    assert process_state(pid) != "T"
    assert kafka_cluster.wait_for_isr(topic, 0, 3, timeout=40) == [1, 2, 3]
    assert len(acked) == 200
    assert_exactly_once(kafka_cluster, topic, acked)


def test_stop_is_a_controlled_shutdown(kafka_cluster: KafkaCluster) -> None:
    topic = name("stop")
    kafka_cluster.create_topic(topic)
    leader = kafka_cluster.leader_of(topic, 0)
    acked = produce(kafka_cluster.bootstrap_servers, topic, batch("x", 50))
    began = time.monotonic()
    assert kafka_cluster.stop(leader) == 0
    # Leadership moved before the exit, not after a session timeout.
    assert kafka_cluster.leader_of(topic, 0) not in (leader, -1)
    assert leader not in kafka_cluster.isr_of(topic, 0)
    assert time.monotonic() - began < SESSION_S
    acked |= produce(kafka_cluster.bootstrap_servers, topic, batch("y", 50))
    assert len(acked) == 100
    assert_exactly_once(kafka_cluster, topic, acked)


# -- network faults ------------------------------------------------------------------------------


def test_isolated_leader_is_replaced_and_its_late_writes_never_commit(
        kafka_cluster: KafkaCluster) -> None:
    topic = name("isolate")
    kafka_cluster.create_topic(topic, configs={"min.insync.replicas": "2"})
    leader = kafka_cluster.leader_of(topic, 0)
    others = [i for i in kafka_cluster.broker_ids if i != leader]
    acked = produce(kafka_cluster.bootstrap_servers, topic, batch("before", 50))

    # Cut off from brokers and ZooKeeper, still reachable by clients that know it.
    kafka_cluster.isolate(leader, clients=False)
    late: dict[str, list[Any]] = {"all": [], "one": []}
    pinned = {acks: KafkaProducer(bootstrap_servers=kafka_cluster.bootstrap(leader),
                                  acks=acks_value, retries=0, request_timeout_ms=3000,
                                  max_block_ms=10000, linger_ms=0)
              for acks, acks_value in (("one", 1), ("all", "all"))}
    try:
        for acks, producer in pinned.items():
            for value in batch(f"late-{acks}", 10):
                late[acks].append((value, producer.send(topic, value, partition=0)))
            producer.flush(20)
    finally:
        for producer in pinned.values():
            producer.close(5)

    def acknowledged(futures: list[Any]) -> set[bytes]:
        return {v for v, f in futures if f.succeeded()}

    # The isolated leader cannot commit: no acks=all write is acknowledged...
    assert acknowledged(late["all"]) == set()
    # ...while acks=1 writes are taken into its own log only.
    late_one = acknowledged(late["one"])
    assert late_one, "the isolated leader took no acks=1 write"

    new_leader = kafka_cluster.wait_for_leader(topic, 0, not_in=[leader], timeout=SESSION_S + 15)
    assert new_leader in others
    acked |= produce(",".join(kafka_cluster.bootstrap(i) for i in others), topic,
                     batch("after", 50))

    kafka_cluster.heal()
    assert kafka_cluster.wait_for_isr(topic, 0, 3, timeout=40) == [1, 2, 3]
    values = assert_exactly_once(kafka_cluster, topic, acked)
    assert len(acked) == 100
    # The old leader truncated what it took while isolated: no late write survived.
    assert not {v for v in values if v.startswith(b"late-")}
    assert set(values) == acked


def test_partition_cuts_a_follower_out_of_the_isr(kafka_cluster: KafkaCluster) -> None:
    topic = name("partition")
    kafka_cluster.create_topic(topic, configs={"min.insync.replicas": "2"})
    leader = kafka_cluster.leader_of(topic, 0)
    controller = kafka_cluster.controller()
    # A follower that is not the controller (the leader asks the controller to shrink the ISR).
    follower = next(i for i in kafka_cluster.broker_ids if i not in (leader, controller))
    kafka_cluster.partition([follower], [i for i in kafka_cluster.broker_ids if i != follower])
    isr = kafka_cluster.wait_for_isr(topic, 0, 2, timeout=30)
    assert follower not in isr
    assert kafka_cluster.leader_of(topic, 0) == leader
    # The majority side still commits (ISR 2 >= min.insync.replicas).
    acked = produce(kafka_cluster.bootstrap_servers, topic, batch("p", 100))
    assert len(acked) == 100
    kafka_cluster.heal()
    assert kafka_cluster.wait_for_isr(topic, 0, 3, timeout=30) == [1, 2, 3]
    assert_exactly_once(kafka_cluster, topic, acked)


def test_cut_zookeeper_moves_the_controller(kafka_cluster: KafkaCluster) -> None:
    topic = name("cutzk")
    kafka_cluster.create_topic(topic, configs={"min.insync.replicas": "2"})
    acked = produce(kafka_cluster.bootstrap_servers, topic, batch("before", 50))
    controller = kafka_cluster.controller()
    assert controller is not None
    began = time.monotonic()
    kafka_cluster.cut_zookeeper(controller)
    new = kafka_cluster.wait_for_controller(not_in=[controller], timeout=SESSION_S + 15)
    took = time.monotonic() - began
    print(f"controller {controller} -> {new} in {took:.1f} s")
    assert new != controller
    assert took > SESSION_S * 0.5  # a session expiry, not an instant change
    assert controller not in kafka_cluster.registered_ids()
    # Back on ZooKeeper, the old controller registers again (a new session) as a broker.
    kafka_cluster.heal()
    kafka_cluster.wait_ready(30.0, kafka_cluster.broker_ids)
    assert controller in kafka_cluster.registered_ids()  # registered again, new session
    assert kafka_cluster.controller() == new
    acked |= produce(kafka_cluster.bootstrap_servers, topic, batch("after", 50))
    assert len(acked) == 100
    assert_exactly_once(kafka_cluster, topic, acked)


def produce_latencies(bootstrap: str, topic: str, n: int) -> list[float]:
    """Round trip of ``n`` acks=1 messages sent one at a time (kafka-python), in seconds."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
    try:
        producer.send(topic, b"warm-up", partition=0).get(10)
        latencies = []
        for i in range(n):
            began = time.monotonic()
            producer.send(topic, b"m-%d" % i, partition=0).get(10)
            latencies.append(time.monotonic() - began)
        return latencies
    finally:
        producer.close(5)


def test_delay_adds_latency_to_the_broker(kafka_cluster: KafkaCluster) -> None:
    topic = name("delay")
    kafka_cluster.create_topic(topic)
    leader = kafka_cluster.leader_of(topic, 0)
    before = statistics.median(produce_latencies(kafka_cluster.bootstrap_servers, topic, 15))
    kafka_cluster.delay(leader, 200)
    during = statistics.median(produce_latencies(kafka_cluster.bootstrap_servers, topic, 10))
    kafka_cluster.heal()
    after = statistics.median(produce_latencies(kafka_cluster.bootstrap_servers, topic, 15))
    print(f"median produce latency: {before * 1000:.1f} ms, with delay(200) "
          f"{during * 1000:.1f} ms, healed {after * 1000:.1f} ms")
    assert 0.17 < during - before < 0.35
    assert after - before < 0.1


def test_drop_resets_connections_and_clients_lose_nothing(kafka_cluster: KafkaCluster) -> None:
    topic = name("drop")
    kafka_cluster.create_topic(topic, configs={"min.insync.replicas": "2"})
    leader = kafka_cluster.leader_of(topic, 0)
    links = [kafka_cluster.client_links[leader]] + [
        link for (_, to), link in kafka_cluster.pair_links.items() if to == leader]
    dropped_before = sum(link.drops for link in links)
    kafka_cluster.drop(leader, 0.03)
    values = batch("d", 400)
    began = time.monotonic()
    acked = produce(kafka_cluster.bootstrap_servers, topic, values, timeout=90,
                    **{"batch.num.messages": 10, "linger.ms": 1})
    drops = sum(link.drops for link in links) - dropped_before
    print(f"{len(acked)} of {len(values)} acknowledged in {time.monotonic() - began:.1f} s "
          f"with {drops} connections reset")
    kafka_cluster.heal()
    assert drops > 0, "no connection was reset"
    assert acked == set(values)
    assert_exactly_once(kafka_cluster, topic, acked)


# -- per-API faults on one broker ----------------------------------------------------------------


def test_per_api_faults_on_one_broker(kafka_cluster: KafkaCluster) -> None:
    topic = name("api")
    kafka_cluster.create_topic(topic)
    leader = kafka_cluster.leader_of(topic, 0)
    faults = kafka_cluster.faults(leader)
    producer = KafkaProducer(bootstrap_servers=kafka_cluster.bootstrap_servers, acks="all",
                             enable_idempotence=True, linger_ms=0, retry_backoff_ms=50)
    try:
        producer.send(topic, b"warm-up", partition=0).get(10)
        base = faults.count(ApiKey.PRODUCE)

        faults.fail_next(ApiKey.PRODUCE, ErrorCode.NOT_LEADER_OR_FOLLOWER, count=2)
        meta = producer.send(topic, b"failed-twice", partition=0).get(20)
        assert faults.count(ApiKey.PRODUCE) - base == 3  # two fake answers, then the real one

        faults.drop_next(ApiKey.PRODUCE)
        producer.send(topic, b"dropped-once", partition=0).get(30)
        assert faults.count(ApiKey.PRODUCE) - base >= 5

        faults.add_latency(ApiKey.PRODUCE, 0.3)
        began = time.monotonic()
        producer.send(topic, b"slow", partition=0).get(10)
        assert time.monotonic() - began >= 0.3
    finally:
        producer.close(5)
    # Every other broker's link saw none of it.
    assert all(kafka_cluster.faults(i).count(ApiKey.PRODUCE) == 0
               for i in kafka_cluster.broker_ids if i != leader)
    values = read_all(kafka_cluster.bootstrap_servers, topic)
    assert values == [b"warm-up", b"failed-twice", b"dropped-once", b"slow"]
    assert meta.offset == 1
