"""Transaction markers to partition leaders (Kafka's TransactionMarkerChannelManager).

When a transaction ends, its coordinator writes a COMMIT or ABORT marker on every partition
the transaction touched, and only then its CompleteCommit/CompleteAbort record. In a cluster
those partitions are led by several brokers. The channel writes the markers of partitions
this broker leads directly, groups the others by each partition's current leader (the
metadata cache) and sends one WriteTxnMarkers request per broker, one request in flight per
broker, markers of several transactions in one request (as Kafka's sender thread drains its
per-broker queues).

* A partition whose leader is unknown or not alive waits (Kafka's queue for unknown
  brokers); one whose topic is gone is dropped, as Kafka skips "partitions likely deleted".
* NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION, NOT_ENOUGH_REPLICAS(_AFTER_APPEND),
  REQUEST_TIMED_OUT, KAFKA_STORAGE_ERROR and connection failures send the marker again, to
  whichever broker leads the partition then, after a backoff that doubles from
  ``RETRY_BACKOFF_S`` to ``RETRY_BACKOFF_MAX_S``; a metadata change retries at once.
* INVALID_PRODUCER_EPOCH and TRANSACTION_COORDINATOR_FENCED stop the transaction's sending
  without completing it (a newer producer or coordinator has taken over), as Kafka's
  TransactionMarkerRequestCompletionHandler does.
* A transaction is done, and its ``on_done`` called, once every partition's marker is
  written; the coordinator then writes the Complete record.

:class:`MarkerQueue` is the bookkeeping (pure: no I/O, time passed in); :class:`TxnMarkerChannel`
adds the sender task and the connections.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from pykbroker.cluster.broker_client import BrokerConnection, BrokerConnectionError
from pykbroker.error_codes import ErrorCode
from pykbroker.protocol._generated.write_txn_markers_request import (
    WritableTxnMarker,
    WritableTxnMarkerTopic,
    WriteTxnMarkersRequest,
)
from pykbroker.protocol.api import ApiKey

__all__ = [
    "DELETED",
    "NO_LEADER",
    "MarkerQueue",
    "Outcome",
    "TxnMarkerChannel",
    "TxnMarkerEntry",
    "build_request",
    "cache_lookups",
    "classify",
    "response_codes",
]

log = logging.getLogger("pykbroker.cluster.txn_markers")

TopicPartition = tuple[str, int]

WRITE_TXN_MARKERS_VERSION = 1
REQUEST_TIMEOUT_S = 30.0
RETRY_BACKOFF_S = 0.05
RETRY_BACKOFF_MAX_S = 1.0
# How often partitions without a live leader are looked at again when no metadata change
# wakes the channel first.
NO_LEADER_POLL_S = 0.5

# ``leader_of`` answers a broker id, or one of these.
NO_LEADER = -1  # the partition exists but has no live leader now: wait
DELETED = -2  # the partition's topic is gone: nothing to mark


class Outcome(enum.Enum):
    WRITTEN = "written"
    RETRY = "retry"
    STOP = "stop"


_RETRIABLE = frozenset({
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.NOT_LEADER_OR_FOLLOWER,
    ErrorCode.NOT_ENOUGH_REPLICAS, ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    ErrorCode.REQUEST_TIMED_OUT, ErrorCode.KAFKA_STORAGE_ERROR, ErrorCode.NETWORK_EXCEPTION,
})
_STOP = frozenset({
    ErrorCode.INVALID_PRODUCER_EPOCH, ErrorCode.TRANSACTION_COORDINATOR_FENCED,
    # Kafka throws IllegalStateException for these: a marker can never cause them.
    ErrorCode.CORRUPT_MESSAGE, ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.RECORD_LIST_TOO_LARGE,
    ErrorCode.INVALID_REQUIRED_ACKS,
})
# Kafka counts the marker as written where the log cannot hold one (old message formats).
_SKIP = frozenset({ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT, ErrorCode.UNSUPPORTED_VERSION})


def classify(code: ErrorCode) -> Outcome:
    """What a partition's WriteTxnMarkers error means for its marker."""
    if code == ErrorCode.NONE or code in _SKIP:
        return Outcome.WRITTEN
    if code in _STOP:
        return Outcome.STOP
    if code not in _RETRIABLE:
        log.warning("unexpected error %s writing a transaction marker; retrying", code.name)
    return Outcome.RETRY


def backoff(attempts: int) -> float:
    return float(min(RETRY_BACKOFF_S * 2 ** max(attempts - 1, 0), RETRY_BACKOFF_MAX_S))


@dataclass(eq=False)
class TxnMarkerEntry:
    """One ended transaction's markers still to write."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    commit: bool
    coordinator_epoch: int
    pending: set[TopicPartition]
    on_done: Callable[[], None] = lambda: None
    in_flight: set[TopicPartition] = field(default_factory=set)
    retry_at: dict[TopicPartition, float] = field(default_factory=dict)
    attempts: dict[TopicPartition, int] = field(default_factory=dict)

    @property
    def result(self) -> str:
        return "COMMIT" if self.commit else "ABORT"


Batch = list[tuple[TxnMarkerEntry, list[TopicPartition]]]


class MarkerQueue:
    """The markers not yet written, by transactional id."""

    def __init__(self) -> None:
        self.entries: dict[str, TxnMarkerEntry] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, entry: TxnMarkerEntry) -> None:
        """Queue ``entry`` (replacing an older entry of its transactional id); an entry with
        nothing pending is done at once."""
        if not entry.pending:
            self.entries.pop(entry.transactional_id, None)
            _call_done(entry)
            return
        self.entries[entry.transactional_id] = entry

    def is_current(self, entry: TxnMarkerEntry) -> bool:
        return self.entries.get(entry.transactional_id) is entry

    def remove(self, transactional_ids: Iterable[str]) -> int:
        """Stop sending these transactions' markers (their coordinator moved away)."""
        return sum(self.entries.pop(t, None) is not None for t in transactional_ids)

    def ready(self, now: float, destination: Callable[[str, int], int],
              busy: Iterable[int] = ()) -> tuple[dict[int, Batch], bool]:
        """Partitions to send now, by destination broker: not in flight, past their backoff,
        with a live leader not in ``busy`` (one request in flight per broker). Partitions of
        deleted topics are dropped (completing entries they were the last of). The flag says
        whether some partition is waiting for a leader."""
        skip = set(busy)
        out: dict[int, Batch] = {}
        waiting = False
        for entry in list(self.entries.values()):
            by_broker: dict[int, list[TopicPartition]] = {}
            for tp in sorted(entry.pending - entry.in_flight):
                if entry.retry_at.get(tp, -math.inf) > now:
                    continue
                leader = destination(*tp)
                if leader == DELETED:
                    log.info("transaction %s: %s-%d is gone; no %s marker needed",
                             entry.transactional_id, tp[0], tp[1], entry.result)
                    entry.pending.discard(tp)
                elif leader < 0:
                    waiting = True
                elif leader not in skip:
                    by_broker.setdefault(leader, []).append(tp)
            for broker, tps in by_broker.items():
                out.setdefault(broker, []).append((entry, tps))
            if not entry.pending and self.is_current(entry):
                del self.entries[entry.transactional_id]
                _call_done(entry)
        return out, waiting

    def mark_in_flight(self, batch: Batch) -> None:
        for entry, tps in batch:
            entry.in_flight.update(tps)

    def record(self, entry: TxnMarkerEntry, tp: TopicPartition, code: ErrorCode,
               now: float) -> Outcome | None:
        """Apply one partition's result; None when the entry is no longer queued."""
        entry.in_flight.discard(tp)
        if not self.is_current(entry) or tp not in entry.pending:
            return None
        outcome = classify(code)
        if outcome == Outcome.WRITTEN:
            entry.pending.discard(tp)
            entry.retry_at.pop(tp, None)
            entry.attempts.pop(tp, None)
            if not entry.pending:
                del self.entries[entry.transactional_id]
                _call_done(entry)
        elif outcome == Outcome.RETRY:
            attempts = entry.attempts[tp] = entry.attempts.get(tp, 0) + 1
            entry.retry_at[tp] = now + backoff(attempts)
            log.debug("transaction %s: %s marker on %s-%d failed with %s (attempt %d)",
                      entry.transactional_id, entry.result, tp[0], tp[1], code.name, attempts)
        else:
            log.warning("transaction %s: %s marker on %s-%d failed with %s; no more markers "
                        "are sent for it (a newer producer or coordinator took over)",
                        entry.transactional_id, entry.result, tp[0], tp[1], code.name)
            del self.entries[entry.transactional_id]
        return outcome

    def next_retry(self, now: float) -> float | None:
        """The earliest future backoff deadline of a partition not in flight."""
        times = [at for entry in self.entries.values()
                 for tp, at in entry.retry_at.items()
                 if at > now and tp in entry.pending and tp not in entry.in_flight]
        return min(times) if times else None

    def retry_now(self) -> None:
        """Metadata changed (new leaders): forget the backoffs."""
        for entry in self.entries.values():
            entry.retry_at.clear()


def _call_done(entry: TxnMarkerEntry) -> None:
    try:
        entry.on_done()
    except Exception:  # the coordinator's bug must not stop other transactions' markers
        log.exception("completing transaction %s failed", entry.transactional_id)


def build_request(batch: Batch) -> WriteTxnMarkersRequest:
    """One WriteTxnMarkers request: a marker per transaction, its partitions by topic."""
    markers = []
    for entry, tps in batch:
        by_topic: dict[str, list[int]] = {}
        for topic, index in tps:
            by_topic.setdefault(topic, []).append(index)
        markers.append(WritableTxnMarker(
            producer_id=entry.producer_id, producer_epoch=entry.producer_epoch,
            transaction_result=entry.commit,
            topics=[WritableTxnMarkerTopic(name=t, partition_indexes=p)
                    for t, p in by_topic.items()],
            coordinator_epoch=entry.coordinator_epoch))
    return WriteTxnMarkersRequest(markers=markers)


def response_codes(response: Any) -> dict[tuple[int, str, int], ErrorCode]:
    """``(producer id, topic, partition) -> error`` of a WriteTxnMarkers response."""
    out: dict[tuple[int, str, int], ErrorCode] = {}
    for marker in response.markers:
        for topic in marker.topics:
            for p in topic.partitions:
                try:
                    code = ErrorCode(p.error_code)
                except ValueError:
                    code = ErrorCode.UNKNOWN_SERVER_ERROR
                out[(marker.producer_id, topic.name, p.partition_index)] = code
    return out


def cache_lookups(cache: Any, listener: str
                  ) -> tuple[Callable[[str, int], int], Callable[[int], tuple[str, int] | None]]:
    """``leader_of`` and ``endpoint_of`` over a cluster's MetadataCache. A partition the
    cache does not know is DELETED only once the cache holds the cluster (UpdateMetadata
    arrived): a broker just started knows nothing yet, which is not a deletion."""

    def leader_of(topic: str, index: int) -> int:
        meta = cache.topic(topic)
        state = meta.partitions.get(index) if meta is not None else None
        if state is None:
            return DELETED if cache.live_brokers() else NO_LEADER
        return int(state.leader) if state.leader >= 0 else NO_LEADER

    def endpoint_of(broker_id: int) -> tuple[str, int] | None:
        broker = cache.broker(broker_id)
        ep = broker.endpoint(listener) if broker is not None else None
        return None if ep is None else (ep.host, ep.port)

    return leader_of, endpoint_of


class Connection(Protocol):
    async def request(self, api_key: int, api_version: int, body: Any,
                      timeout_s: float = ...) -> Any: ...

    async def close(self) -> None: ...


# Writes one marker on a partition this broker leads: (topic, index, producer id, producer
# epoch, commit, coordinator epoch) -> error code (NOT_LEADER_OR_FOLLOWER when not leader).
LocalWriter = Callable[[str, int, int, int, bool, int], ErrorCode]


class TxnMarkerChannel:
    def __init__(self, node_id: int, leader_of: Callable[[str, int], int],
                 endpoint_of: Callable[[int], tuple[str, int] | None],
                 write_local: LocalWriter, *,
                 connect: Callable[[str, int], Connection] | None = None,
                 changes: Callable[[], Awaitable[None]] | None = None,
                 request_timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.node_id = node_id
        self.leader_of = leader_of
        self.endpoint_of = endpoint_of
        self.write_local = write_local
        client_id = f"broker-{node_id}-txn-markers"
        self._connect: Callable[[str, int], Connection] = connect or (
            lambda host, port: BrokerConnection(host, port, client_id))
        self._changes = changes
        self.request_timeout_s = request_timeout_s
        self.queue = MarkerQueue()
        self._busy: set[int] = set()
        self._connections: dict[int, tuple[tuple[str, int], Connection]] = {}
        self._wake = trio.Event()
        self.requests_sent = 0

    # -- the coordinator's side -------------------------------------------------------------

    def send(self, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool,
             coordinator_epoch: int, partitions: Iterable[TopicPartition],
             on_done: Callable[[], None]) -> None:
        """Write the transaction's markers; ``on_done`` once all are written. Partitions led
        here are written before this returns (all local: ``on_done`` has run too)."""
        entry = TxnMarkerEntry(transactional_id, producer_id, producer_epoch, commit,
                               coordinator_epoch, set(partitions), on_done)
        for tp in sorted(entry.pending):
            code = self._write_local(entry, tp)
            outcome = classify(code)
            if outcome == Outcome.WRITTEN:
                entry.pending.discard(tp)
            elif outcome == Outcome.STOP:
                log.warning("transaction %s: %s marker on %s-%d failed with %s; no more "
                            "markers are sent for it", transactional_id, entry.result, tp[0],
                            tp[1], code.name)
                self.queue.remove([transactional_id])
                return
        self.queue.add(entry)
        if entry.pending:
            self._wake.set()

    def pending(self, transactional_id: str) -> bool:
        return transactional_id in self.queue.entries

    def remove(self, transactional_ids: Iterable[str]) -> int:
        return self.queue.remove(transactional_ids)

    # -- the sender -------------------------------------------------------------------------

    def _write_local(self, entry: TxnMarkerEntry, tp: TopicPartition) -> ErrorCode:
        return self.write_local(tp[0], tp[1], entry.producer_id, entry.producer_epoch,
                                entry.commit, entry.coordinator_epoch)

    def _destination(self, topic: str, index: int) -> int:
        leader = self.leader_of(topic, index)
        if leader >= 0 and leader != self.node_id and self.endpoint_of(leader) is None:
            return NO_LEADER  # known leader, not alive: Kafka's unknown-broker queue
        return leader

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        try:
            async with trio.open_nursery() as nursery:
                if self._changes is not None:
                    nursery.start_soon(self._watch_changes)
                task_status.started()
                while True:
                    waiting = self._round(nursery)
                    await self._sleep(waiting)
        finally:
            with trio.CancelScope(shield=True):
                for _, conn in self._connections.values():
                    await conn.close()
                self._connections.clear()

    def _round(self, nursery: trio.Nursery) -> bool:
        now = trio.current_time()
        batches, waiting = self.queue.ready(now, self._destination, self._busy)
        for broker, batch in batches.items():
            if broker == self.node_id:
                for entry, tps in batch:
                    for tp in tps:
                        self.queue.record(entry, tp, self._write_local(entry, tp), now)
                continue
            endpoint = self.endpoint_of(broker)
            if endpoint is None:
                waiting = True
                continue
            self.queue.mark_in_flight(batch)
            self._busy.add(broker)
            nursery.start_soon(self._send_batch, broker, endpoint, batch)
        return waiting

    async def _sleep(self, waiting: bool) -> None:
        now = trio.current_time()
        deadline = self.queue.next_retry(now)
        timeout = math.inf if deadline is None else deadline - now
        if waiting:
            timeout = min(timeout, NO_LEADER_POLL_S)
        with trio.move_on_after(timeout):
            await self._wake.wait()
        self._wake = trio.Event()

    async def _watch_changes(self) -> None:
        assert self._changes is not None
        while True:
            await self._changes()
            if self.queue.entries:
                self.queue.retry_now()
                self._wake.set()

    async def _connection(self, broker: int, endpoint: tuple[str, int]) -> Connection:
        known = self._connections.get(broker)
        if known is not None and known[0] == endpoint:
            return known[1]
        if known is not None:  # the broker came back on another address
            await known[1].close()
        conn = self._connect(*endpoint)
        self._connections[broker] = (endpoint, conn)
        return conn

    async def _send_batch(self, broker: int, endpoint: tuple[str, int], batch: Batch) -> None:
        codes: dict[tuple[int, str, int], ErrorCode] = {}
        try:
            conn = await self._connection(broker, endpoint)
            self.requests_sent += 1
            response = await conn.request(ApiKey.WRITE_TXN_MARKERS, WRITE_TXN_MARKERS_VERSION,
                                          build_request(batch), self.request_timeout_s)
            codes = response_codes(response)
        except BrokerConnectionError as exc:
            log.info("WriteTxnMarkers to broker %d failed (%s); retrying", broker, exc)
        except Exception:  # a bug here must not end the broker: retry as for a failure
            log.exception("WriteTxnMarkers to broker %d failed", broker)
        finally:
            self._busy.discard(broker)
            now = trio.current_time()
            for entry, tps in batch:
                for tp in tps:
                    self.queue.record(entry, tp, codes.get((entry.producer_id, *tp),
                                                           ErrorCode.NETWORK_EXCEPTION), now)
            self._wake.set()
