"""ACLs in ZooKeeper (cluster mode): Kafka's znode layout and notification formats, and two
brokers' authorizers kept in step through a real ZooKeeper."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from pykbroker.metadata.zk.client import ZkClient
from pykbroker.security.acl_codes import AclOperation, AclPermissionType, PatternType, ResourceType
from pykbroker.security.acl_store import StoredAclAuthorizer
from pykbroker.security.acls import (
    AccessControlEntry,
    AclBinding,
    AclBindingFilter,
    ResourcePattern,
)
from pykbroker.security.zk_acl_store import (
    CHANGE_PREFIX,
    EXTENDED_CHANGES_PATH,
    LITERAL_CHANGES_PATH,
    decode_change,
    encode_change,
    resource_path,
)
from tests.zk_fixtures import ZooKeeperChroot

ALLOW, DENY = AclPermissionType.ALLOW, AclPermissionType.DENY
READ, WRITE = AclOperation.READ, AclOperation.WRITE
TOPIC = ResourceType.TOPIC
SPECIFIC = [t for t in ResourceType if t not in (ResourceType.UNKNOWN, ResourceType.ANY)]


def entry(principal: str, op: AclOperation = READ, perm: AclPermissionType = ALLOW,
          host: str = "*") -> AccessControlEntry:
    return AccessControlEntry(principal, host, op, perm)


def test_paths_and_notifications_are_kafkas() -> None:
    literal = ResourcePattern(TOPIC, "orders", PatternType.LITERAL)
    prefixed = ResourcePattern(ResourceType.TRANSACTIONAL_ID, "app-", PatternType.PREFIXED)
    assert resource_path(literal) == "/kafka-acl/Topic/orders"
    assert resource_path(prefixed) == "/kafka-acl-extended/prefixed/TransactionalId/app-"
    assert encode_change(literal) == (LITERAL_CHANGES_PATH, b"TOPIC:orders")
    path, data = encode_change(prefixed)
    assert path == EXTENDED_CHANGES_PATH
    assert json.loads(data) == {"version": 1, "resourceType": "TRANSACTIONAL_ID",
                                "name": "app-", "patternType": "PREFIXED"}
    # As Kafka's ResourceType.fromString: any case; the name keeps its colons.
    assert decode_change(LITERAL_CHANGES_PATH, b"Topic:a:b") == ResourcePattern(
        TOPIC, "a:b", PatternType.LITERAL)
    with pytest.raises(ValueError):
        decode_change(LITERAL_CHANGES_PATH, b"no-separator")
    with pytest.raises(ValueError):
        decode_change(EXTENDED_CHANGES_PATH, b'{"version":2,"resourceType":"TOPIC",'
                                             b'"name":"x","patternType":"PREFIXED"}')


@given(st.sampled_from(SPECIFIC), st.text(min_size=1, max_size=30),
       st.sampled_from([PatternType.LITERAL, PatternType.PREFIXED]))
def test_change_notifications_round_trip(resource_type: ResourceType, name: str,
                                         pattern_type: PatternType) -> None:
    pattern = ResourcePattern(resource_type, name, pattern_type)
    path, data = encode_change(pattern)
    assert decode_change(path, data) == pattern


@asynccontextmanager
async def broker_authorizer(zookeeper: ZooKeeperChroot, **kw: bool
                            ) -> AsyncIterator[tuple[StoredAclAuthorizer, ZkClient]]:
    """One broker's authorizer on its own ZooKeeper session, its notification task running."""
    zk = await ZkClient.connect(zookeeper.hosts, session_timeout_ms=6000,
                                connection_timeout_ms=10_000)
    async with zk, trio.open_nursery() as nursery:
        auth = StoredAclAuthorizer(None, frozenset(), kw.get("allow_everyone", False))
        store = await auth.use_zookeeper(zk)
        await nursery.start(store.run)
        yield auth, zk
        store.close()
        nursery.cancel_scope.cancel()


async def eventually(predicate: object, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():  # type: ignore[operator]
            await trio.sleep(0.02)


@pytest.mark.trio
async def test_an_acl_created_on_one_broker_is_enforced_by_the_other(
        zookeeper: ZooKeeperChroot) -> None:
    async with broker_authorizer(zookeeper) as (a, zk), broker_authorizer(zookeeper) as (b, _):
        assert not b.authorize("User:alice", "10.0.0.1", READ, TOPIC, "orders")
        results = await a.create_acls([
            AclBinding(ResourcePattern(TOPIC, "orders", PatternType.LITERAL), entry("User:alice")),
            AclBinding(ResourcePattern(TOPIC, "ord", PatternType.PREFIXED),
                       entry("User:bob", WRITE)),
            AclBinding(ResourcePattern(TOPIC, "x", PatternType.LITERAL),
                       entry("alice")),  # not a principal: refused, nothing written
        ])
        assert results[:2] == [None, None] and results[2] is not None
        await eventually(lambda: b.authorize("User:alice", "10.0.0.1", READ, TOPIC, "orders")
                         and b.authorize("User:bob", "h", WRITE, TOPIC, "order-2"))
        assert not b.authorize("User:bob", "h", WRITE, TOPIC, "x-1")
        # The znodes are Kafka's, byte for byte in content.
        data, _ = await zk.get("/kafka-acl/Topic/orders")  # type: ignore[misc]
        assert json.loads(data) == {"version": 1, "acls": [
            {"principal": "User:alice", "permissionType": "Allow", "operation": "Read",
             "host": "*"}]}
        assert await zk.exists("/kafka-acl-extended/prefixed/Topic/ord") is not None
        assert await zk.exists("/kafka-acl/Topic/x") is None
        changes = await zk.get_children(LITERAL_CHANGES_PATH)
        assert changes and all(c.startswith(CHANGE_PREFIX) for c in changes)

        # A deny through b reaches a; deleting through a removes it everywhere and the
        # emptied znode goes, as Kafka deletes a resource's znode with its last ACL.
        await b.create_acls([AclBinding(ResourcePattern(TOPIC, "orders", PatternType.LITERAL),
                                        entry("User:alice", perm=DENY, host="10.0.0.1"))])
        await eventually(lambda: not a.authorize("User:alice", "10.0.0.1", READ, TOPIC,
                                                 "orders"))
        assert a.authorize("User:alice", "10.0.0.2", READ, TOPIC, "orders")
        deleted = await a.delete_acls([
            AclBindingFilter(ResourceType.TOPIC, "orders", PatternType.LITERAL,
                             permission_type=DENY),
            AclBindingFilter(ResourceType.TOPIC, None, PatternType.ANY)])
        assert [len(d) for d in deleted] == [1, 2]  # each under the first filter matching it
        await eventually(lambda: not b.cache.acls)
        assert await zk.exists("/kafka-acl/Topic/orders") is None
        assert a.describe(AclBindingFilter()) == []


@pytest.mark.trio
async def test_concurrent_creates_on_one_resource_all_survive(
        zookeeper: ZooKeeperChroot) -> None:
    """Each broker writes with the znode version it read; a conflict re-reads, so no
    concurrent create is lost (compare-and-set, as Kafka's updateResourceAcls)."""
    pattern = ResourcePattern(ResourceType.GROUP, "g", PatternType.LITERAL)
    async with broker_authorizer(zookeeper) as (a, _), broker_authorizer(zookeeper) as (b, _):
        async with trio.open_nursery() as nursery:
            for i in range(20):
                auth = a if i % 2 else b
                nursery.start_soon(auth.create_acls, [AclBinding(pattern, entry(f"User:u{i}"))])
        want = {f"User:u{i}" for i in range(20)}
        for auth in (a, b):
            await eventually(lambda auth=auth: {  # type: ignore[misc]
                e.principal for e in auth.cache.acls.get(pattern, ())} == want)


@pytest.mark.trio
async def test_a_starting_broker_loads_every_acl_before_serving(
        zookeeper: ZooKeeperChroot) -> None:
    async with broker_authorizer(zookeeper) as (a, _):
        await a.create_acls([
            AclBinding(ResourcePattern(ResourceType.CLUSTER, "kafka-cluster",
                                       PatternType.LITERAL), entry("User:ops", AclOperation.ALTER)),
            AclBinding(ResourcePattern(TOPIC, "logs-", PatternType.PREFIXED), entry("User:x"))])
    # A new broker (a new session) has them as soon as use_zookeeper returns.
    zk = await ZkClient.connect(zookeeper.hosts, session_timeout_ms=6000,
                                connection_timeout_ms=10_000)
    async with zk:
        late = StoredAclAuthorizer(None, frozenset(), False)
        store = await late.use_zookeeper(zk)
        assert late.authorize("User:ops", "h", AclOperation.ALTER, ResourceType.CLUSTER,
                              "kafka-cluster")
        assert late.authorize("User:x", "h", READ, TOPIC, "logs-app")
        assert len(late.describe(AclBindingFilter())) == 2
        store.close()
