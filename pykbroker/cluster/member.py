"""A broker's part in a ZooKeeper cluster: registration, the controller's requests, topic admin.

The broker registers itself in ``/brokers/ids`` (again after a session expiry), runs the
controller elector, applies LeaderAndIsr (which partitions it hosts and leads),
UpdateMetadata (what it tells clients) and StopReplica from the active controller, refusing
requests from an older controller epoch, and turns CreateTopics, DeleteTopics and
CreatePartitions into ZooKeeper writes whose outcome it waits for in its metadata cache.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import trio

from pykbroker.cluster.cluster_topics import ClusterTopicManager
from pykbroker.cluster.metadata_cache import (
    Endpoint,
    LiveBroker,
    MetadataCache,
    PartitionState,
)
from pykbroker.cluster.topics import TopicInfo
from pykbroker.controller.controller import TopicConfigChange, ZkController, live_broker
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.protocol._generated.leader_and_isr_request import LeaderAndIsrRequest
from pykbroker.protocol._generated.leader_and_isr_response import (
    LeaderAndIsrPartitionError,
    LeaderAndIsrResponse,
    LeaderAndIsrTopicError,
)
from pykbroker.protocol._generated.stop_replica_request import StopReplicaRequest
from pykbroker.protocol._generated.stop_replica_response import (
    StopReplicaPartitionError,
    StopReplicaResponse,
)
from pykbroker.protocol._generated.update_metadata_request import UpdateMetadataRequest
from pykbroker.protocol._generated.update_metadata_response import UpdateMetadataResponse
from pykbroker.replication.fetcher import FetcherSettings, ReplicaFetcherManager
from pykbroker.replication.isr import IsrManager

log = logging.getLogger("pykbroker.cluster.member")

PROTOCOL_NAMES = {0: "PLAINTEXT", 1: "SSL", 2: "SASL_PLAINTEXT", 3: "SASL_SSL"}


class ClusterMember:
    def __init__(self, store: Any, node_id: int, replicas: Any, cache: MetadataCache,
                 inter_broker_listener: str, *, rack: str | None,
                 delete_topic_enable: Callable[[], bool],
                 leader_rebalance: Callable[[], tuple[bool, int, int]],
                 unclean_default: Callable[[], bool] = lambda: False,
                 fetcher_settings: Callable[[], FetcherSettings] = FetcherSettings,
                 replica_lag_time_ms: Callable[[], int] = lambda: 30_000) -> None:
        self.store = store  # pykbroker.metadata.zk.cluster_store.ZkClusterStore
        self.node_id = node_id
        self.replicas = replicas
        self.cache = cache
        self.rack = rack
        self.listener = inter_broker_listener
        self.broker_epoch = -1
        self.controller_epoch = -1
        self.topic_configs: dict[str, dict[str, str]] = {}
        self.topics: ClusterTopicManager | None = None
        self.controller = ZkController(store, node_id, inter_broker_listener,
                                       delete_topic_enable=delete_topic_enable,
                                       leader_rebalance=leader_rebalance,
                                       unclean_default=unclean_default)
        self.fetchers = ReplicaFetcherManager(node_id, lambda: self.broker_epoch, replicas,
                                              cache, inter_broker_listener, fetcher_settings)
        self.isr = IsrManager(node_id, lambda: self.broker_epoch, cache,
                              inter_broker_listener, replicas, replica_lag_time_ms)
        self._endpoints: list[Endpoint] = []
        # Called with (topic, partition, now leader?) when this broker starts or stops leading
        # a partition: the coordinators load and unload their internal topics' partitions.
        self.leadership_listeners: list[Callable[[str, int, bool], None]] = []
        self._nursery: trio.Nursery | None = None
        self._config_seq = -1
        self._config_lock = trio.Lock()
        # Applies this broker's dynamic configs: (own /config/brokers/<id>, <default>).
        self.on_broker_configs: Callable[[dict[str, str], dict[str, str]], None] = \
            lambda own, defaults: None
        # Called with a /config/changes users/... or clients/... entity (kind, name): the
        # SCRAM credentials and client quotas are re-read.
        self.on_entity_config_change: Callable[[str, str], Awaitable[None]] | None = None
        replicas.exists_in_cluster = lambda topic, index: (
            (meta := cache.topic(topic)) is not None and index in meta.partitions)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery, endpoints: Iterable[Endpoint]) -> None:
        """Register this broker and start the controller elector (listeners are bound)."""
        self._nursery = nursery
        self._endpoints = list(endpoints)
        await nursery.start(self.fetchers.run)
        await nursery.start(self.isr.run)
        await self._register()
        await self._seed_cache()
        self.store.on_session_expired(lambda: nursery.start_soon(self._reregister))
        changes = await self.store.config_changes_since(-1)
        self._config_seq = max((n for n, _, _ in changes), default=-1)
        await self._apply_broker_configs()
        await self.store.watch_config_changes(
            lambda *_: nursery.start_soon(self._process_config_changes))
        await nursery.start(self.controller.run)  # its /controller watch starts the election

    async def _seed_cache(self) -> None:
        """Until the controller's first UpdateMetadata arrives (tens of milliseconds after the
        registration, more under load) clients would learn from this broker of no controller
        and no broker, and librdkafka's admin client then waits for a controller until its
        request times out. The live brokers and the controller are read from ZooKeeper now;
        the first UpdateMetadata replaces them."""
        try:
            controller = await self.store.get_controller_id()
            brokers = await self.store.get_all_brokers()
        except Exception as exc:  # the controller's UpdateMetadata will tell
            log.info("reading the live brokers from ZooKeeper failed: %r", exc)
            return
        self.cache.seed(-1 if controller is None else controller,
                        [live_broker(b, registration) for b, (registration, _) in brokers.items()])

    # -- dynamic configs (``/config/changes`` notifications, as Kafka's ZkConfigManager) ----

    async def _process_config_changes(self) -> None:
        async with self._config_lock:
            try:
                changes = await self.store.config_changes_since(self._config_seq)
            except Exception as exc:
                log.warning("reading config changes failed: %r", exc)
                return
            for seq, kind, name in changes:
                self._config_seq = max(self._config_seq, seq)
                try:
                    if kind == "topics":
                        await self._apply_topic_config(name)
                    elif kind == "brokers" and name in ("<default>", str(self.node_id)):
                        await self._apply_broker_configs()
                    elif kind in ("users", "clients") \
                            and self.on_entity_config_change is not None:
                        await self.on_entity_config_change(kind, name)  # SCRAM, quotas
                except Exception as exc:
                    log.warning("applying config change %s/%s failed: %r", kind, name, exc)

    async def _apply_topic_config(self, name: str) -> None:
        configs = await self.store.get_topic_config(name)
        self.topic_configs[name] = configs
        if self.controller.active:
            self.controller.put(TopicConfigChange(name, configs))
        meta = self.cache.topic(name)
        if meta is not None:
            self.replicas.reconfigure(TopicInfo(
                name, meta.topic_id, {i: list(s.replicas) for i, s in meta.partitions.items()},
                configs))
        log.info("topic %s configs now %s", name, configs)

    async def _apply_broker_configs(self) -> None:
        own = await self.store.get_entity_config("brokers", str(self.node_id))
        defaults = await self.store.get_entity_config("brokers", "<default>")
        self.on_broker_configs(own, defaults)

    async def change_topic_config(self, name: str, configs: dict[str, str]) -> None:
        await self.store.change_entity_config("topics", name, configs)

    async def broker_config(self, entity: str) -> dict[str, str]:
        configs: dict[str, str] = await self.store.get_entity_config("brokers", entity)
        return configs

    async def change_broker_config(self, entity: str, configs: dict[str, str]) -> None:
        await self.store.change_entity_config("brokers", entity, configs)

    async def _register(self) -> None:
        self.broker_epoch = await self.store.register_broker(
            self.node_id, self._endpoints, self.rack, int(time.time() * 1000))
        log.info("[KafkaServer id=%d] registered in ZooKeeper (broker epoch %d)", self.node_id,
                 self.broker_epoch)

    async def _reregister(self) -> None:
        """A new session lost our ephemeral registration: make it again (Kafka does)."""
        for attempt in range(60):
            try:
                await self._register()
                return
            except Exception as exc:  # the old node may linger until its session ends
                log.warning("re-registration of broker %d failed (%s); retrying", self.node_id,
                            exc)
                await trio.sleep(min(0.5 * (attempt + 1), 3.0))

    async def controlled_shutdown(self, retries: int, backoff_s: float) -> bool:
        """Ask the controller to move leadership away before we stop (Kafka's
        ``controlled.shutdown.enable``); True when nothing is left to move."""
        from pykbroker.cluster.broker_client import BrokerConnection, BrokerConnectionError
        from pykbroker.protocol._generated.controlled_shutdown_request import (
            ControlledShutdownRequest,
        )
        from pykbroker.protocol.api import ApiKey

        for attempt in range(retries):
            if self.controller.active:
                code, remaining = await self.controller.controlled_shutdown(
                    self.node_id, self.broker_epoch)
            else:
                broker = self.cache.broker(self.cache.controller_id)
                ep = broker.endpoint(self.listener) if broker is not None else None
                if ep is None:
                    await trio.sleep(backoff_s)
                    continue
                conn = BrokerConnection(ep.host, ep.port, f"broker-{self.node_id}")
                try:
                    resp = await conn.request(ApiKey.CONTROLLED_SHUTDOWN, 3,
                                              ControlledShutdownRequest(self.node_id,
                                                                        self.broker_epoch))
                    code = ErrorCode(resp.error_code)
                    remaining = [(r.topic_name, r.partition_index)
                                 for r in resp.remaining_partitions]
                except BrokerConnectionError as exc:
                    log.info("controlled shutdown request failed: %s", exc)
                    code, remaining = ErrorCode.NETWORK_EXCEPTION, []
                finally:
                    await conn.close()
            if code == ErrorCode.NONE and not remaining:
                return True
            log.info("[KafkaServer id=%d] controlled shutdown attempt %d: %s, %d partitions "
                     "remaining", self.node_id, attempt + 1, code.name, len(remaining))
            if code == ErrorCode.NONE and all(
                    len(self._replicas_of(t, p)) <= 1 for t, p in remaining):
                return True  # nothing else could lead them
            await trio.sleep(backoff_s)
        return False

    def _replicas_of(self, topic: str, index: int) -> list[int]:
        meta = self.cache.topic(topic)
        state = meta.partitions.get(index) if meta is not None else None
        return list(state.replicas) if state is not None else []

    # -- the controller's requests ------------------------------------------------------------

    def _stale(self, controller_epoch: int, broker_epoch: int) -> ErrorCode | None:
        if controller_epoch < self.controller_epoch:
            return ErrorCode.STALE_CONTROLLER_EPOCH
        if broker_epoch != -1 and broker_epoch < self.broker_epoch:
            return ErrorCode.STALE_BROKER_EPOCH
        self.controller_epoch = controller_epoch
        return None

    async def _configs(self, topic: str) -> dict[str, str]:
        configs = self.topic_configs.get(topic)
        if configs is None:
            configs = self.topic_configs[topic] = await self.store.get_topic_config(topic)
        return configs

    async def on_leader_and_isr(self, req: LeaderAndIsrRequest) -> LeaderAndIsrResponse:
        stale = self._stale(req.controller_epoch, req.broker_epoch)
        if stale is not None:
            return LeaderAndIsrResponse(error_code=int(stale), partition_errors=[], topics=[])
        topics = []
        for ts in req.topic_states:
            configs = await self._configs(ts.topic_name)
            errors = []
            for ps in ts.partition_states:
                try:
                    code = self._apply_leader_and_isr(ts.topic_name, ts.topic_id, configs, ps)
                except KafkaError as exc:  # e.g. a log left by another topic of that name
                    log.warning("LeaderAndIsr for %s-%d failed: %s", ts.topic_name,
                                ps.partition_index, exc)
                    code = exc.error_code
                errors.append(LeaderAndIsrPartitionError(
                    topic_name=ts.topic_name, partition_index=ps.partition_index,
                    error_code=int(code)))
            topics.append(LeaderAndIsrTopicError(topic_id=ts.topic_id, partition_errors=errors))
        return LeaderAndIsrResponse(error_code=0, partition_errors=[], topics=topics)

    def _apply_leader_and_isr(self, name: str, topic_id: uuid.UUID, configs: dict[str, str],
                              ps: Any) -> ErrorCode:
        if self.node_id not in ps.replicas:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        current = self.replicas.partitions.get((name, ps.partition_index))
        if current is not None and ps.leader_epoch < current.leader_epoch:
            log.info("ignoring LeaderAndIsr for %s-%d: leader epoch %d < current %d", name,
                     ps.partition_index, ps.leader_epoch, current.leader_epoch)
            return ErrorCode.STALE_CONTROLLER_EPOCH
        topic = TopicInfo(name, topic_id, {ps.partition_index: list(ps.replicas)}, configs)
        was_leader = current is not None and current.is_leader
        old_epoch = current.leader_epoch if current is not None else None
        part = self.replicas.make_leader_or_follower(
            topic, ps.partition_index, ps.leader, ps.leader_epoch, list(ps.isr),
            list(ps.replicas), ps.partition_epoch, self.node_id)
        if part.is_leader:
            self.fetchers.unfollow((name, ps.partition_index))
        else:
            self.fetchers.follow(part)
        if old_epoch != part.leader_epoch:  # Kafka's state-change log says as much
            log.info("[Broker id=%d] %s %s-%d at leader epoch %d (ISR %s)", self.node_id,
                     "leads" if part.is_leader else f"follows broker {part.leader_id} for",
                     name, ps.partition_index, part.leader_epoch, list(ps.isr))
        if part.is_leader != was_leader or (part.is_leader and part.leader_epoch != old_epoch):
            # Coordinators (re)load with the new epoch, which their markers carry.
            for listener in self.leadership_listeners:
                listener(name, ps.partition_index, part.is_leader)
        return ErrorCode.NONE

    async def on_update_metadata(self, req: UpdateMetadataRequest) -> UpdateMetadataResponse:
        stale = self._stale(req.controller_epoch, req.broker_epoch)
        if stale is not None:
            return UpdateMetadataResponse(error_code=int(stale))
        brokers = [LiveBroker(b.id, tuple(
            Endpoint(e.listener, e.host, e.port, PROTOCOL_NAMES.get(e.security_protocol,
                                                                    "PLAINTEXT"))
            for e in b.endpoints), b.rack) for b in req.live_brokers]
        states = []
        for ts in req.topic_states:
            for ps in ts.partition_states:
                states.append((ts.topic_name, ts.topic_id, ps.partition_index, PartitionState(
                    ps.leader, ps.leader_epoch, list(ps.isr), list(ps.replicas),
                    list(ps.offline_replicas), ps.zk_version)))
        for name in {s[0] for s in states} - set(self.topic_configs):
            await self._configs(name)
        first = self.cache.controller_epoch < 0
        gone = self.cache.update(req.controller_id, req.controller_epoch, brokers, states)
        if first:  # the cluster test harness waits for this line (the seed above is not it)
            log.info("first metadata from controller %d (controller epoch %d, %d live brokers)",
                     req.controller_id, req.controller_epoch, len(brokers))
        for name in gone:
            self.topic_configs.pop(name, None)
        return UpdateMetadataResponse(error_code=0)

    async def on_stop_replica(self, req: StopReplicaRequest) -> StopReplicaResponse:
        stale = self._stale(req.controller_epoch, req.broker_epoch)
        if stale is not None:
            return StopReplicaResponse(error_code=int(stale), partition_errors=[])
        errors = []
        for ts in req.topic_states:
            for ps in ts.partition_states:
                part = self.replicas.partitions.get((ts.topic_name, ps.partition_index))
                self.fetchers.unfollow((ts.topic_name, ps.partition_index))
                self.replicas.stop_replica(ts.topic_name, ps.partition_index,
                                           ps.delete_partition)
                if part is not None and part.is_leader:
                    for listener in self.leadership_listeners:
                        listener(ts.topic_name, ps.partition_index, False)
                errors.append(StopReplicaPartitionError(
                    topic_name=ts.topic_name, partition_index=ps.partition_index, error_code=0))
        return StopReplicaResponse(error_code=0, partition_errors=errors)

    # -- topic administration -----------------------------------------------------------------

    def create_in_background(self, topic: TopicInfo) -> None:
        """Auto-creation and internal topics: write to ZooKeeper, do not wait."""
        if self._nursery is None:
            return

        async def write() -> None:
            try:
                await self.store.create_topic(topic)
            except KafkaError as exc:
                if exc.error_code != ErrorCode.TOPIC_ALREADY_EXISTS:
                    log.warning("creating topic %s failed: %s", topic.name, exc)
            except Exception as exc:  # ZooKeeper trouble: the client's retry tries again
                log.warning("creating topic %s failed: %r", topic.name, exc)

        self._nursery.start_soon(write)

    async def create_topic(self, topic: TopicInfo) -> None:
        """Write a validated topic (KafkaError TOPIC_ALREADY_EXISTS if another was first)."""
        await self.store.create_topic(topic)
        self.topic_configs[topic.name] = dict(topic.configs)

    async def delete_topic(self, name: str) -> None:
        await self.store.mark_topic_for_deletion(name)

    async def add_partitions(self, topic: TopicInfo, new: dict[int, list[int]]) -> None:
        await self.store.add_partitions(topic, new)

    async def wait_for(self, done: Callable[[], bool], timeout_ms: int) -> bool:
        """Wait until the metadata cache satisfies ``done`` (Kafka's delayed admin
        operations); False on timeout."""
        with trio.move_on_after(max(timeout_ms, 0) / 1000.0):
            while not done():
                await self.cache.wait_for_change()
            return True
        return done()

    def leader_endpoint(self, topic: str, partition: int, listener: str
                        ) -> tuple[int, str, int] | None:
        """(broker id, host, port) of the partition's leader on ``listener``, if alive."""
        meta = self.cache.topic(topic)
        state = meta.partitions.get(partition) if meta is not None else None
        broker = self.cache.broker(state.leader) if state is not None else None
        ep = broker.endpoint(listener) if broker is not None else None
        return None if broker is None or ep is None else (broker.id, ep.host, ep.port)

    def has_leaders(self, name: str, partitions: int) -> bool:
        meta = self.cache.topic(name)
        return meta is not None and len(meta.partitions) >= partitions and all(
            s.leader >= 0 for s in meta.partitions.values())
