"""A transactional id's state and the records of ``__transaction_state`` that persist it.

The states and their allowed transitions are Kafka's ``TransactionState``; the status byte
written in TransactionLogValue uses Kafka's ids, so the log reads the same in both brokers.
A record key is an int16 version (0) and TransactionLogKey; a value is an int16 version (0,
as Kafka 3.9 writes without transaction version 2) and TransactionLogValue; a null value is
the tombstone of an expired transactional id.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from pykbroker.errors import DecodeError
from pykbroker.protocol._generated.internal_records.transaction_log_key import (
    TransactionLogKey,
)
from pykbroker.protocol._generated.internal_records.transaction_log_value import (
    PartitionsSchema,
    TransactionLogValue,
)

__all__ = [
    "TRANSACTION_STATE_TOPIC",
    "TransactionMetadata",
    "TxnState",
    "decode_txn_key",
    "decode_txn_value",
    "txn_key",
    "txn_value",
]

TRANSACTION_STATE_TOPIC = "__transaction_state"
KEY_VERSION = 0
VALUE_VERSION = 0
NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
# An epoch this high cannot be bumped twice more (a fence plus the new producer's): Kafka
# then hands out a new producer id instead.
EPOCH_EXHAUSTED = 2**15 - 2
_VERSION = struct.Struct(">h")

TopicPartition = tuple[str, int]


class TxnState(enum.IntEnum):
    """Kafka's TransactionState ids; ``.title`` is the name Describe/ListTransactions use."""

    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5
    DEAD = 6
    PREPARE_EPOCH_FENCE = 7

    @property
    def title(self) -> str:
        return _TITLES[self]

    @classmethod
    def from_title(cls, title: str) -> TxnState | None:
        for state, name in _TITLES.items():
            if name == title:
                return state
        return None


_TITLES = {
    TxnState.EMPTY: "Empty",
    TxnState.ONGOING: "Ongoing",
    TxnState.PREPARE_COMMIT: "PrepareCommit",
    TxnState.PREPARE_ABORT: "PrepareAbort",
    TxnState.COMPLETE_COMMIT: "CompleteCommit",
    TxnState.COMPLETE_ABORT: "CompleteAbort",
    TxnState.DEAD: "Dead",
    TxnState.PREPARE_EPOCH_FENCE: "PrepareEpochFence",
}

S = TxnState
# Kafka's TransactionState.validPreviousStates.
VALID_PREVIOUS: dict[TxnState, frozenset[TxnState]] = {
    S.EMPTY: frozenset({S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.ONGOING: frozenset({S.ONGOING, S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.PREPARE_COMMIT: frozenset({S.ONGOING}),
    S.PREPARE_ABORT: frozenset({S.ONGOING, S.PREPARE_EPOCH_FENCE}),
    S.COMPLETE_COMMIT: frozenset({S.PREPARE_COMMIT}),
    S.COMPLETE_ABORT: frozenset({S.PREPARE_ABORT}),
    S.DEAD: frozenset({S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.PREPARE_EPOCH_FENCE: frozenset({S.ONGOING}),
}


class IllegalTransitionError(Exception):
    """A transition Kafka's state machine does not allow (a coordinator bug, not bad input)."""


@dataclass
class TransactionMetadata:
    transactional_id: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: TxnState = TxnState.EMPTY
    partitions: set[TopicPartition] = field(default_factory=set)
    start_timestamp: int = -1
    last_update_timestamp: int = -1
    # The producer id and epoch before the last bump, so a retried InitProducerId whose
    # answer was lost is recognised (KIP-360).
    last_producer_id: int = NO_PRODUCER_ID
    last_producer_epoch: int = NO_PRODUCER_EPOCH

    def transition(self, state: TxnState, now_ms: int) -> None:
        if self.state not in VALID_PREVIOUS[state]:
            raise IllegalTransitionError(
                f"transactional id {self.transactional_id}: {self.state.title} -> {state.title}")
        if state == S.ONGOING and self.state != S.ONGOING:
            self.start_timestamp = now_ms
        self.state = state
        self.last_update_timestamp = now_ms

    @property
    def in_prepare(self) -> bool:
        return self.state in (S.PREPARE_COMMIT, S.PREPARE_ABORT, S.PREPARE_EPOCH_FENCE)

    @property
    def completed(self) -> bool:
        return self.state in (S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT)


def txn_key(transactional_id: str) -> bytes:
    return _VERSION.pack(KEY_VERSION) + TransactionLogKey(
        transactional_id=transactional_id).to_bytes(KEY_VERSION)


def txn_value(meta: TransactionMetadata) -> bytes:
    """Kafka writes a null partition list for Empty (``TransactionLog.valueToBytes``)."""
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(meta.partitions):
        by_topic.setdefault(topic, []).append(partition)
    value = TransactionLogValue(
        producer_id=meta.producer_id, producer_epoch=meta.producer_epoch,
        transaction_timeout_ms=meta.timeout_ms, transaction_status=int(meta.state),
        transaction_partitions=None if meta.state == S.EMPTY and not by_topic else [
            PartitionsSchema(topic=t, partition_ids=p) for t, p in by_topic.items()],
        transaction_last_update_timestamp_ms=meta.last_update_timestamp,
        transaction_start_timestamp_ms=meta.start_timestamp)
    return _VERSION.pack(VALUE_VERSION) + value.to_bytes(VALUE_VERSION)


def _version(data: bytes, highest: int, what: str) -> int:
    if len(data) < 2:
        raise DecodeError(f"{what} shorter than its version")
    (version,) = _VERSION.unpack_from(data, 0)
    if not 0 <= version <= highest:
        raise DecodeError(f"unknown {what} version {version}")
    return int(version)


def decode_txn_key(data: bytes) -> str:
    version = _version(data, 0, "transaction log key")
    key, _ = TransactionLogKey.decode(data, 2, version)
    return str(key.transactional_id)


def decode_txn_value(transactional_id: str, data: bytes) -> TransactionMetadata:
    version = _version(data, TransactionLogValue.MAX_VERSION, "transaction log value")
    v, _ = TransactionLogValue.decode(data, 2, version)
    try:
        state = TxnState(v.transaction_status)
    except ValueError:
        raise DecodeError(f"unknown transaction status {v.transaction_status}") from None
    partitions = {(p.topic, i) for p in v.transaction_partitions or () for i in p.partition_ids}
    return TransactionMetadata(
        transactional_id=transactional_id, producer_id=v.producer_id,
        producer_epoch=v.producer_epoch, timeout_ms=v.transaction_timeout_ms, state=state,
        partitions=partitions, start_timestamp=v.transaction_start_timestamp_ms,
        last_update_timestamp=v.transaction_last_update_timestamp_ms)
