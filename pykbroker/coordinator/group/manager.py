"""The durable side of the group coordinator: ``__consumer_offsets`` and replaying it.

Kafka's GroupMetadataManager. Every change to offsets is written to the internal topic
through the replica manager's normal append path and only then applied, by ``replay`` -- the
same function that rebuilds the state at start-up. Classic group metadata is kept live in
memory (members hold waiting requests) and written at the end of each rebalance; replaying
it is what loading does. Appends are synchronous, so a write and its replay happen without
an await between them; only waiting for an fsync (flush.messages) awaits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pykbroker.coordinator.group.classic import (
    ClassicGroup,
    ClassicMember,
    GroupState,
)
from pykbroker.coordinator.group.offsets import OffsetAndMetadata, TopicPartition
from pykbroker.coordinator.group.records import (
    OFFSETS_TOPIC,
    GroupKey,
    GroupMetadataValue,
    MemberMetadata,
    OffsetKey,
    decode_group_value,
    decode_key,
    decode_offset_value,
    group_key,
    group_value,
    offset_key,
    offset_value,
    partition_for,
)
from pykbroker.coordinator.internal_topic import stored_batches
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import DecodeError, KafkaError
from pykbroker.records import (
    CONTROL_COMMIT,
    NewRecord,
    build_batch,
    control_type,
    iter_records,
)

log = logging.getLogger("pykbroker.coordinator.group")

Record = tuple[bytes, bytes | None]


class ReplicaAccess(Protocol):
    """What the manager needs from the replica manager (append and read, by partition)."""

    def partition(self, topic: str, index: int) -> Any: ...

    def append(self, part: Any, records: Any, acks: int = ...,
               transactional_id: str | None = ...) -> Any: ...

    async def wait_replicated(self, part: Any, offset: int, timeout_s: float) -> None: ...


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """The broker settings the group coordinator reads (all read-only in Kafka)."""

    offsets_topic_num_partitions: int = 50
    offsets_topic_replication_factor: int = 3
    offsets_topic_segment_bytes: int = 104857600
    offsets_retention_ms: int = 7 * 24 * 3600 * 1000
    offsets_retention_check_interval_ms: int = 600000
    offsets_load_buffer_size: int = 5242880
    offset_metadata_max_bytes: int = 4096
    group_initial_rebalance_delay_ms: int = 3000
    group_min_session_timeout_ms: int = 6000
    group_max_session_timeout_ms: int = 1800000
    group_max_size: int = 2**31 - 1
    offsets_commit_timeout_ms: int = 5000

    @classmethod
    def from_getter(cls, get: Callable[[str], object]) -> GroupConfig:
        def i(key: str) -> int:
            value = get(key)
            assert isinstance(value, int), (key, value)
            return value

        return cls(
            offsets_topic_num_partitions=i("offsets.topic.num.partitions"),
            offsets_topic_replication_factor=i("offsets.topic.replication.factor"),
            offsets_topic_segment_bytes=i("offsets.topic.segment.bytes"),
            offsets_retention_ms=i("offsets.retention.minutes") * 60_000,
            offsets_retention_check_interval_ms=i("offsets.retention.check.interval.ms"),
            offsets_load_buffer_size=i("offsets.load.buffer.size"),
            offset_metadata_max_bytes=i("offset.metadata.max.bytes"),
            group_initial_rebalance_delay_ms=i("group.initial.rebalance.delay.ms"),
            group_min_session_timeout_ms=i("group.min.session.timeout.ms"),
            group_max_session_timeout_ms=i("group.max.session.timeout.ms"),
            group_max_size=i("group.max.size"),
            offsets_commit_timeout_ms=i("offsets.commit.timeout.ms"),
        )


_APPEND_ERRORS = {
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_ENOUGH_REPLICAS: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_LEADER_OR_FOLLOWER: ErrorCode.NOT_COORDINATOR,
    ErrorCode.KAFKA_STORAGE_ERROR: ErrorCode.NOT_COORDINATOR,
}
_TOO_LARGE = (ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.RECORD_LIST_TOO_LARGE,
              ErrorCode.INVALID_FETCH_SIZE)


def commit_error(code: ErrorCode) -> ErrorCode:
    """How Kafka reports a failed offset-commit append to the client."""
    if code in _TOO_LARGE:
        return ErrorCode.INVALID_COMMIT_OFFSET_SIZE
    return _APPEND_ERRORS.get(code, code)


def store_group_error(code: ErrorCode) -> ErrorCode:
    """How Kafka reports a failed group-metadata append (SyncGroup, static rejoin)."""
    if code in _TOO_LARGE:
        return ErrorCode.UNKNOWN_SERVER_ERROR
    if code == ErrorCode.REQUEST_TIMED_OUT:
        return ErrorCode.REBALANCE_IN_PROGRESS
    return _APPEND_ERRORS.get(code, code)


class GroupMetadataManager:
    def __init__(
        self,
        replicas: ReplicaAccess,
        config: GroupConfig,
        *,
        topic_partitions: Callable[[], int | None],
        create_topic: Callable[[], int],
        now_ms: Callable[[], int],
    ) -> None:
        self.replicas = replicas
        self.config = config
        self._topic_partitions = topic_partitions
        self._create_topic = create_topic
        self.now_ms = now_ms
        self.groups: dict[str, ClassicGroup] = {}
        self.owned: set[int] = set()
        self.loading: set[int] = set()
        # Called with each group rebuilt by loading (the coordinator schedules its timers).
        self.on_group_loaded: Callable[[ClassicGroup], None] = lambda group: None
        # Replays the records of other group types (KIP-848 key versions) while loading.
        self.replay_other: Callable[[bytes, bytes | None], str | None] | None = None
        # Transactional offset commits awaiting their transaction's marker:
        # producer id -> group id -> offsets.
        self.pending_txn: dict[int, dict[str, dict[TopicPartition, OffsetAndMetadata]]] = {}

    # -- the internal topic -----------------------------------------------------------------

    @property
    def num_partitions(self) -> int:
        return self._topic_partitions() or self.config.offsets_topic_num_partitions

    def partition_for(self, group_id: str) -> int:
        return partition_for(group_id, self.num_partitions)

    def ensure_topic(self) -> int:
        """Create ``__consumer_offsets`` on first use; returns its partition count."""
        count = self._topic_partitions()
        if count is None:
            count = self._create_topic()
            self.owned.update(range(count))  # new, hence empty: nothing to load
        for index in range(count):
            if index not in self.owned and index not in self.loading:
                self.load_partition(index)  # e.g. created by someone else meanwhile
        return count

    def is_owner(self, group_id: str) -> bool:
        return self._topic_partitions() is not None and self.partition_for(group_id) in self.owned

    def is_loading(self, group_id: str) -> bool:
        return self._topic_partitions() is not None and \
            self.partition_for(group_id) in self.loading

    # -- loading ----------------------------------------------------------------------------

    def load_all(self) -> None:
        """Rebuild every hosted partition's groups and offsets (at broker start-up)."""
        count = self._topic_partitions()
        for index in range(count or 0):
            self.load_partition(index)

    def load_partition(self, index: int) -> None:
        try:
            part = self.replicas.partition(OFFSETS_TOPIC, index)
        except KafkaError:
            return
        self.loading.add(index)
        loaded: set[str] = set()
        # Records of open transactions, by producer id, until their marker says what to do.
        open_txns: dict[int, list[Record]] = {}
        try:
            for data, pos, header in stored_batches(part, self.config.offsets_load_buffer_size):
                if header.is_control:
                    done = open_txns.pop(header.producer_id, [])
                    try:
                        commit = control_type(next(iter_records(data, pos))) == CONTROL_COMMIT
                    except (DecodeError, StopIteration):
                        commit = False
                    if commit:
                        self._replay_loaded(done, index, loaded)
                    continue
                records: list[Record] = [(r.key, r.value) for r in iter_records(data, pos)
                                         if r.key is not None]
                if header.is_transactional:
                    open_txns.setdefault(header.producer_id, []).extend(records)
                else:
                    self._replay_loaded(records, index, loaded)
            for pid, pending in open_txns.items():
                for key, value in pending:
                    try:
                        k = decode_key(key)
                        if isinstance(k, OffsetKey) and value is not None:
                            self.pending_txn.setdefault(pid, {}).setdefault(k.group, {})[
                                (k.topic, k.partition)] = decode_offset_value(value)
                    except DecodeError:
                        continue
        finally:
            self.loading.discard(index)
        self.owned.add(index)
        for group_id in sorted(loaded):
            group = self.groups.get(group_id)
            if group is not None and not group.offsets and group.generation_id == 0:
                # Only ever known by offsets that have all been deleted since: gone.
                del self.groups[group_id]
            elif group is not None:
                self.on_group_loaded(group)
        if loaded:
            log.info("loaded %d groups from %s-%d", len(loaded), OFFSETS_TOPIC, index)

    def _replay_loaded(self, records: list[Record], index: int, loaded: set[str]) -> None:
        for key, value in records:
            try:
                group_id = self.replay(key, value, loading=True)
            except DecodeError as exc:
                log.warning("skipping undecodable record in %s-%d: %s", OFFSETS_TOPIC, index,
                            exc)
                continue
            if group_id is not None:
                loaded.add(group_id)

    def replay(self, key: bytes, value: bytes | None, *, loading: bool = False) -> str | None:
        """Apply one record of the internal topic; returns the group it touched.

        Offsets are always applied here. Group metadata values are applied only while
        loading, since live groups are already up to date when their metadata is written;
        a group tombstone removes the group and whatever offsets it still had.
        """
        k = decode_key(key)
        now = self.now_ms()
        if isinstance(k, OffsetKey):
            group = self.groups.get(k.group)
            if value is None:
                if group is not None:
                    group.offsets.pop((k.topic, k.partition), None)
                return k.group
            if group is None:
                group = self.groups[k.group] = ClassicGroup(k.group, now)
            group.offsets[(k.topic, k.partition)] = decode_offset_value(value)
            return k.group
        if isinstance(k, GroupKey):
            if value is None:
                self.groups.pop(k.group, None)
            elif loading:
                self._load_group(k.group, decode_group_value(value), now)
            return k.group
        if loading and self.replay_other is not None:
            touched = self.replay_other(key, value)
            if touched is not None:
                return touched
        log.debug("skipping %s record with key version %d", OFFSETS_TOPIC, k.version)
        return None

    def _load_group(self, group_id: str, value: GroupMetadataValue, now: int) -> None:
        old = self.groups.get(group_id)
        state = GroupState.STABLE if value.members else GroupState.EMPTY
        group = ClassicGroup(group_id, now, state)
        group.offsets = old.offsets if old is not None else {}
        group.generation_id = value.generation
        group.protocol_type = value.protocol_type or None
        group.protocol_name = value.protocol
        group.leader_id = value.leader
        group.state_timestamp = None if value.current_state_timestamp == -1 \
            else value.current_state_timestamp
        for m in value.members:
            member = ClassicMember(
                member_id=m.member_id, group_instance_id=m.group_instance_id,
                client_id=m.client_id, client_host=m.client_host,
                rebalance_timeout_ms=m.rebalance_timeout if m.rebalance_timeout >= 0
                else m.session_timeout,
                session_timeout_ms=m.session_timeout, protocol_type=value.protocol_type,
                protocols=[(value.protocol or "", bytes(m.subscription))],
                assignment=bytes(m.assignment))
            group.add(member)
        group.leader_id = value.leader if value.leader in group.members else \
            next(iter(group.members), None)
        group.subscribed = group.compute_subscribed_topics()
        self.groups[group_id] = group

    # -- writing ----------------------------------------------------------------------------

    def append(self, group_id: str, records: Iterable[Record]) -> tuple[Any, int]:
        """Append records to the group's partition; returns (partition, next offset).

        Raises KafkaError with the storage error (callers map it for their API).
        """
        if not self.is_owner(group_id):
            raise KafkaError(ErrorCode.NOT_COORDINATOR)
        part = self.replicas.partition(OFFSETS_TOPIC, self.partition_for(group_id))
        now = self.now_ms()
        batch = build_batch([NewRecord(k, v, (), now) for k, v in records])
        result = self.replicas.append(part, batch)
        return part, int(result.last_offset) + 1

    async def wait_durable(self, part: Any, next_offset: int) -> None:
        """Acknowledge only records that are safe: fsynced when flush.messages asks, and
        held by every ISR member (offsets.commit.required.acks=-1: in a cluster, up to
        offsets.commit.timeout.ms; a lone broker's high watermark is its log end)."""
        if part.needs_sync_ack():
            await part.wait_durable(next_offset)
        if part.high_watermark < next_offset:
            await self.replicas.wait_replicated(
                part, next_offset, self.config.offsets_commit_timeout_ms / 1000.0)

    def group_record(self, group: ClassicGroup, assignment: Mapping[str, bytes]) -> Record:
        """The GroupMetadata record for the current generation with ``assignment``."""
        members = []
        for m in group.members.values():
            assert group.protocol_name is not None, "non-empty group without a protocol"
            members.append(MemberMetadata(
                member_id=m.member_id, group_instance_id=m.group_instance_id,
                client_id=m.client_id, client_host=m.client_host,
                rebalance_timeout=m.rebalance_timeout_ms, session_timeout=m.session_timeout_ms,
                subscription=m.metadata(group.protocol_name),
                assignment=bytes(assignment.get(m.member_id, b""))))
        value = GroupMetadataValue(
            protocol_type=group.protocol_type or "", generation=group.generation_id,
            protocol=group.protocol_name, leader=group.leader_id,
            current_state_timestamp=group.state_timestamp
            if group.state_timestamp is not None else -1,
            members=members)
        return group_key(group.group_id), group_value(value)

    def store_group(self, group: ClassicGroup,
                    assignment: Mapping[str, bytes]) -> tuple[Any, int]:
        return self.append(group.group_id, [self.group_record(group, assignment)])

    def commit_offsets(self, group: ClassicGroup,
                       offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> tuple[Any, int]:
        """Write then replay the commits (raises KafkaError, nothing applied, on failure)."""
        records = [(offset_key(group.group_id, t, p), offset_value(om))
                   for (t, p), om in offsets.items()]
        result = self.append(group.group_id, records)
        self.groups.setdefault(group.group_id, group)
        for key, value in records:
            self.replay(key, value)
        return result

    def commit_txn_offsets(self, group: ClassicGroup, transactional_id: str, producer_id: int,
                           producer_epoch: int,
                           offsets: Mapping[TopicPartition, OffsetAndMetadata]
                           ) -> tuple[Any, int]:
        """TxnOffsetCommit: write the commits as a transactional batch; they apply when
        the transaction's COMMIT marker reaches this partition (raises KafkaError)."""
        group_id = group.group_id
        if not self.is_owner(group_id):
            raise KafkaError(ErrorCode.NOT_COORDINATOR)
        part = self.replicas.partition(OFFSETS_TOPIC, self.partition_for(group_id))
        now = self.now_ms()
        batch = build_batch(
            [NewRecord(offset_key(group_id, t, p), offset_value(om), (), now)
             for (t, p), om in offsets.items()],
            producer_id=producer_id, producer_epoch=producer_epoch, is_transactional=True)
        result = self.replicas.append(part, batch, transactional_id=transactional_id)
        self.groups.setdefault(group_id, group)
        self.pending_txn.setdefault(producer_id, {}).setdefault(group_id, {}).update(offsets)
        return part, int(result.last_offset) + 1

    def complete_txn(self, index: int, producer_id: int, commit: bool) -> None:
        """A marker reached partition ``index``: apply or drop the producer's pending
        offsets for the groups stored there."""
        by_group = self.pending_txn.get(producer_id)
        if not by_group:
            return
        for group_id in [g for g in by_group if self.partition_for(g) == index]:
            offsets = by_group.pop(group_id)
            if not commit:
                continue
            group = self.groups.get(group_id)
            if group is None:
                group = self.groups[group_id] = ClassicGroup(group_id, self.now_ms())
            group.offsets.update(offsets)
        if not by_group:
            del self.pending_txn[producer_id]

    def unstable_offsets(self, group_id: str) -> set[TopicPartition]:
        """Partitions with a transactional commit still pending (OffsetFetch require_stable)."""
        return {tp for by_group in self.pending_txn.values()
                for tp in by_group.get(group_id, {})}

    def remove_offsets(self, group: ClassicGroup, partitions: Iterable[TopicPartition]
                       ) -> list[TopicPartition]:
        """Tombstone ``partitions`` of the group; an empty group left with no offsets dies.

        Its metadata tombstone is written only if it ever had a generation (Kafka skips
        groups used for offset storage alone, which never wrote any).
        """
        removed = [tp for tp in partitions if tp in group.offsets]
        records: list[Record] = [(offset_key(group.group_id, t, p), None) for t, p in removed]
        now = self.now_ms()
        dies = group.is_in(GroupState.EMPTY, GroupState.DEAD) and \
            not (set(group.offsets) - set(removed))
        if dies:
            if not group.is_in(GroupState.DEAD):
                group.transition_to(GroupState.DEAD, now)
            if group.generation_id > 0:
                records.append((group_key(group.group_id), None))
        if records:
            try:
                self.append(group.group_id, records)
            except KafkaError as exc:
                log.warning("could not write tombstones for group %s: %s", group.group_id, exc)
        for tp in removed:
            group.offsets.pop(tp, None)
        if dies and self.groups.get(group.group_id) is group:
            del self.groups[group.group_id]
        return removed
