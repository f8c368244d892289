"""Cluster mode through ZooKeeper (issue #14): several pykbroker processes form one cluster.

The harness self-tests check compat_tests/cluster.py itself (ZooKeeper and three broker
processes start, answer, restart and are cleaned up) without asserting any cluster behaviour.
The others are issue #14's acceptance points: every broker (through confluent-kafka and kcat)
answers the same brokers, controller and leaders; a topic created through broker 2 with 12
partitions and replication factor 3 has its leaders spread 4/4/4, and kafka-python,
confluent-kafka and aiokafka round-trip records (acks=1 and acks=all) through different
brokers; the controller's SIGKILL elects another within zookeeper.session.timeout.ms + 5 s,
when a topic can be created again, and the restarted broker rejoins; a dead broker (the
controller or another) leaves every ISR; with replication (part 2), an acks=all record
survives its leader's SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from collections import Counter

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as AioTP
from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic
from kafka import TopicPartition as KpTP
from kazoo.client import KazooClient

from compat_tests import ck_helpers as ck
from compat_tests import kp_helpers as kp
from compat_tests.cluster import BrokerStartError, Cluster, ClusterView, PartitionView
from pykbroker.metadata.zk.server import ZooKeeperServer

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

METADATA_KEY = 3
API_VERSIONS_KEY = 18


def test_harness_starts_answers_restarts_brokers(cluster: Cluster) -> None:
    assert cluster.broker_ids == [1, 2, 3]
    ports = {cluster.brokers[i].port for i in cluster.broker_ids}
    assert len(ports) == 3
    assert cluster.bootstrap_all() == ",".join(f"127.0.0.1:{cluster.brokers[i].port}"
                                               for i in (1, 2, 3))
    for i in cluster.broker_ids:
        broker = cluster.brokers[i]
        assert f"broker.id={i}" in broker.command()
        assert f"zookeeper.connect={cluster.zookeeper_connect}" in broker.command()
        assert cluster.zookeeper_connect.startswith(cluster.zookeeper_server.hosts + "/")
        versions = cluster.api_versions(i)
        assert METADATA_KEY in versions and API_VERSIONS_KEY in versions
        assert cluster.metadata(i).origin == i  # answered by broker i itself
    assert cluster.zk.connected
    cluster.controller_id()  # None or an id: readable either way
    cluster.registered_ids()

    assert cluster.terminate(2) == 0
    assert cluster.running_ids() == [1, 3]
    with pytest.raises(OSError):
        cluster.api_versions(2)
    cluster.start(2)  # same port, same data directory
    assert API_VERSIONS_KEY in cluster.api_versions(2)
    assert cluster.brokers[2].starts == 2

    assert cluster.kill(3) == -signal.SIGKILL
    assert cluster.running_ids() == [1, 2]
    assert cluster.wait_until(lambda: 42, 1.0) == 42
    with pytest.raises(AssertionError, match="never not true after 0.2 s"):
        cluster.wait_until(lambda: 0, 0.2, what="never")


@pytest.mark.parametrize("cluster", [{"brokers": 1, "num.partitions": "2"}], indirect=True)
def test_harness_size_and_overrides(cluster: Cluster) -> None:
    assert cluster.broker_ids == [1]
    assert "num.partitions=2" in cluster.brokers[1].command()
    assert "group.initial.rebalance.delay.ms=0" in cluster.brokers[1].command()


def test_harness_cleans_up_and_reports_start_failures(zookeeper_server: ZooKeeperServer) -> None:
    with Cluster(zookeeper_server, 2) as c:
        pids = [c.brokers[i].proc.pid for i in c.broker_ids]  # type: ignore[union-attr]
        directory = c.directory
        c.zk.ensure_path("/harness-check")
        assert c.zk.exists("/harness-check")
    assert not directory.exists()
    for pid in pids:  # killed and reaped
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    root = KazooClient(hosts=zookeeper_server.hosts)
    root.start(timeout=10)
    try:
        assert root.exists(c.chroot) is None
    finally:
        root.stop()
        root.close()

    bad = Cluster(zookeeper_server, 1, overrides={
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer"})
    with pytest.raises(BrokerStartError, match="authorizer.class.name"):
        with bad:
            pass
    assert not bad.directory.exists()
    assert bad.running_ids() == []


# -- cluster behaviour (issue #14 part 1: no replication of data needed) ---------------------


def kcat_view(cluster: Cluster, i: int) -> ClusterView:
    """``kcat -L -J`` against broker ``i`` (checked to be the one answering), normalized."""
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.fail("kcat is not installed (it is required): apt-get install -y kcat")
    for _ in range(10):  # until broker i answered (librdkafka may ask one it learnt of)
        proc = subprocess.run([kcat, "-L", "-J", "-m", "10", "-b", cluster.bootstrap(i)],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, f"kcat exited {proc.returncode}: {proc.stderr[-2000:]}"
        data = json.loads(proc.stdout)
        if data["originating_broker"]["name"].split("/")[0] == cluster.bootstrap(i):
            break
    else:
        raise AssertionError(f"kcat's metadata came from {data['originating_broker']}")
    topics: dict[str, dict[int, PartitionView]] = {}
    errors: dict[str, str] = {}
    for t in data["topics"]:
        if t.get("error"):
            errors[t["topic"]] = t["error"]
        topics[t["topic"]] = {}
        for p in t["partitions"]:
            topics[t["topic"]][p["partition"]] = PartitionView(
                p["leader"], tuple(r["id"] for r in p["replicas"]),
                tuple(r["id"] for r in p["isrs"]))
            if p.get("error"):
                errors[f"{t['topic']}/{p['partition']}"] = p["error"]
    brokers = {b["id"]: b["name"] for b in data["brokers"]}
    return ClusterView(brokers, data["controllerid"], topics, errors, i)


def create_topic(bootstrap: str, name: str, partitions: int, replication_factor: int,
                 timeout: float = 20.0) -> float:
    """CreateTopics through ``bootstrap`` (retried while retriable); the seconds it took."""
    began = time.monotonic()
    deadline = began + timeout
    while True:
        admin = ck.admin(bootstrap)
        future = admin.create_topics([NewTopic(name, partitions, replication_factor)],
                                     operation_timeout=10, request_timeout=15)[name]
        try:
            future.result(timeout=20)
            return time.monotonic() - began
        except KafkaException as exc:
            err = exc.args[0]
            if not err.retriable() or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_every_broker_answers_the_same_metadata(cluster: Cluster, topic_name: str) -> None:
    expected_brokers = {i: cluster.bootstrap(i) for i in cluster.broker_ids}
    cluster.wait_formed()
    create_topic(cluster.bootstrap(1), topic_name, 6, 3)
    partitions = cluster.wait_topic(topic_name, 6)
    controller = cluster.controller_id()
    assert controller in cluster.broker_ids

    confluent = {i: cluster.metadata(i) for i in cluster.broker_ids}
    kcat = {i: kcat_view(cluster, i) for i in cluster.broker_ids}
    for source, views in (("confluent-kafka", confluent), ("kcat", kcat)):
        for i, view in views.items():
            where = f"{source} against broker {i}"
            assert view.brokers == expected_brokers, where
            assert view.controller_id == controller, where
            assert view.topics[topic_name] == partitions, where
            assert not view.errors, where
    assert confluent[1] == confluent[2] == confluent[3]
    assert ({k: (v.brokers, v.controller_id, v.topics) for k, v in kcat.items()}
            == {k: (v.brokers, v.controller_id, v.topics) for k, v in confluent.items()})


def _kafka_python_round_trip(bootstrap: str, topic: str, keys: list[int], partitions: int,
                             acks: str) -> set[tuple[int, int, bytes, bytes]]:
    sent = set()
    with kp.producer(bootstrap, acks=1 if acks == "1" else acks,
                     enable_idempotence=False) as p:
        records = [(k % partitions, f"kp-{k}".encode(), f"kafka-python {k}".encode())
                   for k in keys]
        metas = kp.send_all(p, [{"partition": pa, "key": key, "value": value}
                                for pa, key, value in records], topic)
        for (pa, key, value), meta in zip(records, metas, strict=True):
            assert meta.partition == pa
            sent.add((pa, meta.offset, key, value))
    return sent


def _confluent_round_trip(bootstrap: str, topic: str, keys: list[int], partitions: int,
                          acks: str) -> set[tuple[int, int, bytes, bytes]]:
    with ck.producer(bootstrap, acks=acks) as p:
        reports = ck.produce_all(p, topic, [
            {"partition": k % partitions, "key": f"ck-{k}".encode(),
             "value": f"confluent-kafka {k}".encode()} for k in keys])
    return {(d.partition, d.offset, d.key or b"", d.value or b"") for d in reports.items}


async def _aiokafka_produce(bootstrap: str, topic: str, keys: list[int], partitions: int,
                            acks: str) -> set[tuple[int, int, bytes, bytes]]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1 if acks == "1" else acks,
                                request_timeout_ms=10000)
    await producer.start()
    try:
        records = [(k % partitions, f"aio-{k}".encode(), f"aiokafka {k}".encode())
                   for k in keys]
        futures = [await producer.send(topic, value, key=key, partition=pa)
                   for pa, key, value in records]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return {(pa, meta.offset, key, value)
            for (pa, key, value), meta in zip(records, metas, strict=True)}


async def _aiokafka_consume(bootstrap: str, topic: str, partitions: int,
                            n: int) -> list[tuple[int, int, bytes, bytes]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                request_timeout_ms=10000)
    await consumer.start()
    try:
        consumer.assign([AioTP(topic, p) for p in range(partitions)])
        await consumer.seek_to_beginning()
        out: list[tuple[int, int, bytes, bytes]] = []
        deadline = time.monotonic() + 20
        while len(out) < n and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                out += [(r.partition, r.offset, r.key, r.value) for r in records]
        return out
    finally:
        await consumer.stop()


def _consume_all(cluster: Cluster, i_kp: int, i_ck: int, i_aio: int, topic: str,
                 partitions: int, n: int) -> dict[str, list[tuple[int, int, bytes, bytes]]]:
    got: dict[str, list[tuple[int, int, bytes, bytes]]] = {}
    with kp.consumer(cluster.bootstrap(i_kp)) as c:
        records = kp.consume_n(c, {KpTP(topic, p): 0 for p in range(partitions)}, n)
        got["kafka-python"] = [(r.partition, r.offset, r.key, r.value) for r in records]
    with ck.consumer(cluster.bootstrap(i_ck)) as c:
        ck.assign_from(c, topic, range(partitions))
        got["confluent-kafka"] = [(m.partition(), m.offset(), m.key(), m.value())
                                  for m in ck.consume_n(c, n)]
    got["aiokafka"] = asyncio.run(_aiokafka_consume(cluster.bootstrap(i_aio), topic,
                                                    partitions, n))
    return got


@pytest.mark.parametrize("acks", ["1", "all"])
def test_rf3_topic_spreads_leaders_and_three_clients_round_trip(
        cluster: Cluster, topic_name: str, acks: str) -> None:
    cluster.wait_formed()
    create_topic(cluster.bootstrap(2), topic_name, 12, 3)
    partitions = cluster.wait_topic(topic_name, 12)
    for p, view in partitions.items():
        assert sorted(view.replicas) == [1, 2, 3], (p, view)
        assert view.leader == view.replicas[0], (p, view)  # the preferred replica
        assert sorted(view.isr) == [1, 2, 3], (p, view)  # all live replicas at creation
    assert Counter(v.leader for v in partitions.values()) == {1: 4, 2: 4, 3: 4}, partitions

    per_client = 36  # three records per partition from each client
    keys = list(range(per_client))
    sent = _kafka_python_round_trip(cluster.bootstrap(1), topic_name, keys, 12, acks)
    sent |= _confluent_round_trip(cluster.bootstrap(2), topic_name, keys, 12, acks)
    sent |= asyncio.run(_aiokafka_produce(cluster.bootstrap(3), topic_name, keys, 12, acks))
    assert len(sent) == 3 * per_client
    for client, records in _consume_all(cluster, 2, 3, 1, topic_name, 12, len(sent)).items():
        assert len(records) == len(sent), client
        assert set(records) == sent, client


def test_acks_all_record_survives_its_leader(cluster: Cluster, topic_name: str) -> None:
    cluster.wait_formed()
    create_topic(cluster.bootstrap(1), topic_name, 3, 3)
    partitions = cluster.wait_topic(topic_name, 3)
    leader = partitions[0].leader
    began = time.monotonic()
    reports = ck.Reports()
    with ck.producer(cluster.bootstrap(leader), acks="all",
                     **{"request.timeout.ms": 5000, "message.timeout.ms": 10000}) as p:
        p.produce(topic_name, key=b"k", value=b"acks=all", partition=0, on_delivery=reports.cb)
        p.flush(15)
    took = time.monotonic() - began
    outcome = [(d.partition, d.offset, d.err.name() if d.err else None) for d in reports.items]
    print(f"acks=all to partition 0 {partitions[0]}: {outcome} after {took:.2f} s")
    assert len(reports.items) == 1 and not reports.errors(), outcome

    # Acknowledged by every ISR member: the record survives the leader's death.
    cluster.kill(leader)
    survivors = [i for i in cluster.broker_ids if i != leader]
    after = cluster.wait_until(
        lambda: (v := cluster.metadata(survivors[0]).topics[topic_name][0]).leader in survivors
        and v, cluster.session_timeout_ms / 1000 + 10, what="a new leader for partition 0")
    print(f"partition 0 after broker {leader} died: {after}")
    with ck.consumer(cluster.bootstrap(after.leader)) as c:
        ck.assign_from(c, topic_name, [0])
        records = [(m.offset(), m.key(), m.value()) for m in ck.consume_n(c, 1, timeout=5)]
    assert records == [(0, b"k", b"acks=all")]


def test_controller_failover_and_rejoin(cluster: Cluster, topic_name: str) -> None:
    cluster.wait_formed()
    old = cluster.controller_id()
    assert old is not None
    epoch = int(cluster.zk.get("/controller_epoch")[0])
    survivors = [i for i in cluster.broker_ids if i != old]
    bound = cluster.session_timeout_ms / 1000 + 5

    killed_at = time.monotonic()
    cluster.kill(old)
    new = cluster.wait_until(lambda: (c := cluster.controller_id()) is not None and c != old
                             and c, bound + 10, what="a new controller")
    elected = time.monotonic() - killed_at
    assert new in survivors

    # Through a survivor other than the new controller when there is one.
    via = next(i for i in survivors if i != new)
    create_topic(cluster.bootstrap(via), topic_name, 4, 2, timeout=bound + 10)
    created = time.monotonic() - killed_at
    partitions = cluster.wait_topic(topic_name, 4, ids=survivors)
    led = time.monotonic() - killed_at
    view = cluster.wait_formed(ids=survivors)
    forgotten = time.monotonic() - killed_at
    print(f"controller {old} killed: broker {new} controller after {elected:.1f} s, topic "
          f"created after {created:.1f} s, led on {survivors} after {led:.1f} s, broker {old} "
          f"gone from their metadata after {forgotten:.1f} s (bound {bound:.0f} s)")
    assert elected <= bound
    assert created <= bound
    assert view.controller_id == new
    assert int(cluster.zk.get("/controller_epoch")[0]) > epoch
    for p, pv in partitions.items():
        assert len(set(pv.replicas)) == 2 and set(pv.replicas) <= set(survivors), (p, pv)
        assert pv.leader in pv.replicas, (p, pv)

    restarted_at = time.monotonic()
    cluster.start(old)
    view = cluster.wait_formed(ids=cluster.broker_ids)
    rejoined = time.monotonic() - restarted_at
    print(f"broker {old} restarted: in every broker's metadata after {rejoined:.1f} s")
    assert view.controller_id == new
    assert cluster.wait_topic(topic_name, 4) == partitions  # the restarted one knows it too


@pytest.mark.parametrize("victim", ["controller", "other"])
def test_dead_broker_leaves_every_isr(cluster: Cluster, topic_name: str, victim: str) -> None:
    """As Kafka's replica state machine (OfflineReplica, also at controller fail-over): the
    dead broker's partitions get new leaders from the ISR and it leaves every ISR."""
    cluster.wait_formed()
    create_topic(cluster.bootstrap(1), topic_name, 6, 3)
    cluster.wait_topic(topic_name, 6)
    controller = cluster.controller_id()
    dead = controller if victim == "controller" else next(
        i for i in cluster.broker_ids if i != controller)
    survivors = [i for i in cluster.broker_ids if i != dead]
    cluster.kill(dead)

    def moved() -> dict[int, PartitionView] | None:
        parts = cluster.wait_topic(topic_name, 6, ids=survivors)
        if any(pv.leader == dead or dead in pv.isr for pv in parts.values()):
            raise AssertionError(f"still there: {parts}")
        return parts

    parts = cluster.wait_until(moved, cluster.session_timeout_ms / 1000 + 10,
                               what=f"broker {dead} out of every leader and ISR")
    for p, pv in parts.items():
        assert pv.replicas == cluster.metadata(survivors[0]).topics[topic_name][p].replicas
        assert pv.leader in survivors and sorted(pv.isr) == survivors, (p, pv)
