"""Metadata and DescribeCluster: brokers, topics, partitions, leaders, auto-creation."""

from __future__ import annotations

import logging

from pykbroker.cluster.metadata_cache import LiveBroker, MetadataView, PartitionState
from pykbroker.cluster.topics import INTERNAL_TOPICS
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.handlers.authz import (
    CLUSTER,
    TOPIC,
    Op,
    authorize,
    authorized_operations,
)
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
from pykbroker.security.acl_codes import CLUSTER_NAME
from pykbroker.server.dispatch import HandlerSpec
from pykbroker.server.request_context import RequestContext

log = logging.getLogger("pykbroker.handlers.metadata")

NOT_REQUESTED = -(2**31)


def _partition_response(index: int, state: PartitionState, listener: str,
                        alive: dict[int, LiveBroker], node_id: int) -> MetadataResponsePartition:
    """Kafka's MetadataCache rules: a leader that is not alive (or lacks the request's
    listener) is reported as LEADER_NOT_AVAILABLE / LISTENER_NOT_FOUND with leader -1."""
    error, leader = ErrorCode.NONE, state.leader
    broker = alive.get(leader)
    if broker is None:
        error, leader = ErrorCode.LEADER_NOT_AVAILABLE, -1
    elif leader != node_id and broker.endpoint(listener) is None:
        error, leader = ErrorCode.LISTENER_NOT_FOUND, -1
    return MetadataResponsePartition(
        error_code=int(error),
        partition_index=index,
        leader_id=leader,
        leader_epoch=state.leader_epoch,
        replica_nodes=list(state.replicas),
        isr_nodes=list(state.isr),
        offline_replicas=list(state.offline_replicas),
    )


def _topic_response(ctx: RequestContext, name: str, error: ErrorCode = ErrorCode.NONE,
                    include_ops: bool = False, listener: str = "") -> MetadataResponseTopic:
    services = ctx.services
    view: MetadataView = services.metadata
    meta = view.topic(name)
    if meta is None or error != ErrorCode.NONE:
        return MetadataResponseTopic(error_code=int(error or ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
                                     name=name, topic_id=ZERO_UUID)
    alive = {b.id: b for b in view.live_brokers()}
    partitions = [_partition_response(index, state, listener, alive, services.node_id)
                  for index, state in sorted(meta.partitions.items())]
    return MetadataResponseTopic(
        error_code=0,
        name=name,
        topic_id=meta.topic_id,
        is_internal=name in INTERNAL_TOPICS,
        partitions=partitions,
        topic_authorized_operations=(authorized_operations(ctx, TOPIC, name) if include_ops
                                     else NOT_REQUESTED),
    )


def brokers_for(ctx: RequestContext) -> list[tuple[int, str, int, str | None]]:
    """Live brokers with their address on the request's listener (Kafka leaves out brokers
    without it; a lone broker falls back to its first advertised address, as before)."""
    services = ctx.services
    out = []
    for broker in services.metadata.live_brokers():
        ep = broker.endpoint(ctx.listener)
        if ep is None and broker.id == services.node_id and broker.endpoints:
            ep = broker.endpoints[0]
        if ep is not None:
            out.append((broker.id, ep.host, ep.port, broker.rack))
    return out


async def handle_metadata(ctx: RequestContext, req: MetadataRequest) -> MetadataResponse:
    services = ctx.services
    include_ops = ctx.api_version >= 8 and req.include_topic_authorized_operations
    # v0: an empty list means all topics; v1+: null means all topics.
    all_topics = req.topics is None or (ctx.api_version == 0 and not req.topics)
    allow_auto = ctx.api_version < 4 or req.allow_auto_topic_creation
    topics: list[MetadataResponseTopic] = []
    view: MetadataView = services.metadata
    listener = ctx.listener
    # Kafka's order: unknown topic ids, the topics answered, those refused CREATE, those
    # refused DESCRIBE.
    unknown_ids: list[MetadataResponseTopic] = []
    create_refused: list[MetadataResponseTopic] = []
    denied: list[MetadataResponseTopic] = []
    if all_topics:
        # Topics the principal may not describe are left out (KafkaApis).
        for known in view.topic_names():
            if authorize(ctx, Op.DESCRIBE, TOPIC, known):
                topics.append(_topic_response(ctx, known, include_ops=include_ops,
                                              listener=listener))
    else:
        for wanted in req.topics or []:
            name: str | None = wanted.name
            by_id = name is None
            if name is None:
                meta = view.topic_by_id(wanted.topic_id)
                if meta is None:
                    unknown_ids.append(MetadataResponseTopic(
                        error_code=int(ErrorCode.UNKNOWN_TOPIC_ID), name=None,
                        topic_id=wanted.topic_id))
                    continue
                name = meta.name
            if not authorize(ctx, Op.DESCRIBE, TOPIC, name):
                # Existence not disclosed; a topic id is no secret (Kafka answers it).
                denied.append(MetadataResponseTopic(
                    error_code=int(ErrorCode.TOPIC_AUTHORIZATION_FAILED),
                    name=None if by_id else name,
                    topic_id=wanted.topic_id if by_id else ZERO_UUID))
            elif view.topic(name) is None:
                created = _auto_create(ctx, name, allow_auto, include_ops)
                if created.error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED:
                    create_refused.append(created)
                else:
                    topics.append(created)
            else:
                topics.append(_topic_response(ctx, name, include_ops=include_ops,
                                              listener=listener))
    topics = unknown_ids + topics + create_refused + denied
    cluster_ops = NOT_REQUESTED
    if 8 <= ctx.api_version <= 10 and req.include_cluster_authorized_operations:
        cluster_ops = _cluster_operations(ctx)
    return MetadataResponse(
        throttle_time_ms=0,
        brokers=[MetadataResponseBroker(n, h, p, r) for n, h, p, r in brokers_for(ctx)],
        cluster_id=services.cluster_id,
        controller_id=view.controller_id,
        topics=topics,
        cluster_authorized_operations=cluster_ops,
    )


def _cluster_operations(ctx: RequestContext) -> int:
    """0 without DESCRIBE on the cluster, else what the principal may do on it."""
    if not authorize(ctx, Op.DESCRIBE, CLUSTER):
        return 0
    return authorized_operations(ctx, CLUSTER, CLUSTER_NAME)


def _auto_create(ctx: RequestContext, name: str, allow: bool,
                 include_ops: bool) -> MetadataResponseTopic:
    services = ctx.services
    if not (allow and services.config.auto_create_topics_enable):
        return MetadataResponseTopic(error_code=int(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
                                     name=name, topic_id=ZERO_UUID)
    if not (authorize(ctx, Op.CREATE, CLUSTER) or authorize(ctx, Op.CREATE, TOPIC, name)):
        return MetadataResponseTopic(error_code=int(ErrorCode.TOPIC_AUTHORIZATION_FAILED),
                                     name=name, topic_id=ZERO_UUID,
                                     is_internal=name in INTERNAL_TOPICS)
    try:
        services.topics.create_topic(name)
    except KafkaError as exc:
        code = exc.error_code
        if code == ErrorCode.TOPIC_ALREADY_EXISTS:
            return _topic_response(ctx, name, include_ops=include_ops,
                                   listener=ctx.listener)
        if code != ErrorCode.LEADER_NOT_AVAILABLE:  # a cluster creates it in ZooKeeper
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
        controller_id=ctx.services.metadata.controller_id,
        brokers=[DescribeClusterBroker(n, h, p, r) for n, h, p, r in brokers_for(ctx)],
        cluster_authorized_operations=(
            _cluster_operations(ctx) if req.include_cluster_authorized_operations
            else NOT_REQUESTED),
    )


HANDLERS = [
    HandlerSpec(ApiKey.METADATA, 0, 12, handle_metadata),
    HandlerSpec(ApiKey.DESCRIBE_CLUSTER, 0, 1, handle_describe_cluster),
]
