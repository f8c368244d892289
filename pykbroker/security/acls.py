"""ACL bindings and Kafka's AclAuthorizer (ZooKeeper mode) decision, exactly.

A binding is a resource pattern (type, name, LITERAL or PREFIXED) and an entry (principal,
host, operation, ALLOW or DENY). ``AclAuthorizer.authorize`` decides as Kafka's
``AclAuthorizer.authorizeAction`` does:

* a super user (``super.users``, principals separated by ``;``) is allowed everything;
* the ACLs considered are those on the literal resource, on the wildcard ``*`` resource of
  the same type and on every PREFIXED pattern the name starts with;
* when there are none at all, the answer is ``allow.everyone.if.no.acl.found``;
* otherwise a matching DENY wins; else a matching ALLOW is needed. An entry matches when its
  principal is the requester's or ``User:*``, its host the client's address or ``*``, and its
  operation the one asked or ALL. ALLOW of READ, WRITE, DELETE or ALTER implies DESCRIBE,
  ALLOW of ALTER_CONFIGS implies DESCRIBE_CONFIGS (a DENY implies nothing).

Filters (DescribeAcls, DeleteAcls) follow ``AclBindingFilter.matches``: ANY matches any
pattern type by exact name; MATCH matches the literal name, the wildcard and the prefixes of
the name. The codes are Kafka's (``AclOperation``, ``ResourceType``, ``PatternType``,
``AclPermissionType``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pykbroker.security.acl_codes import (
    CLUSTER_NAME,
    OPERATION_NAMES,
    PERMISSION_NAMES,
    SUPPORTED_OPERATIONS,
    WILDCARD_HOST,
    WILDCARD_PRINCIPAL,
    WILDCARD_RESOURCE,
    AclOperation,
    AclPermissionType,
    PatternType,
    ResourceType,
)

_IMPLIED_BY: dict[AclOperation, tuple[AclOperation, ...]] = {
    AclOperation.DESCRIBE: (AclOperation.DESCRIBE, AclOperation.READ, AclOperation.WRITE,
                            AclOperation.DELETE, AclOperation.ALTER),
    AclOperation.DESCRIBE_CONFIGS: (AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS),
}


class InvalidAcl(ValueError):
    """A binding Kafka refuses to store (unknown or ANY elements, ``/`` in a name...)."""


@dataclass(frozen=True, slots=True, order=True)
class ResourcePattern:
    resource_type: ResourceType
    name: str
    pattern_type: PatternType


@dataclass(frozen=True, slots=True, order=True)
class AccessControlEntry:
    principal: str
    host: str
    operation: AclOperation
    permission_type: AclPermissionType


@dataclass(frozen=True, slots=True, order=True)
class AclBinding:
    pattern: ResourcePattern
    entry: AccessControlEntry


def parse_principal(text: str) -> tuple[str, str]:
    """Kafka's SecurityUtils.parseKafkaPrincipal: ``Type:name``, both non-empty."""
    kind, sep, name = text.partition(":")
    if not sep or not kind or not name:
        raise InvalidAcl("expected a string in format principalType:principalName but got "
                         f"{text}")
    return kind, name


def validate_binding(binding: AclBinding) -> None:
    """Raise InvalidAcl for what Kafka's ResourcePattern / AccessControlEntry constructors,
    AclAuthorizer.validateAclBinding and KafkaApis.handleCreateAcls refuse."""
    p, e = binding.pattern, binding.entry
    if p.resource_type in (ResourceType.UNKNOWN, ResourceType.ANY) \
            or p.pattern_type not in (PatternType.LITERAL, PatternType.PREFIXED) \
            or e.operation in (AclOperation.UNKNOWN, AclOperation.ANY) \
            or e.permission_type not in (AclPermissionType.ALLOW, AclPermissionType.DENY):
        raise InvalidAcl("ACL binding contains unknown elements")
    if p.resource_type == ResourceType.CLUSTER and p.name != CLUSTER_NAME:
        raise InvalidAcl(f"The only valid name for the CLUSTER resource is {CLUSTER_NAME}")
    if not p.name:
        raise InvalidAcl("Invalid empty resource name")
    if "/" in p.name:
        raise InvalidAcl(f"ACL binding contains invalid resource name: {p.name}")
    parse_principal(e.principal)


@dataclass(frozen=True, slots=True)
class AclBindingFilter:
    """None for principal, host or name matches anything."""

    resource_type: ResourceType = ResourceType.ANY
    name: str | None = None
    pattern_type: PatternType = PatternType.ANY
    principal: str | None = None
    host: str | None = None
    operation: AclOperation = AclOperation.ANY
    permission_type: AclPermissionType = AclPermissionType.ANY

    def is_unknown(self) -> bool:
        return self.resource_type == ResourceType.UNKNOWN \
            or self.pattern_type == PatternType.UNKNOWN \
            or self.operation == AclOperation.UNKNOWN \
            or self.permission_type == AclPermissionType.UNKNOWN

    def matches_pattern(self, pattern: ResourcePattern) -> bool:
        """ResourcePatternFilter.matches."""
        if self.resource_type != ResourceType.ANY and self.resource_type != pattern.resource_type:
            return False
        if self.pattern_type not in (PatternType.ANY, PatternType.MATCH) \
                and self.pattern_type != pattern.pattern_type:
            return False
        if self.name is None:
            return True
        if self.pattern_type in (PatternType.ANY, pattern.pattern_type):
            return self.name == pattern.name
        if pattern.pattern_type == PatternType.LITERAL:
            return self.name == pattern.name or pattern.name == WILDCARD_RESOURCE
        return self.name.startswith(pattern.name)

    def matches_entry(self, entry: AccessControlEntry) -> bool:
        """AccessControlEntryFilter.matches."""
        return (self.principal is None or self.principal == entry.principal) \
            and (self.host is None or self.host == entry.host) \
            and (self.operation == AclOperation.ANY or self.operation == entry.operation) \
            and (self.permission_type == AclPermissionType.ANY
                 or self.permission_type == entry.permission_type)

    def matches(self, binding: AclBinding) -> bool:
        return self.matches_pattern(binding.pattern) and self.matches_entry(binding.entry)


def parse_super_users(value: str | None) -> frozenset[str]:
    """``super.users``: principals separated by ``;`` (blanks around them ignored)."""
    if not value:
        return frozenset()
    return frozenset(p.strip() for p in value.split(";") if p.strip())


class AclCache:
    """ACL entries by resource pattern: the authorizer's in-memory view (Kafka's aclCache).
    ``on_change`` is called with the patterns whose entries changed (the store persists)."""

    def __init__(self) -> None:
        self.acls: dict[ResourcePattern, frozenset[AccessControlEntry]] = {}

    def bindings(self) -> list[AclBinding]:
        return [AclBinding(p, e) for p in sorted(self.acls) for e in sorted(self.acls[p])]

    def set_resource(self, pattern: ResourcePattern,
                     entries: Iterable[AccessControlEntry]) -> None:
        entries = frozenset(entries)
        if entries:
            self.acls[pattern] = entries
        else:
            self.acls.pop(pattern, None)

    def matching_entries(self, resource_type: ResourceType, name: str
                         ) -> list[AccessControlEntry]:
        """Entries on the literal name, the wildcard and every prefix of ``name``
        (AclAuthorizer.matchingAcls)."""
        out: list[AccessControlEntry] = []
        for key in (ResourcePattern(resource_type, WILDCARD_RESOURCE, PatternType.LITERAL),
                    ResourcePattern(resource_type, name, PatternType.LITERAL)):
            out.extend(self.acls.get(key, ()))
        for i in range(1, len(name) + 1):
            out.extend(self.acls.get(ResourcePattern(resource_type, name[:i],
                                                     PatternType.PREFIXED), ()))
        return out


def _entry_matches(entry: AccessControlEntry, principal: str, host: str,
                   operation: AclOperation, permission: AclPermissionType) -> bool:
    return entry.permission_type == permission \
        and entry.principal in (principal, WILDCARD_PRINCIPAL) \
        and entry.operation in (operation, AclOperation.ALL) \
        and entry.host in (host, WILDCARD_HOST)


class AclAuthorizer:
    """Kafka's AclAuthorizer decision over an AclCache. Storage is the caller's (see
    ``acl_store``): it fills ``cache`` and persists what ``create``/``delete`` change."""

    def __init__(self, super_users: Iterable[str] = (),
                 allow_everyone_if_no_acl_found: bool = False,
                 cache: AclCache | None = None) -> None:
        self.super_users = frozenset(super_users)
        self.allow_everyone_if_no_acl_found = allow_everyone_if_no_acl_found
        self.cache = cache if cache is not None else AclCache()

    def authorize(self, principal: str, host: str, operation: AclOperation,
                  resource_type: ResourceType, name: str) -> bool:
        """Is ``principal`` from ``host`` allowed ``operation`` on the literal resource?"""
        if principal in self.super_users:
            return True
        entries = self.cache.matching_entries(resource_type, name)
        if not entries:
            return self.allow_everyone_if_no_acl_found
        if any(_entry_matches(e, principal, host, operation, AclPermissionType.DENY)
               for e in entries):
            return False
        allowed_by = _IMPLIED_BY.get(operation, (operation,))
        return any(_entry_matches(e, principal, host, op, AclPermissionType.ALLOW)
                   for op in allowed_by for e in entries)

    def authorize_by_resource_type(self, principal: str, host: str, operation: AclOperation,
                                   resource_type: ResourceType) -> bool:
        """AclAuthorizer.authorizeByResourceType: may ``principal`` perform ``operation`` on
        at least one resource of the type? (InitProducerId without a transactional id accepts
        WRITE on any topic in place of IDEMPOTENT_WRITE on the cluster.) A DENY on the literal
        wildcard denies; allow.everyone.if.no.acl.found allows; otherwise some ALLOW pattern
        must not be covered by a DENY (a denied literal name or a denied prefix of it)."""
        if principal in self.super_users:
            return True

        def names(permission: AclPermissionType, pattern_type: PatternType) -> set[str]:
            return {p.name for p, entries in self.cache.acls.items()
                    if p.resource_type == resource_type and p.pattern_type == pattern_type
                    and any(_entry_matches(e, principal, host, operation, permission)
                            for e in entries)}

        deny_literals = names(AclPermissionType.DENY, PatternType.LITERAL)
        if WILDCARD_RESOURCE in deny_literals:
            return False
        if self.allow_everyone_if_no_acl_found:
            return True
        deny_prefixes = names(AclPermissionType.DENY, PatternType.PREFIXED)
        allow_literals = names(AclPermissionType.ALLOW, PatternType.LITERAL)
        allow_prefixes = names(AclPermissionType.ALLOW, PatternType.PREFIXED)

        def dominated(name: str) -> bool:
            return any(name.startswith(prefix) for prefix in deny_prefixes)

        return any(not dominated(p) for p in allow_prefixes) or any(
            lit == WILDCARD_RESOURCE or (not dominated(lit) and lit not in deny_literals)
            for lit in allow_literals)

    def authorized_operations(self, principal: str, host: str, resource_type: ResourceType,
                              name: str) -> int:
        """The 32-bit field of authorized operations (Utils.to32BitField over
        AuthorizerUtils.supportedOperations) for Metadata / DescribeGroups / DescribeCluster."""
        bits = 0
        for op in SUPPORTED_OPERATIONS[resource_type]:
            if self.authorize(principal, host, op, resource_type, name):
                bits |= 1 << int(op)
        return bits

    def describe(self, flt: AclBindingFilter) -> list[AclBinding]:
        return [b for b in self.cache.bindings() if flt.matches(b)]

    def create(self, bindings: Sequence[AclBinding]) -> list[str | None]:
        """Add valid bindings; per binding None or the reason it was refused."""
        out: list[str | None] = []
        for binding in bindings:
            try:
                validate_binding(binding)
            except InvalidAcl as e:
                out.append(str(e))
                continue
            current = self.cache.acls.get(binding.pattern, frozenset())
            self.cache.set_resource(binding.pattern, current | {binding.entry})
            out.append(None)
        return out

    def delete(self, filters: Sequence[AclBindingFilter]) -> list[list[AclBinding]]:
        """Remove every binding some filter matches; each is reported under the first
        filter that matches it (AclAuthorizer.deleteAcls)."""
        out: list[list[AclBinding]] = [[] for _ in filters]
        for binding in self.cache.bindings():
            for i, flt in enumerate(filters):
                if flt.matches(binding):
                    out[i].append(binding)
                    current = self.cache.acls.get(binding.pattern, frozenset())
                    self.cache.set_resource(binding.pattern, current - {binding.entry})
                    break
        return out


# -- the JSON of an entry, as Kafka's AclEntry keeps it in a /kafka-acl znode --------------

_OPS = {v: k for k, v in OPERATION_NAMES.items()}
_PERMS = {v: k for k, v in PERMISSION_NAMES.items()}


def entry_to_json(e: AccessControlEntry) -> dict[str, str]:
    return {"principal": e.principal, "permissionType": PERMISSION_NAMES[e.permission_type],
            "operation": OPERATION_NAMES[e.operation], "host": e.host}


def entry_from_json(d: dict[str, Any]) -> AccessControlEntry:
    return AccessControlEntry(str(d["principal"]), str(d["host"]), _OPS[str(d["operation"])],
                              _PERMS[str(d["permissionType"])])
