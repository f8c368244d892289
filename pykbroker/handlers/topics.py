"""CreateTopics, DeleteTopics, CreatePartitions and DeleteRecords, with Kafka's errors."""

from __future__ import annotations

from collections import Counter

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.handlers.authz import CLUSTER, TOPIC, Op, authorize, secured
from pykbroker.protocol._generated.create_partitions_request import CreatePartitionsRequest
from pykbroker.protocol._generated.create_partitions_response import (
    CreatePartitionsResponse,
    CreatePartitionsTopicResult,
)
from pykbroker.protocol._generated.create_topics_request import CreateTopicsRequest
from pykbroker.protocol._generated.create_topics_response import (
    CreatableTopicConfigs,
    CreatableTopicResult,
    CreateTopicsResponse,
)
from pykbroker.protocol._generated.delete_records_request import DeleteRecordsRequest
from pykbroker.protocol._generated.delete_records_response import (
    DeleteRecordsPartitionResult,
    DeleteRecordsResponse,
    DeleteRecordsTopicResult,
)
from pykbroker.protocol._generated.delete_topics_request import DeleteTopicsRequest
from pykbroker.protocol._generated.delete_topics_response import (
    DeletableTopicResult,
    DeleteTopicsResponse,
)
from pykbroker.protocol.api import ApiKey
from pykbroker.protocol.primitives import ZERO_UUID
from pykbroker.server.dispatch import HandlerSpec
from pykbroker.server.request_context import RequestContext


async def handle_create_topics(ctx: RequestContext,
                               req: CreateTopicsRequest) -> CreateTopicsResponse:
    services = ctx.services
    cluster = services.cluster
    waiting: dict[str, tuple[CreatableTopicResult, int]] = {}
    counts = Counter(t.name for t in req.topics)
    # CREATE on the cluster allows every topic, else CREATE on each; the new topic's configs
    # and layout are shown only with DESCRIBE_CONFIGS on it.
    check = secured(ctx)
    any_topic = not check or authorize(ctx, Op.CREATE, CLUSTER)
    results = []
    for t in req.topics:
        result = CreatableTopicResult(name=t.name, error_message=None)
        hide_configs = check and not authorize(ctx, Op.DESCRIBE_CONFIGS, TOPIC, t.name)
        refused = True  # by the checks before creation (they keep the config error code)
        try:
            if counts[t.name] > 1:
                raise KafkaError(ErrorCode.INVALID_REQUEST,
                                 f"Create topics request from client `{ctx.client_id}` contains "
                                 f"multiple entries for the following topics: {t.name}")
            if not (any_topic or authorize(ctx, Op.CREATE, TOPIC, t.name)):
                raise KafkaError(ErrorCode.TOPIC_AUTHORIZATION_FAILED, "Authorization failed.")
            refused = False
            assignment = {a.partition_index: list(a.broker_ids) for a in t.assignments}
            configs = {c.name: c.value for c in t.configs}
            if cluster is None:
                topic = services.topics.create_topic(
                    t.name, t.num_partitions, t.replication_factor,
                    assignment=assignment or None, configs=configs,
                    validate_only=req.validate_only)
            else:  # validated here, written to ZooKeeper, led once the controller elects
                topic = services.topics.plan_topic(
                    t.name, t.num_partitions, t.replication_factor,
                    assignment=assignment or None, configs=configs)
                if not req.validate_only:
                    await cluster.create_topic(topic)
                    waiting[t.name] = (result, topic.partition_count)
            if hide_configs:
                result.topic_config_error_code = int(ErrorCode.TOPIC_AUTHORIZATION_FAILED)
                result.configs = None if ctx.api_version >= 5 else []
                results.append(result)
                continue
            result.topic_id = topic.topic_id
            result.num_partitions = topic.partition_count
            result.replication_factor = len(next(iter(topic.assignment.values())))
            if ctx.api_version >= 5:
                result.configs = [
                    CreatableTopicConfigs(e.name, e.value, e.read_only, e.source, e.is_sensitive)
                    for e in services.describe_topic_configs(topic.configs)
                ]
        except KafkaError as exc:
            result.error_code = int(exc.error_code)
            result.error_message = exc.detail
            result.configs = None if ctx.api_version >= 5 else []
            if hide_configs and refused:
                result.topic_config_error_code = int(ErrorCode.TOPIC_AUTHORIZATION_FAILED)
        results.append(result)
    if waiting and req.timeout_ms > 0:
        await cluster.wait_for(lambda: all(cluster.has_leaders(name, count)
                                           for name, (_, count) in waiting.items()),
                               req.timeout_ms)
        for name, (result, count) in waiting.items():
            if not cluster.has_leaders(name, count):
                result.error_code = int(ErrorCode.REQUEST_TIMED_OUT)
    return CreateTopicsResponse(throttle_time_ms=0, topics=results)


async def handle_delete_topics(ctx: RequestContext,
                               req: DeleteTopicsRequest) -> DeleteTopicsResponse:
    topics = ctx.services.topics
    cluster = ctx.services.cluster
    waiting: dict[str, DeletableTopicResult] = {}
    if ctx.api_version >= 6:
        wanted = [(t.name, t.topic_id) for t in req.topics]
    else:
        wanted = [(n, ZERO_UUID) for n in req.topic_names]
    results = []
    check = secured(ctx)
    for name, topic_id in wanted:
        result = DeletableTopicResult(name=name, topic_id=topic_id, error_message=None)
        try:
            if name is None:
                info = topics.store.topic_by_id(topic_id)
                if info is None:
                    raise KafkaError(ErrorCode.UNKNOWN_TOPIC_ID)
                if check and not authorize(ctx, Op.DESCRIBE, TOPIC, info.name):
                    raise KafkaError(ErrorCode.TOPIC_AUTHORIZATION_FAILED)  # name not shown
                name = result.name = info.name
            elif topic_id != ZERO_UUID:
                raise KafkaError(ErrorCode.INVALID_REQUEST,
                                 "A topic may be named by name or by id, not both")
            if check and not authorize(ctx, Op.DELETE, TOPIC, name):
                raise KafkaError(ErrorCode.TOPIC_AUTHORIZATION_FAILED)
            info = topics.delete_topic(name)
            result.topic_id = info.topic_id
            if cluster is not None:
                await cluster.delete_topic(name)
                waiting[name] = result
        except KafkaError as exc:
            result.error_code = int(exc.error_code)
            result.error_message = exc.detail
        results.append(result)
    if waiting and req.timeout_ms > 0:
        await cluster.wait_for(lambda: all(cluster.cache.topic(n) is None for n in waiting),
                               req.timeout_ms)
        for name, result in waiting.items():
            if cluster.cache.topic(name) is not None:
                result.error_code = int(ErrorCode.REQUEST_TIMED_OUT)
    return DeleteTopicsResponse(throttle_time_ms=0, responses=results)


async def handle_create_partitions(ctx: RequestContext,
                                   req: CreatePartitionsRequest) -> CreatePartitionsResponse:
    topics = ctx.services.topics
    cluster = ctx.services.cluster
    waiting: dict[str, tuple[CreatePartitionsTopicResult, int]] = {}
    counts = Counter(t.name for t in req.topics)
    results = []
    for t in req.topics:
        result = CreatePartitionsTopicResult(name=t.name)
        try:
            if counts[t.name] > 1:
                raise KafkaError(ErrorCode.INVALID_REQUEST, "Duplicate topic in request.")
            if not authorize(ctx, Op.ALTER, TOPIC, t.name):
                raise KafkaError(ErrorCode.TOPIC_AUTHORIZATION_FAILED,
                                 "The topic authorization is failed.")
            assignment = ([list(a.broker_ids) for a in t.assignments]
                          if t.assignments is not None else None)
            if cluster is None:
                topics.create_partitions(t.name, t.count, assignment,
                                         validate_only=req.validate_only)
            else:
                topic, new = topics.plan_partitions(t.name, t.count, assignment)
                if not req.validate_only:
                    await cluster.add_partitions(topic, new)
                    waiting[t.name] = (result, t.count)
        except KafkaError as exc:
            result.error_code = int(exc.error_code)
            result.error_message = exc.detail
        results.append(result)
    if waiting and req.timeout_ms > 0:
        await cluster.wait_for(lambda: all(cluster.has_leaders(name, count)
                                           for name, (_, count) in waiting.items()),
                               req.timeout_ms)
        for name, (result, count) in waiting.items():
            if not cluster.has_leaders(name, count):
                result.error_code = int(ErrorCode.REQUEST_TIMED_OUT)
    return CreatePartitionsResponse(throttle_time_ms=0, results=results)


async def handle_delete_records(ctx: RequestContext,
                                req: DeleteRecordsRequest) -> DeleteRecordsResponse:
    replicas = ctx.services.replicas
    topics = []
    for t in req.topics:
        parts = []
        allowed = authorize(ctx, Op.DELETE, TOPIC, t.name)
        for p in t.partitions:
            result = DeleteRecordsPartitionResult(partition_index=p.partition_index,
                                                  low_watermark=-1)
            try:
                if not allowed:
                    raise KafkaError(ErrorCode.TOPIC_AUTHORIZATION_FAILED)
                part = replicas.partition(t.name, p.partition_index)
                offset = part.high_watermark if p.offset == -1 else p.offset
                if offset < 0 or offset > part.high_watermark:
                    raise KafkaError(ErrorCode.OFFSET_OUT_OF_RANGE)
                if part.topic in ctx.services.internal_topics:
                    raise KafkaError(ErrorCode.POLICY_VIOLATION,
                                     "Records of internal topics cannot be deleted")
                result.low_watermark = int(part.log.delete_records_before(offset))
                part.wake()
            except KafkaError as exc:
                result.error_code = int(exc.error_code)
            parts.append(result)
        topics.append(DeleteRecordsTopicResult(name=t.name, partitions=parts))
    return DeleteRecordsResponse(throttle_time_ms=0, topics=topics)


HANDLERS = [
    HandlerSpec(ApiKey.CREATE_TOPICS, 0, 7, handle_create_topics),
    HandlerSpec(ApiKey.DELETE_TOPICS, 0, 6, handle_delete_topics),
    HandlerSpec(ApiKey.CREATE_PARTITIONS, 0, 3, handle_create_partitions),
    HandlerSpec(ApiKey.DELETE_RECORDS, 0, 2, handle_delete_records),
]
