"""Authorization matrix (issue #17): a real broker process with Kafka's AclAuthorizer, a
SASL_PLAINTEXT listener with PLAIN users admin (``super.users``), alice and bob, and a
PLAINTEXT listener (``User:ANONYMOUS``, granted nothing).

The ACLs (created by the super user through confluent-kafka's AdminClient) mix literal and
prefixed patterns, ALLOW and DENY, on topics, groups, transactional ids and the cluster; each
test tabulates, per principal and resource, the answer Kafka 3.9 gives by its documented
rules (docs/security.html "Authorization and ACLs" and its table "Operations and Resources
on Protocols", checked against KafkaApis.scala of the 3.9 branch): DENY wins over ALLOW, READ/WRITE/DELETE/ALTER
imply DESCRIBE, ALTER_CONFIGS implies DESCRIBE_CONFIGS, a super user may do anything, a
resource with no matching ALLOW is denied. Stock clients (confluent-kafka, kafka-python)
drive the APIs they expose; raw protocol requests (SASL PLAIN handshake included) the others,
and check byte for byte that no record, topic or group name reaches whom may not see it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from compat_tests.broker_process import BrokerProcess
from pykbroker.free_ports import free_port
from pykbroker.protocol.framing import decode_response, encode_request
from pykbroker.testing import _Client

PASSWORDS = {"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret"}
JAAS = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
        'username="admin" password="admin-secret" '
        + " ".join(f'user_{u}="{p}"' for u, p in PASSWORDS.items()) + ";")

OK = KafkaError.NO_ERROR
TOPIC_DENIED = KafkaError.TOPIC_AUTHORIZATION_FAILED  # 29
GROUP_DENIED = KafkaError.GROUP_AUTHORIZATION_FAILED  # 30
CLUSTER_DENIED = KafkaError.CLUSTER_AUTHORIZATION_FAILED  # 31
TXN_DENIED = KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED  # 53
UNKNOWN_TOPIC = KafkaError.UNKNOWN_TOPIC_OR_PART  # 3

L, P = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
ALLOW, DENY = AclPermissionType.ALLOW, AclPermissionType.DENY
R = f"acl{uuid.uuid4().hex[:6]}"  # fresh names for this module's broker

# Resources (created by admin): topics, and groups with committed offsets.
PUB_A, PUB_LOCKED, BOB_T, SECRET = f"{R}-pub-a", f"{R}-pub-locked", f"{R}-bob", f"{R}-secret"
TOPICS = [PUB_A, PUB_LOCKED, BOB_T, SECRET]
G_A, G_LOCKED, G_BOB, G_HIDDEN = f"{R}-g-a", f"{R}-g-locked", f"{R}-bobgroup", f"{R}-hidden"
GROUPS = [G_A, G_LOCKED, G_BOB, G_HIDDEN]
TX_1, TX_LOCKED = f"{R}-tx-1", f"{R}-tx-locked"
SECRET_VALUE = b"top-secret-record-" + R.encode()

ACLS = [
    # topics: alice READ+WRITE on R-pub-* but READ denied on R-pub-locked; CREATE on R-new-*;
    # ALTER_CONFIGS (so DESCRIBE_CONFIGS) on R-pub-a; bob everything on R-bob.
    (ResourceType.TOPIC, f"{R}-pub-", P, "alice", AclOperation.READ, ALLOW),
    (ResourceType.TOPIC, f"{R}-pub-", P, "alice", AclOperation.WRITE, ALLOW),
    (ResourceType.TOPIC, PUB_LOCKED, L, "alice", AclOperation.READ, DENY),
    (ResourceType.TOPIC, f"{R}-new-", P, "alice", AclOperation.CREATE, ALLOW),
    (ResourceType.TOPIC, PUB_A, L, "alice", AclOperation.ALTER_CONFIGS, ALLOW),
    (ResourceType.TOPIC, BOB_T, L, "bob", AclOperation.ALL, ALLOW),
    # groups: alice READ on R-g-* but READ denied on R-g-locked; bob READ+DELETE on his.
    (ResourceType.GROUP, f"{R}-g-", P, "alice", AclOperation.READ, ALLOW),
    (ResourceType.GROUP, G_LOCKED, L, "alice", AclOperation.READ, DENY),
    (ResourceType.GROUP, G_BOB, L, "bob", AclOperation.READ, ALLOW),
    (ResourceType.GROUP, G_BOB, L, "bob", AclOperation.DELETE, ALLOW),
    # transactional ids: alice WRITE on R-tx-* but not R-tx-locked.
    (ResourceType.TRANSACTIONAL_ID, f"{R}-tx-", P, "alice", AclOperation.WRITE, ALLOW),
    (ResourceType.TRANSACTIONAL_ID, TX_LOCKED, L, "alice", AclOperation.WRITE, DENY),
    # the cluster: bob may DESCRIBE it (all groups, log dirs) and CREATE any topic.
    (ResourceType.BROKER, "kafka-cluster", L, "bob", AclOperation.DESCRIBE, ALLOW),
    (ResourceType.BROKER, "kafka-cluster", L, "bob", AclOperation.CREATE, ALLOW),
]


class Broker:
    def __init__(self, proc: BrokerProcess, sasl_port: int) -> None:
        self.proc, self.sasl_port = proc, sasl_port
        self.admins: dict[str | None, AdminClient] = {}

    def conf(self, user: str | None) -> dict[str, Any]:
        """confluent-kafka settings for ``user`` over SASL_PLAINTEXT (None: PLAINTEXT)."""
        if user is None:
            return {"bootstrap.servers": self.proc.bootstrap}
        return {"bootstrap.servers": f"127.0.0.1:{self.sasl_port}",
                "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                "sasl.username": user, "sasl.password": PASSWORDS[user]}

    def admin(self, user: str | None) -> AdminClient:
        """One client per principal, kept: a dropped AdminClient fails its futures."""
        if user not in self.admins:
            self.admins[user] = AdminClient(self.conf(user))
        return self.admins[user]

    def raw(self, user: str | None) -> Raw:
        if user is None:
            return Raw(self.proc.bootstrap)
        return Raw(f"127.0.0.1:{self.sasl_port}", user)


class Raw(_Client):
    """Raw requests, authenticated with SASL PLAIN (SaslHandshake v1 + SaslAuthenticate v2)
    when a user is given; ``last`` holds the raw bytes of the last response."""

    def __init__(self, bootstrap: str, user: str | None = None) -> None:
        super().__init__(bootstrap)
        self.last = b""
        if user is not None:
            from pykbroker.protocol._generated.sasl_authenticate_request import (
                SaslAuthenticateRequest,
            )
            from pykbroker.protocol._generated.sasl_handshake_request import (
                SaslHandshakeRequest,
            )

            assert self.send(17, 1, SaslHandshakeRequest("PLAIN")).error_code == 0
            token = b"\0" + user.encode() + b"\0" + PASSWORDS[user].encode()
            assert self.send(36, 2, SaslAuthenticateRequest(token)).error_code == 0

    def send(self, api_key: int, version: int, body: Any) -> Any:
        import struct

        corr = next(self._corr)
        self.sock.sendall(encode_request(api_key, version, corr, "acl-matrix", body))
        (size,) = struct.unpack(">i", self._read(4))
        self.last = self._read(size)
        _, resp = decode_response(self.last, api_key, version)
        return resp

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ok(futures: dict[Any, Any], timeout: float = 20) -> None:
    for f in futures.values():
        f.result(timeout)


def _code(future: Any, timeout: float = 20) -> int:
    """The Kafka error code a stock admin future ends with (0 when it succeeds)."""
    try:
        future.result(timeout)
    except KafkaException as exc:
        return int(exc.args[0].code())
    return 0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    base = tmp_path_factory.mktemp("acls")
    plain, sasl = free_port(), free_port()
    proc = BrokerProcess(base / "data", {
        "listeners": f"PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl}",
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
        "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
        "super.users": "User:admin",
        "auto.create.topics.enable": "true",
        "group.initial.rebalance.delay.ms": "0",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
    })
    proc.port = plain
    proc.start()
    b = Broker(proc, sasl)
    try:
        admin = b.admin("admin")
        _ok(admin.create_topics([NewTopic(t, 1, 1) for t in TOPICS]))
        _ok(admin.create_acls([AclBinding(rt, name, pt, f"User:{user}", "*", op, perm)
                               for rt, name, pt, user, op, perm in ACLS]))
        producer = Producer(b.conf("admin"))
        for t in TOPICS:
            producer.produce(t, SECRET_VALUE if t == SECRET else f"in {t}".encode())
        assert producer.flush(30) == 0
        # Every group has committed offsets on R-pub-a and R-secret (by the super user).
        for g in GROUPS:
            _ok(admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(
                g, [TopicPartition(PUB_A, 0, 1), TopicPartition(SECRET, 0, 1)])]))
        yield b
    finally:
        proc.close()


# -- ACL management -----------------------------------------------------------------------

def test_only_the_super_user_manages_acls(broker: Broker) -> None:
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                  AclOperation.ANY, AclPermissionType.ANY)
    found = broker.admin("admin").describe_acls(everything).result(20)
    assert len(found) == len(ACLS)
    assert {(a.name, a.principal, a.operation, a.permission_type) for a in found} == {
        (name, f"User:{user}", op, perm) for _, name, _, user, op, perm in ACLS}
    from pykbroker.protocol._generated.describe_acls_request import DescribeAclsRequest

    # bob may DESCRIBE the cluster, which is what DescribeAcls needs (creating needs ALTER).
    assert len(broker.admin("bob").describe_acls(everything).result(20)) == len(ACLS)
    for user in ("alice", None):
        # librdkafka does not surface DescribeAcls' top-level error (an empty list); the
        # raw answer is CLUSTER_AUTHORIZATION_FAILED.
        assert broker.admin(user).describe_acls(everything).result(20) == []
        with broker.raw(user) as raw:
            resp = raw.send(29, 3, DescribeAclsRequest(
                resource_type_filter=1, resource_name_filter=None, pattern_type_filter=1,
                principal_filter=None, host_filter=None, operation=1, permission_type=1))
            assert b"User:" not in raw.last and R.encode() not in raw.last
        assert (resp.error_code, resp.resources) == (CLUSTER_DENIED, [])
        assert resp.error_message
    for user in ("alice", "bob", None):
        creation = broker.admin(user).create_acls([AclBinding(
            ResourceType.TOPIC, SECRET, L, f"User:{user}", "*", AclOperation.ALL, ALLOW)])
        assert [_code(f) for f in creation.values()] == [CLUSTER_DENIED]


# -- Metadata -------------------------------------------------------------------------------

# Which of the topics each principal sees in a Metadata request for all topics: DESCRIBE,
# implied by any of READ/WRITE/DELETE/ALTER (a DENY of READ does not deny DESCRIBE).
VISIBLE_TOPICS = {
    "admin": set(TOPICS),
    "alice": {PUB_A, PUB_LOCKED},
    "bob": {BOB_T},
    None: set(),
}


@pytest.mark.parametrize("user", ["admin", "alice", "bob", None])
def test_metadata_lists_only_describable_topics(broker: Broker, user: str | None) -> None:
    md = broker.admin(user).list_topics(timeout=20)
    assert {t for t in md.topics if t.startswith(R)} == VISIBLE_TOPICS[user]


@pytest.mark.parametrize("user", ["alice", "bob", None])
def test_metadata_hides_whether_an_undescribable_topic_exists(broker: Broker,
                                                              user: str | None) -> None:
    """A named topic it may not describe and a topic that does not exist get the same
    answer (TOPIC_AUTHORIZATION_FAILED, no partitions): existence is not disclosed."""
    from pykbroker.protocol._generated.metadata_request import (
        MetadataRequest,
        MetadataRequestTopic,
    )

    with broker.raw(user) as raw:
        resp = raw.send(3, 12, MetadataRequest(topics=[
            MetadataRequestTopic(name=SECRET), MetadataRequestTopic(name=f"{R}-nothing")],
            allow_auto_topic_creation=False))
        answers = {t.name: (t.error_code, t.partitions, t.topic_id.int) for t in resp.topics}
    assert answers == {SECRET: (TOPIC_DENIED, [], 0), f"{R}-nothing": (TOPIC_DENIED, [], 0)}


# -- Produce and Fetch ------------------------------------------------------------------------

# Produce needs WRITE on the topic.
PRODUCE = {
    "admin": dict.fromkeys(TOPICS, OK),
    "alice": {PUB_A: OK, PUB_LOCKED: OK, BOB_T: TOPIC_DENIED, SECRET: TOPIC_DENIED},
    "bob": {PUB_A: TOPIC_DENIED, PUB_LOCKED: TOPIC_DENIED, BOB_T: OK, SECRET: TOPIC_DENIED},
    None: dict.fromkeys(TOPICS, TOPIC_DENIED),
}


@pytest.mark.parametrize("user", ["admin", "alice", "bob", None])
def test_produce_matrix_confluent(broker: Broker, user: str | None) -> None:
    results: dict[str, int] = {}

    def report(err: KafkaError | None, msg: Any) -> None:
        results[msg.topic()] = OK if err is None else err.code()

    producer = Producer({**broker.conf(user), "message.timeout.ms": 15000,
                         "allow.auto.create.topics": False})
    for t in TOPICS:
        producer.produce(t, b"matrix", on_delivery=report)
    producer.flush(30)
    assert results == PRODUCE[user]


# Fetch needs READ on the topic; records are returned only then.
FETCH = {
    "admin": dict.fromkeys(TOPICS, OK),
    "alice": {PUB_A: OK, PUB_LOCKED: TOPIC_DENIED, BOB_T: TOPIC_DENIED, SECRET: TOPIC_DENIED},
    "bob": {PUB_A: TOPIC_DENIED, PUB_LOCKED: TOPIC_DENIED, BOB_T: OK, SECRET: TOPIC_DENIED},
    None: dict.fromkeys(TOPICS, TOPIC_DENIED),
}


def _fetch(raw: Raw, topics: list[str], replica_id: int = -1) -> dict[str, tuple[int, bytes]]:
    from pykbroker.protocol._generated.fetch_request import (
        FetchPartition,
        FetchRequest,
        FetchTopic,
    )

    resp = raw.send(1, 12, FetchRequest(
        replica_id=replica_id, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20, topics=[
            FetchTopic(topic=t, partitions=[FetchPartition(
                partition=0, fetch_offset=0, partition_max_bytes=1 << 20)]) for t in topics]))
    return {r.topic: (r.partitions[0].error_code, bytes(r.partitions[0].records or b""))
            for r in resp.responses}


@pytest.mark.parametrize("user", ["admin", "alice", "bob", None])
def test_fetch_matrix_and_no_record_leaks(broker: Broker, user: str | None) -> None:
    with broker.raw(user) as raw:
        got = _fetch(raw, TOPICS)
        raw_bytes = raw.last
    assert {t: code for t, (code, _) in got.items()} == FETCH[user]
    for t, (code, records) in got.items():
        assert bool(records) == (code == OK), t
    assert (SECRET_VALUE in raw_bytes) == (user == "admin")


def test_a_follower_fetch_needs_cluster_action(broker: Broker) -> None:
    with broker.raw("alice") as raw:
        assert _fetch(raw, [PUB_A], replica_id=1) == {PUB_A: (TOPIC_DENIED, b"")}


def test_confluent_consumer_reads_only_what_it_may(broker: Broker) -> None:
    conf = {**broker.conf("alice"), "group.id": f"{R}-g-reader", "enable.auto.commit": False,
            "auto.offset.reset": "earliest"}
    consumer = Consumer(conf)
    try:
        consumer.assign([TopicPartition(PUB_A, 0, 0)])
        msg = None
        deadline = time.monotonic() + 30
        while msg is None and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None and m.error() is None:
                msg = m
        assert msg is not None and msg.value() == f"in {PUB_A}".encode()
        # librdkafka does not fetch a partition whose topic Metadata denies: no record
        # arrives (an error, if surfaced, is TOPIC_AUTHORIZATION_FAILED).
        consumer.assign([TopicPartition(SECRET, 0, 0), TopicPartition(PUB_LOCKED, 0, 0)])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None:
                assert m.error() is not None, f"alice read {m.topic()}: {m.value()!r}"
                assert m.error().code() == TOPIC_DENIED
    finally:
        consumer.close()


def test_kafka_python_consumer_is_refused_a_topic_it_may_not_read(broker: Broker) -> None:
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    from kafka.errors import TopicAuthorizationFailedError

    consumer = KafkaConsumer(
        bootstrap_servers=f"127.0.0.1:{broker.sasl_port}", security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN", sasl_plain_username="alice",
        sasl_plain_password=PASSWORDS["alice"], enable_auto_commit=False,
        auto_offset_reset="earliest", api_version=(2, 8))
    try:
        consumer.assign([KTP(PUB_A, 0)])
        got = consumer.poll(timeout_ms=10000)
        assert [r.value for rs in got.values() for r in rs][:1] == [f"in {PUB_A}".encode()]
        consumer.assign([KTP(PUB_LOCKED, 0)])
        with pytest.raises(TopicAuthorizationFailedError):
            for _ in range(20):
                assert not consumer.poll(timeout_ms=500), "alice read a topic denied to her"
    finally:
        consumer.close()


# -- Consumer groups ------------------------------------------------------------------------

def _ck_join(broker: Broker, user: str, group: str, topic: str) -> tuple[int | None, bytes]:
    """A confluent consumer subscribing as ``user`` in ``group``: the first error code (None
    when none) and the first record value it got."""
    consumer = Consumer({**broker.conf(user), "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "session.timeout.ms": 10000})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                return m.error().code(), b""
            return None, m.value()
        return None, b""
    finally:
        consumer.close()


# Joining a group needs READ on it (and reading the topic READ on the topic).
JOIN = [
    ("alice", f"{R}-g-new", PUB_A, (None, f"in {PUB_A}".encode())),
    ("alice", G_LOCKED, PUB_A, (GROUP_DENIED, b"")),  # DENY READ beats the prefixed ALLOW
    ("alice", G_BOB, PUB_A, (GROUP_DENIED, b"")),
    ("bob", G_BOB, BOB_T, (None, f"in {BOB_T}".encode())),
    ("bob", f"{R}-g-new2", BOB_T, (GROUP_DENIED, b"")),
    ("admin", f"{R}-anything", SECRET, (None, SECRET_VALUE)),
]


@pytest.mark.parametrize(("user", "group", "topic", "expected"), JOIN)
def test_group_join_matrix_confluent(broker: Broker, user: str, group: str, topic: str,
                                     expected: tuple[int | None, bytes]) -> None:
    assert _ck_join(broker, user, group, topic) == expected


def test_kafka_python_group_member_is_refused_a_group(broker: Broker) -> None:
    from kafka import KafkaConsumer
    from kafka.errors import GroupAuthorizationFailedError

    consumer = KafkaConsumer(
        PUB_A, bootstrap_servers=f"127.0.0.1:{broker.sasl_port}",
        security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
        sasl_plain_username="alice", sasl_plain_password=PASSWORDS["alice"],
        group_id=G_LOCKED, auto_offset_reset="earliest", api_version=(2, 8))
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            for _ in range(20):
                assert not consumer.poll(timeout_ms=500)
    finally:
        consumer.close()


# ListGroups: the groups it may DESCRIBE (READ implies it); DESCRIBE on the cluster: all.
LISTED = {
    "admin": set(GROUPS),
    "alice": {G_A, G_LOCKED},  # a DENY of READ does not deny DESCRIBE
    "bob": set(GROUPS),  # DESCRIBE on the cluster
    None: set(),
}


@pytest.mark.parametrize("user", ["admin", "alice", "bob", None])
def test_list_groups_matrix(broker: Broker, user: str | None) -> None:
    groups = broker.admin(user).list_consumer_groups().result(20)
    assert {g.group_id for g in groups.valid if g.group_id in GROUPS} == LISTED[user]
    with broker.raw(user) as raw:
        from pykbroker.protocol._generated.list_groups_request import ListGroupsRequest

        raw.send(16, 4, ListGroupsRequest(states_filter=[]))
        for g in set(GROUPS) - LISTED[user]:
            assert g.encode() not in raw.last


# DescribeGroups needs DESCRIBE on each group; an unauthorized one shows nothing.
@pytest.mark.parametrize(("user", "group", "code"), [
    ("alice", G_A, OK), ("alice", G_HIDDEN, GROUP_DENIED), ("alice", G_BOB, GROUP_DENIED),
    ("bob", G_BOB, OK), ("bob", G_A, GROUP_DENIED), ("admin", G_HIDDEN, OK)])
def test_describe_groups_matrix(broker: Broker, user: str, group: str, code: int) -> None:
    future = broker.admin(user).describe_consumer_groups([group])[group]
    assert _code(future) == code
    from pykbroker.protocol._generated.describe_groups_request import DescribeGroupsRequest

    with broker.raw(user) as raw:
        resp = raw.send(15, 5, DescribeGroupsRequest(groups=[group],
                                                     include_authorized_operations=True))
    (g,) = resp.groups
    assert g.error_code == code
    if code:
        assert (g.group_state, g.protocol_type, g.members) == ("", "", [])
        assert g.authorized_operations == -(2**31)


# OffsetFetch (ListConsumerGroupOffsets): DESCRIBE on the group; of all its offsets only the
# topics it may DESCRIBE (every group has offsets on R-pub-a and R-secret).
FETCHED_OFFSETS = [
    ("admin", G_HIDDEN, OK, {PUB_A, SECRET}),
    ("alice", G_A, OK, {PUB_A}),
    ("alice", G_HIDDEN, GROUP_DENIED, set()),
    ("bob", G_BOB, OK, set()),  # bob may describe neither topic
    ("bob", G_A, GROUP_DENIED, set()),  # DESCRIBE on the cluster is not on the group
]


@pytest.mark.parametrize(("user", "group", "code", "topics"), FETCHED_OFFSETS)
def test_offset_fetch_matrix(broker: Broker, user: str, group: str, code: int,
                             topics: set[str]) -> None:
    future = broker.admin(user).list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)])[group]
    if code:
        assert _code(future) == code
    else:
        got = future.result(20)
        assert {tp.topic for tp in got.topic_partitions if tp.error is None} == topics
    from pykbroker.protocol._generated.offset_fetch_request import (
        OffsetFetchRequest,
        OffsetFetchRequestGroup,
    )

    with broker.raw(user) as raw:
        raw.send(9, 8, OffsetFetchRequest(groups=[OffsetFetchRequestGroup(group, topics=None)]))
        assert (SECRET.encode() in raw.last) == (SECRET in topics)


# OffsetCommit (AlterConsumerGroupOffsets): READ on the group and on each topic.
@pytest.mark.parametrize(("user", "group", "topic", "code"), [
    ("alice", G_A, PUB_A, OK), ("alice", G_A, SECRET, TOPIC_DENIED),
    ("alice", G_A, PUB_LOCKED, TOPIC_DENIED), ("alice", G_HIDDEN, PUB_A, GROUP_DENIED),
    ("bob", G_BOB, BOB_T, OK), ("bob", G_BOB, PUB_A, TOPIC_DENIED),
    ("admin", G_HIDDEN, SECRET, OK)])
def test_offset_commit_matrix(broker: Broker, user: str, group: str, topic: str,
                              code: int) -> None:
    future = broker.admin(user).alter_consumer_group_offsets([ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, 0, 1)])])[group]
    if code == GROUP_DENIED:
        assert _code(future) == code
        return
    result = future.result(20)
    errors = [tp.error.code() if tp.error else OK for tp in result.topic_partitions]
    assert errors == [code]


def test_delete_groups_and_offsets_need_delete_on_the_group(broker: Broker) -> None:
    from pykbroker.protocol._generated.offset_delete_request import (
        OffsetDeleteRequest,
        OffsetDeleteRequestPartition,
        OffsetDeleteRequestTopic,
    )

    def offset_delete(user: str, group: str, topic: str) -> tuple[int, list[int]]:
        with broker.raw(user) as raw:
            r = raw.send(47, 0, OffsetDeleteRequest(group_id=group, topics=[
                OffsetDeleteRequestTopic(topic, [OffsetDeleteRequestPartition(0)])]))
        return r.error_code, [p.error_code for t in r.topics for p in t.partitions]

    assert offset_delete("alice", G_A, PUB_A) == (GROUP_DENIED, [])  # READ is not DELETE
    assert offset_delete("bob", G_BOB, SECRET) == (OK, [TOPIC_DENIED])
    assert offset_delete("bob", G_BOB, PUB_A) == (OK, [TOPIC_DENIED])
    assert offset_delete("admin", G_BOB, PUB_A) == (OK, [OK])
    deleted = broker.admin("alice").delete_consumer_groups([G_A])
    assert _code(deleted[G_A]) == GROUP_DENIED
    deleted = broker.admin("bob").delete_consumer_groups([G_HIDDEN])
    assert _code(deleted[G_HIDDEN]) == GROUP_DENIED
    deleted = broker.admin("bob").delete_consumer_groups([G_BOB])
    assert _code(deleted[G_BOB]) == OK
    assert G_BOB not in {g.group_id for g in
                         broker.admin("admin").list_consumer_groups().result(20).valid}
    # (restore it for the other tests of this module)
    _ok(broker.admin("admin").alter_consumer_group_offsets([ConsumerGroupTopicPartitions(
        G_BOB, [TopicPartition(PUB_A, 0, 1), TopicPartition(SECRET, 0, 1)])]))


def test_find_coordinator_needs_describe(broker: Broker) -> None:
    from pykbroker.protocol._generated.find_coordinator_request import FindCoordinatorRequest

    with broker.raw("alice") as raw:
        r = raw.send(10, 4, FindCoordinatorRequest(key_type=0, coordinator_keys=[
            G_A, G_LOCKED, G_HIDDEN]))
        assert [c.error_code for c in r.coordinators] == [OK, OK, GROUP_DENIED]
        r = raw.send(10, 4, FindCoordinatorRequest(key_type=1, coordinator_keys=[
            TX_1, TX_LOCKED, f"{R}-other"]))
        # alice may WRITE (so DESCRIBE) R-tx-*; a DENY of WRITE does not deny DESCRIBE.
        assert [c.error_code for c in r.coordinators] == [OK, OK, TXN_DENIED]


# -- Topic administration -------------------------------------------------------------------

def test_create_topics_matrix(broker: Broker) -> None:
    def create(user: str, name: str) -> int:
        return _code(broker.admin(user).create_topics([NewTopic(name, 1, 1)])[name])

    assert create("alice", f"{R}-new-1") == OK  # CREATE on the prefix
    assert create("alice", f"{R}-other") == TOPIC_DENIED
    assert create("bob", f"{R}-bobs-any") == OK  # CREATE on the cluster
    assert create(None, f"{R}-anon") == TOPIC_DENIED  # type: ignore[arg-type]
    visible = {t for t in broker.admin("admin").list_topics(timeout=20).topics
               if t.startswith(R)}
    assert {f"{R}-new-1", f"{R}-bobs-any"} <= visible
    assert not {f"{R}-other", f"{R}-anon"} & visible


@pytest.mark.parametrize(("user", "topic", "code"), [
    ("alice", PUB_A, TOPIC_DENIED), ("alice", SECRET, TOPIC_DENIED),
    ("bob", PUB_A, TOPIC_DENIED), ("admin", f"{R}-doomed", OK)])
def test_delete_topics_matrix(broker: Broker, user: str, topic: str, code: int) -> None:
    if user == "admin":
        _ok(broker.admin("admin").create_topics([NewTopic(topic, 1, 1)]))
    assert _code(broker.admin(user).delete_topics([topic], operation_timeout=10)[topic]) == code


def test_create_partitions_and_delete_records_matrix(broker: Broker) -> None:
    def grow(user: str, topic: str, count: int) -> int:
        return _code(broker.admin(user).create_partitions(
            [NewPartitions(topic, count)], operation_timeout=10)[topic])

    assert grow("alice", PUB_A, 2) == TOPIC_DENIED  # needs ALTER
    assert grow("bob", BOB_T, 2) == OK  # ALL
    assert grow("bob", SECRET, 2) == TOPIC_DENIED

    def delete_records(user: str, topic: str) -> int:
        fut = broker.admin(user).delete_records([TopicPartition(topic, 0, -1)])
        return _code(next(iter(fut.values())))

    def raw_delete_records(user: str, topic: str) -> int:
        from pykbroker.protocol._generated import delete_records_request as dr

        with broker.raw(user) as raw:
            r = raw.send(21, 2, dr.DeleteRecordsRequest(topics=[dr.DeleteRecordsTopic(
                topic, [dr.DeleteRecordsPartition(0, -1)])], timeout_ms=10000))
        return int(r.topics[0].partitions[0].error_code)

    assert delete_records("alice", PUB_A) == TOPIC_DENIED  # needs DELETE
    # A topic it may not describe: librdkafka finds no leader in Metadata and fails
    # locally (_NOENT), as with Kafka; the broker's own answer is TOPIC_AUTHORIZATION_FAILED.
    assert delete_records("bob", SECRET) == KafkaError._NOENT
    assert raw_delete_records("bob", SECRET) == TOPIC_DENIED
    assert delete_records("bob", BOB_T) == OK


@pytest.mark.parametrize(("user", "topic", "code"), [
    ("alice", PUB_A, OK), ("alice", PUB_LOCKED, OK),  # DESCRIBE is implied by WRITE
    ("alice", SECRET, TOPIC_DENIED), ("bob", PUB_A, TOPIC_DENIED), ("admin", SECRET, OK)])
def test_list_offsets_matrix(broker: Broker, user: str, topic: str, code: int) -> None:
    """(Denied, the topic is also hidden from Metadata, so librdkafka fails locally with
    _NOENT before asking, as with Kafka; the broker's answer is checked raw.)"""
    from pykbroker.protocol._generated import list_offsets_request as lo

    fut = broker.admin(user).list_offsets({TopicPartition(topic, 0): OffsetSpec.latest()})
    assert _code(next(iter(fut.values()))) == (KafkaError._NOENT if code else OK)
    with broker.raw(user) as raw:
        r = raw.send(2, 7, lo.ListOffsetsRequest(replica_id=-1, topics=[lo.ListOffsetsTopic(
            topic, [lo.ListOffsetsPartition(0, timestamp=-1)])]))
    p = r.topics[0].partitions[0]
    assert (p.error_code, p.offset >= 0) == (code, code == OK)


# DescribeConfigs: DESCRIBE_CONFIGS on the topic (ALTER_CONFIGS implies it) or, for a broker,
# on the cluster; AlterConfigs/IncrementalAlterConfigs: ALTER_CONFIGS.
CONFIGS = [
    ("alice", ConfigResource.Type.TOPIC, PUB_A, OK, OK),
    ("alice", ConfigResource.Type.TOPIC, PUB_LOCKED, TOPIC_DENIED, TOPIC_DENIED),
    ("alice", ConfigResource.Type.BROKER, "1", CLUSTER_DENIED, CLUSTER_DENIED),
    ("bob", ConfigResource.Type.TOPIC, BOB_T, OK, OK),
    ("bob", ConfigResource.Type.TOPIC, SECRET, TOPIC_DENIED, TOPIC_DENIED),
    ("bob", ConfigResource.Type.BROKER, "1", CLUSTER_DENIED, CLUSTER_DENIED),
    ("admin", ConfigResource.Type.BROKER, "1", OK, OK),
]


@pytest.mark.parametrize(("user", "rtype", "name", "describe", "alter"), CONFIGS)
def test_configs_matrix(broker: Broker, user: str, rtype: Any, name: str, describe: int,
                        alter: int) -> None:
    admin = broker.admin(user)
    (fut,) = admin.describe_configs([ConfigResource(rtype, name)]).values()
    assert _code(fut) == describe
    key = "retention.ms" if rtype == ConfigResource.Type.TOPIC else "log.cleaner.threads"
    change = ConfigResource(rtype, name, incremental_configs=[
        ConfigEntry(key, "600000" if rtype == ConfigResource.Type.TOPIC else "1",
                    incremental_operation=AlterConfigOpType.SET)])
    (fut,) = admin.incremental_alter_configs([change], validate_only=True).values()
    assert _code(fut) == alter


def test_log_dirs_need_describe_on_the_cluster(broker: Broker) -> None:
    from pykbroker.protocol._generated.describe_log_dirs_request import DescribeLogDirsRequest

    for user, code in (("alice", CLUSTER_DENIED), ("bob", OK), ("admin", OK), (None, 31)):
        with broker.raw(user) as raw:
            r = raw.send(35, 4, DescribeLogDirsRequest(topics=None))
            assert r.error_code == code
            assert (SECRET.encode() in raw.last) == (code == OK)


# -- Producer ids and transactions ----------------------------------------------------------

def test_idempotent_producer_needs_idempotent_write_or_write_on_some_topic(
        broker: Broker) -> None:
    from pykbroker.protocol._generated.init_producer_id_request import InitProducerIdRequest

    for user, code in (("alice", OK), ("bob", OK), ("admin", OK), (None, CLUSTER_DENIED)):
        with broker.raw(user) as raw:
            r = raw.send(22, 4, InitProducerIdRequest(transactional_id=None,
                                                      transaction_timeout_ms=60000))
        assert (r.error_code, r.producer_id >= 0) == (code, code == OK), user
    producer = Producer({**broker.conf("bob"), "enable.idempotence": True})
    producer.produce(BOB_T, b"idempotent")
    assert producer.flush(30) == 0


def _txn_producer(broker: Broker, user: str, txn: str) -> Producer:
    return Producer({**broker.conf(user), "transactional.id": txn,
                     "transaction.timeout.ms": 60000})


@pytest.mark.parametrize(("user", "txn", "code"), [
    ("alice", TX_1, OK), ("alice", TX_LOCKED, TXN_DENIED), ("alice", f"{R}-other", TXN_DENIED),
    ("bob", TX_1, TXN_DENIED), ("admin", f"{R}-admin-tx", OK)])
def test_init_transactions_matrix(broker: Broker, user: str, txn: str, code: int) -> None:
    producer = _txn_producer(broker, user, txn)
    try:
        producer.init_transactions(20)
    except KafkaException as exc:
        assert exc.args[0].code() == code
    else:
        assert code == OK


def test_a_transaction_writes_and_commits_offsets_only_where_allowed(broker: Broker) -> None:
    producer = _txn_producer(broker, "alice", TX_1)
    producer.init_transactions(20)
    producer.begin_transaction()
    producer.produce(PUB_A, b"in a transaction")
    consumer = Consumer({**broker.conf("alice"), "group.id": G_A})
    try:
        metadata = consumer.consumer_group_metadata()
    finally:
        consumer.close()
    producer.send_offsets_to_transaction([TopicPartition(PUB_A, 0, 1)], metadata, 20)
    producer.commit_transaction(20)
    # A group alice may not READ: AddOffsetsToTxn answers GROUP_AUTHORIZATION_FAILED.
    producer.begin_transaction()
    hidden = Consumer({**broker.conf("admin"), "group.id": G_HIDDEN})
    try:
        hidden_metadata = hidden.consumer_group_metadata()
    finally:
        hidden.close()
    with pytest.raises(KafkaException) as info:
        producer.send_offsets_to_transaction([TopicPartition(PUB_A, 0, 1)], hidden_metadata,
                                             20)
    assert info.value.args[0].code() == GROUP_DENIED


def test_transaction_apis_raw(broker: Broker) -> None:
    """AddPartitionsToTxn (WRITE on the id and each topic), EndTxn, TxnOffsetCommit,
    DescribeTransactions / ListTransactions (DESCRIBE on the id; topics it may describe),
    WriteTxnMarkers (CLUSTER_ACTION) for alice, whose transaction R-tx-raw is open."""
    from pykbroker.protocol._generated import add_partitions_to_txn_request as apt
    from pykbroker.protocol._generated import describe_transactions_request as dtx
    from pykbroker.protocol._generated import end_txn_request as et
    from pykbroker.protocol._generated import init_producer_id_request as ipi
    from pykbroker.protocol._generated import list_transactions_request as ltx
    from pykbroker.protocol._generated import txn_offset_commit_request as toc
    from pykbroker.protocol._generated import write_txn_markers_request as wtm

    txn = f"{R}-tx-raw"
    with broker.raw("admin") as admin:
        pid = admin.send(22, 4, ipi.InitProducerIdRequest(
            transactional_id=txn, transaction_timeout_ms=60000)).producer_id
        # The super user puts R-secret in alice's transaction.
        added = admin.send(24, 3, apt.AddPartitionsToTxnRequest(
            v3_and_below_transactional_id=txn, v3_and_below_producer_id=pid,
            v3_and_below_producer_epoch=0,
            v3_and_below_topics=[apt.AddPartitionsToTxnTopic(SECRET, [0])]))
        assert added.results_by_topic_v3_and_below[0].results_by_partition[0] \
            .partition_error_code == OK
    with broker.raw("alice") as raw:
        def add(*topics: str) -> dict[str, int]:
            r = raw.send(24, 3, apt.AddPartitionsToTxnRequest(
                v3_and_below_transactional_id=txn, v3_and_below_producer_id=pid,
                v3_and_below_producer_epoch=0,
                v3_and_below_topics=[apt.AddPartitionsToTxnTopic(t, [0]) for t in topics]))
            return {t.name: t.results_by_partition[0].partition_error_code
                    for t in r.results_by_topic_v3_and_below}

        assert add(PUB_A, BOB_T) == {PUB_A: KafkaError.OPERATION_NOT_ATTEMPTED,
                                     BOB_T: TOPIC_DENIED}
        assert add(PUB_A) == {PUB_A: OK}
        commit = raw.send(28, 3, toc.TxnOffsetCommitRequest(
            transactional_id=txn, group_id=G_A, producer_id=pid, producer_epoch=0,
            topics=[toc.TxnOffsetCommitRequestTopic(t, [toc.TxnOffsetCommitRequestPartition(
                0, 1)]) for t in (PUB_A, SECRET)]))
        assert {t.name: t.partitions[0].error_code for t in commit.topics} == {
            PUB_A: KafkaError.INVALID_TXN_STATE, SECRET: TOPIC_DENIED}  # no AddOffsets yet
        described = raw.send(65, 0, dtx.DescribeTransactionsRequest(
            transactional_ids=[txn, f"{R}-other"]))
        states = {s.transactional_id: s for s in described.transaction_states}
        assert states[f"{R}-other"].error_code == TXN_DENIED
        # Its partitions: only the topics alice may describe (R-secret is hidden).
        assert {t.topic for t in states[txn].topics} == {PUB_A}
        assert SECRET.encode() not in raw.last
        listed = raw.send(66, 1, ltx.ListTransactionsRequest(state_filters=[],
                                                             producer_id_filters=[]))
        names = {t.transactional_id for t in listed.transaction_states}
        assert txn in names and all(n.startswith(f"{R}-tx-") for n in names if R in n)
        markers = raw.send(27, 1, wtm.WriteTxnMarkersRequest(markers=[wtm.WritableTxnMarker(
            pid, 0, False, [wtm.WritableTxnMarkerTopic(PUB_A, [0])], 0)]))
        assert markers.markers[0].topics[0].partitions[0].error_code == CLUSTER_DENIED
        assert raw.send(26, 3, et.EndTxnRequest(f"{R}-other", pid, 0, False)).error_code == \
            TXN_DENIED
        assert raw.send(26, 3, et.EndTxnRequest(txn, pid, 0, False)).error_code == OK
    with broker.raw("bob") as raw:
        listed = raw.send(66, 1, ltx.ListTransactionsRequest(state_filters=[],
                                                             producer_id_filters=[]))
        assert not [t for t in listed.transaction_states if R in t.transactional_id]
        assert R.encode() not in raw.last


def test_describe_producers_needs_read(broker: Broker) -> None:
    from pykbroker.protocol._generated.describe_producers_request import (
        DescribeProducersRequest,
        TopicRequest,
    )

    with broker.raw("alice") as raw:
        r = raw.send(61, 0, DescribeProducersRequest(topics=[TopicRequest(t, [0])
                                                             for t in (PUB_A, PUB_LOCKED)]))
    assert {t.name: t.partitions[0].error_code for t in r.topics} == {
        PUB_A: OK, PUB_LOCKED: TOPIC_DENIED}


# -- The cluster -----------------------------------------------------------------------------

def test_scram_credentials_need_describe_or_alter_on_the_cluster(broker: Broker) -> None:
    upsert = UserScramCredentialUpsertion("carol", ScramCredentialInfo(
        ScramMechanism.SCRAM_SHA_256, 4096), b"carol-secret")
    for user, code in (("alice", CLUSTER_DENIED), ("bob", CLUSTER_DENIED), ("admin", OK)):
        (fut,) = broker.admin(user).alter_user_scram_credentials([upsert]).values()
        assert _code(fut) == code, user
    for user in ("bob", "admin"):  # DESCRIBE on the cluster
        (fut,) = broker.admin(user).describe_user_scram_credentials(["carol"]).values()
        assert [i.mechanism for i in fut.result(20).scram_credential_infos] == [
            ScramMechanism.SCRAM_SHA_256]
    # Refused, Kafka answers one result per user asked but without its name (getErrorResponse),
    # which librdkafka cannot match to a user: asked raw.
    from pykbroker.protocol._generated import describe_user_scram_credentials_request as dus

    with broker.raw("alice") as raw:
        r = raw.send(50, 0, dus.DescribeUserScramCredentialsRequest(users=[
            dus.UserName("carol")]))
    assert r.error_code == CLUSTER_DENIED
    assert [(x.user, x.error_code, x.credential_infos) for x in r.results] == [
        ("", CLUSTER_DENIED, [])]


def test_describe_cluster_authorized_operations(broker: Broker) -> None:
    def ops(user: str) -> set[AclOperation]:
        return set(broker.admin(user).describe_cluster(
            include_authorized_operations=True).result(20).authorized_operations or [])

    assert {AclOperation.DESCRIBE, AclOperation.CREATE} == ops("bob")
    assert {AclOperation.ALTER, AclOperation.CLUSTER_ACTION, AclOperation.IDEMPOTENT_WRITE,
            AclOperation.DESCRIBE_CONFIGS} <= ops("admin")


def test_inter_broker_requests_need_cluster_action(broker: Broker) -> None:
    from pykbroker.protocol._generated import add_partitions_to_txn_request as apt
    from pykbroker.protocol._generated.offset_for_leader_epoch_request import (
        OffsetForLeaderEpochRequest,
        OffsetForLeaderPartition,
        OffsetForLeaderTopic,
    )

    with broker.raw("bob") as raw:
        v4 = raw.send(24, 4, apt.AddPartitionsToTxnRequest(transactions=[
            apt.AddPartitionsToTxnTransaction(TX_1, 1, 0, True, [
                apt.AddPartitionsToTxnTopic(BOB_T, [0])])]))
        assert v4.error_code == CLUSTER_DENIED
        epochs = raw.send(23, 4, OffsetForLeaderEpochRequest(replica_id=1, topics=[
            OffsetForLeaderTopic(t, [OffsetForLeaderPartition(0, -1, 0)])
            for t in (BOB_T, SECRET)]))
        assert {t.topic: t.partitions[0].error_code for t in epochs.topics} == {
            BOB_T: OK, SECRET: TOPIC_DENIED}
        assert _fetch(raw, [BOB_T], replica_id=1) == {BOB_T: (TOPIC_DENIED, b"")}
