"""KIP-848 consumer group APIs: ConsumerGroupHeartbeat and ConsumerGroupDescribe.

Thin translations to :mod:`pykbroker.coordinator.group.consumer_group`.
"""

from __future__ import annotations

import uuid

from pykbroker.coordinator.group.assignors import Assignment
from pykbroker.coordinator.group.consumer_group import ConsumerGroup, HeartbeatRequest
from pykbroker.error_codes import ErrorCode
from pykbroker.handlers.authz import GROUP, Op, authorize, authorized_operations, secured
from pykbroker.handlers.groups import GROUP_OPERATIONS, NOT_REQUESTED, client_host
from pykbroker.protocol._generated.consumer_group_describe_request import (
    ConsumerGroupDescribeRequest,
)
from pykbroker.protocol._generated.consumer_group_describe_response import (
    Assignment as DescribedAssignment,
)
from pykbroker.protocol._generated.consumer_group_describe_response import (
    ConsumerGroupDescribeResponse,
    DescribedGroup,
    Member,
)
from pykbroker.protocol._generated.consumer_group_describe_response import (
    TopicPartitions as DescribedTopicPartitions,
)
from pykbroker.protocol._generated.consumer_group_heartbeat_request import (
    ConsumerGroupHeartbeatRequest,
)
from pykbroker.protocol._generated.consumer_group_heartbeat_response import (
    Assignment as HeartbeatAssignment,
)
from pykbroker.protocol._generated.consumer_group_heartbeat_response import (
    ConsumerGroupHeartbeatResponse,
    TopicPartitions,
)
from pykbroker.protocol.api import ApiKey
from pykbroker.server.dispatch import HandlerSpec
from pykbroker.server.request_context import RequestContext


async def handle_consumer_group_heartbeat(
        ctx: RequestContext, req: ConsumerGroupHeartbeatRequest
) -> ConsumerGroupHeartbeatResponse:
    groups = ctx.services.groups
    if not authorize(ctx, Op.READ, GROUP, req.group_id):
        return ConsumerGroupHeartbeatResponse(
            throttle_time_ms=0, error_code=int(ErrorCode.GROUP_AUTHORIZATION_FAILED),
            error_message=None, member_id=None, member_epoch=0, heartbeat_interval_ms=0,
            assignment=None)
    if req.group_id:
        status = groups.group_status_error(req.group_id)
        if status is not None:
            return ConsumerGroupHeartbeatResponse(
                throttle_time_ms=0, error_code=int(status), error_message=None,
                member_id=None, member_epoch=0, heartbeat_interval_ms=0, assignment=None)
    owned = None if req.topic_partitions is None else \
        [(tp.topic_id, list(tp.partitions)) for tp in req.topic_partitions]
    result = groups.consumer.heartbeat(HeartbeatRequest(
        group_id=req.group_id, member_id=req.member_id, member_epoch=req.member_epoch,
        instance_id=req.instance_id, rack_id=req.rack_id,
        rebalance_timeout_ms=req.rebalance_timeout_ms,
        subscribed_topic_names=None if req.subscribed_topic_names is None
        else list(req.subscribed_topic_names),
        subscribed_topic_regex=req.subscribed_topic_regex,
        server_assignor=req.server_assignor, owned=owned,
        client_id=ctx.client_id or "", client_host=client_host(ctx)))
    assignment = None
    if result.assignment is not None:
        assignment = HeartbeatAssignment(topic_partitions=[
            TopicPartitions(topic_id=tid, partitions=sorted(parts))
            for tid, parts in sorted(result.assignment.items(), key=lambda kv: str(kv[0]))
            if parts])
    return ConsumerGroupHeartbeatResponse(
        throttle_time_ms=0, error_code=int(result.error), error_message=result.message,
        member_id=result.member_id, member_epoch=result.member_epoch,
        heartbeat_interval_ms=result.heartbeat_interval_ms, assignment=assignment)


def _described(assignment: Assignment, names: dict[uuid.UUID, str]) -> DescribedAssignment:
    return DescribedAssignment(topic_partitions=[
        DescribedTopicPartitions(topic_id=tid, topic_name=names.get(tid, ""),
                                 partitions=sorted(parts))
        for tid, parts in sorted(assignment.items(), key=lambda kv: str(kv[0])) if parts])


def _describe_group(group: ConsumerGroup, names: dict[uuid.UUID, str], ops: int
                    ) -> DescribedGroup:
    return DescribedGroup(
        error_code=0, error_message=None, group_id=group.group_id, group_state=group.state,
        group_epoch=group.group_epoch, assignment_epoch=group.assignment_epoch,
        assignor_name=group.assignor_name,
        members=[Member(
            member_id=m.member_id, instance_id=m.instance_id, rack_id=m.rack_id,
            member_epoch=m.member_epoch, client_id=m.client_id, client_host=m.client_host,
            subscribed_topic_names=list(m.subscribed_topic_names),
            subscribed_topic_regex=m.subscribed_topic_regex,
            assignment=_described(m.assigned, names),
            target_assignment=_described(group.target.get(m.member_id, {}), names))
            for m in group.members.values()],
        authorized_operations=ops)


async def handle_consumer_group_describe(
        ctx: RequestContext, req: ConsumerGroupDescribeRequest
) -> ConsumerGroupDescribeResponse:
    groups = ctx.services.groups
    ops = GROUP_OPERATIONS if req.include_authorized_operations else NOT_REQUESTED
    names = groups.consumer.topic_names()
    out = []
    authorized = []
    for group_id in req.group_ids:  # Kafka answers the groups it may not describe first
        if authorize(ctx, Op.DESCRIBE, GROUP, group_id):
            authorized.append(group_id)
        else:
            out.append(DescribedGroup(
                error_code=int(ErrorCode.GROUP_AUTHORIZATION_FAILED), error_message=None,
                group_id=group_id, group_state="", group_epoch=0, assignment_epoch=0,
                assignor_name="", members=[], authorized_operations=NOT_REQUESTED))
    for group_id in authorized:
        status = groups.group_status_error(group_id)
        group = groups.consumer.groups.get(group_id)
        if status is None and group is None:
            status = ErrorCode.GROUP_ID_NOT_FOUND
            message = f"Group {group_id} not found." if group_id not in groups.groups \
                else f"Group {group_id} is not a consumer group."
        else:
            message = None
        if status is not None or group is None:
            code = status if status is not None else ErrorCode.GROUP_ID_NOT_FOUND
            out.append(DescribedGroup(
                error_code=int(code), error_message=message, group_id=group_id,
                group_state="", group_epoch=0, assignment_epoch=0, assignor_name="",
                members=[], authorized_operations=NOT_REQUESTED))
            continue
        out.append(_describe_group(group, names, authorized_operations(ctx, GROUP, group_id)
                                   if req.include_authorized_operations and secured(ctx)
                                   else ops))
    return ConsumerGroupDescribeResponse(throttle_time_ms=0, groups=out)


HANDLERS = [
    HandlerSpec(ApiKey.CONSUMER_GROUP_HEARTBEAT, 0, 1, handle_consumer_group_heartbeat),
    HandlerSpec(ApiKey.CONSUMER_GROUP_DESCRIBE, 0, 0, handle_consumer_group_describe),
]
