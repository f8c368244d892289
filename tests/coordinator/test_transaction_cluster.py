"""The transaction coordinator in a cluster, on real partition logs: EndTxn answered after the
Prepare record, markers written locally and through WriteTxnMarkers (the real handler on a
second broker's logs), the Complete record only once every marker is written, and loading /
unloading a ``__transaction_state`` partition with leadership (a new coordinator epoch)."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing

from pykbroker.cluster.broker_client import BrokerConnectionError
from pykbroker.cluster.metadata_cache import Endpoint, LiveBroker, MetadataCache, PartitionState
from pykbroker.coordinator.group.records import partition_for
from pykbroker.coordinator.transaction import (
    TRANSACTION_STATE_TOPIC,
    TransactionCoordinator,
    TxnConfig,
    TxnState,
)
from pykbroker.coordinator.transaction.cluster import join_cluster
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.handlers.transactions import handle_write_txn_markers
from pykbroker.protocol._generated.write_txn_markers_request import WriteTxnMarkersRequest
from pykbroker.protocol.api import ApiKey
from pykbroker.records import CONTROL_ABORT, CONTROL_COMMIT, NewRecord, build_batch
from tests.coordinator.test_transaction_metadata import TXN_PARTITIONS, Env, FakeReplicas

S = TxnState
E = ErrorCode
LOCAL, REMOTE = ("data", 0), ("data", 2)


class RemoteBroker:
    """Broker 2: its own logs behind the real WriteTxnMarkers handler."""

    def __init__(self, root: Path) -> None:
        self.replicas = FakeReplicas(root)
        self.replicas.marker_listeners = []
        for i in (2, 3):
            self.replicas.add("data", i)
        self.reachable = True
        self.requests = 0

    async def request(self, api_key: int, api_version: int, body: Any,
                      timeout_s: float = 30.0) -> Any:
        assert api_key == ApiKey.WRITE_TXN_MARKERS
        if not self.reachable:
            raise BrokerConnectionError("refused")
        self.requests += 1
        body, _ = WriteTxnMarkersRequest.decode(body.to_bytes(api_version), 0, api_version)
        ctx = SimpleNamespace(services=SimpleNamespace(
            replicas=self.replicas, config={"request.timeout.ms": "30000"}),
            api_version=api_version, security=None)  # no authorizer: the broker's own link
        return await handle_write_txn_markers(ctx, body)  # type: ignore[arg-type]

    async def close(self) -> None:
        pass


class ClusterEnv:
    """Broker 1 (the coordinator, leading data-0/1 and __transaction_state) and broker 2."""

    def __init__(self, root: Path) -> None:
        self.local = Env(root / "b1")
        self.local.replicas.marker_listeners = []
        self.remote = RemoteBroker(root / "b2")
        self.cache = MetadataCache()
        data_id, txn_id = uuid.uuid4(), uuid.uuid4()
        self.cache.update(1, 1, [LiveBroker(b, (Endpoint("PLAINTEXT", "h", b),)) for b in (1, 2)],
                          [("data", data_id, i, PartitionState(1 if i < 2 else 2, 0, [], []))
                           for i in range(4)]
                          + [(TRANSACTION_STATE_TOPIC, txn_id, i, PartitionState(1, 4, [], []))
                             for i in range(TXN_PARTITIONS)])
        self.member = SimpleNamespace(
            cache=self.cache, listener="PLAINTEXT", node_id=1, leadership_listeners=[],
            leader_endpoint=lambda topic, index, listener: (1, "h", 1))
        pids = itertools.count(1000)
        self.coord = TransactionCoordinator(
            self.local.replicas, TxnConfig(max_timeout_ms=60000),
            topic_partitions=lambda: TXN_PARTITIONS, create_topic=lambda: TXN_PARTITIONS,
            next_producer_id=lambda: next(pids),
            partition_exists=lambda t, i: t == "data" and 0 <= i < 4,
            now_ms=self.local.clock)
        self.coord.load()
        join_cluster(self.coord, self.member, self.local.replicas,
                     verification_enabled=lambda: True,
                     connect=lambda host, port: self.remote)

    def remote_markers(self, index: int) -> list[tuple[int, int, int]]:
        env = self.local
        saved, env.replicas = env.replicas, self.remote.replicas
        try:
            return env.markers("data", index)
        finally:
            env.replicas = saved

    def remote_coordinator_epochs(self, index: int) -> list[int]:
        env = self.local
        saved, env.replicas = env.replicas, self.remote.replicas
        try:
            return env.coordinator_epochs("data", index)
        finally:
            env.replicas = saved

    async def open_txn(self, txn_id: str) -> int:
        c = self.coord
        pid = (await c.init_producer_id(txn_id, 60000)).producer_id
        assert await c.add_partitions(txn_id, pid, 0, [LOCAL, REMOTE]) == {
            LOCAL: E.NONE, REMOTE: E.NONE}
        batch = build_batch([NewRecord(b"k", b"v")], producer_id=pid, producer_epoch=0,
                            base_sequence=0, is_transactional=True)
        self.local.replicas.parts[LOCAL].log.append_as_leader(bytearray(batch), leader_epoch=0)
        self.remote.replicas.parts[REMOTE].log.append_as_leader(bytearray(batch),
                                                                leader_epoch=0)
        return pid

    def close(self) -> None:
        self.local.replicas.close()
        self.remote.replicas.close()


@pytest.fixture
def cenv(tmp_path: Path) -> Any:
    e = ClusterEnv(tmp_path)
    yield e
    e.close()


@pytest.mark.trio
@pytest.mark.parametrize("commit", [True, False])
async def test_end_txn_completes_once_the_remote_marker_is_written(
        cenv: ClusterEnv, commit: bool, autojump_clock: trio.testing.MockClock) -> None:
    c = cenv.coord
    pid = await cenv.open_txn("t")
    kind = CONTROL_COMMIT if commit else CONTROL_ABORT
    async with trio.open_nursery() as nursery:
        await nursery.start(c.run)
        cenv.remote.reachable = False
        assert await c.end_txn("t", pid, 0, commit) == E.NONE  # answered after Prepare
        assert c.txns["t"].state is (S.PREPARE_COMMIT if commit else S.PREPARE_ABORT)
        assert cenv.local.markers(*LOCAL) == [(pid, 0, kind)]  # written at once, locally
        # Until the remote marker is written the producer must wait.
        assert await c.add_partitions("t", pid, 0, [LOCAL]) == {
            LOCAL: E.CONCURRENT_TRANSACTIONS}
        assert await c.end_txn("t", pid, 0, commit) == E.CONCURRENT_TRANSACTIONS
        await trio.sleep(3)
        assert c.txns["t"].state is (S.PREPARE_COMMIT if commit else S.PREPARE_ABORT)
        assert c.markers is not None and c.markers.pending("t")
        cenv.remote.reachable = True
        await trio.sleep(2)
        assert c.txns["t"].state is (S.COMPLETE_COMMIT if commit else S.COMPLETE_ABORT)
        assert cenv.remote_markers(2) == [(pid, 0, kind)]
        assert cenv.remote_coordinator_epochs(2) == [4]  # the txn partition's leader epoch
        assert cenv.local.states("t")[-2:] == [
            S.PREPARE_COMMIT if commit else S.PREPARE_ABORT,
            S.COMPLETE_COMMIT if commit else S.COMPLETE_ABORT]
        assert await c.end_txn("t", pid, 0, commit) == E.NONE  # a retry after completion
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_leadership_unloads_and_loads_with_a_new_coordinator_epoch(
        cenv: ClusterEnv, autojump_clock: trio.testing.MockClock) -> None:
    c = cenv.coord
    (on_leadership,) = cenv.member.leadership_listeners
    pid = await cenv.open_txn("t")
    other = (await c.init_producer_id("o", 60000)).producer_id
    index = partition_for("t", TXN_PARTITIONS)
    async with trio.open_nursery() as nursery:
        await nursery.start(c.run)
        cenv.remote.reachable = False
        assert await c.end_txn("t", pid, 0, True) == E.NONE
        await trio.sleep(1)
        # Another broker becomes the coordinator: the transactions leave, markers stop.
        on_leadership(TRANSACTION_STATE_TOPIC, index, False)
        assert "t" not in c.txns and index not in c.owned
        assert c.markers is not None and not c.markers.pending("t")
        assert c.describe("t") == (E.NOT_COORDINATOR, None)
        if partition_for("o", TXN_PARTITIONS) != index:
            assert c.txns["o"].producer_id == other  # other partitions stay
        cenv.remote.reachable = True
        await trio.sleep(2)
        assert cenv.remote_markers(2) == [] and cenv.local.states("t")[-1] is S.PREPARE_COMMIT
        # Leadership comes back with a new leader epoch: the load completes the
        # transaction left in PrepareCommit, markers carrying the new coordinator epoch.
        cenv.local.replicas.parts[(TRANSACTION_STATE_TOPIC, index)].leader_epoch = 9
        on_leadership(TRANSACTION_STATE_TOPIC, index, True)
        assert index in c.owned and c.txns["t"].state is S.PREPARE_COMMIT
        await trio.sleep(1)
        assert c.txns["t"].state is S.COMPLETE_COMMIT
        assert cenv.remote_markers(2) == [(pid, 0, CONTROL_COMMIT)]
        assert cenv.remote_coordinator_epochs(2) == [9]
        # The local partition got its marker twice (before and after the move): harmless,
        # as Kafka's re-sent markers are.
        assert cenv.local.markers(*LOCAL) == [(pid, 0, CONTROL_COMMIT)] * 2
        on_leadership("data", 0, False)  # other topics are not the coordinator's business
        assert index in c.owned
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_complete_is_not_written_by_a_coordinator_that_moved(
        cenv: ClusterEnv, autojump_clock: trio.testing.MockClock) -> None:
    """Markers answered after leadership moved away and back (a new epoch) do not complete
    the transaction twice: only the load's own markers do."""
    c = cenv.coord
    pid = await cenv.open_txn("t")
    async with trio.open_nursery() as nursery:
        await nursery.start(c.run)
        cenv.remote.reachable = False
        assert await c.end_txn("t", pid, 0, False) == E.NONE
        prepared = c.txns["t"]
        # The coordinator epoch changes under the channel (a new leader epoch, reloaded).
        index = partition_for("t", TXN_PARTITIONS)
        cenv.local.replicas.parts[(TRANSACTION_STATE_TOPIC, index)].leader_epoch = 6
        c._markers_written(prepared, False, 4)
        assert c.txns["t"] is prepared and cenv.local.states("t")[-1] is S.PREPARE_ABORT
        cenv.remote.reachable = True
        await trio.sleep(2)
        # The channel's own entry (epoch 4) saw the epoch change too and left completion to
        # whoever loads the partition next.
        assert cenv.local.states("t")[-1] is S.PREPARE_ABORT
        assert cenv.remote_coordinator_epochs(2) == [4]
        c.load_partition(index)
        await trio.sleep(1)
        assert c.txns["t"].state is S.COMPLETE_ABORT
        assert cenv.remote_coordinator_epochs(2) == [4, 6]
        nursery.cancel_scope.cancel()


def test_join_cluster_wires_verification(cenv: ClusterEnv) -> None:
    replicas = cenv.local.replicas
    assert replicas.verify_transaction == cenv.coord.verifier.check_produce  # type: ignore[union-attr]
    assert replicas.marker_listeners == [cenv.coord.verifier.on_marker]  # type: ignore[union-attr]


class Lagging:
    """Followers that have not fetched yet: a partition's high watermark stays ``lag``
    records behind its log end until they do (ReplicaManager.wait_replicated's view)."""

    def __init__(self, replicas: FakeReplicas) -> None:
        self.lag: dict[tuple[str, int], int] = {}
        self.fetched = trio.Event()
        for key, part in replicas.parts.items():
            part.__class__ = type("LaggingPart", (type(part),), {
                "high_watermark": property(
                    lambda p, key=key: p.log.log_end_offset - self.lag.get(key, 0))})
        replicas.wait_replicated = self.wait_replicated  # type: ignore[attr-defined]

    def catch_up(self) -> None:
        self.lag.clear()
        self.fetched.set()
        self.fetched = trio.Event()

    async def wait_replicated(self, part: Any, offset: int, timeout_s: float) -> None:
        with trio.move_on_after(timeout_s):
            while part.high_watermark < offset:
                await self.fetched.wait()
            return
        raise KafkaError(E.REQUEST_TIMED_OUT)


@pytest.mark.trio
async def test_markers_wait_for_the_prepare_record_to_be_replicated(
        cenv: ClusterEnv, autojump_clock: trio.testing.MockClock) -> None:
    """As Kafka appends to __transaction_state with acks=-1 and sends markers only then:
    no marker before the ISR holds PrepareCommit; EndTxn answers COORDINATOR_NOT_AVAILABLE
    after request.timeout.ms, and the transaction still completes once the record is
    replicated. A remote leader answers WriteTxnMarkers only once its ISR holds them."""
    c = cenv.coord
    pid = await cenv.open_txn("t")
    txn_part = (TRANSACTION_STATE_TOPIC, partition_for("t", TXN_PARTITIONS))
    local_lag, remote_lag = Lagging(cenv.local.replicas), Lagging(cenv.remote.replicas)
    local_lag.lag[txn_part] = 1  # every record the coordinator writes from now on
    remote_lag.lag[REMOTE] = 1
    async with trio.open_nursery() as nursery:
        await nursery.start(c.run)
        began = trio.current_time()
        assert await c.end_txn("t", pid, 0, True) == E.COORDINATOR_NOT_AVAILABLE
        assert trio.current_time() - began == pytest.approx(30, abs=0.1)  # request.timeout.ms
        assert c.txns["t"].state is S.PREPARE_COMMIT
        assert cenv.local.markers(*LOCAL) == [] and cenv.remote.requests == 0
        assert await c.end_txn("t", pid, 0, True) == E.CONCURRENT_TRANSACTIONS  # retried
        local_lag.catch_up()
        await trio.sleep(1)
        assert cenv.local.markers(*LOCAL) == [(pid, 0, CONTROL_COMMIT)]
        assert cenv.remote_markers(2) == [(pid, 0, CONTROL_COMMIT)]  # written, not held
        assert c.txns["t"].state is S.PREPARE_COMMIT
        remote_lag.catch_up()
        await trio.sleep(1)
        assert c.txns["t"].state is S.COMPLETE_COMMIT
        assert cenv.remote.requests == 1
        nursery.cancel_scope.cancel()


# -- WriteTxnMarkers on a cluster member's replica manager -----------------------------------


def _markers(topic: str, parts: list[int], coordinator_epoch: int, pid: int = 77
             ) -> WriteTxnMarkersRequest:
    from pykbroker.protocol._generated.write_txn_markers_request import (
        WritableTxnMarker,
        WritableTxnMarkerTopic,
    )

    return WriteTxnMarkersRequest([WritableTxnMarker(
        producer_id=pid, producer_epoch=0, transaction_result=True,
        topics=[WritableTxnMarkerTopic(topic, parts)], coordinator_epoch=coordinator_epoch)])


def _codes(response: Any) -> dict[int, ErrorCode]:
    return {p.partition_index: ErrorCode(p.error_code) for m in response.markers
            for t in m.topics for p in t.partitions}


@pytest.mark.trio
async def test_write_txn_markers_as_a_cluster_member(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """Only the leader writes markers; a marker from an older coordinator epoch is fenced;
    the answer waits until the ISR holds the marker (acks=-1), up to request.timeout.ms."""
    from pykbroker.cluster.replica_manager import ReplicaManager
    from pykbroker.cluster.topics import TopicInfo
    from pykbroker.log import LogConfig, LogManager

    replicas = ReplicaManager(LogManager([tmp_path], LogConfig.from_mapping({})),
                              lambda topic: LogConfig.from_mapping({}))
    replicas.exists_in_cluster = lambda topic, index: topic == "t"
    topic = TopicInfo("t", uuid.uuid4(), {i: [1, 2] for i in range(4)})
    replicas.make_leader_or_follower(topic, 0, 1, 3, [1], [1, 2], 0, 1)  # ISR: only us
    replicas.make_leader_or_follower(topic, 1, 2, 3, [1, 2], [1, 2], 0, 1)  # a follower
    lagging = replicas.make_leader_or_follower(topic, 3, 1, 3, [1, 2], [1, 2], 0, 1)
    ctx: Any = SimpleNamespace(services=SimpleNamespace(
        replicas=replicas, config={"request.timeout.ms": "2000"}), api_version=1, security=None)

    response = await handle_write_txn_markers(ctx, _markers("t", [0, 1, 2], 5))
    assert _codes(response) == {0: E.NONE, 1: E.NOT_LEADER_OR_FOLLOWER,
                                2: E.NOT_LEADER_OR_FOLLOWER}  # 2: led by a broker elsewhere
    response = await handle_write_txn_markers(ctx, _markers("u", [0], 5))
    assert _codes(response) == {0: E.UNKNOWN_TOPIC_OR_PARTITION}
    response = await handle_write_txn_markers(ctx, _markers("t", [0], 4))  # a zombie
    assert _codes(response) == {0: E.TRANSACTION_COORDINATOR_FENCED}
    assert replicas.partition("t", 0).log_end_offset == 1

    began = trio.current_time()
    response = await handle_write_txn_markers(ctx, _markers("t", [3], 5))
    assert _codes(response) == {3: E.REQUEST_TIMED_OUT}  # broker 2 never fetched it
    assert trio.current_time() - began == pytest.approx(2.0)
    async with trio.open_nursery() as nursery:
        out: list[Any] = []

        async def write() -> None:
            out.append(await handle_write_txn_markers(ctx, _markers("t", [3], 5)))

        nursery.start_soon(write)
        await trio.sleep(0.5)
        assert out == []
        lagging.follower_state(2).on_fetch(lagging.log_end_offset, lagging.log_end_offset, 0)
        lagging.wake()
    assert _codes(out[0]) == {3: E.NONE}
    replicas.log_manager.close()
