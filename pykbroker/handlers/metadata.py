"""Metadata and DescribeCluster: brokers, topics, partitions, leaders, auto-creation."""

from __future__ import annotations

import logging
from typing import Any

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.protocol._generated.describe_cluster_request import DescribeClusterRequest
from pykbroker.protocol._generated.describe_cluster_response import (
    DescribeClusterBroker,
    DescribeClusterResponse,
)
from pykbroker.protocol._generated.metadata_request import MetadataRequest
from pykbroker.protocol._generated.metadata_response import (
    MetadataResponse,
    MetadataResponseBroker,
    MetadataResponsePartition,
    MetadataResponseTopic,
)
from pykbroker.protocol.api import ApiKey
from pykbroker.protocol.primitives import ZERO_UUID
from pykbroker.server.dispatch import HandlerSpec
from pykbroker.server.request_context import RequestContext

log = logging.getLogger("pykbroker.handlers.metadata")

# Kafka's AclOperation codes, as bit positions of the authorized-operations fields.
_TOPIC_OPS = (3, 4, 5, 6, 7, 8, 10, 11)  # READ WRITE CREATE DELETE ALTER DESCRIBE D/A_CONFIGS
_CLUSTER_OPS = (5, 7, 8, 9, 10, 11, 12)  # CREATE ALTER DESCRIBE CLUSTER_ACTION ... IDEMPOTENT
NOT_REQUESTED = -(2**31)


def _bits(ops: tuple[int, ...]) -> int:
    out = 0
    for op in ops:
        out |= 1 << op
    return out


def _topic_response(services: Any, name: str, error: ErrorCode = ErrorCode.NONE,
                    include_ops: bool = False) -> MetadataResponseTopic:
    topic = services.topics.get(name)
    if topic is None or error != ErrorCode.NONE:
        return MetadataResponseTopic(error_code=int(error or ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
                                     name=name, topic_id=ZERO_UUID)
    partitions = []
    for index in sorted(topic.assignment):
        replicas = topic.assignment[index]
        part = services.replicas.partitions.get((name, index))
        partitions.append(MetadataResponsePartition(
            error_code=0,
            partition_index=index,
            leader_id=services.node_id,
            leader_epoch=part.leader_epoch if part is not None else 0,
            replica_nodes=list(replicas),
            isr_nodes=list(replicas),
            offline_replicas=[],
        ))
    return MetadataResponseTopic(
        error_code=0,
        name=name,
        topic_id=topic.topic_id,
        is_internal=topic.is_internal,
        partitions=partitions,
        topic_authorized_operations=_bits(_TOPIC_OPS) if include_ops else NOT_REQUESTED,
    )


def brokers_for(ctx: RequestContext) -> list[tuple[int, str, int, str | None]]:
    host, port = ctx.services.advertised_address(ctx.listener)
    return [(ctx.services.node_id, host, port, ctx.services.rack)]


async def handle_metadata(ctx: RequestContext, req: MetadataRequest) -> MetadataResponse:
    services = ctx.services
    include_ops = ctx.api_version >= 8 and req.include_topic_authorized_operations
    # v0: an empty list means all topics; v1+: null means all topics.
    all_topics = req.topics is None or (ctx.api_version == 0 and not req.topics)
    allow_auto = ctx.api_version < 4 or req.allow_auto_topic_creation
    topics: list[MetadataResponseTopic] = []
    if all_topics:
        for name in sorted(services.topics.store.topics):
            topics.append(_topic_response(services, name, include_ops=include_ops))
    else:
        for wanted in req.topics or []:
            name = wanted.name
            if name is None:
                topic = services.topics.store.topic_by_id(wanted.topic_id)
                if topic is None:
                    topics.append(MetadataResponseTopic(
                        error_code=int(ErrorCode.UNKNOWN_TOPIC_ID), name=None,
                        topic_id=wanted.topic_id))
                    continue
                name = topic.name
            if services.topics.get(name) is None:
                topics.append(_auto_create(ctx, name, allow_auto, include_ops))
            else:
                topics.append(_topic_response(services, name, include_ops=include_ops))
    return MetadataResponse(
        throttle_time_ms=0,
        brokers=[MetadataResponseBroker(n, h, p, r) for n, h, p, r in brokers_for(ctx)],
        cluster_id=services.cluster_id,
        controller_id=services.node_id,
        topics=topics,
        cluster_authorized_operations=(
            _bits(_CLUSTER_OPS) if 8 <= ctx.api_version <= 10
            and req.include_cluster_authorized_operations else NOT_REQUESTED
        ),
    )


def _auto_create(ctx: RequestContext, name: str, allow: bool,
                 include_ops: bool) -> MetadataResponseTopic:
    services = ctx.services
    if not (allow and services.config.auto_create_topics_enable):
        return MetadataResponseTopic(error_code=int(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
                                     name=name, topic_id=ZERO_UUID)
    try:
        services.topics.create_topic(name)
    except KafkaError as exc:
        code = exc.error_code
        if code == ErrorCode.TOPIC_ALREADY_EXISTS:
            return _topic_response(services, name, include_ops=include_ops)
        log.info("auto-creation of topic %r failed: %s", name, exc)
        return MetadataResponseTopic(error_code=int(code), name=name, topic_id=ZERO_UUID)
    # As Kafka: the request that creates the topic is answered LEADER_NOT_AVAILABLE with no
    # partitions; the client's next Metadata request sees the leaders.
    return MetadataResponseTopic(error_code=int(ErrorCode.LEADER_NOT_AVAILABLE), name=name,
                                 topic_id=ZERO_UUID, is_internal=name.startswith("__"))


async def handle_describe_cluster(ctx: RequestContext,
                                  req: DescribeClusterRequest) -> DescribeClusterResponse:
    if ctx.api_version >= 1 and req.endpoint_type not in (1,):
        # Only brokers are described by a broker listener (controllers: type 2).
        return DescribeClusterResponse(error_code=int(ErrorCode.UNSUPPORTED_ENDPOINT_TYPE),
                                       error_message="The endpoint type is not supported",
                                       endpoint_type=req.endpoint_type)
    return DescribeClusterResponse(
        throttle_time_ms=0,
        error_code=0,
        endpoint_type=1,
        cluster_id=ctx.services.cluster_id,
        controller_id=ctx.services.node_id,
        brokers=[DescribeClusterBroker(n, h, p, r) for n, h, p, r in brokers_for(ctx)],
        cluster_authorized_operations=(
            _bits(_CLUSTER_OPS) if req.include_cluster_authorized_operations else NOT_REQUESTED
        ),
    )


HANDLERS = [
    HandlerSpec(ApiKey.METADATA, 0, 12, handle_metadata),
    HandlerSpec(ApiKey.DESCRIBE_CLUSTER, 0, 1, handle_describe_cluster),
]
