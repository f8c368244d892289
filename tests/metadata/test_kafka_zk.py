"""KafkaZk against a real ZooKeeper: broker registration, controller election and fencing,
topics and partition states, configs, producer id blocks and the admin znodes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from pykbroker.metadata.zk.brokers import BrokerRegistration, EndPoint
from pykbroker.metadata.zk.client import ZkBadVersion, ZkClient, ZkNodeExists
from pykbroker.metadata.zk.configs import ConfigChangeNotification
from pykbroker.metadata.zk.controller import ControllerEpoch
from pykbroker.metadata.zk.kafka_zk import BrokerIdTakenError, ControllerMovedError, KafkaZk
from pykbroker.metadata.zk.layout import PERSISTENT_PATHS
from pykbroker.metadata.zk.topics import PartitionState, ReplicaAssignment
from tests.metadata.test_zk_client import Calls
from tests.zk_fixtures import ZooKeeperChroot


@asynccontextmanager
async def kafka_zk(zookeeper: ZooKeeperChroot) -> AsyncIterator[KafkaZk]:
    zk = await ZkClient.connect(zookeeper.hosts, session_timeout_ms=6000,
                                connection_timeout_ms=10_000)
    async with zk:
        kz = KafkaZk(zk)
        await kz.create_top_level_paths()
        yield kz


def registration(port: int) -> BrokerRegistration:
    return BrokerRegistration((EndPoint("PLAINTEXT", "PLAINTEXT", "127.0.0.1", port),),
                              timestamp=1700000000000, rack="r1")


@pytest.mark.trio
async def test_top_level_paths_and_cluster_id(zookeeper: ZooKeeperChroot) -> None:
    async with kafka_zk(zookeeper) as first, kafka_zk(zookeeper) as second:
        await first.create_top_level_paths()  # idempotent
        for path in PERSISTENT_PATHS:
            assert await first.zk.exists(path) is not None, path
        assert await first.get_cluster_id() is None
        assert await first.get_or_create_cluster_id("clusterIdAAAAAAAAAAAAA") == (
            "clusterIdAAAAAAAAAAAAA")
        # The second broker's proposal loses: the first id stays.
        assert await second.get_or_create_cluster_id("clusterIdBBBBBBBBBBBBB") == (
            "clusterIdAAAAAAAAAAAAA")
        assert await second.get_cluster_id() == "clusterIdAAAAAAAAAAAAA"


@pytest.mark.trio
async def test_broker_registration_is_ephemeral_with_czxid_epoch(
        zookeeper: ZooKeeperChroot) -> None:
    async with kafka_zk(zookeeper) as other:
        async with kafka_zk(zookeeper) as broker:
            epoch = await broker.register_broker(1, registration(9092))
            assert await other.get_all_brokers() == {1: (registration(9092), epoch)}
            stat = await other.zk.exists(BrokerRegistration.path(1))
            assert stat is not None and stat.czxid == epoch
            assert stat.ephemeral_owner == broker.zk.session_id
            # Registering again in the same session is fine and keeps the epoch.
            assert await broker.register_broker(1, registration(9092)) == epoch
            with pytest.raises(BrokerIdTakenError, match="broker id 1 is already registered"):
                await other.register_broker(1, registration(9093))
            await broker.update_broker_info(1, registration(9094))
            assert await other.get_broker(1) == (registration(9094), epoch)
        # Gone with the session that registered it, and the id is free again.
        assert await other.get_all_brokers() == {}
        assert await other.register_broker(1, registration(9093)) > epoch
        assert list(await other.get_all_brokers()) == [1]
        assert await other.generate_broker_id(1000) == 1001
        assert await other.generate_broker_id(1000) == 1002


async def elect(broker_id: int, kz: KafkaZk, results: dict[int, int | None]) -> None:
    results[broker_id] = await kz.try_become_controller(broker_id)


@pytest.mark.trio
async def test_racing_controller_elections(zookeeper: ZooKeeperChroot) -> None:
    async with kafka_zk(zookeeper) as a, kafka_zk(zookeeper) as b:
        candidates = {1: a, 2: b}
        for expected_epoch in (1, 2, 3, 4):
            results: dict[int, int | None] = {}

            async with trio.open_nursery() as nursery:
                for broker_id, kz in candidates.items():
                    nursery.start_soon(elect, broker_id, kz, results)
            winners = [bid for bid, epoch in results.items() if epoch is not None]
            assert len(winners) == 1, results
            winner, loser = candidates[winners[0]], candidates[3 - winners[0]]
            assert results[winners[0]] == expected_epoch
            assert winner.controller_epoch == expected_epoch
            assert loser.controller_epoch is None
            assert await loser.get_controller_id() == winners[0]
            epoch_and_version = await loser.get_controller_epoch()
            assert epoch_and_version == (expected_epoch, winner.controller_epoch_zk_version)
            # A later candidate loses while the controller lives.
            assert await loser.try_become_controller(3 - winners[0]) is None
            # A stale epoch version cannot remove the live controller; the right one can.
            version = winner.controller_epoch_zk_version
            assert version is not None
            assert not await loser.resign_controller(version - 1)
            assert await loser.get_controller_id() == winners[0]
            assert await winner.resign_controller(version)
            assert await loser.get_controller_id() is None


@pytest.mark.trio
async def test_partition_states_are_fenced_by_the_controller_epoch(
        zookeeper: ZooKeeperChroot) -> None:
    async with kafka_zk(zookeeper) as old, kafka_zk(zookeeper) as new:
        assert await old.try_become_controller(1) == 1
        fence = old.controller_epoch_zk_version
        assert fence is not None
        await old.create_topic("orders", uuid.uuid4(), {0: [1, 2], 1: [2, 1]}, {})
        states = {("orders", 0): PartitionState(1, 0, (1, 2), controller_epoch=0),
                  ("orders", 1): PartitionState(2, 0, (2, 1), controller_epoch=0)}
        created = await old.create_partition_states(states, 1, fence)
        assert created.written == {("orders", 0): 0, ("orders", 1): 0}
        again = await old.create_partition_states({("orders", 0): states[("orders", 0)]}, 1, fence)
        assert not again.written and isinstance(again.failed[("orders", 0)], ZkNodeExists)
        read = await new.get_partition_states("orders")
        assert read == {0: (PartitionState(1, 0, (1, 2), 1), 0),
                        1: (PartitionState(2, 0, (2, 1), 1), 0)}  # stamped with epoch 1

        shrunk = PartitionState(1, 1, (1,), 1)
        updated = await old.update_partition_states(
            {("orders", 0): (shrunk, 0), ("orders", 1): (states[("orders", 1)], 0)}, 1, fence)
        assert updated.written == {("orders", 0): 1, ("orders", 1): 1}
        # A stale partition epoch is skipped and reported; the other partition still goes in.
        mixed = await old.update_partition_states(
            {("orders", 0): (PartitionState(2, 2, (2,), 1), 0),
             ("orders", 1): (PartitionState(1, 1, (1,), 1), 1)}, 1, fence)
        assert mixed.retry == [("orders", 0)] and mixed.written == {("orders", 1): 2}
        assert (await new.get_partition_states_of([("orders", 0)]))[("orders", 0)] == (shrunk, 1)

        # A new controller is elected: every write of the old one is refused.
        assert await old.resign_controller(fence)
        assert await new.try_become_controller(2) == 2
        with pytest.raises(ControllerMovedError):
            await old.update_partition_states({("orders", 0): (shrunk, 1)}, 1, fence)
        with pytest.raises(ControllerMovedError):
            await old.create_partition_states({("orders", 2): shrunk}, 1, fence)
        with pytest.raises(ControllerMovedError):
            await old.delete_topic_znodes("orders", fence)
        assert (await new.get_partition_states("orders"))[0] == (shrunk, 1)
        assert await new.zk.exists("/brokers/topics/orders/partitions/2") is None


@pytest.mark.trio
async def test_producer_id_blocks_from_two_brokers_never_overlap(
        zookeeper: ZooKeeperChroot) -> None:
    async with kafka_zk(zookeeper) as a, kafka_zk(zookeeper) as b:
        blocks: list[tuple[int, int, int]] = []

        async def allocate(broker_id: int, kz: KafkaZk) -> None:
            for _ in range(20):
                start, end = await kz.allocate_producer_id_block(broker_id)
                blocks.append((start, end, broker_id))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(allocate, 1, a)
            nursery.start_soon(allocate, 2, b)
        blocks.sort()
        assert len(blocks) == 40 and {owner for *_, owner in blocks} == {1, 2}
        assert blocks[0][0] == 0
        for (start, end, _), (next_start, _, _) in zip(blocks, blocks[1:], strict=False):
            assert end - start == 999 and next_start == end + 1  # disjoint and contiguous
        assert await a.allocate_producer_id_block(1, size=10) == (40_000, 40_009)


@pytest.mark.trio
async def test_topic_lifecycle(zookeeper: ZooKeeperChroot) -> None:
    async with kafka_zk(zookeeper) as kz:
        topic_id = uuid.uuid4()
        await kz.create_topic("orders", topic_id, {0: [1, 2], 1: [2, 1]}, {"retention.ms": "1"})
        assert await kz.get_entity_config("topics", "orders") == {"retention.ms": "1"}
        znode = await kz.get_topic("orders")
        assert znode is not None and znode.topic_id == topic_id and znode.zk_version == 0
        assert znode.partitions == {0: ReplicaAssignment((1, 2)), 1: ReplicaAssignment((2, 1))}
        with pytest.raises(ZkNodeExists, match="already exists"):
            await kz.create_topic("orders", uuid.uuid4(), {0: [1]}, {})
        await kz.create_topic("audit", None, {0: [1]}, {})
        assert await kz.get_all_topics() == ["audit", "orders"]
        assert await kz.get_topic("missing") is None

        grown = {**znode.partitions, 2: ReplicaAssignment((1, 2))}
        assert await kz.set_topic_assignment("orders", grown, topic_id, 0) == 1
        with pytest.raises(ZkBadVersion):
            await kz.set_topic_assignment("orders", grown, topic_id, 0)

        assert await kz.mark_topic_for_deletion(["orders"]) == {"orders": True}
        assert await kz.mark_topic_for_deletion(["orders"]) == {"orders": False}
        assert await kz.get_topics_marked_for_deletion() == ["orders"]
        with pytest.raises(ZkNodeExists, match="marked for deletion"):
            await kz.create_topic("orders", None, {0: [1]}, {})

        # The deletion marker goes last: a watcher sees the topic go first.
        order: list[str] = []
        topics, markers = Calls(), Calls()
        await kz.zk.watch_children("/brokers/topics", lambda c: (topics(c), order.append("t")))
        await kz.zk.watch_children("/admin/delete_topics",
                                   lambda c: (markers(c), order.append("m")))
        order.clear()
        await kz.delete_topic_znodes("orders")
        await markers.until(lambda v: v[-1] == [])
        await topics.until(lambda v: v[-1] == ["audit"])
        assert order == ["t", "m"]
        assert await kz.get_topic("orders") is None
        assert await kz.get_entity_config("topics", "orders") == {}
        assert await kz.zk.exists("/brokers/topics/orders") is None


@pytest.mark.trio
async def test_entity_configs_and_change_notifications(zookeeper: ZooKeeperChroot) -> None:
    async with kafka_zk(zookeeper) as kz:
        await kz.set_entity_config("brokers", "<default>", {"log.retention.ms": "5"})
        await kz.set_entity_config("brokers", "<default>", {"log.retention.ms": "6"})
        assert await kz.get_entity_config("brokers", "<default>") == {"log.retention.ms": "6"}
        assert await kz.get_entity_config("users", "nobody") == {}
        first = await kz.create_config_change_notification("brokers/<default>")
        assert first == "/config/changes/config_change_0000000000"
        await kz.change_entity_config("topics", "orders", {"cleanup.policy": "compact"})
        assert await kz.get_all_entities_with_config("topics") == ["orders"]
        assert await kz.get_config_changes_since(-1) == [
            (0, ConfigChangeNotification("brokers", "<default>")),
            (1, ConfigChangeNotification("topics", "orders")),
        ]
        assert await kz.get_config_changes_since(0) == [
            (1, ConfigChangeNotification("topics", "orders"))]
        assert await kz.get_config_changes_since(1) == []
        with pytest.raises(ValueError):
            await kz.create_config_change_notification("nonsense")


@pytest.mark.trio
async def test_reassignment_and_preferred_election_znodes(zookeeper: ZooKeeperChroot) -> None:
    async with kafka_zk(zookeeper) as kz:
        assert await kz.try_become_controller(1) == 1
        fence = kz.controller_epoch_zk_version
        assert fence is not None
        assert await kz.get_partition_reassignment() == {}
        assert not await kz.reassignment_in_progress()
        await kz.create_partition_reassignment({("orders", 0): [2, 3]})
        assert await kz.reassignment_in_progress()
        with pytest.raises(ZkNodeExists):
            await kz.create_partition_reassignment({("orders", 1): [1]})
        await kz.set_or_create_partition_reassignment({("orders", 1): [3, 1]}, fence)
        assert await kz.get_partition_reassignment() == {("orders", 1): (3, 1)}
        await kz.zk.set("/admin/reassign_partitions", b"not json")
        assert await kz.get_partition_reassignment() == {}  # ignored, as Kafka does
        await kz.delete_partition_reassignment(fence)
        assert not await kz.reassignment_in_progress()
        await kz.set_or_create_partition_reassignment({("orders", 2): [1]}, fence)  # creates
        assert await kz.get_partition_reassignment() == {("orders", 2): (1,)}

        await kz.create_preferred_replica_election([("orders", 1), ("orders", 0)])
        assert await kz.get_preferred_replica_election() == {("orders", 0), ("orders", 1)}
        with pytest.raises(ZkNodeExists):
            await kz.create_preferred_replica_election([("orders", 2)])
        # Fenced: a stale controller epoch version deletes nothing.
        await kz.zk.set(ControllerEpoch.path(), ControllerEpoch(2).to_json())
        with pytest.raises(ControllerMovedError):
            await kz.delete_preferred_replica_election(fence)
        await kz.delete_preferred_replica_election(fence + 1)
        assert await kz.get_preferred_replica_election() == set()
