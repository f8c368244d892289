"""What the metrics read from the broker, as protocols: broker.py creates and wires the
metrics, so it is the only one of the two that imports the other."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import trio

    from pykbroker.cluster.replica_manager import ReplicaManager
    from pykbroker.cluster.topic_manager import TopicManager
    from pykbroker.config import BrokerConfig
    from pykbroker.coordinator.group import GroupCoordinator
    from pykbroker.server.listener import NetworkServer


class ObservedControllerContext(Protocol):
    """What the controller metrics read from the active controller's context
    (pykbroker.controller.context.ControllerContext)."""

    @property
    def topics(self) -> Mapping[str, Any]: ...

    def partitions(self) -> Iterator[tuple[str, int, Any, Any]]: ...

    def offline_partitions(self) -> list[tuple[str, int]]: ...

    def online(self) -> set[int]: ...


class ObservedController(Protocol):
    """A cluster member's controller elector (pykbroker.controller.controller.ZkController)."""

    @property
    def active(self) -> bool: ...

    @property
    def ctx(self) -> ObservedControllerContext: ...


class ObservedMetadataCache(Protocol):
    """The member's view of the controller's UpdateMetadata (its MetadataCache)."""

    @property
    def controller_epoch(self) -> int: ...  # -1 before the first UpdateMetadata


class ObservedCluster(Protocol):
    """A ZooKeeper cluster member (pykbroker.cluster.member.ClusterMember)."""

    @property
    def controller(self) -> ObservedController: ...

    @property
    def cache(self) -> ObservedMetadataCache: ...


class ObservedServices(Protocol):
    """The subsystems whose state the collector reads (BrokerServices has them)."""

    @property
    def replicas(self) -> ReplicaManager: ...

    @property
    def topics(self) -> TopicManager: ...

    @property
    def groups(self) -> GroupCoordinator: ...

    @property
    def cluster(self) -> ObservedCluster | None: ...


class ObservedLogCleaner(Protocol):
    """The broker's log cleaner (pykbroker.log.log_cleaner.LogCleaner), which ``Broker.serve``
    sets as ``broker.log_cleaner`` once the logs are loaded."""

    @property
    def max_clean_time_secs(self) -> float: ...

    @property
    def cleaner_recopy_percent(self) -> float: ...

    @property
    def max_dirty_percent(self) -> float: ...


class ObservedBroker(Protocol):
    """What the metrics read from the broker (Broker has it). A protocol, so that broker.py,
    which creates and wires the metrics, is the only one of the two importing the other."""

    @property
    def config(self) -> BrokerConfig: ...

    @property
    def services(self) -> ObservedServices | None: ...

    @property
    def server(self) -> NetworkServer | None: ...

    @property
    def ready(self) -> trio.Event: ...

    @property
    def stopped(self) -> trio.Event: ...

    @property
    def started_at(self) -> float: ...
