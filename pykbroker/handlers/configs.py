"""DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics and this broker.

Entries are reported as Kafka reports them (value, source, default, read-only, sensitive,
synonyms, type, documentation); topic overrides are validated with Kafka's rules.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pykbroker.cluster.topics import validate_topic_name
from pykbroker.config import BROKER_DEFS, TOPIC_DEFS, ConfigType, describe_broker_configs
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.handlers.authz import CLUSTER, Op, authorize
from pykbroker.handlers.authz import TOPIC as TOPIC_RESOURCE
from pykbroker.protocol._generated.alter_configs_request import AlterConfigsRequest
from pykbroker.protocol._generated.alter_configs_response import (
    AlterConfigsResourceResponse,
    AlterConfigsResponse,
)
from pykbroker.protocol._generated.describe_configs_request import DescribeConfigsRequest
from pykbroker.protocol._generated.describe_configs_response import (
    DescribeConfigsResourceResult,
    DescribeConfigsResponse,
    DescribeConfigsResult,
    DescribeConfigsSynonym,
)
from pykbroker.protocol._generated.incremental_alter_configs_request import (
    IncrementalAlterConfigsRequest,
)
from pykbroker.protocol._generated.incremental_alter_configs_response import (
    AlterConfigsResourceResponse as IncrementalResourceResponse,
)
from pykbroker.protocol._generated.incremental_alter_configs_response import (
    IncrementalAlterConfigsResponse,
)
from pykbroker.protocol.api import ApiKey
from pykbroker.server.dispatch import HandlerSpec
from pykbroker.server.request_context import RequestContext

if TYPE_CHECKING:
    from pykbroker.security.acl_codes import AclOperation


def is_list_config(name: str) -> bool:
    defn = TOPIC_DEFS.get(name) or BROKER_DEFS.get(name)
    return defn is not None and defn.type is ConfigType.LIST


TOPIC = 2
BROKER = 4
BROKER_LOGGER = 8
CLIENT_METRICS = 16
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3


def _check_configs_acl(ctx: RequestContext, op: AclOperation, rtype: int, name: str) -> None:
    """ConfigHelper / KafkaApis: topic configs need ``op`` on the topic (else
    TOPIC_AUTHORIZATION_FAILED), broker (and logger, client metrics) configs ``op`` on the
    cluster (else CLUSTER_AUTHORIZATION_FAILED). Describing answers Kafka's message,
    altering none."""
    if rtype == TOPIC:
        if not authorize(ctx, op, TOPIC_RESOURCE, name):
            code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            raise KafkaError(code, code.message if op == Op.DESCRIBE_CONFIGS else None)
    elif rtype in (BROKER, BROKER_LOGGER, CLIENT_METRICS):
        if not authorize(ctx, op, CLUSTER):
            code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
            raise KafkaError(code, code.message if op == Op.DESCRIBE_CONFIGS else None)


def _check_broker_name(ctx: RequestContext, name: str, *, altering: bool = False) -> None:
    """Describing: this broker only. Altering in a cluster: any broker, or "" for the
    cluster-wide default, since the change goes through ZooKeeper to whichever it names."""
    if altering and ctx.services.cluster is not None and (name == "" or name.isdigit()):
        return
    if name not in ("", str(ctx.services.node_id)):
        raise KafkaError(
            ErrorCode.INVALID_REQUEST,
            f"Unexpected broker id, expected {ctx.services.node_id} or empty string, but "
            f"received {name}",
        )


def _topic_overrides(ctx: RequestContext, name: str, *, altering: bool = False
                     ) -> dict[str, str]:
    validate_topic_name(name)
    topic = ctx.services.topics.get(name)
    if topic is None:
        # Kafka names the topic when altering, and sends no message when describing.
        raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                         f"The topic '{name}' does not exist." if altering else None)
    return dict(topic.configs)


def _entries(ctx: RequestContext, rtype: int, name: str) -> list[Any]:
    if rtype == TOPIC:
        return list(ctx.services.describe_topic_configs(_topic_overrides(ctx, name)))
    if rtype == BROKER:
        _check_broker_name(ctx, name)
        return list(describe_broker_configs(ctx.services.config))
    raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unsupported resource type {rtype}")


async def handle_describe_configs(ctx: RequestContext,
                                  req: DescribeConfigsRequest) -> DescribeConfigsResponse:
    v = ctx.api_version
    results = []
    refused = []  # Kafka answers the resources it may not describe after the others
    for res in req.resources:
        result = DescribeConfigsResult(resource_type=res.resource_type,
                                       resource_name=res.resource_name, error_message=None)
        try:
            _check_configs_acl(ctx, Op.DESCRIBE_CONFIGS, res.resource_type, res.resource_name)
            wanted = set(res.configuration_keys) if res.configuration_keys is not None else None
            for e in _entries(ctx, res.resource_type, res.resource_name):
                if wanted is not None and e.name not in wanted:
                    continue
                item = DescribeConfigsResourceResult(
                    name=e.name, value=e.value, read_only=e.read_only,
                    is_default=e.is_default if v == 0 else False,
                    config_source=e.source, is_sensitive=e.is_sensitive,
                    config_type=e.config_type,
                    documentation=e.documentation if v >= 3 and req.include_documentation
                    else None,
                )
                if v >= 1 and req.include_synonyms:
                    item.synonyms = [DescribeConfigsSynonym(n, val, src)
                                     for n, val, src in e.synonyms]
                if v < 3:
                    item.config_type = 0
                if v == 0:
                    item.config_source = -1
                result.configs.append(item)
        except KafkaError as exc:
            result.error_code = int(exc.error_code)
            result.error_message = exc.detail
            result.configs = []
            if exc.error_code in (ErrorCode.TOPIC_AUTHORIZATION_FAILED,
                                  ErrorCode.CLUSTER_AUTHORIZATION_FAILED):
                refused.append(result)
                continue
        results.append(result)
    return DescribeConfigsResponse(throttle_time_ms=0, results=results + refused)


async def _apply_topic(ctx: RequestContext, name: str, configs: dict[str, str],
                       validate_only: bool) -> None:
    cluster = ctx.services.cluster
    ctx.services.topics.set_topic_configs(name, configs,
                                          validate_only=validate_only or cluster is not None)
    if cluster is not None and not validate_only:  # every broker applies it from ZooKeeper
        await cluster.change_topic_config(name, configs)


def _broker_entity(name: str) -> str:
    return name or "<default>"


async def _current_broker_configs(ctx: RequestContext, name: str) -> dict[str, str]:
    cluster = ctx.services.cluster
    if cluster is None:
        return dict(ctx.services.topics.store.broker_configs)
    configs: dict[str, str] = await cluster.broker_config(_broker_entity(name))
    return configs


async def _apply_broker(ctx: RequestContext, name: str, configs: dict[str, str],
                        validate_only: bool) -> None:
    _check_broker_name(ctx, name, altering=True)
    cluster = ctx.services.cluster
    ctx.services.apply_dynamic_broker_configs(
        configs, validate_only=validate_only or cluster is not None)
    if cluster is not None and not validate_only:
        await cluster.change_broker_config(_broker_entity(name), configs)


async def _alter_each(
    ctx: RequestContext,
    resources: list[Any],
    response_type: type[Any],
    alter_topic: Callable[[Any], Awaitable[None]],
    alter_broker: Callable[[Any], Awaitable[None]],
) -> list[Any]:
    """One response per resource: dispatch on its type, errors become its error fields."""
    responses = []
    for res in resources:
        resp = response_type(resource_type=res.resource_type,
                             resource_name=res.resource_name, error_message=None)
        try:
            _check_configs_acl(ctx, Op.ALTER_CONFIGS, res.resource_type, res.resource_name)
            if res.resource_type == TOPIC:
                await alter_topic(res)
            elif res.resource_type == BROKER:
                await alter_broker(res)
            else:
                raise KafkaError(ErrorCode.INVALID_REQUEST,
                                 f"Unsupported resource type {res.resource_type}")
        except KafkaError as exc:
            resp.error_code = int(exc.error_code)
            resp.error_message = exc.detail
        responses.append(resp)
    return responses


async def handle_alter_configs(ctx: RequestContext,
                               req: AlterConfigsRequest) -> AlterConfigsResponse:
    def configs(res: Any) -> dict[str, str]:
        return {c.name: c.value for c in res.configs if c.value is not None}

    async def topic(res: Any) -> None:
        _topic_overrides(ctx, res.resource_name, altering=True)
        await _apply_topic(ctx, res.resource_name, configs(res), req.validate_only)

    async def broker(res: Any) -> None:
        await _apply_broker(ctx, res.resource_name, configs(res), req.validate_only)

    return AlterConfigsResponse(throttle_time_ms=0, responses=await _alter_each(
        ctx, req.resources, AlterConfigsResourceResponse, topic, broker))


def _incremental(current: dict[str, str], ops: list[Any], defaults: dict[str, str | None]
                 ) -> dict[str, str]:
    out = dict(current)
    seen: set[str] = set()
    for op in ops:
        if op.name in seen:
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             f"Error due to duplicate config keys: {op.name}")
        seen.add(op.name)
        if op.config_operation == SET:
            if op.value is None:
                raise KafkaError(ErrorCode.INVALID_REQUEST,
                                 f"Null value not supported for : {op.name}")
            out[op.name] = op.value
        elif op.config_operation == DELETE:
            out.pop(op.name, None)
        elif op.config_operation in (APPEND, SUBTRACT):
            if not is_list_config(op.name):
                verb = "append" if op.config_operation == APPEND else "subtract"
                raise KafkaError(ErrorCode.INVALID_CONFIG,
                                 f"Config value {verb} is not allowed for config key: {op.name}")
            base = out.get(op.name, defaults.get(op.name) or "")
            items = [x for x in base.split(",") if x]
            values = [x.strip() for x in (op.value or "").split(",") if x.strip()]
            if op.config_operation == APPEND:
                items += [x for x in values if x not in items]
            else:
                items = [x for x in items if x not in values]
            out[op.name] = ",".join(items)
        else:
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             f"Unknown config operation {op.config_operation}")
    return out


async def handle_incremental_alter_configs(
    ctx: RequestContext, req: IncrementalAlterConfigsRequest
) -> IncrementalAlterConfigsResponse:
    async def topic(res: Any) -> None:
        current = _topic_overrides(ctx, res.resource_name, altering=True)
        defaults = {e.name: e.value for e in ctx.services.describe_topic_configs({})}
        new = _incremental(current, res.configs, defaults)
        await _apply_topic(ctx, res.resource_name, new, req.validate_only)

    async def broker(res: Any) -> None:
        _check_broker_name(ctx, res.resource_name, altering=True)
        current = await _current_broker_configs(ctx, res.resource_name)
        new = _incremental(current, res.configs, {})
        await _apply_broker(ctx, res.resource_name, new, req.validate_only)

    return IncrementalAlterConfigsResponse(throttle_time_ms=0, responses=await _alter_each(
        ctx, req.resources, IncrementalResourceResponse, topic, broker))


HANDLERS = [
    HandlerSpec(ApiKey.DESCRIBE_CONFIGS, 0, 4, handle_describe_configs),
    HandlerSpec(ApiKey.ALTER_CONFIGS, 0, 2, handle_alter_configs),
    HandlerSpec(ApiKey.INCREMENTAL_ALTER_CONFIGS, 0, 1, handle_incremental_alter_configs),
]
