"""The ZooKeeper operations of a ZK-mode Kafka 3.9 broker and controller (``KafkaZkClient``,
with ``AdminZkClient``'s topic creation and ``ZkProducerIdManager``'s block allocation).

Each operation reads and writes znodes through their codec classes and keeps Kafka's order
and conditions, because those are what make a cluster of brokers safe: the broker epoch is
the registration's czxid; a controller is elected by one multi-op and every controller
write is fenced by a check of ``/controller_epoch``'s version; partition states and
producer id blocks are conditional sets. Like Kafka's ``retryRequestsUntilConnected``,
requests that lose their connection in flight are sent again once it is back.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Final, TypeVar

import trio

from pykbroker.metadata.zk.admin import (
    DELETE_TOPICS_PATH,
    DeleteTopic,
    PartitionReassignment,
    PreferredReplicaElection,
    TopicPartition,
)
from pykbroker.metadata.zk.brokers import BROKER_IDS_PATH, BrokerRegistration, BrokerSequenceId
from pykbroker.metadata.zk.client import (
    CheckOp,
    CreateOp,
    DeleteOp,
    Op,
    OpResult,
    SetOp,
    ZkBadVersion,
    ZkClient,
    ZkConnectionLoss,
    ZkError,
    ZkNodeExists,
    ZkNoNode,
    ZnodeStat,
)
from pykbroker.metadata.zk.cluster_id import ClusterId
from pykbroker.metadata.zk.codec import ZNodeDecodeError, parse_java_int
from pykbroker.metadata.zk.configs import (
    CHANGES_PATH,
    CONFIG_PATH,
    ENTITY_TYPES,
    ConfigChangeNotification,
    EntityConfig,
)
from pykbroker.metadata.zk.controller import (
    INITIAL_CONTROLLER_EPOCH,
    ControllerEpoch,
    ControllerRegistration,
)
from pykbroker.metadata.zk.layout import PERSISTENT_PATHS
from pykbroker.metadata.zk.producer_ids import PRODUCER_ID_BLOCK_SIZE, ProducerIdBlock
from pykbroker.metadata.zk.topics import (
    TOPICS_PATH,
    PartitionState,
    ReplicaAssignment,
    TopicAssignment,
    partition_path,
    partitions_path,
)

__all__ = [
    "BrokerIdTakenError",
    "ControllerMovedError",
    "KafkaZk",
    "PartitionStateWrites",
    "TopicZnode",
]

_log = logging.getLogger(__name__)
T = TypeVar("T")

# Kafka pipelines at most zookeeper.max.in.flight.requests (10) per client; a little more
# here costs nothing and bounds the tasks one call starts.
_MAX_IN_FLIGHT: Final = 32
_RETRY_BACKOFF_S: Final = 0.05
_LONG_MAX: Final = 2**63 - 1


class ControllerMovedError(ZkError):
    """A fenced write found ``/controller_epoch`` at another version: another broker has been
    elected since, so this one is no longer controller (Kafka's ControllerMovedException)."""


class BrokerIdTakenError(ZkNodeExists):
    """``/brokers/ids/<id>`` is held by another live session: that broker id is in use."""


@dataclass(frozen=True)
class TopicZnode:
    """``/brokers/topics/<name>`` with the znode version its conditional updates need."""

    name: str
    assignment: TopicAssignment
    zk_version: int

    @property
    def topic_id(self) -> uuid.UUID | None:
        return self.assignment.topic_id

    @property
    def partitions(self) -> Mapping[int, ReplicaAssignment]:
        return self.assignment.partitions


@dataclass
class PartitionStateWrites:
    """Per-partition outcome of fenced state writes (Kafka's ``UpdateLeaderAndIsrResult``).

    ``written`` maps to the new znode version (the partition epoch); ``retry`` lists those
    that another writer changed since they were read (BADVERSION: re-read, then retry);
    ``failed`` holds any other error, such as a state znode that exists or is gone.
    """

    written: dict[TopicPartition, int] = field(default_factory=dict)
    retry: list[TopicPartition] = field(default_factory=list)
    failed: dict[TopicPartition, ZkError] = field(default_factory=dict)


class KafkaZk:
    """``KafkaZkClient`` over one :class:`ZkClient`; remembers the controller epoch it won."""

    def __init__(self, zk: ZkClient) -> None:
        self.zk = zk
        self.controller_epoch: int | None = None
        self.controller_epoch_zk_version: int | None = None
        self._registered_session: int | None = None

    # -- requests, retried on a lost connection ----------------------------------------------

    async def _retry(self, call: Callable[[], Awaitable[T]]) -> T:
        while True:
            try:
                return await call()
            except ZkConnectionLoss:
                await trio.sleep(_RETRY_BACKOFF_S)  # kazoo holds requests until reconnected

    async def _get(self, path: str) -> tuple[bytes, ZnodeStat] | None:
        return await self._retry(lambda: self.zk.get(path))

    async def _children(self, path: str) -> list[str]:
        return await self._retry(lambda: self.zk.get_children(path))

    async def _set(self, path: str, data: bytes, version: int = -1) -> ZnodeStat:
        return await self._retry(lambda: self.zk.set(path, data, version))

    async def _create(self, path: str, data: bytes = b"", *, makepath: bool = False) -> str:
        return await self._retry(lambda: self.zk.create(path, data, makepath=makepath))

    async def _multi(self, ops: Sequence[Op]) -> list[OpResult]:
        return await self._retry(lambda: self.zk.multi(ops))

    async def _ensure_path(self, path: str) -> None:
        """Kafka's ``makeSurePersistentPathExists``."""
        try:
            await self._create(path, makepath=True)
        except ZkNodeExists:
            pass

    async def _fenced(self, op: Op, fence: int | None) -> OpResult:
        """``op`` alone, or (a controller's write) in a multi after a check that
        ``/controller_epoch`` is still at version ``fence``."""
        if fence is None:
            return (await self._multi([op]))[0]
        try:
            return (await self._multi([CheckOp(ControllerEpoch.path(), fence), op]))[1]
        except ZkBadVersion as exc:
            if exc.op_index != 0:
                raise
            raise ControllerMovedError(
                f"controller epoch zkVersion check failed, expected {fence}",
                path=ControllerEpoch.path(),
            ) from None

    async def _delete_tree(self, path: str, fence: int | None) -> None:
        """Kafka's ``deleteRecursive``: children first, each delete fenced; absent is fine."""
        for child in await self._children(path):
            await self._delete_tree(f"{path}/{child}", fence)
        try:
            await self._fenced(DeleteOp(path), fence)
        except ZkNoNode:
            pass

    # -- cluster and brokers -------------------------------------------------------------------

    async def create_top_level_paths(self) -> None:
        """The persistent paths every broker creates at start-up (``createTopLevelPaths``)."""
        for path in PERSISTENT_PATHS:
            await self._ensure_path(path)

    async def get_cluster_id(self) -> str | None:
        got = await self._get(ClusterId.path())
        return None if got is None else ClusterId.from_json(got[0]).id

    async def get_or_create_cluster_id(self, new_id: str) -> str:
        """The cluster id; the first broker's proposal wins (``createOrGetClusterId``)."""
        try:
            await self._create(ClusterId.path(), ClusterId(new_id).to_json(), makepath=True)
            return new_id
        except ZkNodeExists:
            existing = await self.get_cluster_id()
            if existing is None:
                msg = "/cluster/id was deleted while reading it"
                raise ZkError(msg, path=ClusterId.path()) from None
            return existing

    async def register_broker(self, broker_id: int, info: BrokerRegistration) -> int:
        """Create the ephemeral ``/brokers/ids/<id>`` and return the broker epoch (its czxid).

        Kafka's CheckedEphemeral: create empty and set the data at version 0 in one multi; an
        existing znode of this session is accepted, one left by this broker's previous
        (expired) session is replaced (KAFKA-7165), and any other raises BrokerIdTakenError.
        """
        path = BrokerRegistration.path(broker_id)
        while True:
            try:
                ops: list[Op] = [CreateOp(path, ephemeral=True), SetOp(path, info.to_json(), 0)]
                stat = (await self._multi(ops))[1].stat
                assert stat is not None
                break
            except ZkNodeExists:
                got = await self._get(path)
                if got is None:
                    continue  # it went away while we looked: create again
                stat, session = got[1], self.zk.session_id
                owner = stat.ephemeral_owner
                if owner == self._registered_session and owner != session:
                    try:
                        await self._retry(lambda: self.zk.delete(path))
                    except ZkNoNode:
                        pass
                    continue
                if owner != session:
                    raise BrokerIdTakenError(
                        f"broker id {broker_id} is already registered at {path} by session "
                        f"0x{owner:x} (this broker's session is 0x{session or 0:x})",
                        path=path,
                    ) from None
                break
        self._registered_session = self.zk.session_id
        return stat.czxid

    async def update_broker_info(self, broker_id: int, info: BrokerRegistration) -> None:
        await self._set(BrokerRegistration.path(broker_id), info.to_json())

    async def get_broker(self, broker_id: int) -> tuple[BrokerRegistration, int] | None:
        """The registration and broker epoch (czxid), or None if not registered."""
        got = await self._get(BrokerRegistration.path(broker_id))
        return None if got is None else (BrokerRegistration.from_json(got[0]), got[1].czxid)

    async def get_all_brokers(self) -> dict[int, tuple[BrokerRegistration, int]]:
        """Live brokers by id, each with its broker epoch (``getAllBrokerAndEpochsInCluster``)."""
        ids = sorted(_int_names(await self._children(BROKER_IDS_PATH), BROKER_IDS_PATH))
        found = await _gather([partial(self.get_broker, b) for b in ids])
        brokers = {}
        for broker_id, result in zip(ids, found, strict=True):
            if isinstance(result, ZkError):
                raise result
            if result is not None:
                brokers[broker_id] = result
        return brokers

    async def generate_broker_id(self, reserved_max: int) -> int:
        """``generateBrokerSequenceId``: bump ``/brokers/seqid``; its new version plus
        ``reserved.broker.max.id`` is the id."""
        while True:
            try:
                stat = await self._set(BrokerSequenceId.path(), BrokerSequenceId.DATA)
                return BrokerSequenceId.broker_id(stat.version, reserved_max)
            except ZkNoNode:
                await self._ensure_path(BrokerSequenceId.path())

    # -- controller ---------------------------------------------------------------------------

    async def get_controller_id(self) -> int | None:
        got = await self._get(ControllerRegistration.path())
        return None if got is None else ControllerRegistration.from_json(got[0]).broker_id

    async def get_controller_epoch(self) -> tuple[int, int] | None:
        """(controller epoch, ``/controller_epoch``'s znode version), None before any election."""
        got = await self._get(ControllerEpoch.path())
        return None if got is None else (ControllerEpoch.from_json(got[0]).epoch, got[1].version)

    async def try_become_controller(self, broker_id: int) -> int | None:
        """Kafka's ``registerControllerAndIncrementControllerEpoch``: the new controller epoch,
        or None if another broker holds ``/controller``. The epoch znode's version is kept in
        ``controller_epoch_zk_version`` to fence this controller's writes."""
        current = await self.get_controller_epoch()
        if current is None:
            try:
                await self._create(
                    ControllerEpoch.path(), ControllerEpoch(INITIAL_CONTROLLER_EPOCH).to_json()
                )
            except ZkNodeExists:
                pass
            current = await self.get_controller_epoch()
            if current is None:
                raise ZkError("/controller_epoch vanished", path=ControllerEpoch.path())
        epoch, zk_version = current
        new_epoch = epoch + 1
        registration = ControllerRegistration(broker_id, int(time.time() * 1000))
        try:
            results = await self._multi(
                [
                    CreateOp(ControllerRegistration.path(), registration.to_json(), ephemeral=True),
                    SetOp(ControllerEpoch.path(), ControllerEpoch(new_epoch).to_json(), zk_version),
                ]
            )
            stat = results[1].stat
            assert stat is not None
            new_zk_version = stat.version
        except (ZkNodeExists, ZkBadVersion):
            # Lost the race, or won it with a reply lost to a dropped connection: only the
            # znodes can tell (Kafka's checkControllerAndEpoch).
            if await self.get_controller_id() != broker_id:
                return None
            current = await self.get_controller_epoch()
            if current is None or current[0] != new_epoch:
                return None
            new_zk_version = current[1]
        self.controller_epoch, self.controller_epoch_zk_version = new_epoch, new_zk_version
        return new_epoch

    async def resign_controller(self, epoch_zk_version: int) -> bool:
        """Delete ``/controller`` if this controller (epoch znode still at
        ``epoch_zk_version``) holds it; False if another controller was elected since."""
        if self.controller_epoch_zk_version == epoch_zk_version:
            self.controller_epoch = self.controller_epoch_zk_version = None
        try:
            await self._fenced(DeleteOp(ControllerRegistration.path()), epoch_zk_version)
        except (ControllerMovedError, ZkNoNode):
            return False
        return True

    # -- topics ---------------------------------------------------------------------------------

    async def get_all_topics(self) -> list[str]:
        return await self._children(TOPICS_PATH)

    async def get_topic(self, name: str) -> TopicZnode | None:
        got = await self._get(TopicAssignment.path(name))
        if got is None:
            return None
        return TopicZnode(name, TopicAssignment.from_json(got[0]), got[1].version)

    async def create_topic(
        self,
        name: str,
        topic_id: uuid.UUID | None,
        assignment: Mapping[int, Sequence[int]],
        configs: Mapping[str, str],
    ) -> None:
        """AdminZkClient's ``createTopicWithAssignment``: ZkNodeExists (TOPIC_ALREADY_EXISTS)
        if the topic exists or awaits deletion; else its config first, then its assignment."""
        if await self._retry(lambda: self.zk.exists(DeleteTopic.path(name))) is not None:
            msg = f"topic '{name}' is marked for deletion"
            raise ZkNodeExists(msg, path=DeleteTopic.path(name))
        if await self._retry(lambda: self.zk.exists(TopicAssignment.path(name))) is not None:
            raise ZkNodeExists(f"topic '{name}' already exists", path=TopicAssignment.path(name))
        await self.set_entity_config("topics", name, configs)
        znode = TopicAssignment(
            {p: ReplicaAssignment(tuple(r)) for p, r in assignment.items()}, topic_id
        )
        try:
            await self._create(TopicAssignment.path(name), znode.to_json(), makepath=True)
        except ZkNodeExists:
            raise ZkNodeExists(
                f"topic '{name}' already exists", path=TopicAssignment.path(name)
            ) from None

    async def set_topic_assignment(
        self,
        name: str,
        assignment: Mapping[int, ReplicaAssignment],
        topic_id: uuid.UUID | None,
        expected_version: int = -1,
        *,
        controller_epoch_zk_version: int | None = None,
    ) -> int:
        """Rewrite the topic znode (new partitions, reassignment) at ``expected_version``
        (-1: any); fenced when the controller writes it. Returns the new znode version."""
        data = TopicAssignment(dict(assignment), topic_id).to_json()
        op = SetOp(TopicAssignment.path(name), data, expected_version)
        stat = (await self._fenced(op, controller_epoch_zk_version)).stat
        assert stat is not None
        return stat.version

    async def get_partition_states(self, topic: str) -> dict[int, tuple[PartitionState, int]]:
        """Each partition's state and its znode version (the partition epoch)."""
        partitions = _int_names(await self._children(partitions_path(topic)), topic)
        states = await self.get_partition_states_of([(topic, p) for p in partitions])
        return {p: states[(topic, p)] for p in sorted(partitions) if (topic, p) in states}

    async def get_partition_states_of(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, tuple[PartitionState, int]]:
        """``getTopicPartitionStates``: partitions without a state znode are left out."""
        wanted = list(partitions)
        found = await _gather([partial(self._get, PartitionState.path(*tp)) for tp in wanted])
        states = {}
        for tp, result in zip(wanted, found, strict=True):
            if isinstance(result, ZkError):
                raise result
            if result is not None:
                states[tp] = (PartitionState.from_json(result[0]), result[1].version)
        return states

    async def create_partition_states(
        self,
        states: Mapping[TopicPartition, PartitionState],
        controller_epoch: int,
        controller_epoch_zk_version: int,
    ) -> PartitionStateWrites:
        """``createTopicPartitionStatesRaw``: the partitions path, each partition's path, then
        its state znode, every create fenced; ControllerMovedError if the fence fails."""
        fence = controller_epoch_zk_version
        topics = sorted({topic for topic, _ in states})
        await self._fenced_creates([partitions_path(t) for t in topics], fence)
        await self._fenced_creates([partition_path(t, p) for t, p in states], fence)
        wanted = list(states)
        ops = [
            CreateOp(PartitionState.path(*tp), _stamped(states[tp], controller_epoch).to_json())
            for tp in wanted
        ]
        return _writes(wanted, await _gather([partial(self._fenced, op, fence) for op in ops]))

    async def update_partition_states(
        self,
        states: Mapping[TopicPartition, tuple[PartitionState, int]],
        controller_epoch: int,
        controller_epoch_zk_version: int,
    ) -> PartitionStateWrites:
        """``updateLeaderAndIsr``: set each state at its expected version, fenced."""
        fence = controller_epoch_zk_version
        wanted = list(states)
        ops = [
            SetOp(
                PartitionState.path(*tp),
                _stamped(states[tp][0], controller_epoch).to_json(),
                states[tp][1],
            )
            for tp in wanted
        ]
        return _writes(wanted, await _gather([partial(self._fenced, op, fence) for op in ops]))

    async def _fenced_creates(self, paths: Sequence[str], fence: int) -> None:
        """Create parents whose existence is all that matters; ControllerMovedError propagates."""
        for result in await _gather([partial(self._fenced, CreateOp(p), fence) for p in paths]):
            if isinstance(result, ControllerMovedError):
                raise result

    async def mark_topic_for_deletion(self, names: Iterable[str]) -> dict[str, bool]:
        """Create ``/admin/delete_topics/<name>`` for each; False where already marked (which
        Kafka's DeleteTopics ignores). The caller checks that the topics exist."""
        marked = {}
        for name in names:
            try:
                await self._create(DeleteTopic.path(name), DeleteTopic.DATA, makepath=True)
                marked[name] = True
            except ZkNodeExists:
                marked[name] = False
        return marked

    async def get_topics_marked_for_deletion(self) -> list[str]:
        return await self._children(DELETE_TOPICS_PATH)

    async def delete_topic_znodes(
        self, name: str, controller_epoch_zk_version: int | None = None
    ) -> None:
        """The controller's last step of topic deletion (``ControllerDeletionClient``): the
        topic znode tree, its config, and the deletion marker last."""
        fence = controller_epoch_zk_version
        await self._delete_tree(TopicAssignment.path(name), fence)
        for path in (EntityConfig.path("topics", name), DeleteTopic.path(name)):
            try:
                await self._fenced(DeleteOp(path), fence)
            except ZkNoNode:
                pass

    # -- dynamic configs ------------------------------------------------------------------------

    async def get_entity_config(self, kind: str, name: str) -> dict[str, str]:
        """``/config/<kind>/<name>``'s overrides ({} if none)."""
        got = await self._get(EntityConfig.path(kind, name))
        return {} if got is None else dict(EntityConfig.from_json(got[0]).config)

    async def get_all_entities_with_config(self, kind: str) -> list[str]:
        return await self._children(f"{CONFIG_PATH}/{kind}")

    async def set_entity_config(self, kind: str, name: str, configs: Mapping[str, str]) -> None:
        """``setOrCreateEntityConfigs``: set, or create if absent (last writer wins)."""
        path, data = EntityConfig.path(kind, name), EntityConfig(dict(configs)).to_json()
        try:
            await self._set(path, data)
        except ZkNoNode:
            try:
                await self._create(path, data, makepath=True)
            except ZkNodeExists:
                await self._set(path, data)

    async def create_config_change_notification(self, entity_path: str) -> str:
        """A sequential ``/config/changes/config_change_`` naming ``<kind>/<name>``, which tells
        every broker to re-read that entity's config; returns the created path."""
        kind, slash, name = entity_path.partition("/")
        if not slash or kind not in ENTITY_TYPES:
            kinds = "|".join(ENTITY_TYPES)
            raise ValueError(f"entity path {entity_path!r} is not <{kinds}>/<name>")
        await self._ensure_path(CHANGES_PATH)
        data = ConfigChangeNotification(kind, name).to_json()
        create = ConfigChangeNotification.create_path()
        return await self._retry(lambda: self.zk.create(create, data, sequential=True))

    async def change_entity_config(self, kind: str, name: str, configs: Mapping[str, str]) -> None:
        """AdminZkClient's ``changeEntityConfig``: write the configs, then announce them."""
        await self.set_entity_config(kind, name, configs)
        await self.create_config_change_notification(f"{kind}/{name}")

    async def get_config_changes_since(
        self, seq: int
    ) -> list[tuple[int, ConfigChangeNotification]]:
        """Notifications numbered above ``seq`` (-1: all), oldest first; unreadable ones (and
        ones purged meanwhile) are skipped, as Kafka's notification listener does."""
        numbered = []
        for node in await self._children(CHANGES_PATH):
            try:
                number = ConfigChangeNotification.sequence_number(node)
            except ZNodeDecodeError:
                continue
            if number > seq:
                numbered.append((number, node))
        numbered.sort()
        paths = [f"{CHANGES_PATH}/{node}" for _, node in numbered]
        found = await _gather([partial(self._get, p) for p in paths])
        changes = []
        for (number, node), result in zip(numbered, found, strict=True):
            if isinstance(result, ZkError):
                raise result
            if result is None:
                continue
            try:
                changes.append((number, ConfigChangeNotification.from_json(result[0])))
            except ZNodeDecodeError as exc:
                _log.warning("skipping config change %s: %s", node, exc)
        return changes

    # -- producer ids ---------------------------------------------------------------------------

    async def allocate_producer_id_block(
        self, broker_id: int, size: int = PRODUCER_ID_BLOCK_SIZE
    ) -> tuple[int, int]:
        """The next block of producer ids, (first, last) inclusive, taken with a set
        conditional on the version read and retried on conflict (``ZkProducerIdManager``)."""
        if size <= 0:
            raise ValueError(f"producer id block size must be positive, not {size}")
        path = ProducerIdBlock.path()
        while True:
            got = await self._get(path)
            if got is None:
                await self._ensure_path(path)
                continue
            current = ProducerIdBlock.from_json_or_none(got[0])
            start = 0 if current is None else current.block_end + 1
            if start > _LONG_MAX - size:
                raise ZkError("producer ids exhausted", path=path)
            block = ProducerIdBlock(broker_id, start, start + size - 1)
            try:
                await self._set(path, block.to_json(), got[1].version)
            except (ZkBadVersion, ZkNoNode):
                continue  # another broker took a block since we read: read again
            return block.block_start, block.block_end

    # -- admin requests: reassignment and preferred leader election -----------------------------

    async def get_partition_reassignment(self) -> dict[TopicPartition, tuple[int, ...]]:
        """``/admin/reassign_partitions``; invalid JSON is ignored with a warning, as Kafka does."""
        got = await self._get(PartitionReassignment.path())
        if got is None:
            return {}
        try:
            return dict(PartitionReassignment.from_json(got[0]).partitions)
        except ZNodeDecodeError as exc:
            _log.warning("ignoring partition reassignment with invalid JSON: %s", exc)
            return {}

    async def create_partition_reassignment(
        self, reassignment: Mapping[TopicPartition, Sequence[int]]
    ) -> None:
        """ZkNodeExists while one is in progress."""
        data = PartitionReassignment({tp: tuple(r) for tp, r in reassignment.items()}).to_json()
        await self._create(PartitionReassignment.path(), data, makepath=True)

    async def set_or_create_partition_reassignment(
        self,
        reassignment: Mapping[TopicPartition, Sequence[int]],
        controller_epoch_zk_version: int,
    ) -> None:
        """The controller's rewrite of what is left of a reassignment, fenced."""
        path = PartitionReassignment.path()
        data = PartitionReassignment({tp: tuple(r) for tp, r in reassignment.items()}).to_json()
        try:
            await self._fenced(SetOp(path, data), controller_epoch_zk_version)
        except ZkNoNode:
            await self._fenced(CreateOp(path, data), controller_epoch_zk_version)

    async def delete_partition_reassignment(self, controller_epoch_zk_version: int) -> None:
        await self._delete_tree(PartitionReassignment.path(), controller_epoch_zk_version)

    async def reassignment_in_progress(self) -> bool:
        path = PartitionReassignment.path()
        return await self._retry(lambda: self.zk.exists(path)) is not None

    async def get_preferred_replica_election(self) -> set[TopicPartition]:
        got = await self._get(PreferredReplicaElection.path())
        return set() if got is None else set(PreferredReplicaElection.from_json(got[0]).partitions)

    async def create_preferred_replica_election(self, partitions: Iterable[TopicPartition]) -> None:
        """ZkNodeExists while one is in progress."""
        data = PreferredReplicaElection(tuple(sorted(set(partitions)))).to_json()
        await self._create(PreferredReplicaElection.path(), data, makepath=True)

    async def delete_preferred_replica_election(self, controller_epoch_zk_version: int) -> None:
        try:
            op = DeleteOp(PreferredReplicaElection.path())
            await self._fenced(op, controller_epoch_zk_version)
        except ZkNoNode:
            pass


def _stamped(state: PartitionState, controller_epoch: int) -> PartitionState:
    """The state as written by the controller of ``controller_epoch``."""
    if state.controller_epoch == controller_epoch:
        return state
    return dataclasses.replace(state, controller_epoch=controller_epoch)


def _writes(
    partitions: Sequence[TopicPartition], results: Sequence[OpResult | ZkError]
) -> PartitionStateWrites:
    writes = PartitionStateWrites()
    for tp, result in zip(partitions, results, strict=True):
        if isinstance(result, ControllerMovedError):
            raise result
        if isinstance(result, ZkBadVersion):
            writes.retry.append(tp)
        elif isinstance(result, ZkError):
            writes.failed[tp] = result
        else:
            writes.written[tp] = 0 if result.stat is None else result.stat.version
    return writes


def _int_names(names: Iterable[str], parent: str) -> list[int]:
    """Child names that are integers (broker ids, partitions); others are logged and skipped."""
    numbers = []
    for name in names:
        try:
            numbers.append(parse_java_int(name, parent))
        except ZNodeDecodeError:
            _log.warning("ignoring znode %r under %s: not an integer", name, parent)
    return numbers


async def _gather(calls: Sequence[Callable[[], Awaitable[T]]]) -> list[T | ZkError]:
    """Run ``calls`` concurrently, pipelined on the one connection as Kafka's
    ``handleRequests`` does; a ZkError is that call's result, any other error propagates."""
    results: dict[int, T | ZkError] = {}
    unexpected: list[Exception] = []
    limiter = trio.Semaphore(_MAX_IN_FLIGHT)

    async def run(index: int, call: Callable[[], Awaitable[T]]) -> None:
        async with limiter:
            try:
                results[index] = await call()
            except ZkError as exc:
                results[index] = exc
            except Exception as exc:
                unexpected.append(exc)

    async with trio.open_nursery() as nursery:
        for index, call in enumerate(calls):
            nursery.start_soon(run, index, call)
    if unexpected:
        raise unexpected[0]
    return [results[i] for i in range(len(calls))]
