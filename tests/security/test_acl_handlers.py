"""CreateAcls / DescribeAcls / DeleteAcls handlers over an authorizer, called directly."""

from __future__ import annotations

import trio

from pykbroker.error_codes import ErrorCode
from pykbroker.handlers.acls import handle_create_acls, handle_delete_acls, handle_describe_acls
from pykbroker.protocol._generated.create_acls_request import AclCreation, CreateAclsRequest
from pykbroker.protocol._generated.delete_acls_request import DeleteAclsFilter, DeleteAclsRequest
from pykbroker.protocol._generated.describe_acls_request import DescribeAclsRequest
from pykbroker.protocol.api import ApiKey
from pykbroker.security.acl_codes import AclOperation, AclPermissionType, PatternType, ResourceType
from pykbroker.security.acl_store import StoredAclAuthorizer
from pykbroker.security.credentials import ScramCredentialStore
from pykbroker.security.plan import BrokerSecurity
from pykbroker.server.request_context import RequestContext

ADMIN = "User:admin"


def context(principal: str, version: int = 3, api: ApiKey = ApiKey.CREATE_ACLS,
            authorizer: StoredAclAuthorizer | None = None) -> RequestContext:
    security = BrokerSecurity({}, ScramCredentialStore(None), authorizer)
    return RequestContext(int(api), version, 1, "c", "10.0.0.1:5555", "PLAINTEXT",
                          "PLAINTEXT", 1, None, principal=principal, security=security)


def creation(name: str, principal: str = "User:alice", pattern: PatternType = PatternType.LITERAL,
             rtype: ResourceType = ResourceType.TOPIC, op: AclOperation = AclOperation.READ,
             perm: AclPermissionType = AclPermissionType.ALLOW) -> AclCreation:
    return AclCreation(resource_type=int(rtype), resource_name=name,
                       resource_pattern_type=int(pattern), principal=principal, host="*",
                       operation=int(op), permission_type=int(perm))


def describe_req(**kw: object) -> DescribeAclsRequest:
    base: dict[str, object] = dict(resource_type_filter=1, resource_name_filter=None,
                                   pattern_type_filter=1, principal_filter=None,
                                   host_filter=None, operation=1, permission_type=1)
    base.update(kw)
    return DescribeAclsRequest(**base)  # type: ignore[arg-type]


def delete_filter(**kw: object) -> DeleteAclsFilter:
    base: dict[str, object] = dict(resource_type_filter=1, resource_name_filter=None,
                                   pattern_type_filter=1, principal_filter=None,
                                   host_filter=None, operation=1, permission_type=1)
    base.update(kw)
    return DeleteAclsFilter(**base)  # type: ignore[arg-type]


def test_without_authorizer_security_disabled() -> None:
    async def main() -> None:
        r = await handle_create_acls(context(ADMIN), CreateAclsRequest([creation("t")]))
        assert [x.error_code for x in r.results] == [ErrorCode.SECURITY_DISABLED]
        d = await handle_describe_acls(context(ADMIN, api=ApiKey.DESCRIBE_ACLS), describe_req())
        assert d.error_code == ErrorCode.SECURITY_DISABLED
        x = await handle_delete_acls(context(ADMIN, api=ApiKey.DELETE_ACLS),
                                     DeleteAclsRequest([delete_filter()]))
        assert [f.error_code for f in x.filter_results] == [ErrorCode.SECURITY_DISABLED]
    trio.run(main)


def test_create_describe_delete_round_trip() -> None:
    auth = StoredAclAuthorizer(None, frozenset({ADMIN}), False)

    async def main() -> None:
        ctx = context(ADMIN, authorizer=auth)
        r = await handle_create_acls(ctx, CreateAclsRequest([
            creation("t-", pattern=PatternType.PREFIXED, op=AclOperation.WRITE),
            creation("t-1"),
            creation("kafka-cluster", rtype=ResourceType.CLUSTER, op=AclOperation.ALTER),
            creation("other", rtype=ResourceType.CLUSTER),
            creation("t", principal="alice"),
            creation("t", pattern=PatternType.MATCH),
        ]))
        assert [x.error_code for x in r.results] == [0, 0, 0, ErrorCode.INVALID_REQUEST,
                                                     ErrorCode.INVALID_REQUEST,
                                                     ErrorCode.INVALID_REQUEST]
        dctx = context(ADMIN, api=ApiKey.DESCRIBE_ACLS, authorizer=auth)
        d = await handle_describe_acls(dctx, describe_req())
        assert d.error_code == 0
        assert sorted((x.resource_name, x.pattern_type) for x in d.resources) == [
            ("kafka-cluster", 3), ("t-", 4), ("t-1", 3)]
        d = await handle_describe_acls(dctx, describe_req(
            resource_type_filter=2, resource_name_filter="t-1", pattern_type_filter=2))
        assert sorted(x.resource_name for x in d.resources) == ["t-", "t-1"]
        d = await handle_describe_acls(dctx, describe_req(resource_type_filter=0))
        assert d.error_code == ErrorCode.INVALID_REQUEST
        # v0 only knows LITERAL patterns.
        d = await handle_describe_acls(context(ADMIN, 0, ApiKey.DESCRIBE_ACLS, auth),
                                       describe_req(resource_type_filter=2))
        assert [x.resource_name for x in d.resources] == ["t-1"]

        x = await handle_delete_acls(context(ADMIN, api=ApiKey.DELETE_ACLS, authorizer=auth),
                                     DeleteAclsRequest([
                                         delete_filter(resource_type_filter=2,
                                                       resource_name_filter="t-1",
                                                       pattern_type_filter=2),
                                         delete_filter()]))
        assert [sorted(m.resource_name for m in f.matching_acls)
                for f in x.filter_results] == [["t-", "t-1"], ["kafka-cluster"]]
        d = await handle_describe_acls(dctx, describe_req())
        assert d.resources == []
    trio.run(main)


def test_acl_apis_need_cluster_alter_or_describe() -> None:
    auth = StoredAclAuthorizer(None, frozenset({ADMIN}), False)

    async def main() -> None:
        r = await handle_create_acls(context("User:bob", authorizer=auth),
                                     CreateAclsRequest([creation("t")]))
        assert [x.error_code for x in r.results] == [ErrorCode.CLUSTER_AUTHORIZATION_FAILED]
        assert auth.cache.acls == {}
        await handle_create_acls(context(ADMIN, authorizer=auth), CreateAclsRequest([
            creation("kafka-cluster", "User:bob", rtype=ResourceType.CLUSTER,
                     op=AclOperation.DESCRIBE)]))
        d = await handle_describe_acls(context("User:bob", api=ApiKey.DESCRIBE_ACLS,
                                               authorizer=auth), describe_req())
        assert d.error_code == 0 and len(d.resources) == 1
        x = await handle_delete_acls(context("User:bob", api=ApiKey.DELETE_ACLS,
                                             authorizer=auth),
                                     DeleteAclsRequest([delete_filter()]))
        assert [f.error_code for f in x.filter_results] == [
            ErrorCode.CLUSTER_AUTHORIZATION_FAILED]
        assert len(auth.cache.acls) == 1
    trio.run(main)
