"""Kafka's AclAuthorizer decisions (ZooKeeper mode), filters, and the ACL file.

The table follows Kafka's docs/security.html "Authorization and ACLs" and the cases of
AclAuthorizerTest (testAuthorizeWithEmptyResourceName, testDenyTakesPrecedence,
testAllowAllAccess, testSuperUserHasAccess, testWildCardAcls, testAccessAllowedIfAllowAcl
ExistsOnWildcardResource, testAllowAccessWithCustomPrincipal, testAuthorizeThrowsOnNon
LiteralResource, testTopicAcl (implied DESCRIBE), testDescribeConfigsImpliedBy..., prefixed).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pykbroker.security.acl_codes import (
    AclOperation,
    AclPermissionType,
    PatternType,
    ResourceType,
    authorized_bits,
)
from pykbroker.security.acl_store import FILE_NAME, StoredAclAuthorizer
from pykbroker.security.acls import (
    AccessControlEntry,
    AclAuthorizer,
    AclBinding,
    AclBindingFilter,
    ResourcePattern,
)

A, D = AclPermissionType.ALLOW, AclPermissionType.DENY
Op = AclOperation
T, G, C = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER
L, P = PatternType.LITERAL, PatternType.PREFIXED
ALICE, BOB = "User:alice", "User:bob"


def acl(rtype: ResourceType, name: str, pattern: PatternType, principal: str, op: AclOperation,
        perm: AclPermissionType = A, host: str = "*") -> AclBinding:
    return AclBinding(ResourcePattern(rtype, name, pattern),
                      AccessControlEntry(principal, host, op, perm))


def make(*bindings: AclBinding, super_users: tuple[str, ...] = (),
         allow_everyone: bool = False) -> AclAuthorizer:
    auth = AclAuthorizer(super_users, allow_everyone)
    assert auth.create(bindings) == [None] * len(bindings)
    return auth


# (acls, principal, host, operation, resource type, name, allowed)
TABLE = [
    # No ACL at all on the resource: allow.everyone.if.no.acl.found=false denies.
    ((), ALICE, "1.1.1.1", Op.READ, T, "t", False),
    # Literal ALLOW for alice.
    ((acl(T, "t", L, ALICE, Op.READ),), ALICE, "1.1.1.1", Op.READ, T, "t", True),
    ((acl(T, "t", L, ALICE, Op.READ),), BOB, "1.1.1.1", Op.READ, T, "t", False),
    ((acl(T, "t", L, ALICE, Op.READ),), ALICE, "1.1.1.1", Op.WRITE, T, "t", False),
    ((acl(T, "t", L, ALICE, Op.READ),), ALICE, "1.1.1.1", Op.READ, T, "u", False),
    # READ, WRITE, DELETE, ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS.
    *(((acl(T, "t", L, ALICE, op),), ALICE, "h", Op.DESCRIBE, T, "t", True)
      for op in (Op.READ, Op.WRITE, Op.DELETE, Op.ALTER, Op.DESCRIBE, Op.ALL)),
    *(((acl(T, "t", L, ALICE, op),), ALICE, "h", Op.DESCRIBE, T, "t", False)
      for op in (Op.CREATE, Op.DESCRIBE_CONFIGS, Op.ALTER_CONFIGS)),
    ((acl(T, "t", L, ALICE, Op.ALTER_CONFIGS),), ALICE, "h", Op.DESCRIBE_CONFIGS, T, "t", True),
    ((acl(T, "t", L, ALICE, Op.DESCRIBE_CONFIGS),), ALICE, "h", Op.ALTER_CONFIGS, T, "t", False),
    ((acl(T, "t", L, ALICE, Op.DESCRIBE),), ALICE, "h", Op.READ, T, "t", False),
    ((acl(T, "t", L, ALICE, Op.ALTER),), ALICE, "h", Op.ALTER_CONFIGS, T, "t", False),
    # ALL allows every operation, including ones with no implication.
    ((acl(C, "kafka-cluster", L, ALICE, Op.ALL),), ALICE, "h", Op.CLUSTER_ACTION, C,
     "kafka-cluster", True),
    # DENY wins over ALLOW, also a wildcard DENY over a literal ALLOW.
    ((acl(T, "t", L, ALICE, Op.READ), acl(T, "t", L, ALICE, Op.READ, D)), ALICE, "h",
     Op.READ, T, "t", False),
    ((acl(T, "t", L, ALICE, Op.READ), acl(T, "*", L, "User:*", Op.READ, D)), ALICE, "h",
     Op.READ, T, "t", False),
    ((acl(T, "t", L, ALICE, Op.ALL), acl(T, "t", L, ALICE, Op.WRITE, D)), ALICE, "h",
     Op.READ, T, "t", True),
    ((acl(T, "t", L, ALICE, Op.READ), acl(T, "t", L, ALICE, Op.ALL, D)), ALICE, "h",
     Op.READ, T, "t", False),
    # A DENY implies nothing: denying READ leaves an allowed DESCRIBE.
    ((acl(T, "t", L, ALICE, Op.DESCRIBE), acl(T, "t", L, ALICE, Op.READ, D)), ALICE, "h",
     Op.DESCRIBE, T, "t", True),
    ((acl(T, "t", L, ALICE, Op.READ), acl(T, "t", L, ALICE, Op.DESCRIBE, D)), ALICE, "h",
     Op.DESCRIBE, T, "t", False),
    # DENY from one host only.
    ((acl(T, "t", L, ALICE, Op.READ), acl(T, "t", L, ALICE, Op.READ, D, "2.2.2.2")), ALICE,
     "1.1.1.1", Op.READ, T, "t", True),
    ((acl(T, "t", L, ALICE, Op.READ), acl(T, "t", L, ALICE, Op.READ, D, "2.2.2.2")), ALICE,
     "2.2.2.2", Op.READ, T, "t", False),
    ((acl(T, "t", L, ALICE, Op.READ, A, "1.1.1.1"),), ALICE, "1.1.1.2", Op.READ, T, "t",
     False),
    # Wildcard principal and wildcard resource.
    ((acl(T, "t", L, "User:*", Op.READ),), BOB, "h", Op.READ, T, "t", True),
    ((acl(T, "*", L, ALICE, Op.READ),), ALICE, "h", Op.READ, T, "anything", True),
    ((acl(T, "*", L, ALICE, Op.READ),), ALICE, "h", Op.READ, G, "anything", False),
    # User:* matches a principal of any type (AclAuthorizer compares with WildcardPrincipal).
    ((acl(T, "t", L, "User:*", Op.READ),), "Group:g", "h", Op.READ, T, "t", True),
    # Prefixed patterns: the name must start with the prefix.
    ((acl(T, "t-", P, ALICE, Op.WRITE),), ALICE, "h", Op.WRITE, T, "t-1", True),
    ((acl(T, "t-", P, ALICE, Op.WRITE),), ALICE, "h", Op.WRITE, T, "t-", True),
    ((acl(T, "t-", P, ALICE, Op.WRITE),), ALICE, "h", Op.WRITE, T, "t", False),
    ((acl(T, "t-", P, ALICE, Op.WRITE),), ALICE, "h", Op.WRITE, T, "u-1", False),
    ((acl(T, "t-", P, ALICE, Op.WRITE), acl(T, "t-secret", P, ALICE, Op.WRITE, D)), ALICE,
     "h", Op.WRITE, T, "t-secret-1", False),
    # A literal "*" in a PREFIXED pattern is a plain prefix, not a wildcard.
    ((acl(T, "*", P, ALICE, Op.READ),), ALICE, "h", Op.READ, T, "t", False),
    ((acl(T, "*", P, ALICE, Op.READ),), ALICE, "h", Op.READ, T, "*x", True),
    # A literal "t*" is no wildcard either.
    ((acl(T, "t*", L, ALICE, Op.READ),), ALICE, "h", Op.READ, T, "t1", False),
    # An ACL for another principal on the resource still turns off allow-everyone.
    ((acl(T, "t", L, BOB, Op.READ),), ALICE, "h", Op.READ, T, "t", False),
]


@pytest.mark.parametrize("acls,principal,host,op,rtype,name,allowed", TABLE)
def test_documented_decisions(acls: tuple[AclBinding, ...], principal: str, host: str,
                              op: AclOperation, rtype: ResourceType, name: str,
                              allowed: bool) -> None:
    assert make(*acls).authorize(principal, host, op, rtype, name) is allowed


def test_allow_everyone_if_no_acl_found_only_when_no_acl_matches_the_resource() -> None:
    auth = make(acl(T, "t", L, BOB, Op.READ), allow_everyone=True)
    assert auth.authorize(ALICE, "h", Op.READ, T, "other")
    assert not auth.authorize(ALICE, "h", Op.READ, T, "t")
    auth = make(acl(T, "t", P, BOB, Op.READ), allow_everyone=True)
    assert not auth.authorize(ALICE, "h", Op.READ, T, "t1")


def test_super_users_bypass_deny() -> None:
    auth = make(acl(T, "*", L, "User:*", Op.ALL, D), super_users=("User:admin",))
    assert auth.authorize("User:admin", "h", Op.WRITE, T, "t")
    assert not auth.authorize(ALICE, "h", Op.WRITE, T, "t")
    assert make(super_users=("User:admin",)).authorize("User:admin", "h", Op.ALTER, C,
                                                       "kafka-cluster")


def test_authorized_operations_bits() -> None:
    auth = make(acl(T, "t", L, ALICE, Op.READ), acl(T, "t", L, ALICE, Op.ALTER_CONFIGS))
    assert auth.authorized_operations(ALICE, "h", T, "t") == authorized_bits(
        [Op.READ, Op.DESCRIBE, Op.ALTER_CONFIGS, Op.DESCRIBE_CONFIGS])
    assert auth.authorized_operations(BOB, "h", T, "t") == 0


@pytest.mark.parametrize("binding,reason", [
    (acl(C, "other", L, ALICE, Op.ALTER), "only valid name for the CLUSTER"),
    (acl(T, "", L, ALICE, Op.READ), "empty resource name"),
    (acl(T, "a/b", L, ALICE, Op.READ), "invalid resource name"),
    (acl(T, "t", L, "alice", Op.READ), "principalType:principalName"),
    (acl(T, "t", PatternType.MATCH, ALICE, Op.READ), "unknown elements"),
    (acl(ResourceType.ANY, "t", L, ALICE, Op.READ), "unknown elements"),
    (acl(T, "t", L, ALICE, Op.ANY), "unknown elements"),
    (acl(T, "t", L, ALICE, Op.READ, AclPermissionType.ANY), "unknown elements"),
])
def test_invalid_bindings_are_refused(binding: AclBinding, reason: str) -> None:
    auth = AclAuthorizer()
    result = auth.create([binding])
    assert result[0] is not None and reason in result[0]
    assert auth.cache.acls == {}


def test_filters_any_and_match() -> None:
    lit = acl(T, "foo", L, ALICE, Op.READ)
    wild = acl(T, "*", L, ALICE, Op.READ)
    pre = acl(T, "fo", P, ALICE, Op.READ)
    other = acl(T, "bar", P, ALICE, Op.READ)
    grp = acl(G, "foo", L, BOB, Op.READ, D, "1.2.3.4")
    auth = make(lit, wild, pre, other, grp)

    def names(flt: AclBindingFilter) -> set[AclBinding]:
        return set(auth.describe(flt))

    assert names(AclBindingFilter()) == {lit, wild, pre, other, grp}
    assert names(AclBindingFilter(T, "foo", PatternType.ANY)) == {lit}
    assert names(AclBindingFilter(T, "fo", PatternType.ANY)) == {pre}
    assert names(AclBindingFilter(T, "foo", PatternType.MATCH)) == {lit, wild, pre}
    assert names(AclBindingFilter(T, None, PatternType.MATCH)) == {lit, wild, pre, other}
    assert names(AclBindingFilter(T, "foo", L)) == {lit}
    assert names(AclBindingFilter(T, "*", L)) == {wild}
    assert names(AclBindingFilter(T, None, P)) == {pre, other}
    assert names(AclBindingFilter(principal=BOB)) == {grp}
    assert names(AclBindingFilter(host="1.2.3.4")) == {grp}
    assert names(AclBindingFilter(permission_type=D)) == {grp}
    assert names(AclBindingFilter(operation=Op.WRITE)) == set()


def test_delete_reports_each_binding_under_its_first_filter() -> None:
    a, b = acl(T, "t", L, ALICE, Op.READ), acl(T, "t", L, BOB, Op.READ)
    auth = make(a, b)
    out = auth.delete([AclBindingFilter(principal=BOB), AclBindingFilter(T, "t", L),
                       AclBindingFilter(G)])
    assert out == [[b], [a], []]
    assert auth.cache.acls == {}


def test_acl_file_survives_restart(tmp_path: Path) -> None:
    bindings = [acl(T, "t-", P, ALICE, Op.WRITE), acl(G, "g", L, "User:*", Op.READ, D, "1.1.1.1"),
                acl(C, "kafka-cluster", L, BOB, Op.ALTER_CONFIGS)]
    auth = StoredAclAuthorizer(tmp_path, frozenset(), False)
    assert auth.create(bindings) == [None, None, None]
    again = StoredAclAuthorizer(tmp_path, frozenset(), False)
    assert sorted(again.describe(AclBindingFilter())) == sorted(bindings)
    again.delete([AclBindingFilter(G)])
    third = StoredAclAuthorizer(tmp_path, frozenset(), False)
    assert sorted(third.describe(AclBindingFilter())) == sorted(bindings[::2])
    assert '"permissionType": "Allow"' in (tmp_path / FILE_NAME).read_text()


# --- hypothesis: the decision against a direct transcription of Kafka's rules ---

_names = st.sampled_from(["t", "t-1", "t-2", "tx", "u", "*"])
_principals = st.sampled_from([ALICE, BOB, "User:*"])
_hosts = st.sampled_from(["*", "1.1.1.1", "2.2.2.2"])
_ops = st.sampled_from([o for o in AclOperation if o not in (Op.UNKNOWN, Op.ANY)])
_bindings = st.builds(
    acl, st.sampled_from([T, G]),
    st.sampled_from(["t", "t-", "t-1", "u", "*", "tx"]), st.sampled_from([L, P]),
    _principals, _ops, st.sampled_from([A, D]), _hosts)


def _reference(bindings: list[AclBinding], principal: str, host: str, op: AclOperation,
               rtype: ResourceType, name: str, supers: set[str], everyone: bool) -> bool:
    if principal in supers:
        return True
    relevant = [b.entry for b in bindings if b.pattern.resource_type == rtype and (
        (b.pattern.pattern_type == L and b.pattern.name in (name, "*"))
        or (b.pattern.pattern_type == P and name.startswith(b.pattern.name)))]
    if not relevant:
        return everyone

    def hit(e: AccessControlEntry, o: AclOperation, perm: AclPermissionType) -> bool:
        return (e.permission_type == perm and e.principal in (principal, "User:*")
                and e.operation in (o, Op.ALL) and e.host in (host, "*"))

    if any(hit(e, op, D) for e in relevant):
        return False
    implied = {Op.DESCRIBE: [Op.DESCRIBE, Op.READ, Op.WRITE, Op.DELETE, Op.ALTER],
               Op.DESCRIBE_CONFIGS: [Op.DESCRIBE_CONFIGS, Op.ALTER_CONFIGS]}.get(op, [op])
    return any(hit(e, o, A) for o in implied for e in relevant)


@given(st.lists(_bindings, max_size=8), st.sampled_from([ALICE, BOB, "User:admin"]),
       st.sampled_from(["1.1.1.1", "2.2.2.2"]), _ops, st.sampled_from([T, G]),
       st.sampled_from(["t", "t-1", "t-12", "u", "tx", "*"]), st.booleans(), st.booleans())
def test_decision_matches_kafka_rules(bindings: list[AclBinding], principal: str, host: str,
                                      op: AclOperation, rtype: ResourceType, name: str,
                                      admin_super: bool, everyone: bool) -> None:
    supers = {"User:admin"} if admin_super else set()
    auth = make(*bindings, super_users=tuple(supers), allow_everyone=everyone)
    assert auth.authorize(principal, host, op, rtype, name) == _reference(
        bindings, principal, host, op, rtype, name, supers, everyone)


@given(st.lists(_bindings, max_size=8), st.lists(_bindings, max_size=4))
def test_delete_removes_exactly_what_describe_shows(bindings: list[AclBinding],
                                                    probes: list[AclBinding]) -> None:
    auth = make(*bindings)
    filters = [AclBindingFilter(p.pattern.resource_type, p.pattern.name, PatternType.MATCH,
                                p.entry.principal) for p in probes]
    shown = {b for f in filters for b in auth.describe(f)}
    deleted = auth.delete(filters)
    assert {b for part in deleted for b in part} == shown
    assert sum(len(part) for part in deleted) == len(shown)
    assert set(auth.cache.bindings()) == set(bindings) - shown


# AclAuthorizer.authorizeByResourceType (AclAuthorizerTest.testAuthorizeByResourceType*):
# (ACLs as (principal, op, pattern type, name, permission), expected for alice WRITE topic).
BY_TYPE = [
    ([], False),
    ([(ALICE, Op.WRITE, L, "t1", A)], True),
    ([(ALICE, Op.READ, L, "t1", A)], False),  # another operation
    ([("User:*", Op.ALL, P, "t", A)], True),  # wildcard principal, ALL
    ([(BOB, Op.WRITE, L, "t1", A)], False),  # someone else's
    ([(ALICE, Op.WRITE, L, "t1", A), (ALICE, Op.WRITE, L, "t1", D)], False),
    ([(ALICE, Op.WRITE, L, "t1", A), (ALICE, Op.WRITE, L, "t2", D)], True),
    ([(ALICE, Op.WRITE, L, "t1", A), (ALICE, Op.WRITE, P, "t", D)], False),  # dominated
    ([(ALICE, Op.WRITE, P, "t1", A), (ALICE, Op.WRITE, P, "t", D)], False),
    ([(ALICE, Op.WRITE, P, "t", A), (ALICE, Op.WRITE, P, "t1", D)], True),  # wider allow
    ([(ALICE, Op.WRITE, P, "t", A), (ALICE, Op.WRITE, L, "t", D)], True),
    ([(ALICE, Op.WRITE, L, "*", A), (ALICE, Op.WRITE, P, "t", D)], True),
    ([(ALICE, Op.WRITE, L, "t1", A), (ALICE, Op.WRITE, L, "*", D)], False),  # deny all
]


@pytest.mark.parametrize(("acls", "allowed"), BY_TYPE)
def test_authorize_by_resource_type(acls: list[tuple[str, AclOperation, PatternType, str,
                                                     AclPermissionType]],
                                    allowed: bool) -> None:
    auth = AclAuthorizer()
    for principal, op, pattern, name, perm in acls:
        assert auth.create([AclBinding(ResourcePattern(T, name, pattern),
                                       AccessControlEntry(principal, "*", op, perm))]) == [None]
    assert auth.authorize_by_resource_type(ALICE, "10.0.0.1", Op.WRITE, T) is allowed
    assert not auth.authorize_by_resource_type(ALICE, "10.0.0.1", Op.WRITE, G)  # other type


def test_authorize_by_resource_type_super_user_and_allow_everyone() -> None:
    assert AclAuthorizer(super_users=[ALICE]).authorize_by_resource_type(
        ALICE, "h", Op.WRITE, T)
    everyone = AclAuthorizer(allow_everyone_if_no_acl_found=True)
    assert everyone.authorize_by_resource_type(ALICE, "h", Op.WRITE, T)
    everyone.create([AclBinding(ResourcePattern(T, "*", L),
                                AccessControlEntry(ALICE, "*", Op.WRITE, D))])
    assert not everyone.authorize_by_resource_type(ALICE, "h", Op.WRITE, T)
