"""OffsetForLeaderEpoch and DescribeLogDirs: where each partition's log stands."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.handlers.authz import CLUSTER, TOPIC, Op, authorize, secured
from pykbroker.protocol._generated.describe_log_dirs_request import DescribeLogDirsRequest
from pykbroker.protocol._generated.describe_log_dirs_response import (
    DescribeLogDirsPartition,
    DescribeLogDirsResponse,
    DescribeLogDirsResult,
    DescribeLogDirsTopic,
)
from pykbroker.protocol._generated.offset_for_leader_epoch_request import (
    OffsetForLeaderEpochRequest,
)
from pykbroker.protocol._generated.offset_for_leader_epoch_response import (
    EpochEndOffset,
    OffsetForLeaderEpochResponse,
    OffsetForLeaderTopicResult,
)
from pykbroker.protocol.api import ApiKey
from pykbroker.server.dispatch import HandlerSpec
from pykbroker.server.request_context import RequestContext


async def handle_offset_for_leader_epoch(
    ctx: RequestContext, req: OffsetForLeaderEpochRequest
) -> OffsetForLeaderEpochResponse:
    """The end offset of the requested epoch (KIP-101/KIP-320): the log end offset for the
    current epoch, otherwise where the next larger epoch starts; unknown epochs get -1/-1."""
    replicas = ctx.services.replicas
    topics = []
    # CLUSTER_ACTION (a follower) or DESCRIBE on the topic (a consumer, KIP-320).
    any_topic = not secured(ctx) or authorize(ctx, Op.CLUSTER_ACTION, CLUSTER)
    for t in req.topics:
        parts = []
        allowed = any_topic or authorize(ctx, Op.DESCRIBE, TOPIC, t.topic)
        for p in t.partitions:
            result = EpochEndOffset(partition=p.partition)
            try:
                if not allowed:
                    raise KafkaError(ErrorCode.TOPIC_AUTHORIZATION_FAILED)
                part = replicas.partition(t.topic, p.partition)
                if ctx.api_version >= 2:
                    part.check_leader_epoch(p.current_leader_epoch)
                epoch, end = part.log.end_offset_for_epoch(p.leader_epoch)
                result.leader_epoch, result.end_offset = epoch, end
            except KafkaError as exc:
                result.error_code = int(exc.error_code)
            parts.append(result)
        topics.append(OffsetForLeaderTopicResult(topic=t.topic, partitions=parts))
    return OffsetForLeaderEpochResponse(throttle_time_ms=0, topics=topics)


async def handle_describe_log_dirs(ctx: RequestContext,
                                   req: DescribeLogDirsRequest) -> DescribeLogDirsResponse:
    services = ctx.services
    if not authorize(ctx, Op.DESCRIBE, CLUSTER):
        return DescribeLogDirsResponse(throttle_time_ms=0, results=[],
                                       error_code=int(ErrorCode.CLUSTER_AUTHORIZATION_FAILED))
    wanted: dict[str, set[int]] | None = None
    if req.topics is not None:
        wanted = {t.topic: set(t.partitions) for t in req.topics}
    by_dir: dict[Path, dict[str, list[DescribeLogDirsPartition]]] = defaultdict(dict)
    for (topic, index), part in sorted(services.replicas.partitions.items()):
        if wanted is not None and index not in wanted.get(topic, ()):
            continue
        log_dir = Path(part.log.directory).parent
        by_dir[log_dir].setdefault(topic, []).append(DescribeLogDirsPartition(
            partition_index=index, partition_size=int(part.log.size_in_bytes), offset_lag=0,
            is_future_key=False))
    results = []
    for log_dir in services.log_dirs:
        try:
            st = os.statvfs(log_dir)
            total, usable = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
            error = ErrorCode.NONE
        except OSError:
            total = usable = -1
            error = ErrorCode.KAFKA_STORAGE_ERROR
        topics = [DescribeLogDirsTopic(name=n, partitions=p)
                  for n, p in sorted(by_dir.get(log_dir, {}).items())]
        results.append(DescribeLogDirsResult(error_code=int(error), log_dir=str(log_dir),
                                             topics=topics, total_bytes=total,
                                             usable_bytes=usable))
    return DescribeLogDirsResponse(throttle_time_ms=0, error_code=0, results=results)


HANDLERS = [
    HandlerSpec(ApiKey.OFFSET_FOR_LEADER_EPOCH, 0, 4, handle_offset_for_leader_epoch),
    HandlerSpec(ApiKey.DESCRIBE_LOG_DIRS, 0, 4, handle_describe_log_dirs),
]
