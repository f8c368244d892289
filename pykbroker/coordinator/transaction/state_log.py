"""``__transaction_state`` as the transaction coordinator uses it: where a transactional id's
records go, writing them, replaying them, and the broker settings around the topic.

Kept apart from the state machine (:mod:`.coordinator`) as the group coordinator keeps its
``__consumer_offsets`` access in its metadata manager.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pykbroker.coordinator.group.records import partition_for
from pykbroker.coordinator.internal_topic import create_internal_topic, stored_batches
from pykbroker.coordinator.transaction.metadata import (
    TRANSACTION_STATE_TOPIC,
    TransactionMetadata,
    decode_txn_key,
    decode_txn_value,
    txn_key,
    txn_value,
)
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import DecodeError, KafkaError
from pykbroker.records import NewRecord, build_batch, iter_records

log = logging.getLogger("pykbroker.coordinator.transaction")

TXN_TOPIC_CONFIGS = {"cleanup.policy": "compact", "compression.type": "uncompressed",
                     "min.insync.replicas": "1", "unclean.leader.election.enable": "false"}


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class TxnConfig:
    """The broker settings the transaction coordinator reads."""

    num_partitions: int = 50
    replication_factor: int = 3
    segment_bytes: int = 104857600
    load_buffer_size: int = 5242880
    max_timeout_ms: int = 900000
    id_expiration_ms: int = 604800000
    abort_interval_ms: int = 10000
    remove_interval_ms: int = 3600000
    request_timeout_ms: int = 30000

    @classmethod
    def from_getter(cls, get: Callable[[str], object]) -> TxnConfig:
        def i(key: str) -> int:
            return int(str(get(key)))

        return cls(
            num_partitions=i("transaction.state.log.num.partitions"),
            replication_factor=i("transaction.state.log.replication.factor"),
            segment_bytes=i("transaction.state.log.segment.bytes"),
            load_buffer_size=i("transaction.state.log.load.buffer.size"),
            max_timeout_ms=i("transaction.max.timeout.ms"),
            id_expiration_ms=i("transactional.id.expiration.ms"),
            abort_interval_ms=i("transaction.abort.timed.out.transaction.cleanup.interval.ms"),
            remove_interval_ms=i("transaction.remove.expired.transaction.cleanup.interval.ms"),
            request_timeout_ms=i("request.timeout.ms"),
        )


@dataclass(frozen=True, slots=True)
class TopicAccess:
    """How the coordinator finds, creates and checks topics (the broker's topic manager)."""

    topic_partitions: Callable[[], int | None]
    create_topic: Callable[[], int]
    partition_exists: Callable[[str, int], bool]

    @classmethod
    def for_broker(cls, topics: Any, config: TxnConfig) -> TopicAccess:
        """Like ``__consumer_offsets``, the topic gets min(configured, live brokers)
        replicas (:func:`.internal_topic.create_internal_topic`), so one broker works
        without flags."""

        def topic_partitions() -> int | None:
            info = topics.get(TRANSACTION_STATE_TOPIC)
            return None if info is None else int(info.partition_count)

        def create_topic() -> int:
            return create_internal_topic(
                topics, TRANSACTION_STATE_TOPIC, config.num_partitions,
                config.replication_factor,
                dict(TXN_TOPIC_CONFIGS, **{"segment.bytes": str(config.segment_bytes)}),
                "transaction.state.log.replication.factor")

        def partition_exists(topic: str, index: int) -> bool:
            info = topics.get(topic)
            return info is not None and 0 <= index < int(info.partition_count)

        return cls(topic_partitions, create_topic, partition_exists)


def storage_error(code: ErrorCode) -> ErrorCode:
    """Kafka's mapping of a failed transaction-log append to what clients are told."""
    if code in (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.NOT_ENOUGH_REPLICAS,
                ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND, ErrorCode.REQUEST_TIMED_OUT):
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    if code in (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.KAFKA_STORAGE_ERROR):
        return ErrorCode.NOT_COORDINATOR
    if code in (ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.RECORD_LIST_TOO_LARGE):
        return ErrorCode.UNKNOWN_SERVER_ERROR
    return code


class TransactionStateLog:
    """The partitions of ``__transaction_state`` this broker owns, and their records."""

    def __init__(self, replicas: Any, config: TxnConfig, topics: TopicAccess,
                 now_ms: Callable[[], int]) -> None:
        self.replicas = replicas
        self.config = config
        self.topics = topics
        self.now_ms = now_ms
        self.owned: set[int] = set()
        self._durable: list[tuple[Any, int, bool]] = []
        self.last_write: tuple[Any, int] | None = None

    @property
    def partition_count(self) -> int | None:
        return self.topics.topic_partitions()

    def partition_for(self, transactional_id: str) -> int:
        return partition_for(transactional_id,
                             self.partition_count or self.config.num_partitions)

    def ensure_topic(self) -> ErrorCode | None:
        """Create the topic on first use (FindCoordinator); an error when that fails."""
        if self.partition_count is None:
            try:
                count = self.topics.create_topic()
            except KafkaError as exc:
                log.warning("cannot create %s: %s", TRANSACTION_STATE_TOPIC, exc)
                return ErrorCode.COORDINATOR_NOT_AVAILABLE
            self.owned.update(range(count))
        return None

    def owner_error(self, transactional_id: str) -> ErrorCode | None:
        if self.partition_count is None or \
                self.partition_for(transactional_id) not in self.owned:
            return ErrorCode.NOT_COORDINATOR
        return None

    def coordinator_epoch(self, transactional_id: str) -> int:
        """The leader epoch of the id's partition, which markers carry."""
        try:
            return int(self.replicas.partition(
                TRANSACTION_STATE_TOPIC, self.partition_for(transactional_id)).leader_epoch)
        except KafkaError:
            return 0

    def write(self, meta: TransactionMetadata, *, tombstone: bool = False) -> tuple[Any, int]:
        """Append the record of ``meta`` (raises KafkaError with the client's error code);
        returns the partition and the offset after the record (also ``last_write``)."""
        try:
            part = self.replicas.partition(TRANSACTION_STATE_TOPIC,
                                           self.partition_for(meta.transactional_id))
            value = None if tombstone else txn_value(meta)
            batch = build_batch([NewRecord(txn_key(meta.transactional_id), value, (),
                                           self.now_ms())])
            result = self.replicas.append(part, batch)
        except KafkaError as exc:
            raise KafkaError(storage_error(exc.error_code), exc.message) from exc
        written = self.last_write = (part, int(result.last_offset) + 1)
        self._durable.append((part, written[1], part.needs_sync_ack()))
        return written

    async def wait_durable(self, *, replicated: bool = True) -> None:
        """Answer only for records that are safe: fsynced where ``flush.messages`` asks, and
        held by every ISR member (Kafka appends to the transaction log with acks=-1, up to
        request.timeout.ms; a lone broker's high watermark is its log end, so it never
        waits). Covers every record written before the call, whoever wrote it; raises
        KafkaError with the client's error code when replication fails."""
        pending = list(self._durable)
        try:
            synced: dict[int, tuple[Any, int]] = {}
            written: dict[int, tuple[Any, int]] = {}
            for part, offset, needs_sync in pending:
                for target, wanted in ((written, True), (synced, needs_sync)):
                    if wanted and offset > target.get(id(part), (part, -1))[1]:
                        target[id(part)] = (part, offset)
            for part, offset in synced.values():
                await part.wait_durable(offset)
            for part, offset in written.values() if replicated else ():
                if part.high_watermark < offset:
                    try:
                        await self.replicas.wait_replicated(
                            part, offset, self.config.request_timeout_ms / 1000.0)
                    except KafkaError as exc:
                        raise KafkaError(storage_error(exc.error_code), exc.message) from exc
        finally:
            done = {id(entry) for entry in pending}
            self._durable = [entry for entry in self._durable if id(entry) not in done]

    async def wait_replicated(self, part: Any, offset: int) -> None:
        """Wait until every ISR member holds the records of ``part`` below ``offset``
        (raises KafkaError as ReplicaManager.wait_replicated)."""
        if part.high_watermark < offset:
            await self.replicas.wait_replicated(part, offset,
                                                self.config.request_timeout_ms / 1000.0)

    def forget_pending_syncs(self) -> None:
        self._durable.clear()

    def load(self, txns: dict[str, TransactionMetadata]) -> None:
        """Replay every partition into ``txns`` and take ownership of them."""
        for index in range(self.partition_count or 0):
            self._load_partition(index, txns)
            self.owned.add(index)

    def load_partition(self, index: int, txns: dict[str, TransactionMetadata]) -> bool:
        """Replay one partition into ``txns``; False when this broker does not lead it."""
        return self._load_partition(index, txns)

    def _load_partition(self, index: int, txns: dict[str, TransactionMetadata]) -> bool:
        try:
            part = self.replicas.partition(TRANSACTION_STATE_TOPIC, index)
        except KafkaError:
            return False
        for data, pos, header in stored_batches(part, self.config.load_buffer_size):
            if header.is_control:
                continue
            for record in iter_records(data, pos):
                if record.key is None:
                    continue
                try:
                    txn_id = decode_txn_key(record.key)
                    if record.value is None:
                        txns.pop(txn_id, None)
                    else:
                        txns[txn_id] = decode_txn_value(txn_id, record.value)
                except DecodeError as exc:
                    log.warning("skipping undecodable record at %s-%d offset %d: %s",
                                TRANSACTION_STATE_TOPIC, index, record.offset, exc)
        return True
