"""Transaction metadata: Kafka's TransactionState ids and transitions, the records of
``__transaction_state`` byte for byte, and the TransactionCoordinator state machine run on
real partition logs behind a minimal replica layer (epochs, fencing, KIP-360, two-phase
completion, timeouts, expiry, and completing Prepare* transactions on load)."""

from __future__ import annotations

import itertools
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pykbroker.coordinator.group.records import partition_for
from pykbroker.coordinator.transaction import (
    TRANSACTION_STATE_TOPIC,
    TransactionCoordinator,
    TransactionMetadata,
    TxnConfig,
    TxnState,
)
from pykbroker.coordinator.transaction.metadata import (
    EPOCH_EXHAUSTED,
    VALID_PREVIOUS,
    IllegalTransitionError,
    decode_txn_key,
    decode_txn_value,
    txn_key,
    txn_value,
)
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import DecodeError, KafkaError
from pykbroker.log import LogConfig, PartitionLog
from pykbroker.protocol._generated.internal_records.transaction_log_value import (
    PartitionsSchema,
    TransactionLogValue,
)
from pykbroker.records import (
    CONTROL_ABORT,
    CONTROL_COMMIT,
    BatchHeader,
    NewRecord,
    build_batch,
    control_type,
    end_txn_coordinator_epoch,
    iter_batches,
    iter_records,
)
from tests.log.helpers import FakeClock

S = TxnState


def s16(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


# -- states -----------------------------------------------------------------------------------


def test_state_ids_and_names_are_kafkas() -> None:
    assert {s.title: int(s) for s in TxnState} == {
        "Empty": 0, "Ongoing": 1, "PrepareCommit": 2, "PrepareAbort": 3,
        "CompleteCommit": 4, "CompleteAbort": 5, "Dead": 6, "PrepareEpochFence": 7}
    for state in TxnState:
        assert TxnState.from_title(state.title) is state
    assert TxnState.from_title("ongoing") is None
    assert TxnState.from_title("") is None


# Kafka's TransactionState.validPreviousStates, written out as (from, to) pairs.
KAFKA_TRANSITIONS = {
    *((f, S.EMPTY) for f in (S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT)),
    *((f, S.ONGOING) for f in (S.ONGOING, S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT)),
    (S.ONGOING, S.PREPARE_COMMIT),
    (S.ONGOING, S.PREPARE_ABORT), (S.PREPARE_EPOCH_FENCE, S.PREPARE_ABORT),
    (S.PREPARE_COMMIT, S.COMPLETE_COMMIT),
    (S.PREPARE_ABORT, S.COMPLETE_ABORT),
    *((f, S.DEAD) for f in (S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT)),
    (S.ONGOING, S.PREPARE_EPOCH_FENCE),
}


def test_valid_previous_is_kafkas_table() -> None:
    assert {(f, t) for t, prev in VALID_PREVIOUS.items() for f in prev} == KAFKA_TRANSITIONS


@pytest.mark.parametrize("source", list(TxnState))
@pytest.mark.parametrize("target", list(TxnState))
def test_transition(source: TxnState, target: TxnState) -> None:
    meta = TransactionMetadata("t", 1, 0, 1000, state=source, start_timestamp=7,
                               last_update_timestamp=8)
    if (source, target) in KAFKA_TRANSITIONS:
        meta.transition(target, 50)
        assert meta.state is target and meta.last_update_timestamp == 50
        # The transaction's start time is set on entering Ongoing, and kept while in it.
        entered = target is S.ONGOING and source is not S.ONGOING
        assert meta.start_timestamp == (50 if entered else 7)
    else:
        with pytest.raises(IllegalTransitionError):
            meta.transition(target, 50)
        assert meta.state is source and meta.last_update_timestamp == 8


def test_state_groups() -> None:
    prepare = {s for s in TxnState if TransactionMetadata("t", 1, 0, 1, state=s).in_prepare}
    done = {s for s in TxnState if TransactionMetadata("t", 1, 0, 1, state=s).completed}
    assert prepare == {S.PREPARE_COMMIT, S.PREPARE_ABORT, S.PREPARE_EPOCH_FENCE}
    assert done == {S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}


# -- records ----------------------------------------------------------------------------------


def test_key_golden_bytes() -> None:
    key = txn_key("my-txn")
    assert key == struct.pack(">h", 0) + s16("my-txn")
    assert decode_txn_key(key) == "my-txn"
    assert decode_txn_key(txn_key("")) == ""
    with pytest.raises(DecodeError):
        decode_txn_key(b"\x00")
    with pytest.raises(DecodeError):
        decode_txn_key(struct.pack(">h", 1) + s16("x"))


def test_value_golden_bytes() -> None:
    meta = TransactionMetadata("t", producer_id=1234, producer_epoch=5, timeout_ms=60000,
                               state=S.ONGOING, partitions={("b", 2), ("a", 1), ("b", 0)},
                               start_timestamp=1000, last_update_timestamp=2000)
    expected = (struct.pack(">h", 0) + struct.pack(">qhib", 1234, 5, 60000, 1)
                + struct.pack(">i", 2)
                + s16("a") + struct.pack(">ii", 1, 1)
                + s16("b") + struct.pack(">iii", 2, 0, 2)
                + struct.pack(">qq", 2000, 1000))
    assert txn_value(meta) == expected
    back = decode_txn_value("t", expected)
    assert (back.producer_id, back.producer_epoch, back.timeout_ms, back.state) == (
        1234, 5, 60000, S.ONGOING)
    assert back.partitions == {("a", 1), ("b", 0), ("b", 2)}
    assert (back.start_timestamp, back.last_update_timestamp) == (1000, 2000)


def test_empty_state_writes_null_partitions_as_kafka_does() -> None:
    meta = TransactionMetadata("t", producer_id=9, producer_epoch=0, timeout_ms=100,
                               state=S.EMPTY, last_update_timestamp=3)
    assert txn_value(meta) == (struct.pack(">h", 0) + struct.pack(">qhib", 9, 0, 100, 0)
                               + struct.pack(">i", -1) + struct.pack(">qq", 3, -1))
    assert decode_txn_value("t", txn_value(meta)).partitions == set()
    # A completed transaction keeps an (empty) list, as Kafka's does.
    meta.state = S.COMPLETE_COMMIT
    assert struct.pack(">i", 0) in txn_value(meta)


def test_value_decode_errors_and_version_1() -> None:
    with pytest.raises(DecodeError):
        decode_txn_value("t", b"\x00")
    with pytest.raises(DecodeError):
        decode_txn_value("t", struct.pack(">h", 2) + bytes(40))
    bad_status = TransactionLogValue(producer_id=1, producer_epoch=0, transaction_status=8,
                                     transaction_partitions=[])
    with pytest.raises(DecodeError):
        decode_txn_value("t", struct.pack(">h", 0) + bad_status.to_bytes(0))
    # Version 1 (flexible, Kafka 4 with transaction version 2) is read too; its tagged
    # fields are not needed here.
    v1 = TransactionLogValue(producer_id=77, previous_producer_id=76, next_producer_id=78,
                             producer_epoch=3, transaction_timeout_ms=500,
                             transaction_status=int(S.PREPARE_COMMIT),
                             transaction_partitions=[PartitionsSchema("x", [4, 5])],
                             transaction_last_update_timestamp_ms=20,
                             transaction_start_timestamp_ms=10, client_transaction_version=2)
    meta = decode_txn_value("t", struct.pack(">h", 1) + v1.to_bytes(1))
    assert (meta.producer_id, meta.producer_epoch, meta.state) == (77, 3, S.PREPARE_COMMIT)
    assert meta.partitions == {("x", 4), ("x", 5)} and meta.timeout_ms == 500


NAMES = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)


@given(
    txn_id=NAMES,
    pid=st.integers(-1, 2**63 - 1),
    epoch=st.integers(-1, 2**15 - 1),
    timeout=st.integers(0, 2**31 - 1),
    state=st.sampled_from(list(TxnState)),
    partitions=st.sets(st.tuples(NAMES, st.integers(0, 2**31 - 1)), max_size=8),
    start=st.integers(-1, 2**62),
    update=st.integers(-1, 2**62),
)
def test_value_round_trip(txn_id: str, pid: int, epoch: int, timeout: int, state: TxnState,
                          partitions: set[tuple[str, int]], start: int, update: int) -> None:
    meta = TransactionMetadata(txn_id, pid, epoch, timeout, state=state, partitions=partitions,
                               start_timestamp=start, last_update_timestamp=update)
    key = txn_key(txn_id)
    assert decode_txn_key(key) == txn_id
    back = decode_txn_value(decode_txn_key(key), txn_value(meta))
    assert back == TransactionMetadata(txn_id, pid, epoch, timeout, state=state,
                                       partitions=partitions, start_timestamp=start,
                                       last_update_timestamp=update)


# -- the coordinator on real logs -------------------------------------------------------------


class FakePart:
    def __init__(self, topic: str, index: int, log: PartitionLog) -> None:
        self.topic, self.index, self.log = topic, index, log
        self.leader_epoch = 4

    @property
    def high_watermark(self) -> int:
        return self.log.log_end_offset

    def needs_sync_ack(self) -> bool:
        return False


class FakeReplicas:
    """Just what the coordinator uses of a ReplicaManager, over real partition logs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.parts: dict[tuple[str, int], FakePart] = {}
        self.fail_appends: ErrorCode | None = None
        # Per-append outcomes to play first (None: the append succeeds).
        self.plan: list[ErrorCode | None] = []

    def add(self, topic: str, index: int) -> FakePart:
        log = PartitionLog.open(self.root / f"{topic}-{index}", LogConfig(), now_ms=FakeClock(),
                                had_clean_shutdown=True)
        part = self.parts[(topic, index)] = FakePart(topic, index, log)
        return part

    def partition(self, topic: str, index: int) -> FakePart:
        try:
            return self.parts[(topic, index)]
        except KeyError:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION) from None

    def append(self, part: FakePart, records: Any, acks: int = 1,
               transactional_id: str | None = None) -> Any:
        failure = self.plan.pop(0) if self.plan else self.fail_appends
        if failure is not None:
            raise KafkaError(failure, "injected")
        return part.log.append_as_leader(bytearray(records), leader_epoch=0)

    def write_marker(self, part: FakePart, producer_id: int, producer_epoch: int,
                     commit: bool, coordinator_epoch: int) -> None:
        part.log.append_marker(producer_id, producer_epoch, commit, coordinator_epoch,
                               leader_epoch=0)

    def close(self) -> None:
        for part in self.parts.values():
            part.log.close()


TXN_PARTITIONS = 3


class Env:
    def __init__(self, root: Path, clock: FakeClock | None = None) -> None:
        self.root = root
        self.clock = clock or FakeClock()
        self.replicas = FakeReplicas(root)
        for i in range(TXN_PARTITIONS):
            self.replicas.add(TRANSACTION_STATE_TOPIC, i)
        for i in range(2):
            self.replicas.add("data", i)
        self.pids = itertools.count(1000)
        self.coord = self.new_coordinator()

    def new_coordinator(self, **config: int) -> TransactionCoordinator:
        coord = TransactionCoordinator(
            self.replicas, TxnConfig(**{"max_timeout_ms": 60000, **config}),
            topic_partitions=lambda: TXN_PARTITIONS, create_topic=lambda: TXN_PARTITIONS,
            next_producer_id=lambda: next(self.pids),
            partition_exists=lambda t, i: (t, i) in self.replicas.parts,
            now_ms=self.clock)
        coord.load()
        return coord

    def restart(self, **config: int) -> TransactionCoordinator:
        self.replicas.close()
        parts = list(self.replicas.parts)
        self.replicas = FakeReplicas(self.root)
        for tp in parts:
            self.replicas.add(*tp)
        self.coord = self.new_coordinator(**config)
        return self.coord

    def txn_log_end(self, txn_id: str) -> int:
        return self.replicas.parts[(TRANSACTION_STATE_TOPIC,
                                    partition_for(txn_id, TXN_PARTITIONS))].log.log_end_offset

    def markers(self, topic: str, index: int) -> list[tuple[int, int, int]]:
        """(producer id, epoch, control type) of each marker in the partition."""
        log = self.replicas.parts[(topic, index)].log
        data = bytes(log.read(0, 1 << 20).data)
        return [(h.producer_id, h.producer_epoch, control_type(next(iter_records(data, pos))))
                for pos, h in iter_batches(data) if h.is_control]

    def coordinator_epochs(self, topic: str, index: int) -> list[int]:
        log = self.replicas.parts[(topic, index)].log
        data = bytes(log.read(0, 1 << 20).data)
        return [end_txn_coordinator_epoch(next(iter_records(data, pos)))
                for pos, h in iter_batches(data) if h.is_control]

    def states(self, txn_id: str) -> list[TxnState]:
        """Every state written for ``txn_id`` to __transaction_state, in order."""
        log = self.replicas.parts[(TRANSACTION_STATE_TOPIC,
                                   partition_for(txn_id, TXN_PARTITIONS))].log
        data = bytes(log.read(0, 1 << 20).data)
        out = []
        for pos, _ in iter_batches(data):
            for r in iter_records(data, pos):
                if r.key is not None and decode_txn_key(bytes(r.key)) == txn_id:
                    out.append(S.DEAD if r.value is None
                               else decode_txn_value(txn_id, bytes(r.value)).state)
        return out


@pytest.fixture
def env(tmp_path: Path) -> Any:
    e = Env(tmp_path)
    yield e
    e.replicas.close()


def _txn_batch(pid: int, epoch: int, seq: int = 0) -> bytearray:
    return bytearray(build_batch([NewRecord(b"k", b"v")], producer_id=pid,
                                 producer_epoch=epoch, base_sequence=seq,
                                 is_transactional=True))


@pytest.mark.trio
async def test_init_producer_id_epochs_and_validation(env: Env) -> None:
    c = env.coord
    first = await c.init_producer_id("t1", 1000)
    assert (first.error, first.producer_id, first.producer_epoch) == (ErrorCode.NONE, 1000, 0)
    again = await c.init_producer_id("t1", 2000)
    assert (again.error, again.producer_id, again.producer_epoch) == (ErrorCode.NONE, 1000, 1)
    assert c.txns["t1"].timeout_ms == 2000 and c.txns["t1"].state is S.EMPTY
    assert env.states("t1") == [S.EMPTY, S.EMPTY]
    other = await c.init_producer_id("t2", 1000)
    assert other.producer_id == 1001
    for timeout in (0, -5, 60001):
        assert (await c.init_producer_id("t1", timeout)).error == \
            ErrorCode.INVALID_TRANSACTION_TIMEOUT
    assert (await c.init_producer_id("", 1000)).error == ErrorCode.INVALID_REQUEST
    assert c.txns["t1"].producer_epoch == 1  # refused requests change nothing
    c.owned.discard(partition_for("t1", TXN_PARTITIONS))
    assert (await c.init_producer_id("t1", 1000)).error == ErrorCode.NOT_COORDINATOR


@pytest.mark.trio
async def test_commit_writes_markers_and_completes(env: Env) -> None:
    c = env.coord
    r = await c.init_producer_id("t", 1000)
    pid = r.producer_id
    assert await c.end_txn("t", pid, 0, True) == ErrorCode.INVALID_TXN_STATE  # Empty
    wanted = [("data", 0), ("data", 1)]
    assert await c.add_partitions("t", pid, 0, wanted) == dict.fromkeys(wanted, ErrorCode.NONE)
    meta = c.txns["t"]
    assert meta.state is S.ONGOING and meta.partitions == set(wanted)
    assert meta.start_timestamp == env.clock.now
    # Adding partitions already in the transaction writes nothing.
    end = env.txn_log_end("t")
    assert await c.add_partitions("t", pid, 0, wanted[:1]) == {wanted[0]: ErrorCode.NONE}
    assert env.txn_log_end("t") == end
    for tp in wanted:
        env.replicas.parts[tp].log.append_as_leader(_txn_batch(pid, 0), leader_epoch=0)
    assert await c.end_txn("t", pid, 0, True) == ErrorCode.NONE
    meta = c.txns["t"]
    assert meta.state is S.COMPLETE_COMMIT and meta.partitions == set()
    for tp in wanted:
        assert env.markers(*tp) == [(pid, 0, CONTROL_COMMIT)]
        assert env.replicas.parts[tp].log.first_unstable_offset() is None
    assert env.states("t") == [S.EMPTY, S.ONGOING, S.PREPARE_COMMIT, S.COMPLETE_COMMIT]
    # A retried commit is answered NONE and writes nothing; an abort now is refused.
    end = env.txn_log_end("t")
    assert await c.end_txn("t", pid, 0, True) == ErrorCode.NONE
    assert await c.end_txn("t", pid, 0, False) == ErrorCode.INVALID_TXN_STATE
    assert env.txn_log_end("t") == end and env.markers("data", 0) == [(pid, 0, CONTROL_COMMIT)]
    # Wrong producer id / epoch.
    assert await c.end_txn("t", pid + 1, 0, True) == ErrorCode.INVALID_PRODUCER_ID_MAPPING
    assert await c.end_txn("t", pid, 1, True) == ErrorCode.PRODUCER_FENCED
    assert await c.end_txn("nope", pid, 0, True) == ErrorCode.INVALID_PRODUCER_ID_MAPPING
    # The next transaction of the same producer: Ongoing again, then aborted.
    await c.add_partitions("t", pid, 0, [("data", 1)])
    assert c.txns["t"].state is S.ONGOING
    assert await c.end_txn("t", pid, 0, False) == ErrorCode.NONE
    assert c.txns["t"].state is S.COMPLETE_ABORT
    assert env.markers("data", 1) == [(pid, 0, CONTROL_COMMIT), (pid, 0, CONTROL_ABORT)]


@pytest.mark.trio
async def test_add_partitions_errors(env: Env) -> None:
    c = env.coord
    pid = (await c.init_producer_id("t", 1000)).producer_id
    wanted = [("data", 0), ("missing", 0), ("data", 7)]
    assert await c.add_partitions("t", pid, 0, wanted) == {
        ("data", 0): ErrorCode.OPERATION_NOT_ATTEMPTED,
        ("missing", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ("data", 7): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION}
    assert c.txns["t"].state is S.EMPTY
    tp = [("data", 0)]
    assert await c.add_partitions("t", pid + 1, 0, tp) == {tp[0]: ErrorCode.INVALID_PRODUCER_ID_MAPPING}
    assert await c.add_partitions("u", pid, 0, tp) == {tp[0]: ErrorCode.INVALID_PRODUCER_ID_MAPPING}
    assert await c.add_partitions("t", pid, 1, tp) == {tp[0]: ErrorCode.PRODUCER_FENCED}
    # While a Prepare* record is the latest state, the producer must wait.
    await c.add_partitions("t", pid, 0, tp)
    c.prepare_end(c.txns["t"], True)
    assert await c.add_partitions("t", pid, 0, tp) == {tp[0]: ErrorCode.CONCURRENT_TRANSACTIONS}
    assert await c.end_txn("t", pid, 0, True) == ErrorCode.CONCURRENT_TRANSACTIONS
    assert await c.end_txn("t", pid, 0, False) == ErrorCode.INVALID_TXN_STATE
    assert (await c.init_producer_id("t", 1000)).error == ErrorCode.CONCURRENT_TRANSACTIONS
    assert c.verify("t", pid, 0, tp) == {tp[0]: ErrorCode.CONCURRENT_TRANSACTIONS}


@pytest.mark.trio
async def test_init_while_ongoing_fences_and_aborts(env: Env) -> None:
    c = env.coord
    pid = (await c.init_producer_id("t", 1000)).producer_id
    await c.init_producer_id("t", 1000)                                   # epoch 1
    await c.add_partitions("t", pid, 1, [("data", 0)])
    env.replicas.parts[("data", 0)].log.append_as_leader(_txn_batch(pid, 1), leader_epoch=0)
    r = await c.init_producer_id("t", 1000)
    assert r.error == ErrorCode.CONCURRENT_TRANSACTIONS
    meta = c.txns["t"]
    assert meta.state is S.COMPLETE_ABORT and meta.producer_epoch == 2
    # The ABORT carries the bumped epoch, so the old producer can write nothing more.
    assert env.markers("data", 0) == [(pid, 2, CONTROL_ABORT)]
    log = env.replicas.parts[("data", 0)].log
    assert [a.producer_id for a in log.collect_aborted(0, 10)] == [pid]
    assert env.states("t")[-3:] == [S.ONGOING, S.PREPARE_ABORT, S.COMPLETE_ABORT]
    tp = ("data", 1)
    assert await c.add_partitions("t", pid, 1, [tp]) == {tp: ErrorCode.PRODUCER_FENCED}
    assert await c.end_txn("t", pid, 1, True) == ErrorCode.PRODUCER_FENCED
    assert c.verify("t", pid, 1, [tp]) == {tp: ErrorCode.PRODUCER_FENCED}
    # The new producer's retry gets the next epoch.
    r = await c.init_producer_id("t", 1000)
    assert (r.error, r.producer_id, r.producer_epoch) == (ErrorCode.NONE, pid, 3)
    # The fenced producer's KIP-360 recovery with its old epoch is fenced too.
    assert (await c.init_producer_id("t", 1000, pid, 1)).error == ErrorCode.PRODUCER_FENCED


@pytest.mark.trio
async def test_kip_360_epoch_bump_and_retry(env: Env) -> None:
    c = env.coord
    pid = (await c.init_producer_id("t", 1000)).producer_id             # epoch 0
    r = await c.init_producer_id("t", 1000, pid, 0)
    assert (r.error, r.producer_id, r.producer_epoch) == (ErrorCode.NONE, pid, 1)
    # The answer was lost: the same request again gets the same epoch, not another bump.
    r = await c.init_producer_id("t", 1000, pid, 0)
    assert (r.error, r.producer_id, r.producer_epoch) == (ErrorCode.NONE, pid, 1)
    assert c.txns["t"].producer_epoch == 1
    # Neither the current nor the previous epoch: fenced.
    assert (await c.init_producer_id("t", 1000, pid, 5)).error == ErrorCode.PRODUCER_FENCED
    # Another producer id: fenced.
    assert (await c.init_producer_id("t", 1000, pid + 77, 1)).error == \
        ErrorCode.PRODUCER_FENCED
    r = await c.init_producer_id("t", 1000, pid, 1)
    assert (r.error, r.producer_epoch) == (ErrorCode.NONE, 2)
    # A producer id without an epoch, or the reverse, is malformed (it used to be taken for
    # a retry and handed the current epoch to a second producer, unfenced).
    assert (await c.init_producer_id("t", 1000, pid, -1)).error == ErrorCode.INVALID_REQUEST
    assert (await c.init_producer_id("t", 1000, -1, 2)).error == ErrorCode.INVALID_REQUEST
    assert c.txns["t"].producer_epoch == 2
    # A new transactional id accepts any expected producer (a migrating producer).
    r = await c.init_producer_id("fresh", 1000, 12345, 9)
    assert r.error == ErrorCode.NONE and r.producer_epoch == 0 and r.producer_id != 12345


@pytest.mark.trio
async def test_exhausted_epoch_gets_a_new_producer_id(env: Env) -> None:
    c = env.coord
    pid = (await c.init_producer_id("t", 1000)).producer_id
    c.txns["t"].producer_epoch = EPOCH_EXHAUSTED
    r = await c.init_producer_id("t", 1000, pid, EPOCH_EXHAUSTED)
    assert r.error == ErrorCode.NONE and r.producer_id != pid and r.producer_epoch == 0
    new_pid = r.producer_id
    # A retry of that request (answer lost) is recognised through the previous id.
    r = await c.init_producer_id("t", 1000, pid, EPOCH_EXHAUSTED)
    assert (r.error, r.producer_id, r.producer_epoch) == (ErrorCode.NONE, new_pid, 0)
    # Without KIP-360 fields an exhausted epoch also rolls over to a new id.
    c.txns["t"].producer_epoch = EPOCH_EXHAUSTED + 1
    r = await c.init_producer_id("t", 1000)
    assert r.producer_id not in (pid, new_pid) and r.producer_epoch == 0


@pytest.mark.trio
async def test_verify_and_verify_produce(env: Env) -> None:
    c = env.coord
    pid = (await c.init_producer_id("t", 1000)).producer_id
    a, b = ("data", 0), ("data", 1)
    assert c.verify("t", pid, 0, [a]) == {a: ErrorCode.INVALID_TXN_STATE}  # Empty
    await c.add_partitions("t", pid, 0, [a])
    assert c.verify("t", pid, 0, [a, b]) == {a: ErrorCode.NONE, b: ErrorCode.INVALID_TXN_STATE}
    assert c.verify("t", pid + 1, 0, [a]) == {a: ErrorCode.INVALID_PRODUCER_ID_MAPPING}
    assert c.verify("x", pid, 0, [a]) == {a: ErrorCode.INVALID_PRODUCER_ID_MAPPING}
    part_a, part_b = env.replicas.parts[a], env.replicas.parts[b]
    c.verify_produce("t", BatchHeader.parse(_txn_batch(pid, 0)), part_a)
    with pytest.raises(KafkaError) as exc:
        c.verify_produce("t", BatchHeader.parse(_txn_batch(pid, 0)), part_b)
    assert exc.value.error_code == ErrorCode.INVALID_TXN_STATE
    with pytest.raises(KafkaError) as exc:  # fencing reads as INVALID_PRODUCER_EPOCH here
        c.verify_produce("t", BatchHeader.parse(_txn_batch(pid, 1)), part_a)
    assert exc.value.error_code == ErrorCode.INVALID_PRODUCER_EPOCH
    c.owned.clear()
    with pytest.raises(KafkaError) as exc:
        c.verify_produce("t", BatchHeader.parse(_txn_batch(pid, 0)), part_a)
    assert exc.value.error_code == ErrorCode.NOT_ENOUGH_REPLICAS


@pytest.mark.trio
async def test_storage_errors_leave_state_unchanged(env: Env) -> None:
    c = env.coord
    pid = (await c.init_producer_id("t", 1000)).producer_id
    for injected, told in ((ErrorCode.NOT_ENOUGH_REPLICAS, ErrorCode.COORDINATOR_NOT_AVAILABLE),
                           (ErrorCode.KAFKA_STORAGE_ERROR, ErrorCode.NOT_COORDINATOR),
                           (ErrorCode.RECORD_LIST_TOO_LARGE, ErrorCode.UNKNOWN_SERVER_ERROR),
                           (ErrorCode.INVALID_RECORD, ErrorCode.INVALID_RECORD)):
        env.replicas.fail_appends = injected
        assert (await c.init_producer_id("t", 1000)).error == told
        assert await c.add_partitions("t", pid, 0, [("data", 0)]) == {("data", 0): told}
        assert c.txns["t"].state is S.EMPTY and c.txns["t"].producer_epoch == 0
        assert (await c.init_producer_id("new", 1000)).error == told
        assert "new" not in c.txns
    env.replicas.fail_appends = None
    await c.add_partitions("t", pid, 0, [("data", 0)])
    env.replicas.fail_appends = ErrorCode.NOT_ENOUGH_REPLICAS
    assert await c.end_txn("t", pid, 0, True) == ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert c.txns["t"].state is S.ONGOING  # the Prepare record was never written
    assert env.markers("data", 0) == []


@pytest.mark.trio
async def test_failed_complete_record_is_retried(env: Env) -> None:
    """The Prepare record and the markers are written but the Complete record is not: the
    transaction must not stay in PrepareCommit (refusing its producer) until a restart."""
    c = env.coord
    pid = (await c.init_producer_id("t", 1000)).producer_id
    await c.add_partitions("t", pid, 0, [("data", 0)])
    env.replicas.parts[("data", 0)].log.append_as_leader(_txn_batch(pid, 0), leader_epoch=0)
    env.replicas.plan = [None, ErrorCode.NOT_ENOUGH_REPLICAS]  # Prepare ok, Complete fails
    assert await c.end_txn("t", pid, 0, True) == ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert c.txns["t"].state is S.PREPARE_COMMIT
    assert env.markers("data", 0) == [(pid, 0, CONTROL_COMMIT)]  # the data is committed
    assert await c.end_txn("t", pid, 0, True) == ErrorCode.CONCURRENT_TRANSACTIONS
    assert c.complete_pending() == 1  # what the timer task runs
    assert c.txns["t"].state is S.COMPLETE_COMMIT
    assert await c.end_txn("t", pid, 0, True) == ErrorCode.NONE  # the client's retry
    assert c.complete_pending() == 0
    assert (await c.init_producer_id("t", 1000)).producer_epoch == 1
    # The same for an abort forced by fencing.
    await c.add_partitions("t", pid, 1, [("data", 1)])
    env.replicas.plan = [None, ErrorCode.NOT_ENOUGH_REPLICAS]
    assert (await c.init_producer_id("t", 1000)).error == ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert c.txns["t"].state is S.PREPARE_ABORT
    assert (await c.init_producer_id("t", 1000)).error == ErrorCode.CONCURRENT_TRANSACTIONS
    assert c.complete_pending() == 1 and c.txns["t"].state is S.COMPLETE_ABORT
    assert (await c.init_producer_id("t", 1000)).producer_epoch == 3


@pytest.mark.trio
async def test_timed_out_transactions_are_aborted(env: Env) -> None:
    c = env.coord
    pid = (await c.init_producer_id("t", 100)).producer_id
    other = (await c.init_producer_id("u", 100_000 // 2)).producer_id
    await c.add_partitions("t", pid, 0, [("data", 0)])
    await c.add_partitions("u", other, 0, [("data", 1)])
    env.replicas.parts[("data", 0)].log.append_as_leader(_txn_batch(pid, 0), leader_epoch=0)
    env.clock.advance(100)
    assert c.abort_timed_out() == 0  # exactly the timeout: not yet
    env.clock.advance(1)
    assert c.abort_timed_out() == 1
    meta = c.txns["t"]
    assert meta.state is S.COMPLETE_ABORT and meta.producer_epoch == 1
    assert env.markers("data", 0) == [(pid, 1, CONTROL_ABORT)]
    assert c.txns["u"].state is S.ONGOING
    assert await c.end_txn("t", pid, 0, True) == ErrorCode.PRODUCER_FENCED
    assert c.abort_timed_out() == 0


@pytest.mark.trio
async def test_expired_transactional_ids_are_removed(tmp_path: Path) -> None:
    env = Env(tmp_path)
    c = env.coord = env.new_coordinator(id_expiration_ms=1000)
    pid = (await c.init_producer_id("idle", 60000)).producer_id
    busy = (await c.init_producer_id("busy", 60000)).producer_id
    await c.add_partitions("busy", busy, 0, [("data", 0)])
    env.clock.advance(999)
    assert c.remove_expired() == 0
    env.clock.advance(1)
    assert c.remove_expired() == 1
    assert "idle" not in c.txns and c.txns["busy"].state is S.ONGOING
    assert env.states("idle")[-1] is S.DEAD  # a tombstone
    c = env.restart(id_expiration_ms=1000)
    assert "idle" not in c.txns and c.txns["busy"].producer_id == busy
    # The id starts over with a fresh producer id.
    r = await c.init_producer_id("idle", 60000)
    assert r.producer_id != pid and r.producer_epoch == 0
    env.replicas.close()


@pytest.mark.trio
@pytest.mark.parametrize("commit", [True, False])
async def test_load_completes_prepared_transactions(tmp_path: Path, commit: bool) -> None:
    env = Env(tmp_path)
    c = env.coord
    pid = (await c.init_producer_id("t", 60000)).producer_id
    ongoing = (await c.init_producer_id("o", 60000)).producer_id
    await c.add_partitions("t", pid, 0, [("data", 0), ("data", 1)])
    await c.add_partitions("o", ongoing, 0, [("data", 1)])
    for i in (0, 1):
        env.replicas.parts[("data", i)].log.append_as_leader(_txn_batch(pid, 0), leader_epoch=0)
    c.prepare_end(c.txns["t"], commit)  # crash before any marker
    assert env.markers("data", 0) == []
    c = env.restart()
    meta = c.txns["t"]
    assert meta.state is (S.COMPLETE_COMMIT if commit else S.COMPLETE_ABORT)
    assert meta.producer_id == pid and meta.producer_epoch == 0 and meta.partitions == set()
    kind = CONTROL_COMMIT if commit else CONTROL_ABORT
    assert env.markers("data", 0) == env.markers("data", 1) == [(pid, 0, kind)]
    # The markers carry the coordinator epoch: the txn partition's leader epoch.
    assert env.coordinator_epochs("data", 0) == [4]
    assert c.txns["o"].state is S.ONGOING and c.txns["o"].partitions == {("data", 1)}
    assert env.states("t")[-2:] == [S.PREPARE_COMMIT if commit else S.PREPARE_ABORT,
                                    S.COMPLETE_COMMIT if commit else S.COMPLETE_ABORT]
    # Loading again finds nothing left to do.
    c = env.restart()
    assert env.markers("data", 0) == [(pid, 0, kind)]
    # The loaded epoch goes on from where it was.
    r = await c.init_producer_id("t", 60000)
    assert (r.producer_id, r.producer_epoch) == (pid, 1)
    env.replicas.close()


@pytest.mark.trio
async def test_describe_and_list(env: Env) -> None:
    c = env.coord
    a = (await c.init_producer_id("a", 1000)).producer_id
    b = (await c.init_producer_id("b", 1000)).producer_id
    await c.add_partitions("a", a, 0, [("data", 0)])
    assert c.describe("zzz") == (ErrorCode.TRANSACTIONAL_ID_NOT_FOUND, None)
    code, meta = c.describe("a")
    assert code == ErrorCode.NONE and meta is not None and meta.state is S.ONGOING
    names = lambda ms: sorted(m.transactional_id for m in ms)  # noqa: E731
    assert names(c.list_transactions(set(), set(), -1)) == ["a", "b"]
    assert names(c.list_transactions({S.ONGOING}, set(), -1)) == ["a"]
    assert names(c.list_transactions({S.EMPTY, S.ONGOING}, {b}, -1)) == ["b"]
    assert names(c.list_transactions({S.COMPLETE_ABORT}, set(), -1)) == []
    env.clock.advance(500)
    assert names(c.list_transactions(set(), set(), 100)) == ["a"]   # running > 100 ms
    assert names(c.list_transactions(set(), set(), 10_000)) == []
    c.owned.clear()
    assert c.describe("a") == (ErrorCode.NOT_COORDINATOR, None)


def test_find_coordinator_creates_the_topic(tmp_path: Path) -> None:
    created: list[int] = []
    topic: dict[str, int] = {}

    def create() -> int:
        created.append(1)
        topic["n"] = 4
        return 4

    c = TransactionCoordinator(FakeReplicas(tmp_path), TxnConfig(),
                               topic_partitions=lambda: topic.get("n"), create_topic=create,
                               next_producer_id=lambda: 1, partition_exists=lambda t, i: False)
    c.load()
    assert c.owned == set()
    assert c.partition_for("x") == partition_for("x", 50)  # the configured count until then
    assert c.find_coordinator("x") == ErrorCode.NONE
    assert created == [1] and c.owned == {0, 1, 2, 3}
    assert c.partition_for("x") == partition_for("x", 4)
    assert c.find_coordinator("y") == ErrorCode.NONE and created == [1]

    def fail() -> int:
        raise KafkaError(ErrorCode.INVALID_REPLICATION_FACTOR)

    c = TransactionCoordinator(FakeReplicas(tmp_path), TxnConfig(),
                               topic_partitions=lambda: None, create_topic=fail,
                               next_producer_id=lambda: 1, partition_exists=lambda t, i: False)
    assert c.find_coordinator("x") == ErrorCode.COORDINATOR_NOT_AVAILABLE
