"""The broker's root: starts subsystems in order, serves, and shuts down gracefully.

Start-up: data directories and cluster id, logs (with recovery), topic metadata, partitions,
then listeners. Shutdown: stop accepting, let requests in flight finish, then flush logs and
write checkpoints in a shielded scope.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from pykbroker import __version__
from pykbroker.cluster.fetch_session import FetchSessionCache
from pykbroker.cluster.metadata_cache import Endpoint, LocalMetadataView, MetadataView
from pykbroker.cluster.metadata_store import LocalMetadataStore
from pykbroker.cluster.producer_ids import BLOCK_SIZE, BlockProducerIdManager, ProducerIdManager
from pykbroker.cluster.replica_manager import ReplicaManager
from pykbroker.cluster.topic_manager import TopicManager
from pykbroker.cluster.topics import INTERNAL_TOPICS, TopicInfo
from pykbroker.config import (
    BROKER_DEFS,
    BrokerConfig,
    ConfigError,
    ConfigSource,
    describe_topic_configs,
    topic_config_defaults,
    validate_topic_configs,
)
from pykbroker.config.security import refuse_unsupported_security
from pykbroker.coordinator.group import GroupCoordinator
from pykbroker.coordinator.group.records import OFFSETS_TOPIC
from pykbroker.coordinator.transaction import TransactionCoordinator
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.handlers import all_handlers
from pykbroker.log import LogConfig, LogManager, new_cluster_id
from pykbroker.log.log_cleaner import LogCleaner
from pykbroker.log.log_manager import InconsistentClusterIdError
from pykbroker.protocol.api import ApiKey
from pykbroker.server.connection import ConnectionSettings
from pykbroker.server.dispatch import DispatchTable, HandlerSpec
from pykbroker.server.listener import BindAddress, NetworkServer

if TYPE_CHECKING:  # prometheus_client is imported only when metrics.port enables them
    from pykbroker.cluster.member import ClusterMember
    from pykbroker.metrics import BrokerMetrics
    from pykbroker.replication.fetcher import FetcherSettings

log = logging.getLogger("pykbroker.broker")

SHUTDOWN_GRACE_S = 3.0
# The listener settings Kafka updates at run time (ListenerConnectionQuota's
# reconfigurableConfigs), besides the keys of BROKER_DEFS that are not read-only.
LISTENER_DYNAMIC = re.compile(r"listener\.name\.[^.]+\.(max\.connections|"
                              r"max\.connection\.creation\.rate)")
CHECKPOINT_INTERVAL_S = 60.0
RETENTION_CHECK_DEFAULT_MS = 300_000


@dataclass
class BrokerServices:
    """What handlers reach through ``ctx.services``: the subsystems that own state."""

    config: BrokerConfig
    static_config: BrokerConfig
    node_id: int
    cluster_id: str
    dispatch: DispatchTable
    replicas: ReplicaManager
    topics: TopicManager
    log_manager: LogManager
    log_dirs: list[Path]
    fetch_sessions: FetchSessionCache
    producer_ids: ProducerIdManager | BlockProducerIdManager
    groups: GroupCoordinator
    transactions: TransactionCoordinator
    metadata: MetadataView
    advertised: dict[str, tuple[str, int]] = field(default_factory=dict)
    cluster: ClusterMember | None = None  # set when zookeeper.connect makes a cluster
    rack: str | None = None
    internal_topics: frozenset[str] = INTERNAL_TOPICS

    def advertised_address(self, listener: str) -> tuple[str, int]:
        return self.advertised.get(listener) or next(iter(self.advertised.values()))

    def log_config_for(self, topic: TopicInfo) -> LogConfig:
        return _log_config(self.config, topic.configs)

    def describe_topic_configs(self, overrides: Mapping[str, str]) -> list[Any]:
        return describe_topic_configs(self.config, overrides)

    def apply_dynamic_broker_configs(self, configs: dict[str, str], *,
                                     validate_only: bool) -> None:
        """AlterConfigs on this broker: only keys Kafka can update at run time. In a cluster
        the handler writes them to ZooKeeper instead (``validate_only`` here) and every
        broker applies them with ``use_dynamic_broker_configs``."""
        unknown = sorted(k for k in configs
                         if k not in BROKER_DEFS and not LISTENER_DYNAMIC.fullmatch(k))
        if unknown:
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             f"Unknown dynamic configuration: {', '.join(unknown)}")
        fixed = sorted(k for k in configs if k in BROKER_DEFS and BROKER_DEFS[k].read_only)
        if fixed:
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             f"Cannot update these configs dynamically: {', '.join(fixed)}")
        try:
            new = self.static_config.with_overrides(dict(configs))
        except ConfigError as exc:
            raise KafkaError(ErrorCode.INVALID_CONFIG, str(exc)) from exc
        for key in configs:  # ListenerConnectionQuota.validateReconfiguration
            match = LISTENER_DYNAMIC.fullmatch(key)
            if match is not None and int(str(new.get(key))) <= 0:
                raise KafkaError(ErrorCode.INVALID_REQUEST,
                                 f"Invalid {match[1]} {new.get(key)} for {key}")
        if validate_only:
            return
        self.topics.store.set_broker_configs(configs)
        self.config = new
        for topic in self.topics.store.topics.values():
            self.replicas.reconfigure(topic)

    def use_dynamic_broker_configs(self, own: Mapping[str, str],
                                   defaults: Mapping[str, str]) -> None:
        """A cluster's dynamic configs for this broker (``/config/brokers/<id>``) and for all
        (``/config/brokers/<default>``), as ZooKeeper now holds them."""
        try:
            new = self.static_config.with_overrides(
                dict(defaults), ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG
            ).with_overrides(dict(own))
        except ConfigError as exc:  # written by a tool that skipped validation
            log.error("ignoring dynamic broker configs from ZooKeeper: %s", exc)
            return
        self.config = new
        for topic in self.topics.store.topics.values():
            self.replicas.reconfigure(topic)


def _topic_values(config: BrokerConfig, overrides: Mapping[str, str]) -> dict[str, object]:
    """A topic's effective config: broker defaults (through synonyms) under its overrides."""
    values = dict(topic_config_defaults(config))
    values.update({k: v for k, v in validate_topic_configs(overrides).items() if v is not None})
    return values


def _log_config(config: BrokerConfig, overrides: Mapping[str, str]) -> LogConfig:
    return LogConfig.from_mapping(_topic_values(config, overrides))


class Broker:
    """One broker. ``serve`` runs until ``shutdown`` is called (or the task is cancelled)."""

    def __init__(
        self,
        config: BrokerConfig,
        *,
        wrap_handler: Callable[[HandlerSpec], HandlerSpec] | None = None,
    ) -> None:
        """``wrap_handler`` lets an embedding (pykbroker.testing) observe or alter requests
        without hooks on the production path. Raises ConfigError for security settings
        that cannot be honoured yet (never serve less protection than configured)."""
        refuse_unsupported_security(config)
        self.wrap_handler = wrap_handler
        self.static_config = config
        self.config = config
        self.services: BrokerServices | None = None
        self.server: NetworkServer | None = None
        self._stop = trio.Event()
        self.ready = trio.Event()
        self.stopped = trio.Event()
        self.started_at = time.monotonic()
        self.metrics: BrokerMetrics | None = None
        self.metrics_port: int | None = None  # bound port of the Prometheus endpoint
        self._nursery: trio.Nursery | None = None

    @property
    def bound_ports(self) -> dict[str, int]:
        return dict(self.server.bound_ports) if self.server is not None else {}

    def shutdown(self) -> None:
        self._stop.set()

    def _spawn(self, task: Callable[[], Awaitable[None]]) -> None:
        """Run ``task`` in the broker's nursery (background ZooKeeper work)."""
        if self._nursery is not None:
            self._nursery.start_soon(task)

    # (config, its replica.fetch.* settings): the replica fetchers ask at every fetch.
    _fetcher_settings_of: tuple[BrokerConfig, FetcherSettings] | None = None

    def _fetcher_settings(self) -> FetcherSettings:
        """``replica.fetch.*`` of the current config, parsed once per config."""
        cached = self._fetcher_settings_of
        if cached is None or cached[0] is not self.config:
            from pykbroker.replication.fetcher import FetcherSettings

            cached = self._fetcher_settings_of = (
                self.config, FetcherSettings.from_config(self.config))
        return cached[1]

    def _open_storage(self, zk: Any = None, zk_cluster_id: str | None = None
                      ) -> BrokerServices:
        """Open the logs and wire the subsystems; ``zk`` (a ZkClusterStore) makes this broker
        a member of the cluster ZooKeeper describes, whose id is ``zk_cluster_id``."""
        cfg = self.config
        log_dirs = [Path(d) for d in cfg.log_dirs]
        log_manager = LogManager(log_dirs, _log_config(cfg, {}),
                                 page_cache_keep_bytes=cfg.log_page_cache_keep_bytes)
        if zk_cluster_id is not None:
            cluster_id = log_manager.read_or_create_meta(cfg.node_id, lambda: zk_cluster_id)
            if cluster_id != zk_cluster_id:
                raise InconsistentClusterIdError(
                    f"The Cluster ID {zk_cluster_id} doesn't match stored clusterId "
                    f"Some({cluster_id}) in meta.properties. The broker is trying to join the "
                    "wrong cluster. Configured zookeeper.connect may be wrong.")
        else:
            cluster_id = log_manager.read_or_create_meta(cfg.node_id, new_cluster_id)
        store = LocalMetadataStore(log_dirs[0])
        if store.broker_configs and zk is None:
            cfg = self.config = self.static_config.with_overrides(store.broker_configs)

        def config_for(topic: str) -> LogConfig:
            info = store.topics.get(topic)
            return _log_config(cfg, info.configs if info is not None else {})

        log_manager.load_all(config_for)
        replicas = ReplicaManager(
            log_manager, lambda t: _log_config(self.config, t.configs),
            lambda t: int(str(_topic_values(self.config, t.configs)["min.insync.replicas"])))
        topic_settings: dict[str, Any] = dict(
            default_partitions=lambda: self.config.num_partitions,
            default_replication_factor=lambda: self.config.default_replication_factor,
            validate_configs=validate_topic_configs,
            delete_enabled=lambda: self.config.delete_topic_enable,
        )
        rack = cfg.get("broker.rack")
        member: ClusterMember | None = None
        topics: TopicManager
        if zk is None:
            topics = TopicManager(store, replicas, node_id=cfg.node_id, **topic_settings)
        else:  # cluster code is imported only by cluster members (start-up time)
            from pykbroker.cluster.cluster_topics import ClusterTopicManager, ClusterTopicStore
            from pykbroker.cluster.member import ClusterMember
            from pykbroker.cluster.metadata_cache import MetadataCache

            cache = MetadataCache()
            member = ClusterMember(zk, cfg.node_id, replicas, cache,
                                   cfg.inter_broker_listener_name,
                                   rack=str(rack) if rack else None,
                                   delete_topic_enable=lambda: self.config.delete_topic_enable,
                                   fetcher_settings=self._fetcher_settings,
                                   replica_lag_time_ms=lambda: int(str(self.config.get(
                                       "replica.lag.time.max.ms"))),
                                   unclean_default=lambda: bool(self.config.get(
                                       "unclean.leader.election.enable")),
                                   leader_rebalance=lambda: (
                                       bool(self.config.get("auto.leader.rebalance.enable")),
                                       int(str(self.config.get(
                                           "leader.imbalance.check.interval.seconds"))),
                                       int(str(self.config.get(
                                           "leader.imbalance.per.broker.percentage")))))
            configs = member.topic_configs
            topics = member.topics = ClusterTopicManager(
                ClusterTopicStore(cache, lambda name: configs.get(name, {})), replicas,
                node_id=cfg.node_id,
                racks=lambda: {b.id: b.rack for b in cache.live_brokers()}, **topic_settings)
            topics.on_create = member.create_in_background
        topics.start()
        groups = GroupCoordinator.for_broker(replicas, topics, cfg.get)
        groups.load()
        if member is not None:
            def on_leadership(topic: str, index: int, leader: bool) -> None:
                if topic == OFFSETS_TOPIC:
                    (groups.load_partition if leader else groups.unload_partition)(index)

            member.leadership_listeners.append(on_leadership)
        replicas.marker_listeners.append(groups.on_marker)
        producer_ids: ProducerIdManager | BlockProducerIdManager
        if zk is None:
            producer_ids = ProducerIdManager(store)
        else:
            producer_ids = BlockProducerIdManager(
                lambda: zk.allocate_producer_id_block(cfg.node_id, BLOCK_SIZE),
                self._spawn)
        transactions = TransactionCoordinator.for_broker(replicas, topics, cfg.get,
                                                         producer_ids.next_id)
        replicas.verify_transaction = transactions.verify_produce

        def verify_txn(txn_id: str, pid: int, epoch: int, tp: tuple[str, int]) -> ErrorCode:
            return transactions.verify(txn_id, pid, epoch, [tp])[tp]

        groups.verify_transaction = verify_txn
        transactions.load()  # after the groups: its markers may complete their offsets
        specs = all_handlers(cluster=zk is not None)
        if member is not None:
            # Transaction coordinators on every broker: markers between brokers, loading
            # with __transaction_state leadership, produce-time verification (KIP-890).
            from pykbroker.coordinator.transaction.cluster import join_cluster
            from pykbroker.handlers.transactions import verify_transactional_produce

            verifier = join_cluster(
                transactions, member, replicas, verification_enabled=lambda: bool(
                    self.config.get("transaction.partition.verification.enable")))
            groups.verify_transaction = verifier.check_code
            specs = [verify_transactional_produce(spec) if spec.api_key == ApiKey.PRODUCE
                     else spec for spec in specs]
        dispatch = DispatchTable(self.wrap_handler(spec) if self.wrap_handler else spec
                                 for spec in specs)
        advertised: dict[str, tuple[str, int]] = {}
        protocols = cfg.security_protocol_map

        def endpoints() -> list[Endpoint]:
            return [Endpoint(name, host, port, protocols.get(name, "PLAINTEXT"))
                    for name, (host, port) in advertised.items()]

        def leader_epoch(topic: str, index: int) -> int:
            part = replicas.partitions.get((topic, index))
            return part.leader_epoch if part is not None else 0

        services_box: list[BrokerServices] = []
        if member is not None:
            member.on_broker_configs = lambda own, defaults: services_box[0].\
                use_dynamic_broker_configs(own, defaults)
        metadata: MetadataView = LocalMetadataView(
            cfg.node_id, str(rack) if rack else None, endpoints, lambda: store.topics,
            leader_epoch) if member is None else member.cache
        services = BrokerServices(
            config=cfg, static_config=self.static_config, node_id=cfg.node_id,
            cluster_id=cluster_id, dispatch=dispatch, replicas=replicas, topics=topics,
            log_manager=log_manager, log_dirs=log_dirs, fetch_sessions=FetchSessionCache(),
            producer_ids=producer_ids, groups=groups, transactions=transactions,
            metadata=metadata, advertised=advertised, rack=str(rack) if rack else None,
            cluster=member,
        )
        services_box.append(services)
        return services

    async def serve(self, *, task_status: trio.TaskStatus[Broker] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        cfg = self.config
        zk: Any = None
        zk_cluster_id = None
        if cfg.zookeeper_connect:
            from pykbroker.cluster.broker_client import use_inter_broker_security
            from pykbroker.metadata.zk.cluster_store import ZkClusterStore
            from pykbroker.security.inter_broker import describe, inter_broker_client_security

            inter_broker = inter_broker_client_security(cfg)
            use_inter_broker_security(inter_broker)
            if inter_broker is not None:
                log.info("connecting to the other brokers over %s", describe(inter_broker))

            zk = await ZkClusterStore.connect(
                cfg.zookeeper_connect,
                session_timeout_ms=int(str(cfg.get("zookeeper.session.timeout.ms"))),
                connection_timeout_ms=int(str(cfg.get("zookeeper.connection.timeout.ms"))))
            zk_cluster_id = await zk.get_or_create_cluster_id(new_cluster_id())
            if cfg.node_id < 0:  # broker.id=-1: the id kept in meta.properties, or a new one
                from pykbroker.log.checkpoints import stored_broker_id

                broker_id = stored_broker_id([Path(d) for d in cfg.log_dirs])
                source = "meta.properties"
                if broker_id is None:
                    broker_id = await zk.generate_broker_id(
                        int(str(cfg.get("reserved.broker.max.id"))))
                    source = "generated from /brokers/seqid"
                log.info("broker.id=-1: using broker id %d (%s)", broker_id, source)
                cfg = self.config = self.static_config = cfg.with_generated_broker_id(broker_id)
        try:
            services = self._open_storage(zk, zk_cluster_id)
        except BaseException:
            if zk is not None:
                await zk.close()
            raise
        self.services = services
        binds = [BindAddress(lst.name, lst.host, lst.port, lst.security_protocol)
                 for lst in cfg.listeners]
        metrics: BrokerMetrics | None = None  # None: metrics.port=-1
        if cfg.metrics_port >= 0:
            from pykbroker.metrics import BrokerMetrics

            metrics = BrokerMetrics.for_broker(self)
        self.metrics = metrics
        if metrics is not None:
            services.replicas.append_listeners.append(metrics.on_append)
        self.server = NetworkServer(
            binds, dispatch=metrics.instrument(services.dispatch) if metrics is not None
            else services.dispatch, services=services,
            settings=ConnectionSettings(cfg.socket_request_max_bytes,
                                        cfg.connections_max_idle_ms / 1000.0),
            max_connections=cfg.max_connections,
            observer=metrics.observe_request if metrics is not None else None,
        )
        acl_store = None
        authorizer = self.server.security.authorizer
        if zk is not None:
            try:  # the cluster's ACLs and SCRAM credentials, loaded before any client
                if authorizer is not None:
                    acl_store = await authorizer.use_zookeeper(zk.client)
                credentials = self.server.security.credentials
                await credentials.use_zookeeper(zk)
                from pykbroker.quotas import load_cluster_quotas, reload_cluster_quota

                await load_cluster_quotas(services, zk)

                async def on_entity_change(kind: str, name: str) -> None:
                    if kind == "users":
                        await credentials.reload_user(name)
                    await reload_cluster_quota(services, zk, kind, name)

                if services.cluster is not None:
                    services.cluster.on_entity_config_change = on_entity_change
            except BaseException:
                await zk.close()
                raise
        try:
            async with trio.open_nursery() as nursery:
                if acl_store is not None:
                    await nursery.start(acl_store.run)
                if metrics is not None:
                    self.metrics_port = await nursery.start(metrics.serve)
                await nursery.start(services.groups.run)
                await nursery.start(services.transactions.run)
                await nursery.start(self.server.run)
                for adv in cfg.advertised_listeners:
                    port = adv.port or self.server.bound_ports.get(adv.name, 0)
                    services.advertised[adv.name] = (adv.host, port)
                self._nursery = nursery
                if services.cluster is not None:
                    assert isinstance(services.producer_ids, BlockProducerIdManager)
                    await services.producer_ids.start()
                    protocols = cfg.security_protocol_map
                    await services.cluster.start(nursery, [
                        Endpoint(name, host, port, protocols.get(name, "PLAINTEXT"))
                        for name, (host, port) in services.advertised.items()])
                    # Changes announced before the member followed /config/changes.
                    await self.server.security.credentials.use_zookeeper(zk)
                nursery.start_soon(self._housekeeping)
                self.log_cleaner = LogCleaner.for_broker(  # metrics read its figures
                    services.log_manager, services.replicas.partitions, cfg.get)
                await nursery.start(self.log_cleaner.run)
                self.ready.set()
                elapsed = (time.monotonic() - self.started_at) * 1000
                log.info("[KafkaServer id=%d] started (pykbroker %s) ready in %d ms",
                         cfg.node_id, __version__, elapsed)
                task_status.started(self)
                await self._stop.wait()
                log.info("[KafkaServer id=%d] shutting down", cfg.node_id)
                if services.cluster is not None and cfg.get("controlled.shutdown.enable"):
                    moved = await services.cluster.controlled_shutdown(
                        int(str(cfg.get("controlled.shutdown.max.retries"))),
                        int(str(cfg.get("controlled.shutdown.retry.backoff.ms"))) / 1000.0)
                    if not moved:
                        log.warning("[KafkaServer id=%d] controlled shutdown did not move "
                                    "every partition; proceeding", cfg.node_id)
                services.groups.shutdown()
                services.replicas.shutting_down = True
                for part in services.replicas.partitions.values():
                    part.wake()  # long-poll fetches answer now instead of at max_wait
                await self.server.shutdown(SHUTDOWN_GRACE_S)
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                if zk is not None:
                    await zk.close()  # our registration goes with the session
                services.log_manager.close()
                log.info("[KafkaServer id=%d] shut down completed", cfg.node_id)
                self.stopped.set()

    async def _housekeeping(self) -> None:
        """Periodic retention, time-based flushes and checkpoints."""
        assert self.services is not None
        services = self.services
        interval_ms = int(str(self.config.get("log.retention.check.interval.ms")
                              or RETENTION_CHECK_DEFAULT_MS))
        next_retention = trio.current_time() + interval_ms / 1000.0
        next_checkpoint = trio.current_time() + CHECKPOINT_INTERVAL_S
        while True:
            await trio.sleep(1.0)
            now = int(time.time() * 1000)
            for part in list(services.replicas.partitions.values()):
                part.log.flush_if_needed(now)
            if trio.current_time() >= next_retention:
                next_retention = trio.current_time() + interval_ms / 1000.0
                for part in list(services.replicas.partitions.values()):
                    if part.log.apply_retention(now):
                        part.wake()
                services.replicas.expire_producers(
                    now, int(str(self.config.get("producer.id.expiration.ms"))))
            if trio.current_time() >= next_checkpoint:
                next_checkpoint = trio.current_time() + CHECKPOINT_INTERVAL_S
                services.log_manager.checkpoint()
