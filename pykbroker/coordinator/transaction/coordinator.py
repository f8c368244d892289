"""The transaction coordinator: transactional ids, their epochs, and two-phase completion.

Kafka's TransactionCoordinator on one broker. Every state change is written to
``__transaction_state`` first and applied after the write succeeded; start-up replays the
topic and finishes what a crash interrupted (a transaction in PrepareCommit/PrepareAbort gets
its markers and its Complete record). Ending a transaction is synchronous -- Prepare record,
a marker on every partition, Complete record -- so no request observes it halfway; only the
fsync that ``flush.messages`` may ask for is awaited, after the state is in the log.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import trio

from pykbroker.coordinator.group.records import partition_for
from pykbroker.coordinator.transaction.metadata import (
    EPOCH_EXHAUSTED,
    NO_PRODUCER_EPOCH,
    TRANSACTION_STATE_TOPIC,
    TopicPartition,
    TransactionMetadata,
    TxnState,
    decode_txn_key,
    decode_txn_value,
    txn_key,
    txn_value,
)
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import DecodeError, KafkaError
from pykbroker.records import BatchHeader, NewRecord, build_batch, iter_batches, iter_records

log = logging.getLogger("pykbroker.coordinator.transaction")

S = TxnState
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
        )


@dataclass(slots=True)
class InitResult:
    error: ErrorCode
    producer_id: int = -1
    producer_epoch: int = -1


def _storage_error(code: ErrorCode) -> ErrorCode:
    """Kafka's mapping of a failed transaction-log append to what clients are told."""
    if code in (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.NOT_ENOUGH_REPLICAS,
                ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND, ErrorCode.REQUEST_TIMED_OUT):
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    if code in (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.KAFKA_STORAGE_ERROR):
        return ErrorCode.NOT_COORDINATOR
    if code in (ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.RECORD_LIST_TOO_LARGE):
        return ErrorCode.UNKNOWN_SERVER_ERROR
    return code


class TransactionCoordinator:
    def __init__(
        self,
        replicas: Any,
        config: TxnConfig,
        *,
        topic_partitions: Callable[[], int | None],
        create_topic: Callable[[], int],
        next_producer_id: Callable[[], int],
        partition_exists: Callable[[str, int], bool],
        now_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.replicas = replicas
        self.config = config
        self._topic_partitions = topic_partitions
        self._create_topic = create_topic
        self._next_producer_id = next_producer_id
        self._partition_exists = partition_exists
        self.now_ms = now_ms
        self.txns: dict[str, TransactionMetadata] = {}
        self.owned: set[int] = set()
        self._durable: list[tuple[Any, int]] = []

    @classmethod
    def for_broker(cls, replicas: Any, topics: Any, get: Callable[[str], object],
                   next_producer_id: Callable[[], int]) -> TransactionCoordinator:
        """Wire to a broker; like ``__consumer_offsets`` the topic gets min(configured, live
        brokers) replicas so one broker works without flags."""
        config = TxnConfig.from_getter(get)

        def topic_partitions() -> int | None:
            info = topics.get(TRANSACTION_STATE_TOPIC)
            return None if info is None else int(info.partition_count)

        def create_topic() -> int:
            live = len(topics.live_brokers)
            rf = min(config.replication_factor, live)
            if rf < config.replication_factor:
                log.warning("creating %s with replication factor %d: only %d live broker(s), "
                            "transaction.state.log.replication.factor=%d",
                            TRANSACTION_STATE_TOPIC, rf, live, config.replication_factor)
            configs = dict(TXN_TOPIC_CONFIGS, **{"segment.bytes": str(config.segment_bytes)})
            try:
                info = topics.create_topic(TRANSACTION_STATE_TOPIC, config.num_partitions, rf,
                                           configs=configs)
            except KafkaError as exc:
                if exc.error_code != ErrorCode.TOPIC_ALREADY_EXISTS:
                    raise
                info = topics.get(TRANSACTION_STATE_TOPIC)
            return int(info.partition_count)

        def partition_exists(topic: str, index: int) -> bool:
            info = topics.get(topic)
            return info is not None and 0 <= index < int(info.partition_count)

        return cls(replicas, config, topic_partitions=topic_partitions,
                   create_topic=create_topic, next_producer_id=next_producer_id,
                   partition_exists=partition_exists)

    # -- the internal topic -----------------------------------------------------------------

    def partition_for(self, transactional_id: str) -> int:
        count = self._topic_partitions() or self.config.num_partitions
        return partition_for(transactional_id, count)

    def find_coordinator(self, transactional_id: str) -> ErrorCode:
        """FindCoordinator(TRANSACTION): create ``__transaction_state`` on first use."""
        if self._topic_partitions() is None:
            try:
                count = self._create_topic()
            except KafkaError as exc:
                log.warning("cannot create %s: %s", TRANSACTION_STATE_TOPIC, exc)
                return ErrorCode.COORDINATOR_NOT_AVAILABLE
            self.owned.update(range(count))
        return self._owner_error(transactional_id) or ErrorCode.NONE

    def _owner_error(self, transactional_id: str) -> ErrorCode | None:
        if self._topic_partitions() is None or \
                self.partition_for(transactional_id) not in self.owned:
            return ErrorCode.NOT_COORDINATOR
        return None

    def _write(self, meta: TransactionMetadata, *, tombstone: bool = False) -> None:
        """Append the record of ``meta`` (raises KafkaError with the client's error code)."""
        try:
            part = self.replicas.partition(TRANSACTION_STATE_TOPIC,
                                           self.partition_for(meta.transactional_id))
            value = None if tombstone else txn_value(meta)
            batch = build_batch([NewRecord(txn_key(meta.transactional_id), value, (),
                                           self.now_ms())])
            result = self.replicas.append(part, batch)
        except KafkaError as exc:
            raise KafkaError(_storage_error(exc.error_code), exc.message) from exc
        if part.needs_sync_ack():
            self._durable.append((part, int(result.last_offset) + 1))

    async def _wait_durable(self) -> None:
        """flush.messages on the internal topic: answer only once the records are fsynced."""
        pending, self._durable = self._durable, []
        for part, offset in pending:
            await part.wait_durable(offset)

    # -- loading ----------------------------------------------------------------------------

    def load(self) -> None:
        """Replay ``__transaction_state`` and finish transactions a crash left in Prepare*."""
        count = self._topic_partitions()
        for index in range(count or 0):
            self._load_partition(index)
            self.owned.add(index)
        self.complete_pending()
        self._durable.clear()  # start-up flushes on its own schedule

    def complete_pending(self) -> int:
        """Finish transactions left in PrepareCommit/PrepareAbort: by a crash (on load), or
        by a failed write of their Complete record (retried from the timer task, as Kafka's
        marker channel retries until it succeeds). Returns how many were completed."""
        count = 0
        for meta in list(self.txns.values()):
            if meta.state in (S.PREPARE_COMMIT, S.PREPARE_ABORT):
                log.info("completing transaction %s left in %s", meta.transactional_id,
                         meta.state.title)
                try:
                    self._complete(meta, meta.state == S.PREPARE_COMMIT)
                    count += 1
                except KafkaError as exc:
                    log.error("could not complete transaction %s: %s",
                              meta.transactional_id, exc)
        return count

    def _load_partition(self, index: int) -> None:
        try:
            part = self.replicas.partition(TRANSACTION_STATE_TOPIC, index)
        except KafkaError:
            return
        plog = part.log
        offset, end = int(plog.log_start_offset), int(part.high_watermark)
        while offset < end:
            data = plog.read(offset, self.config.load_buffer_size, max_offset=end).data
            if not data:
                break
            for pos, header in iter_batches(data, allow_partial=True):
                offset = header.next_offset
                if header.is_control:
                    continue
                for record in iter_records(data, pos):
                    if record.key is None:
                        continue
                    try:
                        txn_id = decode_txn_key(record.key)
                        if record.value is None:
                            self.txns.pop(txn_id, None)
                        else:
                            self.txns[txn_id] = decode_txn_value(txn_id, record.value)
                    except DecodeError as exc:
                        log.warning("skipping undecodable record at %s-%d offset %d: %s",
                                    TRANSACTION_STATE_TOPIC, index, record.offset, exc)

    # -- InitProducerId ---------------------------------------------------------------------

    async def init_producer_id(self, transactional_id: str, timeout_ms: int,
                               expected_pid: int = -1, expected_epoch: int = -1) -> InitResult:
        result = self._init_producer_id(transactional_id, timeout_ms, expected_pid,
                                        expected_epoch)
        await self._wait_durable()
        return result

    def _init_producer_id(self, txn_id: str, timeout_ms: int, expected_pid: int,
                          expected_epoch: int) -> InitResult:
        if not txn_id or (expected_pid == -1) != (expected_epoch == -1):
            # Kafka: a producer id without an epoch (or the reverse) is INVALID_REQUEST.
            return InitResult(ErrorCode.INVALID_REQUEST)
        if not 0 < timeout_ms <= self.config.max_timeout_ms:
            return InitResult(ErrorCode.INVALID_TRANSACTION_TIMEOUT)
        error = self._owner_error(txn_id)
        if error is not None:
            return InitResult(error)
        now = self.now_ms()
        meta = self.txns.get(txn_id)
        if meta is None:
            meta = TransactionMetadata(txn_id, self._next_producer_id(), NO_PRODUCER_EPOCH,
                                       timeout_ms, last_update_timestamp=now)
        elif expected_pid >= 0 and not (
                meta.producer_epoch == NO_PRODUCER_EPOCH or expected_pid == meta.producer_id
                or (expected_pid == meta.last_producer_id
                    and expected_epoch >= EPOCH_EXHAUSTED)):
            return InitResult(ErrorCode.PRODUCER_FENCED)
        if meta.in_prepare:
            return InitResult(ErrorCode.CONCURRENT_TRANSACTIONS)
        if meta.state == S.ONGOING:
            # Fence the current producer and abort its transaction; the client retries.
            try:
                self._fence_and_abort(meta, now)
            except KafkaError as exc:
                return InitResult(exc.error_code)
            return InitResult(ErrorCode.CONCURRENT_TRANSACTIONS)
        new = copy.deepcopy(meta)
        expected = expected_epoch if expected_pid >= 0 else None
        if meta.producer_epoch >= EPOCH_EXHAUSTED and expected in (None, meta.producer_epoch):
            new.last_producer_id, new.last_producer_epoch = meta.producer_id, meta.producer_epoch
            new.producer_id, new.producer_epoch = self._next_producer_id(), 0
        elif expected is None or meta.producer_epoch == NO_PRODUCER_EPOCH \
                or expected == meta.producer_epoch:
            new.last_producer_id, new.last_producer_epoch = meta.producer_id, meta.producer_epoch
            new.producer_epoch = meta.producer_epoch + 1
        elif expected != meta.last_producer_epoch:
            return InitResult(ErrorCode.PRODUCER_FENCED)
        # else: a retry of a bump whose answer was lost gets the current epoch again
        new.timeout_ms = timeout_ms
        new.partitions = set()
        new.start_timestamp = -1
        new.transition(S.EMPTY, now)
        try:
            self._write(new)
        except KafkaError as exc:
            return InitResult(exc.error_code)
        self.txns[txn_id] = new
        return InitResult(ErrorCode.NONE, new.producer_id, new.producer_epoch)

    # -- adding partitions ------------------------------------------------------------------

    def _check_producer(self, txn_id: str, producer_id: int, producer_epoch: int
                        ) -> tuple[TransactionMetadata | None, ErrorCode | None]:
        error = self._owner_error(txn_id)
        if error is not None:
            return None, error
        meta = self.txns.get(txn_id)
        if meta is None or meta.producer_id != producer_id:
            return None, ErrorCode.INVALID_PRODUCER_ID_MAPPING
        if meta.producer_epoch != producer_epoch:
            return None, ErrorCode.PRODUCER_FENCED
        if meta.in_prepare:
            return None, ErrorCode.CONCURRENT_TRANSACTIONS
        return meta, None

    async def add_partitions(self, txn_id: str, producer_id: int, producer_epoch: int,
                             partitions: Iterable[TopicPartition]
                             ) -> dict[TopicPartition, ErrorCode]:
        """AddPartitionsToTxn: every partition gets the same answer, or UNKNOWN_TOPIC_OR_-
        PARTITION for missing ones with OPERATION_NOT_ATTEMPTED for the rest."""
        wanted = list(partitions)
        unknown = {tp for tp in wanted if not self._partition_exists(*tp)}
        if unknown:
            return {tp: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION if tp in unknown
                    else ErrorCode.OPERATION_NOT_ATTEMPTED for tp in wanted}
        meta, error = self._check_producer(txn_id, producer_id, producer_epoch)
        if error is None and meta is not None:
            error = self._add(meta, wanted)
            await self._wait_durable()
        return dict.fromkeys(wanted, error or ErrorCode.NONE)

    def _add(self, meta: TransactionMetadata, partitions: list[TopicPartition]
             ) -> ErrorCode | None:
        if meta.state == S.ONGOING and meta.partitions.issuperset(partitions):
            return None
        new = copy.deepcopy(meta)
        new.partitions.update(partitions)
        new.transition(S.ONGOING, self.now_ms())
        try:
            self._write(new)
        except KafkaError as exc:
            return exc.error_code
        self.txns[meta.transactional_id] = new
        return None

    def verify(self, txn_id: str, producer_id: int, producer_epoch: int,
               partitions: Iterable[TopicPartition]) -> dict[TopicPartition, ErrorCode]:
        """KIP-890 verification: is each partition in the producer's ongoing transaction?"""
        wanted = list(partitions)
        meta, error = self._check_producer(txn_id, producer_id, producer_epoch)
        if error is not None or meta is None:
            return dict.fromkeys(wanted, error or ErrorCode.INVALID_TXN_STATE)
        ongoing = meta.state == S.ONGOING
        return {tp: ErrorCode.NONE if ongoing and tp in meta.partitions
                else ErrorCode.INVALID_TXN_STATE for tp in wanted}

    def verify_produce(self, txn_id: str, header: BatchHeader, part: Any) -> None:
        """The produce path's check of a transactional batch (raises KafkaError). Fencing
        reads as INVALID_PRODUCER_EPOCH on produce, as Kafka converts it for clients."""
        tp = (part.topic, part.index)
        code = self.verify(txn_id, header.producer_id, header.producer_epoch, [tp])[tp]
        if code == ErrorCode.NONE:
            return
        if code == ErrorCode.PRODUCER_FENCED:
            raise KafkaError(ErrorCode.INVALID_PRODUCER_EPOCH,
                             f"Producer epoch {header.producer_epoch} of transactional id "
                             f"{txn_id} has been fenced")
        if code in (ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE):
            raise KafkaError(ErrorCode.NOT_ENOUGH_REPLICAS, "transaction coordinator unavailable")
        raise KafkaError(ErrorCode.INVALID_TXN_STATE,
                         f"Partition {tp[0]}-{tp[1]} is not in an ongoing transaction of "
                         f"transactional id {txn_id}")

    # -- ending -----------------------------------------------------------------------------

    async def end_txn(self, txn_id: str, producer_id: int, producer_epoch: int,
                      commit: bool) -> ErrorCode:
        error = self._owner_error(txn_id)
        if error is not None:
            return error
        meta = self.txns.get(txn_id)
        if meta is None or meta.producer_id != producer_id:
            return ErrorCode.INVALID_PRODUCER_ID_MAPPING
        if meta.producer_epoch != producer_epoch:
            return ErrorCode.PRODUCER_FENCED
        state = meta.state
        if state == S.ONGOING:
            try:
                self._end(meta, commit)
            except KafkaError as exc:
                return exc.error_code
            await self._wait_durable()
            return ErrorCode.NONE
        if state == (S.COMPLETE_COMMIT if commit else S.COMPLETE_ABORT):
            return ErrorCode.NONE  # a retry of an EndTxn that already completed
        if state == (S.PREPARE_COMMIT if commit else S.PREPARE_ABORT):
            return ErrorCode.CONCURRENT_TRANSACTIONS
        return ErrorCode.INVALID_TXN_STATE

    def prepare_end(self, meta: TransactionMetadata, commit: bool) -> TransactionMetadata:
        """First phase: the PrepareCommit/PrepareAbort record. Raises KafkaError."""
        new = copy.deepcopy(meta)
        new.transition(S.PREPARE_COMMIT if commit else S.PREPARE_ABORT, self.now_ms())
        self._write(new)
        self.txns[meta.transactional_id] = new
        return new

    def _end(self, meta: TransactionMetadata, commit: bool) -> None:
        self._complete(self.prepare_end(meta, commit), commit)

    def _complete(self, prepared: TransactionMetadata, commit: bool) -> None:
        """Second phase: a marker on every partition, then the Complete record."""
        coordinator_epoch = 0
        try:
            coordinator_epoch = int(self.replicas.partition(
                TRANSACTION_STATE_TOPIC,
                self.partition_for(prepared.transactional_id)).leader_epoch)
        except KafkaError:
            pass
        for topic, index in sorted(prepared.partitions):
            try:
                part = self.replicas.partition(topic, index)
            except KafkaError:
                continue  # deleted since it joined the transaction
            try:
                self.replicas.write_marker(part, prepared.producer_id, prepared.producer_epoch,
                                           commit, coordinator_epoch)
            except KafkaError as exc:
                log.error("transaction %s: marker on %s-%d failed: %s",
                          prepared.transactional_id, topic, index, exc)
        done = copy.deepcopy(prepared)
        done.transition(S.COMPLETE_COMMIT if commit else S.COMPLETE_ABORT, self.now_ms())
        done.partitions = set()
        self._write(done)
        self.txns[prepared.transactional_id] = done

    def _fence_and_abort(self, meta: TransactionMetadata, now: int) -> None:
        """Bump the epoch (the current producer is fenced) and abort with the new one."""
        fenced = copy.deepcopy(meta)
        fenced.transition(S.PREPARE_EPOCH_FENCE, now)
        if fenced.producer_epoch < 2**15 - 1:
            fenced.producer_epoch += 1
        fenced.last_producer_id, fenced.last_producer_epoch = -1, NO_PRODUCER_EPOCH
        self._end(fenced, False)

    # -- timers -----------------------------------------------------------------------------

    def abort_timed_out(self) -> int:
        """Abort (fencing their producers) transactions older than their timeout."""
        now = self.now_ms()
        count = 0
        for meta in list(self.txns.values()):
            if meta.state == S.ONGOING and now - meta.start_timestamp > meta.timeout_ms:
                log.info("aborting transaction %s of producer %d: it timed out after %d ms",
                         meta.transactional_id, meta.producer_id, meta.timeout_ms)
                try:
                    self._fence_and_abort(meta, now)
                    count += 1
                except KafkaError as exc:
                    log.warning("could not abort transaction %s: %s",
                                meta.transactional_id, exc)
        return count

    def remove_expired(self) -> int:
        """Forget transactional ids idle for ``transactional.id.expiration.ms``."""
        now = self.now_ms()
        count = 0
        for meta in list(self.txns.values()):
            if meta.completed and now - meta.last_update_timestamp >= \
                    self.config.id_expiration_ms:
                try:
                    self._write(meta, tombstone=True)
                except KafkaError:
                    continue
                del self.txns[meta.transactional_id]
                count += 1
        return count

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        task_status.started()
        next_remove = trio.current_time() + self.config.remove_interval_ms / 1000
        while True:
            await trio.sleep(self.config.abort_interval_ms / 1000)
            self.complete_pending()
            self.abort_timed_out()
            if trio.current_time() >= next_remove:
                next_remove = trio.current_time() + self.config.remove_interval_ms / 1000
                self.remove_expired()
            await self._wait_durable()

    # -- describing -------------------------------------------------------------------------

    def describe(self, txn_id: str) -> tuple[ErrorCode, TransactionMetadata | None]:
        error = self._owner_error(txn_id)
        if error is not None:
            return error, None
        meta = self.txns.get(txn_id)
        if meta is None:
            return ErrorCode.TRANSACTIONAL_ID_NOT_FOUND, None
        return ErrorCode.NONE, meta

    def list_transactions(self, states: set[TxnState], producer_ids: set[int], min_duration_ms: int
             ) -> list[TransactionMetadata]:
        now = self.now_ms()
        out = []
        for meta in self.txns.values():
            if states and meta.state not in states:
                continue
            if producer_ids and meta.producer_id not in producer_ids:
                continue
            if min_duration_ms >= 0 and (meta.state != S.ONGOING
                                         or now - meta.start_timestamp < min_duration_ms):
                continue
            out.append(meta)
        return out
