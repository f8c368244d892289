"""The leader's side of replication: Fetch requests from followers (Kafka's follower fetch).

A follower's fetch reads up to the log end offset (not the high watermark), tells the leader
how far that follower got, which may expand the ISR and advance the high watermark, and
answers with the leader's high watermark. A follower whose last fetched epoch does not match
the leader's history gets the diverging epoch instead of records (KIP-320), and truncates.
Only a replica of the partition (another broker) may fetch as one.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from pykbroker.cluster.fetch_session import FINAL_EPOCH, INITIAL_EPOCH, FetchSession
from pykbroker.cluster.replica_manager import FollowerState, Partition
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.protocol._generated.fetch_request import FetchRequest
from pykbroker.protocol._generated.fetch_response import (
    EpochEndOffset,
    FetchableTopicResponse,
    FetchResponse,
    PartitionData,
)
from pykbroker.server.request_context import RequestContext

_EMPTY = b""


def _error(index: int, code: ErrorCode) -> PartitionData:
    return PartitionData(partition_index=index, error_code=int(code), high_watermark=-1,
                         last_stable_offset=-1, log_start_offset=-1, records=_EMPTY)


def _read_for(part: Partition, replica: int, fp: Any, budget: int, now_ms: int,
              on_follower_fetch: Callable[[Partition, int], None]) -> PartitionData:
    part.check_leader_epoch(fp.current_leader_epoch)
    if replica not in part.replicas:
        raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER,
                         f"Replica {replica} is not a replica of {part.topic}-{part.index}")
    plog = part.log
    if fp.last_fetched_epoch >= 0:
        epoch, end = plog.end_offset_for_epoch(fp.last_fetched_epoch)
        if epoch < fp.last_fetched_epoch or end < fp.fetch_offset:
            hw = part.high_watermark
            return PartitionData(
                partition_index=fp.partition, error_code=0,
                high_watermark=hw, last_stable_offset=part.stable_offset_below(hw),
                log_start_offset=part.log_start_offset,
                diverging_epoch=EpochEndOffset(epoch=epoch, end_offset=end), records=_EMPTY)
    leo = int(plog.log_end_offset)
    if not part.log_start_offset <= fp.fetch_offset <= leo:
        raise KafkaError(ErrorCode.OFFSET_OUT_OF_RANGE)
    records: Any = _EMPTY
    if budget > 0 and fp.fetch_offset < leo:
        records = plog.read(fp.fetch_offset, budget, max_offset=leo, min_one_batch=True,
                            zero_copy=True).data
    part.follower_state(replica).on_fetch(fp.fetch_offset, leo, now_ms)
    on_follower_fetch(part, replica)
    hw = part.high_watermark
    return PartitionData(
        partition_index=fp.partition, error_code=0, high_watermark=hw,
        last_stable_offset=part.stable_offset_below(hw), log_start_offset=part.log_start_offset,
        preferred_read_replica=-1, records=records)


class _View:
    """A follower session's long-poll as its quiet entries' watches see it."""

    __slots__ = ("event", "verified_at")

    def __init__(self) -> None:
        self.event: trio.Event | None = None  # the session's fetch waiting, if one is
        self.verified_at = 0.0  # when the quiet entries were last checked in full


class _Watch:
    """A quiet entry's watch on its partition (one of the partition's follower waiters):
    fires at the partition's next append, leadership or ISR change, marking the entry for
    reading again and waking the session's fetch if it waits. A watch whose entry was read
    again for another reason (or whose session closed) left the partition then."""

    __slots__ = ("entry", "view")

    def __init__(self, entry: _Entry, view: _View) -> None:
        self.entry = entry
        self.view = view

    def set(self) -> None:
        entry = self.entry
        if entry.watch is not self:
            return
        entry.watch = None
        entry.quiet = None
        event = self.view.event
        if event is not None:
            event.set()


@dataclass(slots=True)
class _Entry:
    """One partition of a follower's fetch: as last requested, and (in a fetch session)
    what the follower was last told of it."""

    topic: str  # the topic name as sent (empty from v13, which names topics by id)
    topic_id: uuid.UUID
    fp: Any  # the FetchPartition last sent for it
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1
    # Set when the last read found the follower caught up on a partition with nothing to
    # tell: (partition, its key, the FetchPartition read, leader epoch, log end, log start,
    # the follower's state). Until ``watch`` fires (see _Watch) an incremental fetch that
    # does not name the partition gets nothing for it, so it is not read again; _quiet
    # checks all of it once a second in case a change came without a wake.
    quiet: tuple[Partition, tuple[str, int], Any, int, int, int, FollowerState] | None = None
    watch: _Watch | None = None

    def unquiet(self) -> None:
        """Read the entry again at the next fetch; its watch, if any, leaves the partition."""
        watch, q = self.watch, self.quiet
        self.watch = self.quiet = None
        if watch is not None and q is not None:
            q[0].remove_waiter(watch, replica=True)

    def needs_report(self, data: PartitionData) -> bool:
        """Kafka's rule for an incremental response: records, an error, a diverging epoch
        or a moved offset; remembers what is reported."""
        if not (len(data.records or _EMPTY) or data.error_code
                or data.diverging_epoch.epoch >= 0
                or data.high_watermark != self.high_watermark
                or data.last_stable_offset != self.last_stable_offset
                or data.log_start_offset != self.log_start_offset):
            return False
        self.high_watermark = data.high_watermark
        self.last_stable_offset = data.last_stable_offset
        self.log_start_offset = data.log_start_offset
        return True


def _forget_watches(entries: dict[Any, _Entry]) -> None:
    """A closed session's quiet entries leave their partitions."""
    for entry in entries.values():
        entry.unquiet()


def _key(entry: _Entry, by_id: bool) -> tuple[uuid.UUID | str, int]:
    return (entry.topic_id if by_id else entry.topic, entry.fp.partition)


def _entries(req: FetchRequest) -> list[_Entry]:
    return [_Entry(ft.topic, ft.topic_id, fp) for ft in req.topics for fp in ft.partitions]


def _session_for(ctx: RequestContext, req: FetchRequest, replica: int
                 ) -> tuple[FetchSession | None, list[_Entry], bool]:
    """(session, partitions to fetch, incremental?) following KIP-227's epochs, as Kafka's
    follower fetches use them: an incremental request names only the partitions whose fetch
    state changed, the session keeps the others as last sent."""
    cache = ctx.services.fetch_sessions
    by_id = ctx.api_version >= 13
    sid, epoch = req.session_id, req.session_epoch
    if sid == 0 or epoch == FINAL_EPOCH:
        if sid != 0:
            cache.close(sid)
        if epoch == FINAL_EPOCH:
            return None, _entries(req), False
        if epoch != INITIAL_EPOCH:
            raise KafkaError(ErrorCode.INVALID_FETCH_SESSION_EPOCH)
        entries = _entries(req)
        session = cache.create()
        if session is not None:
            session.follower = replica
            session.follower_partitions = {_key(e, by_id): e for e in entries}
            session.follower_view = _View()
            session.on_close = functools.partial(_forget_watches, session.follower_partitions)
        return session, entries, False
    session = cache.lookup(sid, epoch)
    if session.follower != replica:
        raise KafkaError(ErrorCode.FETCH_SESSION_ID_NOT_FOUND)
    held = session.follower_partitions
    for entry in _entries(req):
        key = _key(entry, by_id)
        old = held.get(key)
        if old is None:
            held[key] = entry
        else:
            old.fp = entry.fp
            old.unquiet()
    for forgotten in req.forgotten_topics_data:
        topic: uuid.UUID | str = forgotten.topic_id if by_id else forgotten.topic
        for index in forgotten.partitions:
            gone = held.pop((topic, index), None)
            if gone is not None:
                gone.unquiet()
    return session, list(held.values()), True


class _Read:
    """One pass over a fetch's partitions: what was read for each, and what each partition
    looked like then (so that a pass after a wake-up re-reads only what changed)."""

    __slots__ = ("errors", "kept", "parts", "quiet", "results", "seen", "total")

    def __init__(self, size: int) -> None:
        self.results: list[PartitionData] = [_EMPTY_DATA] * size
        self.seen: list[tuple[Partition, int, int] | None] = [None] * size
        self.kept: list[int] = []  # entries answered as in the previous pass
        self.quiet = 0  # entries answered _QUIET (their watches wake a long-poll)
        self.total = 0
        # What the pass found on the way, so that the caller need not walk the results
        # again (a session holds every partition followed from here, most of them quiet):
        self.parts: list[Partition] = []  # the read (or kept) entries' partitions
        self.errors = False  # an error or a diverging epoch to answer at once


_EMPTY_DATA = PartitionData()
# The answer for a quiet entry: nothing to report (incremental fetches only).
_QUIET = PartitionData()
# How often a session's quiet entries are checked in full, in case a change reached none of
# their watches (Partition.wake_replicas): a log start moved by retention, say.
VERIFY_QUIET_S = 1.0


def _quiet(entry: _Entry, replica: int, partitions: dict[tuple[str, int], Partition]) -> bool:
    """Whether the quiet entry is still quiet: same request state, leader epoch, log end and
    start, still led here with the follower in the ISR; if not, it is read again."""
    q = entry.quiet
    assert q is not None
    part, key, fp, epoch, leo, start, state = q
    plog = part.log
    if fp is entry.fp and part.is_leader and part.leader_epoch == epoch and \
            plog.log_end_offset == leo and plog.log_start_offset == start and \
            replica in part.isr and partitions.get(key) is part and \
            part.followers.get(replica) is state:
        return True
    entry.unquiet()
    return False


def _fetch_once(ctx: RequestContext, entries: list[_Entry], replica: int, max_bytes: int,
                on_follower_fetch: Callable[[Partition, int], None],
                view: _View | None, last: _Read | None = None) -> _Read:
    """Read every entry; after a wake-up (``last``: the previous pass) only the entries whose
    partition changed leader, epoch or log end since, the others keep their answer.

    Quiet entries (``view``: in a fetch session only) are not read: a session carries every
    partition the follower follows from this leader, most are idle, and checking them all at
    every fetch made a fetch's cost grow with them (1,000 idle partitions beside the cluster
    benchmark's topic took a third of the brokers' CPU at 300 msg/s). Only the follower's
    fetch is recorded for them (it is caught up)."""
    services = ctx.services
    store = services.topics.store
    partitions = services.replicas.partitions
    by_id = ctx.api_version >= 13
    names: dict[Any, str | None] = {}
    now_ms = int(time.time() * 1000)
    verify = False
    if view is not None and last is None:
        now = time.monotonic()
        if now - view.verified_at >= VERIFY_QUIET_S:
            view.verified_at = now
            verify = True
    out = _Read(len(entries))
    for i, entry in enumerate(entries):
        q = entry.quiet
        if q is not None and (last is None or last.results[i] is _QUIET):
            # Quiet since before this request (an entry made quiet by this request's own
            # read keeps that answer, which is still to be sent).
            if last is not None or not verify or _quiet(entry, replica, partitions):
                state = q[6]
                if now_ms > state.last_caught_up_ms:
                    state.last_caught_up_ms = now_ms
                state.last_fetch_ms = now_ms
                out.results[i] = _QUIET
                out.quiet += 1
                continue
        fp = entry.fp
        topic_key = entry.topic_id if by_id else entry.topic
        name = names.get(topic_key, "")
        if name == "":
            name = names[topic_key] = store.name_of(entry.topic_id) if by_id else (
                entry.topic if store.topic_id_of(entry.topic) is not None else None)
        part = partitions.get((name, fp.partition)) if name else None
        if last is not None and part is not None:
            seen = last.seen[i]
            if seen is not None and seen[0] is part and part.is_leader and \
                    seen[1] == part.leader_epoch and seen[2] == part.log.log_end_offset:
                data = out.results[i] = last.results[i]
                out.seen[i] = seen
                out.parts.append(part)
                out.kept.append(i)
                out.total += len(data.records or _EMPTY)
                if data.error_code or data.diverging_epoch.epoch >= 0:
                    out.errors = True
                continue
        try:
            if part is None:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_ID if by_id and name is None
                                 else ErrorCode.NOT_LEADER_OR_FOLLOWER)
            if not part.is_leader:
                raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER)
            seen_leo = part.log.log_end_offset
            if entry.quiet is not None:
                entry.unquiet()
            data = _read_for(part, replica, fp, min(fp.partition_max_bytes,
                                                    max_bytes - out.total),
                             now_ms, on_follower_fetch)
            size = len(data.records or _EMPTY)
            out.total += size
            out.seen[i] = (part, part.leader_epoch, seen_leo)
            out.parts.append(part)
            if data.error_code or data.diverging_epoch.epoch >= 0:
                out.errors = True
            if view is not None and not size and fp.fetch_offset == seen_leo == \
                    data.high_watermark and data.diverging_epoch.epoch < 0 and \
                    replica in part.isr:
                state = part.followers.get(replica)
                if state is not None:
                    entry.quiet = (part, (part.topic, part.index), fp, part.leader_epoch,
                                   seen_leo, data.log_start_offset, state)
                    entry.watch = watch = _Watch(entry, view)
                    part.add_waiter(watch, replica=True)
        except KafkaError as exc:
            data = _error(fp.partition, exc.error_code)
            out.errors = True
        out.results[i] = data
    return out


def _refresh(read: _Read) -> None:
    """Answers kept from an earlier pass get the partitions' current offsets."""
    for i in read.kept:
        data = read.results[i]
        seen = read.seen[i]
        if seen is None or data is _QUIET or data.diverging_epoch.epoch >= 0:
            continue
        part = seen[0]
        hw = part.high_watermark
        if hw != data.high_watermark:
            data.high_watermark = hw
            data.last_stable_offset = part.stable_offset_below(hw)
        data.log_start_offset = part.log_start_offset


async def handle_replica_fetch(ctx: RequestContext, req: FetchRequest, replica: int,
                               on_follower_fetch: Callable[[Partition, int], None]
                               ) -> FetchResponse:
    """A follower's Fetch; long-polls up to ``max_wait_ms`` for ``min_bytes`` of records.
    In an incremental fetch session (KIP-227) the answer carries only the partitions with
    news for the follower."""
    services = ctx.services
    if services.cluster is None or replica == services.node_id:
        # No partition has this replica: a lone broker has no others, and a broker is not
        # its own follower. Kafka's answer for a fetch from a non-replica (which may come
        # from a client: who may act as a broker is CLUSTER_ACTION's business, checked
        # before). An assigned replica the metadata cache does not know yet (a broker that
        # just started, before its UpdateMetadata reached this one) is served, as in Kafka.
        return FetchResponse(throttle_time_ms=0, error_code=0, session_id=0, responses=[
            FetchableTopicResponse(topic=ft.topic, topic_id=ft.topic_id, partitions=[
                _error(fp.partition, ErrorCode.NOT_LEADER_OR_FOLLOWER)
                for fp in ft.partitions]) for ft in req.topics])
    try:
        session, entries, incremental = _session_for(ctx, req, replica) \
            if ctx.api_version >= 7 else (None, _entries(req), False)
    except KafkaError as exc:
        return FetchResponse(throttle_time_ms=0, error_code=int(exc.error_code),
                             session_id=0, responses=[])
    deadline = trio.current_time() + req.max_wait_ms / 1000.0
    view: _View | None = session.follower_view if session is not None else None
    read: _Read | None = None
    while True:
        read = _fetch_once(ctx, entries, replica, req.max_bytes, on_follower_fetch, view, read)
        results = read.results
        remaining = deadline - trio.current_time()
        parts = read.parts  # (quiet entries' partitions: their watches wake the view)
        if read.total >= req.min_bytes or read.errors or remaining <= 0 or \
                not (parts or read.quiet) or services.replicas.shutting_down:
            break
        event = None if view is None else trio.Event()  # (set by quiet entries' watches)
        if view is not None:
            view.event = event
        try:
            await services.replicas.wait_for_append(parts, remaining, replica=True,
                                                    event=event)
        finally:
            if view is not None:
                view.event = None
    _refresh(read)
    topics: dict[Any, FetchableTopicResponse] = {}
    for entry, data in zip(entries, results, strict=True):
        if data is _QUIET:  # (only in incremental fetches: nothing changed, nothing to say)
            continue
        reported = entry.needs_report(data)  # (in a full fetch: remembered for the next)
        if incremental and not reported:
            continue
        topic = topics.get((entry.topic, entry.topic_id))
        if topic is None:
            topic = topics[(entry.topic, entry.topic_id)] = FetchableTopicResponse(
                topic=entry.topic, topic_id=entry.topic_id, partitions=[])
        topic.partitions.append(data)
    if session is not None and incremental:
        session.next_epoch()
    return FetchResponse(throttle_time_ms=0, error_code=0,
                         session_id=session.session_id if session is not None else 0,
                         responses=list(topics.values()))
