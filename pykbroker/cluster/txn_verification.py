"""KIP-890 part 1 in a cluster: a partition leader verifies a transactional batch with the
transaction coordinator before appending it (Kafka's AddPartitionsToTxnManager).

The coordinator may be another broker, and asking it takes a network round trip, while an
append never awaits. So verification is split as Kafka splits it:

* :meth:`TxnVerifier.verify` (async, before the append) asks the coordinator with
  AddPartitionsToTxn v4 ``verify_only`` about the partitions that need it, and leaves a
  *verification guard* per (producer id, partition) holding the producer epoch;
* :meth:`TxnVerifier.check_produce` (sync, in the append) accepts a batch whose producer
  already has an open transaction on the partition at that epoch (Kafka's
  ``hasOngoingTransaction``: no verification needed), or whose guard was verified.

A transaction marker on the partition removes the producer's guard, so a verification that
was answered before the transaction ended can never let a batch into the next one (the
hanging transaction KIP-890 closes); a second request for a partition being verified waits
for the first's answer instead of asking again. Errors are Kafka's: PRODUCER_FENCED reads
INVALID_PRODUCER_EPOCH, and the retriable ones (CONCURRENT_TRANSACTIONS, NETWORK_EXCEPTION,
COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR) NOT_ENOUGH_REPLICAS
on produce, which every client retries without refreshing metadata.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import trio

from pykbroker.cluster.broker_client import BrokerConnection, BrokerConnectionError
from pykbroker.cluster.txn_markers import Connection
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.protocol._generated.add_partitions_to_txn_request import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnTopic,
    AddPartitionsToTxnTransaction,
)
from pykbroker.protocol.api import ApiKey

__all__ = ["TxnVerifier", "produce_error"]

log = logging.getLogger("pykbroker.cluster.txn_verification")

TopicPartition = tuple[str, int]
Key = tuple[int, str, int]  # producer id, topic, partition

ADD_PARTITIONS_VERSION = 4  # the first with verify_only (KIP-890)
REQUEST_TIMEOUT_S = 30.0
MAX_IDLE_CONNECTIONS = 4
MAX_REMEMBERED_FAILURES = 10_000

_RETRIABLE_ON_PRODUCE = frozenset({
    ErrorCode.CONCURRENT_TRANSACTIONS, ErrorCode.NETWORK_EXCEPTION,
    ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_COORDINATOR,
})


def produce_error(code: ErrorCode) -> ErrorCode:
    """What a producer is told when its batch failed verification (Kafka's ReplicaManager:
    retriable coordinator errors become NOT_ENOUGH_REPLICAS, which older clients retry)."""
    return ErrorCode.NOT_ENOUGH_REPLICAS if code in _RETRIABLE_ON_PRODUCE else code


def _normalise(code: ErrorCode) -> ErrorCode:
    """AddPartitionsToTxnManager's view of the coordinator's answer."""
    if code == ErrorCode.PRODUCER_FENCED:
        return ErrorCode.INVALID_PRODUCER_EPOCH
    if code in (ErrorCode.TRANSACTION_ABORTABLE, ErrorCode.CLUSTER_AUTHORIZATION_FAILED):
        return ErrorCode.INVALID_TXN_STATE
    return code


class _Guard:
    """One verification of (producer id, partition) at ``epoch``: asked, then answered."""

    __slots__ = ("epoch", "code", "answered")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.code: ErrorCode | None = None
        self.answered = trio.Event()

    @property
    def verified(self) -> bool:
        return self.code == ErrorCode.NONE


class TxnVerifier:
    def __init__(self, node_id: int, replicas: Any,
                 coordinator_of: Callable[[str], tuple[int, str, int] | None],
                 local_verify: Callable[[str, int, int, list[TopicPartition]],
                                        dict[TopicPartition, ErrorCode]], *,
                 enabled: Callable[[], bool] = lambda: True,
                 connect: Callable[[str, int], Connection] | None = None,
                 request_timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.node_id = node_id
        self.replicas = replicas
        self.coordinator_of = coordinator_of
        self.local_verify = local_verify
        self.enabled = enabled
        client_id = f"broker-{node_id}-txn-verification"
        self._connect: Callable[[str, int], Connection] = connect or (
            lambda host, port: BrokerConnection(host, port, client_id))
        self.request_timeout_s = request_timeout_s
        self._guards: dict[Key, _Guard] = {}
        self._failed: dict[Key, tuple[int, ErrorCode]] = {}
        self._idle: dict[tuple[str, int], list[Connection]] = {}
        self.requests_sent = 0

    # -- the append's check -----------------------------------------------------------------

    @staticmethod
    def _ongoing(part: Any, producer_id: int, producer_epoch: int) -> bool:
        entry = part.log.producer_state.producers.get(producer_id)
        return entry is not None and entry.current_txn_first_offset >= 0 \
            and entry.epoch == producer_epoch

    def is_verified(self, part: Any, producer_id: int, producer_epoch: int) -> bool:
        if self._ongoing(part, producer_id, producer_epoch):
            return True
        guard = self._guards.get((producer_id, part.topic, part.index))
        return guard is not None and guard.verified and guard.epoch == producer_epoch

    def check_code(self, transactional_id: str, producer_id: int, producer_epoch: int,
                   tp: TopicPartition) -> ErrorCode:
        """The result of the verification :meth:`verify` made for this batch (or commit):
        NONE, or the error the coordinator's answer gave (INVALID_TXN_STATE if none was
        asked, or a marker ended the transaction while it was)."""
        if not self.enabled():
            return ErrorCode.NONE
        part = self.replicas.partitions.get(tp)
        if part is not None and self.is_verified(part, producer_id, producer_epoch):
            return ErrorCode.NONE
        failed = self._failed.get((producer_id, *tp))
        if failed is not None and failed[0] == producer_epoch:
            return failed[1]
        return ErrorCode.INVALID_TXN_STATE

    def check_produce(self, transactional_id: str, header: Any, part: Any) -> None:
        """ReplicaManager.verify_transaction: raises Kafka's error for an unverified batch."""
        code = self.check_code(transactional_id, header.producer_id, header.producer_epoch,
                               (part.topic, part.index))
        if code == ErrorCode.NONE:
            return
        if code == ErrorCode.INVALID_TXN_STATE:
            message = (f"Partition {part.topic}-{part.index} was not added to the transaction "
                       f"of transactional id {transactional_id}")
        else:
            message = (f"Unable to verify that partition {part.topic}-{part.index} was added "
                       f"to the transaction of {transactional_id}: {code.name}")
        raise KafkaError(produce_error(code), message)

    def on_marker(self, part: Any, producer_id: int, commit: bool) -> None:
        """Replica-manager marker listener: the transaction ended on this partition, so the
        next batch of this producer here starts a new one and needs a new verification."""
        key = (producer_id, part.topic, part.index)
        self._guards.pop(key, None)
        self._failed.pop(key, None)

    def forget_partition(self, topic: str, index: int) -> None:
        """Leadership of the partition changed: markers written meanwhile by another leader
        reached this broker's log as a follower, without clearing guards; verify again."""
        for key in [k for k in self._guards if k[1] == topic and k[2] == index]:
            del self._guards[key]

    # -- asking the coordinator -------------------------------------------------------------

    async def verify(self, transactional_id: str, producer_id: int, producer_epoch: int,
                     partitions: Iterable[TopicPartition]) -> dict[TopicPartition, ErrorCode]:
        """Verify the partitions (led here) that need it; returns their results."""
        if not self.enabled():
            return {}
        asked: dict[TopicPartition, _Guard] = {}
        waiting: dict[TopicPartition, _Guard] = {}
        for tp in dict.fromkeys(partitions):
            part = self.replicas.partitions.get(tp)
            if part is None or not part.is_leader:
                continue  # the append answers NOT_LEADER_OR_FOLLOWER
            if self._ongoing(part, producer_id, producer_epoch):
                continue
            key = (producer_id, *tp)
            guard = self._guards.get(key)
            if guard is not None and guard.epoch == producer_epoch and (
                    guard.verified or guard.code is None):
                if guard.code is None:
                    waiting[tp] = guard  # another request is asking already
                continue
            guard = self._guards[key] = _Guard(producer_epoch)
            self._failed.pop(key, None)
            asked[tp] = guard
        results: dict[TopicPartition, ErrorCode] = {}
        if asked:
            codes: dict[TopicPartition, ErrorCode] = {}
            try:
                codes = await self._ask(transactional_id, producer_id, producer_epoch,
                                        list(asked))
            finally:
                for tp, guard in asked.items():
                    key = (producer_id, *tp)
                    code = codes.get(tp, ErrorCode.NETWORK_EXCEPTION)
                    if self._guards.get(key) is not guard and code == ErrorCode.NONE:
                        code = ErrorCode.INVALID_TXN_STATE  # a marker came meanwhile
                    guard.code = results[tp] = code
                    guard.answered.set()
                    if code != ErrorCode.NONE:
                        if self._guards.get(key) is guard:
                            del self._guards[key]
                        self._remember_failure(key, producer_epoch, code)
        for tp, guard in waiting.items():
            await guard.answered.wait()
            assert guard.code is not None
            results[tp] = guard.code
        return results

    def _remember_failure(self, key: Key, epoch: int, code: ErrorCode) -> None:
        if len(self._failed) >= MAX_REMEMBERED_FAILURES:
            self._failed.clear()
        self._failed[key] = (epoch, code)

    async def _ask(self, transactional_id: str, producer_id: int, producer_epoch: int,
                   partitions: list[TopicPartition]) -> dict[TopicPartition, ErrorCode]:
        coordinator = self.coordinator_of(transactional_id)
        if coordinator is None:
            return dict.fromkeys(partitions, ErrorCode.COORDINATOR_NOT_AVAILABLE)
        node, host, port = coordinator
        if node == self.node_id:
            local = self.local_verify(transactional_id, producer_id, producer_epoch,
                                      partitions)
            return {tp: _normalise(code) for tp, code in local.items()}
        by_topic: dict[str, list[int]] = {}
        for topic, index in partitions:
            by_topic.setdefault(topic, []).append(index)
        request = AddPartitionsToTxnRequest(transactions=[AddPartitionsToTxnTransaction(
            transactional_id=transactional_id, producer_id=producer_id,
            producer_epoch=producer_epoch, verify_only=True,
            topics=[AddPartitionsToTxnTopic(name=t, partitions=p)
                    for t, p in by_topic.items()])])
        endpoint = (host, port)
        idle = self._idle.setdefault(endpoint, [])
        conn = idle.pop() if idle else self._connect(host, port)
        try:
            self.requests_sent += 1
            response = await conn.request(ApiKey.ADD_PARTITIONS_TO_TXN,
                                          ADD_PARTITIONS_VERSION, request,
                                          self.request_timeout_s)
        except BrokerConnectionError as exc:
            log.info("verifying transaction %s with broker %d failed: %s", transactional_id,
                     node, exc)
            return dict.fromkeys(partitions, ErrorCode.NETWORK_EXCEPTION)
        except BaseException:
            with trio.CancelScope(shield=True):
                await conn.close()
            raise
        if len(idle) < MAX_IDLE_CONNECTIONS:
            idle.append(conn)
        else:
            await conn.close()
        if response.error_code:
            return dict.fromkeys(partitions, _normalise(_code(response.error_code)))
        found: dict[TopicPartition, ErrorCode] = {}
        for txn in response.results_by_transaction:
            if txn.transactional_id != transactional_id:
                continue
            for topic in txn.topic_results:
                for p in topic.results_by_partition:
                    found[(topic.name, p.partition_index)] = _normalise(
                        _code(p.partition_error_code))
        # A partition the coordinator did not answer about was not verified.
        return {tp: found.get(tp, ErrorCode.INVALID_TXN_STATE) for tp in partitions}

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        with trio.CancelScope(shield=True):
            for conns in idle.values():
                for conn in conns:
                    await conn.close()


def _code(value: int) -> ErrorCode:
    try:
        return ErrorCode(value)
    except ValueError:
        return ErrorCode.UNKNOWN_SERVER_ERROR
