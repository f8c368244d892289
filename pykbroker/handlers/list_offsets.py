"""ListOffsets v1-v9: earliest, latest, max timestamp, and offsets by timestamp."""

from __future__ import annotations

from pykbroker.cluster.replica_manager import Partition
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.handlers.authz import TOPIC, Op, authorize
from pykbroker.protocol._generated.list_offsets_request import ListOffsetsRequest
from pykbroker.protocol._generated.list_offsets_response import (
    ListOffsetsPartitionResponse,
    ListOffsetsResponse,
    ListOffsetsTopicResponse,
)
from pykbroker.protocol.api import ApiKey
from pykbroker.server.dispatch import HandlerSpec
from pykbroker.server.request_context import RequestContext

LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3
EARLIEST_LOCAL = -4
LATEST_TIERED = -5
READ_COMMITTED = 1


def _lookup(part: Partition, timestamp: int, committed: bool) -> tuple[int, int]:
    """(timestamp, offset) Kafka answers for one partition; (-1, -1) when none."""
    plog = part.log
    end = part.last_stable_offset if committed else part.high_watermark
    if timestamp == LATEST:
        return -1, end
    if timestamp in (EARLIEST, EARLIEST_LOCAL):
        return -1, int(plog.log_start_offset)
    if timestamp == LATEST_TIERED:
        return -1, -1
    if timestamp == MAX_TIMESTAMP:
        found = plog.max_timestamp_and_offset()
        if found.offset < 0 or found.offset >= end:
            return -1, -1
        return found.timestamp, found.offset
    if timestamp < 0:
        raise KafkaError(ErrorCode.INVALID_REQUEST, f"Invalid target timestamp {timestamp}")
    hit = plog.offset_for_timestamp(timestamp)
    if hit is None or hit.offset >= end:
        return -1, -1
    return hit.timestamp, hit.offset


async def handle_list_offsets(ctx: RequestContext, req: ListOffsetsRequest) -> ListOffsetsResponse:
    replicas = ctx.services.replicas
    committed = ctx.api_version >= 2 and req.isolation_level == READ_COMMITTED
    topics: list[ListOffsetsTopicResponse] = []
    refused: list[ListOffsetsTopicResponse] = []  # Kafka answers these after the others
    for t in req.topics:
        parts = []
        allowed = authorize(ctx, Op.DESCRIBE, TOPIC, t.name)
        for rp in t.partitions:
            resp = ListOffsetsPartitionResponse(partition_index=rp.partition_index, timestamp=-1,
                                                offset=-1, leader_epoch=-1)
            try:
                if not allowed:
                    raise KafkaError(ErrorCode.TOPIC_AUTHORIZATION_FAILED)
                part = replicas.partition(t.name, rp.partition_index)
                if ctx.api_version >= 4:
                    part.check_leader_epoch(rp.current_leader_epoch)
                if req.replica_id >= 0 and rp.timestamp == LATEST and \
                        ctx.services.cluster is not None:
                    # A follower resetting its fetch position: the leader's log end offset.
                    ts, offset = -1, part.log_end_offset
                else:
                    ts, offset = _lookup(part, rp.timestamp, committed)
                resp.timestamp, resp.offset = ts, offset
                if ctx.api_version >= 4:
                    resp.leader_epoch = part.leader_epoch if offset >= 0 else -1
            except KafkaError as exc:
                resp.error_code = int(exc.error_code)
            parts.append(resp)
        (topics if allowed else refused).append(
            ListOffsetsTopicResponse(name=t.name, partitions=parts))
    return ListOffsetsResponse(throttle_time_ms=0, topics=topics + refused)


HANDLERS = [HandlerSpec(ApiKey.LIST_OFFSETS, 1, 9, handle_list_offsets)]
