"""``acls`` and ``users``: Kafka's ACLs (CreateAcls / DescribeAcls / DeleteAcls) and SCRAM
credentials (Describe/AlterUserScramCredentials), as ``kafka-acls.sh`` and
``kafka-configs.sh --entity-type users`` manage them, against any Kafka broker."""

from __future__ import annotations

import argparse
import os
from typing import Any

from pykbroker.admin.client import AdminClient, KafkaError, check
from pykbroker.admin.output import emit_json, table
from pykbroker.protocol._generated.alter_user_scram_credentials_request import (
    AlterUserScramCredentialsRequest,
    ScramCredentialDeletion,
    ScramCredentialUpsertion,
)
from pykbroker.protocol._generated.create_acls_request import AclCreation, CreateAclsRequest
from pykbroker.protocol._generated.delete_acls_request import DeleteAclsFilter, DeleteAclsRequest
from pykbroker.protocol._generated.describe_acls_request import DescribeAclsRequest
from pykbroker.protocol._generated.describe_user_scram_credentials_request import (
    DescribeUserScramCredentialsRequest,
    UserName,
)
from pykbroker.security.acl_codes import (
    OPERATION_NAMES,
    PERMISSION_NAMES,
    RESOURCE_TYPE_NAMES,
    AclOperation,
    AclPermissionType,
    PatternType,
    ResourceType,
)

DESCRIBE_ACLS, CREATE_ACLS, DELETE_ACLS = 29, 30, 31
DESCRIBE_SCRAM, ALTER_SCRAM = 50, 51
_OPERATIONS = {v.lower(): k for k, v in OPERATION_NAMES.items()}
_OPERATIONS.update({k.name.lower().replace("_", ""): k for k in OPERATION_NAMES})
MECHANISMS = {"SCRAM-SHA-256": 1, "SCRAM-SHA-512": 2}
_MECHANISM_NAMES = {v: k for k, v in MECHANISMS.items()}


def operation(text: str) -> AclOperation:
    """``Read``, ``read``, ``IdempotentWrite``, ``idempotent_write``..."""
    op = _OPERATIONS.get(text.lower().replace("_", "").replace("-", ""))
    if op is None:
        raise argparse.ArgumentTypeError(
            f"unknown operation {text!r} (one of {', '.join(OPERATION_NAMES.values())})")
    return op


def add_arguments(acls: argparse.ArgumentParser, action: str) -> None:
    """The resource and entry options of ``acls list|add|remove``."""
    res = acls.add_mutually_exclusive_group(required=action != "list")
    res.add_argument("--topic")
    res.add_argument("--group")
    res.add_argument("--transactional-id")
    res.add_argument("--cluster", action="store_true")
    acls.add_argument("--resource-pattern-type", default="literal" if action == "add" else "any",
                      choices=["literal", "prefixed", "any", "match"])
    acls.add_argument("--principal" if action != "add" else "--allow-principal",
                      action="append", default=[], metavar="User:NAME")
    if action == "add":
        acls.add_argument("--deny-principal", action="append", default=[],
                          metavar="User:NAME")
    acls.add_argument("--operation", action="append", type=operation, default=[])
    acls.add_argument("--host", default="*" if action == "add" else None)


def _resource(args: argparse.Namespace) -> tuple[ResourceType, str | None]:
    if args.topic is not None:
        return ResourceType.TOPIC, args.topic
    if args.group is not None:
        return ResourceType.GROUP, args.group
    if args.transactional_id is not None:
        return ResourceType.TRANSACTIONAL_ID, args.transactional_id
    if args.cluster:
        return ResourceType.CLUSTER, "kafka-cluster"
    return ResourceType.ANY, None


def _pattern(args: argparse.Namespace) -> PatternType:
    return PatternType[args.resource_pattern_type.upper()]


def _rows(resources: list[Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for r in resources:
        for a in r.acls:
            rows.append((RESOURCE_TYPE_NAMES.get(ResourceType(r.resource_type), "?"),
                         r.resource_name, PatternType(r.pattern_type).name, a.principal,
                         a.host, OPERATION_NAMES.get(AclOperation(a.operation), "?"),
                         PERMISSION_NAMES.get(AclPermissionType(a.permission_type), "?")))
    return rows


_HEADERS = ["RESOURCE", "NAME", "PATTERN", "PRINCIPAL", "HOST", "OPERATION", "PERMISSION"]


def _emit(args: argparse.Namespace, rows: list[tuple[str, ...]]) -> None:
    if args.json:
        emit_json([dict(zip([h.lower() for h in _HEADERS], row, strict=True)) for row in rows])
    else:
        table(_HEADERS, rows)


def run_acls(client: AdminClient, args: argparse.Namespace) -> int:
    resource_type, name = _resource(args)
    if args.verb == "add":
        entries = [(p, AclPermissionType.ALLOW) for p in args.allow_principal] + \
                  [(p, AclPermissionType.DENY) for p in args.deny_principal]
        if not entries or not args.operation:
            raise KafkaError("acls add needs --allow-principal or --deny-principal and "
                             "--operation")
        creations = [AclCreation(int(resource_type), str(name), int(_pattern(args)), principal,
                                 args.host, int(op), int(permission))
                     for principal, permission in entries for op in args.operation]
        resp = client.send(CREATE_ACLS, CreateAclsRequest(creations=creations), version=3)
        for result in resp.results:
            check(result.error_code, "creating an ACL", result.error_message)
        _emit(args, [(RESOURCE_TYPE_NAMES[resource_type], str(name), _pattern(args).name,
                      c.principal, c.host, OPERATION_NAMES[AclOperation(c.operation)],
                      PERMISSION_NAMES[AclPermissionType(c.permission_type)])
                     for c in creations])
        return 0
    principals: list[str | None] = list(args.principal) or [None]
    operations: list[AclOperation] = list(args.operation) or [AclOperation.ANY]
    if args.verb == "list":
        rows: list[tuple[str, ...]] = []
        for principal in principals:
            for op in operations:
                resp = client.send(DESCRIBE_ACLS, DescribeAclsRequest(
                    resource_type_filter=int(resource_type), resource_name_filter=name,
                    pattern_type_filter=int(_pattern(args)), principal_filter=principal,
                    host_filter=args.host, operation=int(op),
                    permission_type=int(AclPermissionType.ANY)), version=3)
                check(resp.error_code, "describing ACLs", resp.error_message)
                rows += [r for r in _rows(resp.resources) if r not in rows]
        _emit(args, rows)
        return 0
    filters = [DeleteAclsFilter(int(resource_type), name, int(_pattern(args)), principal,
                                args.host, int(op), int(AclPermissionType.ANY))
               for principal in principals for op in operations]
    resp = client.send(DELETE_ACLS, DeleteAclsRequest(filters=filters), version=3)
    removed: list[tuple[str, ...]] = []
    for result in resp.filter_results:
        check(result.error_code, "deleting ACLs", result.error_message)
        for m in result.matching_acls:
            removed.append((RESOURCE_TYPE_NAMES.get(ResourceType(m.resource_type), "?"),
                            m.resource_name, PatternType(m.pattern_type).name, m.principal,
                            m.host, OPERATION_NAMES.get(AclOperation(m.operation), "?"),
                            PERMISSION_NAMES.get(AclPermissionType(m.permission_type), "?")))
    _emit(args, removed)
    return 0


def run_users(client: AdminClient, args: argparse.Namespace) -> int:
    if args.verb == "list":
        users = [UserName(name=u) for u in args.user] if args.user else None
        resp = client.send(DESCRIBE_SCRAM, DescribeUserScramCredentialsRequest(users=users),
                           version=0)
        check(resp.error_code, "describing SCRAM credentials", resp.error_message)
        rows = []
        for r in resp.results:
            check(r.error_code, f"describing the credentials of {r.user}", r.error_message)
            for c in r.credential_infos:
                rows.append((r.user, _MECHANISM_NAMES.get(c.mechanism, str(c.mechanism)),
                             c.iterations))
        if args.json:
            emit_json([{"user": u, "mechanism": m, "iterations": i} for u, m, i in rows])
        else:
            table(["USER", "MECHANISM", "ITERATIONS"], rows)
        return 0
    from pykbroker.security.scram import ScramMechanism, salted_password

    mechanism = MECHANISMS[args.mechanism]
    if args.verb == "set":
        password = args.password if args.password is not None else os.environ.get(
            "PYKBROKER_SCRAM_PASSWORD")
        if not password:
            raise KafkaError("users set needs --password (or PYKBROKER_SCRAM_PASSWORD)")
        scram = ScramMechanism.by_name(args.mechanism)
        assert scram is not None
        salt = os.urandom(32)
        body = AlterUserScramCredentialsRequest(deletions=[], upsertions=[
            ScramCredentialUpsertion(args.user, mechanism, args.iterations, salt,
                                     salted_password(scram, password, salt, args.iterations))])
    else:
        body = AlterUserScramCredentialsRequest(
            deletions=[ScramCredentialDeletion(args.user, mechanism)], upsertions=[])
    resp = client.send(ALTER_SCRAM, body, version=0)
    for r in resp.results:
        check(r.error_code, f"altering the credentials of {r.user}", r.error_message)
    done = "set" if args.verb == "set" else "deleted"
    if args.json:
        emit_json({"user": args.user, "mechanism": args.mechanism, done: True})
    else:
        print(f"{args.mechanism} credential of {args.user} {done}")
    return 0
