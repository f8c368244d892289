"""TLS and SASL between the brokers of a cluster (issue #17): the inter-broker listener is
SASL_SSL (SASL PLAIN over TLS), replication, the controller's requests and AlterPartition all
go through it, and a plaintext peer is turned away."""

from __future__ import annotations

import socket
import struct
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from pykbroker.cluster_testing import ClusterError
from pykbroker.testing import KafkaCluster, open_cluster
from tests.security.pki import PLAIN_JAAS, make_pki

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(150)]


def secured_internal(pki_dir: Path, mechanism_jaas: str = PLAIN_JAAS) -> dict[str, str]:
    pki = make_pki(pki_dir)
    return {
        "listener.security.protocol.map": "CLIENT:PLAINTEXT,INTERNAL:SASL_SSL",
        "listener.name.internal.ssl.keystore.type": "PEM",
        "listener.name.internal.ssl.keystore.location": str(pki.server),
        "listener.name.internal.ssl.truststore.type": "PEM",
        "listener.name.internal.ssl.truststore.location": str(pki.ca),
        "sasl.enabled.mechanisms": "PLAIN",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "listener.name.internal.plain.sasl.jaas.config": mechanism_jaas,
    }


def internal_port(cluster: KafkaCluster, broker: int) -> int:
    listeners = cluster.brokers[broker].configs["listeners"]
    return int(listeners.split("INTERNAL://127.0.0.1:")[1].split(",")[0])


def test_brokers_replicate_over_sasl_ssl(tmp_path: Path) -> None:
    with open_cluster(configs=secured_internal(tmp_path / "pki")) as cluster:
        topic = f"secure-{uuid.uuid4().hex[:8]}"
        try:
            cluster.create_topic(topic, configs={"min.insync.replicas": "3"})  # ISR 3: fetchers
        except ClusterError as exc:
            # Seen once right after start-up: the controller's metadata briefly counted two
            # live brokers (INVALID_REPLICATION_FACTOR), a race not about security; once more.
            assert "larger than available brokers" in str(exc), exc
            cluster.wait_ready()
            cluster.create_topic(topic, configs={"min.insync.replicas": "3"})
        acked: list[bytes] = []
        producer = Producer({"bootstrap.servers": cluster.bootstrap_servers, "acks": "all",
                             "enable.idempotence": True})
        for i in range(200):
            producer.produce(topic, b"v%d" % i, partition=0,
                             on_delivery=lambda err, msg: err is None and acked.append(
                                 msg.value()))
        assert producer.flush(60) == 0
        assert len(acked) == 200  # acks=all with min.insync.replicas=3: every follower fetched

        # The leader moves (a controller's LeaderAndIsr over the secured listener); the new
        # leader has every record.
        leader = cluster.leader_of(topic, 0)
        cluster.stop(leader)
        new = cluster.wait_for_leader(topic, 0, not_in=[leader], timeout=30)
        consumer = Consumer({"bootstrap.servers": cluster.bootstrap(new),
                             "group.id": f"g-{uuid.uuid4().hex[:6]}",
                             "enable.auto.commit": False})
        consumer.assign([TopicPartition(topic, 0, 0)])
        got: list[bytes] = []
        while len(got) < 200:
            msg = consumer.poll(10)
            assert msg is not None, f"only {len(got)} records read"
            assert msg.error() is None, msg.error()
            got.append(msg.value())
        consumer.close()
        assert sorted(got) == sorted(acked)
        cluster.start_broker(leader)
        assert cluster.wait_for_isr(topic, 0, 3, timeout=40) == [1, 2, 3]

        # The internal listener speaks TLS only: a plaintext ApiVersions gets no answer.
        with socket.create_connection(("127.0.0.1", internal_port(cluster, new)), 5) as s:
            s.sendall(struct.pack(">ihhi", 10, 18, 0, 1) + struct.pack(">h", 0))
            s.settimeout(5)
            try:
                assert s.recv(4) == b""
            except (ConnectionResetError, TimeoutError):
                pass


def test_a_wrong_inter_broker_password_keeps_the_broker_out(tmp_path: Path) -> None:
    """The broker logs in with its JAAS username/password; a wrong one is refused by the
    others, so the cluster cannot form (it does not fall back to plaintext)."""
    wrong = PLAIN_JAAS.replace('password="admin-secret"', 'password="nope"')
    configs = secured_internal(tmp_path / "pki", wrong)
    cluster = KafkaCluster(2, configs=configs)
    try:
        with pytest.raises(ClusterError) as info:
            cluster.start(timeout=20)
        message = str(info.value)  # with the brokers' log tails
        assert "ready for clients not true" in message
        # The other broker refused the login (the tails end with its authentication log).
        assert "Authentication failed: Invalid username or password" in message
    finally:
        cluster.close()
