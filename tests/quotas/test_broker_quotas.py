"""Client quotas in a running broker, through real sockets and our own codecs: the quota APIs
(versions 0 and 1, authorization, persistence, the ZooKeeper-cluster refusal), and Produce and
Fetch answering throttle_time_ms and muting the connection (KIP-219)."""

from __future__ import annotations

import itertools
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pykbroker.error_codes import ErrorCode
from pykbroker.protocol._generated.alter_client_quotas_request import (
    AlterClientQuotasRequest,
    EntityData,
    EntryData,
    OpData,
)
from pykbroker.protocol._generated.describe_client_quotas_request import (
    ComponentData,
    DescribeClientQuotasRequest,
)
from pykbroker.protocol._generated.fetch_request import FetchPartition, FetchRequest, FetchTopic
from pykbroker.protocol._generated.metadata_request import MetadataRequest
from pykbroker.protocol._generated.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from pykbroker.protocol.framing import decode_response, encode_request
from pykbroker.quotas import FILE_NAME
from pykbroker.records.builder import build_batch
from pykbroker.security.acl_codes import (
    AclOperation,
    AclPermissionType,
    PatternType,
    ResourceType,
)
from pykbroker.security.acl_store import StoredAclAuthorizer
from pykbroker.security.acls import AccessControlEntry, AclBinding, ResourcePattern
from pykbroker.testing import KafkaBroker
from tests.zk_fixtures import ZooKeeperChroot

PRODUCE, FETCH, METADATA, DESCRIBE, ALTER = 0, 1, 3, 48, 49
BATCH = build_batch([(b"k", b"v" * 5000, [], None)])


class Client:
    """One connection with the client id we choose; requests one at a time."""

    def __init__(self, bootstrap: str, client_id: str) -> None:
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.client_id = client_id
        self._corr = itertools.count(1)

    def _read(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    def send(self, api_key: int, version: int, body: Any) -> Any:
        self.sock.sendall(encode_request(api_key, version, next(self._corr), self.client_id,
                                         body))
        (size,) = struct.unpack(">i", self._read(4))
        return decode_response(self._read(size), api_key, version)[1]

    def close(self) -> None:
        self.sock.close()


def alter(c: Client, entity: dict[str, str | None], ops: dict[str, float | None],
          version: int = 1, validate_only: bool = False) -> tuple[int, str | None]:
    resp = c.send(ALTER, version, AlterClientQuotasRequest(entries=[EntryData(
        entity=[EntityData(t, n) for t, n in entity.items()],
        ops=[OpData(k, 0.0 if v is None else v, v is None) for k, v in ops.items()])],
        validate_only=validate_only))
    (entry,) = resp.entries
    assert [(e.entity_type, e.entity_name) for e in entry.entity] == list(entity.items())
    return entry.error_code, entry.error_message


def describe(c: Client, components: list[tuple[str, int, str | None]] | None = None,
             strict: bool = False, version: int = 1) -> Any:
    return c.send(DESCRIBE, version, DescribeClientQuotasRequest(
        components=[ComponentData(t, m, n) for t, m, n in components or []], strict=strict))


def entries(resp: Any) -> dict[frozenset[tuple[str, str | None]], dict[str, float]]:
    assert resp.error_code == 0, resp.error_message
    return {frozenset((e.entity_type, e.entity_name) for e in entry.entity):
            {v.key: v.value for v in entry.values} for entry in resp.entries}


def produce(c: Client, topic: str, acks: int = 1) -> Any:
    return c.send(PRODUCE, 9, ProduceRequest(transactional_id=None, acks=acks, timeout_ms=5000,
                                             topic_data=[TopicProduceData(topic, [
                                                 PartitionProduceData(0, BATCH)])]))


def fetch(c: Client, topic: str, offset: int = 0, session_epoch: int = -1,
          session_id: int = 0) -> Any:
    return c.send(FETCH, 12, FetchRequest(
        replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20,
        session_id=session_id, session_epoch=session_epoch, topics=[
            FetchTopic(topic=topic, partitions=[FetchPartition(
                partition=0, fetch_offset=offset, partition_max_bytes=1 << 20)])]))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    with KafkaBroker(tmp_path) as b:
        b.create_topic("q")
        yield b


@pytest.fixture
def client(broker: KafkaBroker) -> Iterator[Client]:
    c = Client(broker.bootstrap_servers, "admin")
    yield c
    c.close()


def test_a_broker_without_quotas_measures_nothing(broker: KafkaBroker, client: Client,
                                                  tmp_path: Path) -> None:
    for _ in range(30):
        assert produce(client, "q").throttle_time_ms == 0
    assert fetch(client, "q").throttle_time_ms == 0
    assert broker.broker is not None and broker.broker.services is not None
    assert broker.broker.services.client_quotas is None  # type: ignore[attr-defined]
    assert not (tmp_path / FILE_NAME).exists()
    assert entries(describe(client)) == {}


@pytest.mark.parametrize("version", [0, 1])
def test_alter_and_describe_both_versions(client: Client, version: int) -> None:
    assert alter(client, {"user": "alice", "client-id": None}, {"producer_byte_rate": 100.0},
                 version) == (0, None)
    assert alter(client, {"client-id": "c"}, {"consumer_byte_rate": 7.0}, version,
                 validate_only=True) == (0, None)
    assert alter(client, {"client-id": "c"}, {"controller_mutation_rate": 7.0}, version)[0] == \
        ErrorCode.INVALID_REQUEST
    assert entries(describe(client, version=version)) == {
        frozenset({("user", "alice"), ("client-id", None)}): {"producer_byte_rate": 100.0}}
    assert entries(describe(client, [("client-id", 1, None)], strict=True,
                            version=version)) == {}
    bad = describe(client, [("user", 2, None), ("user", 2, None)], version=version)
    assert (bad.error_code, bad.error_message) == (
        ErrorCode.INVALID_REQUEST, "Duplicate user filter component entity type")


def test_quotas_survive_a_restart(tmp_path: Path) -> None:
    with KafkaBroker(tmp_path) as b:
        c = Client(b.bootstrap_servers, "admin")
        assert alter(c, {"client-id": "slow"}, {"producer_byte_rate": 1234.0}) == (0, None)
        c.close()
    assert (tmp_path / FILE_NAME).exists()
    with KafkaBroker(tmp_path) as b:
        b.create_topic("q")
        c = Client(b.bootstrap_servers, "slow")
        assert entries(describe(c)) == {frozenset({("client-id", "slow")}):
                                        {"producer_byte_rate": 1234.0}}
        # 5 KB requests against 1234 B/s: the first window holds ~12 KB, then throttling
        assert any(produce(c, "q").throttle_time_ms > 0 for _ in range(5))
        c.close()


def test_produce_is_throttled_and_the_connection_muted(broker: KafkaBroker,
                                                       client: Client) -> None:
    assert alter(client, {"client-id": "slow"}, {"producer_byte_rate": 10000.0}) == (0, None)
    slow, fast = Client(broker.bootstrap_servers, "slow"), Client(broker.bootstrap_servers,
                                                                  "fast")
    try:
        # ~10 s of quota at once (Kafka measures a new client over ten windows): 20 requests
        throttles = [produce(slow, "q").throttle_time_ms for _ in range(19)]
        assert throttles == [0] * 19
        resp = produce(slow, "q")
        assert resp.throttle_time_ms > 0
        assert resp.responses[0].partition_responses[0].error_code == 0  # appended anyway
        muted = resp.throttle_time_ms / 1000
        started = time.monotonic()
        # The whole channel is muted (KIP-219), not only the next Produce: a Metadata
        # request on it is read only once the throttle time has passed.
        slow.send(METADATA, 1, MetadataRequest(topics=[]))
        assert time.monotonic() - started >= muted * 0.9
        resp = produce(slow, "q")
        assert resp.throttle_time_ms > 0
        started = time.monotonic()
        second = produce(slow, "q")  # waits out the mute before it is handled
        assert time.monotonic() - started >= resp.throttle_time_ms / 1000 * 0.9
        assert second.throttle_time_ms > 0
        # another client id has no quota
        assert all(produce(fast, "q").throttle_time_ms == 0 for _ in range(40))
    finally:
        slow.close()
        fast.close()


def test_quota_window_configuration_is_honoured(tmp_path: Path) -> None:
    """quota.window.num=2: a new client is measured over one window, not ten, so a 10 KB/s
    quota admits ~10 KB at once instead of ~100 KB."""
    with KafkaBroker(tmp_path, **{"quota.window.num": "2"}) as b:
        b.create_topic("q")
        c = Client(b.bootstrap_servers, "slow")
        try:
            assert alter(c, {"client-id": "slow"}, {"producer_byte_rate": 10000.0}) == (0, None)
            throttles = [produce(c, "q").throttle_time_ms for _ in range(3)]
            assert throttles[0] == 0 and throttles[2] > 0
        finally:
            c.close()


def test_user_quota_is_shared_by_the_users_clients(broker: KafkaBroker, client: Client) -> None:
    """The plaintext principal is User:ANONYMOUS: a quota on user ANONYMOUS holds its clients
    together, whatever their client ids."""
    assert alter(client, {"user": "ANONYMOUS"}, {"producer_byte_rate": 10000.0}) == (0, None)
    a, b = Client(broker.bootstrap_servers, "a"), Client(broker.bootstrap_servers, "b")
    try:
        assert [produce(a, "q").throttle_time_ms for _ in range(10)] == [0] * 10
        assert [produce(b, "q").throttle_time_ms for _ in range(9)] == [0] * 9
        assert produce(b, "q").throttle_time_ms > 0
    finally:
        a.close()
        b.close()


def test_fetch_is_throttled_with_an_empty_response(broker: KafkaBroker, client: Client) -> None:
    for _ in range(40):  # 200 KB
        produce(client, "q")
    assert alter(client, {"client-id": "reader"}, {"consumer_byte_rate": 10000.0}) == (0, None)
    reader = Client(broker.bootstrap_servers, "reader")
    try:
        got = 0
        offset = 0
        for _ in range(40):
            resp = fetch(reader, "q", offset)
            if resp.throttle_time_ms > 0:
                break
            records = resp.responses[0].partitions[0].records
            got += len(records)
            offset += 1  # one record per batch
            assert offset <= 40
        else:
            raise AssertionError("never throttled")
        assert resp.responses == [] and resp.session_id == 0
        # the first window held ~10 s of quota: 100 KB, a response beyond it is withheld
        assert 80_000 <= got <= 110_000
        started = time.monotonic()
        fetch(reader, "q", offset)
        assert time.monotonic() - started >= resp.throttle_time_ms / 1000 * 0.9
    finally:
        reader.close()


def test_throttled_fetches_and_fetch_sessions(broker: KafkaBroker, client: Client) -> None:
    """FetchSession.scala: a throttled incremental fetch keeps its session (an empty answer
    with the session id); a throttled fetch that would open a session opens none."""
    for _ in range(10):
        produce(client, "q")
    assert alter(client, {"client-id": "sess"}, {"consumer_byte_rate": 1000.0}) == (0, None)
    c = Client(broker.bootstrap_servers, "sess")
    try:
        first = fetch(c, "q", 0, session_epoch=0)  # one 5 KB batch: 10 s of quota would be 10 KB
        assert first.throttle_time_ms == 0 and first.session_id != 0
        assert len(first.responses[0].partitions[0].records) > 5000
        second = fetch(c, "q", 1, session_epoch=1, session_id=first.session_id)
        assert second.throttle_time_ms > 0
        assert (second.error_code, second.session_id, second.responses) == (
            0, first.session_id, [])
        third = fetch(c, "q", 1, session_epoch=2, session_id=first.session_id)
        assert (third.error_code, third.session_id) == (0, first.session_id)
    finally:
        c.close()
    fresh = Client(broker.bootstrap_servers, "sess")
    try:
        opened = fetch(fresh, "q", 0, session_epoch=0)
        assert opened.throttle_time_ms > 0
        assert (opened.error_code, opened.session_id, opened.responses) == (0, 0, [])
    finally:
        fresh.close()


def test_fetch_max_bytes_is_capped_at_the_quota_window(broker: KafkaBroker,
                                                       client: Client) -> None:
    for _ in range(10):  # 50 KB
        produce(client, "q")
    # 1000 B/s: at most (11 - 1) * 1 s * 1000 B = 10 KB a fetch (the first batch always goes)
    assert alter(client, {"client-id": "small"}, {"consumer_byte_rate": 1000.0}) == (0, None)
    small = Client(broker.bootstrap_servers, "small")
    try:
        resp = fetch(small, "q")
        records = resp.responses[0].partitions[0].records
        assert 0 < len(records) <= 10_000
    finally:
        small.close()


def _grant(auth: StoredAclAuthorizer, op: AclOperation) -> None:
    assert auth.create([AclBinding(ResourcePattern(ResourceType.CLUSTER, "kafka-cluster",
                                                   PatternType.LITERAL),
                                   AccessControlEntry("User:ANONYMOUS", "*", op,
                                                      AclPermissionType.ALLOW))]) == [None]


def test_authorization(broker: KafkaBroker, client: Client) -> None:
    auth = StoredAclAuthorizer(None, frozenset(), False)
    server = broker.broker.server  # type: ignore[union-attr]
    assert server is not None
    server.security.authorizer = auth
    denied = describe(client)
    assert denied.error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    assert alter(client, {"client-id": "x"}, {"producer_byte_rate": 1.0})[0] == \
        ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    _grant(auth, AclOperation.DESCRIBE_CONFIGS)
    assert entries(describe(client)) == {}
    assert alter(client, {"client-id": "x"}, {"producer_byte_rate": 1.0})[0] == \
        ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    _grant(auth, AclOperation.ALTER_CONFIGS)
    assert alter(client, {"client-id": "x"}, {"producer_byte_rate": 1.0}) == (0, None)
    assert entries(describe(client)) == {frozenset({("client-id", "x")}):
                                         {"producer_byte_rate": 1.0}}


def test_a_cluster_member_keeps_quotas_in_zookeeper(tmp_path: Path,
                                                    zookeeper: ZooKeeperChroot) -> None:
    """In a ZooKeeper cluster the quotas go to Kafka's /config/clients/<id> (not the file),
    and a restarted broker reads them back from there."""
    from pykbroker.metadata.zk.reader import ZkReader

    for attempt in range(2):
        with KafkaBroker(tmp_path, **{"zookeeper.connect": zookeeper.hosts,
                                      "broker.id": "0"}) as b:
            c = Client(b.bootstrap_servers, "admin")
            try:
                if attempt == 0:
                    assert alter(c, {"client-id": "x y"}, {"producer_byte_rate": 1024.0}) == (
                        ErrorCode.NONE, None)
                assert entries(describe(c)) == {frozenset({("client-id", "x y")}):
                                                {"producer_byte_rate": 1024.0}}
            finally:
                c.close()
    reader = ZkReader(zookeeper.hosts)
    try:
        assert reader.json("/config/clients/x%20y") == {
            "version": 1, "config": {"producer_byte_rate": "1024"}}
    finally:
        reader.close()
    assert not (tmp_path / FILE_NAME).exists()


def test_request_percentage_throttles_a_busy_client(broker: KafkaBroker, client: Client) -> None:
    """KIP-124: the time spent on a client's requests counts as a percentage of one thread;
    over its quota, responses carry throttle_time_ms and the connection is muted."""
    assert alter(client, {"client-id": "busy"}, {"request_percentage": 0.1}) == (0, None)
    busy, idle = Client(broker.bootstrap_servers, "busy"), Client(broker.bootstrap_servers,
                                                                  "idle")
    try:
        throttles = []
        for _ in range(400):  # 0.1% of a thread over the 10 s window is 10 ms of handling
            resp = busy.send(METADATA, 9, MetadataRequest(topics=None))
            throttles.append(resp.throttle_time_ms)
            if resp.throttle_time_ms > 0:
                break
        assert throttles[-1] > 0, f"never throttled after {len(throttles)} requests"
        started = time.monotonic()
        busy.send(METADATA, 9, MetadataRequest(topics=None))  # read once the mute is over
        assert time.monotonic() - started >= throttles[-1] / 1000 * 0.9
        # another client id has no quota
        assert all(idle.send(METADATA, 9, MetadataRequest(topics=None)).throttle_time_ms == 0
                   for _ in range(50))
    finally:
        busy.close()
        idle.close()
