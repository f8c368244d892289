"""Consumer group APIs (classic protocol): thin translations to the group coordinator.

Version differences live here (which fields exist, where errors go); the semantics live in
:mod:`pykbroker.coordinator.group`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from pykbroker.coordinator.group import JoinRequest, OffsetAndMetadata
from pykbroker.coordinator.group.records import OFFSETS_TOPIC
from pykbroker.coordinator.transaction import TRANSACTION_STATE_TOPIC
from pykbroker.error_codes import ErrorCode
from pykbroker.handlers.authz import (
    CLUSTER,
    GROUP,
    TOPIC,
    TRANSACTIONAL_ID,
    Op,
    authorize,
    authorized_operations,
    secured,
)
from pykbroker.protocol._generated.delete_groups_request import DeleteGroupsRequest
from pykbroker.protocol._generated.delete_groups_response import (
    DeletableGroupResult,
    DeleteGroupsResponse,
)
from pykbroker.protocol._generated.describe_groups_request import DescribeGroupsRequest
from pykbroker.protocol._generated.describe_groups_response import (
    DescribedGroup,
    DescribedGroupMember,
    DescribeGroupsResponse,
)
from pykbroker.protocol._generated.find_coordinator_request import FindCoordinatorRequest
from pykbroker.protocol._generated.find_coordinator_response import (
    Coordinator,
    FindCoordinatorResponse,
)
from pykbroker.protocol._generated.heartbeat_request import HeartbeatRequest
from pykbroker.protocol._generated.heartbeat_response import HeartbeatResponse
from pykbroker.protocol._generated.join_group_request import JoinGroupRequest
from pykbroker.protocol._generated.join_group_response import (
    JoinGroupResponse,
    JoinGroupResponseMember,
)
from pykbroker.protocol._generated.leave_group_request import LeaveGroupRequest
from pykbroker.protocol._generated.leave_group_response import (
    LeaveGroupResponse,
    MemberResponse,
)
from pykbroker.protocol._generated.list_groups_request import ListGroupsRequest
from pykbroker.protocol._generated.list_groups_response import ListedGroup, ListGroupsResponse
from pykbroker.protocol._generated.offset_commit_request import OffsetCommitRequest
from pykbroker.protocol._generated.offset_commit_response import (
    OffsetCommitResponse,
    OffsetCommitResponsePartition,
    OffsetCommitResponseTopic,
)
from pykbroker.protocol._generated.offset_delete_request import OffsetDeleteRequest
from pykbroker.protocol._generated.offset_delete_response import (
    OffsetDeleteResponse,
    OffsetDeleteResponsePartition,
    OffsetDeleteResponseTopic,
)
from pykbroker.protocol._generated.offset_fetch_request import OffsetFetchRequest
from pykbroker.protocol._generated.offset_fetch_response import (
    OffsetFetchResponse,
    OffsetFetchResponseGroup,
    OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
)
from pykbroker.protocol._generated.sync_group_request import SyncGroupRequest
from pykbroker.protocol._generated.sync_group_response import SyncGroupResponse
from pykbroker.protocol.api import ApiKey
from pykbroker.server.dispatch import HandlerSpec
from pykbroker.server.request_context import RequestContext

if TYPE_CHECKING:
    from pykbroker.security.acl_codes import AclOperation

GROUP_KEY = 0
TRANSACTION_KEY = 1
# READ, DELETE, DESCRIBE: what Kafka reports as authorized on a group without an authorizer.
GROUP_OPERATIONS = (1 << 3) | (1 << 6) | (1 << 8)
NOT_REQUESTED = -(2**31)


def client_host(ctx: RequestContext) -> str:
    """Kafka shows ``InetAddress.toString()``: "/127.0.0.1"."""
    host = ctx.peer.rsplit(":", 1)[0].strip("[]") if ":" in ctx.peer else ctx.peer
    return "/" + host


async def handle_find_coordinator(ctx: RequestContext,
                                  req: FindCoordinatorRequest) -> FindCoordinatorResponse:
    v = ctx.api_version
    services = ctx.services
    keys = list(req.coordinator_keys) if v >= 4 else [req.key]
    key_type = req.key_type if v >= 1 else GROUP_KEY
    host, port = services.advertised_address(ctx.listener)
    found = []
    for key in keys:
        node_id = services.node_id
        if key_type == GROUP_KEY and not authorize(ctx, Op.DESCRIBE, GROUP, key):
            code = ErrorCode.GROUP_AUTHORIZATION_FAILED
        elif key_type == TRANSACTION_KEY and not authorize(ctx, Op.DESCRIBE, TRANSACTIONAL_ID,
                                                           key):
            code = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        elif services.cluster is not None and key_type in (GROUP_KEY, TRANSACTION_KEY):
            code, (node_id, host, port) = _cluster_coordinator(ctx, key_type, key)
        elif key_type == GROUP_KEY:
            code = services.groups.find_coordinator(key)
        elif key_type == TRANSACTION_KEY:
            code = services.transactions.find_coordinator(key)
        else:
            code = ErrorCode.INVALID_REQUEST
        ok = code == ErrorCode.NONE
        found.append(Coordinator(key=key, node_id=node_id if ok else -1,
                                 host=host if ok else "", port=port if ok else -1,
                                 error_code=int(code)))
    if v >= 4:
        return FindCoordinatorResponse(throttle_time_ms=0, coordinators=found)
    one = found[0]
    code = ErrorCode(one.error_code)
    return FindCoordinatorResponse(
        throttle_time_ms=0, error_code=one.error_code,
        error_message=code.name if code == ErrorCode.NONE else code.message,
        node_id=one.node_id, host=one.host, port=one.port)


def _cluster_coordinator(ctx: RequestContext, key_type: int, key: str
                         ) -> tuple[ErrorCode, tuple[int, str, int]]:
    """In a cluster the coordinator is the leader of the key's internal-topic partition."""
    services = ctx.services
    cluster = services.cluster
    none = (-1, "", -1)
    if key_type == TRANSACTION_KEY:
        txns = services.transactions
        if cluster.cache.topic(TRANSACTION_STATE_TOPIC) is None:
            return txns.find_coordinator(key), none  # creates the topic first
        leader = cluster.leader_endpoint(TRANSACTION_STATE_TOPIC, txns.partition_for(key),
                                         ctx.listener)
        if leader is None:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, none
        if leader[0] == services.node_id:
            return txns.find_coordinator(key), leader
        return ErrorCode.NONE, leader
    if cluster.cache.topic(OFFSETS_TOPIC) is None:
        return services.groups.find_coordinator(key), none  # creates the topic first
    leader = cluster.leader_endpoint(OFFSETS_TOPIC, services.groups.manager.partition_for(key),
                                     ctx.listener)
    if leader is None:
        return ErrorCode.COORDINATOR_NOT_AVAILABLE, none
    if leader[0] == services.node_id:
        return services.groups.find_coordinator(key), leader
    return ErrorCode.NONE, leader


async def handle_join_group(ctx: RequestContext, req: JoinGroupRequest) -> JoinGroupResponse:
    v = ctx.api_version
    if not authorize(ctx, Op.READ, GROUP, req.group_id):
        return JoinGroupResponse(
            throttle_time_ms=0, error_code=int(ErrorCode.GROUP_AUTHORIZATION_FAILED),
            generation_id=-1, protocol_type=None, protocol_name=None if v >= 7 else "",
            leader="", skip_assignment=False, member_id="", members=[])
    instance_id = req.group_instance_id if v >= 5 else None
    result = await ctx.services.groups.join_group(JoinRequest(
        group_id=req.group_id, member_id=req.member_id, group_instance_id=instance_id,
        require_known_member_id=v >= 4 and instance_id is None,
        support_skip_assignment=v >= 9, client_id=ctx.client_id or "",
        client_host=client_host(ctx),
        rebalance_timeout_ms=req.session_timeout_ms if v == 0 else req.rebalance_timeout_ms,
        session_timeout_ms=req.session_timeout_ms, protocol_type=req.protocol_type,
        protocols=[(p.name, bytes(p.metadata)) for p in req.protocols],
        reason=req.reason if v >= 8 else None))
    protocol_name = result.protocol_name
    if protocol_name is None and v < 7:
        protocol_name = ""  # not nullable before v7
    return JoinGroupResponse(
        throttle_time_ms=0, error_code=int(result.error), generation_id=result.generation_id,
        protocol_type=result.protocol_type, protocol_name=protocol_name,
        leader=result.leader_id, skip_assignment=result.skip_assignment,
        member_id=result.member_id,
        members=[JoinGroupResponseMember(member_id=m, group_instance_id=i, metadata=meta)
                 for m, i, meta in result.members])


async def handle_sync_group(ctx: RequestContext, req: SyncGroupRequest) -> SyncGroupResponse:
    v = ctx.api_version
    if not authorize(ctx, Op.READ, GROUP, req.group_id):
        return SyncGroupResponse(throttle_time_ms=0,
                                 error_code=int(ErrorCode.GROUP_AUTHORIZATION_FAILED),
                                 protocol_type=None, protocol_name=None, assignment=b"")
    result = await ctx.services.groups.sync_group(
        req.group_id, req.generation_id, req.member_id,
        req.group_instance_id if v >= 3 else None,
        req.protocol_type if v >= 5 else None, req.protocol_name if v >= 5 else None,
        {a.member_id: bytes(a.assignment) for a in req.assignments})
    return SyncGroupResponse(throttle_time_ms=0, error_code=int(result.error),
                             protocol_type=result.protocol_type,
                             protocol_name=result.protocol_name, assignment=result.assignment)


async def handle_heartbeat(ctx: RequestContext, req: HeartbeatRequest) -> HeartbeatResponse:
    if not authorize(ctx, Op.READ, GROUP, req.group_id):
        return HeartbeatResponse(throttle_time_ms=0,
                                 error_code=int(ErrorCode.GROUP_AUTHORIZATION_FAILED))
    code = ctx.services.groups.heartbeat(
        req.group_id, req.generation_id, req.member_id,
        req.group_instance_id if ctx.api_version >= 3 else None)
    return HeartbeatResponse(throttle_time_ms=0, error_code=int(code))


async def handle_leave_group(ctx: RequestContext, req: LeaveGroupRequest) -> LeaveGroupResponse:
    v = ctx.api_version
    if not authorize(ctx, Op.READ, GROUP, req.group_id):
        return LeaveGroupResponse(throttle_time_ms=0, members=[],
                                  error_code=int(ErrorCode.GROUP_AUTHORIZATION_FAILED))
    if v >= 3:
        leaving = [(m.member_id, m.group_instance_id, m.reason if v >= 5 else None)
                   for m in req.members]
    else:
        leaving = [(req.member_id, None, None)]
    top, errors = ctx.services.groups.leave_group(req.group_id, leaving)
    if v < 3:
        # One member and no member list: its error is the response's.
        code = top if top != ErrorCode.NONE else next(
            (e for e in errors if e != ErrorCode.NONE), ErrorCode.NONE)
        return LeaveGroupResponse(throttle_time_ms=0, error_code=int(code))
    return LeaveGroupResponse(
        throttle_time_ms=0, error_code=int(top),
        members=[MemberResponse(member_id=m, group_instance_id=i, error_code=int(e))
                 for (m, i, _), e in zip(leaving, errors, strict=False)])


async def handle_describe_groups(ctx: RequestContext,
                                 req: DescribeGroupsRequest) -> DescribeGroupsResponse:
    v = ctx.api_version
    include_ops = v >= 3 and req.include_authorized_operations
    ops = GROUP_OPERATIONS if include_ops else NOT_REQUESTED
    out = []
    authorized = []
    for group_id in req.groups:  # Kafka answers the groups it may not describe first
        if authorize(ctx, Op.DESCRIBE, GROUP, group_id):
            authorized.append(group_id)
        else:
            out.append(DescribedGroup(
                error_code=int(ErrorCode.GROUP_AUTHORIZATION_FAILED), group_id=group_id,
                group_state="", protocol_type="", protocol_data="", members=[],
                authorized_operations=NOT_REQUESTED))
    for group_id in authorized:
        if include_ops and secured(ctx):
            ops = authorized_operations(ctx, GROUP, group_id)
        code, desc = ctx.services.groups.describe_group(group_id)
        out.append(DescribedGroup(
            error_code=int(code), group_id=group_id, group_state=desc.state,
            protocol_type=desc.protocol_type, protocol_data=desc.protocol,
            members=[DescribedGroupMember(
                member_id=m.member_id, group_instance_id=m.group_instance_id if v >= 4 else None,
                client_id=m.client_id, client_host=m.client_host,
                member_metadata=m.metadata, member_assignment=m.assignment)
                for m in desc.members],
            authorized_operations=ops if code == ErrorCode.NONE else NOT_REQUESTED))
    return DescribeGroupsResponse(throttle_time_ms=0, groups=out)


async def handle_list_groups(ctx: RequestContext, req: ListGroupsRequest) -> ListGroupsResponse:
    v = ctx.api_version
    code, groups = ctx.services.groups.list_groups(
        req.states_filter if v >= 4 else (), req.types_filter if v >= 5 else ())
    if secured(ctx) and not authorize(ctx, Op.DESCRIBE, CLUSTER):
        groups = [g for g in groups if authorize(ctx, Op.DESCRIBE, GROUP, g.group_id)]
    return ListGroupsResponse(
        throttle_time_ms=0, error_code=int(code),
        groups=[ListedGroup(group_id=g.group_id, protocol_type=g.protocol_type,
                            group_state=g.state, group_type=g.group_type) for g in groups])


async def handle_delete_groups(ctx: RequestContext,
                               req: DeleteGroupsRequest) -> DeleteGroupsResponse:
    wanted = list(dict.fromkeys(req.groups_names))
    allowed = [g for g in wanted if authorize(ctx, Op.DELETE, GROUP, g)]
    results = ctx.services.groups.delete_groups(allowed) if allowed else {}
    # Kafka lists the groups it deleted (or failed to) first, then the unauthorized ones.
    return DeleteGroupsResponse(
        throttle_time_ms=0,
        results=[DeletableGroupResult(group_id=g, error_code=int(results[g])) for g in allowed]
        + [DeletableGroupResult(group_id=g,
                                error_code=int(ErrorCode.GROUP_AUTHORIZATION_FAILED))
           for g in wanted if g not in set(allowed)])


def known_partition(ctx: RequestContext, topic: str, partition: int) -> bool:
    info = ctx.services.topics.get(topic)
    return info is not None and partition in info.assignment


def unreadable_topics(ctx: RequestContext, names: Iterable[str],
                      op: AclOperation = Op.READ) -> set[str]:
    """The topics among ``names`` the principal may not ``op`` (none without an authorizer)."""
    if not secured(ctx):
        return set()
    return {n for n in set(names) if not authorize(ctx, op, TOPIC, n)}


async def handle_offset_commit(ctx: RequestContext,
                               req: OffsetCommitRequest) -> OffsetCommitResponse:
    v = ctx.api_version
    groups = ctx.services.groups
    now = groups.now()
    retention = req.retention_time_ms if 2 <= v <= 4 else -1
    errors: dict[tuple[str, int], ErrorCode] = {}
    offsets: dict[tuple[str, int], OffsetAndMetadata] = {}
    if not authorize(ctx, Op.READ, GROUP, req.group_id):
        errors = dict.fromkeys(((t.name, p.partition_index) for t in req.topics
                                for p in t.partitions), ErrorCode.GROUP_AUTHORIZATION_FAILED)
    unreadable = unreadable_topics(ctx, (t.name for t in req.topics))
    for t in req.topics if not errors else ():
        for p in t.partitions:
            tp = (t.name, p.partition_index)
            if t.name in unreadable:
                errors[tp] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
                continue
            if not known_partition(ctx, t.name, p.partition_index):
                errors[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            commit_ts = p.commit_timestamp if v == 1 and p.commit_timestamp != -1 else now
            offsets[tp] = OffsetAndMetadata(
                offset=p.committed_offset,
                leader_epoch=p.committed_leader_epoch if v >= 6 else -1,
                metadata=p.committed_metadata or "", commit_timestamp=commit_ts,
                expire_timestamp=now + retention if retention != -1 else None)
    if offsets:
        errors.update(await groups.commit_offsets(
            req.group_id, req.generation_id_or_member_epoch if v >= 1 else -1,
            req.member_id if v >= 1 else "", req.group_instance_id if v >= 7 else None,
            offsets))
    return OffsetCommitResponse(throttle_time_ms=0, topics=[
        OffsetCommitResponseTopic(name=t.name, partitions=[
            OffsetCommitResponsePartition(
                partition_index=p.partition_index,
                error_code=int(errors[(t.name, p.partition_index)]))
            for p in t.partitions])
        for t in req.topics])


def _fetched_partition(index: int, om: OffsetAndMetadata | None,
                       code: ErrorCode = ErrorCode.NONE) -> OffsetFetchResponsePartitions:
    if om is None or code != ErrorCode.NONE:
        return OffsetFetchResponsePartitions(partition_index=index, committed_offset=-1,
                                             committed_leader_epoch=-1, metadata="",
                                             error_code=int(code))
    return OffsetFetchResponsePartitions(
        partition_index=index, committed_offset=om.offset,
        committed_leader_epoch=om.leader_epoch, metadata=om.metadata, error_code=0)


def _fetch_group(ctx: RequestContext, group_id: str,
                 topics: list[tuple[str, list[int]]] | None,
                 require_stable: bool = False) -> OffsetFetchResponseGroup:
    """One group's answer in the v8 shape; older versions are cut down from it. With
    ``require_stable`` (KIP-447) a partition whose transactional commit is still pending
    answers UNSTABLE_OFFSET_COMMIT, and the consumer retries."""
    if not authorize(ctx, Op.DESCRIBE, GROUP, group_id):
        return _group_error(ctx, group_id, topics, ErrorCode.GROUP_AUTHORIZATION_FAILED)
    hidden = unreadable_topics(ctx, (t for t, _ in topics or ()), Op.DESCRIBE)
    hidden_parts = [(t, parts) for t, parts in topics or () if t in hidden]
    if hidden:
        topics = [(t, parts) for t, parts in topics or () if t not in hidden]
    wanted = None if topics is None else [(t, p) for t, parts in topics for p in parts]
    code, found = ctx.services.groups.fetch_offsets(group_id, wanted)
    if topics is None and secured(ctx):  # all offsets: only the topics it may describe
        found = [(tp, om) for tp, om in found if authorize(ctx, Op.DESCRIBE, TOPIC, tp[0])]
    unstable = ctx.services.groups.unstable_offsets(group_id) if require_stable else set()
    by_topic: dict[str, list[OffsetFetchResponsePartitions]] = {}
    if code != ErrorCode.NONE:
        if ctx.api_version < 2:  # no group-level error before v2: every partition has it
            for t, parts in topics or []:
                by_topic[t] = [_fetched_partition(p, None, code) for p in parts]
    else:
        for (t, p), om in found:
            by_topic.setdefault(t, []).append(_fetched_partition(
                p, om, ErrorCode.UNSTABLE_OFFSET_COMMIT if (t, p) in unstable
                else ErrorCode.NONE))
        for t, parts in hidden_parts:
            by_topic[t] = [_fetched_partition(p, None, ErrorCode.TOPIC_AUTHORIZATION_FAILED)
                           for p in parts]
    return OffsetFetchResponseGroup(
        group_id=group_id, error_code=int(code),
        topics=[OffsetFetchResponseTopics(name=t, partitions=parts)
                for t, parts in by_topic.items()])


def _group_error(ctx: RequestContext, group_id: str, topics: list[tuple[str, list[int]]] | None,
                 code: ErrorCode) -> OffsetFetchResponseGroup:
    """A group the principal may not describe. v0 (KafkaApis' own v0 path, getErrorResponse):
    every asked partition carries the error; v1, with no error field, shows nothing (Kafka
    3.9 converts the group's empty answer); v2+: the group's error code."""
    by_topic = [] if ctx.api_version >= 1 else [
        OffsetFetchResponseTopics(name=t, partitions=[_fetched_partition(p, None, code)
                                                      for p in parts])
        for t, parts in topics or []]
    return OffsetFetchResponseGroup(group_id=group_id, error_code=int(code), topics=by_topic)


async def handle_offset_fetch(ctx: RequestContext,
                              req: OffsetFetchRequest) -> OffsetFetchResponse:
    v = ctx.api_version
    if v >= 8:
        return OffsetFetchResponse(throttle_time_ms=0, groups=[
            _fetch_group(ctx, g.group_id, None if g.topics is None else
                         [(t.name, list(t.partition_indexes)) for t in g.topics],
                         req.require_stable)
            for g in req.groups])
    topics = None if req.topics is None else [(t.name, list(t.partition_indexes))
                                              for t in req.topics]
    group = _fetch_group(ctx, req.group_id, topics, v >= 7 and req.require_stable)
    return OffsetFetchResponse(
        throttle_time_ms=0, error_code=group.error_code,
        topics=[OffsetFetchResponseTopic(name=t.name, partitions=[
            OffsetFetchResponsePartition(
                partition_index=p.partition_index, committed_offset=p.committed_offset,
                committed_leader_epoch=p.committed_leader_epoch, metadata=p.metadata,
                error_code=p.error_code) for p in t.partitions])
            for t in group.topics])


async def handle_offset_delete(ctx: RequestContext,
                               req: OffsetDeleteRequest) -> OffsetDeleteResponse:
    if not authorize(ctx, Op.DELETE, GROUP, req.group_id):
        return OffsetDeleteResponse(error_code=int(ErrorCode.GROUP_AUTHORIZATION_FAILED),
                                    throttle_time_ms=0)
    errors: dict[tuple[str, int], ErrorCode] = {}
    wanted = []
    unreadable = unreadable_topics(ctx, (t.name for t in req.topics))
    for t in req.topics:
        for p in t.partitions:
            if t.name in unreadable:
                errors[(t.name, p.partition_index)] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            elif known_partition(ctx, t.name, p.partition_index):
                wanted.append((t.name, p.partition_index))
            else:
                errors[(t.name, p.partition_index)] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    code, deleted = ctx.services.groups.delete_offsets(req.group_id, wanted)
    if code != ErrorCode.NONE:
        return OffsetDeleteResponse(error_code=int(code), throttle_time_ms=0)
    errors.update(deleted)
    return OffsetDeleteResponse(error_code=0, throttle_time_ms=0, topics=[
        OffsetDeleteResponseTopic(name=t.name, partitions=[
            OffsetDeleteResponsePartition(
                partition_index=p.partition_index,
                error_code=int(errors.get((t.name, p.partition_index), ErrorCode.NONE)))
            for p in t.partitions])
        for t in req.topics])


HANDLERS = [
    HandlerSpec(ApiKey.FIND_COORDINATOR, 0, 6, handle_find_coordinator),
    HandlerSpec(ApiKey.JOIN_GROUP, 0, 9, handle_join_group),
    HandlerSpec(ApiKey.SYNC_GROUP, 0, 5, handle_sync_group),
    HandlerSpec(ApiKey.HEARTBEAT, 0, 4, handle_heartbeat),
    HandlerSpec(ApiKey.LEAVE_GROUP, 0, 5, handle_leave_group),
    HandlerSpec(ApiKey.DESCRIBE_GROUPS, 0, 5, handle_describe_groups),
    HandlerSpec(ApiKey.LIST_GROUPS, 0, 5, handle_list_groups),
    HandlerSpec(ApiKey.DELETE_GROUPS, 0, 2, handle_delete_groups),
    HandlerSpec(ApiKey.OFFSET_COMMIT, 0, 9, handle_offset_commit),
    HandlerSpec(ApiKey.OFFSET_FETCH, 0, 9, handle_offset_fetch),
    HandlerSpec(ApiKey.OFFSET_DELETE, 0, 0, handle_offset_delete),
]
