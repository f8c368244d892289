"""SCRAM credentials in a ZooKeeper cluster (issue #17): altered through one broker with a
stock admin client, kept in Kafka's /config/users/<sanitized user>, known to every broker."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from pykbroker.metadata.zk.configs import sanitize
from pykbroker.protocol._generated.describe_user_scram_credentials_request import (
    DescribeUserScramCredentialsRequest,
    UserName,
)
from pykbroker.testing import KafkaCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


def mechanisms_on(cluster: KafkaCluster, broker: int, user: str) -> list[tuple[int, int]]:
    """(mechanism, iterations) that ``broker`` itself describes for ``user``."""
    resp = cluster._request(broker, 50, 0, DescribeUserScramCredentialsRequest(
        users=[UserName(name=user)]))
    result = resp.results[0]
    if result.error_code:  # RESOURCE_NOT_FOUND: no credential
        return []
    return sorted((c.mechanism, c.iterations) for c in result.credential_infos)


def wait_everywhere(cluster: KafkaCluster, user: str, want: list[tuple[int, int]]) -> None:
    deadline = time.monotonic() + 10
    while True:
        seen = {b: mechanisms_on(cluster, b, user) for b in cluster.broker_ids}
        if all(v == want for v in seen.values()):
            return
        assert time.monotonic() < deadline, f"brokers disagree: {seen}"
        time.sleep(0.1)


def test_a_credential_altered_on_one_broker_is_known_to_all(
        kafka_cluster: KafkaCluster) -> None:
    user = f"ops user*{uuid.uuid4().hex[:6]}"  # sanitized in its znode's name
    first, last = kafka_cluster.broker_ids[0], kafka_cluster.broker_ids[-1]
    admin = AdminClient({"bootstrap.servers": kafka_cluster.bootstrap(first)})
    upserts = [UserScramCredentialUpsertion(user, ScramCredentialInfo(
        ScramMechanism.SCRAM_SHA_256, 8192), b"secret"),
        UserScramCredentialUpsertion(user, ScramCredentialInfo(
            ScramMechanism.SCRAM_SHA_512, 4096), b"other")]
    for future in admin.alter_user_scram_credentials(upserts).values():
        future.result(30)
    wait_everywhere(kafka_cluster, user, [(1, 8192), (2, 4096)])

    config = kafka_cluster.zk.json(f"/config/users/{sanitize(user)}")
    assert config["version"] == 1
    assert sorted(config["config"]) == ["SCRAM-SHA-256", "SCRAM-SHA-512"]
    assert config["config"]["SCRAM-SHA-256"].startswith("salt=")
    assert "iterations=8192" in config["config"]["SCRAM-SHA-256"]

    # A restarted broker reads it back from ZooKeeper.
    kafka_cluster.restart(last, kill=True)
    assert mechanisms_on(kafka_cluster, last, user) == [(1, 8192), (2, 4096)]

    # Deleted (bootstrapping on every broker: the one just restarted may not name the
    # controller yet, and librdkafka then waits for one): gone from every broker.
    admin = AdminClient({"bootstrap.servers": kafka_cluster.bootstrap_servers})
    for future in admin.alter_user_scram_credentials([UserScramCredentialDeletion(
            user, ScramMechanism.SCRAM_SHA_512)]).values():
        future.result(30)
    wait_everywhere(kafka_cluster, user, [(1, 8192)])
