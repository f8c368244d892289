"""The group coordinator: what the group handlers call.

It adds offsets (commit, fetch, delete, expiry) and group administration (describe, list,
delete) to the classic rebalance protocol, and its life cycle: load by replay at start-up,
one timer task while serving, answer waiting requests at shutdown. Dependencies come in as
values and callables (the replica manager, how to find and create ``__consumer_offsets``, a
wall clock), so this package never imports the broker or the handlers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import trio

from pykbroker.coordinator.group.classic import (
    CONSUMER_PROTOCOL_TYPE,
    ClassicGroup,
    GroupState,
    JoinResult,
    SyncResult,
)
from pykbroker.coordinator.group.consumer_group import (
    CONSUMER_GROUP_TYPE,
    ConsumerGroupConfig,
    ConsumerGroupCoordinator,
    TopicsView,
)
from pykbroker.coordinator.group.consumer_records import ConsumerGroupStore
from pykbroker.coordinator.group.consumer_records import replay as replay_consumer_record
from pykbroker.coordinator.group.join import ClassicJoinProtocol, JoinRequest
from pykbroker.coordinator.group.manager import (
    GroupConfig,
    GroupMetadataManager,
    ReplicaAccess,
    commit_error,
)
from pykbroker.coordinator.group.offsets import (
    OffsetAndMetadata,
    TopicPartition,
    expired_offsets,
)
from pykbroker.coordinator.group.records import OFFSETS_TOPIC
from pykbroker.coordinator.group.timer import CoordinatorTimer
from pykbroker.coordinator.internal_topic import create_internal_topic
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError

log = logging.getLogger("pykbroker.coordinator.group")

S = GroupState
CLASSIC = "classic"
DEAD = "Dead"
OFFSETS_TOPIC_CONFIGS = {"cleanup.policy": "compact", "compression.type": "producer"}


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class MemberDescription:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


@dataclass(slots=True)
class GroupDescription:
    group_id: str
    state: str
    protocol_type: str
    protocol: str
    members: list[MemberDescription]


@dataclass(slots=True)
class GroupListing:
    group_id: str
    protocol_type: str
    state: str
    group_type: str = CLASSIC


class GroupCoordinator(ClassicJoinProtocol):
    def __init__(
        self,
        replicas: ReplicaAccess,
        config: GroupConfig,
        *,
        topic_partitions: Callable[[], int | None],
        create_topic: Callable[[], int],
        now_ms: Callable[[], int] = wall_clock_ms,
        topics_view: Callable[[], TopicsView] | None = None,
        consumer_config: ConsumerGroupConfig | None = None,
    ) -> None:
        manager = GroupMetadataManager(replicas, config, topic_partitions=topic_partitions,
                                       create_topic=create_topic, now_ms=now_ms)
        super().__init__(manager, CoordinatorTimer())
        manager.on_group_loaded = self._on_group_loaded
        # KIP-848 groups (ConsumerGroupHeartbeat): in memory, sharing our timer.
        self.consumer = ConsumerGroupCoordinator(
            self.timer, topics_view or dict, consumer_config,
            classic_in_use=self._classic_in_use)
        store = ConsumerGroupStore(manager.append)
        self.consumer.on_change = store.store
        self._consumer_store = store

        def replay_consumer(key: bytes, value: bytes | None) -> str | None:
            return replay_consumer_record(self.consumer.groups, key, value)

        manager.replay_other = replay_consumer
        # Is (transactional id, producer id, epoch) in a transaction holding this
        # partition? Set by the broker to the transaction coordinator's verification.
        self.verify_transaction: Callable[[str, int, int, TopicPartition], ErrorCode] | None \
            = None

    def _classic_in_use(self, group_id: str) -> bool:
        group = self.groups.get(group_id)
        return group is not None and group.protocol_type is not None and \
            not group.is_in(S.EMPTY, S.DEAD)

    async def join_group(self, req: JoinRequest) -> JoinResult:
        if self.group_status_error(req.group_id) is None and \
                not self.consumer.drop_if_empty(req.group_id):
            return JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, req.member_id)
        return await super().join_group(req)

    @classmethod
    def for_broker(cls, replicas: ReplicaAccess, topics: Any,
                   get: Callable[[str], object]) -> GroupCoordinator:
        """Wire to a broker's topic manager and configuration getter (``BrokerConfig.get``).

        Kafka's default offsets.topic.replication.factor is 3, which a broker with fewer
        live brokers could never satisfy; like a development-mode Kafka we create the topic
        with min(configured, live brokers) replicas, and warn once that we did.
        """
        config = GroupConfig.from_getter(get)

        def topic_partitions() -> int | None:
            info = topics.get(OFFSETS_TOPIC)
            return None if info is None else int(info.partition_count)

        def create_topic() -> int:
            return create_internal_topic(
                topics, OFFSETS_TOPIC, config.offsets_topic_num_partitions,
                config.offsets_topic_replication_factor,
                dict(OFFSETS_TOPIC_CONFIGS,
                     **{"segment.bytes": str(config.offsets_topic_segment_bytes)}),
                "offsets.topic.replication.factor")

        def topics_view() -> TopicsView:
            return {name: (info.topic_id, int(info.partition_count))
                    for name, info in topics.store.topics.items()}

        return cls(replicas, config, topic_partitions=topic_partitions,
                   create_topic=create_topic, topics_view=topics_view,
                   consumer_config=ConsumerGroupConfig.from_getter(get))

    # -- life cycle ---------------------------------------------------------------------------

    def load(self) -> None:
        """Replay ``__consumer_offsets`` (start-up, before clients connect)."""
        self.manager.load_all()
        self._consumer_store.loaded(self.consumer.groups)
        self.consumer.after_load()

    def _on_group_loaded(self, group: ClassicGroup) -> None:
        # Members of a loaded generation must heartbeat again within their session timeout.
        for member in group.members.values():
            self._heartbeat(group, member)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """The timer task: session, rebalance and sync deadlines, and offset expiry."""
        self._schedule_cleanup()
        task_status.started()
        await self.timer.run()

    def shutdown(self) -> None:
        self.unload_all(ErrorCode.NOT_COORDINATOR)
        self.consumer.unload_all()

    def load_partition(self, index: int) -> None:
        """This broker now leads ``__consumer_offsets-index`` (a cluster's LeaderAndIsr):
        replay its groups and offsets and serve them."""
        if index not in self.manager.owned and index not in self.manager.loading:
            self.manager.load_partition(index)

    def unload_partition(self, index: int) -> None:
        """Kafka's onResignation: another broker leads ``__consumer_offsets-index`` now.
        Its groups leave memory; waiting requests are answered NOT_COORDINATOR so their
        clients look the coordinator up again."""
        manager = self.manager
        manager.owned.discard(index)
        now = self.now()
        for group_id in [g for g in self.groups if manager.partition_for(g) == index]:
            group = self.groups.pop(group_id)
            for member in list(group.members.values()):
                group.invoke_join(member, JoinResult(ErrorCode.NOT_COORDINATOR,
                                                     member.member_id))
                group.invoke_sync(member, SyncResult(ErrorCode.NOT_COORDINATOR))
                self.timer.cancel(("hb", group_id, member.member_id))
            self.timer.cancel(("join", group_id))
            self.timer.cancel(("sync", group_id))
            if not group.is_in(S.DEAD):
                group.transition_to(S.DEAD, now)
        consumer = self.consumer
        for group_id in [g for g in consumer.groups if manager.partition_for(g) == index]:
            consumer_group = consumer.groups.pop(group_id)
            for member_id in list(consumer_group.members):
                self.timer.cancel(consumer._session_key(consumer_group, member_id))
                self.timer.cancel(consumer._rebalance_key(consumer_group, member_id))
        for by_group in manager.pending_txn.values():
            for group_id in [g for g in by_group if manager.partition_for(g) == index]:
                del by_group[group_id]

    def _schedule_cleanup(self) -> None:
        def cleanup() -> None:
            try:
                self.cleanup_expired_offsets()
            finally:
                self._schedule_cleanup()

        self.timer.schedule(("cleanup",), self.config.offsets_retention_check_interval_ms,
                            cleanup)

    # -- FindCoordinator ----------------------------------------------------------------------

    def find_coordinator(self, group_id: str) -> ErrorCode:
        """Make sure the group's partition exists and is ours (the topic is made on demand)."""
        try:
            self.manager.ensure_topic()
        except KafkaError as exc:
            log.warning("cannot create %s: %s", OFFSETS_TOPIC, exc)
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if self.manager.is_loading(group_id):
            return ErrorCode.NONE  # the coordinator is here, just busy
        if not self.manager.is_owner(group_id):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        return ErrorCode.NONE

    # -- offsets ------------------------------------------------------------------------------

    def _commit_error(self, group: ClassicGroup, generation_id: int, member_id: str,
                      instance_id: str | None, transactional: bool = False
                      ) -> ErrorCode | None:
        if group.is_in(S.DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if generation_id >= 0 or member_id or instance_id is not None:
            error = self.current_member_error(group, member_id, instance_id)
            if error is not None:
                return error
            if generation_id != group.generation_id:
                return ErrorCode.ILLEGAL_GENERATION
            return None
        if not transactional and not group.is_in(S.EMPTY):
            return ErrorCode.UNKNOWN_MEMBER_ID  # only members commit for a non-empty group
        return None

    def _commit_target(self, group_id: str, generation_id: int, member_id: str,
                       instance_id: str | None, transactional: bool = False
                       ) -> tuple[ClassicGroup | None, ErrorCode | None]:
        """The group a commit goes to, or why the commit is refused (shared by OffsetCommit
        and TxnOffsetCommit). A transactional commit without member id and generation is
        accepted whatever the group's state, as Kafka does: TxnOffsetCommit before v3 (and
        producers given only a group id) carry neither."""
        error = self.group_status_error(group_id, allow_empty=True)
        group = self.groups.get(group_id)
        anonymous_txn = transactional and not member_id and generation_id < 0 \
            and instance_id is None
        handled, consumer_error = (False, None) if error is not None else \
            self.consumer.commit_error(group_id, member_id, generation_id)
        if anonymous_txn:
            consumer_error = None  # KIP-848 groups too: no member to check
        if handled:
            # A KIP-848 group: member id and member epoch were checked; offsets live in
            # a classic offsets-only group.
            if consumer_error is not None:
                return None, consumer_error
            return group or ClassicGroup(group_id, self.now()), None
        if error is None and group is None:
            if generation_id < 0:
                # Kafka only stores offsets for this group: no group management.
                group = ClassicGroup(group_id, self.now())
            else:
                error = ErrorCode.ILLEGAL_GENERATION
        if error is None:
            assert group is not None
            error = self._commit_error(group, generation_id, member_id, instance_id,
                                       transactional)
            if error is None and not transactional and group.is_in(S.COMPLETING_REBALANCE):
                error = ErrorCode.REBALANCE_IN_PROGRESS
        if error is not None:
            return None, error
        assert group is not None
        if member_id in group.members and group.is_in(S.STABLE, S.PREPARING_REBALANCE):
            # A commit counts as a sign of life; the heartbeat reports any rebalance.
            self._heartbeat(group, group.members[member_id])
        return group, None

    async def commit_offsets(
        self, group_id: str, generation_id: int, member_id: str, instance_id: str | None,
        offsets: Mapping[TopicPartition, OffsetAndMetadata],
    ) -> dict[TopicPartition, ErrorCode]:
        """Validate, write, replay, then answer (after an fsync where flush.messages asks)."""
        group, error = self._commit_target(group_id, generation_id, member_id, instance_id)
        if error is not None or group is None:
            return dict.fromkeys(offsets, error or ErrorCode.UNKNOWN_SERVER_ERROR)
        return await self._write_commits(group, offsets, lambda valid: self.manager.commit_offsets(
            group, valid))

    async def txn_commit_offsets(
        self, transactional_id: str, group_id: str, producer_id: int, producer_epoch: int,
        generation_id: int, member_id: str, instance_id: str | None,
        offsets: Mapping[TopicPartition, OffsetAndMetadata],
    ) -> dict[TopicPartition, ErrorCode]:
        """TxnOffsetCommit: the group's partition must be in the producer's transaction
        (AddOffsetsToTxn); the offsets become visible when the transaction commits."""
        error = self.group_status_error(group_id, allow_empty=True)
        if error is None and self.verify_transaction is not None:
            tp = (OFFSETS_TOPIC, self.manager.partition_for(group_id))
            code = self.verify_transaction(transactional_id, producer_id, producer_epoch, tp)
            if code != ErrorCode.NONE:
                error = code
        if error is not None:
            return dict.fromkeys(offsets, error)
        group, error = self._commit_target(group_id, generation_id, member_id, instance_id,
                                           transactional=True)
        if error is not None or group is None:
            return dict.fromkeys(offsets, error or ErrorCode.UNKNOWN_SERVER_ERROR)
        return await self._write_commits(group, offsets, lambda valid: (
            self.manager.commit_txn_offsets(group, transactional_id, producer_id,
                                            producer_epoch, valid)))

    async def _write_commits(
        self, group: ClassicGroup, offsets: Mapping[TopicPartition, OffsetAndMetadata],
        write: Callable[[dict[TopicPartition, OffsetAndMetadata]], tuple[Any, int]],
    ) -> dict[TopicPartition, ErrorCode]:
        limit = self.config.offset_metadata_max_bytes
        result = {tp: ErrorCode.OFFSET_METADATA_TOO_LARGE for tp, om in offsets.items()
                  if len(om.metadata) > limit}
        valid = {tp: om for tp, om in offsets.items() if tp not in result}
        if valid:
            code = ErrorCode.NONE
            try:
                part, next_offset = write(valid)
                await self.manager.wait_durable(part, next_offset)
            except KafkaError as exc:
                code = commit_error(exc.error_code)
            except OSError as exc:
                log.error("fsync of offsets for group %s failed: %s", group.group_id, exc)
                code = ErrorCode.NOT_COORDINATOR
            result.update(dict.fromkeys(valid, code))
        return result

    def on_marker(self, part: Any, producer_id: int, commit: bool) -> None:
        """Replica-manager marker listener: completes transactional offset commits."""
        if part.topic == OFFSETS_TOPIC:
            self.manager.complete_txn(int(part.index), producer_id, commit)

    def unstable_offsets(self, group_id: str) -> set[TopicPartition]:
        return self.manager.unstable_offsets(group_id)

    def fetch_offsets(self, group_id: str, partitions: Iterable[TopicPartition] | None
                      ) -> tuple[ErrorCode, list[tuple[TopicPartition, OffsetAndMetadata | None]]]:
        """Committed offsets whatever the group's state (it may use Kafka only for storage);
        ``partitions`` None means all of the group's."""
        error = self.group_status_error(group_id, allow_empty=True)
        if error is not None:
            return error, []
        group = self.groups.get(group_id)
        if group is None or group.is_in(S.DEAD):
            return ErrorCode.NONE, [(tp, None) for tp in partitions or ()]
        if partitions is None:
            return ErrorCode.NONE, sorted(group.offsets.items())
        return ErrorCode.NONE, [(tp, group.offsets.get(tp)) for tp in partitions]

    def delete_offsets(self, group_id: str, partitions: list[TopicPartition]
                       ) -> tuple[ErrorCode, dict[TopicPartition, ErrorCode]]:
        error = self.group_status_error(group_id, allow_empty=True)
        if error is not None:
            return error, {}
        group = self.groups.get(group_id)
        if group is None or group.is_in(S.DEAD):
            return ErrorCode.GROUP_ID_NOT_FOUND, {}
        errors: dict[TopicPartition, ErrorCode] = {}
        if group.is_in(S.EMPTY):
            eligible = list(partitions)
        elif group.protocol_type == CONSUMER_PROTOCOL_TYPE:
            eligible = [tp for tp in partitions if not group.is_subscribed_to(tp[0])]
            errors = {tp: ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC for tp in partitions
                      if group.is_subscribed_to(tp[0])}
        else:
            return ErrorCode.NON_EMPTY_GROUP, {}
        if eligible:
            self.manager.remove_offsets(group, eligible)
            errors.update(dict.fromkeys(eligible, ErrorCode.NONE))
        return ErrorCode.NONE, errors

    def cleanup_expired_offsets(self) -> int:
        """Expire offsets past offsets.retention.minutes (KIP-211) and drop dead groups."""
        now = self.now()
        retention = self.config.offsets_retention_ms
        removed = 0
        for group in list(self.groups.values()):
            if not self.manager.is_owner(group.group_id):
                continue
            expired: list[TopicPartition] = []
            if group.protocol_type is None:
                # Offsets only (a "simple" consumer): each offset ages from its commit.
                expired = expired_offsets(group.offsets, now, retention, None)
            elif group.is_in(S.EMPTY):
                expired = expired_offsets(group.offsets, now, retention, group.state_timestamp)
            elif group.protocol_type == CONSUMER_PROTOCOL_TYPE and \
                    group.subscribed is not None and group.is_in(S.STABLE):
                expired = expired_offsets(group.offsets, now, retention, None,
                                          keep_topics=group.subscribed)
            if expired or group.is_in(S.EMPTY):
                removed += len(self.manager.remove_offsets(group, expired))
        if removed:
            log.info("removed %d expired offsets", removed)
        return removed

    # -- administration -----------------------------------------------------------------------

    def describe_group(self, group_id: str) -> tuple[ErrorCode, GroupDescription]:
        error = self.group_status_error(group_id, allow_empty=True)
        group = self.groups.get(group_id)
        if error is not None:
            return error, GroupDescription(group_id, "", "", "", [])
        if group is None:
            return ErrorCode.NONE, GroupDescription(group_id, DEAD, "", "", [])
        stable = group.is_in(S.STABLE) and group.protocol_name is not None
        members = []
        for m in group.members.values():
            members.append(MemberDescription(
                m.member_id, m.group_instance_id, m.client_id, m.client_host,
                m.metadata(group.protocol_name) if stable and group.protocol_name else b"",
                m.assignment if stable else b""))
        return ErrorCode.NONE, GroupDescription(
            group_id, group.state.value, group.protocol_type or "",
            group.protocol_name or "" if stable else "", members)

    def list_groups(self, states: Iterable[str] = (), types: Iterable[str] = ()
                    ) -> tuple[ErrorCode, list[GroupListing]]:
        """Filters are case-insensitive; an empty filter keeps everything."""
        wanted_states = {s.lower() for s in states}
        wanted_types = {t.lower() for t in types}
        error = ErrorCode.COORDINATOR_LOAD_IN_PROGRESS if self.manager.loading \
            else ErrorCode.NONE
        out: list[GroupListing] = []
        if not wanted_types or CLASSIC in wanted_types:
            out = [GroupListing(g.group_id, g.protocol_type or "", g.state.value)
                   for g in self.groups.values()
                   if self.manager.is_owner(g.group_id) and not g.is_in(S.DEAD)
                   and g.group_id not in self.consumer.groups
                   and (not wanted_states or g.state.value.lower() in wanted_states)]
        if not wanted_types or CONSUMER_GROUP_TYPE in wanted_types:
            out += [GroupListing(g.group_id, CONSUMER_PROTOCOL_TYPE, g.state,
                                 CONSUMER_GROUP_TYPE)
                    for g in self.consumer.groups.values()
                    if self.manager.is_owner(g.group_id)
                    and (not wanted_states or g.state.lower() in wanted_states)]
        return error, out

    def delete_groups(self, group_ids: Iterable[str]) -> dict[str, ErrorCode]:
        out: dict[str, ErrorCode] = {}
        for group_id in group_ids:
            error = self.group_status_error(group_id, allow_empty=True)
            group = self.groups.get(group_id)
            if error is None and group_id in self.consumer.groups:
                if self.consumer.has_members(group_id):
                    out[group_id] = ErrorCode.NON_EMPTY_GROUP
                    continue
                del self.consumer.groups[group_id]  # a KIP-848 group; its offsets follow
                self._consumer_store.delete(group_id)
                if group is None or group.is_in(S.DEAD):
                    log.info("deleted group %s", group_id)
                    out[group_id] = ErrorCode.NONE
                    continue
            if error is not None:
                out[group_id] = error
            elif group is None or group.is_in(S.DEAD):
                out[group_id] = ErrorCode.GROUP_ID_NOT_FOUND
            elif not group.is_in(S.EMPTY):
                out[group_id] = ErrorCode.NON_EMPTY_GROUP
            else:
                group.transition_to(S.DEAD, self.now())
                self.manager.remove_offsets(group, list(group.offsets))
                self.groups.pop(group_id, None)
                log.info("deleted group %s", group_id)
                out[group_id] = ErrorCode.NONE
        return out
