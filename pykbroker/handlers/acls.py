"""CreateAcls, DescribeAcls and DeleteAcls (KafkaApis / AclApis in ZooKeeper mode).

ALTER on the cluster for create and delete, DESCRIBE for describe (else
CLUSTER_AUTHORIZATION_FAILED for every entry); SECURITY_DISABLED when no authorizer is
configured; v0 takes LITERAL patterns only and unknown elements are refused (INVALID_REQUEST
here, where Kafka refuses the request while parsing it).
"""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar

from pykbroker.error_codes import ErrorCode
from pykbroker.protocol._generated.create_acls_request import CreateAclsRequest
from pykbroker.protocol._generated.create_acls_response import (
    AclCreationResult,
    CreateAclsResponse,
)
from pykbroker.protocol._generated.delete_acls_request import DeleteAclsFilter, DeleteAclsRequest
from pykbroker.protocol._generated.delete_acls_response import (
    DeleteAclsFilterResult,
    DeleteAclsMatchingAcl,
    DeleteAclsResponse,
)
from pykbroker.protocol._generated.describe_acls_request import DescribeAclsRequest
from pykbroker.protocol._generated.describe_acls_response import (
    AclDescription,
    DescribeAclsResource,
    DescribeAclsResponse,
)
from pykbroker.security.acl_codes import AclOperation, AclPermissionType, PatternType, ResourceType
from pykbroker.security.acls import (
    AccessControlEntry,
    AclBinding,
    AclBindingFilter,
    ResourcePattern,
)
from pykbroker.server.request_context import RequestContext

from .authz import CLUSTER, authorize, authorizer

E = TypeVar("E", bound=IntEnum)
_NO_AUTHORIZER = "No Authorizer is configured."


def _denied(op: AclOperation) -> str:
    """Kafka answers these APIs through AuthHelper.authorizeClusterOperation, whose
    exception message ("Request ... is not authorized.") becomes the error message; clients
    (librdkafka's DescribeAcls) rely on it being there."""
    return f"Request not authorized: {op.name} on the cluster"


def _enum(cls: type[E], value: int) -> E:
    try:
        return cls(value)
    except ValueError:
        return cls(0)  # UNKNOWN


def _filter(version: int, f: DescribeAclsRequest | DeleteAclsFilter) -> AclBindingFilter | str:
    flt = AclBindingFilter(
        _enum(ResourceType, f.resource_type_filter), f.resource_name_filter,
        _enum(PatternType, f.pattern_type_filter) if version >= 1 else PatternType.LITERAL,
        f.principal_filter, f.host_filter, _enum(AclOperation, f.operation),
        _enum(AclPermissionType, f.permission_type))
    if flt.is_unknown():
        return "Filter contain UNKNOWN elements"
    return flt


async def handle_create_acls(ctx: RequestContext, req: CreateAclsRequest) -> CreateAclsResponse:
    def answer(code: ErrorCode, message: str | None) -> CreateAclsResponse:
        return CreateAclsResponse(throttle_time_ms=0, results=[
            AclCreationResult(error_code=int(code), error_message=message)
            for _ in req.creations])

    if not authorize(ctx, AclOperation.ALTER, CLUSTER):
        return answer(ErrorCode.CLUSTER_AUTHORIZATION_FAILED, _denied(AclOperation.ALTER))
    auth = authorizer(ctx)
    if auth is None:
        return answer(ErrorCode.SECURITY_DISABLED, _NO_AUTHORIZER)
    bindings = [AclBinding(
        ResourcePattern(_enum(ResourceType, c.resource_type), c.resource_name,
                        _enum(PatternType, c.resource_pattern_type) if ctx.api_version >= 1
                        else PatternType.LITERAL),
        AccessControlEntry(c.principal, c.host, _enum(AclOperation, c.operation),
                           _enum(AclPermissionType, c.permission_type)))
        for c in req.creations]
    results = await auth.create_acls(bindings)
    return CreateAclsResponse(throttle_time_ms=0, results=[
        AclCreationResult(error_code=0 if r is None else int(ErrorCode.INVALID_REQUEST),
                          error_message=None if r is None else r) for r in results])


async def handle_describe_acls(ctx: RequestContext, req: DescribeAclsRequest
                               ) -> DescribeAclsResponse:
    def fail(code: ErrorCode, message: str | None) -> DescribeAclsResponse:
        return DescribeAclsResponse(throttle_time_ms=0, error_code=int(code),
                                    error_message=message, resources=[])

    if not authorize(ctx, AclOperation.DESCRIBE, CLUSTER):
        return fail(ErrorCode.CLUSTER_AUTHORIZATION_FAILED, _denied(AclOperation.DESCRIBE))
    auth = authorizer(ctx)
    if auth is None:
        return fail(ErrorCode.SECURITY_DISABLED, _NO_AUTHORIZER)
    flt = _filter(ctx.api_version, req)
    if isinstance(flt, str):
        return fail(ErrorCode.INVALID_REQUEST, flt)
    by_pattern: dict[ResourcePattern, list[AccessControlEntry]] = {}
    for binding in auth.describe(flt):
        by_pattern.setdefault(binding.pattern, []).append(binding.entry)
    return DescribeAclsResponse(throttle_time_ms=0, error_code=0, error_message=None, resources=[
        DescribeAclsResource(
            resource_type=int(p.resource_type), resource_name=p.name,
            pattern_type=int(p.pattern_type),
            acls=[AclDescription(principal=e.principal, host=e.host, operation=int(e.operation),
                                 permission_type=int(e.permission_type)) for e in entries])
        for p, entries in by_pattern.items()])


async def handle_delete_acls(ctx: RequestContext, req: DeleteAclsRequest) -> DeleteAclsResponse:
    def answer(code: ErrorCode, message: str | None) -> DeleteAclsResponse:
        return DeleteAclsResponse(throttle_time_ms=0, filter_results=[
            DeleteAclsFilterResult(error_code=int(code), error_message=message,
                                   matching_acls=[]) for _ in req.filters])

    if not authorize(ctx, AclOperation.ALTER, CLUSTER):
        return answer(ErrorCode.CLUSTER_AUTHORIZATION_FAILED, _denied(AclOperation.ALTER))
    auth = authorizer(ctx)
    if auth is None:
        return answer(ErrorCode.SECURITY_DISABLED, _NO_AUTHORIZER)
    filters = [_filter(ctx.api_version, f) for f in req.filters]
    bad = next((f for f in filters if isinstance(f, str)), None)
    if bad is not None:
        return answer(ErrorCode.INVALID_REQUEST, bad)
    deleted = await auth.delete_acls([f for f in filters if isinstance(f, AclBindingFilter)])
    return DeleteAclsResponse(throttle_time_ms=0, filter_results=[
        DeleteAclsFilterResult(error_code=0, error_message=None, matching_acls=[
            DeleteAclsMatchingAcl(
                error_code=0, error_message=None, resource_type=int(b.pattern.resource_type),
                resource_name=b.pattern.name, pattern_type=int(b.pattern.pattern_type),
                principal=b.entry.principal, host=b.entry.host,
                operation=int(b.entry.operation), permission_type=int(b.entry.permission_type))
            for b in part]) for part in deleted])
