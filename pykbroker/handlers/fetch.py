"""Fetch v4-v17: whole batches as stored, long-poll woken by appends, fetch sessions."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from pykbroker.cluster.fetch_session import (
    FINAL_EPOCH,
    INITIAL_EPOCH,
    CachedPartition,
    FetchSession,
)
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.handlers.authz import CLUSTER, TOPIC, Op, authorize
from pykbroker.protocol._generated.fetch_request import FetchRequest
from pykbroker.protocol._generated.fetch_response import (
    AbortedTransaction,
    FetchableTopicResponse,
    FetchResponse,
    PartitionData,
)
from pykbroker.protocol.api import ApiKey
from pykbroker.protocol.primitives import ZERO_UUID
from pykbroker.quotas import load_client_quotas
from pykbroker.server.dispatch import HandlerSpec
from pykbroker.server.request_context import RequestContext

READ_COMMITTED = 1
_EMPTY = b""


@dataclass(slots=True)
class _Slot:
    """One partition of this fetch and what was read for it."""

    cached: CachedPartition
    topic_id: uuid.UUID
    data: PartitionData | None = None
    error: int = 0


def _error_data(index: int, code: ErrorCode) -> PartitionData:
    return PartitionData(partition_index=index, error_code=int(code), high_watermark=-1,
                         last_stable_offset=-1, log_start_offset=-1, records=_EMPTY)


def _resolve(
    ctx: RequestContext, req: FetchRequest
) -> tuple[list[_Slot], list[FetchableTopicResponse]]:
    """Request partitions as slots, plus error responses for unknown topics."""
    store = ctx.services.topics.store
    by_id = ctx.api_version >= 13
    slots: list[_Slot] = []
    unknown: list[FetchableTopicResponse] = []
    for ft in req.topics:
        if by_id:
            name = store.name_of(ft.topic_id)
            topic_id = ft.topic_id
        else:
            name = ft.topic
            topic_id = store.topic_id_of(name)
        known = name is not None and topic_id is not None
        if (known or not by_id) and name is not None \
                and not authorize(ctx, Op.READ, TOPIC, name):
            # KafkaApis: READ on the topic, checked before its existence (nothing leaks).
            unknown.append(FetchableTopicResponse(
                topic=ft.topic, topic_id=ft.topic_id,
                partitions=[_error_data(fp.partition, ErrorCode.TOPIC_AUTHORIZATION_FAILED)
                            for fp in ft.partitions]))
            continue
        if not known or name is None:
            code = ErrorCode.UNKNOWN_TOPIC_ID if by_id else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            unknown.append(FetchableTopicResponse(
                topic=ft.topic, topic_id=ft.topic_id,
                partitions=[_error_data(fp.partition, code) for fp in ft.partitions]))
            continue
        for fp in ft.partitions:
            cp = CachedPartition(name, fp.partition, fp.fetch_offset, fp.partition_max_bytes,
                                 fp.current_leader_epoch)
            slots.append(_Slot(cp, topic_id))
    return slots, unknown


_ReplicaFetch = Callable[[RequestContext, FetchRequest, int, Callable[[Any, int], None]],
                         Awaitable[FetchResponse]]
_REPLICA_FETCH: _ReplicaFetch | None = None


def _replica_fetch_handler() -> _ReplicaFetch:
    """The leader's follower-fetch handler, imported at the first follower's fetch (a lone
    broker loads no replication code) and kept: an import statement per fetch cost ~1 %."""
    global _REPLICA_FETCH
    if _REPLICA_FETCH is None:
        from pykbroker.replication.leader import handle_replica_fetch

        _REPLICA_FETCH = handle_replica_fetch
    return _REPLICA_FETCH


RACK_AWARE_SELECTOR = "org.apache.kafka.common.replica.RackAwareReplicaSelector"


def _partition_for_consumer(ctx: RequestContext, topic: str, index: int, rack: str) -> Any:
    """The leader's partition, or (KIP-392) a follower's for a consumer that names its rack
    when a replica selector is configured: followers serve up to their high watermark."""
    replicas = ctx.services.replicas
    part = replicas.partitions.get((topic, index))
    if part is not None and not part.is_leader and rack and ctx.api_version >= 11 \
            and ctx.services.config.get("replica.selector.class"):
        return part
    return replicas.partition(topic, index)


def _preferred_replica(ctx: RequestContext, part: Any, rack: str) -> int:
    """Kafka's RackAwareReplicaSelector: an in-sync replica in the consumer's rack, the
    leader when it is one of them; -1 keeps the consumer on this broker."""
    cluster = ctx.services.cluster
    if cluster is None or not rack or not part.is_leader or ctx.api_version < 11 or \
            ctx.services.config.get("replica.selector.class") != RACK_AWARE_SELECTOR:
        return -1
    same_rack = [r for r in part.isr if (b := cluster.cache.broker(r)) is not None
                 and b.rack == rack]
    if not same_rack or part.leader_id in same_rack:
        return -1
    return int(same_rack[0])


def _read(ctx: RequestContext, slots: list[_Slot], max_bytes: int, committed: bool,
          rack: str = "") -> int:
    """Read every slot; returns the bytes gathered. Only the first data may exceed limits."""
    total = 0
    for slot in slots:
        cp = slot.cached
        try:
            part = _partition_for_consumer(ctx, cp.topic, cp.partition, rack)
            part.check_leader_epoch(cp.current_leader_epoch)
            preferred = _preferred_replica(ctx, part, rack)
            if preferred >= 0:  # KIP-392: fetch from the replica in your rack instead
                slot.data = PartitionData(
                    partition_index=cp.partition, error_code=0,
                    high_watermark=part.high_watermark, last_stable_offset=part.last_stable_offset,
                    log_start_offset=part.log_start_offset, aborted_transactions=None,
                    preferred_read_replica=preferred, records=_EMPTY)
                slot.error = 0
                continue
            hw = part.high_watermark
            lso = part.last_stable_offset
            budget = min(cp.max_bytes, max_bytes - total)
            aborted: list[AbortedTransaction] | None = [] if committed else None
            if budget > 0 or total == 0:
                fetched = part.log.read(
                    cp.fetch_offset, max(budget, 0),
                    max_offset=lso if committed else hw,
                    min_one_batch=total == 0,
                    zero_copy=True,
                )
                records = fetched.data
                if committed and records:
                    aborted = [AbortedTransaction(producer_id=a.producer_id,
                                                  first_offset=a.first_offset)
                               for a in part.log.collect_aborted(cp.fetch_offset,
                                                                 fetched.next_offset)]
            else:
                if not part.log_start_offset <= cp.fetch_offset <= part.log_end_offset:
                    raise KafkaError(ErrorCode.OFFSET_OUT_OF_RANGE)
                records = _EMPTY
            total += len(records)
            slot.data = PartitionData(
                partition_index=cp.partition, error_code=0, high_watermark=hw,
                last_stable_offset=lso, log_start_offset=part.log_start_offset,
                aborted_transactions=aborted,
                preferred_read_replica=-1, records=records,
            )
            slot.error = 0
        except KafkaError as exc:
            slot.data = _error_data(cp.partition, exc.error_code)
            slot.error = int(exc.error_code)
    return total


def _session_for(ctx: RequestContext, req: FetchRequest,
                 slots: list[_Slot]) -> tuple[FetchSession | None, list[_Slot], bool]:
    """(session, partitions to fetch, incremental?) following KIP-227's epochs."""
    if ctx.api_version < 7:
        return None, slots, False
    cache = ctx.services.fetch_sessions
    sid, epoch = req.session_id, req.session_epoch
    if sid == 0:
        if epoch == FINAL_EPOCH:
            return None, slots, False
        if epoch != INITIAL_EPOCH:
            raise KafkaError(ErrorCode.INVALID_FETCH_SESSION_EPOCH)
        session = cache.create()
        if session is not None:
            for slot in slots:
                session.partitions[(slot.cached.topic, slot.cached.partition)] = slot.cached
        return session, slots, False
    if epoch == FINAL_EPOCH:
        cache.close(sid)
        return None, slots, False
    session = cache.lookup(sid, epoch)
    for slot in slots:
        key = (slot.cached.topic, slot.cached.partition)
        old = session.partitions.get(key)
        if old is None:
            session.partitions[key] = slot.cached
        else:
            old.fetch_offset = slot.cached.fetch_offset
            old.max_bytes = slot.cached.max_bytes
            old.current_leader_epoch = slot.cached.current_leader_epoch
    store = ctx.services.topics.store
    for forgotten in req.forgotten_topics_data:
        if ctx.api_version >= 13:
            name = store.name_of(forgotten.topic_id)
        else:
            name = forgotten.topic
        for p in forgotten.partitions:
            session.partitions.pop((name or "", p), None)
    fetch = []
    for cp in session.partitions.values():
        fetch.append(_Slot(cp, store.topic_id_of(cp.topic) or ZERO_UUID))
    return session, fetch, True


def _replica_id(ctx: RequestContext, req: FetchRequest) -> int:
    if ctx.api_version >= 15:
        return int(req.replica_state.replica_id) if req.replica_state is not None else -1
    return int(req.replica_id)


async def handle_fetch(ctx: RequestContext, req: FetchRequest) -> FetchResponse:
    services = ctx.services
    replica = _replica_id(ctx, req)
    if replica >= 0 and not authorize(ctx, Op.CLUSTER_ACTION, CLUSTER):
        # A follower needs CLUSTER_ACTION; without it every partition is refused.
        return FetchResponse(throttle_time_ms=0, error_code=0, session_id=0, responses=[
            FetchableTopicResponse(topic=ft.topic, topic_id=ft.topic_id, partitions=[
                _error_data(fp.partition, ErrorCode.TOPIC_AUTHORIZATION_FAILED)
                for fp in ft.partitions]) for ft in req.topics])
    if replica >= 0:  # a follower (Kafka's -2/-3 debug and future ids stay consumers)
        cluster = services.cluster
        return await _replica_fetch_handler()(
            ctx, req, replica,
            cluster.isr.on_follower_fetch if cluster is not None else lambda part, r: None)
    try:
        quotas = services.client_quotas
    except AttributeError:  # the first request: are there quotas at all?
        quotas = load_client_quotas(services)
    if quotas is not None:
        await quotas.unmuted(ctx.connection_id)  # KIP-219: the previous response throttled
    slots, unknown = _resolve(ctx, req)
    try:
        session, fetch, incremental = _session_for(ctx, req, slots)
    except KafkaError as exc:
        return FetchResponse(error_code=int(exc.error_code), session_id=0, responses=[])
    committed = ctx.api_version >= 4 and req.isolation_level == READ_COMMITTED
    max_bytes = req.max_bytes if ctx.api_version >= 3 else 2**31 - 1
    if quotas is not None:  # consumer_byte_rate: no more than a quiet window allows
        max_bytes = int(min(max_bytes, quotas.fetch_max_bytes(ctx.principal, ctx.client_id)))
    min_bytes = min(req.min_bytes, max_bytes)
    deadline = trio.current_time() + req.max_wait_ms / 1000.0
    rack = req.rack_id if ctx.api_version >= 11 else ""
    while True:
        total = _read(ctx, fetch, max_bytes, committed, rack)
        errors = any(s.error or (s.data is not None and s.data.preferred_read_replica >= 0)
                     for s in fetch) or bool(unknown)  # redirects answer at once too
        remaining = deadline - trio.current_time()
        if (total >= min_bytes or errors or remaining <= 0 or not fetch
                or services.replicas.shutting_down):
            break
        parts = [p for s in fetch
                 if (p := services.replicas.partitions.get((s.cached.topic, s.cached.partition)))]
        await services.replicas.wait_for_append(parts, remaining)
        if trio.current_time() >= deadline:
            total = _read(ctx, fetch, max_bytes, committed, rack)
            break
    if quotas is not None:
        throttled = _throttle(ctx, quotas, fetch, unknown, total)
        if throttled:
            # KafkaApis: a throttled consumer gets an empty response (a new session is not
            # kept: FullFetchContext.getThrottledResponse answers session id 0)
            if session is not None and incremental:
                session.epoch = session.epoch + 1 if session.epoch < 2**31 - 1 else 1
            elif session is not None:
                services.fetch_sessions.close(session.session_id)
            return FetchResponse(
                throttle_time_ms=throttled, error_code=0,
                session_id=session.session_id if session is not None and incremental else 0,
                responses=[])
    by_topic: dict[str, FetchableTopicResponse] = {}
    order: list[FetchableTopicResponse] = []
    for slot in fetch:
        data = slot.data
        assert data is not None
        cp = slot.cached
        include = cp.needs_report(data.high_watermark, data.last_stable_offset,
                                  data.log_start_offset, len(data.records or _EMPTY) > 0,
                                  slot.error)
        if incremental and not include:
            continue
        topic_resp = by_topic.get(cp.topic)
        if topic_resp is None:
            topic_resp = FetchableTopicResponse(topic=cp.topic, topic_id=slot.topic_id)
            by_topic[cp.topic] = topic_resp
            order.append(topic_resp)
        topic_resp.partitions.append(data)
    order.extend(unknown)
    if session is not None and incremental:
        session.epoch = session.epoch + 1 if session.epoch < 2**31 - 1 else 1
    return FetchResponse(
        throttle_time_ms=0, error_code=0,
        session_id=session.session_id if session is not None else 0,
        responses=order,
    )


def _throttle(ctx: RequestContext, quotas: Any, fetch: list[_Slot],
              unknown: list[FetchableTopicResponse], record_bytes: int) -> int:
    """consumer_byte_rate: record the response's size; the throttle time (ms), 0 if none."""
    from pykbroker.quotas.manager import fetch_response_size

    topics = len({s.cached.topic for s in fetch}) + len(unknown)
    partitions = len(fetch) + sum(len(t.partitions) for t in unknown)
    return int(quotas.on_fetch(ctx.principal, ctx.client_id, ctx.connection_id,
                               fetch_response_size(topics, partitions, record_bytes)))


HANDLERS = [HandlerSpec(ApiKey.FETCH, 4, 17, handle_fetch)]
