"""A real pykbroker cluster for tests: a ZooKeeper, N broker processes and fault proxies.

``open_cluster()`` (a context manager; ``open_cluster_async()`` for trio) starts a throwaway
ZooKeeper (found by :func:`pykbroker.metadata.zk.server.find_zookeeper`), brokers ``1..N`` as
``python -m pykbroker`` subprocesses with ephemeral ports and storage, and a fault proxy
(:class:`~pykbroker.cluster_testing.proxy.FaultLink`) on every link:

* one in front of each broker for clients: the broker's ``CLIENT`` listener advertises the
  proxy's port, so clients reach every broker through it (``bootstrap_servers``);
* one per ordered pair of brokers (A reaches B's ``INTERNAL`` listener through proxy A->B:
  the brokers get the routes in ``PYKBROKER_TEST_BROKER_ROUTES``, read by
  :class:`pykbroker.cluster.broker_client.BrokerConnection`);
* one between each broker and ZooKeeper (its ``zookeeper.connect`` names its proxy).

The observers (``controller()``, ``leader_of()``, ``isr_of()``, ``wait_for_isr()``) read
ZooKeeper directly, never through a proxy. Closing kills every process (broker process
groups with SIGKILL), stops the proxies and ZooKeeper and removes the directory; clusters
still open at interpreter exit are closed by an ``atexit`` hook, and a SIGTERM with its
default action is turned into KeyboardInterrupt when a cluster starts in the main thread, so that
it too closes them (only a SIGKILL of the test process leaves brokers behind).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pykbroker.cluster_testing.proxy import FaultLink
from pykbroker.free_ports import free_port as _free_port
from pykbroker.metadata.zk.server import ZooKeeperServer

if TYPE_CHECKING:
    from pykbroker.cluster_testing.faults import Faults
    from pykbroker.metadata.zk.reader import ZkReader

__all__ = ["ClusterError", "KafkaCluster", "open_cluster", "open_cluster_async"]

T = TypeVar("T")

READY_MARK = "ready in"
# Logged by a broker at the controller's first UpdateMetadata (its ZooKeeper seed before it
# lists the brokers too, but the controller may not reach it: a wrong inter-broker login).
METADATA_MARK = "first metadata from controller"
SESSION_TIMEOUT_MS = 6000
# Defaults for fast reactions to faults (each can be overridden by the configs argument).
CLUSTER_DEFAULTS: dict[str, str] = {
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "1",
    "transaction.state.log.num.partitions": "1",
    "zookeeper.session.timeout.ms": str(SESSION_TIMEOUT_MS),
    "replica.lag.time.max.ms": "4000",
    "controller.socket.timeout.ms": "5000",
    "replica.socket.timeout.ms": "5000",
    "controlled.shutdown.enable": "true",
    "controlled.shutdown.retry.backoff.ms": "500",
}


class ClusterError(RuntimeError):
    """A broker did not start or the cluster did not form; the message has log tails."""


def wait_until(predicate: Callable[[], T | None], timeout: float, *, interval: float = 0.1,
               what: str = "") -> T:
    """Call ``predicate`` until it returns something truthy and return that; exceptions
    count as "not yet". On timeout, ClusterError with the last value or exception."""
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
            raise ClusterError(f"{what or repr(predicate)} not true after {timeout} s; "
                               f"last: {last!r}")
        time.sleep(interval)


class _Broker:
    """One broker process; ports and data directory survive restarts."""

    def __init__(self, broker_id: int, directory: Path, configs: dict[str, str],
                 env: dict[str, str], faults: Faults) -> None:
        self.broker_id = broker_id
        self.data_dir = directory / f"broker-{broker_id}"
        self.log_path = directory / f"broker-{broker_id}.log"
        self.configs = configs
        self.env = env
        self.faults = faults
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> None:
        if self.running:
            raise RuntimeError(f"broker {self.broker_id} is already running")
        self.starts += 1
        args = [sys.executable, "-m", "pykbroker"]
        for key, value in self.configs.items():
            args += ["--override", f"{key}={value}"]
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, env={**os.environ, **self.env},
                                         start_new_session=True)
        self.paused = False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def current_start_log(self) -> str:
        """The log since the latest ``spawn``."""
        return self.log().rsplit("===== start #", 1)[-1]

    def heard_from_controller(self) -> bool:
        """This start of the broker has received the controller's UpdateMetadata."""
        return METADATA_MARK in self.current_start_log()

    def wait_ready(self, deadline: float) -> None:
        assert self.proc is not None
        while READY_MARK not in self.current_start_log():
            if self.proc.poll() is not None:
                raise ClusterError(f"broker {self.broker_id} exited with "
                                   f"{self.proc.returncode}:\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise ClusterError(f"broker {self.broker_id} not ready in time:\n"
                                   f"{self.log()[-4000:]}")
            time.sleep(0.03)

    def signal_group(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def kill(self) -> int | None:
        """SIGKILL the broker's process group and reap it."""
        proc, self.proc = self.proc, None
        self.paused = False
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()

    def terminate(self, timeout: float) -> int | None:
        """SIGTERM (a controlled shutdown) and wait; SIGKILL after ``timeout``."""
        if self.proc is None:
            return None
        if self.paused:
            self.signal_group(signal.SIGCONT)
            self.paused = False
        self.signal_group(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self.proc = None
        return code


_live: weakref.WeakSet[KafkaCluster] = weakref.WeakSet()


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _install_sigterm_exit() -> None:
    """A SIGTERM (a CI timeout, ``kill``) would end the process without running ``atexit``
    or ``finally``: the brokers, in sessions of their own, would outlive it. While SIGTERM
    has its default action, make it raise KeyboardInterrupt in the main thread instead, so
    that the cluster is closed and a pytest run stops as for Ctrl-C."""
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
        signal.signal(signal.SIGTERM, _interrupt_on_sigterm)


@atexit.register
def _close_live() -> None:
    """A run that stops between open and close still leaves nothing behind."""
    for cluster in list(_live):
        cluster.close()


class KafkaCluster:
    """N brokers (ids 1..N) with ZooKeeper and fault proxies; see the module docstring.

    ``racks``: one rack name per broker (``broker.rack``); ``configs``: broker settings for
    every broker (``{"num.partitions": "3"}``) over :data:`CLUSTER_DEFAULTS`;
    ``broker_configs``: per broker id, settings for that broker only.
    """

    def __init__(self, brokers: int = 3, *, racks: Sequence[str | None] | None = None,
                 configs: Mapping[str, object] | None = None,
                 broker_configs: Mapping[int, Mapping[str, object]] | None = None,
                 zookeeper: ZooKeeperServer | None = None) -> None:
        if brokers < 1:
            raise ValueError("a cluster needs at least one broker")
        if racks is not None and len(racks) != brokers:
            raise ValueError(f"{len(racks)} racks for {brokers} brokers")
        self.size = brokers
        self.racks = list(racks) if racks is not None else [None] * brokers
        self.configs = {k: str(v) for k, v in (configs or {}).items()}
        self.broker_configs = {int(i): {k: str(v) for k, v in c.items()}
                               for i, c in (broker_configs or {}).items()}
        self._own_zookeeper = zookeeper is None
        self.zookeeper = zookeeper or ZooKeeperServer()
        self.chroot = f"/pykbroker-{os.getpid()}-{id(self):x}-{time.monotonic_ns() % 10**9}"
        self.directory = Path(tempfile.mkdtemp(prefix="pykbroker-kafka-cluster-"))
        self.brokers: dict[int, _Broker] = {}
        self.client_links: dict[int, FaultLink] = {}
        self.pair_links: dict[tuple[int, int], FaultLink] = {}
        self.zk_links: dict[int, FaultLink] = {}
        self._zk: ZkReader | None = None
        self.ready_seconds = 0.0
        self.closed = False
        _live.add(self)

    # -- life cycle ----------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> KafkaCluster:
        from pykbroker.cluster_testing.faults import Faults

        began = time.monotonic()
        _install_sigterm_exit()
        try:
            if self._own_zookeeper:
                self.zookeeper.start()
            ids = list(range(1, self.size + 1))
            internal = {i: _free_port() for i in ids}
            client = {i: _free_port() for i in ids}
            for i in ids:
                self.client_links[i] = FaultLink(
                    f"client-{i}", ("127.0.0.1", client[i]), faults=Faults()).start()
                self.zk_links[i] = FaultLink(
                    f"zk-{i}", (self.zookeeper.host, self.zookeeper.port)).start()
                for j in ids:
                    if j != i:
                        self.pair_links[(i, j)] = FaultLink(
                            f"{i}->{j}", ("127.0.0.1", internal[j])).start()
            defaults = dict(CLUSTER_DEFAULTS)
            replication = str(min(3, self.size))
            defaults["offsets.topic.replication.factor"] = replication
            defaults["transaction.state.log.replication.factor"] = replication
            defaults["transaction.state.log.min.isr"] = str(min(2, self.size))
            for i in ids:
                configs = {
                    **defaults,
                    "broker.id": str(i),
                    "listeners": f"CLIENT://127.0.0.1:{client[i]},"
                                 f"INTERNAL://127.0.0.1:{internal[i]}",
                    "advertised.listeners": f"CLIENT://{self.client_links[i].address},"
                                            f"INTERNAL://127.0.0.1:{internal[i]}",
                    "listener.security.protocol.map": "CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT",
                    "inter.broker.listener.name": "INTERNAL",
                    "zookeeper.connect": f"{self.zk_links[i].address}{self.chroot}",
                    "log.dirs": str(self.directory / f"broker-{i}"),
                    **({"broker.rack": r} if (r := self.racks[i - 1]) is not None else {}),
                    **self.configs,
                    **self.broker_configs.get(i, {}),
                }
                routes = ",".join(f"127.0.0.1:{internal[j]}={self.pair_links[(i, j)].address}"
                                  for j in ids if j != i)
                self.brokers[i] = _Broker(i, self.directory, configs,
                                          {"PYKBROKER_TEST_BROKER_ROUTES": routes},
                                          self.client_links[i].faults)  # type: ignore[arg-type]
            for broker in self.brokers.values():
                broker.spawn()
            deadline = began + timeout
            for broker in self.brokers.values():
                broker.wait_ready(deadline)
            self.wait_ready(max(1.0, deadline - time.monotonic()))
        except ClusterError as exc:  # the brokers' logs go with the cluster: keep their tails
            tails = self.log_tails()
            self.close()
            raise ClusterError(f"{exc}\n{tails}") from exc
        except BaseException:
            self.close()
            raise
        self.ready_seconds = time.monotonic() - began
        return self

    def close(self) -> None:
        """Kill every broker, stop proxies and ZooKeeper, remove the files; idempotent."""
        if self.closed:
            return
        self.closed = True
        for broker in self.brokers.values():
            with contextlib.suppress(Exception):
                broker.kill()
        if self._zk is not None:
            with contextlib.suppress(Exception):
                self._zk.close()
            self._zk = None
        for link in self.links():
            with contextlib.suppress(Exception):
                link.close()
        if self._own_zookeeper:
            with contextlib.suppress(Exception):
                self.zookeeper.stop(graceful=False)
        shutil.rmtree(self.directory, ignore_errors=True)
        _live.discard(self)

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- addresses -----------------------------------------------------------------------

    @property
    def broker_ids(self) -> list[int]:
        return sorted(self.brokers)

    @property
    def bootstrap_servers(self) -> str:
        """Every broker's client proxy, comma-separated."""
        return ",".join(self.client_links[i].address for i in self.broker_ids)

    def bootstrap(self, broker: int) -> str:
        """The client address of one broker (through its proxy)."""
        return self.client_links[broker].address

    def faults(self, broker: int) -> Faults:
        """Per-API faults on the client link of ``broker`` (fail_next, add_latency,
        drop_next, count): the same interface as the single-broker fixture's ``faults``."""
        faults = self.client_links[broker].faults
        assert faults is not None
        return faults

    def links(self) -> Iterable[FaultLink]:
        return itertools.chain(self.client_links.values(), self.pair_links.values(),
                               self.zk_links.values())

    def running_ids(self) -> list[int]:
        return [i for i in self.broker_ids if self.brokers[i].running]

    def pid(self, broker: int) -> int | None:
        proc = self.brokers[broker].proc
        return None if proc is None else proc.pid

    def log(self, broker: int) -> str:
        return self.brokers[broker].log()

    def log_tails(self, chars: int = 3000) -> str:
        return "\n".join(f"----- broker {i} -----\n{self.brokers[i].log()[-chars:]}"
                         for i in self.broker_ids)

    # -- process faults ------------------------------------------------------------------

    def kill(self, broker: int) -> None:
        """SIGKILL the broker (and its process group): a crash."""
        self.brokers[broker].kill()

    def stop(self, broker: int, timeout: float = 30.0) -> int | None:
        """A controlled shutdown (SIGTERM): the broker asks the controller to move its
        leaderships away, then exits; returns its exit code."""
        return self.brokers[broker].terminate(timeout)

    def start_broker(self, broker: int, timeout: float = 30.0) -> None:
        """Start a killed or stopped broker again (same ports, same data) and wait until it
        is registered and serves clients."""
        b = self.brokers[broker]
        deadline = time.monotonic() + timeout
        while True:
            b.spawn()
            try:
                b.wait_ready(deadline)
                break
            except ClusterError:
                # Right after a kill ZooKeeper still holds the previous session's
                # registration, and the broker exits during start-up: try again until it
                # expires (zookeeper.session.timeout.ms).
                if b.running or time.monotonic() > deadline:
                    raise
                b.proc = None
                time.sleep(0.2)
        wait_until(lambda: broker in self.registered_ids(), timeout, interval=0.05,
                   what=f"broker {broker} registered in ZooKeeper")

    def restart(self, broker: int, *, kill: bool = False, timeout: float = 30.0) -> None:
        """Stop the broker if it runs (controlled, or SIGKILL with ``kill=True``), then start
        it again with its data."""
        if self.brokers[broker].running:
            if kill:
                self.kill(broker)
            else:
                self.stop(broker, timeout)
        self.start_broker(broker, timeout)

    def pause(self, broker: int) -> None:
        """SIGSTOP the broker: its sockets stay open, it answers nothing, its ZooKeeper
        session expires after ``zookeeper.session.timeout.ms``."""
        self.brokers[broker].signal_group(signal.SIGSTOP)
        self.brokers[broker].paused = True
        self._wait_state(broker, stopped=True)

    def resume(self, broker: int) -> None:
        """SIGCONT a paused broker."""
        self.brokers[broker].signal_group(signal.SIGCONT)
        self.brokers[broker].paused = False
        self._wait_state(broker, stopped=False)

    def _wait_state(self, broker: int, *, stopped: bool, timeout: float = 5.0) -> None:
        """Signals are delivered asynchronously: wait until /proc shows the broker stopped
        (state T) or not (where there is no /proc, return at once)."""
        pid = self.pid(broker)
        stat = Path(f"/proc/{pid}/stat")
        deadline = time.monotonic() + timeout
        while pid is not None and time.monotonic() < deadline:
            try:
                state = stat.read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                return
            if (state == "T") == stopped:
                return
            time.sleep(0.01)

    # -- network faults ------------------------------------------------------------------

    def isolate(self, broker: int, *, clients: bool = True) -> None:
        """Cut ``broker`` off from every other broker and from ZooKeeper, and (unless
        ``clients=False``) from clients: its ZooKeeper session expires, the controller
        elects new leaders for its partitions; a broker isolated with ``clients=False`` still
        takes client requests it can no longer commit."""
        for (a, b), link in self.pair_links.items():
            if broker in (a, b):
                link.blackhole()
        self.zk_links[broker].blackhole()
        if clients:
            self.client_links[broker].blackhole()

    def partition(self, *groups: Iterable[int]) -> None:
        """Split the brokers into groups that cannot reach each other (brokers left out of
        every group form one more group). ZooKeeper stays reachable for all (use
        :meth:`cut_zookeeper` too for that), and so do clients."""
        sets = [set(g) for g in groups]
        rest = set(self.broker_ids).difference(*sets)
        if rest:
            sets.append(rest)
        side = {i: n for n, group in enumerate(sets) for i in group}
        for (a, b), link in self.pair_links.items():
            if side[a] != side[b]:
                link.blackhole()

    def cut_zookeeper(self, broker: int) -> None:
        """Blackhole the broker's link to ZooKeeper: its session expires after
        ``zookeeper.session.timeout.ms`` (6 s here); a controller loses the controllership."""
        self.zk_links[broker].blackhole()

    def delay(self, broker: int, ms: float) -> None:
        """Every request to ``broker`` (from clients and from other brokers) arrives ``ms``
        later: a round trip to it grows by ``ms``."""
        self.client_links[broker].set_delay(ms / 1000.0)
        for (_, b), link in self.pair_links.items():
            if b == broker:
                link.set_delay(ms / 1000.0)

    def drop(self, broker: int, fraction: float) -> None:
        """Reset connections to ``broker`` (clients' and other brokers'): each chunk
        forwarded resets its connection with probability ``fraction``."""
        self.client_links[broker].set_drop(fraction)
        for (_, b), link in self.pair_links.items():
            if b == broker:
                link.set_drop(fraction)

    def heal(self) -> None:
        """Undo every network fault (isolate, partition, cut_zookeeper, delay, drop)."""
        for link in self.links():
            link.heal()

    def reset_faults(self) -> None:
        """heal(), resume paused brokers and clear the per-API faults of every broker."""
        self.heal()
        for i, broker in self.brokers.items():
            if broker.paused:
                self.resume(i)
            self.faults(i).reset()

    # -- observation (ZooKeeper, read directly) ------------------------------------------

    @property
    def zk(self) -> ZkReader:
        """A read-only ZooKeeper client inside the cluster's chroot."""
        if self._zk is None:
            from pykbroker.metadata.zk.reader import ZkReader

            self._zk = ZkReader(f"{self.zookeeper.hosts}{self.chroot}")
        return self._zk

    def _json(self, path: str) -> Any:
        return self.zk.json(path)

    def registered_ids(self) -> list[int]:
        return sorted(int(c) for c in self.zk.children("/brokers/ids"))

    def controller(self) -> int | None:
        """The controller's broker id (ZooKeeper's /controller), None while there is none."""
        data = self._json("/controller")
        return None if data is None else int(data["brokerid"])

    def partition_state(self, topic: str, partition: int) -> dict[str, Any] | None:
        return self._json(f"/brokers/topics/{topic}/partitions/{partition}/state")  # type: ignore[no-any-return]

    def leader_of(self, topic: str, partition: int = 0) -> int:
        """The partition's leader as the controller recorded it (-1: none)."""
        state = self.partition_state(topic, partition)
        return -1 if state is None else int(state["leader"])

    def isr_of(self, topic: str, partition: int = 0) -> list[int]:
        state = self.partition_state(topic, partition)
        return [] if state is None else sorted(int(r) for r in state["isr"])

    def wait_for_isr(self, topic: str, partition: int, size: int,
                     timeout: float = 30.0) -> list[int]:
        """Wait until the partition's ISR has exactly ``size`` replicas; return it."""
        def isr() -> list[int] | None:
            current = self.isr_of(topic, partition)
            return current if len(current) == size else None

        return wait_until(isr, timeout, what=f"ISR of {topic}-{partition} of size {size}")

    def wait_for_leader(self, topic: str, partition: int = 0, *, not_in: Iterable[int] = (),
                        timeout: float = 30.0) -> int:
        """Wait until the partition has a live leader outside ``not_in`` and every broker
        registered in ZooKeeper names it in Metadata; return it.

        ZooKeeper shows the controller's decision a moment before the brokers' metadata
        caches do: a client bootstrapped in between would be sent to the old leader (a zombie,
        after :meth:`isolate`), and a zombie's REQUEST_TIMED_OUT makes no client refresh its
        metadata."""
        excluded = set(not_in)

        def leader() -> int | None:
            state = self.partition_state(topic, partition)
            led = -1 if state is None else int(state["leader"])
            if led < 0 or led in excluded:
                return None
            want = (led, int(state["leader_epoch"]))  # type: ignore[index]
            for broker in self.registered_ids():
                try:
                    if self.metadata_leader(broker, topic, partition) != want:
                        return None
                except OSError:  # paused, or its client link dropped: ask again
                    return None
            return led

        return wait_until(leader, timeout, what=f"a leader of {topic}-{partition} not in "
                                                f"{sorted(excluded)}")

    def wait_for_controller(self, *, not_in: Iterable[int] = (), timeout: float = 30.0) -> int:
        excluded = set(not_in)

        def controller() -> int | None:
            c = self.controller()
            return c if c is not None and c not in excluded else None

        return wait_until(controller, timeout, what=f"a controller not in {sorted(excluded)}")

    # -- Kafka requests (through the client proxies) -------------------------------------

    def _request(self, broker: int, api_key: int, version: int, body: Any,
                 timeout: float = 10.0) -> Any:
        from pykbroker.protocol.framing import decode_response, encode_request

        host, port = self.bootstrap(broker).rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.sendall(encode_request(api_key, version, 1, "kafka-cluster", body))
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            _, resp = decode_response(_recv_exact(sock, size), api_key, version)
        return resp

    def metadata_brokers(self, broker: int) -> dict[int, str]:
        """The brokers (id -> host:port) that ``broker`` lists in a Metadata response."""
        from pykbroker.protocol._generated.metadata_request import MetadataRequest

        resp = self._request(broker, 3, 1, MetadataRequest(topics=[]), timeout=5.0)
        return {b.node_id: f"{b.host}:{b.port}" for b in resp.brokers}

    def metadata_leader(self, broker: int, topic: str, partition: int = 0
                        ) -> tuple[int, int] | None:
        """(leader, leader epoch) of the partition in ``broker``'s Metadata (None: unknown)."""
        from pykbroker.protocol._generated.metadata_request import (
            MetadataRequest,
            MetadataRequestTopic,
        )

        resp = self._request(broker, 3, 9, MetadataRequest(
            topics=[MetadataRequestTopic(name=topic)], allow_auto_topic_creation=False),
            timeout=2.0)
        for t in resp.topics:
            for p in t.partitions:
                if t.name == topic and p.partition_index == partition and not p.error_code:
                    return int(p.leader_id), int(p.leader_epoch)
        return None

    def wait_ready(self, timeout: float = 30.0, ids: Iterable[int] | None = None) -> None:
        """Every broker (default: every running one) registered in ZooKeeper, a controller
        elected, a Metadata through each client proxy listing all of them, and each one has
        heard from the controller (its UpdateMetadata arrived)."""
        want = sorted(self.running_ids() if ids is None else ids)
        addresses = {i: self.bootstrap(i) for i in want}

        def ready() -> bool:
            controller = self.controller()
            if self.registered_ids() != want or controller not in want:
                return False
            if not all(self.metadata_brokers(i) == addresses for i in want):
                return False
            if not all(self.brokers[i].heard_from_controller() for i in want):
                return False
            # The controller itself counts every broker (its live set follows the
            # registrations a moment later): a topic with a replica on each would be created.
            return self._validate_topic(controller, "pykbroker-ready-probe", len(want)) == 0

        wait_until(ready, timeout, interval=0.05, what=f"brokers {want} ready for clients")

    def _validate_topic(self, broker: int, name: str, replication_factor: int) -> int:
        """CreateTopics with validate_only: the error code (0: it would be created)."""
        from pykbroker.protocol._generated.create_topics_request import (
            CreatableTopic,
            CreateTopicsRequest,
        )

        request = CreateTopicsRequest([CreatableTopic(name, 1, replication_factor)],
                                      timeout_ms=5000, validate_only=True)
        return int(self._request(broker, 19, 4, request, timeout=5.0).topics[0].error_code)

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int | None = None,
                     configs: Mapping[str, object] | None = None, timeout: float = 30.0) -> None:
        """Create a topic (default replication: every broker, at most 3) and wait until each
        partition has a leader and a full ISR."""
        from pykbroker.protocol._generated.create_topics_request import (
            CreatableTopic,
            CreatableTopicConfig,
            CreateTopicsRequest,
        )

        rf = replication_factor or min(3, self.size)
        topic = CreatableTopic(name, partitions, rf, configs=[
            CreatableTopicConfig(k, str(v)) for k, v in (configs or {}).items()])
        broker = self.controller() or self.running_ids()[0]
        resp = self._request(broker, 19, 4, CreateTopicsRequest([topic], timeout_ms=30_000),
                             timeout=timeout)
        result = resp.topics[0]
        if result.error_code:
            raise ClusterError(f"creating topic {name} failed: error {result.error_code} "
                               f"{result.error_message}")
        for p in range(partitions):
            self.wait_for_isr(name, p, rf, timeout)
            self.wait_for_leader(name, p, timeout=timeout)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


@contextmanager
def open_cluster(brokers: int = 3, **kwargs: Any) -> Iterator[KafkaCluster]:
    """``with open_cluster(3) as cluster:`` a started cluster, closed on exit whatever
    happens; the arguments are :class:`KafkaCluster`'s."""
    cluster = KafkaCluster(brokers, **kwargs)
    try:
        yield cluster.start()
    finally:
        cluster.close()


@asynccontextmanager
async def open_cluster_async(brokers: int = 3, **kwargs: Any) -> AsyncIterator[KafkaCluster]:
    """The same for trio code: start and close run in a worker thread (the cluster's
    blocking methods can be called with ``trio.to_thread.run_sync``)."""
    import trio

    cluster = KafkaCluster(brokers, **kwargs)
    try:
        await trio.to_thread.run_sync(cluster.start)
        yield cluster
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(cluster.close)
