"""ACLs in a ZooKeeper cluster (issue #17): created through one broker with a stock admin
client, kept under /kafka-acl, enforced and described by every broker."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from pykbroker.protocol._generated.delete_acls_request import DeleteAclsFilter, DeleteAclsRequest
from pykbroker.protocol._generated.describe_acls_request import DescribeAclsRequest
from pykbroker.testing import KafkaCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

ACL_AUTHORIZER = "kafka.security.authorizer.AclAuthorizer"


def described_principals(cluster: KafkaCluster, broker: int, topic: str) -> list[str]:
    """DescribeAcls v2 sent to ``broker`` itself: the principals with ACLs on ``topic``."""
    resp = cluster._request(broker, 29, 2, DescribeAclsRequest(
        resource_type_filter=2, resource_name_filter=topic, pattern_type_filter=3,
        principal_filter=None, host_filter=None, operation=1, permission_type=1))
    assert resp.error_code == 0, resp.error_message
    return sorted(a.principal for r in resp.resources for a in r.acls)


def produce_error(cluster: KafkaCluster, topic: str) -> str | None:
    """The delivery error of one message (None: delivered)."""
    errors: list[str | None] = []
    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers,
                         "message.timeout.ms": 15000})
    producer.produce(topic, b"v", on_delivery=lambda err, _: errors.append(
        None if err is None else err.name()))
    producer.flush(30)
    return errors[0]


@pytest.mark.kafka_cluster(fresh=True, **{"authorizer.class.name": ACL_AUTHORIZER,
                                          "allow.everyone.if.no.acl.found": "true"})
def test_an_acl_created_through_one_broker_is_enforced_by_all(
        kafka_cluster: KafkaCluster) -> None:
    topic, other = f"acl-{uuid.uuid4().hex[:8]}", f"free-{uuid.uuid4().hex[:8]}"
    kafka_cluster.create_topic(topic)
    kafka_cluster.create_topic(other)
    assert produce_error(kafka_cluster, topic) is None  # no ACL yet: everyone allowed

    first = kafka_cluster.broker_ids[0]
    admin = AdminClient({"bootstrap.servers": kafka_cluster.bootstrap(first)})
    deny = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:ANONYMOUS",
                      "*", AclOperation.WRITE, AclPermissionType.DENY)
    for future in admin.create_acls([deny]).values():
        future.result(30)

    # Every broker (not only the one that took the request) describes it, from ZooKeeper.
    deadline = time.monotonic() + 10
    while any(described_principals(kafka_cluster, b, topic) != ["User:ANONYMOUS"]
              for b in kafka_cluster.broker_ids):
        assert time.monotonic() < deadline, "a broker never saw the ACL"
        time.sleep(0.1)
    state = kafka_cluster.zk.json(f"/kafka-acl/Topic/{topic}")
    assert state == {"version": 1, "acls": [{"principal": "User:ANONYMOUS",
                                             "permissionType": "Deny", "operation": "Write",
                                             "host": "*"}]}, json.dumps(state)

    # The partition's leader (whichever broker it is) refuses the write; other topics work.
    assert produce_error(kafka_cluster, topic) == "TOPIC_AUTHORIZATION_FAILED"
    assert produce_error(kafka_cluster, other) is None

    # A restarted broker loads the ACL from ZooKeeper before it serves anyone.
    leader = kafka_cluster.leader_of(topic, 0)
    kafka_cluster.restart(leader, kill=True)
    assert described_principals(kafka_cluster, leader, topic) == ["User:ANONYMOUS"]

    # Deleted through another broker (a DeleteAcls sent to it): gone everywhere.
    other = next(b for b in kafka_cluster.broker_ids if b != first)
    resp = kafka_cluster._request(other, 31, 3, DeleteAclsRequest(filters=[DeleteAclsFilter(
        resource_type_filter=2, resource_name_filter=topic, pattern_type_filter=1,
        principal_filter=None, host_filter=None, operation=1, permission_type=1)]))
    (result,) = resp.filter_results
    assert result.error_code == 0 and len(result.matching_acls) == 1
    deadline = time.monotonic() + 10
    while any(described_principals(kafka_cluster, b, topic) for b in kafka_cluster.broker_ids):
        assert time.monotonic() < deadline, "a broker kept the deleted ACL"
        time.sleep(0.1)
    assert kafka_cluster.zk.json(f"/kafka-acl/Topic/{topic}") is None
    try:
        assert produce_error(kafka_cluster, topic) is None
    except KafkaException as exc:  # pragma: no cover - reported as a failure
        pytest.fail(str(exc))
