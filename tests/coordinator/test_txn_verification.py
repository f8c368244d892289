"""Produce-time transaction verification in a cluster (KIP-890 part 1, Kafka's
AddPartitionsToTxnManager): AddPartitionsToTxn v4 verify_only to the coordinator, guards per
(producer id, partition) cleared by markers, no question while a transaction is open on the
partition, one question for concurrent requests, and Kafka's errors on produce."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing

from pykbroker.cluster.broker_client import BrokerConnectionError
from pykbroker.cluster.txn_verification import TxnVerifier, produce_error
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.log.producer_state import ProducerEntry
from pykbroker.protocol._generated.add_partitions_to_txn_request import (
    AddPartitionsToTxnRequest,
)
from pykbroker.protocol._generated.add_partitions_to_txn_response import (
    AddPartitionsToTxnPartitionResult,
    AddPartitionsToTxnResponse,
    AddPartitionsToTxnResult,
    AddPartitionsToTxnTopicResult,
)
from pykbroker.protocol.api import ApiKey

E = ErrorCode
PID, EPOCH = 42, 3


def part(topic: str, index: int, leader: bool = True) -> Any:
    return SimpleNamespace(topic=topic, index=index, is_leader=leader, log=SimpleNamespace(
        producer_state=SimpleNamespace(producers={})))


class Coordinator:
    """The remote transaction coordinator's AddPartitionsToTxn answers."""

    def __init__(self) -> None:
        self.in_txn: set[tuple[str, int]] = set()
        self.code: ErrorCode | None = None  # for every partition when set
        self.top_level = 0
        self.fail: Exception | None = None
        self.asked: list[list[tuple[str, int]]] = []
        self.delay = 0.01
        self.gate: trio.Event | None = None  # when set: answer once it is, not after delay
        self.closed = 0

    async def request(self, api_key: int, api_version: int, body: Any,
                      timeout_s: float = 30.0) -> Any:
        assert api_key == ApiKey.ADD_PARTITIONS_TO_TXN and api_version == 4
        body, _ = AddPartitionsToTxnRequest.decode(body.to_bytes(4), 0, 4)
        (txn,) = body.transactions
        assert txn.verify_only and (txn.producer_id, txn.producer_epoch) == (PID, EPOCH)
        tps = [(t.name, p) for t in txn.topics for p in t.partitions]
        self.asked.append(tps)
        if self.gate is not None:
            await self.gate.wait()
        else:
            await trio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return AddPartitionsToTxnResponse(
            throttle_time_ms=0, error_code=self.top_level, results_by_transaction=[
                AddPartitionsToTxnResult(txn.transactional_id, [AddPartitionsToTxnTopicResult(
                    t.name, [AddPartitionsToTxnPartitionResult(p, int(
                        self.code if self.code is not None
                        else E.NONE if (t.name, p) in self.in_txn else E.INVALID_TXN_STATE))
                        for p in t.partitions]) for t in txn.topics])])

    async def close(self) -> None:
        self.closed += 1


class Env:
    def __init__(self, coordinator_node: int | None = 2) -> None:
        self.parts = {(p.topic, p.index): p for p in (part("a", 0), part("a", 1),
                                                      part("b", 0, leader=False))}
        self.remote = Coordinator()
        self.local_calls: list[list[tuple[str, int]]] = []
        self.node = coordinator_node
        self.enabled = True
        self.verifier = TxnVerifier(
            1, SimpleNamespace(partitions=self.parts),
            lambda txn_id: None if self.node is None else (self.node, "h", 9092),
            self.local_verify, enabled=lambda: self.enabled,
            connect=lambda host, port: self.remote)

    def local_verify(self, txn_id: str, pid: int, epoch: int, tps: list[tuple[str, int]]
                     ) -> dict[tuple[str, int], ErrorCode]:
        self.local_calls.append(tps)
        return {tp: E.PRODUCER_FENCED for tp in tps}

    def batch(self, epoch: int = EPOCH) -> Any:
        return SimpleNamespace(producer_id=PID, producer_epoch=epoch)

    def check(self, topic: str, index: int, epoch: int = EPOCH) -> ErrorCode:
        try:
            self.verifier.check_produce("txn", self.batch(epoch), self.parts[(topic, index)])
        except KafkaError as exc:
            return exc.error_code
        return E.NONE


@pytest.mark.trio
async def test_verified_partitions_pass_until_a_marker() -> None:
    env = Env()
    env.remote.in_txn = {("a", 0)}
    assert env.check("a", 0) == E.INVALID_TXN_STATE  # never verified
    results = await env.verifier.verify("txn", PID, EPOCH, [("a", 0), ("a", 1), ("b", 0)])
    assert results == {("a", 0): E.NONE, ("a", 1): E.INVALID_TXN_STATE}
    assert env.remote.asked == [[("a", 0), ("a", 1)]]  # not about a partition led elsewhere
    assert env.check("a", 0) == E.NONE
    assert env.check("a", 0, EPOCH + 1) == E.INVALID_TXN_STATE  # another epoch
    assert env.check("a", 1) == E.INVALID_TXN_STATE
    # Verified: no second question.
    assert await env.verifier.verify("txn", PID, EPOCH, [("a", 0)]) == {}
    assert len(env.remote.asked) == 1
    # A leadership change forgets the guards (markers may have come as a follower).
    env.verifier.forget_partition("a", 1)
    assert env.check("a", 0) == E.NONE
    env.verifier.forget_partition("a", 0)
    assert env.check("a", 0) == E.INVALID_TXN_STATE
    await env.verifier.verify("txn", PID, EPOCH, [("a", 0)])
    assert env.check("a", 0) == E.NONE and len(env.remote.asked) == 2
    # The marker ends the transaction here: the next batch needs a new verification.
    env.verifier.on_marker(env.parts[("a", 0)], PID, True)
    assert env.check("a", 0) == E.INVALID_TXN_STATE
    assert env.verifier.check_code("txn", PID, EPOCH, ("a", 0)) == E.INVALID_TXN_STATE


@pytest.mark.trio
async def test_an_open_transaction_on_the_partition_needs_no_question() -> None:
    env = Env()
    producers = env.parts[("a", 0)].log.producer_state.producers
    producers[PID] = ProducerEntry(PID, EPOCH, current_txn_first_offset=17)
    assert env.check("a", 0) == E.NONE
    assert await env.verifier.verify("txn", PID, EPOCH, [("a", 0)]) == {}
    assert env.remote.asked == []
    producers[PID] = ProducerEntry(PID, EPOCH - 1, current_txn_first_offset=17)
    assert env.check("a", 0) == E.INVALID_TXN_STATE  # not at this epoch


@pytest.mark.trio
async def test_a_marker_during_the_question_fails_the_verification() -> None:
    env = Env()
    env.remote.in_txn = {("a", 0)}
    async with trio.open_nursery() as nursery:
        results: dict[Any, Any] = {}

        async def verify() -> None:
            results.update(await env.verifier.verify("txn", PID, EPOCH, [("a", 0)]))

        env.remote.gate = trio.Event()
        nursery.start_soon(verify)
        await trio.testing.wait_all_tasks_blocked()  # the question is out, unanswered
        assert env.remote.asked == [[("a", 0)]]
        env.verifier.on_marker(env.parts[("a", 0)], PID, False)  # the txn was aborted
        env.remote.gate.set()
    assert results == {("a", 0): E.INVALID_TXN_STATE}
    assert env.check("a", 0) == E.INVALID_TXN_STATE


@pytest.mark.trio
async def test_concurrent_requests_share_one_question() -> None:
    env = Env()
    env.remote.in_txn = {("a", 0), ("a", 1)}
    out: list[dict[Any, Any]] = []
    async with trio.open_nursery() as nursery:
        env.remote.gate = trio.Event()
        nursery.start_soon(_collect, env, [("a", 0)], out)
        await trio.testing.wait_all_tasks_blocked()  # the first is asking when the second comes
        nursery.start_soon(_collect, env, [("a", 0), ("a", 1)], out)
        await trio.testing.wait_all_tasks_blocked()
        env.remote.gate.set()
    assert env.remote.asked == [[("a", 0)], [("a", 1)]]
    assert sorted(map(sorted, (r.items() for r in out))) == [
        [(("a", 0), E.NONE)], [(("a", 0), E.NONE), (("a", 1), E.NONE)]]


async def _collect(env: Env, tps: list[tuple[str, int]], out: list[dict[Any, Any]]) -> None:
    out.append(await env.verifier.verify("txn", PID, EPOCH, tps))


@pytest.mark.trio
@pytest.mark.parametrize(("answer", "produced"), [
    (E.PRODUCER_FENCED, E.INVALID_PRODUCER_EPOCH),
    (E.TRANSACTION_ABORTABLE, E.INVALID_TXN_STATE),
    (E.INVALID_PRODUCER_ID_MAPPING, E.INVALID_PRODUCER_ID_MAPPING),
    (E.CONCURRENT_TRANSACTIONS, E.NOT_ENOUGH_REPLICAS),
    (E.NOT_COORDINATOR, E.NOT_ENOUGH_REPLICAS),
    (E.COORDINATOR_LOAD_IN_PROGRESS, E.NOT_ENOUGH_REPLICAS),
])
async def test_coordinator_errors_reach_the_producer_as_kafka_answers(
        answer: ErrorCode, produced: ErrorCode) -> None:
    env = Env()
    env.remote.code = answer
    await env.verifier.verify("txn", PID, EPOCH, [("a", 0)])
    assert env.check("a", 0) == produced
    # Failures are not cached: the next request asks again.
    env.remote.code = None
    env.remote.in_txn = {("a", 0)}
    await env.verifier.verify("txn", PID, EPOCH, [("a", 0)])
    assert env.check("a", 0) == E.NONE


@pytest.mark.trio
async def test_unreachable_or_unknown_coordinators() -> None:
    env = Env()
    env.remote.fail = BrokerConnectionError("refused")
    assert await env.verifier.verify("txn", PID, EPOCH, [("a", 0)]) == {
        ("a", 0): E.NETWORK_EXCEPTION}
    assert env.check("a", 0) == E.NOT_ENOUGH_REPLICAS
    assert env.verifier.check_code("txn", PID, EPOCH, ("a", 0)) == E.NETWORK_EXCEPTION
    env.remote.fail = None
    env.remote.top_level = int(E.CLUSTER_AUTHORIZATION_FAILED)
    await env.verifier.verify("txn", PID, EPOCH, [("a", 0)])
    assert env.check("a", 0) == E.INVALID_TXN_STATE
    env.node = None  # __transaction_state unknown or its leader not alive
    await env.verifier.verify("txn", PID, EPOCH, [("a", 0)])
    assert env.check("a", 0) == E.NOT_ENOUGH_REPLICAS
    await env.verifier.aclose()


@pytest.mark.trio
async def test_a_local_coordinator_is_asked_directly_and_disabled_means_no_check() -> None:
    env = Env(coordinator_node=1)
    assert await env.verifier.verify("txn", PID, EPOCH, [("a", 0)]) == {
        ("a", 0): E.INVALID_PRODUCER_EPOCH}
    assert env.local_calls == [[("a", 0)]] and env.remote.asked == []
    env.enabled = False  # transaction.partition.verification.enable=false
    assert await env.verifier.verify("txn", PID, EPOCH, [("a", 1)]) == {}
    assert env.check("a", 1) == E.NONE


def test_produce_error_mapping() -> None:
    assert produce_error(E.NETWORK_EXCEPTION) == E.NOT_ENOUGH_REPLICAS
    assert produce_error(E.COORDINATOR_NOT_AVAILABLE) == E.NOT_ENOUGH_REPLICAS
    assert produce_error(E.INVALID_TXN_STATE) == E.INVALID_TXN_STATE
