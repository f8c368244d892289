"""Listeners: accept connections on each configured address, and drain them at shutdown.

Shutdown follows the structured pattern: stop accepting, let requests in flight finish
within a grace period (idle connections close at once), then cancel what remains.

Accepted connections pass Kafka's connection limits first (``connection_quotas``):
``max.connections`` and ``max.connection.creation.rate`` hold the accept loop back, a
connection over ``max.connections.per.ip`` is closed at once.

Each listener serves its security protocol from the broker's security plan (TLS context,
SASL mechanisms); a listener asking for TLS or SASL without a plan is a programming error
and stops the server before it binds, so nothing is ever served in plaintext by mistake.
"""

from __future__ import annotations

import dataclasses
import errno
import gc
import itertools
import logging
import socket
from dataclasses import dataclass
from typing import Any, NamedTuple

import trio

from pykbroker.security.configure import security_from_config
from pykbroker.security.plan import (
    BrokerSecurity,
    ListenerSecurity,
    plaintext_only,
)
from pykbroker.server.bad_clients import BadClientLog
from pykbroker.server.connection import (
    Connection,
    ConnectionSettings,
    ListenerInfo,
    RequestObserver,
)
from pykbroker.server.connection import log as connection_log
from pykbroker.server.connection_quotas import INT_MAX, ConnectionQuotas
from pykbroker.server.dispatch import DispatchTable
from pykbroker.server.first_frame import Unseen, discard_received, first_frame_refusal
from pykbroker.server.request_memory import RequestMemoryPool, trim_freed_memory

log = logging.getLogger("pykbroker.server.listener")

TRIM_AFTER_CLOSES = 256  # connections closed since the last trim, looked at ...
TRIM_EVERY_S = 1.0  # ... this often, trimmed at most ...
TRIM_COOLDOWN_S = 10.0  # ... this often
CONFIG_CHECK_S = 0.5  # how often a changed (dynamic) configuration is looked for
ACCEPT_BATCH = 64  # connections accepted per wake-up of an accept loop, at most
# accept(2) errors that concern one connection only (trio's SocketListener ignores them too)
_ACCEPT_RETRY = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM}


class _Accepted(NamedTuple):
    """A connection accepted and counted in the connection quotas, not served yet."""

    client: socket.socket
    peer: str  # host:port
    address: str  # host, as the quotas count it
    info: ListenerInfo


class _Screen(NamedTuple):
    """The first frame's size limit on a listener whose first bytes are screened."""

    limit: int
    limit_name: str


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
        security: BrokerSecurity | None = None,
    ) -> None:
        """``security`` defaults to the plan built from ``services.config`` (ConfigError
        when it cannot be served), or to plaintext only when ``services`` has no config.
        Connection limits (``ConnectionQuotas``) come from ``services.config`` too, and
        follow it when it is replaced (dynamic configs); ``max_connections`` is used only
        by a server without a config."""
        self.security = security if security is not None else _security_of(services)
        for bind in binds:
            plan = self.security.listeners.get(bind.name)
            if bind.security_protocol != "PLAINTEXT" and (
                    plan is None or plan.protocol != bind.security_protocol):
                raise ValueError(f"listener {bind.name} ({bind.security_protocol}) has no "
                                 "security plan; refusing to serve it in plaintext")
        self.binds = binds
        self.dispatch = dispatch
        self.services = services
        self.settings = _with_memory_pool(settings, services)
        self.bad_clients = BadClientLog(connection_log)
        # Kafka logs each refusal over max.connections.per.ip at INFO; here at most one line
        # per address per interval, as for misbehaving clients.
        self.refusals = BadClientLog(log, level=logging.INFO)
        self.closed_since_trim = 0
        self._config = getattr(services, "config", None)
        self._send_buffer = self._socket_buffer("socket_send_buffer_bytes")
        self.quotas = ConnectionQuotas(
            self._config if self._config is not None else _LimitsOnly(max_connections),
            [b.name for b in binds],
            getattr(self._config, "inter_broker_listener_name", None))
        self.observer = observer
        self.bound_ports: dict[str, int] = {}
        self.connections: set[Connection] = set()
        self._ids = itertools.count(1)
        self._accept_scope = trio.CancelScope()
        self._conn_nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind, report readiness, serve until ``shutdown`` drains the connections."""
        opened: list[tuple[BindAddress, list[socket.socket]]] = []
        receive_buffer = self._socket_buffer("socket_receive_buffer_bytes")
        for bind in self.binds:
            listeners = await trio.open_tcp_listeners(bind.port, host=bind.host or None)
            port = listeners[0].socket.getsockname()[1]
            if receive_buffer != -1:  # set before any connection: accepted ones inherit it
                for lsn in listeners:
                    lsn.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            self.bound_ports[bind.name] = port
            # The accept loop works on the standard sockets (see _accept_loop).
            opened.append((bind, [_standard_socket(lsn) for lsn in listeners]))
        async with trio.open_nursery() as conn_nursery:
            self._conn_nursery = conn_nursery
            with self._accept_scope:
                async with trio.open_nursery() as accept_nursery:
                    for bind, socks in opened:
                        info = ListenerInfo(bind.name, bind.security_protocol)
                        for sock in socks:
                            accept_nursery.start_soon(self._accept_loop, sock, info)
                        log.info("listener %s serves %s", bind.name, _describe(
                            self.security.for_listener(bind.name, bind.security_protocol)))
                    accept_nursery.start_soon(self._trim_after_closes)
                    accept_nursery.start_soon(self._expire_idle)
                    if self._config is not None:
                        accept_nursery.start_soon(self._watch_config)
                    task_status.started()
            # Accepting has stopped; connections drain in conn_nursery.
        self._conn_nursery = None

    async def _accept_loop(self, sock: socket.socket, info: ListenerInfo) -> None:
        """Accept every connection waiting, then wait for the listening socket to be readable
        again. The standard socket is used directly (not trio's SocketListener): a
        connection whose first frame is already refused by ``first_frame_refusal`` is closed
        before any stream, task or connection object is made for it, which makes a flood of
        bad frames cost the broker ~5 times less than serving each of them. A connection
        with nothing received yet gets a second look after one pass of the event loop (a
        client sends its first request right after connecting), then is served."""
        screen: _Screen | None = None
        if info.security_protocol in ("PLAINTEXT", "SASL_PLAINTEXT"):
            plan = self.security.listeners.get(info.name)
            screen = (_Screen(plan.sasl_max_receive_size, "sasl.server.max.receive.size")
                      if plan is not None and plan.sasl and info.security_protocol != "PLAINTEXT"
                      else _Screen(self.settings.max_request_bytes, "socket.request.max.bytes"))
        try:
            while True:
                await trio.lowlevel.wait_readable(sock)
                unseen: list[_Accepted] = []
                for _ in range(ACCEPT_BATCH):
                    try:
                        client, addr = sock.accept()
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        if exc.errno in _ACCEPT_RETRY:  # the client gave up first
                            continue
                        log.warning("accept failed on %s: %s", info.name, exc)  # e.g. EMFILE
                        await trio.sleep(0.1)
                        break
                    accepted = await self._admit(client, addr, info)
                    if accepted is not None and not self._screen_or_serve(accepted, screen,
                                                                          last_look=False):
                        unseen.append(accepted)
                try:
                    await trio.lowlevel.checkpoint()  # nor may a stream of connects starve others
                finally:  # (cancelled: the connections are served, until shutdown closes them)
                    for accepted in unseen:
                        self._screen_or_serve(accepted, screen, last_look=True)
        finally:
            sock.close()

    async def _admit(self, client: socket.socket, addr: Any,
                     info: ListenerInfo) -> _Accepted | None:
        """Kafka's connection limits: the accepted connection counted, or None (closed)."""
        host = str(addr[0]) if isinstance(addr, tuple) else "unknown"
        peer = f"{host}:{addr[1]}" if isinstance(addr, tuple) else host
        address = host  # as inet_ntop writes it, like the overrides' addresses
        self._check_config()
        try:  # waits while at max.connections or over max.connection.creation.rate
            admitted = await self.quotas.acquire(info.name, address)
        except BaseException:
            client.close()
            raise
        if not admitted:
            self.refusals.warn(
                peer, "Rejected connection from %s, address already has the configured "
                "maximum of %d connections.", address, self.quotas.limit_for(address))
            client.close()
            return None
        return _Accepted(client, peer, address, info)

    def _screen_or_serve(self, accepted: _Accepted, screen: _Screen | None,
                         last_look: bool) -> bool:
        """Close ``accepted`` if its first frame is refused, else serve it; False (nothing
        done) when nothing was received yet and this is not the ``last_look``."""
        client, peer, address, info = accepted
        if screen is not None:
            reason = first_frame_refusal(client, screen.limit, screen.limit_name, self.dispatch)
            if reason is Unseen.UNSEEN:
                if not last_look:
                    return False
            elif reason is not None:
                self.bad_clients.warn(peer, "closing connection from %s: %s", peer, reason)
                discard_received(client)
                client.close()
                self.quotas.release(info.name, address)
                return True
        # Kafka's acceptor: keep-alive on, SO_SNDBUF from socket.send.buffer.bytes (-1: the
        # OS's); trio's stream turns Nagle off as Kafka does.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if self._send_buffer != -1:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer)
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(client))
        conn = Connection(
            stream, conn_id=next(self._ids), peer=peer, listener=info,
            dispatch=self.dispatch, services=self.services, settings=self.settings,
            observer=self.observer, security=self.security,
            listener_security=self.security.listeners.get(info.name)
            if info.security_protocol != "PLAINTEXT" else None,
            bad_clients=self.bad_clients,
        )
        assert self._conn_nursery is not None
        self.connections.add(conn)
        self._conn_nursery.start_soon(self._serve, conn, address)
        if self.quotas.total > self.quotas.max_connections:
            self._close_excess()
        return True

    async def _serve(self, conn: Connection, address: str) -> None:
        try:
            await conn.serve()
        except Exception:  # a bug in serving one connection must not take the broker down
            log.exception("connection from %s failed", conn.peer)
        finally:
            self.connections.discard(conn)
            self.quotas.release(conn.listener.name, address)
            self.closed_since_trim += 1

    def _close_excess(self) -> None:
        """Kafka's ``closeExcessConnections``: while the broker has more connections than
        max.connections (the protected inter-broker listener took one, or the limit was
        lowered), close the least recently active connections of the other listeners; a
        connection handling a request counts as active now, and closes once it is answered
        (Kafka drops the response)."""
        excess = self.quotas.excess() - sum(c.draining for c in self.connections)
        if excess <= 0:  # (draining ones still count until they are closed)
            return
        candidates = [c for c in self.connections
                      if not self.quotas.protected(c.listener.name) and not c.draining]
        candidates.sort(key=_last_activity)
        for conn in candidates[:excess]:
            log.info("closing %s: the broker has more than max.connections=%d connections",
                     conn.peer, self.quotas.max_connections)
            conn.stop_reading()

    def _socket_buffer(self, setting: str) -> int:
        """socket.send/receive.buffer.bytes (read-only settings, as in Kafka); -1 without a
        config (tests' servers) leaves the OS's default."""
        return int(getattr(self._config, setting, -1))

    def _check_config(self) -> None:
        """Apply a configuration changed since the last look (dynamic broker configs): the
        limits hold for the connections accepted from now on, as in Kafka."""
        config = getattr(self.services, "config", None)
        if config is None or config is self._config:
            return
        self._config = config
        self.quotas.reconfigure(config)
        self._close_excess()

    async def _watch_config(self) -> None:
        """Look for a changed configuration while no connection arrives: an acceptor waiting
        for a slot wakes up on a raised limit, excess connections close on a lowered one."""
        while True:
            await trio.sleep(CONFIG_CHECK_S)
            self._check_config()

    async def _expire_idle(self) -> None:
        """``connections.max.idle.ms`` for connections on a socket (the others, TLS, wait
        for a request in a cancel scope with that deadline): every tenth of the idle time
        (a second at most, 10 ms at least), those that have waited that long for a request
        are closed. A negative value turns the expiry off, as in Kafka's Selector."""
        while True:
            idle_s = self.settings.idle_timeout_s
            await trio.sleep(max(0.01, min(1.0, idle_s / 10)))
            if idle_s < 0:
                continue
            now = trio.current_time()
            for conn in list(self.connections):
                if conn.reading and conn.read_scope is None and \
                        now - conn.reader.active_at >= idle_s:
                    conn.stop_reading()

    async def _trim_after_closes(self) -> None:
        """After a burst of closed connections, give their memory back to the kernel: a full
        garbage collection (which also empties CPython's free lists, whose few objects keep
        whole 1 MiB arenas of freed connection objects mapped), then glibc's malloc_trim.
        Measured (benchmarks/hostile_bench.py) with 5,000 idle connections closing: RSS
        stayed ~33 MiB above the idle broker without it, ~9 MiB with it; a full collection
        takes ~10 ms on an idle broker, more on a busy one, hence the cool-down."""
        while True:
            await trio.sleep(TRIM_EVERY_S)
            if self.closed_since_trim >= TRIM_AFTER_CLOSES:
                self.closed_since_trim = 0
                gc.collect()
                trim_freed_memory()
                await trio.sleep(TRIM_COOLDOWN_S)

    async def shutdown(self, grace_s: float) -> None:
        """Stop accepting, close idle connections, give busy ones ``grace_s`` to finish."""
        self._accept_scope.cancel()
        with trio.move_on_after(grace_s):
            while self.connections:
                for conn in list(self.connections):
                    conn.stop_reading()
                await trio.sleep(0.01)
        if self._conn_nursery is not None:
            self._conn_nursery.cancel_scope.cancel()


class _LimitsOnly:
    """The configuration of a server built without one (tests): only max.connections."""

    def __init__(self, max_connections: int) -> None:
        self.values: dict[str, object] = {
            "max.connections": max_connections, "max.connections.per.ip": INT_MAX,
            "max.connections.per.ip.overrides": "", "max.connection.creation.rate": INT_MAX,
            "quota.window.num": 11, "quota.window.size.seconds": 1}

    def get(self, key: str) -> object:
        return self.values[key]


def _standard_socket(listener: trio.SocketListener) -> socket.socket:
    """The standard, non-blocking socket behind trio's ``listener`` (which gives it up)."""
    family, kind, proto = listener.socket.family, listener.socket.type, listener.socket.proto
    sock = socket.socket(family, kind, proto, fileno=listener.socket.detach())
    sock.setblocking(False)
    return sock


def _last_activity(conn: Connection) -> float:
    """When ``conn`` last received bytes (handling a request: now)."""
    if conn.busy or not conn.reading:
        return float("inf")
    return conn.reader.active_at


def _with_memory_pool(settings: ConnectionSettings, services: Any) -> ConnectionSettings:
    """``settings`` with the pool of ``queued.max.request.bytes`` from ``services.config``
    when it is set (> 0) and ``settings`` has none yet."""
    config = getattr(services, "config", None)
    if settings.memory_pool is not None or config is None:
        return settings
    queued = int(getattr(config, "queued_max_request_bytes", -1))
    if queued <= 0:
        return settings
    return dataclasses.replace(settings, memory_pool=RequestMemoryPool(queued))


def _security_of(services: Any) -> BrokerSecurity:
    config = getattr(services, "config", None)
    if config is None:
        return plaintext_only()
    log_dirs = getattr(services, "log_dirs", None) or [None]
    return security_from_config(config, log_dirs[0])


def _describe(plan: ListenerSecurity) -> str:
    parts = []
    if plan.ssl_context is not None:
        parts.append(f"TLS (ssl.client.auth={plan.client_auth})")
    if plan.sasl:
        parts.append("SASL " + ",".join(plan.mechanisms))
    return " with ".join(parts) or "plaintext"
