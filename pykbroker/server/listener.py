"""Listeners: accept connections on each configured address, and drain them at shutdown.

Shutdown follows the structured pattern: stop accepting, let requests in flight finish
within a grace period (idle connections close at once), then cancel what remains.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any

import trio

from pykbroker.server.connection import (
    Connection,
    ConnectionSettings,
    ListenerInfo,
    RequestObserver,
)
from pykbroker.server.dispatch import DispatchTable

log = logging.getLogger("pykbroker.server.listener")


@dataclass(frozen=True, slots=True)
class BindAddress:
    name: str
    host: str  # "" binds every interface
    port: int  # 0 picks a free port
    security_protocol: str


class NetworkServer:
    """Owns the listening sockets and every live connection."""

    def __init__(
        self,
        binds: list[BindAddress],
        *,
        dispatch: DispatchTable,
        services: Any,
        settings: ConnectionSettings,
        max_connections: int,
        observer: RequestObserver | None = None,
    ) -> None:
        self.binds = binds
        self.dispatch = dispatch
        self.services = services
        self.settings = settings
        self.max_connections = max_connections
        self.observer = observer
        self.bound_ports: dict[str, int] = {}
        self.connections: set[Connection] = set()
        self._ids = itertools.count(1)
        self._accept_scope = trio.CancelScope()
        self._conn_nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind, report readiness, serve until ``shutdown`` drains the connections."""
        opened: list[tuple[BindAddress, list[trio.SocketListener]]] = []
        for bind in self.binds:
            socks = await trio.open_tcp_listeners(bind.port, host=bind.host or None)
            port = socks[0].socket.getsockname()[1]
            self.bound_ports[bind.name] = port
            opened.append((bind, socks))
        async with trio.open_nursery() as conn_nursery:
            self._conn_nursery = conn_nursery
            with self._accept_scope:
                async with trio.open_nursery() as accept_nursery:
                    for bind, socks in opened:
                        info = ListenerInfo(bind.name, bind.security_protocol)
                        for sock in socks:
                            accept_nursery.start_soon(self._accept_loop, sock, info)
                    task_status.started()
            # Accepting has stopped; connections drain in conn_nursery.
        self._conn_nursery = None

    async def _accept_loop(self, sock: trio.SocketListener, info: ListenerInfo) -> None:
        async with sock:
            while True:
                try:
                    stream = await sock.accept()
                except (OSError, trio.TooSlowError) as exc:  # e.g. EMFILE: back off a little
                    log.warning("accept failed on %s: %s", info.name, exc)
                    await trio.sleep(0.1)
                    continue
                if len(self.connections) >= self.max_connections:
                    log.warning("max.connections=%d reached; refusing a connection",
                                self.max_connections)
                    await stream.aclose()
                    continue
                try:
                    host, port = stream.socket.getpeername()[:2]
                    peer = f"{host}:{port}"
                except OSError:
                    peer = "unknown"
                conn = Connection(
                    stream, conn_id=next(self._ids), peer=peer, listener=info,
                    dispatch=self.dispatch, services=self.services, settings=self.settings,
                    observer=self.observer,
                )
                assert self._conn_nursery is not None
                self._conn_nursery.start_soon(self._serve, conn)

    async def _serve(self, conn: Connection) -> None:
        self.connections.add(conn)
        try:
            await conn.serve()
        except Exception:  # a bug in serving one connection must not take the broker down
            log.exception("connection from %s failed", conn.peer)
        finally:
            self.connections.discard(conn)

    async def shutdown(self, grace_s: float) -> None:
        """Stop accepting, close idle connections, give busy ones ``grace_s`` to finish."""
        self._accept_scope.cancel()
        with trio.move_on_after(grace_s):
            while self.connections:
                for conn in list(self.connections):
                    conn.draining = True
                    if conn.read_scope is not None:
                        conn.read_scope.cancel()
                await trio.sleep(0.01)
        if self._conn_nursery is not None:
            self._conn_nursery.cancel_scope.cancel()
