"""Each handler's ACL checks (Kafka 3.9 KafkaApis, ZooKeeper mode) over a running broker
whose authorizer the test installs after setting up topics, groups and a transaction, so that
it can grant and revoke ACLs between requests. The plaintext client is ``User:ANONYMOUS``.
(compat_tests/test_acls.py drives the same rules through SASL users and stock clients.)"""

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
        # Kafka's order: the topics answered, those refused CREATE, those refused DESCRIBE.
        ordered = client.send(3, 9, MetadataRequest(topics=[
            MetadataRequestTopic(name="secret"), MetadataRequestTopic(name="t-new"),
            MetadataRequestTopic(name="t-ok")], allow_auto_topic_creation=True))
        assert [(t.name, t.error_code) for t in ordered.topics] == [
            ("t-ok", 0), ("t-new", ErrorCode.TOPIC_AUTHORIZATION_FAILED),
            ("secret", ErrorCode.TOPIC_AUTHORIZATION_FAILED)]
    finally:
        client.close()


# -- every other API: Kafka 3.9 KafkaApis' checks, one handler rule at a time -----------------

from pykbroker.protocol._generated import add_offsets_to_txn_request as aot  # noqa: E402
from pykbroker.protocol._generated import add_partitions_to_txn_request as apt  # noqa: E402
from pykbroker.protocol._generated import alter_configs_request as ac  # noqa: E402
from pykbroker.protocol._generated import alter_user_scram_credentials_request as aus  # noqa: E402
from pykbroker.protocol._generated import consumer_group_describe_request as cgd  # noqa: E402
from pykbroker.protocol._generated import consumer_group_heartbeat_request as cgh  # noqa: E402
from pykbroker.protocol._generated import create_partitions_request as cp  # noqa: E402
from pykbroker.protocol._generated import create_topics_request as ct  # noqa: E402
from pykbroker.protocol._generated import delete_groups_request as dg  # noqa: E402
from pykbroker.protocol._generated import delete_records_request as dr  # noqa: E402
from pykbroker.protocol._generated import delete_topics_request as dtr  # noqa: E402
from pykbroker.protocol._generated import describe_configs_request as dc  # noqa: E402
from pykbroker.protocol._generated import describe_groups_request as dgr  # noqa: E402
from pykbroker.protocol._generated import describe_log_dirs_request as dld  # noqa: E402
from pykbroker.protocol._generated import describe_producers_request as dp  # noqa: E402
from pykbroker.protocol._generated import describe_transactions_request as dtx  # noqa: E402
from pykbroker.protocol._generated import describe_user_scram_credentials_request as dus  # noqa: E402
from pykbroker.protocol._generated import end_txn_request as et  # noqa: E402
from pykbroker.protocol._generated import find_coordinator_request as fc  # noqa: E402
from pykbroker.protocol._generated import heartbeat_request as hb  # noqa: E402
from pykbroker.protocol._generated import incremental_alter_configs_request as iac  # noqa: E402
from pykbroker.protocol._generated import init_producer_id_request as ipi  # noqa: E402
from pykbroker.protocol._generated import join_group_request as jg  # noqa: E402
from pykbroker.protocol._generated import leave_group_request as lg  # noqa: E402
from pykbroker.protocol._generated import list_groups_request as lgr  # noqa: E402
from pykbroker.protocol._generated import list_offsets_request as lo  # noqa: E402
from pykbroker.protocol._generated import list_transactions_request as ltx  # noqa: E402
from pykbroker.protocol._generated import offset_commit_request as oc  # noqa: E402
from pykbroker.protocol._generated import offset_delete_request as od  # noqa: E402
from pykbroker.protocol._generated import offset_fetch_request as of  # noqa: E402
from pykbroker.protocol._generated import offset_for_leader_epoch_request as ofl  # noqa: E402
from pykbroker.protocol._generated import sync_group_request as sg  # noqa: E402
from pykbroker.protocol._generated import txn_offset_commit_request as toc  # noqa: E402
from pykbroker.protocol._generated import write_txn_markers_request as wtm  # noqa: E402
from pykbroker.protocol.api import ApiKey  # noqa: E402

E = ErrorCode
GROUP, TXN, CLUSTER = ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID, ResourceType.CLUSTER


def _grant(auth: StoredAclAuthorizer, rtype: ResourceType, name: str, op: AclOperation,
           pattern: PatternType = PatternType.LITERAL,
           perm: AclPermissionType = AclPermissionType.ALLOW) -> None:
    assert auth.create([AclBinding(ResourcePattern(rtype, name, pattern),
                                   AccessControlEntry(ANON, "*", op, perm))]) == [None]


def _revoke(auth: StoredAclAuthorizer, rtype: ResourceType, name: str, op: AclOperation,
            pattern: PatternType = PatternType.LITERAL) -> None:
    from pykbroker.security.acls import AclBindingFilter

    flt = AclBindingFilter(rtype, name, pattern, ANON, "*", op, AclPermissionType.ALLOW)
    assert auth.delete([flt]) != [[]]


class Secured:
    """A broker with topics t-ok, t-ro, t-del, secret; the groups g-ok and hidden committed
    offsets on t-ok and secret; a transaction tx-1 with a partition of t-ok and of secret.
    Then the authorizer: ANONYMOUS may READ/WRITE topics t-* (not WRITE t-ro), READ groups
    g-* and WRITE transactional ids tx-*; nothing else."""

    def __init__(self, b: KafkaBroker, auth: StoredAclAuthorizer) -> None:
        self.b, self.auth = b, auth
        self.client = _Client(b.bootstrap_servers)

    def send(self, api: ApiKey, version: int, body: object) -> object:
        return self.client.send(int(api), version, body)

    def coordinator(self, key: str, key_type: int) -> None:
        import time

        for _ in range(100):
            resp = self.send(ApiKey.FIND_COORDINATOR, 3, fc.FindCoordinatorRequest(
                key=key, key_type=key_type))
            if resp.error_code == 0:  # type: ignore[attr-defined]
                return
            time.sleep(0.05)
        raise AssertionError(f"no coordinator for {key}")

    def commit(self, group: str, topic: str, offset: int = 1) -> int:
        resp = self.send(ApiKey.OFFSET_COMMIT, 8, oc.OffsetCommitRequest(
            group_id=group, topics=[oc.OffsetCommitRequestTopic(
                topic, [oc.OffsetCommitRequestPartition(0, offset)])]))
        return int(resp.topics[0].partitions[0].error_code)  # type: ignore[attr-defined]


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Secured]:
    with KafkaBroker(tmp_path) as b:
        for t in ("t-ok", "t-ro", "t-del", "secret"):
            b.create_topic(t)
        s = Secured(b, StoredAclAuthorizer(None, frozenset(), False))
        for group in ("g-ok", "hidden"):
            s.coordinator(group, 0)
            assert s.commit(group, "t-ok") == 0 and s.commit(group, "secret") == 0
        s.coordinator("tx-1", 1)
        pid = s.send(ApiKey.INIT_PRODUCER_ID, 1, ipi.InitProducerIdRequest(
            transactional_id="tx-1", transaction_timeout_ms=60000))
        s.pid = pid.producer_id  # type: ignore[attr-defined]
        added = s.send(ApiKey.ADD_PARTITIONS_TO_TXN, 3, apt.AddPartitionsToTxnRequest(
            v3_and_below_transactional_id="tx-1", v3_and_below_producer_id=s.pid,
            v3_and_below_producer_epoch=0, v3_and_below_topics=[
                apt.AddPartitionsToTxnTopic("t-ok", [0]),
                apt.AddPartitionsToTxnTopic("secret", [0])]))
        assert all(p.partition_error_code == 0 for t in added.results_by_topic_v3_and_below
                   for p in t.results_by_partition)
        auth = s.auth
        _grant(auth, ResourceType.TOPIC, "t-", AclOperation.READ, PatternType.PREFIXED)
        _grant(auth, ResourceType.TOPIC, "t-", AclOperation.WRITE, PatternType.PREFIXED)
        _grant(auth, ResourceType.TOPIC, "t-ro", AclOperation.WRITE,
               perm=AclPermissionType.DENY)
        _grant(auth, GROUP, "g-", AclOperation.READ, PatternType.PREFIXED)
        _grant(auth, TXN, "tx-", AclOperation.WRITE, PatternType.PREFIXED)
        server = b.broker.server
        assert server is not None
        server.security.authorizer = auth
        try:
            yield s
        finally:
            s.client.close()


def test_find_coordinator_needs_describe_on_the_group_or_transactional_id(
        secured: Secured) -> None:
    resp = secured.send(ApiKey.FIND_COORDINATOR, 4, fc.FindCoordinatorRequest(
        key_type=0, coordinator_keys=["g-ok", "hidden"]))
    codes = [c.error_code for c in resp.coordinators]  # type: ignore[attr-defined]
    assert codes == [0, E.GROUP_AUTHORIZATION_FAILED]
    assert resp.coordinators[1].node_id == -1  # type: ignore[attr-defined]
    resp = secured.send(ApiKey.FIND_COORDINATOR, 3, fc.FindCoordinatorRequest(
        key="other-tx", key_type=1))
    assert resp.error_code == E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED  # type: ignore[attr-defined]
    resp = secured.send(ApiKey.FIND_COORDINATOR, 3, fc.FindCoordinatorRequest(
        key="tx-1", key_type=1))
    assert resp.error_code == 0  # type: ignore[attr-defined]


def test_group_membership_needs_read_on_the_group(secured: Secured) -> None:
    join = secured.send(ApiKey.JOIN_GROUP, 5, jg.JoinGroupRequest(
        group_id="hidden", session_timeout_ms=10000, rebalance_timeout_ms=10000,
        protocol_type="consumer", protocols=[jg.JoinGroupRequestProtocol("range", b"")]))
    assert join.error_code == E.GROUP_AUTHORIZATION_FAILED  # type: ignore[attr-defined]
    assert join.member_id == "" and join.generation_id == -1  # type: ignore[attr-defined]
    assert secured.send(ApiKey.SYNC_GROUP, 3, sg.SyncGroupRequest(
        group_id="hidden", generation_id=1, member_id="m", assignments=[])
    ).error_code == E.GROUP_AUTHORIZATION_FAILED  # type: ignore[attr-defined]
    assert secured.send(ApiKey.HEARTBEAT, 3, hb.HeartbeatRequest(
        group_id="hidden", generation_id=1, member_id="m")
    ).error_code == E.GROUP_AUTHORIZATION_FAILED  # type: ignore[attr-defined]
    leave = secured.send(ApiKey.LEAVE_GROUP, 3, lg.LeaveGroupRequest(
        group_id="hidden", members=[lg.MemberIdentity("m")]))
    assert leave.error_code == E.GROUP_AUTHORIZATION_FAILED  # type: ignore[attr-defined]
    assert leave.members == []  # type: ignore[attr-defined]
    # READ on g-* lets the same request through to the coordinator.
    join = secured.send(ApiKey.JOIN_GROUP, 5, jg.JoinGroupRequest(
        group_id="g-join", session_timeout_ms=10000, rebalance_timeout_ms=10000,
        protocol_type="consumer", protocols=[jg.JoinGroupRequestProtocol("range", b"")]))
    assert join.error_code == E.MEMBER_ID_REQUIRED and join.member_id  # type: ignore[attr-defined]
    hb848 = secured.send(ApiKey.CONSUMER_GROUP_HEARTBEAT, 0, cgh.ConsumerGroupHeartbeatRequest(
        group_id="hidden2", member_epoch=0, rebalance_timeout_ms=10000,
        subscribed_topic_names=["t-ok"], topic_partitions=[]))
    assert hb848.error_code == E.GROUP_AUTHORIZATION_FAILED  # type: ignore[attr-defined]
    described = secured.send(ApiKey.CONSUMER_GROUP_DESCRIBE, 0,
                             cgd.ConsumerGroupDescribeRequest(group_ids=["hidden"]))
    assert [g.error_code for g in described.groups] == [  # type: ignore[attr-defined]
        E.GROUP_AUTHORIZATION_FAILED]


def test_offset_commit_needs_read_on_group_and_topic(secured: Secured) -> None:
    assert secured.commit("hidden", "t-ok") == E.GROUP_AUTHORIZATION_FAILED
    resp = secured.send(ApiKey.OFFSET_COMMIT, 8, oc.OffsetCommitRequest(
        group_id="g-ok", topics=[oc.OffsetCommitRequestTopic(n, [
            oc.OffsetCommitRequestPartition(0, 5)]) for n in ("t-ok", "secret", "nowhere",
                                                               "t-nowhere")]))
    codes = {t.name: t.partitions[0].error_code for t in resp.topics}  # type: ignore[attr-defined]
    assert codes == {"t-ok": 0, "secret": E.TOPIC_AUTHORIZATION_FAILED,
                     "nowhere": E.TOPIC_AUTHORIZATION_FAILED,
                     "t-nowhere": E.UNKNOWN_TOPIC_OR_PARTITION}


def test_offset_fetch_hides_groups_and_topics_it_may_not_describe(secured: Secured) -> None:
    every = secured.send(ApiKey.OFFSET_FETCH, 8, of.OffsetFetchRequest(groups=[
        of.OffsetFetchRequestGroup("g-ok", topics=None),
        of.OffsetFetchRequestGroup("hidden", topics=None)]))
    ok, hidden = every.groups  # type: ignore[attr-defined]
    assert ok.error_code == 0 and [t.name for t in ok.topics] == ["t-ok"]
    assert hidden.error_code == E.GROUP_AUTHORIZATION_FAILED and hidden.topics == []
    named = secured.send(ApiKey.OFFSET_FETCH, 8, of.OffsetFetchRequest(groups=[
        of.OffsetFetchRequestGroup("g-ok", topics=[of.OffsetFetchRequestTopics("secret", [0]),
                                                   of.OffsetFetchRequestTopics("t-ok", [0])])]))
    parts = {t.name: t.partitions[0] for t in named.groups[0].topics}  # type: ignore[attr-defined]
    assert parts["secret"].error_code == E.TOPIC_AUTHORIZATION_FAILED
    assert parts["secret"].committed_offset == -1
    assert parts["t-ok"].error_code == 0 and parts["t-ok"].committed_offset == 1
    v0 = secured.send(ApiKey.OFFSET_FETCH, 0, of.OffsetFetchRequest(
        group_id="hidden", topics=[of.OffsetFetchRequestTopic("t-ok", [0])]))
    assert v0.topics[0].partitions[0].error_code == E.GROUP_AUTHORIZATION_FAILED  # type: ignore[attr-defined]
    v1 = secured.send(ApiKey.OFFSET_FETCH, 1, of.OffsetFetchRequest(
        group_id="hidden", topics=[of.OffsetFetchRequestTopic("t-ok", [0])]))
    assert v1.topics == []  # type: ignore[attr-defined]  # as Kafka 3.9: no field for it
    v3 = secured.send(ApiKey.OFFSET_FETCH, 3, of.OffsetFetchRequest(group_id="hidden",
                                                                    topics=None))
    assert v3.error_code == E.GROUP_AUTHORIZATION_FAILED and v3.topics == []  # type: ignore[attr-defined]


def test_describe_list_delete_groups(secured: Secured) -> None:
    resp = secured.send(ApiKey.DESCRIBE_GROUPS, 5, dgr.DescribeGroupsRequest(
        groups=["g-ok", "hidden"], include_authorized_operations=True))
    groups = resp.groups  # type: ignore[attr-defined]
    assert [(g.group_id, g.error_code) for g in groups] == [
        ("hidden", E.GROUP_AUTHORIZATION_FAILED), ("g-ok", 0)]
    assert groups[0].group_state == "" and groups[0].authorized_operations == -(2**31)
    # READ on the group: READ and DESCRIBE (implied), not DELETE.
    assert groups[1].authorized_operations == (1 << 3) | (1 << 8)

    def listed() -> list[str]:
        r = secured.send(ApiKey.LIST_GROUPS, 4, lgr.ListGroupsRequest(states_filter=[]))
        return sorted(g.group_id for g in r.groups)  # type: ignore[attr-defined]

    assert listed() == ["g-ok"]
    _grant(secured.auth, CLUSTER, "kafka-cluster", AclOperation.DESCRIBE)
    assert listed() == ["g-ok", "hidden"]

    resp = secured.send(ApiKey.DELETE_GROUPS, 2, dg.DeleteGroupsRequest(
        groups_names=["hidden", "g-ok"]))
    assert [(r.group_id, r.error_code) for r in resp.results] == [  # type: ignore[attr-defined]
        ("hidden", E.GROUP_AUTHORIZATION_FAILED), ("g-ok", E.GROUP_AUTHORIZATION_FAILED)]
    _grant(secured.auth, GROUP, "g-ok", AclOperation.DELETE)
    resp = secured.send(ApiKey.DELETE_GROUPS, 2, dg.DeleteGroupsRequest(
        groups_names=["hidden", "g-ok"]))
    assert [(r.group_id, r.error_code) for r in resp.results] == [  # type: ignore[attr-defined]
        ("g-ok", 0), ("hidden", E.GROUP_AUTHORIZATION_FAILED)]
    assert listed() == ["hidden"]


def test_offset_delete_needs_delete_on_group_and_read_on_topic(secured: Secured) -> None:
    def delete() -> object:
        return secured.send(ApiKey.OFFSET_DELETE, 0, od.OffsetDeleteRequest(
            group_id="g-ok", topics=[od.OffsetDeleteRequestTopic(n, [
                od.OffsetDeleteRequestPartition(0)]) for n in ("t-ok", "secret")]))

    assert delete().error_code == E.GROUP_AUTHORIZATION_FAILED  # type: ignore[attr-defined]
    _grant(secured.auth, GROUP, "g-ok", AclOperation.DELETE)
    resp = delete()
    assert resp.error_code == 0  # type: ignore[attr-defined]
    codes = {t.name: t.partitions[0].error_code for t in resp.topics}  # type: ignore[attr-defined]
    assert codes == {"t-ok": 0, "secret": E.TOPIC_AUTHORIZATION_FAILED}


def test_create_topics_needs_create_on_cluster_or_topic(secured: Secured) -> None:
    def create(*names: str) -> dict[str, object]:
        r = secured.send(ApiKey.CREATE_TOPICS, 7, ct.CreateTopicsRequest(
            topics=[ct.CreatableTopic(n, 1, 1, [], []) for n in names], timeout_ms=10000))
        return {t.name: t for t in r.topics}  # type: ignore[attr-defined]

    out = create("t-new")
    assert out["t-new"].error_code == E.TOPIC_AUTHORIZATION_FAILED  # type: ignore[attr-defined]
    assert out["t-new"].error_message == "Authorization failed."  # type: ignore[attr-defined]
    assert out["t-new"].topic_config_error_code == E.TOPIC_AUTHORIZATION_FAILED  # type: ignore[attr-defined]
    _grant(secured.auth, ResourceType.TOPIC, "n-", AclOperation.CREATE, PatternType.PREFIXED)
    out = create("n-1", "t-new")
    created = out["n-1"]
    assert created.error_code == 0  # type: ignore[attr-defined]
    # Created, but without DESCRIBE_CONFIGS its configs and layout are not shown.
    assert created.topic_config_error_code == E.TOPIC_AUTHORIZATION_FAILED  # type: ignore[attr-defined]
    assert created.num_partitions == -1 and not created.configs  # type: ignore[attr-defined]
    assert out["t-new"].error_code == E.TOPIC_AUTHORIZATION_FAILED  # type: ignore[attr-defined]
    _grant(secured.auth, ResourceType.TOPIC, "n-", AclOperation.DESCRIBE_CONFIGS,
           PatternType.PREFIXED)
    shown = create("n-2")["n-2"]
    assert shown.error_code == 0 and shown.num_partitions == 1  # type: ignore[attr-defined]
    assert shown.topic_config_error_code == 0 and shown.configs  # type: ignore[attr-defined]
    _grant(secured.auth, CLUSTER, "kafka-cluster", AclOperation.CREATE)
    assert create("any-name")["any-name"].error_code == 0  # type: ignore[attr-defined]


def test_delete_topics_create_partitions_delete_records(secured: Secured) -> None:
    meta = secured.b.broker.services.topics  # type: ignore[union-attr]
    secret_id = meta.get("secret").topic_id
    resp = secured.send(ApiKey.DELETE_TOPICS, 6, dtr.DeleteTopicsRequest(
        topics=[dtr.DeleteTopicState(name="t-del"), dtr.DeleteTopicState(topic_id=secret_id)],
        timeout_ms=10000))
    rs = resp.responses  # type: ignore[attr-defined]
    assert (rs[0].name, rs[0].error_code) == ("t-del", E.TOPIC_AUTHORIZATION_FAILED)
    assert (rs[1].name, rs[1].error_code) == (None, E.TOPIC_AUTHORIZATION_FAILED)
    _grant(secured.auth, ResourceType.TOPIC, "t-d", AclOperation.DELETE, PatternType.PREFIXED)
    resp = secured.send(ApiKey.DELETE_TOPICS, 5, dtr.DeleteTopicsRequest(
        topic_names=["t-del", "t-dnowhere"], timeout_ms=10000))
    assert [r.error_code for r in resp.responses] == [  # type: ignore[attr-defined]
        0, E.UNKNOWN_TOPIC_OR_PARTITION]

    def add_partitions(name: str) -> int:
        r = secured.send(ApiKey.CREATE_PARTITIONS, 3, cp.CreatePartitionsRequest(
            topics=[cp.CreatePartitionsTopic(name, 2, None)], timeout_ms=10000))
        return int(r.results[0].error_code)  # type: ignore[attr-defined]

    assert add_partitions("t-ok") == E.TOPIC_AUTHORIZATION_FAILED
    _grant(secured.auth, ResourceType.TOPIC, "t-ok", AclOperation.ALTER)
    assert add_partitions("t-ok") == 0

    def delete_records(name: str) -> tuple[int, int]:
        r = secured.send(ApiKey.DELETE_RECORDS, 2, dr.DeleteRecordsRequest(
            topics=[dr.DeleteRecordsTopic(name, [dr.DeleteRecordsPartition(0, -1)])],
            timeout_ms=10000))
        p = r.topics[0].partitions[0]  # type: ignore[attr-defined]
        return int(p.error_code), int(p.low_watermark)

    assert delete_records("t-ok") == (E.TOPIC_AUTHORIZATION_FAILED, -1)
    _grant(secured.auth, ResourceType.TOPIC, "t-ok", AclOperation.DELETE)
    assert delete_records("t-ok")[0] == 0


def test_list_offsets_and_leader_epochs_need_describe_on_the_topic(secured: Secured) -> None:
    resp = secured.send(ApiKey.LIST_OFFSETS, 7, lo.ListOffsetsRequest(
        replica_id=-1, topics=[lo.ListOffsetsTopic(n, [lo.ListOffsetsPartition(0, timestamp=-1)])
                               for n in ("t-ok", "secret")]))
    codes = {t.name: (t.partitions[0].error_code, t.partitions[0].offset)
             for t in resp.topics}  # type: ignore[attr-defined]
    assert codes == {"t-ok": (0, 0), "secret": (E.TOPIC_AUTHORIZATION_FAILED, -1)}
    resp = secured.send(ApiKey.LIST_OFFSETS, 7, lo.ListOffsetsRequest(
        replica_id=-1, topics=[lo.ListOffsetsTopic(n, [lo.ListOffsetsPartition(0, timestamp=-1)])
                               for n in ("secret", "t-ok")]))
    # Kafka answers the authorized topics first.
    assert [t.name for t in resp.topics] == ["t-ok", "secret"]  # type: ignore[attr-defined]
    resp = secured.send(ApiKey.OFFSET_FOR_LEADER_EPOCH, 4, ofl.OffsetForLeaderEpochRequest(
        replica_id=-1, topics=[ofl.OffsetForLeaderTopic(n, [ofl.OffsetForLeaderPartition(
            0, -1, 0)]) for n in ("t-ok", "secret")]))
    codes = {t.topic: t.partitions[0].error_code for t in resp.topics}  # type: ignore[attr-defined]
    assert codes == {"t-ok": 0, "secret": E.TOPIC_AUTHORIZATION_FAILED}
    _grant(secured.auth, CLUSTER, "kafka-cluster", AclOperation.CLUSTER_ACTION)
    resp = secured.send(ApiKey.OFFSET_FOR_LEADER_EPOCH, 4, ofl.OffsetForLeaderEpochRequest(
        replica_id=-1, topics=[ofl.OffsetForLeaderTopic("secret", [ofl.OffsetForLeaderPartition(
            0, -1, 0)])]))
    assert resp.topics[0].partitions[0].error_code == 0  # type: ignore[attr-defined]


def test_configs_need_describe_or_alter_configs_on_topic_or_cluster(secured: Secured) -> None:
    def describe() -> list[tuple[int, str | None, int]]:
        r = secured.send(ApiKey.DESCRIBE_CONFIGS, 4, dc.DescribeConfigsRequest(resources=[
            dc.DescribeConfigsResource(2, "t-ok", None), dc.DescribeConfigsResource(4, "1", None)]))
        return [(x.error_code, x.error_message, len(x.configs))
                for x in r.results]  # type: ignore[attr-defined]

    assert describe() == [(E.TOPIC_AUTHORIZATION_FAILED, "Topic authorization failed.", 0),
                          (E.CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed.", 0)]
    _grant(secured.auth, ResourceType.TOPIC, "t-ok", AclOperation.ALTER_CONFIGS)
    _grant(secured.auth, CLUSTER, "kafka-cluster", AclOperation.DESCRIBE_CONFIGS)
    (topic_code, _, topic_n), (broker_code, _, broker_n) = describe()
    assert topic_code == broker_code == 0 and topic_n > 0 and broker_n > 0
    mixed = secured.send(ApiKey.DESCRIBE_CONFIGS, 4, dc.DescribeConfigsRequest(resources=[
        dc.DescribeConfigsResource(2, "secret", None), dc.DescribeConfigsResource(2, "t-ok", None)]))
    # Kafka answers the resources it may describe first.
    assert [(r.resource_name, r.error_code) for r in mixed.results] == [  # type: ignore[attr-defined]
        ("t-ok", 0), ("secret", E.TOPIC_AUTHORIZATION_FAILED)]

    def alter(resource_type: int, name: str) -> tuple[int, int]:
        a = secured.send(ApiKey.ALTER_CONFIGS, 2, ac.AlterConfigsRequest(resources=[
            ac.AlterConfigsResource(resource_type, name, [
                ac.AlterableConfig("retention.ms" if resource_type == 2
                                   else "log.cleaner.threads", "2")])], validate_only=True))
        i = secured.send(ApiKey.INCREMENTAL_ALTER_CONFIGS, 1, iac.IncrementalAlterConfigsRequest(
            resources=[iac.AlterConfigsResource(resource_type, name, [iac.AlterableConfig(
                "retention.ms" if resource_type == 2 else "log.cleaner.threads", 0, "2")])],
            validate_only=True))
        return (a.responses[0].error_code,  # type: ignore[attr-defined]
                i.responses[0].error_code)  # type: ignore[attr-defined]

    assert alter(2, "t-ok") == (0, 0)
    assert alter(2, "t-ro") == (E.TOPIC_AUTHORIZATION_FAILED,) * 2
    assert alter(4, "1") == (E.CLUSTER_AUTHORIZATION_FAILED,) * 2


def test_describe_log_dirs_needs_describe_on_the_cluster(secured: Secured) -> None:
    resp = secured.send(ApiKey.DESCRIBE_LOG_DIRS, 4, dld.DescribeLogDirsRequest(topics=None))
    assert resp.error_code == E.CLUSTER_AUTHORIZATION_FAILED  # type: ignore[attr-defined]
    assert resp.results == []  # type: ignore[attr-defined]
    _grant(secured.auth, CLUSTER, "kafka-cluster", AclOperation.DESCRIBE)
    resp = secured.send(ApiKey.DESCRIBE_LOG_DIRS, 4, dld.DescribeLogDirsRequest(topics=None))
    assert resp.error_code == 0 and resp.results  # type: ignore[attr-defined]


def test_init_producer_id(secured: Secured) -> None:
    def init(txn: str | None) -> int:
        r = secured.send(ApiKey.INIT_PRODUCER_ID, 4, ipi.InitProducerIdRequest(
            transactional_id=txn, transaction_timeout_ms=60000))
        return int(r.error_code)  # type: ignore[attr-defined]

    assert init("other-tx") == E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    assert init("tx-2") == 0
    assert init(None) == 0  # idempotent: WRITE on some topic (t-*) suffices (Kafka 3.x)
    _revoke(secured.auth, ResourceType.TOPIC, "t-", AclOperation.WRITE, PatternType.PREFIXED)
    assert init(None) == E.CLUSTER_AUTHORIZATION_FAILED
    _grant(secured.auth, CLUSTER, "kafka-cluster", AclOperation.IDEMPOTENT_WRITE)
    assert init(None) == 0


def test_transactions_need_write_on_the_transactional_id(secured: Secured) -> None:
    pid = secured.pid  # type: ignore[attr-defined]

    def add(txn: str, *topics: str, version: int = 3) -> dict[str, int]:
        r = secured.send(ApiKey.ADD_PARTITIONS_TO_TXN, version, apt.AddPartitionsToTxnRequest(
            v3_and_below_transactional_id=txn, v3_and_below_producer_id=pid,
            v3_and_below_producer_epoch=0,
            v3_and_below_topics=[apt.AddPartitionsToTxnTopic(t, [0]) for t in topics]))
        return {t.name: t.results_by_partition[0].partition_error_code
                for t in r.results_by_topic_v3_and_below}  # type: ignore[attr-defined]

    assert add("other-tx", "t-ok") == {"t-ok": E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED}
    assert add("tx-1", "t-ok", "secret", "t-ro", "__consumer_offsets") == {
        "t-ok": E.OPERATION_NOT_ATTEMPTED, "secret": E.TOPIC_AUTHORIZATION_FAILED,
        "t-ro": E.TOPIC_AUTHORIZATION_FAILED,
        "__consumer_offsets": E.TOPIC_AUTHORIZATION_FAILED}
    assert add("tx-1", "t-ok") == {"t-ok": 0}
    v4 = secured.send(ApiKey.ADD_PARTITIONS_TO_TXN, 4, apt.AddPartitionsToTxnRequest(
        transactions=[apt.AddPartitionsToTxnTransaction("tx-1", pid, 0, True, [
            apt.AddPartitionsToTxnTopic("t-ok", [0])])]))
    assert v4.error_code == E.CLUSTER_AUTHORIZATION_FAILED  # type: ignore[attr-defined]

    def offsets(txn: str, group: str) -> int:
        return int(secured.send(ApiKey.ADD_OFFSETS_TO_TXN, 3, aot.AddOffsetsToTxnRequest(
            txn, pid, 0, group)).error_code)  # type: ignore[attr-defined]

    assert offsets("other-tx", "g-ok") == E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    assert offsets("tx-1", "hidden") == E.GROUP_AUTHORIZATION_FAILED
    assert offsets("tx-1", "g-ok") == 0

    def txn_commit(txn: str, group: str) -> dict[str, int]:
        r = secured.send(ApiKey.TXN_OFFSET_COMMIT, 3, toc.TxnOffsetCommitRequest(
            transactional_id=txn, group_id=group, producer_id=pid, producer_epoch=0,
            topics=[toc.TxnOffsetCommitRequestTopic(t, [toc.TxnOffsetCommitRequestPartition(
                0, 1)]) for t in ("t-ok", "secret")]))
        return {t.name: t.partitions[0].error_code for t in r.topics}  # type: ignore[attr-defined]

    assert txn_commit("other-tx", "g-ok") == dict.fromkeys(
        ("t-ok", "secret"), E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    assert txn_commit("tx-1", "hidden") == dict.fromkeys(("t-ok", "secret"),
                                                         E.GROUP_AUTHORIZATION_FAILED)
    assert txn_commit("tx-1", "g-ok") == {"t-ok": 0, "secret": E.TOPIC_AUTHORIZATION_FAILED}

    def end(txn: str) -> int:
        return int(secured.send(ApiKey.END_TXN, 3, et.EndTxnRequest(
            txn, pid, 0, False)).error_code)  # type: ignore[attr-defined]

    assert end("other-tx") == E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    markers = secured.send(ApiKey.WRITE_TXN_MARKERS, 1, wtm.WriteTxnMarkersRequest(markers=[
        wtm.WritableTxnMarker(pid, 0, False, [wtm.WritableTxnMarkerTopic("t-ok", [0])], 0)]))
    assert markers.markers[0].topics[0].partitions[0].error_code == \
        E.CLUSTER_AUTHORIZATION_FAILED  # type: ignore[attr-defined]
    assert end("tx-1") == 0
    # ALTER on the cluster is enough for WriteTxnMarkers too (KafkaApis checks it first).
    _grant(secured.auth, CLUSTER, "kafka-cluster", AclOperation.ALTER)
    markers = secured.send(ApiKey.WRITE_TXN_MARKERS, 1, wtm.WriteTxnMarkersRequest(markers=[
        wtm.WritableTxnMarker(pid, 0, False, [wtm.WritableTxnMarkerTopic("t-ok", [0])], 0)]))
    assert markers.markers[0].topics[0].partitions[0].error_code == 0  # type: ignore[attr-defined]


def test_transaction_and_producer_views(secured: Secured) -> None:
    resp = secured.send(ApiKey.DESCRIBE_TRANSACTIONS, 0, dtx.DescribeTransactionsRequest(
        transactional_ids=["tx-1", "other-tx"]))
    states = resp.transaction_states  # type: ignore[attr-defined]
    assert [(s.transactional_id, s.error_code) for s in states] == [
        ("other-tx", E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED), ("tx-1", 0)]
    # tx-1 has partitions of t-ok and secret: only t-ok may be described.
    assert [t.topic for t in states[1].topics] == ["t-ok"]
    _grant(secured.auth, ResourceType.TOPIC, "secret", AclOperation.DESCRIBE)
    resp = secured.send(ApiKey.DESCRIBE_TRANSACTIONS, 0, dtx.DescribeTransactionsRequest(
        transactional_ids=["tx-1"]))
    assert sorted(t.topic for t in resp.transaction_states[0].topics) == [  # type: ignore[attr-defined]
        "secret", "t-ok"]
    listed = secured.send(ApiKey.LIST_TRANSACTIONS, 1, ltx.ListTransactionsRequest(
        state_filters=[], producer_id_filters=[]))
    assert [t.transactional_id for t in listed.transaction_states] == ["tx-1"]  # type: ignore[attr-defined]
    _revoke(secured.auth, TXN, "tx-", AclOperation.WRITE, PatternType.PREFIXED)
    listed = secured.send(ApiKey.LIST_TRANSACTIONS, 1, ltx.ListTransactionsRequest(
        state_filters=[], producer_id_filters=[]))
    assert listed.transaction_states == []  # type: ignore[attr-defined]
    producers = secured.send(ApiKey.DESCRIBE_PRODUCERS, 0, dp.DescribeProducersRequest(topics=[
        dp.TopicRequest(n, [0]) for n in ("t-ok", "secret")]))
    codes = {t.name: t.partitions[0].error_code for t in producers.topics}  # type: ignore[attr-defined]
    assert codes == {"t-ok": 0, "secret": E.TOPIC_AUTHORIZATION_FAILED}


def test_scram_credentials_need_describe_or_alter_on_the_cluster(secured: Secured) -> None:
    resp = secured.send(ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, 0,
                        dus.DescribeUserScramCredentialsRequest(users=[dus.UserName("alice")]))
    assert resp.error_code == E.CLUSTER_AUTHORIZATION_FAILED  # type: ignore[attr-defined]
    assert [r.error_code for r in resp.results] == [  # type: ignore[attr-defined]
        E.CLUSTER_AUTHORIZATION_FAILED]
    upsert = aus.ScramCredentialUpsertion("bob", 1, 4096, b"salt", b"x" * 32)
    resp = secured.send(ApiKey.ALTER_USER_SCRAM_CREDENTIALS, 0,
                        aus.AlterUserScramCredentialsRequest(deletions=[], upsertions=[upsert]))
    assert [(r.user, r.error_code) for r in resp.results] == [  # type: ignore[attr-defined]
        ("bob", E.CLUSTER_AUTHORIZATION_FAILED)]
    _grant(secured.auth, CLUSTER, "kafka-cluster", AclOperation.ALTER)
    resp = secured.send(ApiKey.ALTER_USER_SCRAM_CREDENTIALS, 0,
                        aus.AlterUserScramCredentialsRequest(deletions=[], upsertions=[upsert]))
    assert [(r.user, r.error_code) for r in resp.results] == [("bob", 0)]  # type: ignore[attr-defined]
    resp = secured.send(ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, 0,
                        dus.DescribeUserScramCredentialsRequest(users=[dus.UserName("bob")]))
    assert resp.error_code == 0  # type: ignore[attr-defined]  # ALTER implies DESCRIBE


def test_controller_and_inter_broker_requests_need_cluster_action() -> None:
    """Served by a member of a ZooKeeper cluster only (where the authorizer is still refused
    at start-up); the handlers check before touching any cluster state."""
    import trio

    from pykbroker.errors import KafkaError
    from pykbroker.handlers import controller_requests as cr
    from pykbroker.protocol._generated.alter_partition_reassignments_request import (
        AlterPartitionReassignmentsRequest,
    )
    from pykbroker.protocol._generated.alter_partition_request import AlterPartitionRequest
    from pykbroker.protocol._generated.controlled_shutdown_request import (
        ControlledShutdownRequest,
    )
    from pykbroker.protocol._generated.elect_leaders_request import (
        ElectLeadersRequest,
        TopicPartitions,
    )
    from pykbroker.protocol._generated.leader_and_isr_request import LeaderAndIsrRequest
    from pykbroker.protocol._generated.list_partition_reassignments_request import (
        ListPartitionReassignmentsRequest,
    )
    from pykbroker.protocol._generated.stop_replica_request import StopReplicaRequest
    from pykbroker.protocol._generated.update_metadata_request import UpdateMetadataRequest
    from tests.security.test_acl_handlers import context

    auth = StoredAclAuthorizer(None, frozenset(), False)

    async def main() -> None:
        for handler, req in [(cr.handle_leader_and_isr, LeaderAndIsrRequest()),
                             (cr.handle_update_metadata, UpdateMetadataRequest()),
                             (cr.handle_stop_replica, StopReplicaRequest()),
                             (cr.handle_controlled_shutdown, ControlledShutdownRequest()),
                             (cr.handle_alter_partition, AlterPartitionRequest()),
                             (cr.handle_alter_partition_reassignments,
                              AlterPartitionReassignmentsRequest()),
                             (cr.handle_list_partition_reassignments,
                              ListPartitionReassignmentsRequest())]:
            with pytest.raises(KafkaError) as info:
                await handler(context("User:broker", authorizer=auth), req)  # type: ignore[operator]
            assert info.value.error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        resp = await cr.handle_elect_leaders(
            context("User:alice", api=ApiKey.ELECT_LEADERS, version=2, authorizer=auth),
            ElectLeadersRequest(election_type=0, topic_partitions=[TopicPartitions("t", [0, 1])]))
        assert resp.error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        assert [p.error_code for p in resp.replica_election_results[0].partition_result] == \
            [ErrorCode.CLUSTER_AUTHORIZATION_FAILED] * 2

    trio.run(main)


def test_transactional_produce_needs_write_on_the_transactional_id(secured: Secured) -> None:
    pid = secured.pid  # type: ignore[attr-defined]
    batch = build_batch([(b"k", b"v", [], None)], producer_id=pid, producer_epoch=0,
                        base_sequence=0, is_transactional=True)

    def produce(txn: str | None) -> tuple[int, str | None]:
        resp = secured.send(ApiKey.PRODUCE, 9, ProduceRequest(
            transactional_id=txn, acks=-1, timeout_ms=5000, topic_data=[
                TopicProduceData("t-ok", [PartitionProduceData(0, batch)])]))
        p = resp.responses[0].partition_responses[0]  # type: ignore[attr-defined]
        return int(p.error_code), p.error_message

    code, message = produce("other-tx")
    assert code == E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    assert message == E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED.message
    assert produce(None)[0] == E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    assert produce("tx-1")[0] == 0  # t-ok/0 is in tx-1's transaction
