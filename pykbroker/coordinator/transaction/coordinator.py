"""The transaction coordinator: transactional ids, their epochs, and two-phase completion.

Kafka's TransactionCoordinator. Every state change is written to ``__transaction_state``
first and applied after the write succeeded; start-up replays the topic and finishes what a
crash interrupted (a transaction in PrepareCommit/PrepareAbort gets its markers and its
Complete record). On a single broker ending a transaction is synchronous -- Prepare record, a
marker on every partition, Complete record -- so no request observes it halfway; only the
fsync that ``flush.messages`` may ask for is awaited, after the state is in the log.

In a cluster the coordinator of a transactional id is the leader of its
``__transaction_state`` partition: a broker loads a partition's transactions when it becomes
its leader (completing those in Prepare*) and forgets them when it stops. Markers for
partitions led elsewhere travel through the marker channel (``markers``); EndTxn is answered
once the Prepare record is written, as Kafka does, and the Complete record follows when every
marker is written (meanwhile the producer's next request gets CONCURRENT_TRANSACTIONS).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from pykbroker.coordinator.transaction.metadata import (
    EPOCH_EXHAUSTED,
    NO_PRODUCER_EPOCH,
    TRANSACTION_STATE_TOPIC,
    TopicPartition,
    TransactionMetadata,
    TxnState,
)
from pykbroker.coordinator.transaction.state_log import (
    TopicAccess,
    TransactionStateLog,
    TxnConfig,
    wall_clock_ms,
)
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.records import BatchHeader

if TYPE_CHECKING:  # cluster modules are imported only by cluster members (start-up time)
    from pykbroker.cluster.txn_markers import TxnMarkerChannel
    from pykbroker.cluster.txn_verification import TxnVerifier

__all__ = ["InitResult", "TransactionCoordinator", "TxnConfig", "wall_clock_ms"]

log = logging.getLogger("pykbroker.coordinator.transaction")

S = TxnState


@dataclass(slots=True)
class InitResult:
    error: ErrorCode
    producer_id: int = -1
    producer_epoch: int = -1


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
        self._next_producer_id = next_producer_id
        self._partition_exists = partition_exists
        self.now_ms = now_ms
        self.state_log = TransactionStateLog(
            replicas, config, TopicAccess(topic_partitions, create_topic, partition_exists),
            now_ms)
        self.txns: dict[str, TransactionMetadata] = {}
        # In a cluster (set by the broker): markers go to each partition's leader through
        # this channel, and transactional produces and offset commits on this broker are
        # verified with the transactions' coordinators through the verifier. A single
        # broker leads every partition and writes its markers itself.
        self.markers: TxnMarkerChannel | None = None
        self.verifier: TxnVerifier | None = None
        self._awaiting_replication: set[str] = set()
        self._nursery: trio.Nursery | None = None

    @classmethod
    def for_broker(cls, replicas: Any, topics: Any, get: Callable[[str], object],
                   next_producer_id: Callable[[], int]) -> TransactionCoordinator:
        """Wire to a broker's topic manager and configuration getter."""
        config = TxnConfig.from_getter(get)
        access = TopicAccess.for_broker(topics, config)
        return cls(replicas, config, topic_partitions=access.topic_partitions,
                   create_topic=access.create_topic, next_producer_id=next_producer_id,
                   partition_exists=access.partition_exists)

    @property
    def owned(self) -> set[int]:
        """Partitions of ``__transaction_state`` whose transactional ids are ours."""
        return self.state_log.owned

    def partition_for(self, transactional_id: str) -> int:
        return self.state_log.partition_for(transactional_id)

    def find_coordinator(self, transactional_id: str) -> ErrorCode:
        """FindCoordinator(TRANSACTION): create ``__transaction_state`` on first use."""
        return self.state_log.ensure_topic() or self.state_log.owner_error(transactional_id) \
            or ErrorCode.NONE

    # -- loading ----------------------------------------------------------------------------

    def load(self) -> None:
        """Replay ``__transaction_state`` and finish transactions a crash left in Prepare*."""
        self.state_log.load(self.txns)
        self.complete_pending()
        self.state_log.forget_pending_syncs()  # start-up flushes on its own schedule

    def complete_pending(self, partition: int | None = None) -> int:
        """Finish transactions left in PrepareCommit/PrepareAbort: by a crash (on load), or
        by a failed write of their Complete record (retried from the timer task, as Kafka's
        marker channel retries until it succeeds). Returns how many were completed (in a
        cluster: whose markers were handed to the channel). ``partition`` limits this to the
        transactional ids of one ``__transaction_state`` partition."""
        count = 0
        for meta in list(self.txns.values()):
            if partition is not None and self.partition_for(meta.transactional_id) != partition:
                continue
            if self.markers is not None and (
                    self.markers.pending(meta.transactional_id)
                    or meta.transactional_id in self._awaiting_replication):
                continue  # its markers are on their way
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

    def load_partition(self, index: int) -> None:
        """This broker now leads ``__transaction_state-index`` (a cluster's LeaderAndIsr):
        replay its transactions and complete those left in PrepareCommit/PrepareAbort, with
        markers carrying the new leader epoch as coordinator epoch (Kafka's
        loadTransactionsForTxnTopicPartition). Ongoing ones are aborted by their timeout."""
        loaded: dict[str, TransactionMetadata] = {}
        if not self.state_log.load_partition(index, loaded):
            return  # not its leader (any more)
        self._forget_partition(index)
        self.txns.update(loaded)
        self.state_log.owned.add(index)
        log.info("loaded %d transactional ids from %s-%d", len(loaded),
                 TRANSACTION_STATE_TOPIC, index)
        self.complete_pending(index)

    def unload_partition(self, index: int) -> None:
        """Kafka's onResignation: another broker leads ``__transaction_state-index`` now.
        Its transactions leave memory and their markers stop; the new coordinator finishes
        them."""
        self.state_log.owned.discard(index)
        self._forget_partition(index)

    def _forget_partition(self, index: int) -> None:
        gone = [t for t in self.txns if self.partition_for(t) == index]
        for txn_id in gone:
            del self.txns[txn_id]
        if self.markers is not None:
            self.markers.remove(gone)

    # -- InitProducerId ---------------------------------------------------------------------

    async def init_producer_id(self, transactional_id: str, timeout_ms: int,
                               expected_pid: int = -1, expected_epoch: int = -1) -> InitResult:
        result = self._init_producer_id(transactional_id, timeout_ms, expected_pid,
                                        expected_epoch)
        try:
            await self.state_log.wait_durable()
        except KafkaError as exc:  # not replicated in time (a cluster's acks=-1)
            if result.error == ErrorCode.NONE:
                return InitResult(exc.error_code)
        return result

    def _init_producer_id(self, txn_id: str, timeout_ms: int, expected_pid: int,
                          expected_epoch: int) -> InitResult:
        if not txn_id or (expected_pid == -1) != (expected_epoch == -1):
            # Kafka: a producer id without an epoch (or the reverse) is INVALID_REQUEST.
            return InitResult(ErrorCode.INVALID_REQUEST)
        if not 0 < timeout_ms <= self.config.max_timeout_ms:
            return InitResult(ErrorCode.INVALID_TRANSACTION_TIMEOUT)
        error = self.state_log.owner_error(txn_id)
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
            self.state_log.write(new)
        except KafkaError as exc:
            return InitResult(exc.error_code)
        self.txns[txn_id] = new
        return InitResult(ErrorCode.NONE, new.producer_id, new.producer_epoch)

    # -- adding partitions ------------------------------------------------------------------

    def _check_producer(self, txn_id: str, producer_id: int, producer_epoch: int
                        ) -> tuple[TransactionMetadata | None, ErrorCode | None]:
        error = self.state_log.owner_error(txn_id)
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
            try:
                await self.state_log.wait_durable()
            except KafkaError as exc:
                error = error or exc.error_code
        return dict.fromkeys(wanted, error or ErrorCode.NONE)

    def _add(self, meta: TransactionMetadata, partitions: list[TopicPartition]
             ) -> ErrorCode | None:
        if meta.state == S.ONGOING and meta.partitions.issuperset(partitions):
            return None
        new = copy.deepcopy(meta)
        new.partitions.update(partitions)
        new.transition(S.ONGOING, self.now_ms())
        try:
            self.state_log.write(new)
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
        error = self.state_log.owner_error(txn_id)
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
                await self.state_log.wait_durable()
            except KafkaError as exc:
                return exc.error_code
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
        self.state_log.write(new)
        self.txns[meta.transactional_id] = new
        return new

    def _end(self, meta: TransactionMetadata, commit: bool) -> None:
        prepared = self.prepare_end(meta, commit)
        self._complete(prepared, commit, self.state_log.last_write)

    def _complete(self, prepared: TransactionMetadata, commit: bool,
                  prepare_written: tuple[Any, int] | None = None) -> None:
        """Second phase: a marker on every partition, then the Complete record. In a cluster
        the markers go through the channel, once the Prepare record (``prepare_written``:
        its partition and end offset) is held by every ISR member, as Kafka sends them only
        after its acks=-1 append; the Complete record follows once all are written (at
        once when every partition is led here)."""
        coordinator_epoch = self.state_log.coordinator_epoch(prepared.transactional_id)
        if self.markers is not None:
            part, offset = prepare_written or (None, -1)
            if part is not None and part.high_watermark < offset and self._nursery is not None:
                self._awaiting_replication.add(prepared.transactional_id)
                self._nursery.start_soon(self._send_markers_when_replicated, prepared, commit,
                                         coordinator_epoch, part, offset)
            else:
                self._send_markers(prepared, commit, coordinator_epoch)
            return
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
        self._write_complete(prepared, commit)

    def _send_markers(self, prepared: TransactionMetadata, commit: bool,
                      coordinator_epoch: int) -> None:
        assert self.markers is not None

        def written() -> None:
            self._markers_written(prepared, commit, coordinator_epoch)

        self.markers.send(prepared.transactional_id, prepared.producer_id,
                          prepared.producer_epoch, commit, coordinator_epoch,
                          prepared.partitions, written)

    async def _send_markers_when_replicated(self, prepared: TransactionMetadata, commit: bool,
                                            coordinator_epoch: int, part: Any, offset: int
                                            ) -> None:
        txn_id = prepared.transactional_id
        try:
            while self.txns.get(txn_id) is prepared:
                try:
                    await self.state_log.wait_replicated(part, offset)
                except KafkaError as exc:
                    if exc.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER:
                        return  # its next leader loads the record, if it has it
                    log.warning("transaction %s: %s record not replicated yet (%s)", txn_id,
                                prepared.state.title, exc.error_code.name)
                    if exc.error_code != ErrorCode.REQUEST_TIMED_OUT:
                        await trio.sleep(1.0)  # e.g. NOT_ENOUGH_REPLICAS_AFTER_APPEND
                    continue
                if self.txns.get(txn_id) is prepared:
                    self._send_markers(prepared, commit, coordinator_epoch)
                return
        finally:
            self._awaiting_replication.discard(txn_id)

    def _markers_written(self, prepared: TransactionMetadata, commit: bool,
                         coordinator_epoch: int) -> None:
        """The channel wrote every marker: write the Complete record, unless this broker
        stopped coordinating the transaction meanwhile (Kafka checks the coordinator epoch
        the same way before its maybeWriteTxnCompletion)."""
        txn_id = prepared.transactional_id
        if self.txns.get(txn_id) is not prepared \
                or self.state_log.owner_error(txn_id) is not None \
                or self.state_log.coordinator_epoch(txn_id) != coordinator_epoch:
            log.info("transaction %s moved while its markers were written; its new "
                     "coordinator completes it", txn_id)
            return
        try:
            self._write_complete(prepared, commit)
        except KafkaError as exc:  # retried by complete_pending from the timer task
            log.warning("could not complete transaction %s: %s", txn_id, exc)

    def _write_complete(self, prepared: TransactionMetadata, commit: bool) -> None:
        done = copy.deepcopy(prepared)
        done.transition(S.COMPLETE_COMMIT if commit else S.COMPLETE_ABORT, self.now_ms())
        done.partitions = set()
        self.state_log.write(done)
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
                    self.state_log.write(meta, tombstone=True)
                except KafkaError:
                    continue
                del self.txns[meta.transactional_id]
                count += 1
        return count

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """The timer task (and, in a cluster, the marker channel's sender)."""
        async with trio.open_nursery() as nursery:
            if self.markers is not None:
                await nursery.start(self.markers.run)
                self._nursery = nursery
            task_status.started()
            try:
                await self._timers()
            finally:
                if self.verifier is not None:
                    await self.verifier.aclose()

    async def _timers(self) -> None:
        next_remove = trio.current_time() + self.config.remove_interval_ms / 1000
        while True:
            await trio.sleep(self.config.abort_interval_ms / 1000)
            self.complete_pending()
            self.abort_timed_out()
            if trio.current_time() >= next_remove:
                next_remove = trio.current_time() + self.config.remove_interval_ms / 1000
                self.remove_expired()
            await self.state_log.wait_durable(replicated=False)

    # -- describing -------------------------------------------------------------------------

    def describe(self, txn_id: str) -> tuple[ErrorCode, TransactionMetadata | None]:
        error = self.state_log.owner_error(txn_id)
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
