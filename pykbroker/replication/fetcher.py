"""Followers' replica fetchers: one task per leader broker carrying every partition this
broker follows there (Kafka's ReplicaFetcherThread, ``num.replica.fetchers`` = 1).

Each round sends one Fetch (v15, ``replica_state`` = this broker's id and epoch) with, per
partition, the follower's log end offset and the epoch of its last batch. Records come back
with the leader's offsets and epochs and are appended as they are; the follower's high
watermark follows the leader's. A diverging epoch in the answer (KIP-320) truncates the
follower's log to where it and the leader agree before it fetches again; an out-of-range
offset resets it from the leader's log start or end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from pykbroker.cluster.broker_client import BrokerConnection, BrokerConnectionError
from pykbroker.cluster.fetch_session import INITIAL_EPOCH
from pykbroker.cluster.replica_manager import Partition
from pykbroker.error_codes import ErrorCode
from pykbroker.protocol._generated.fetch_request import (
    FetchPartition,
    FetchRequest,
    FetchTopic,
    ForgottenTopic,
    ReplicaState,
)
from pykbroker.protocol._generated.list_offsets_request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from pykbroker.protocol.api import ApiKey
from pykbroker.timers import call_after

if TYPE_CHECKING:
    from pykbroker.config.topic import BrokerSettings

log = logging.getLogger("pykbroker.replication.fetcher")

FETCH_VERSION = 15
LIST_OFFSETS_VERSION = 7
EARLIEST, LATEST = -2, -1
FETCH_TIMEOUT_S = 30.0  # beyond replica.fetch.wait.max.ms (Kafka's replica.socket.timeout.ms)
WALK_EVERY_S = 1.0  # every followed partition's fetch state is looked at this often
TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class FetcherSettings:
    """``replica.fetch.*`` settings."""

    max_bytes: int = 1_048_576          # replica.fetch.max.bytes (per partition)
    response_max_bytes: int = 10_485_760  # replica.fetch.response.max.bytes
    wait_max_ms: int = 500              # replica.fetch.wait.max.ms
    min_bytes: int = 1                  # replica.fetch.min.bytes
    backoff_ms: int = 1000              # replica.fetch.backoff.ms
    receive_buffer_bytes: int = -1      # replica.socket.receive.buffer.bytes (-1: the OS's)

    @classmethod
    def from_config(cls, config: BrokerSettings) -> FetcherSettings:
        def num(key: str) -> int:
            return int(str(config.get(key)))

        return cls(num("replica.fetch.max.bytes"), num("replica.fetch.response.max.bytes"),
                   num("replica.fetch.wait.max.ms"), num("replica.fetch.min.bytes"),
                   num("replica.fetch.backoff.ms"), num("replica.socket.receive.buffer.bytes"))


def truncation_offset(part: Partition, epoch: int, end_offset: int) -> int:
    """Where a follower stops agreeing with its leader, given the leader's answer for the
    follower's last epoch (Kafka's getOffsetTruncationState)."""
    log_end = int(part.log.log_end_offset)
    follower_epoch, follower_end = part.log.end_offset_for_epoch(epoch)
    follower_end = int(follower_end)
    if follower_epoch == epoch:
        return min(end_offset, follower_end, log_end)
    if follower_end >= 0:
        return min(follower_end, log_end)
    return min(part.high_watermark, log_end)


class ReplicaFetcher:
    """The fetcher for one leader broker."""

    def __init__(self, manager: ReplicaFetcherManager, leader_id: int) -> None:
        self.manager = manager
        self.leader_id = leader_id
        self.partitions: set[TopicPartition] = set()
        self.delayed: dict[TopicPartition, float] = {}
        self.last_error: dict[TopicPartition, ErrorCode] = {}
        self.changed = trio.Event()
        self.cancel = trio.CancelScope()
        self._connection: BrokerConnection | None = None
        self._endpoint: tuple[str, int] | None = None
        # The incremental fetch session (KIP-227) with the leader: its id (0: none yet, the
        # next fetch is a full one), the epoch the next fetch carries, and what the leader
        # holds of each partition (as last sent), so that a fetch names only what changed.
        self._session_id = 0
        self._session_epoch = INITIAL_EPOCH
        self._sent: dict[tuple[Any, int], tuple[int, ...]] = {}
        # The partitions fetched now, by (topic id, index), worked out again only when the
        # set or a role changes (follow/unfollow), a partition is delayed or its delay ends:
        # not at every fetch. The fetch state (log end, epochs, log start) of a partition
        # changes when an answer about it is applied ("touched"); every partition's state
        # is looked at again when the set changes and at least once a second (retention
        # moves a follower's log start on its own).
        self._parts: dict[tuple[Any, int], Partition] | None = None
        self._parts_until = float("inf")  # when a delay ends, the set changes
        self._touched: set[tuple[Any, int]] = set()
        self._walk_all = True
        self._next_walk = 0.0

    def _reset_session(self) -> None:
        """The next fetch is a full one (and asks for a new session)."""
        self._session_id, self._session_epoch, self._sent = 0, INITIAL_EPOCH, {}

    def invalidate(self) -> None:
        """The partitions to fetch must be worked out again (the set or a role changed)."""
        self._parts = None

    def _partitions(self) -> dict[tuple[Any, int], Partition]:
        """The partitions to fetch now (followed from this leader, not delayed), by key."""
        now = trio.current_time()
        if self._parts is not None and now < self._parts_until:
            return self._parts
        replicas = self.manager.replicas
        out: dict[tuple[Any, int], Partition] = {}
        until = float("inf")
        for tp in sorted(self.partitions):
            part = replicas.partitions.get(tp)
            if part is None or part.is_leader or part.leader_id != self.leader_id:
                continue
            delayed = self.delayed.get(tp, 0.0)
            if delayed > now:
                until = min(until, delayed)
                continue
            out[(part.topic_id, part.index)] = part
        self._parts, self._parts_until, self._walk_all = out, until, True
        return out

    def _connection_for(self) -> BrokerConnection | None:
        broker = self.manager.cache.broker(self.leader_id)
        ep = broker.endpoint(self.manager.listener) if broker is not None else None
        if ep is None:
            return None
        if self._connection is None or self._endpoint != (ep.host, ep.port):
            self._reset_session()
            self._connection = BrokerConnection(
                ep.host, ep.port, f"broker-{self.manager.node_id}-fetcher",
                receive_buffer_bytes=self.manager.settings.receive_buffer_bytes)
            self._endpoint = (ep.host, ep.port)
        return self._connection

    async def run(self) -> None:
        settings = self.manager.settings
        with self.cancel:
            while True:
                # One cancel scope for the fetches' time limit, cancelled by a timer that
                # each fetch sets (pykbroker.timers): entering a scope per fetch, or moving
                # this one's deadline twice per fetch, cost ~3 % of a follower's CPU.
                with trio.CancelScope() as limit:
                    await self._fetch_loop(limit, settings)
                log.info("fetch from broker %d failed: no answer within %.0f s", self.leader_id,
                         settings.wait_max_ms / 1000.0 + FETCH_TIMEOUT_S)
                await self._drop_connection()
                await trio.sleep(settings.backoff_ms / 1000.0)

    async def _fetch_loop(self, limit: trio.CancelScope, settings: FetcherSettings) -> None:
        """Fetch until cancelled: by ``self.cancel`` (this fetcher stops) or ``limit``, by
        the timer set while a fetch is out (the leader did not answer in time)."""
        while True:
            parts = self._partitions()
            if not parts:
                self.changed = trio.Event()
                with trio.move_on_after(settings.backoff_ms / 1000.0 if self.delayed
                                        else 3600):
                    await self.changed.wait()
                continue
            connection = self._connection_for()
            if connection is None:
                await trio.sleep(settings.backoff_ms / 1000.0)
                continue
            request = self._request(parts)
            timer = call_after(settings.wait_max_ms / 1000.0 + FETCH_TIMEOUT_S, limit.cancel)
            try:
                try:
                    # The records are views of the connection's kept buffer: _process
                    # appends them before the next fetch overwrites it.
                    response = await connection.request(ApiKey.FETCH, FETCH_VERSION, request,
                                                        timeout_s=None, reuse_buffer=True)
                finally:
                    timer.cancel()
            except BrokerConnectionError as exc:
                log.info("fetch from broker %d failed: %s", self.leader_id, exc)
                self._reset_session()
                await trio.sleep(settings.backoff_ms / 1000.0)
                continue
            if not self._on_session_answer(response):
                continue
            await self._process(parts, response)

    async def _drop_connection(self) -> None:
        """Close the connection (a fetch was cut off mid-answer) and start a new session."""
        connection, self._connection = self._connection, None
        self._reset_session()
        if connection is not None:
            await connection.close()

    def _request(self, parts: Mapping[tuple[Any, int], Partition] | Iterable[Partition]
                 ) -> FetchRequest:
        """A full fetch of ``parts`` without a session, else an incremental one: only the
        partitions whose fetch state differs from what the leader's session holds, and
        those no longer fetched as forgotten. Between walks of every partition, only those
        touched since the last fetch are looked at."""
        settings = self.manager.settings
        full = self._session_id == 0
        by_key = parts if isinstance(parts, Mapping) else {
            (p.topic_id, p.index): p for p in parts}
        now = time.monotonic()
        walk = full or self._walk_all or now >= self._next_walk or len(by_key) != len(
            self._sent)
        sent: dict[tuple[Any, int], tuple[int, ...]] = {}
        parts = by_key.values()
        if walk:
            self._walk_all, self._next_walk = False, now + WALK_EVERY_S
        else:  # the state of the others is as last sent
            sent = self._sent
            parts = [by_key[key] for key in self._touched if key in by_key]
        self._touched = set()
        topics: dict[str, FetchTopic] = {}
        for part in parts:
            last_epoch = part.log.leader_epoch_cache.latest_epoch()
            state = (part.leader_epoch, int(part.log.log_end_offset),
                     -1 if last_epoch is None else last_epoch, int(part.log.log_start_offset),
                     settings.max_bytes)
            key = (part.topic_id, part.index)
            before = self._sent.get(key)
            sent[key] = state
            if not full and before == state:
                continue
            topic = topics.get(part.topic)
            if topic is None:
                topic = topics[part.topic] = FetchTopic(topic=part.topic,
                                                       topic_id=part.topic_id, partitions=[])
            topic.partitions.append(FetchPartition(
                partition=part.index, current_leader_epoch=state[0], fetch_offset=state[1],
                last_fetched_epoch=state[2], log_start_offset=state[3],
                partition_max_bytes=state[4]))
        forgotten: dict[Any, ForgottenTopic] = {}
        if walk and not full:
            for topic_id, index in self._sent.keys() - sent.keys():
                gone = forgotten.get(topic_id)
                if gone is None:
                    gone = forgotten[topic_id] = ForgottenTopic(topic="", topic_id=topic_id,
                                                                partitions=[])
                gone.partitions.append(index)
        self._sent = sent
        return FetchRequest(
            cluster_id=None, replica_id=-1,
            replica_state=ReplicaState(replica_id=self.manager.node_id,
                                       replica_epoch=self.manager.broker_epoch()),
            max_wait_ms=settings.wait_max_ms, min_bytes=settings.min_bytes,
            max_bytes=settings.response_max_bytes, isolation_level=0,
            session_id=self._session_id, session_epoch=self._session_epoch,
            topics=list(topics.values()), forgotten_topics_data=list(forgotten.values()),
            rack_id="")

    def _on_session_answer(self, response: Any) -> bool:
        """Follow the session the answer names; False (and a full fetch next) when the
        leader refused the fetch as a whole (FETCH_SESSION_ID_NOT_FOUND after a restart,
        INVALID_FETCH_SESSION_EPOCH, ...)."""
        if response.error_code:
            log.info("fetch from broker %d: %s; starting a new fetch session", self.leader_id,
                     ErrorCode(response.error_code).name)
            self._reset_session()
            return False
        if self._session_id == 0:
            if response.session_id:  # the leader opened a session: fetches are incremental
                self._session_id, self._session_epoch = response.session_id, 1
            else:  # no session (the leader's cache is full): every fetch stays a full one
                self._sent = {}
        else:
            epoch = self._session_epoch
            self._session_epoch = epoch + 1 if epoch < 2**31 - 1 else 1
        return True

    async def _process(self, by_key: dict[tuple[Any, int], Partition], response: Any) -> None:
        touched = self._touched
        for topic in response.responses:
            for data in topic.partitions:
                key = (topic.topic_id, data.partition_index)
                part = by_key.get(key)
                if part is None or part.is_leader or part.leader_id != self.leader_id:
                    continue  # its role changed while the fetch was out
                touched.add(key)
                try:
                    await self._apply(part, data)
                except Exception as exc:  # one bad partition must not stop the others
                    log.warning("replicating %s-%d from broker %d failed: %r", part.topic,
                                part.index, self.leader_id, exc)
                    self._delay((part.topic, part.index))

    def _delay(self, tp: TopicPartition) -> None:
        self.delayed[tp] = trio.current_time() + self.manager.settings.backoff_ms / 1000.0
        self.invalidate()

    async def _apply(self, part: Partition, data: Any) -> None:
        code = ErrorCode(data.error_code)
        tp = (part.topic, part.index)
        if code == ErrorCode.OFFSET_OUT_OF_RANGE:
            await self._reset_out_of_range(part)
            return
        if code != ErrorCode.NONE:
            # NOT_LEADER_OR_FOLLOWER, FENCED/UNKNOWN_LEADER_EPOCH...: the controller's next
            # LeaderAndIsr settles it; try again after the back-off.
            if self.last_error.get(tp) != code:  # once per change, not once per back-off
                self.last_error[tp] = code
                log.info("fetch of %s-%d from broker %d: %s; retrying", part.topic,
                         part.index, self.leader_id, code.name)
            self._delay(tp)
            return
        self.last_error.pop(tp, None)
        if self.delayed.pop(tp, None) is not None:
            self.invalidate()
        diverging = data.diverging_epoch
        if diverging is not None and (diverging.epoch >= 0 or diverging.end_offset >= 0):
            offset = truncation_offset(part, diverging.epoch, diverging.end_offset)
            log.info("truncating %s-%d to %d: it diverges from leader %d at epoch %d (end "
                     "offset %d)", part.topic, part.index, offset, self.leader_id,
                     diverging.epoch, diverging.end_offset)
            part.log.truncate_to(offset)
            return
        records = data.records
        if records is not None and len(records):
            part.log.append_as_follower(bytes(records) if not isinstance(
                records, (bytes, bytearray, memoryview)) else records)
        if data.log_start_offset > part.log.log_start_offset and \
                data.log_start_offset <= part.log.log_end_offset:
            part.log.delete_records_before(data.log_start_offset)
        if part.set_follower_high_watermark(int(data.high_watermark)):
            part.wake()  # consumers long-polling on this follower (KIP-392)

    async def _reset_out_of_range(self, part: Partition) -> None:
        """Kafka's handleOutOfRangeError: a follower ahead of its leader's end truncates to
        it; one behind its leader's start starts over there."""
        connection = self._connection_for()
        if connection is None:
            return
        earliest = await self._leader_offset(connection, part, EARLIEST)
        latest = await self._leader_offset(connection, part, LATEST)
        leo = int(part.log.log_end_offset)
        if latest >= 0 and leo > latest:
            log.info("truncating %s-%d to the leader's end %d", part.topic, part.index, latest)
            part.log.truncate_to(latest)
        elif earliest >= 0 and leo < earliest:
            log.info("restarting %s-%d at the leader's start %d", part.topic, part.index,
                     earliest)
            part.log.truncate_fully_and_start_at(earliest)
        else:
            self._delay((part.topic, part.index))

    async def _leader_offset(self, connection: BrokerConnection, part: Partition,
                             timestamp: int) -> int:
        request = ListOffsetsRequest(
            replica_id=self.manager.node_id, isolation_level=0, topics=[ListOffsetsTopic(
                name=part.topic, partitions=[ListOffsetsPartition(
                    partition_index=part.index, current_leader_epoch=part.leader_epoch,
                    timestamp=timestamp)])])
        try:
            response = await connection.request(ApiKey.LIST_OFFSETS, LIST_OFFSETS_VERSION,
                                                 request)
            result = response.topics[0].partitions[0]
            return int(result.offset) if result.error_code == 0 else -1
        except (BrokerConnectionError, IndexError):
            return -1


class ReplicaFetcherManager:
    """Which leader each followed partition is fetched from (Kafka's ReplicaFetcherManager)."""

    def __init__(self, node_id: int, broker_epoch: Callable[[], int], replicas: Any,
                 cache: Any, listener: str, settings: Callable[[], FetcherSettings]) -> None:
        self.node_id = node_id
        self.broker_epoch = broker_epoch
        self.replicas = replicas
        self.cache = cache
        self.listener = listener
        self._settings = settings
        self.fetchers: dict[int, ReplicaFetcher] = {}
        self._where: dict[TopicPartition, int] = {}
        self._nursery: trio.Nursery | None = None

    @property
    def settings(self) -> FetcherSettings:
        return self._settings()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def follow(self, part: Partition) -> None:
        """Fetch ``part`` from its leader (after LeaderAndIsr made this broker a follower)."""
        tp = (part.topic, part.index)
        self.unfollow(tp)
        if self._nursery is None or part.leader_id < 0:
            return
        fetcher = self.fetchers.get(part.leader_id)
        if fetcher is None:
            fetcher = self.fetchers[part.leader_id] = ReplicaFetcher(self, part.leader_id)
            self._nursery.start_soon(fetcher.run)
        fetcher.partitions.add(tp)
        fetcher.delayed.pop(tp, None)
        fetcher.invalidate()
        self._where[tp] = part.leader_id
        fetcher.changed.set()

    def unfollow(self, tp: TopicPartition) -> None:
        leader = self._where.pop(tp, None)
        fetcher = self.fetchers.get(leader) if leader is not None else None
        if fetcher is not None:
            fetcher.partitions.discard(tp)
            fetcher.delayed.pop(tp, None)
            fetcher.invalidate()
            if not fetcher.partitions:
                fetcher.cancel.cancel()
                del self.fetchers[fetcher.leader_id]


__all__ = ["FetcherSettings", "ReplicaFetcherManager", "truncation_offset"]
