"""A multi-broker pykbroker cluster for compat tests: one real ZooKeeper, N broker processes.

Each broker is ``python -m pykbroker`` with ``broker.id=i`` (1..N), its own loopback port and
data directory, and ``zookeeper.connect=<zk>/<chroot unique to the cluster>``; restarts keep
the port and the data. The ZooKeeper is the test session's ``zookeeper_server`` (from
tests/zk_fixtures.py, loaded below as a pytest plugin), so tests/ and compat_tests/ share one.

Fixture ``cluster`` (function scope, three brokers unless told otherwise)::

    @pytest.mark.cluster_config(brokers=2, **{"auto.create.topics.enable": "false"})
    def test_x(cluster): ...

    @pytest.mark.parametrize("cluster", [1, {"brokers": 2, "num.partitions": "3"}],
                             indirect=True)
    def test_y(cluster): ...

Cleanup always runs: every broker is killed, the chroot and the temp directory removed; when
the test failed, the tail of every broker's log is printed first.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import pytest
from confluent_kafka.admin import AdminClient
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from compat_tests.broker_process import READY_MARK
from pykbroker.free_ports import free_port
from pykbroker.metadata.zk.server import ZooKeeperServer

# The session's ZooKeeper fixture (skips with the install hint when ZooKeeper is absent).
pytest_plugins = ["tests.zk_fixtures"]

__all__ = ["Cluster", "ClusterBroker", "ClusterView", "PartitionView", "cluster"]

T = TypeVar("T")

DEFAULT_SIZE = 3
SESSION_TIMEOUT_MS = 6000
START_TIMEOUT = 30.0
LOG_TAIL_CHARS = 4000
# librdkafka's lines (connection refused by a killed broker...) go to logging, not stderr.
RDKAFKA_LOG = logging.getLogger("compat.rdkafka")


class BrokerStartError(RuntimeError):
    """A broker exited or did not print its ready line in time; the message has its log tail."""


class PartitionView(NamedTuple):
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


@dataclass(frozen=True)
class ClusterView:
    """One broker's answer to Metadata, normalized so that answers compare with ``==``.

    ``origin`` (the broker that answered) takes no part in comparisons.
    """

    brokers: dict[int, str]  # id -> "host:port"
    controller_id: int
    topics: dict[str, dict[int, PartitionView]]
    errors: dict[str, str]  # "topic" or "topic/partition" -> error name, only when not none
    origin: int = field(default=-1, compare=False)

    def leaders(self, topic: str) -> dict[int, int]:
        return {p: v.leader for p, v in self.topics[topic].items()}


def _from_confluent(md: Any, origin: int) -> ClusterView:
    topics: dict[str, dict[int, PartitionView]] = {}
    errors: dict[str, str] = {}
    for name, tmd in md.topics.items():
        if tmd.error is not None:
            errors[name] = tmd.error.name()
        parts: dict[int, PartitionView] = {}
        for pid, pmd in tmd.partitions.items():
            parts[pid] = PartitionView(pmd.leader, tuple(pmd.replicas), tuple(pmd.isrs))
            if pmd.error is not None:
                errors[f"{name}/{pid}"] = pmd.error.name()
        topics[name] = parts
    brokers = {bid: f"{b.host}:{b.port}" for bid, b in md.brokers.items()}
    return ClusterView(brokers, md.controller_id, topics, errors, origin)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


class ClusterBroker:
    """One broker process of a cluster; its port and data directory survive restarts."""

    def __init__(self, broker_id: int, directory: Path, port: int,
                 overrides: Mapping[str, str]) -> None:
        self.broker_id = broker_id
        self.data_dir = directory / f"broker-{broker_id}-data"
        self.log_path = directory / f"broker-{broker_id}.log"
        self.port = port
        self.overrides = dict(overrides)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.ever_ready = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        configs = {"broker.id": str(self.broker_id),
                   "listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
                   "log.dirs": str(self.data_dir), **self.overrides}
        args = [sys.executable, "-m", "pykbroker"]
        for key, value in configs.items():
            args += ["--override", f"{key}={value}"]
        return args

    def spawn(self) -> None:
        if self.running:
            raise RuntimeError(f"broker {self.broker_id} is already running")
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log)

    def current_log(self) -> str:
        """The log of the latest start only."""
        return self.log().rsplit("===== start #", 1)[-1]

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while READY_MARK not in self.current_log():
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise BrokerStartError(f"broker {self.broker_id} exited with {code} during "
                                       f"start-up:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise BrokerStartError(f"broker {self.broker_id} not ready after {timeout} s:"
                                       f"\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, sig: int, timeout: float) -> int | None:
        """Send ``sig`` and reap (SIGKILL after ``timeout``); the exit code, None if not
        running."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise
        return proc.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        return self.log()[-chars:]


_live_clusters: weakref.WeakSet[Cluster] = weakref.WeakSet()


@atexit.register
def _close_live_clusters() -> None:
    """A run that stops between start and close still leaves no broker behind."""
    for live in list(_live_clusters):
        live.close()


class Cluster:
    """ZooKeeper (the given server, a fresh chroot) and brokers 1..size; a context manager."""

    def __init__(self, zookeeper: ZooKeeperServer, size: int = DEFAULT_SIZE, *,
                 overrides: Mapping[str, str] | None = None,
                 session_timeout_ms: int = SESSION_TIMEOUT_MS) -> None:
        self.zookeeper_server = zookeeper
        self.chroot = f"/pykbroker-cluster-{uuid.uuid4().hex[:12]}"
        self.zookeeper_connect = f"{zookeeper.hosts}{self.chroot}"
        self.session_timeout_ms = session_timeout_ms
        self.directory = Path(tempfile.mkdtemp(prefix="pykbroker-cluster-"))
        self._zk: KazooClient | None = None
        configs = {"zookeeper.connect": self.zookeeper_connect,
                   "zookeeper.session.timeout.ms": str(session_timeout_ms),
                   "group.initial.rebalance.delay.ms": "0",
                   **{k: str(v) for k, v in (overrides or {}).items()}}
        ports: set[int] = set()
        while len(ports) < size:
            ports.add(free_port())
        self.brokers = {i: ClusterBroker(i, self.directory, port, configs)
                        for i, port in enumerate(sorted(ports), start=1)}
        _live_clusters.add(self)

    def __enter__(self) -> Cluster:
        try:
            self.start_all()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- processes --------------------------------------------------------------------------

    @property
    def broker_ids(self) -> list[int]:
        return sorted(self.brokers)

    def running_ids(self) -> list[int]:
        return [i for i in self.broker_ids if self.brokers[i].running]

    def start_all(self, timeout: float = START_TIMEOUT) -> None:
        """Start every broker at once, then wait for each ready line."""
        for i in self.broker_ids:
            if not self.brokers[i].running:
                self.brokers[i].spawn()
        for i in self.broker_ids:
            self._wait_ready(i, timeout)

    def _wait_ready(self, i: int, timeout: float) -> None:
        broker = self.brokers[i]
        for attempt in range(3):
            try:
                broker.wait_ready(timeout)
                broker.ever_ready = True
                return
            except BrokerStartError as exc:
                # The free port was taken by another process before the first start: retry
                # on another one (restarts keep theirs).
                if attempt == 2 or broker.ever_ready or "in use" not in str(exc):
                    raise
                broker.port = free_port()
                broker.spawn()

    def start(self, i: int, timeout: float = START_TIMEOUT) -> None:
        """(Re)start broker ``i`` with its port and data directory."""
        self.brokers[i].spawn()
        self._wait_ready(i, timeout)

    def kill(self, i: int) -> int | None:
        """SIGKILL broker ``i`` and reap it."""
        return self.brokers[i].stop(signal.SIGKILL, 10.0)

    def terminate(self, i: int, timeout: float = 30.0) -> int | None:
        """SIGTERM broker ``i`` and wait for its exit (SIGKILL and raise after ``timeout``)."""
        return self.brokers[i].stop(signal.SIGTERM, timeout)

    def bootstrap(self, i: int) -> str:
        return self.brokers[i].bootstrap

    def bootstrap_all(self, ids: Iterable[int] | None = None) -> str:
        return ",".join(self.bootstrap(i) for i in (self.broker_ids if ids is None else ids))

    def log_tails(self, chars: int = LOG_TAIL_CHARS) -> str:
        return "\n".join(f"----- broker {i} ({self.brokers[i].log_path}) -----\n"
                         f"{self.brokers[i].log_tail(chars)}" for i in self.broker_ids)

    def close(self) -> None:
        """Kill every broker, remove the chroot and every file; safe to call twice."""
        for broker in self.brokers.values():
            with contextlib.suppress(Exception):
                broker.stop(signal.SIGKILL, 10.0)
        if self._zk is not None:
            with contextlib.suppress(Exception):
                self._zk.stop()
                self._zk.close()
            self._zk = None
        if self.zookeeper_server.port:
            root = KazooClient(hosts=self.zookeeper_server.hosts)
            with contextlib.suppress(Exception):
                root.start(timeout=5)
                root.delete(self.chroot, recursive=True)
            with contextlib.suppress(Exception):
                root.stop()
                root.close()
        shutil.rmtree(self.directory, ignore_errors=True)
        _live_clusters.discard(self)

    # -- observation ------------------------------------------------------------------------

    @staticmethod
    def wait_until(predicate: Callable[[], T], timeout: float, *, interval: float = 0.1,
                   what: str = "") -> T:
        """Call ``predicate`` until it returns something truthy and return that; exceptions
        count as "not yet". On timeout, AssertionError with the last value or exception."""
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            try:
                value = predicate()
                if value:
                    return value
                last = value
            except Exception as exc:  # retried; the last one is reported on timeout
                last = exc
            if time.monotonic() > deadline:
                raise AssertionError(f"{what or repr(predicate)} not true after {timeout} s; "
                                     f"last: {last!r}")
            time.sleep(interval)

    @property
    def zk(self) -> KazooClient:
        """A kazoo client inside the cluster's chroot (started on first use)."""
        if self._zk is None:
            client = KazooClient(hosts=self.zookeeper_connect)
            with warnings.catch_warnings():  # until a broker created it
                warnings.filterwarnings("ignore", "No chroot path exists")
                client.start(timeout=10)
            self._zk = client
        return self._zk

    def controller_id(self) -> int | None:
        """``brokerid`` of ZooKeeper's /controller, None while there is none."""
        try:
            data, _ = self.zk.get("/controller")
        except NoNodeError:
            return None
        return int(json.loads(data)["brokerid"])

    def registered_ids(self) -> list[int]:
        """The children of /brokers/ids (ephemeral broker registrations)."""
        try:
            return sorted(int(c) for c in self.zk.get_children("/brokers/ids"))
        except NoNodeError:
            return []

    def metadata(self, i: int, timeout: float = 10.0, attempts: int = 20) -> ClusterView:
        """Metadata for all topics as broker ``i`` answers it (confluent-kafka list_topics).

        librdkafka sends list_topics to any broker it has learnt of, not always the bootstrap
        one, so a fresh client asks again until broker ``i`` answered.
        """
        for _ in range(attempts):
            admin = AdminClient({"bootstrap.servers": self.bootstrap(i),
                                 "allow.auto.create.topics": False,
                                 "socket.timeout.ms": int(timeout * 1000),
                                 "topic.metadata.refresh.interval.ms": -1,
                                 "logger": RDKAFKA_LOG})
            md = admin.list_topics(timeout=timeout)
            # "host:port/<id>", or "host:port/bootstrap" before the client learnt the id.
            if md.orig_broker_name.split("/")[0] == self.bootstrap(i):
                return _from_confluent(md, i)
        raise AssertionError(f"list_topics answered by {md.orig_broker_name} {attempts} times, "
                             f"never by broker {i} at {self.bootstrap(i)}")

    def api_versions(self, i: int, timeout: float = 5.0) -> dict[int, tuple[int, int]]:
        """ApiVersions v0 sent to broker ``i``: {api key: (min version, max version)}."""
        client_id = b"cluster-harness"
        body = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
        with socket.create_connection(("127.0.0.1", self.brokers[i].port), timeout) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            data = _recv_exact(sock, size)
        correlation_id, error_code, count = struct.unpack_from(">ihi", data)
        if correlation_id != 7 or error_code != 0:
            raise AssertionError(f"ApiVersions: correlation {correlation_id}, error {error_code}")
        versions = {}
        for n in range(count):
            key, low, high = struct.unpack_from(">hhh", data, 10 + 6 * n)
            versions[key] = (low, high)
        return versions

    def wait_formed(self, timeout: float = 30.0, ids: Iterable[int] | None = None
                    ) -> ClusterView:
        """Wait until brokers ``ids`` (default: the running ones) all answer Metadata with
        exactly those brokers at their addresses and the same live controller, the one
        ZooKeeper's /controller names; return broker ``ids[0]``'s view."""
        want = sorted(self.running_ids() if ids is None else ids)
        addresses = {i: self.bootstrap(i) for i in want}

        def formed() -> ClusterView | None:
            views = [self.metadata(i) for i in want]
            controller = self.controller_id()
            for view in views:
                if view.brokers != addresses or view.controller_id != controller:
                    return None
            return views[0] if controller in want else None

        return self.wait_until(formed, timeout, interval=0.2,
                               what=f"brokers {want} agreeing on the cluster")

    def wait_topic(self, topic: str, partitions: int, timeout: float = 20.0,
                   ids: Iterable[int] | None = None) -> dict[int, PartitionView]:
        """Wait until brokers ``ids`` (default: the running ones) all report ``topic`` with
        ``partitions`` partitions, each with a leader, without errors, and identically."""
        want = sorted(self.running_ids() if ids is None else ids)

        def ready() -> dict[int, PartitionView] | None:
            seen = []
            for i in want:
                view = self.metadata(i)
                parts = view.topics.get(topic)
                errors = {k: v for k, v in view.errors.items()
                          if k == topic or k.startswith(f"{topic}/")}
                if (parts is None or errors or sorted(parts) != list(range(partitions))
                        or any(p.leader < 0 for p in parts.values())):
                    return None
                seen.append(parts)
            return seen[0] if all(s == seen[0] for s in seen) else None

        return self.wait_until(ready, timeout, interval=0.2,
                               what=f"topic {topic} with {partitions} led partitions on {want}")


# -- pytest -----------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster_config(brokers=3, **overrides): size and broker --override values "
                   "of the `cluster` fixture")


def _cluster_settings(request: pytest.FixtureRequest) -> tuple[int, dict[str, str]]:
    settings: dict[str, Any] = {}
    marker = request.node.get_closest_marker("cluster_config")
    if marker is not None:
        settings.update(marker.kwargs)
    param = getattr(request, "param", None)
    if isinstance(param, int):
        settings["brokers"] = param
    elif isinstance(param, Mapping):
        settings.update(param)
    size = int(settings.pop("brokers", DEFAULT_SIZE))
    return size, {k: str(v) for k, v in settings.items()}


@pytest.fixture
def cluster(request: pytest.FixtureRequest,
            zookeeper_server: ZooKeeperServer) -> Iterator[Cluster]:
    size, overrides = _cluster_settings(request)
    with Cluster(zookeeper_server, size, overrides=overrides) as running:
        try:
            yield running
        finally:
            report = getattr(request.node, "rep_call", None)
            if report is None or report.failed:
                print(f"\n===== cluster logs ({running.zookeeper_connect}) =====\n"
                      f"{running.log_tails()}")

