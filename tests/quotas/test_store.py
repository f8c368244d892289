"""AlterClientQuotas / DescribeClientQuotas semantics (Kafka 3.9's ZkAdminManager) on the
broker's quota store, and its file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.quotas import FILE_NAME
from pykbroker.quotas.manager import (
    MATCH_DEFAULT,
    MATCH_EXACT,
    MATCH_SPECIFIED,
    Alteration,
    ClientQuotas,
)

Components = list[tuple[str, str | None]]


def alter(q: ClientQuotas, components: Components, ops: dict[str, float | None],
          validate_only: bool = False) -> tuple[ErrorCode, str | None]:
    (result,) = q.alter([Alteration(components, list(ops.items()))], validate_only)
    return result


def described(q: ClientQuotas, filters: list[tuple[str, int, str | None]],
              strict: bool = False) -> dict[frozenset[tuple[str, str | None]], dict[str, float]]:
    return {frozenset(entity): values for entity, values in q.describe(filters, strict)}


OK = (ErrorCode.NONE, None)


@pytest.fixture
def quotas(tmp_path: Path) -> ClientQuotas:
    q = ClientQuotas(tmp_path)
    assert alter(q, [("user", "alice")], {"producer_byte_rate": 1000.0}) == OK
    assert alter(q, [("user", "alice"), ("client-id", "app")],
                 {"consumer_byte_rate": 2000.0}) == OK
    assert alter(q, [("user", None), ("client-id", None)], {"producer_byte_rate": 3000.0}) == OK
    assert alter(q, [("client-id", "app")], {"producer_byte_rate": 4000.0,
                                             "consumer_byte_rate": 5000.0}) == OK
    assert alter(q, [("client-id", None)], {"consumer_byte_rate": 6000.0}) == OK
    return q


ALICE = frozenset({("user", "alice")})
ALICE_APP = frozenset({("user", "alice"), ("client-id", "app")})
DEFAULTS = frozenset({("user", None), ("client-id", None)})
APP = frozenset({("client-id", "app")})
ANY_CLIENT = frozenset({("client-id", None)})


@pytest.mark.parametrize(("filters", "strict", "expected"), [
    ([], False, {ALICE, ALICE_APP, DEFAULTS, APP, ANY_CLIENT}),
    ([], True, set()),
    ([("user", MATCH_EXACT, "alice")], False, {ALICE, ALICE_APP}),
    ([("user", MATCH_EXACT, "alice")], True, {ALICE}),
    ([("user", MATCH_DEFAULT, None)], False, {DEFAULTS}),
    ([("user", MATCH_DEFAULT, None)], True, set()),
    ([("user", MATCH_SPECIFIED, None)], False, {ALICE, ALICE_APP, DEFAULTS}),
    ([("client-id", MATCH_SPECIFIED, None)], True, {APP, ANY_CLIENT}),
    ([("client-id", MATCH_EXACT, "app")], False, {ALICE_APP, APP}),
    ([("user", MATCH_SPECIFIED, None), ("client-id", MATCH_EXACT, "app")], True, {ALICE_APP}),
    ([("user", MATCH_EXACT, "bob")], False, set()),
    ([("ip", MATCH_SPECIFIED, None)], False, set()),
])
def test_describe_filters(quotas: ClientQuotas, filters: list[tuple[str, int, str | None]],
                          strict: bool, expected: set[frozenset[tuple[str, str | None]]]
                          ) -> None:
    assert set(described(quotas, filters, strict)) == expected


def test_describe_values_and_persistence(quotas: ClientQuotas, tmp_path: Path) -> None:
    everything = described(quotas, [])
    assert everything[APP] == {"producer_byte_rate": 4000.0, "consumer_byte_rate": 5000.0}
    again = ClientQuotas(tmp_path)
    assert described(again, []) == everything
    assert again.produce.quota("alice", "other") == 1000.0
    assert again.fetch.quota("alice", "app") == 2000.0
    assert again.fetch.quota("bob", "x") == 6000.0
    data = json.loads((tmp_path / FILE_NAME).read_text())
    assert data["version"] == 1


@pytest.mark.parametrize(("filters", "code", "message"), [
    ([("user", 0, "a"), ("user", 0, "b")], ErrorCode.INVALID_REQUEST,
     "Duplicate user filter component entity type"),
    ([("", 0, "a")], ErrorCode.INVALID_REQUEST, "Unexpected empty filter component entity type"),
    ([("group", 0, "a")], ErrorCode.UNSUPPORTED_VERSION, "Custom entity type 'group' not supported"),
    ([("user", 0, None)], ErrorCode.INVALID_REQUEST,
     "An exact user filter component needs a name"),
    ([("user", 7, None)], ErrorCode.INVALID_REQUEST, "Unexpected match type: 7"),
    ([("ip", 2, None), ("user", 2, None)], ErrorCode.INVALID_REQUEST,
     "Invalid entity filter component combination, IP filter component should not be used "
     "with user or clientId filter component."),
])
def test_describe_refuses_bad_filters(quotas: ClientQuotas,
                                      filters: list[tuple[str, int, str | None]],
                                      code: ErrorCode, message: str) -> None:
    with pytest.raises(KafkaError) as info:
        quotas.describe(filters, False)
    assert (info.value.error_code, info.value.message) == (code, message)


@pytest.mark.parametrize(("components", "ops", "message"), [
    ([], {"producer_byte_rate": 1.0}, "Invalid empty client quota entity"),
    ([("group", "g")], {"producer_byte_rate": 1.0}, "Unhandled client quota entity type: group"),
    ([("user", "")], {"producer_byte_rate": 1.0}, "Empty user not supported"),
    ([("client-id", "c")], {"producer_byte_rate": 1.5},
     "Configuration producer_byte_rate must be a LONG value"),
    ([("client-id", "c")], {"bogus": 1.0}, "Invalid configuration key bogus"),
    ([("ip", "1.2.3.4"), ("user", "u")], {"connection_creation_rate": 1.0},
     "Invalid quota entity combination, IP entity should not be used with user/client ID "
     "entity."),
])
def test_alter_refuses_what_kafka_refuses(tmp_path: Path, components: Components,
                                          ops: dict[str, float | None], message: str) -> None:
    q = ClientQuotas(tmp_path)
    assert alter(q, components, ops) == (ErrorCode.INVALID_REQUEST, message)
    assert q.entries == {}
    assert not (tmp_path / FILE_NAME).exists()


@pytest.mark.parametrize("key", ["controller_mutation_rate"])
def test_alter_refuses_quotas_pykbroker_does_not_enforce(tmp_path: Path, key: str) -> None:
    q = ClientQuotas(tmp_path)
    code, message = alter(q, [("user", "u")], {key: 50.0})
    assert code == ErrorCode.INVALID_REQUEST
    assert message is not None and key in message and "does not enforce" in message
    code, message = alter(q, [("ip", "1.2.3.4")], {"connection_creation_rate": 5.0})
    assert code == ErrorCode.INVALID_REQUEST and "ip quotas" in (message or "")


def test_an_entry_fails_as_a_whole_and_others_still_apply(tmp_path: Path) -> None:
    q = ClientQuotas(tmp_path)
    results = q.alter([
        Alteration([("client-id", "a")], [("producer_byte_rate", 10.0), ("bogus", 1.0)]),
        Alteration([("client-id", "b")], [("producer_byte_rate", 20.0)]),
    ], False)
    assert results == [(ErrorCode.INVALID_REQUEST, "Invalid configuration key bogus"), OK]
    assert set(described(q, [])) == {frozenset({("client-id", "b")})}
    assert q.produce.quota("x", "a") is None and q.produce.quota("x", "b") == 20.0


def test_validate_only_changes_nothing(tmp_path: Path) -> None:
    q = ClientQuotas(tmp_path)
    assert alter(q, [("client-id", "a")], {"producer_byte_rate": 10.0}, validate_only=True) == OK
    assert q.entries == {} and not q.produce.enabled
    assert not (tmp_path / FILE_NAME).exists()


def test_removing_the_last_value_removes_the_entity(tmp_path: Path) -> None:
    q = ClientQuotas(tmp_path)
    assert alter(q, [("client-id", "a")], {"producer_byte_rate": 10.0}) == OK
    assert alter(q, [("client-id", "a")], {"producer_byte_rate": None, "bogus": None}) == OK
    assert described(q, []) == {}
    assert described(ClientQuotas(tmp_path), []) == {}
    assert q.produce.quota("x", "a") is None


@given(st.one_of(st.floats(0, 1e12, allow_nan=False), st.integers(0, 10**12).map(float)))
def test_byte_rates_must_be_whole_numbers(value: float) -> None:
    q = ClientQuotas(None)
    code, message = alter(q, [("client-id", "c")], {"consumer_byte_rate": value})
    if abs(value - round(value)) <= 1e-6:
        assert (code, message) == OK
        assert q.fetch.quota("u", "c") == float(round(value))
    else:
        assert (code, message) == (ErrorCode.INVALID_REQUEST,
                                   "Configuration consumer_byte_rate must be a LONG value")
