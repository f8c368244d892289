"""Tests for pykbroker.error_codes (Kafka 3.9 error codes) and pykbroker.errors.KafkaError.

The reference is Kafka 3.9's ``Errors`` enum as published in the generated table
``39/generated/protocol_errors.html`` of the Kafka site (codes -1..127, 129 entries).
kafka-python's ``kafka.errors`` is used as an independent differential check.
"""

from __future__ import annotations

import pickle

import kafka.errors as kafka_python_errors
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError, PykbrokerError

# kafka-python (3.0.12) spells some names the old way; Java 3.9's names win.
KAFKA_PYTHON_NAME_DIFFERENCES: dict[int, tuple[str, str]] = {
    # code: (kafka-python name, Kafka 3.9 Java name)
    -1: ("UNKNOWN", "UNKNOWN_SERVER_ERROR"),
    0: ("NO_ERROR", "NONE"),
    6: ("NOT_LEADER_FOR_PARTITION", "NOT_LEADER_OR_FOLLOWER"),
    10: ("MESSAGE_SIZE_TOO_LARGE", "MESSAGE_TOO_LARGE"),
    17: ("INVALID_TOPIC", "INVALID_TOPIC_EXCEPTION"),
    39: ("INVALID_REPLICATION_ASSIGNMENT", "INVALID_REPLICA_ASSIGNMENT"),
}

# Where kafka-python's retriable flag differs from Java's (Java wins: the flag is whether the
# Java exception class extends RetriableException).
KAFKA_PYTHON_RETRIABLE_DIFFERENCES: dict[int, tuple[bool, bool]] = {
    # code: (kafka-python retriable, Kafka 3.9 Java retriable)
    # CorruptRecordException extends RetriableException in Java; kafka-python marks it fatal.
    2: (False, True),
}


def _kafka_python_table() -> dict[int, type[kafka_python_errors.BrokerResponseError]]:
    return {
        code: cls for code, cls in kafka_python_errors.kafka_errors.items() if isinstance(code, int)
    }


def test_codes_are_contiguous_from_minus_one_to_127() -> None:
    codes = [member.value for member in ErrorCode]
    assert codes == list(range(-1, 128))
    assert len(ErrorCode) == 129
    assert min(ErrorCode) is ErrorCode.UNKNOWN_SERVER_ERROR
    assert max(ErrorCode) is ErrorCode.VOTER_NOT_FOUND


def test_codes_and_names_are_unique() -> None:
    # An alias would show up in __members__ but not in iteration.
    assert len(ErrorCode.__members__) == len(ErrorCode)
    assert len({member.value for member in ErrorCode}) == len(ErrorCode)
    assert len({member.name for member in ErrorCode}) == len(ErrorCode)


def test_codes_fit_in_int16() -> None:
    assert all(-(2**15) <= member.value < 2**15 for member in ErrorCode)


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("UNKNOWN_SERVER_ERROR", -1),
        ("NONE", 0),
        ("OFFSET_OUT_OF_RANGE", 1),
        ("CORRUPT_MESSAGE", 2),
        ("UNKNOWN_TOPIC_OR_PARTITION", 3),
        ("NOT_LEADER_OR_FOLLOWER", 6),
        ("MESSAGE_TOO_LARGE", 10),
        ("INVALID_TOPIC_EXCEPTION", 17),
        ("UNSUPPORTED_VERSION", 35),
        ("INVALID_REQUEST", 42),
        ("INVALID_PRODUCER_EPOCH", 47),
        ("MEMBER_ID_REQUIRED", 79),
        ("FENCED_INSTANCE_ID", 82),
        ("INVALID_RECORD", 87),
        ("UNSTABLE_OFFSET_COMMIT", 88),
        ("PRODUCER_FENCED", 90),
        ("UNKNOWN_TOPIC_ID", 100),
        ("TRANSACTION_ABORTABLE", 120),
        ("INVALID_VOTER_KEY", 125),
        ("DUPLICATE_VOTER", 126),
        ("VOTER_NOT_FOUND", 127),
    ],
)
def test_name_and_code(name: str, code: int) -> None:
    assert ErrorCode[name].value == code
    assert ErrorCode(code).name == name
    assert ErrorCode[name].code == code


def test_codes_added_after_3_9_are_absent() -> None:
    # INVALID_REGULAR_EXPRESSION (128) and REBOOTSTRAP_REQUIRED (129) arrived in Kafka 4.0.
    assert "INVALID_REGULAR_EXPRESSION" not in ErrorCode.__members__
    assert "REBOOTSTRAP_REQUIRED" not in ErrorCode.__members__
    assert ErrorCode.from_code(128) is ErrorCode.UNKNOWN_SERVER_ERROR


def test_is_an_int() -> None:
    zero: int = 0
    assert ErrorCode.NONE == zero
    assert int(ErrorCode.NOT_COORDINATOR) == 16
    assert ErrorCode.REQUEST_TIMED_OUT + 0 == 7
    assert isinstance(ErrorCode.NONE, int)


@pytest.mark.parametrize(
    "member",
    [
        ErrorCode.CORRUPT_MESSAGE,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.LEADER_NOT_AVAILABLE,
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.REQUEST_TIMED_OUT,
        ErrorCode.REPLICA_NOT_AVAILABLE,
        ErrorCode.NETWORK_EXCEPTION,
        ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
        ErrorCode.COORDINATOR_NOT_AVAILABLE,
        ErrorCode.NOT_COORDINATOR,
        ErrorCode.NOT_ENOUGH_REPLICAS,
        ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        ErrorCode.NOT_CONTROLLER,
        ErrorCode.CONCURRENT_TRANSACTIONS,
        ErrorCode.KAFKA_STORAGE_ERROR,
        ErrorCode.FETCH_SESSION_ID_NOT_FOUND,
        ErrorCode.FENCED_LEADER_EPOCH,
        ErrorCode.UNKNOWN_LEADER_EPOCH,
        ErrorCode.OFFSET_NOT_AVAILABLE,
        ErrorCode.ELECTION_NOT_NEEDED,
        ErrorCode.UNSTABLE_OFFSET_COMMIT,
        ErrorCode.THROTTLING_QUOTA_EXCEEDED,
        ErrorCode.UNKNOWN_TOPIC_ID,
        ErrorCode.INCONSISTENT_TOPIC_ID,
        ErrorCode.SHARE_SESSION_NOT_FOUND,
    ],
)
def test_retriable(member: ErrorCode) -> None:
    assert member.retriable is True


@pytest.mark.parametrize(
    "member",
    [
        ErrorCode.UNKNOWN_SERVER_ERROR,
        ErrorCode.NONE,
        ErrorCode.OFFSET_OUT_OF_RANGE,
        ErrorCode.BROKER_NOT_AVAILABLE,
        ErrorCode.MESSAGE_TOO_LARGE,
        ErrorCode.REBALANCE_IN_PROGRESS,
        ErrorCode.TOPIC_AUTHORIZATION_FAILED,
        ErrorCode.UNSUPPORTED_VERSION,
        ErrorCode.INVALID_REQUEST,
        ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
        ErrorCode.INVALID_PRODUCER_EPOCH,
        ErrorCode.PRODUCER_FENCED,
        ErrorCode.INVALID_RECORD,
        ErrorCode.TRANSACTION_ABORTABLE,
        ErrorCode.VOTER_NOT_FOUND,
    ],
)
def test_not_retriable(member: ErrorCode) -> None:
    assert member.retriable is False


def test_retriable_count() -> None:
    # Kafka 3.9's generated table marks exactly 31 codes "True".
    assert sum(member.retriable for member in ErrorCode) == 31


def test_messages() -> None:
    assert ErrorCode.OFFSET_OUT_OF_RANGE.message == (
        "The requested offset is not within the range of offsets maintained by the server."
    )
    assert ErrorCode.UNKNOWN_TOPIC_OR_PARTITION.message == (
        "This server does not host this topic-partition."
    )
    assert ErrorCode.REQUEST_TIMED_OUT.message == "The request timed out."
    assert ErrorCode.UNSUPPORTED_VERSION.message == "The version of API is not supported."
    assert ErrorCode.VOTER_NOT_FOUND.message == "The voter is not part of the set of voters."
    # Java: Errors.NONE has no exception, so Errors.NONE.message() falls back to the name.
    assert ErrorCode.NONE.message == "NONE"


def test_every_message_is_a_sentence() -> None:
    for member in ErrorCode:
        if member is ErrorCode.NONE:
            continue
        assert member.message, member
        assert member.message[0].isupper(), member
        assert member.message.endswith("."), member
        assert "  " not in member.message, member


def test_from_code_known() -> None:
    for member in ErrorCode:
        assert ErrorCode.from_code(member.value) is member
        assert ErrorCode.from_code(int(member)) is member


@pytest.mark.parametrize("code", [-2, 128, 129, 999, 32767, -32768])
def test_from_code_unknown(code: int) -> None:
    assert ErrorCode.from_code(code) is ErrorCode.UNKNOWN_SERVER_ERROR


@given(st.integers(min_value=-(2**15), max_value=2**15 - 1))
def test_from_code_total_on_int16(code: int) -> None:
    member = ErrorCode.from_code(code)
    if -1 <= code <= 127:
        assert member.value == code
    else:
        assert member is ErrorCode.UNKNOWN_SERVER_ERROR


# --- differential check against kafka-python -------------------------------------------------


def test_kafka_python_knows_no_code_we_lack() -> None:
    theirs = set(_kafka_python_table())
    ours = {member.value for member in ErrorCode}
    assert theirs <= ours


def test_names_match_kafka_python() -> None:
    differences = {}
    for code, cls in _kafka_python_table().items():
        ours = ErrorCode.from_code(code)
        assert ours.value == code
        if ours.name != cls.message:
            differences[code] = (cls.message, ours.name)
    assert differences == KAFKA_PYTHON_NAME_DIFFERENCES


def test_retriable_matches_kafka_python_except_documented() -> None:
    differences = {}
    for code, cls in _kafka_python_table().items():
        ours = ErrorCode.from_code(code)
        if ours.retriable != cls.retriable:
            differences[code] = (cls.retriable, ours.retriable)
    assert differences == KAFKA_PYTHON_RETRIABLE_DIFFERENCES


# --- KafkaError -----------------------------------------------------------------------------


def test_kafka_error_default_message() -> None:
    err = KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    assert err.error_code is ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert err.message == "This server does not host this topic-partition."
    assert str(err) == (
        "UNKNOWN_TOPIC_OR_PARTITION: This server does not host this topic-partition."
    )


def test_kafka_error_custom_message() -> None:
    err = KafkaError(ErrorCode.INVALID_REQUEST, "Unexpected empty topic name")
    assert err.message == "Unexpected empty topic name"
    assert str(err) == "INVALID_REQUEST: Unexpected empty topic name"
    assert repr(err) == "KafkaError(ErrorCode.INVALID_REQUEST, 'Unexpected empty topic name')"


def test_kafka_error_empty_message_is_kept() -> None:
    err = KafkaError(ErrorCode.POLICY_VIOLATION, "")
    assert err.message == ""
    assert str(err) == "POLICY_VIOLATION: "


def test_kafka_error_is_a_pykbroker_error() -> None:
    with pytest.raises(PykbrokerError) as info:
        raise KafkaError(ErrorCode.NOT_CONTROLLER)
    assert isinstance(info.value, KafkaError)
    assert info.value.error_code.retriable


def test_kafka_error_pickles() -> None:
    err = KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS, "Topic 'x' already exists.")
    copy = pickle.loads(pickle.dumps(err))
    assert copy.error_code is ErrorCode.TOPIC_ALREADY_EXISTS
    assert copy.message == "Topic 'x' already exists."
    assert str(copy) == str(err)
