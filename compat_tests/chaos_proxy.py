"""A TCP proxy on loopback that forwards to a broker and drops connections, so clients see
requests lost mid-flight and must retry.

Two kinds of drop: at random moments, and as a response arrives from the broker (the
request was processed but its answer is lost: the case that makes a retry a duplicate).
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from compat_tests.broker_process import BrokerProcess
from pykbroker.free_ports import free_port


class ChaosProxy:
    def __init__(self, upstream_port: int, listen_port: int, *, drop_every_s: float = 0.3,
                 response_drop_probability: float = 0.0, seed: int = 7) -> None:
        self.upstream_port = upstream_port
        self.listen = socket.create_server(("127.0.0.1", listen_port))
        self.port = self.listen.getsockname()[1]
        self.drop_every_s = drop_every_s
        self.random = random.Random(seed)
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.drops = 0
        self.response_drops = 0
        self.response_drop_probability = response_drop_probability
        self.chaos = threading.Event()
        self.chaos.set()

    def start(self) -> ChaosProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._dropper, daemon=True).start()
        return self

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.listen.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, upstream))
            for src, dst, responses in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pump, args=(src, dst, responses),
                                 daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, responses: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if (responses and self.chaos.is_set()
                        and self.random.random() < self.response_drop_probability):
                    self.response_drops += 1
                    break  # the broker answered, the client never hears it
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _dropper(self) -> None:
        while not self.stopping.wait(self.random.uniform(0.3, 1.7) * self.drop_every_s):
            if not self.chaos.is_set():
                continue
            with self.lock:
                pairs, self.pairs = self.pairs, []
            for client, upstream in pairs:
                self.drops += 1
                for s in (client, upstream):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                        s.close()
                    except OSError:
                        pass

    def stop(self) -> None:
        self.stopping.set()
        self.listen.close()
        with self.lock:
            for client, upstream in self.pairs:
                client.close()
                upstream.close()
        time.sleep(0.05)


@contextmanager
def broker_behind_proxy(data_dir: Path, *, drop_every_s: float,
                        response_drop_probability: float) -> Iterator[tuple[ChaosProxy, str]]:
    """A broker that advertises a chaos proxy in front of it as its address, so that every
    client connection, bootstrap or not, goes through the proxy; yields the proxy (chaos
    paused: set ``proxy.chaos`` to start dropping) and the bootstrap address."""
    proxy_port = free_port()
    broker = BrokerProcess(data_dir, {
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{proxy_port}"})
    broker.start()
    try:
        proxy = ChaosProxy(broker.port, proxy_port, drop_every_s=drop_every_s,
                           response_drop_probability=response_drop_probability).start()
        proxy.chaos.clear()
        try:
            yield proxy, f"127.0.0.1:{proxy_port}"
        finally:
            proxy.stop()
    finally:
        broker.close()
