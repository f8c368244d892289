"""The leader's side of replication: Fetch requests from followers (Kafka's follower fetch).

A follower's fetch reads up to the log end offset (not the high watermark), tells the leader
how far that follower got, which may expand the ISR and advance the high watermark, and
answers with the leader's high watermark. A follower whose last fetched epoch does not match
the leader's history gets the diverging epoch instead of records (KIP-320), and truncates.
Only a live broker that is a replica of the partition may fetch as one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import trio

from pykbroker.cluster.replica_manager import Partition
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.protocol._generated.fetch_request import FetchRequest
from pykbroker.protocol._generated.fetch_response import (
    EpochEndOffset,
    FetchableTopicResponse,
    FetchResponse,
    LeaderIdAndEpoch,
    PartitionData,
)
from pykbroker.server.request_context import RequestContext

_EMPTY = b""


def _error(index: int, code: ErrorCode) -> PartitionData:
    return PartitionData(partition_index=index, error_code=int(code), high_watermark=-1,
                         last_stable_offset=-1, log_start_offset=-1, records=_EMPTY)


def _read_for(part: Partition, replica: int, fp: Any, budget: int,
              on_follower_fetch: Callable[[Partition, int], None]) -> PartitionData:
    part.check_leader_epoch(fp.current_leader_epoch)
    if replica not in part.replicas:
        raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER,
                         f"Replica {replica} is not a replica of {part.topic}-{part.index}")
    plog = part.log
    leader = LeaderIdAndEpoch(leader_id=part.leader_id, leader_epoch=part.leader_epoch)
    if fp.last_fetched_epoch >= 0:
        epoch, end = plog.end_offset_for_epoch(fp.last_fetched_epoch)
        if epoch < fp.last_fetched_epoch or end < fp.fetch_offset:
            hw = part.high_watermark
            return PartitionData(
                partition_index=fp.partition, error_code=0,
                high_watermark=hw, last_stable_offset=part.stable_offset_below(hw),
                log_start_offset=part.log_start_offset,
                diverging_epoch=EpochEndOffset(epoch=epoch, end_offset=end),
                current_leader=leader, records=_EMPTY)
    leo = int(plog.log_end_offset)
    if not part.log_start_offset <= fp.fetch_offset <= leo:
        raise KafkaError(ErrorCode.OFFSET_OUT_OF_RANGE)
    records: Any = _EMPTY
    if budget > 0 and fp.fetch_offset < leo:
        records = plog.read(fp.fetch_offset, budget, max_offset=leo, min_one_batch=True,
                            zero_copy=True).data
    part.follower_state(replica).on_fetch(fp.fetch_offset, leo, int(time.time() * 1000))
    on_follower_fetch(part, replica)
    hw = part.high_watermark
    return PartitionData(
        partition_index=fp.partition, error_code=0, high_watermark=hw,
        last_stable_offset=part.stable_offset_below(hw), log_start_offset=part.log_start_offset,
        current_leader=leader, preferred_read_replica=-1, records=records)


def _fetch_once(ctx: RequestContext, req: FetchRequest, replica: int,
                on_follower_fetch: Callable[[Partition, int], None]
                ) -> tuple[list[FetchableTopicResponse], int, list[Partition]]:
    services = ctx.services
    store = services.topics.store
    by_id = ctx.api_version >= 13
    total = 0
    out = []
    parts: list[Partition] = []
    max_bytes = req.max_bytes
    for ft in req.topics:
        name = store.name_of(ft.topic_id) if by_id else (
            ft.topic if store.topic_id_of(ft.topic) is not None else None)
        resp = FetchableTopicResponse(topic=ft.topic, topic_id=ft.topic_id, partitions=[])
        for fp in ft.partitions:
            part = services.replicas.partitions.get((name, fp.partition)) if name else None
            try:
                if part is None:
                    raise KafkaError(ErrorCode.UNKNOWN_TOPIC_ID if by_id and name is None
                                     else ErrorCode.NOT_LEADER_OR_FOLLOWER)
                if not part.is_leader:
                    raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER)
                data = _read_for(part, replica, fp, min(fp.partition_max_bytes,
                                                        max_bytes - total), on_follower_fetch)
                total += len(data.records or _EMPTY)
                parts.append(part)
            except KafkaError as exc:
                data = _error(fp.partition, exc.error_code)
            resp.partitions.append(data)
        out.append(resp)
    return out, total, parts


async def handle_replica_fetch(ctx: RequestContext, req: FetchRequest, replica: int,
                               on_follower_fetch: Callable[[Partition, int], None]
                               ) -> FetchResponse:
    """A follower's Fetch; long-polls up to ``max_wait_ms`` for ``min_bytes`` of records."""
    services = ctx.services
    cluster = services.cluster
    if cluster is None or cluster.cache.broker(replica) is None or replica == services.node_id:
        # Only brokers of this cluster replicate (Kafka requires CLUSTER_ACTION).
        return FetchResponse(throttle_time_ms=0, error_code=0, session_id=0, responses=[
            FetchableTopicResponse(topic=ft.topic, topic_id=ft.topic_id, partitions=[
                _error(fp.partition, ErrorCode.TOPIC_AUTHORIZATION_FAILED)
                for fp in ft.partitions]) for ft in req.topics])
    deadline = trio.current_time() + req.max_wait_ms / 1000.0
    while True:
        responses, total, parts = _fetch_once(ctx, req, replica, on_follower_fetch)
        errors = any(p.error_code or p.diverging_epoch.epoch >= 0
                     for t in responses for p in t.partitions)
        remaining = deadline - trio.current_time()
        if total >= req.min_bytes or errors or remaining <= 0 or not parts \
                or services.replicas.shutting_down:
            return FetchResponse(throttle_time_ms=0, error_code=0, session_id=0,
                                 responses=responses)
        await services.replicas.wait_for_append(parts, remaining)
