"""Authorization checks for handlers: KafkaApis' AuthHelper over the configured authorizer.

With no authorizer (``authorizer.class.name`` unset) every check passes and the authorized
operations are all the supported ones, exactly as Kafka without an authorizer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.security.acl_codes import (
    CLUSTER_NAME,
    SUPPORTED_OPERATIONS,
    AclOperation,
    ResourceType,
    authorized_bits,
)
from pykbroker.server.request_context import RequestContext

if TYPE_CHECKING:  # the ACL model is loaded with an authorizer, not by every broker
    from pykbroker.security.acl_store import StoredAclAuthorizer

Op = AclOperation
TOPIC, GROUP, CLUSTER = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER
TRANSACTIONAL_ID = ResourceType.TRANSACTIONAL_ID


def authorizer(ctx: RequestContext) -> StoredAclAuthorizer | None:
    return ctx.security.authorizer if ctx.security is not None else None


def client_address(ctx: RequestContext) -> str:
    """The client's IP address as Kafka's ACL hosts name it (no port, no brackets)."""
    return ctx.peer.rsplit(":", 1)[0].strip("[]") if ":" in ctx.peer else ctx.peer


def authorize(ctx: RequestContext, op: AclOperation, rtype: ResourceType,
              name: str = CLUSTER_NAME) -> bool:
    auth = authorizer(ctx)
    return auth is None or auth.authorize(ctx.principal, client_address(ctx), op, rtype, name)


def filter_authorized(ctx: RequestContext, op: AclOperation, rtype: ResourceType,
                      names: Iterable[str]) -> set[str]:
    return {n for n in names if authorize(ctx, op, rtype, n)}


def authorize_cluster(ctx: RequestContext, op: AclOperation) -> None:
    """AuthHelper.authorizeClusterOperation: CLUSTER_AUTHORIZATION_FAILED for the request."""
    if not authorize(ctx, op, CLUSTER):
        raise KafkaError(ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
                         f"Request not authorized: {op.name} on the cluster")


def authorized_operations(ctx: RequestContext, rtype: ResourceType, name: str) -> int:
    auth = authorizer(ctx)
    if auth is None:
        return authorized_bits(SUPPORTED_OPERATIONS[rtype])
    return auth.authorized_operations(ctx.principal, client_address(ctx), rtype, name)


def authorize_by_resource_type(ctx: RequestContext, op: AclOperation,
                               rtype: ResourceType) -> bool:
    """AuthHelper.authorizeByResourceType: ``op`` allowed on at least one resource of
    ``rtype`` (True at once without an authorizer)."""
    auth = authorizer(ctx)
    return auth is None or auth.authorize_by_resource_type(ctx.principal, client_address(ctx),
                                                           op, rtype)


def secured(ctx: RequestContext) -> bool:
    """Is an authorizer installed? Handlers skip their ACL bookkeeping when not."""
    return ctx.security is not None and ctx.security.authorizer is not None
