"""Kafka's ZooKeeper-mode controller: one broker, elected through ``/controller``, decides.

Every broker runs :class:`ZkController`; the one that creates the ephemeral ``/controller``
znode (bumping ``/controller_epoch`` in the same ZooKeeper transaction) becomes active. The
active controller loads the cluster from ZooKeeper, watches broker registrations, topics and
deletion markers, elects partition leaders, writes partition states with conditional versions
fenced by its epoch, and tells brokers with LeaderAndIsr, UpdateMetadata and StopReplica.

All changes run on one task, one event at a time (Kafka's ControllerEventManager): ZooKeeper
watches and broker requests only queue events, so decisions never interleave. When the
controller loses its session or finds its epoch fenced it resigns and the election starts
over; another broker's controller finishes whatever was in flight from ZooKeeper's state.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import trio

from pykbroker.cluster.metadata_cache import Endpoint, LiveBroker
from pykbroker.controller import leader_election as election
from pykbroker.controller.channel import ControllerChannel
from pykbroker.controller.context import ControllerContext, PartitionRecord, TopicRecord
from pykbroker.controller.leader_election import NO_LEADER, LeaderAndIsr
from pykbroker.controller.requests import (
    PartitionInfo,
    leader_and_isr,
    stop_replica,
    update_metadata,
)
from pykbroker.error_codes import ErrorCode
from pykbroker.protocol.api import ApiKey

log = logging.getLogger("pykbroker.controller")

TopicPartition = tuple[str, int]
RETRY_BACKOFF_S = 0.5  # after a failed event, before trying the election again


# -- events ----------------------------------------------------------------------------------

@dataclass(slots=True)
class ControllerChange:
    """``/controller`` was created, changed or deleted (or a session came back)."""


@dataclass(slots=True)
class Resign:
    """The ZooKeeper session expired: whatever this broker held is gone."""


@dataclass(slots=True)
class BrokerChange:
    pass


@dataclass(slots=True)
class TopicChange:
    pass


@dataclass(slots=True)
class PartitionModification:
    topic: str


@dataclass(slots=True)
class TopicDeletion:
    pass


@dataclass(slots=True)
class ControlledShutdown:
    broker_id: int
    broker_epoch: int
    done: trio.Event = field(default_factory=trio.Event)
    error: ErrorCode = ErrorCode.NONE
    remaining: list[TopicPartition] = field(default_factory=list)


@dataclass(slots=True)
class ElectLeaders:
    """ElectLeaders from an admin client (or the auto-rebalance timer): PREFERRED (0) or
    UNCLEAN (1) election for the given partitions, None meaning all."""

    election_type: int
    partitions: list[TopicPartition] | None
    done: trio.Event = field(default_factory=trio.Event)
    results: dict[TopicPartition, tuple[ErrorCode, str | None]] = field(default_factory=dict)


@dataclass(slots=True)
class TopicConfigChange:
    """A topic's configs changed: unclean.leader.election.enable may now allow elections."""

    topic: str
    configs: dict[str, str]


@dataclass(slots=True)
class AutoRebalance:
    """``auto.leader.rebalance.enable``: move leadership back to preferred replicas."""

    imbalance_ratio: float


@dataclass(slots=True)
class AlterPartition:
    """A leader's ISR change (AlterPartition v2+: topics by id)."""

    broker_id: int
    broker_epoch: int
    changes: list[tuple[uuid.UUID, str | None, int, int, list[int], int, int]]
    done: trio.Event = field(default_factory=trio.Event)
    error: ErrorCode = ErrorCode.NONE
    # (topic id, topic name, partition) -> (error, state after the change)
    results: dict[tuple[uuid.UUID, str | None, int], tuple[ErrorCode, LeaderAndIsr | None]] = \
        field(default_factory=dict)


@dataclass(slots=True)
class Reassign:
    """AlterPartitionReassignments: target replicas per partition, None to cancel."""

    partitions: dict[TopicPartition, list[int] | None]
    done: trio.Event = field(default_factory=trio.Event)
    results: dict[TopicPartition, tuple[ErrorCode, str | None]] = field(default_factory=dict)


PREFERRED, UNCLEAN = 0, 1

Event = (ControllerChange | Resign | BrokerChange | TopicChange | PartitionModification
         | TopicDeletion | ControlledShutdown | ElectLeaders | AutoRebalance | AlterPartition
         | Reassign | TopicConfigChange)


class ControllerMoved(Exception):
    """A write found another controller's epoch: resign."""


def _unclean_override(configs: dict[str, str]) -> bool | None:
    value = configs.get("unclean.leader.election.enable")
    return None if value is None else value.strip().lower() == "true"


def live_broker(broker_id: int, registration: Any) -> LiveBroker:
    """Our view of a ``/brokers/ids/N`` registration."""
    return LiveBroker(broker_id, tuple(
        Endpoint(ep.listener_name, ep.host or "", ep.port, ep.security_protocol)
        for ep in registration.endpoints), registration.rack)


class ZkController:
    """The controller elector and, while elected, the controller itself."""

    def __init__(self, zk: Any, broker_id: int, inter_broker_listener: str, *,
                 delete_topic_enable: Callable[[], bool],
                 leader_rebalance: Callable[[], tuple[bool, int, int]] = lambda: (False, 300, 10),
                 unclean_default: Callable[[], bool] = lambda: False,
                 on_controller_change: Callable[[int], None] | None = None) -> None:
        """``leader_rebalance`` gives ``auto.leader.rebalance.enable``,
        ``leader.imbalance.check.interval.seconds`` and
        ``leader.imbalance.per.broker.percentage``."""
        self.zk = zk
        self.broker_id = broker_id
        self.listener = inter_broker_listener
        self.delete_topic_enable = delete_topic_enable
        self.on_controller_change = on_controller_change
        self.leader_rebalance = leader_rebalance
        self.unclean_default = unclean_default
        self.active = False
        self.controller_id = -1
        self.ctx = ControllerContext()
        self._send, self._receive = trio.open_memory_channel[Event](10_000)
        self._watches: list[Any] = []
        self._topic_watches: dict[str, Any] = {}
        self._channel: ControllerChannel | None = None
        self._nursery: trio.Nursery | None = None
        self._active_scope: trio.CancelScope | None = None

    # -- queueing (watch callbacks and request handlers; never blocks) --------------------

    def put(self, event: Event) -> None:
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:  # pragma: no cover - 10,000 queued events: ZooKeeper storm
            log.error("controller event queue full; dropping %s", type(event).__name__)

    async def controlled_shutdown(self, broker_id: int, broker_epoch: int
                                  ) -> tuple[ErrorCode, list[TopicPartition]]:
        """ControlledShutdown on the controller: move leadership off ``broker_id``."""
        if not self.active:
            return ErrorCode.NOT_CONTROLLER, []
        event = ControlledShutdown(broker_id, broker_epoch)
        self.put(event)
        await event.done.wait()
        return event.error, event.remaining

    async def elect_leaders(self, election_type: int, partitions: list[TopicPartition] | None
                            ) -> dict[TopicPartition, tuple[ErrorCode, str | None]] | None:
        """ElectLeaders on the controller; None when this broker is not the controller."""
        if not self.active:
            return None
        event = ElectLeaders(election_type, partitions)
        self.put(event)
        await event.done.wait()
        return event.results if self.active or event.results else None

    async def reassign(self, partitions: dict[TopicPartition, list[int] | None]
                       ) -> dict[TopicPartition, tuple[ErrorCode, str | None]] | None:
        """AlterPartitionReassignments on the controller; None elsewhere."""
        if not self.active:
            return None
        event = Reassign(partitions)
        self.put(event)
        await event.done.wait()
        return event.results

    def ongoing_reassignments(self) -> dict[TopicPartition, tuple[tuple[int, ...], ...]] | None:
        """ListPartitionReassignments: (replicas, adding, removing) per partition moving."""
        if not self.active:
            return None
        return {(n, i): (r.replicas, r.adding, r.removing)
                for n, i, _, r in self.ctx.partitions() if r.reassigning}

    async def alter_partition(self, event: AlterPartition) -> AlterPartition:
        """AlterPartition on the controller: NOT_CONTROLLER elsewhere."""
        if not self.active:
            event.error = ErrorCode.NOT_CONTROLLER
            return event
        self.put(event)
        await event.done.wait()
        return event

    # -- the event loop -----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._watches.append(
                await self.zk.watch_controller(lambda *_: self.put(ControllerChange())))
            self.zk.on_session_expired(lambda: self.put(Resign()))
            task_status.started()
            async for event in self._receive:
                try:
                    await self._process(event)
                except ControllerMoved:
                    log.info("[Controller id=%d] fenced by a newer controller; resigning",
                             self.broker_id)
                    await self._resign()
                    self.put(ControllerChange())
                except Exception:
                    log.exception("[Controller id=%d] failed processing %s", self.broker_id,
                                  type(event).__name__)
                    if self.active:  # state may be half-applied: start over from ZooKeeper
                        await self._resign()
                        try:
                            await self.zk.delete_controller_if_ours(self.broker_id)
                        except Exception:
                            log.exception("[Controller id=%d] could not resign in ZooKeeper",
                                          self.broker_id)
                    await trio.sleep(RETRY_BACKOFF_S)
                    self.put(ControllerChange())
                finally:
                    if isinstance(event, ControlledShutdown | ElectLeaders | AlterPartition
                                  | Reassign):
                        event.done.set()

    async def _process(self, event: Event) -> None:
        if isinstance(event, ControllerChange):
            await self._elect()
        elif isinstance(event, Resign):
            await self._resign()
        elif not self.active:
            if isinstance(event, ControlledShutdown | AlterPartition):
                event.error = ErrorCode.NOT_CONTROLLER
        elif isinstance(event, BrokerChange):
            await self._on_broker_change()
        elif isinstance(event, TopicChange):
            await self._on_topic_change()
        elif isinstance(event, PartitionModification):
            await self._on_partition_modification(event.topic)
        elif isinstance(event, TopicDeletion):
            await self._on_topic_deletion()
        elif isinstance(event, ControlledShutdown):
            await self._on_controlled_shutdown(event)
        elif isinstance(event, ElectLeaders):
            await self._on_elect_leaders(event)
        elif isinstance(event, AutoRebalance):
            await self._on_auto_rebalance(event.imbalance_ratio)
        elif isinstance(event, AlterPartition):
            await self._on_alter_partition(event)
        elif isinstance(event, Reassign):
            await self._on_reassign(event)
        elif isinstance(event, TopicConfigChange):
            topic = self.ctx.topics.get(event.topic)
            if topic is not None:
                topic.unclean_override = _unclean_override(event.configs)
                if await self._elect_offline_partitions():
                    self._send_update_metadata(self.ctx.live)  # clients learn the leader

    # -- election -----------------------------------------------------------------------------

    async def _elect(self) -> None:
        current = await self.zk.get_controller_id()
        if current is None:
            epoch = await self.zk.try_become_controller(self.broker_id)
            current = self.broker_id if epoch is not None else await self.zk.get_controller_id()
            if epoch is not None:
                self._set_controller(self.broker_id)
                await self._on_become_controller(epoch)
                return
        if self.active and current != self.broker_id:
            await self._resign()
        self._set_controller(-1 if current is None else current)

    def _set_controller(self, controller_id: int) -> None:
        if controller_id != self.controller_id:
            self.controller_id = controller_id
            if self.on_controller_change is not None:
                self.on_controller_change(controller_id)

    async def _resign(self) -> None:
        if not self.active:
            return
        log.info("[Controller id=%d] resigning (epoch %d)", self.broker_id, self.ctx.epoch)
        self.active = False
        for handle in [*self._watches[1:], *self._topic_watches.values()]:
            handle.cancel()
        del self._watches[1:]
        self._topic_watches.clear()
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._active_scope is not None:
            self._active_scope.cancel()
            self._active_scope = None
        self.ctx = ControllerContext()

    async def _on_become_controller(self, epoch: int) -> None:
        """Kafka's onControllerFailover: load, watch, then bring every partition online."""
        log.info("[Controller id=%d] became the controller (epoch %d)", self.broker_id, epoch)
        self.active = True
        self.ctx = ControllerContext(epoch=epoch)
        assert self._nursery is not None
        scope = trio.CancelScope()
        self._active_scope = scope
        channel_ready = trio.Event()

        async def channel_host(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                               ) -> None:
            with scope:
                async with trio.open_nursery() as nursery:
                    self._channel = ControllerChannel(nursery, self.listener, self.broker_id)
                    channel_ready.set()
                    task_status.started()
                    await self._rebalance_timer()

        await self._nursery.start(channel_host)
        await channel_ready.wait()
        self._watches.append(await self.zk.watch_brokers(lambda *_: self.put(BrokerChange())))
        self._watches.append(await self.zk.watch_topics(lambda *_: self.put(TopicChange())))
        self._watches.append(
            await self.zk.watch_deletions(lambda *_: self.put(TopicDeletion())))
        await self._load_brokers()
        for name in await self.zk.get_all_topics():
            await self._load_topic(name)
        self._send_update_metadata(self.ctx.live)
        await self._initialize_new_partitions(
            [(n, i) for n, i, _, r in self.ctx.partitions() if r.state is None])
        # Replicas on brokers that died before this controller took over (its predecessor
        # among them) leave the ISRs now, as Kafka's replica state machine does at start.
        dead = {r for _, _, _, rec in self.ctx.partitions() if rec.state is not None
                for r in (*rec.state.isr, rec.state.leader) if r >= 0 and r not in self.ctx.live}
        await self._offline_replicas(dead)
        await self._elect_offline_partitions()
        # Every replica learns the state this controller starts from.
        self._send_leader_and_isr(self.ctx.all_infos(), set())
        self._send_update_metadata(self.ctx.live)
        await self._on_topic_deletion()
        for name, index, _, record in list(self.ctx.partitions()):
            if record.reassigning:  # left by the previous controller: finish it
                await self._maybe_complete_reassignment(name, index)

    async def _rebalance_timer(self) -> None:
        """Queue an auto leader rebalance every check interval while this is the controller."""
        while True:
            enabled, interval_s, percentage = self.leader_rebalance()
            await trio.sleep(max(interval_s, 1))
            if enabled:
                self.put(AutoRebalance(percentage / 100.0))

    def _unclean(self, topic: TopicRecord) -> bool:
        """The topic's unclean.leader.election.enable, else the brokers' default."""
        if topic.unclean_override is not None:
            return topic.unclean_override
        return self.unclean_default()

    # -- loading ------------------------------------------------------------------------------

    async def _load_brokers(self) -> tuple[set[int], set[int]]:
        """Refresh live brokers from ZooKeeper; returns (new or bounced, dead or bounced)."""
        current = await self.zk.get_all_brokers()
        ctx = self.ctx
        started = {b for b, (_, ep) in current.items() if ctx.broker_epochs.get(b) != ep}
        gone = {b for b in ctx.live if b not in current or b in started}
        for broker_id in gone:
            ctx.live.pop(broker_id, None)
            ctx.broker_epochs.pop(broker_id, None)
            ctx.shutting_down.discard(broker_id)
            if self._channel is not None:
                self._channel.remove_broker(broker_id)
        for broker_id in started:
            registration, broker_epoch = current[broker_id]
            ctx.live[broker_id] = live_broker(broker_id, registration)
            ctx.broker_epochs[broker_id] = broker_epoch
            if self._channel is not None:
                self._channel.add_broker(ctx.live[broker_id])
        return started, gone

    async def _load_topic(self, name: str) -> list[int]:
        """Read a topic's assignment and states; returns partitions new to the context."""
        assignment = await self.zk.get_topic(name)
        if assignment is None:
            return []
        topic = self.ctx.topics.get(name)
        if topic is None:
            topic_id = assignment.topic_id
            if topic_id is None:  # written by an old tool: give it one, as Kafka does
                topic_id = uuid.uuid4()
                await self.zk.set_topic_id(name, assignment, topic_id)
            configs = await self.zk.get_topic_config(name)
            topic = self.ctx.topics[name] = TopicRecord(
                topic_id, unclean_override=_unclean_override(configs))
            self._topic_watches[name] = await self.zk.watch_topic(
                name, lambda *_: self.put(PartitionModification(name)))
        states = await self.zk.get_partition_states(name)
        added = []
        for index, replica_assignment in assignment.partitions.items():
            if index in topic.partitions:
                continue
            record = topic.partitions[index] = PartitionRecord(
                tuple(replica_assignment.replicas), adding=tuple(replica_assignment.adding_replicas),
                removing=tuple(replica_assignment.removing_replicas))
            found = states.get(index)
            if found is not None:
                znode, version = found
                record.state = LeaderAndIsr(znode.leader, znode.leader_epoch, tuple(znode.isr),
                                            version, znode.leader_recovery_state)
                record.controller_epoch = znode.controller_epoch
            added.append(index)
        return added

    # -- writing states -----------------------------------------------------------------------

    async def _write_states(self, changes: dict[TopicPartition, LeaderAndIsr], *,
                            create: bool) -> list[TopicPartition]:
        """Persist new states (fenced by our epoch); returns the partitions written."""
        if not changes:
            return []
        result = await self.zk.write_partition_states(changes, self.ctx.epoch, create=create)
        if result is None:
            raise ControllerMoved()
        written = []
        for tp, version in result.items():
            if version is None:
                log.warning("[Controller id=%d] state of %s-%d changed under us; reloading",
                            self.broker_id, *tp)
                continue
            record = self.ctx.topics[tp[0]].partitions[tp[1]]
            record.state = changes[tp].with_partition_epoch(version)
            record.controller_epoch = self.ctx.epoch
            written.append(tp)
        return written

    # -- telling brokers ----------------------------------------------------------------------

    def _send_leader_and_isr(self, infos: Iterable[PartitionInfo],
                             is_new: set[TopicPartition]) -> None:
        by_broker: dict[int, list[PartitionInfo]] = {}
        for info in infos:
            for replica in info.replicas:
                if replica in self.ctx.live:
                    by_broker.setdefault(replica, []).append(info)
        assert self._channel is not None
        for broker_id, parts in by_broker.items():
            request = leader_and_isr(self.broker_id, self.ctx.epoch,
                                     self.ctx.broker_epochs.get(broker_id, -1), parts, is_new,
                                     self.ctx.live, self.listener)
            self._channel.send(broker_id, ApiKey.LEADER_AND_ISR, request)

    def _send_update_metadata(self, brokers: Iterable[int],
                              deleting: Iterable[PartitionInfo] = ()) -> None:
        infos = self.ctx.all_infos()
        deleting = list(deleting)
        assert self._channel is not None
        for broker_id in brokers:
            request = update_metadata(self.broker_id, self.ctx.epoch,
                                      self.ctx.broker_epochs.get(broker_id, -1), infos,
                                      self.ctx.live, deleting)
            self._channel.send(broker_id, ApiKey.UPDATE_METADATA, request)

    def _changed(self, written: Iterable[TopicPartition]) -> list[PartitionInfo]:
        return [info for tp in written if (info := self.ctx.info(*tp)) is not None]

    # -- partition state machine -----------------------------------------------------------

    async def _initialize_new_partitions(self, parts: list[TopicPartition]) -> None:
        """NewPartition -> OnlinePartition: first live replica leads, ISR = live replicas."""
        online = self.ctx.online()
        changes = {}
        for name, index in parts:
            record = self.ctx.topics[name].partitions[index]
            state = election.initialize_leader_and_isr(record.replicas, online)
            if state is None:
                log.warning("[Controller id=%d] no live replica for new partition %s-%d "
                            "(replicas %s)", self.broker_id, name, index, record.replicas)
                continue
            changes[(name, index)] = state
        written = await self._write_states(changes, create=True)
        self._send_leader_and_isr(self._changed(written), set(written))

    async def _elect_offline_partitions(self) -> list[TopicPartition]:
        """OfflinePartition -> OnlinePartition, leaders from the ISR (unclean if allowed)."""
        online = self.ctx.online()
        changes = {}
        new = []
        for name, index in self.ctx.offline_partitions():
            topic = self.ctx.topics[name]
            record = topic.partitions[index]
            if record.state is None:
                new.append((name, index))
                continue
            leader, isr, unclean = election.offline(
                record.replicas, record.state.isr, online, self._unclean(topic))
            if leader is None:
                continue
            if unclean:
                log.warning("[Controller id=%d] unclean leader election for %s-%d: %d leads "
                            "without being in the ISR %s; data may be lost", self.broker_id,
                            name, index, leader, list(record.state.isr))
            changes[(name, index)] = record.state.new_leader(leader, isr, recovering=unclean)
        if new:
            await self._initialize_new_partitions(new)
        written = await self._write_states(changes, create=False)
        self._send_leader_and_isr(self._changed(written), set())
        return written

    # -- brokers ------------------------------------------------------------------------------

    async def _on_broker_change(self) -> None:
        started, gone = await self._load_brokers()
        if not started and not gone:
            return
        log.info("[Controller id=%d] brokers started %s, gone %s; live %s", self.broker_id,
                 sorted(started), sorted(gone), sorted(self.ctx.live))
        written = await self._offline_replicas(gone)
        self._send_update_metadata(self.ctx.live)
        self._send_leader_and_isr(self._changed(written), set())
        if started:
            self._send_leader_and_isr(
                [info for info in self.ctx.all_infos() if set(info.replicas) & started], set())
        await self._elect_offline_partitions()
        self._send_update_metadata(self.ctx.live)

    async def _offline_replicas(self, gone: set[int]) -> list[TopicPartition]:
        """Kafka's onReplicasBecomeOffline: partitions led by a dead broker get a leader
        from the ISR, and dead replicas leave every ISR (the leader epoch moves with each
        change, as the controller's are). Returns the partitions rewritten."""
        changes: dict[TopicPartition, LeaderAndIsr] = {}
        online = self.ctx.online() - gone  # a bounced broker leads again only once restarted
        if not gone:
            return []
        for name, index, topic, record in self.ctx.partitions():
            state = record.state
            if state is None or not (set(record.replicas) & gone):
                continue
            if state.leader in gone:
                leader, isr, unclean = election.offline(
                    record.replicas, state.isr, online, self._unclean(topic))
                if leader is not None:
                    state = state.new_leader(leader, isr, recovering=unclean)
            for replica in sorted(gone):
                if replica in state.isr or replica == state.leader:
                    state = state.remove_replica_from_isr(replica)
            if state != record.state:
                changes[(name, index)] = state
        return await self._write_states(changes, create=False)

    # -- topics -------------------------------------------------------------------------------

    async def _on_topic_change(self) -> None:
        names = set(await self.zk.get_all_topics())
        added: list[TopicPartition] = []
        for name in sorted(names - set(self.ctx.topics)):
            added += [(name, index) for index in await self._load_topic(name)]
        for name in sorted(set(self.ctx.topics) - names):  # removed behind our back
            self._forget_topic(name)
        if added:
            log.info("[Controller id=%d] new partitions %s", self.broker_id, added)
            await self._initialize_new_partitions(added)
            self._send_update_metadata(self.ctx.live)

    async def _on_partition_modification(self, name: str) -> None:
        if name not in self.ctx.topics:
            return
        added = [(name, index) for index in await self._load_topic(name)]
        if added:
            log.info("[Controller id=%d] partitions added to %s: %s", self.broker_id, name,
                     [i for _, i in added])
            await self._initialize_new_partitions(added)
            self._send_update_metadata(self.ctx.live)

    def _forget_topic(self, name: str) -> None:
        self.ctx.topics.pop(name, None)
        handle = self._topic_watches.pop(name, None)
        if handle is not None:
            handle.cancel()

    async def _on_topic_deletion(self) -> None:
        marked = await self.zk.get_topics_marked_for_deletion()
        if not marked:
            return
        if not self.delete_topic_enable():
            log.info("[Controller id=%d] delete.topic.enable=false: dropping deletion "
                     "markers %s", self.broker_id, marked)
            await self.zk.remove_deletion_markers(marked)
            return
        assert self._channel is not None
        for name in marked:
            infos = [i for i in self.ctx.all_infos() if i.topic == name]
            by_broker: dict[int, list[tuple[str, int, int]]] = {}
            for info in infos:
                for replica in info.replicas:
                    by_broker.setdefault(replica, []).append(
                        (name, info.index, info.state.leader_epoch))
            for broker_id, parts in by_broker.items():
                if broker_id in self.ctx.live:
                    self._channel.send(broker_id, ApiKey.STOP_REPLICA, stop_replica(
                        self.broker_id, self.ctx.epoch, self.ctx.broker_epochs[broker_id],
                        parts, delete=True))
            self._forget_topic(name)
            self._send_update_metadata(self.ctx.live, deleting=infos)
            await self.zk.delete_topic(name)
            log.info("[Controller id=%d] deleted topic %s", self.broker_id, name)

    # -- controlled shutdown ------------------------------------------------------------------

    async def _on_controlled_shutdown(self, event: ControlledShutdown) -> None:
        ctx = self.ctx
        broker_id = event.broker_id
        if broker_id not in ctx.live:
            event.error = ErrorCode.BROKER_NOT_AVAILABLE
            return
        if event.broker_epoch != -1 and event.broker_epoch < ctx.broker_epochs[broker_id]:
            event.error = ErrorCode.STALE_BROKER_EPOCH
            return
        ctx.shutting_down.add(broker_id)
        online = ctx.online()
        changes = {}
        for name, index, _, record in ctx.partitions():
            state = record.state
            if state is None or broker_id not in record.replicas:
                continue
            if state.leader == broker_id:
                leader, isr = election.controlled_shutdown(
                    record.replicas, state.isr, online, ctx.shutting_down)
                if leader is not None:
                    changes[(name, index)] = state.new_leader(leader, isr)
            elif broker_id in state.isr:
                changes[(name, index)] = state.remove_replica_from_isr(broker_id)
        written = await self._write_states(changes, create=False)
        self._send_leader_and_isr(self._changed(written), set())
        self._send_update_metadata(ctx.live)
        event.remaining = [(n, i) for n, i, _, r in ctx.partitions()
                           if r.state is not None and r.state.leader == broker_id]
        log.info("[Controller id=%d] controlled shutdown of broker %d: %d partitions moved, "
                 "%d remaining", self.broker_id, broker_id, len(written), len(event.remaining))


    # -- leader elections on request ----------------------------------------------------------

    async def _on_elect_leaders(self, event: ElectLeaders) -> None:
        """Kafka's onReplicaElection for an admin request: per partition NONE (moved),
        ELECTION_NOT_NEEDED, PREFERRED_LEADER_NOT_AVAILABLE / ELIGIBLE_LEADERS_NOT_AVAILABLE,
        or UNKNOWN_TOPIC_OR_PARTITION; asking for all partitions reports only real moves."""
        ctx = self.ctx
        wanted = event.partitions
        if wanted is None:
            wanted = [(n, i) for n, i, _, _ in ctx.partitions()]
        online = ctx.online()
        changes: dict[TopicPartition, LeaderAndIsr] = {}
        results = event.results
        for name, index in wanted:
            topic = ctx.topics.get(name)
            record = topic.partitions.get(index) if topic is not None else None
            if record is None or record.state is None:
                results[(name, index)] = (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                          "The partition does not exist.")
                continue
            state = record.state
            if event.election_type == PREFERRED:
                if state.leader == record.replicas[0]:
                    results[(name, index)] = (ErrorCode.ELECTION_NOT_NEEDED, None)
                    continue
                leader, isr = election.preferred(record.replicas, state.isr, online)
                if leader is None:
                    results[(name, index)] = (
                        ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE,
                        f"Failed to elect leader for partition {name}-{index} under strategy "
                        "PreferredReplicaPartitionLeaderElectionStrategy")
                    continue
                changes[(name, index)] = state.new_leader(leader, isr)
            else:
                if state.leader != NO_LEADER and state.leader in online:
                    results[(name, index)] = (ErrorCode.ELECTION_NOT_NEEDED, None)
                    continue
                leader, isr, unclean = election.offline(record.replicas, state.isr, online, True)
                if leader is None:
                    results[(name, index)] = (
                        ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE,
                        f"Failed to elect leader for partition {name}-{index} under strategy "
                        "OfflinePartitionLeaderElectionStrategy")
                    continue
                changes[(name, index)] = state.new_leader(leader, isr, recovering=unclean)
        written = await self._write_states(changes, create=False)
        for tp in changes:
            results[tp] = (ErrorCode.NONE, None) if tp in written else (
                ErrorCode.UNKNOWN_SERVER_ERROR, "the partition state changed concurrently")
        if event.partitions is None:
            for tp in [tp for tp, (code, _) in results.items()
                       if code == ErrorCode.ELECTION_NOT_NEEDED]:
                del results[tp]
        self._send_leader_and_isr(self._changed(written), set())
        self._send_update_metadata(ctx.live)

    async def _on_alter_partition(self, event: AlterPartition) -> None:
        """Kafka's processAlterPartition: the leader's new ISR is written if the leader and
        partition epochs it saw are current and every new member is a live replica; only
        the partition epoch moves. Every broker then hears of it (UpdateMetadata)."""
        ctx = self.ctx
        if event.broker_id not in ctx.live:
            event.error = ErrorCode.STALE_BROKER_EPOCH
            return
        if event.broker_epoch != -1 and event.broker_epoch != ctx.broker_epochs[event.broker_id]:
            event.error = ErrorCode.STALE_BROKER_EPOCH
            return
        by_id = {t.topic_id: name for name, t in ctx.topics.items()}
        online = ctx.online()
        changes: dict[TopicPartition, LeaderAndIsr] = {}
        keys: dict[TopicPartition, tuple[uuid.UUID, str | None, int]] = {}
        for topic_id, topic_name, index, leader_epoch, new_isr, recovery, epoch in \
                event.changes:
            key = (topic_id, topic_name, index)
            name = topic_name if topic_name is not None else by_id.get(topic_id)
            record = ctx.topics[name].partitions.get(index) \
                if name is not None and name in ctx.topics else None
            if record is None or record.state is None:
                event.results[key] = (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None)
                continue
            state = record.state
            if state.leader != event.broker_id:
                event.results[key] = (ErrorCode.NOT_LEADER_OR_FOLLOWER, None)
            elif leader_epoch < state.leader_epoch:
                event.results[key] = (ErrorCode.FENCED_LEADER_EPOCH, None)
            elif leader_epoch > state.leader_epoch:
                event.results[key] = (ErrorCode.NOT_CONTROLLER, None)
            elif epoch != state.partition_epoch:
                if sorted(new_isr) == sorted(state.isr):  # a retry of what is already true
                    event.results[key] = (ErrorCode.NONE, state)
                else:
                    event.results[key] = (ErrorCode.INVALID_UPDATE_VERSION, None)
            elif any(r not in record.replicas or (r not in online and r not in state.isr)
                     for r in new_isr):
                event.results[key] = (ErrorCode.INELIGIBLE_REPLICA, None)
            else:
                assert name is not None
                changes[(name, index)] = state.new_isr(new_isr, recovery)
                keys[(name, index)] = key
        written = await self._write_states(changes, create=False)
        for tp, key in keys.items():
            if tp in written:
                event.results[key] = (ErrorCode.NONE,
                                      ctx.topics[tp[0]].partitions[tp[1]].state)
            else:
                event.results[key] = (ErrorCode.INVALID_UPDATE_VERSION, None)
        if written:
            self._send_update_metadata(ctx.live)
            for tp in written:
                await self._maybe_complete_reassignment(*tp)

    # -- partition reassignment (KIP-455) --------------------------------------------------

    async def _on_reassign(self, event: Reassign) -> None:
        """Phase A of Kafka's reassignment: replicas become target + original (the topic
        znode records adding/removing), new replicas start fetching; completion follows
        once every target replica is in the ISR."""
        ctx = self.ctx
        changed: dict[str, list[int]] = {}
        for (name, index), target in event.partitions.items():
            topic = ctx.topics.get(name)
            record = topic.partitions.get(index) if topic is not None else None
            if record is None or record.state is None:
                event.results[(name, index)] = (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                                "The partition does not exist.")
                continue
            if target is None:
                if not record.reassigning:
                    event.results[(name, index)] = (ErrorCode.NO_REASSIGNMENT_IN_PROGRESS,
                                                    None)
                    continue
                target = list(record.original)
            elif not target or len(set(target)) != len(target):
                event.results[(name, index)] = (ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                                "Empty or duplicate replicas in the target")
                continue
            elif any(r not in ctx.live for r in target):
                event.results[(name, index)] = (
                    ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    f"Unknown broker(s) in the target {sorted(set(target) - set(ctx.live))}")
                continue
            original = record.original
            full = tuple(dict.fromkeys([*target, *original]))
            record.replicas = full
            record.adding = tuple(r for r in target if r not in original)
            record.removing = tuple(r for r in original if r not in target)
            if not record.adding and not record.removing:
                record.replicas = tuple(target)
            changed.setdefault(name, []).append(index)
            event.results[(name, index)] = (ErrorCode.NONE, None)
        for name, indexes in changed.items():
            await self._write_assignment(name)
            infos = [i for i in (ctx.info(name, x) for x in indexes) if i is not None]
            self._send_leader_and_isr(infos, set())
            for index in indexes:
                log.info("[Controller id=%d] reassigning %s-%d to %s (replicas now %s)",
                         self.broker_id, name, index,
                         list(ctx.topics[name].partitions[index].target),
                         list(ctx.topics[name].partitions[index].replicas))
        if changed:
            self._send_update_metadata(ctx.live)
        for name, indexes in changed.items():
            for index in indexes:
                await self._maybe_complete_reassignment(name, index)

    async def _write_assignment(self, name: str) -> None:
        topic = self.ctx.topics[name]
        await self.zk.set_assignment(name, topic.topic_id, {
            index: (r.replicas, r.adding, r.removing) for index, r in topic.partitions.items()})

    async def _maybe_complete_reassignment(self, name: str, index: int) -> None:
        """Phase B: every target replica is in the ISR; lead from the target, drop the
        others (StopReplica with deletion) and record the target as the replicas."""
        ctx = self.ctx
        topic = ctx.topics.get(name)
        record = topic.partitions.get(index) if topic is not None else None
        if record is None or record.state is None or not record.reassigning:
            return
        target = record.target
        state = record.state
        if not all(r in state.isr for r in target):
            return
        removed = record.removing
        isr = [r for r in state.isr if r in target]
        if state.leader in target and state.leader in ctx.online():
            new_state = state.new_leader(state.leader, isr)
        else:
            leader, _ = election.reassign(target, isr, ctx.online())
            if leader is None:
                return
            new_state = state.new_leader(leader, isr)
        written = await self._write_states({(name, index): new_state}, create=False)
        if not written:
            return
        record.replicas, record.adding, record.removing = target, (), ()
        await self._write_assignment(name)
        info = ctx.info(name, index)
        assert info is not None
        self._send_leader_and_isr([info], set())
        assert self._channel is not None
        for broker_id in removed:
            if broker_id in ctx.live:
                self._channel.send(broker_id, ApiKey.STOP_REPLICA, stop_replica(
                    self.broker_id, ctx.epoch, ctx.broker_epochs[broker_id],
                    [(name, index, new_state.leader_epoch)], delete=True))
        self._send_update_metadata(ctx.live)
        log.info("[Controller id=%d] reassignment of %s-%d completed: replicas %s",
                 self.broker_id, name, index, list(target))

    async def _on_auto_rebalance(self, imbalance_ratio: float) -> None:
        """Kafka's checkAndTriggerAutoLeaderRebalance: for each broker whose share of
        partitions it should lead but does not exceeds the ratio, elect preferred leaders."""
        ctx = self.ctx
        online = ctx.online()
        by_preferred: dict[int, list[TopicPartition]] = {}
        for name, index, _, record in ctx.partitions():
            if record.state is not None and record.replicas:
                by_preferred.setdefault(record.replicas[0], []).append((name, index))
        moves = []
        for broker_id, parts in by_preferred.items():
            misled = [tp for tp in parts
                      if ctx.topics[tp[0]].partitions[tp[1]].state.leader != broker_id]  # type: ignore[union-attr]
            if broker_id in online and misled and len(misled) / len(parts) > imbalance_ratio:
                moves += misled
        if moves:
            log.info("[Controller id=%d] auto leader rebalance of %d partitions",
                     self.broker_id, len(moves))
            await self._on_elect_leaders(ElectLeaders(PREFERRED, moves))


__all__ = ["NO_LEADER", "PREFERRED", "UNCLEAN", "AlterPartition", "ZkController",
           "live_broker"]
