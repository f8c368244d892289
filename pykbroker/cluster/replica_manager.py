"""Partitions this broker hosts: appends, reads, offsets, and waking fetches that wait.

On one broker every partition is led here with an ISR of one, so the high watermark is the
log end offset. Appends are synchronous (state never changes halfway through an await);
long-poll fetches wait on trio events that an append to their partitions sets.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from pykbroker.cluster.produce_checks import produce_records_cap, validate_produce_batch
from pykbroker.cluster.topics import TopicInfo
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.records import BatchHeader
from pykbroker.timers import call_after

log = logging.getLogger("pykbroker.cluster.replica_manager")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class AppendResult:
    base_offset: int
    last_offset: int
    log_append_time: int
    log_start_offset: int


class Waiter(Protocol):
    """What a partition wakes: a ``trio.Event``, or a follower session's watch on an idle
    partition (replication.leader)."""

    def set(self) -> None: ...


class FollowerState:
    """What the leader knows of one follower, from its fetches (Kafka's Replica)."""

    __slots__ = ("log_end_offset", "last_caught_up_ms", "last_fetch_ms",
                 "last_fetch_leader_leo")

    def __init__(self) -> None:
        self.log_end_offset = -1  # unknown until it fetches
        self.last_caught_up_ms = 0
        self.last_fetch_ms = 0
        self.last_fetch_leader_leo = -1

    def on_fetch(self, fetch_offset: int, leader_leo: int, now: int) -> None:
        """Kafka's rule: caught up now if it asked for the leader's end; caught up as of the
        previous fetch if it reached what the leader's end was then."""
        if fetch_offset >= leader_leo:
            self.last_caught_up_ms = max(self.last_caught_up_ms, now)
        elif fetch_offset >= self.last_fetch_leader_leo >= 0:
            self.last_caught_up_ms = max(self.last_caught_up_ms, self.last_fetch_ms)
        self.log_end_offset = fetch_offset
        self.last_fetch_leader_leo = leader_leo
        self.last_fetch_ms = now


class Partition:
    """One hosted partition: its log, leader epoch, and the fetches waiting on it."""

    def __init__(self, topic: TopicInfo, index: int, plog: Any, leader_epoch: int = 0) -> None:
        self.topic = topic.name
        self.topic_id: uuid.UUID = topic.topic_id
        self.index = index
        self.log = plog
        self.leader_epoch = leader_epoch
        self.replicas = list(topic.assignment.get(index, []))
        self.isr = list(self.replicas)
        self.min_insync_replicas = 1
        # A cluster's controller decides these (LeaderAndIsr); a lone broker leads everything.
        self.is_leader = True
        self.leader_id = -1
        self.partition_epoch = 0
        # Replication (leader side): what each follower has fetched, the ISR change sent to
        # the controller and not yet answered, and the high watermark, which never moves back.
        self.followers: dict[int, FollowerState] = {}
        self.pending_isr: list[int] | None = None
        self._hw = int(plog.log_start_offset)
        # Long-polls waiting on this partition: clients' (consumer fetches and acks=all
        # produces, which need the high watermark to move) and followers' (which need appends).
        self._waiters: list[Waiter] = []
        self._replica_waiters: list[Waiter] = []
        self._flushing: trio.Event | None = None

    @property
    def maximal_isr(self) -> list[int]:
        """The ISR the high watermark must wait for: the committed one, widened by a pending
        expansion (Kafka's maximalIsr); a pending shrink still waits for the leaver."""
        if self.pending_isr is None:
            return self.isr
        return sorted(set(self.isr) | set(self.pending_isr))

    def follower_state(self, replica: int) -> FollowerState:
        state = self.followers.get(replica)
        if state is None:
            state = self.followers[replica] = FollowerState()
        return state

    def advance_high_watermark(self) -> bool:
        """Leader: the lowest log end offset over the (maximal) ISR; True if it moved, and
        then the clients waiting on it are woken, whoever saw the move first (a follower's
        fetch, an ISR change, an append, or a reader of ``high_watermark``): since appends
        wake only followers, a move noticed without a wake would leave acks=all produces
        waiting for the next one, and none comes while they hold every write in flight."""
        if not self.is_leader:
            return False
        low = int(self.log.log_end_offset)
        leader = self.leader_id
        if leader >= 0:  # (called at every follower fetch and high watermark read)
            followers = self.followers
            for replica in self.isr if self.pending_isr is None else self.maximal_isr:
                if replica != leader:
                    state = followers.get(replica)
                    if state is None:
                        low = -1
                        break
                    if state.log_end_offset < low:
                        low = state.log_end_offset
        if low > self._hw:
            self._hw = low
            self.wake_clients()
            return True
        return False

    def set_follower_high_watermark(self, leader_hw: int) -> bool:
        """Follower: the leader's high watermark, bounded by what this replica holds; True
        if consumers now see more."""
        leo = int(self.log.log_end_offset)
        visible = min(self._hw, leo)
        self._hw = min(leader_hw, leo)
        return self._hw > visible

    def needs_sync_ack(self) -> bool:
        """Whether ``flush.messages`` asks for appends to be fsynced before they are acked."""
        return int(self.log.unflushed_messages) >= int(self.log.config.flush_messages)

    async def wait_durable(self, offset: int) -> None:
        """Return once offsets below ``offset`` are fsynced (group commit).

        The first waiter fsyncs in a worker thread, so the event loop keeps serving; appends
        that arrive meanwhile wait for the next flush, which covers all of them at once.
        """
        while self.log.durable_offset < offset:
            if self._flushing is not None:
                await self._flushing.wait()
                continue
            self._flushing = done = trio.Event()
            try:
                target = self.log.log_end_offset
                await trio.to_thread.run_sync(self.log.sync_data, target)
            finally:
                self._flushing = None
                done.set()

    @property
    def high_watermark(self) -> int:
        """Consumers see records below it: on the leader every ISR member has them (a lone
        broker's is its log end offset); on a follower, what the leader last said."""
        leo = int(self.log.log_end_offset)
        if self.is_leader:
            if not self.followers:  # an ISR of one (a lone broker): nothing to compute
                self._hw = max(self._hw, leo)
                return leo
            self.advance_high_watermark()
        return min(self._hw, leo)

    @property
    def last_stable_offset(self) -> int:
        """The high watermark, or the start of the oldest open transaction if lower."""
        return self.stable_offset_below(self.high_watermark)

    def stable_offset_below(self, hw: int) -> int:
        """The last stable offset for a high watermark already read (one computation per
        partition per fetch)."""
        unstable = self.log.first_unstable_offset()
        return hw if unstable is None else min(int(unstable), hw)

    @property
    def log_start_offset(self) -> int:
        return int(self.log.log_start_offset)

    @property
    def log_end_offset(self) -> int:
        return int(self.log.log_end_offset)

    def add_waiter(self, event: Waiter, *, replica: bool = False) -> None:
        (self._replica_waiters if replica else self._waiters).append(event)

    def remove_waiter(self, event: Waiter, *, replica: bool = False) -> None:
        try:
            (self._replica_waiters if replica else self._waiters).remove(event)
        except ValueError:
            pass

    def wake(self) -> None:
        """Every waiter: the partition changed in a way any of them may care about."""
        self.wake_clients()
        self.wake_replicas()

    def wake_clients(self) -> None:
        """Consumer fetches and acks=all produces: the high watermark moved."""
        waiters, self._waiters = self._waiters, []
        for event in waiters:
            event.set()

    def wake_replicas(self) -> None:
        """Followers' fetches: records were appended."""
        waiters, self._replica_waiters = self._replica_waiters, []
        for event in waiters:
            event.set()

    def wake_on_append(self) -> None:
        """After a leader's append: followers always; clients only once the high watermark
        passed it, which is at once where no follower is in the ISR (a lone broker's
        partitions, a shrunk ISR), or when a follower's fetch reports it (IsrManager).
        Waking produces and consumers at every append of a replicated partition only made
        them look at an unmoved high watermark and wait again."""
        self.wake_replicas()
        if not self.followers:
            self.wake_clients()
        else:
            self.advance_high_watermark()

    def check_leader_epoch(self, current_leader_epoch: int) -> None:
        """Fencing by the client's view of the leader epoch (KIP-320); -1 skips it."""
        if current_leader_epoch < 0 or current_leader_epoch == self.leader_epoch:
            return
        if current_leader_epoch < self.leader_epoch:
            raise KafkaError(ErrorCode.FENCED_LEADER_EPOCH)
        raise KafkaError(ErrorCode.UNKNOWN_LEADER_EPOCH)


class ReplicaManager:
    def __init__(self, log_manager: Any, log_config_for: Callable[[TopicInfo], Any],
                 min_isr_for: Callable[[TopicInfo], int] = lambda topic: 1) -> None:
        self.log_manager = log_manager
        self.log_config_for = log_config_for
        self.min_isr_for = min_isr_for
        self.partitions: dict[tuple[str, int], Partition] = {}
        self.shutting_down = False
        # Callbacks run after every successful append (metrics, later replication).
        self.append_listeners: list[Callable[[Partition, BatchHeader, int], None]] = []
        # Called with (partition, producer id, committed) after each transaction marker
        # (the group coordinator completes transactional offset commits with it).
        self.marker_listeners: list[Callable[[Partition, int, bool], None]] = []
        # Checks that a transactional batch's partition is in its ongoing transaction
        # (KIP-890 verification); set by the transaction coordinator.
        self.verify_transaction: Callable[[str, BatchHeader, Partition], None] | None = None
        # Whether a partition this broker does not host exists elsewhere in the cluster
        # (NOT_LEADER_OR_FOLLOWER rather than UNKNOWN_TOPIC_OR_PARTITION); a lone broker
        # hosts everything.
        self.exists_in_cluster: Callable[[str, int], bool] = lambda topic, index: False

    # -- hosting -----------------------------------------------------------------------------

    def host(self, topic: TopicInfo, indexes: Iterable[int]) -> None:
        config = self.log_config_for(topic)
        min_isr = self.min_isr_for(topic)
        for index in indexes:
            plog = self.log_manager.get_or_create(topic.name, index, config, topic.topic_id)
            part = self.partitions[(topic.name, index)] = Partition(topic, index, plog)
            part.min_insync_replicas = min_isr

    def reconfigure(self, topic: TopicInfo) -> None:
        config = self.log_config_for(topic)
        min_isr = self.min_isr_for(topic)
        for (name, _), part in self.partitions.items():
            if name == topic.name:
                part.log.update_config(config)
                part.min_insync_replicas = min_isr

    def drop_topic(self, name: str) -> None:
        for key in [k for k in self.partitions if k[0] == name]:
            part = self.partitions.pop(key)
            part.wake()
            self.log_manager.delete(name, key[1])

    def partition(self, topic: str, index: int) -> Partition:
        """The partition this broker leads; Kafka's errors for one it follows or lacks."""
        part = self.partitions.get((topic, index))
        if part is None:
            if self.exists_in_cluster(topic, index):
                raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER)
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        if not part.is_leader:
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        return part

    # -- leadership (a cluster's LeaderAndIsr and StopReplica) ------------------------------

    def make_leader_or_follower(self, topic: TopicInfo, index: int, leader: int,
                                leader_epoch: int, isr: list[int], replicas: list[int],
                                partition_epoch: int, node_id: int) -> Partition:
        """Host the partition (creating its log if new) in the role the controller gave it.

        Fetches waiting on it are woken so they answer with the new state.
        """
        part = self.partitions.get((topic.name, index))
        if part is None:
            self.host(topic, [index])
            part = self.partitions[(topic.name, index)]
            part.log.update_config(self.log_config_for(topic))  # loaded before its config
        new_epoch = leader_epoch != part.leader_epoch or part.leader_id != leader
        part.leader_id = leader
        part.is_leader = leader == node_id
        part.replicas = list(replicas)
        part.isr = list(isr)
        part.partition_epoch = partition_epoch
        part.pending_isr = None
        if new_epoch:
            part.leader_epoch = leader_epoch
            if part.is_leader:
                # Kafka's makeLeader: followers start unknown (their fetches tell), the new
                # epoch starts at this log's end.
                now = now_ms()
                part.followers = {r: FollowerState() for r in replicas if r != node_id}
                for state in part.followers.values():
                    state.last_caught_up_ms = now  # in the ISR until proven lagging
                part.log.leader_epoch_cache.assign(leader_epoch, part.log.log_end_offset)
            else:
                part.followers = {}
        part.wake()
        return part

    def stop_replica(self, topic: str, index: int, delete: bool) -> None:
        part = self.partitions.pop((topic, index), None)
        if part is None:
            return
        part.wake()
        if delete:
            self.log_manager.delete(topic, index)

    # -- produce -----------------------------------------------------------------------------

    def append(self, part: Partition, records: Any, acks: int = 1,
               transactional_id: str | None = None, *,
               checked: BatchHeader | KafkaError | None = None) -> AppendResult:
        """Validate and append one produced batch; raises KafkaError per partition.

        ``checked``: the outcome of :func:`validate_produce_batch` (with the records walk)
        made beforehand, as the produce handler does for compressed batches, in a worker
        thread when they are large."""
        if acks == -1 and len(part.isr) < part.min_insync_replicas:
            raise KafkaError(
                ErrorCode.NOT_ENOUGH_REPLICAS,
                f"The size of the current ISR {part.isr} is insufficient to satisfy the "
                f"min.isr requirement of {part.min_insync_replicas} for partition "
                f"{part.topic}-{part.index}",
            )
        if isinstance(checked, KafkaError):
            raise checked
        header = (checked if checked is not None
                  else validate_produce_batch(records, produce_records_cap(part, records)))
        if header.is_control:
            raise KafkaError(ErrorCode.INVALID_RECORD, "clients may not produce control batches")
        if header.is_transactional:
            if transactional_id is None or self.verify_transaction is None:
                raise KafkaError(ErrorCode.INVALID_RECORD,
                                 "transactional records need the produce request's "
                                 "transactional id")
            self.verify_transaction(transactional_id, header, part)
        # The log patches offsets in place: copy only what is not writable already (request
        # frames are bytearrays, so produced batches normally arrive as writable views).
        writable = isinstance(records, bytearray) or (
            isinstance(records, memoryview) and not records.readonly)
        if not writable:
            records = bytearray(records)
        info = part.log.append_as_leader(records, leader_epoch=part.leader_epoch)
        part.wake_on_append()
        for listener in self.append_listeners:
            listener(part, header, len(records))
        return AppendResult(info.first_offset, info.last_offset, info.log_append_time,
                            info.log_start_offset)

    def write_marker(self, part: Partition, producer_id: int, producer_epoch: int,
                     commit: bool, coordinator_epoch: int) -> None:
        """Append a COMMIT/ABORT marker (WriteTxnMarkers); raises KafkaError."""
        part.log.append_marker(producer_id, producer_epoch, commit, coordinator_epoch,
                               leader_epoch=part.leader_epoch)
        part.wake()
        for listener in self.marker_listeners:
            listener(part, producer_id, commit)

    def expire_producers(self, now: int, expiration_ms: int) -> None:
        """Forget idle idempotent producers (``producer.id.expiration.ms``)."""
        for part in self.partitions.values():
            part.log.producer_state.expire(now, expiration_ms)

    async def wait_replicated(self, part: Partition, offset: int, timeout_s: float) -> None:
        """Return once every ISR member has the records below ``offset`` (the high watermark
        passed them), as an acks=all write; raises KafkaError REQUEST_TIMED_OUT,
        NOT_LEADER_OR_FOLLOWER (leadership moved) or NOT_ENOUGH_REPLICAS_AFTER_APPEND."""
        deadline = trio.current_time() + timeout_s
        while True:
            if not part.is_leader or self.partitions.get((part.topic, part.index)) is not part:
                raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER)
            if part.high_watermark >= offset:
                if len(part.isr) < part.min_insync_replicas:
                    raise KafkaError(ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND)
                return
            remaining = deadline - trio.current_time()
            if remaining <= 0 or self.shutting_down:
                raise KafkaError(ErrorCode.REQUEST_TIMED_OUT)
            await self.wait_for_append([part], remaining)

    # -- fetch -------------------------------------------------------------------------------

    async def wait_for_append(self, parts: list[Partition], timeout_s: float, *,
                              replica: bool = False, event: trio.Event | None = None) -> None:
        """Return when any of ``parts`` changes for a client (its high watermark moved, its
        leadership changed) or, with ``replica``, for a follower (records were appended), or
        after ``timeout_s``; or when ``event`` (which others may set) is set."""
        if timeout_s <= 0 or not (parts or event is not None) or self.shutting_down:
            return
        if event is None:
            event = trio.Event()
        for part in parts:
            part.add_waiter(event, replica=replica)
        # (a timer, not a cancel scope per wait: see pykbroker.timers)
        timer = call_after(timeout_s, event.set)
        try:
            await event.wait()
        finally:
            timer.cancel()
            for part in parts:
                part.remove_waiter(event, replica=replica)
