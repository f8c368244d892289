"""A real broker inside your test process: pytest fixtures, a trio context manager, faults.

Installed as a pytest plugin (entry point ``pytest11``). Fixtures:

* ``kafka_broker`` (session): a real pykbroker on ``127.0.0.1:0`` running its own trio loop
  on a background thread, with ephemeral storage; ``--kafka-bootstrap HOST:PORT`` points the
  same tests at an external Kafka instead.
* ``kafka_bootstrap_servers`` (session): its ``host:port``.
* ``kafka_topic``: a fresh topic per test; ``@pytest.mark.kafka_topic(partitions=3,
  configs={"cleanup.policy": "compact"})`` sets it up.

For trio code: ``async with pykbroker.testing.open_broker() as broker``.

A real multi-broker cluster (ZooKeeper, broker subprocesses, a fault proxy on every link):
the ``kafka_cluster`` fixture, ``@pytest.mark.kafka_cluster(brokers=3, racks=None,
broker_configs=None, fresh=False, **configs)``; ``open_cluster()`` / ``open_cluster_async()``
and ``KafkaCluster`` outside pytest (imported on first use, see
:mod:`pykbroker.cluster_testing`).

What a test file needs comes from here: ``from pykbroker.testing import ApiKey, ErrorCode``.
Faults are injected by API key, by wrapping the broker's handlers (never a hook on the
production path): ``kafka_broker.faults.fail_next(ApiKey.PRODUCE,
ErrorCode.NOT_LEADER_OR_FOLLOWER, count=2)``, ``add_latency``, ``drop_next``, and
``faults.count(ApiKey.PRODUCE)`` to assert on.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import struct
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pykbroker.cluster_testing.faults import Faults
from pykbroker.error_codes import ErrorCode
from pykbroker.protocol.api import ApiKey

if TYPE_CHECKING:
    from pykbroker.broker import Broker
    from pykbroker.cluster_testing import KafkaCluster, open_cluster, open_cluster_async

__all__ = [
    "TEST_DEFAULTS", "ApiKey", "ErrorCode", "ExternalKafka", "Faults", "KafkaBroker",
    "KafkaCluster", "create_topic", "open_broker", "open_cluster", "open_cluster_async",
]

# The cluster harness (kazoo, proxies) is imported only when one of these is used.
_CLUSTER_EXPORTS = ("KafkaCluster", "open_cluster", "open_cluster_async")


def __getattr__(name: str) -> Any:
    if name in _CLUSTER_EXPORTS:
        from pykbroker import cluster_testing

        return getattr(cluster_testing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# Test-friendly defaults (each can be overridden): no initial rebalance delay and a small
# offsets topic make group tests start at once.
TEST_DEFAULTS: dict[str, str] = {
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "1",
    "transaction.state.log.num.partitions": "1",
}


# -- faults: Faults and the error answers live in pykbroker.cluster_testing.faults (the
# cluster's proxies use them too) and are re-exported here -----------------------------------

# -- a tiny synchronous client (works against any Kafka) -------------------------------------

class _Client:
    def __init__(self, bootstrap: str) -> None:
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self._corr = itertools.count(1)

    def _read(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            buf += chunk
        return buf

    def send(self, api_key: int, version: int, body: Any) -> Any:
        from pykbroker.protocol.framing import decode_response, encode_request

        corr = next(self._corr)
        self.sock.sendall(encode_request(api_key, version, corr, "pykbroker-testing", body))
        (size,) = struct.unpack(">i", self._read(4))
        _, resp = decode_response(self._read(size), api_key, version)
        return resp

    def close(self) -> None:
        self.sock.close()


def create_topic(bootstrap: str, name: str, partitions: int = 1,
                 configs: Mapping[str, str] | None = None) -> None:
    """Create a topic on any Kafka broker (CreateTopics v4); raises on failure."""
    from pykbroker.protocol._generated.create_topics_request import (
        CreatableTopic,
        CreatableTopicConfig,
        CreateTopicsRequest,
    )

    client = _Client(bootstrap)
    try:
        topic = CreatableTopic(name, partitions, 1, configs=[
            CreatableTopicConfig(k, v) for k, v in (configs or {}).items()])
        resp = client.send(19, 4, CreateTopicsRequest([topic], timeout_ms=30_000))
        result = resp.topics[0]
        if result.error_code:
            raise RuntimeError(f"creating topic {name} failed: error {result.error_code} "
                               f"{result.error_message}")
    finally:
        client.close()


# -- brokers ---------------------------------------------------------------------------------

def _props(data_dir: Path, config: Mapping[str, object]) -> dict[str, object]:
    props: dict[str, object] = {**TEST_DEFAULTS, "listeners": "PLAINTEXT://127.0.0.1:0",
                                "log.dirs": str(data_dir)}
    props.update(config)
    return props


@asynccontextmanager
async def open_broker(data_dir: Path | None = None, **config: object) -> AsyncIterator[Broker]:
    """A broker in the current trio loop; config keys use ``_`` for ``.``
    (``open_broker(num_partitions=3)``) or pass a dict with ``**{"num.partitions": 3}``."""
    import trio

    from pykbroker.broker import Broker
    from pykbroker.config import BrokerConfig

    with tempfile.TemporaryDirectory(prefix="pykbroker-") as tmp:
        conf = {k.replace("_", ".") if "." not in k else k: v for k, v in config.items()}
        broker = Broker(BrokerConfig(_props(Path(data_dir or tmp), conf)))
        async with trio.open_nursery() as nursery:
            await nursery.start(broker.serve)
            try:
                yield broker
            finally:
                broker.shutdown()
                await broker.stopped.wait()


class KafkaBroker:
    """A real broker running its own trio loop on a background thread."""

    def __init__(self, data_dir: Path | None = None, **config: object) -> None:
        self._tmp = None if data_dir is not None else tempfile.TemporaryDirectory(
            prefix="pykbroker-")
        self.data_dir = Path(data_dir) if data_dir is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        self.config = config
        self.faults = Faults()
        self.broker: Broker | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._token: Any = None

    @property
    def bootstrap_servers(self) -> str:
        assert self.broker is not None, "not started"
        return f"127.0.0.1:{self.broker.bound_ports['PLAINTEXT']}"

    def start(self, timeout: float = 30.0) -> KafkaBroker:
        self._thread = threading.Thread(target=self._run, name="pykbroker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("pykbroker did not start in time")
        if self._error is not None:
            raise RuntimeError("pykbroker failed to start") from self._error
        return self

    def _run(self) -> None:
        import trio

        from pykbroker.broker import Broker
        from pykbroker.config import BrokerConfig

        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            self.broker = Broker(BrokerConfig(_props(self.data_dir, self.config)),
                                 wrap_handler=self.faults.wrap)
            async with trio.open_nursery() as nursery:
                await nursery.start(self.broker.serve)
                self._ready.set()
                await self.broker.stopped.wait()

        try:
            trio.run(main)
        except BaseException as exc:  # reported to start() or stop()
            self._error = exc
        finally:
            self._ready.set()

    def stop(self, timeout: float = 15.0) -> None:
        import trio

        if self._thread is None:
            return
        if self.broker is not None and self._token is not None and self._thread.is_alive():
            try:
                trio.from_thread.run_sync(self.broker.shutdown, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        self._thread.join(timeout)
        self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()

    def create_topic(self, name: str, partitions: int = 1,
                     configs: Mapping[str, str] | None = None) -> None:
        create_topic(self.bootstrap_servers, name, partitions, configs)

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ExternalKafka:
    """``--kafka-bootstrap``: the same fixtures against a broker started elsewhere."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap_servers = bootstrap

    @property
    def faults(self) -> Faults:
        raise RuntimeError("fault injection needs the in-process broker (no --kafka-bootstrap)")

    def create_topic(self, name: str, partitions: int = 1,
                     configs: Mapping[str, str] | None = None) -> None:
        create_topic(self.bootstrap_servers, name, partitions, configs)


# -- pytest plugin ---------------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--kafka-bootstrap", default=None, metavar="HOST:PORT",
                     help="run the kafka_* fixtures against this broker instead of an "
                          "in-process pykbroker")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "kafka_topic(partitions=1, configs=None): the kafka_topic fixture's setup")
    config.addinivalue_line(
        "markers", "kafka_cluster(brokers=3, racks=None, broker_configs=None, fresh=False, "
                   "**configs): the kafka_cluster fixture's brokers, racks and broker configs")


@pytest.fixture(scope="session")
def kafka_broker(request: pytest.FixtureRequest) -> Iterator[KafkaBroker | ExternalKafka]:
    external = request.config.getoption("--kafka-bootstrap")
    if external:
        yield ExternalKafka(external)
        return
    broker = KafkaBroker().start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap_servers(kafka_broker: KafkaBroker | ExternalKafka) -> str:
    return kafka_broker.bootstrap_servers


@pytest.fixture
def kafka_topic(kafka_broker: KafkaBroker | ExternalKafka, request: pytest.FixtureRequest
                ) -> str:
    marker = request.node.get_closest_marker("kafka_topic")
    kwargs = dict(marker.kwargs) if marker else {}
    name = f"test-{uuid.uuid4().hex[:16]}"
    kafka_broker.create_topic(name, int(kwargs.get("partitions", 1)),
                              kwargs.get("configs"))
    return name


# -- the multi-broker cluster ----------------------------------------------------------------

class _ClusterPool:
    """Clusters kept for the session, one per settings: a test whose faults were undone at
    teardown hands its cluster on to the next test asking for the same settings."""

    def __init__(self) -> None:
        self.clusters: dict[str, Any] = {}

    def close(self) -> None:
        for cluster in self.clusters.values():
            cluster.close()
        self.clusters.clear()


@pytest.fixture(scope="session")
def _kafka_cluster_pool() -> Iterator[_ClusterPool]:
    pool = _ClusterPool()
    try:
        yield pool
    finally:
        pool.close()


def _cluster_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("kafka_cluster"))):
        settings.update(marker.kwargs)  # the closest marker wins
    param = getattr(request, "param", None)
    if isinstance(param, int):
        settings["brokers"] = param
    elif isinstance(param, Mapping):
        settings.update(param)
    return settings


@pytest.fixture
def kafka_cluster(request: pytest.FixtureRequest, _kafka_cluster_pool: _ClusterPool) -> Any:
    """A running :class:`pykbroker.cluster_testing.KafkaCluster` (3 brokers unless the
    ``kafka_cluster`` marker says otherwise). Faults are undone at teardown (network healed,
    paused brokers resumed, per-API faults cleared, stopped or killed brokers started again)
    and the cluster is then reused by the next test with the same settings, so use fresh
    topic and group names; ``fresh=True`` gives a test a cluster of its own. A failed test's
    cluster is closed, after printing its brokers' log tails. Skips, saying how to install
    one, when no ZooKeeper is installed."""
    from pykbroker.cluster_testing import ClusterError, KafkaCluster
    from pykbroker.metadata.zk.server import ZooKeeperNotFoundError, find_zookeeper

    try:
        find_zookeeper()
    except ZooKeeperNotFoundError as exc:
        pytest.skip(f"kafka_cluster needs ZooKeeper: {exc}")
    settings = _cluster_settings(request)
    fresh = bool(settings.pop("fresh", False))
    brokers = int(settings.pop("brokers", 3))
    racks = settings.pop("racks", None)
    broker_configs = settings.pop("broker_configs", None)
    key = repr((brokers, racks, sorted((broker_configs or {}).items()), sorted(settings.items())))
    cluster = None if fresh else _kafka_cluster_pool.clusters.pop(key, None)
    if cluster is None:
        cluster = KafkaCluster(brokers, racks=racks, configs=settings,
                               broker_configs=broker_configs).start()
    keep = False
    try:
        yield cluster
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(f"\n===== kafka_cluster logs =====\n{cluster.log_tails()}")
        elif report is not None and not fresh:  # no report: interrupted
            try:
                cluster.reset_faults()
                for i in cluster.broker_ids:
                    if not cluster.brokers[i].running:
                        cluster.start_broker(i)
                cluster.wait_ready(30.0, cluster.broker_ids)
                keep = True
            except ClusterError as exc:
                print(f"kafka_cluster: not reused ({exc})")
    finally:
        if keep:
            _kafka_cluster_pool.clusters[key] = cluster
        else:
            with contextlib.suppress(Exception):
                cluster.reset_faults()
            cluster.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep
