"""Produce, Fetch and Metadata checks over a running broker whose authorizer is installed by
the test (``authorizer.class.name`` is still refused at start-up until every handler checks).
The plaintext client is ``User:ANONYMOUS``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pykbroker.error_codes import ErrorCode
from pykbroker.protocol._generated.fetch_request import FetchPartition, FetchRequest, FetchTopic
from pykbroker.protocol._generated.metadata_request import MetadataRequest, MetadataRequestTopic
from pykbroker.protocol._generated.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from pykbroker.records.builder import build_batch
from pykbroker.security.acl_codes import AclOperation, AclPermissionType, PatternType, ResourceType
from pykbroker.security.acl_store import StoredAclAuthorizer
from pykbroker.security.acls import AccessControlEntry, AclBinding, ResourcePattern
from pykbroker.testing import KafkaBroker, _Client

ANON = "User:ANONYMOUS"


def _acl(name: str, op: AclOperation, pattern: PatternType = PatternType.LITERAL,
         perm: AclPermissionType = AclPermissionType.ALLOW) -> AclBinding:
    return AclBinding(ResourcePattern(ResourceType.TOPIC, name, pattern),
                      AccessControlEntry(ANON, "*", op, perm))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[KafkaBroker, StoredAclAuthorizer]]:
    with KafkaBroker(tmp_path, **{"auto.create.topics.enable": "true"}) as b:
        for t in ("t-ok", "t-ro", "secret"):
            b.create_topic(t)
        auth = StoredAclAuthorizer(None, frozenset(), False)
        assert auth.create([_acl("t-", AclOperation.WRITE, PatternType.PREFIXED),
                            _acl("t-", AclOperation.READ, PatternType.PREFIXED),
                            _acl("t-ro", AclOperation.WRITE, perm=AclPermissionType.DENY)]
                           ) == [None] * 3
        server = b.broker.server
        assert server is not None
        server.security.authorizer = auth
        yield b, auth


def _produce(client: _Client, topic: str) -> int:
    batch = build_batch([(b"k", b"v", [], None)])
    resp = client.send(0, 9, ProduceRequest(transactional_id=None, acks=1, timeout_ms=5000,
                                            topic_data=[TopicProduceData(topic, [
                                                PartitionProduceData(0, batch)])]))
    return int(resp.responses[0].partition_responses[0].error_code)


def test_produce_fetch_metadata(broker: tuple[KafkaBroker, StoredAclAuthorizer]) -> None:
    b, _ = broker
    client = _Client(b.bootstrap_servers)
    try:
        assert _produce(client, "t-ok") == 0
        assert _produce(client, "t-ro") == ErrorCode.TOPIC_AUTHORIZATION_FAILED
        assert _produce(client, "secret") == ErrorCode.TOPIC_AUTHORIZATION_FAILED
        assert _produce(client, "missing") == ErrorCode.TOPIC_AUTHORIZATION_FAILED

        def fetch(topic: str) -> tuple[int, bytes]:
            resp = client.send(1, 12, FetchRequest(
                replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20, topics=[
                    FetchTopic(topic=topic, partitions=[FetchPartition(
                        partition=0, fetch_offset=0, partition_max_bytes=1 << 20)])]))
            p = resp.responses[0].partitions[0]
            return int(p.error_code), bytes(p.records or b"")

        code, records = fetch("t-ok")
        assert code == 0 and records
        assert fetch("secret") == (ErrorCode.TOPIC_AUTHORIZATION_FAILED, b"")
        assert fetch("nothing")[0] == ErrorCode.TOPIC_AUTHORIZATION_FAILED
        # A follower's fetch without CLUSTER_ACTION.
        resp = client.send(1, 12, FetchRequest(
            replica_id=1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20, topics=[
                FetchTopic(topic="t-ok", partitions=[FetchPartition(
                    partition=0, fetch_offset=0, partition_max_bytes=1 << 20)])]))
        assert resp.responses[0].partitions[0].error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED

        every = client.send(3, 9, MetadataRequest(topics=None, allow_auto_topic_creation=False,
                                                  include_topic_authorized_operations=True))
        assert sorted(t.name for t in every.topics) == ["t-ok", "t-ro"]
        ops = {t.name: t.topic_authorized_operations for t in every.topics}
        assert ops["t-ok"] == (1 << 3) | (1 << 4) | (1 << 8)
        named = client.send(3, 9, MetadataRequest(topics=[
            MetadataRequestTopic(name="secret"), MetadataRequestTopic(name="nowhere"),
            MetadataRequestTopic(name="t-new")], allow_auto_topic_creation=True))
        codes = {t.name: t.error_code for t in named.topics}
        assert codes["secret"] == codes["nowhere"] == ErrorCode.TOPIC_AUTHORIZATION_FAILED
        # DESCRIBE on t-new (implied by READ) but no CREATE: not auto-created.
        assert codes["t-new"] == ErrorCode.TOPIC_AUTHORIZATION_FAILED
        assert "t-new" not in b.broker.services.metadata.topic_names()  # type: ignore[union-attr]
    finally:
        client.close()
