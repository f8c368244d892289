"""An async (trio) ZooKeeper client over kazoo, in the role of Kafka's ``ZooKeeperClient``.

kazoo is threaded and trio's thread must never block, so the two meet at three points only:

* requests go through kazoo's ``*_async`` API (queueing a request never blocks); the
  completion, on kazoo's completion thread, wakes the waiting task through the
  :class:`trio.lowlevel.TrioToken` captured at connect time (``run_sync_soon``, which never
  blocks kazoo either). Requests are pipelined on the one connection, as Kafka's are, and a
  waiting task can be cancelled;
* kazoo's blocking calls (``start``, ``stop``) run in ``trio.to_thread``;
* kazoo's callbacks (watch events, session state) reach the trio thread through
  ``trio.from_thread.run_sync(..., trio_token=token)`` from kazoo's sequential callback
  thread, so user callbacks run on the trio thread, one at a time, in the order kazoo saw
  the events.

Every error comes out as a :class:`ZkError`; no kazoo type crosses this module's API.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, Final, Literal

import trio
from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadVersionError,
    ConnectionClosedError,
    ConnectionDropped,
    ConnectionLoss,
    KazooException,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    OperationTimeoutError,
    RolledBackError,
    RuntimeInconsistency,
    SessionExpiredError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import Callback, EventType, KazooState, WatchedEvent

from pykbroker.errors import PykbrokerError

__all__ = [
    "CheckOp",
    "CreateOp",
    "DeleteOp",
    "Op",
    "OpResult",
    "SessionState",
    "Subscription",
    "Watch",
    "ZkBadVersion",
    "ZkClient",
    "ZkClientClosed",
    "ZkConnectionError",
    "ZkConnectionLoss",
    "ZkError",
    "ZkNoNode",
    "ZkNodeExists",
    "ZkNotEmpty",
    "ZkSessionExpired",
    "ZnodeStat",
]

_log = logging.getLogger(__name__)

SessionState = Literal["connected", "suspended", "expired"]
# kazoo retries a refused or dropped connection for ever; its default backoff grows to an
# hour, far beyond any session timeout, so cap it near Kafka's immediate reconnects.
_CONNECTION_RETRY: Final = {"max_tries": -1, "delay": 0.05, "backoff": 2, "max_delay": 1.0}
_KAZOO_STATES: Final[dict[str, SessionState]] = {
    KazooState.CONNECTED: "connected",
    KazooState.SUSPENDED: "suspended",
    KazooState.LOST: "expired",
}


class ZkError(PykbrokerError):
    """A ZooKeeper request failed; ``path`` is the znode, ``op_index`` the failing op of a multi."""

    def __init__(
        self, message: str, *, path: str | None = None, op_index: int | None = None
    ) -> None:
        super().__init__(message)
        self.path = path
        self.op_index = op_index


class ZkConnectionError(ZkError):
    """No session could be established within the connection timeout."""


class ZkNodeExists(ZkError):
    pass


class ZkNoNode(ZkError):
    pass


class ZkBadVersion(ZkError):
    pass


class ZkNotEmpty(ZkError):
    pass


class ZkSessionExpired(ZkError):
    """The session (and its ephemeral znodes) is gone; a new one is being established."""


class ZkConnectionLoss(ZkError):
    """The connection dropped with the request in flight: it may or may not have been applied."""


class ZkClientClosed(ZkError):
    """The client was closed."""


_ERRORS: Final[tuple[tuple[type[Exception], type[ZkError]], ...]] = (
    (ConnectionClosedError, ZkClientClosed),  # before SessionExpiredError, its base class
    (NodeExistsError, ZkNodeExists),
    (NoNodeError, ZkNoNode),
    (BadVersionError, ZkBadVersion),
    (NotEmptyError, ZkNotEmpty),
    (SessionExpiredError, ZkSessionExpired),
    (ConnectionLoss, ZkConnectionLoss),
    (ConnectionDropped, ZkConnectionLoss),
    (OperationTimeoutError, ZkConnectionLoss),
)


def _zk_error(exc: BaseException, path: str | None, op_index: int | None = None) -> ZkError:
    ours = next((z for k, z in _ERRORS if isinstance(exc, k)), ZkError)
    name = type(exc).__name__
    return ours(f"{path}: {name} {exc}".rstrip(), path=path, op_index=op_index)


@dataclass(frozen=True, slots=True)
class ZnodeStat:
    """ZooKeeper's ``Stat``; ``czxid`` is a broker's epoch, ``version`` a partition's epoch."""

    czxid: int
    mzxid: int
    pzxid: int
    ctime: int
    mtime: int
    version: int
    cversion: int
    aversion: int
    ephemeral_owner: int  # the owning session id, 0 for a persistent znode
    data_length: int
    num_children: int

    @classmethod
    def _of(cls, stat: Any) -> ZnodeStat:
        return cls(
            czxid=stat.czxid,
            mzxid=stat.mzxid,
            pzxid=stat.pzxid,
            ctime=stat.ctime,
            mtime=stat.mtime,
            version=stat.version,
            cversion=stat.cversion,
            aversion=stat.aversion,
            ephemeral_owner=stat.ephemeralOwner,
            data_length=stat.dataLength,
            num_children=stat.numChildren,
        )


@dataclass(frozen=True, slots=True)
class CheckOp:
    path: str
    version: int


@dataclass(frozen=True, slots=True)
class CreateOp:
    path: str
    data: bytes = b""
    ephemeral: bool = False
    sequential: bool = False


@dataclass(frozen=True, slots=True)
class SetOp:
    path: str
    data: bytes
    version: int = -1


@dataclass(frozen=True, slots=True)
class DeleteOp:
    path: str
    version: int = -1


Op = CheckOp | CreateOp | SetOp | DeleteOp


@dataclass(frozen=True, slots=True)
class OpResult:
    """One op's result in a committed multi: the created path, or the new stat of a set."""

    created_path: str | None = None
    stat: ZnodeStat | None = None


class Subscription:
    """A registered state callback; ``cancel()`` (on the trio thread) stops further calls."""

    def __init__(
        self, owner: list[Subscription], callback: Callable[[SessionState], None]
    ) -> None:
        self._owner = owner
        self.callback = callback

    def cancel(self) -> None:
        if self in self._owner:
            self._owner.remove(self)


_NEVER: Final = object()


class Watch:
    """A children or data watch that stays registered (kazoo's ChildrenWatch/DataWatch, but it
    also watches an absent znode and re-arms on a new session).

    Refreshes run on kazoo's threads under a lock, so deliveries keep their order. A
    ZooKeeper event always delivers the value read after it; re-arming after a reconnect
    delivers only if the value differs from the last one delivered.
    """

    def __init__(
        self, client: ZkClient, path: str, children: bool, callback: Callable[..., None]
    ) -> None:
        self.path = path
        self._client = client
        self._children = children
        self._callback = callback
        self._lock = threading.Lock()
        self._armed_generation = -1
        self._last: object = _NEVER
        self.cancelled = False

    def cancel(self) -> None:
        """No callback runs after this returns (call it on the trio thread)."""
        self.cancelled = True
        self._client._watches.discard(self)

    def _on_event(self, event: WatchedEvent) -> None:  # kazoo's callback thread
        if event.type != EventType.NONE:  # NONE: kazoo dropped it with the connection
            self._refresh(event=True)

    def _rearm(self) -> None:  # a thread spawned on reconnect
        if self._armed_generation != self._client._generation:
            self._refresh(event=False)

    def _refresh(self, *, event: bool, initial: bool = False) -> None:
        with self._lock:
            if self.cancelled or self._client._closing:
                return
            generation = self._client._generation
            try:
                value, key = self._read()
            except KazooException as exc:
                if initial and not isinstance(exc, ConnectionLoss | SessionExpiredError):
                    raise _zk_error(exc, self.path) from None
                _log.debug("watch on %s not re-armed (%r); retried on reconnect", self.path, exc)
                return
            self._armed_generation = generation
            if event or key != self._last:
                self._last = key
                self._client._to_trio(self._deliver, value)

    def _read(self) -> tuple[tuple[Any, ...], object]:
        """(callback arguments, the key that tells a change), setting the watch."""
        kazoo, path, watch = self._client._kazoo, self.path, self._on_event
        while True:
            try:
                if self._children:
                    children = sorted(kazoo.get_children(path, watch=watch))
                    return (children,), children
                data, stat = kazoo.get(path, watch=watch)
                ours = ZnodeStat._of(stat)
                return (data, ours), (ours.czxid, ours.mzxid)
            except NoNodeError:
                # An exists watch fires when the znode is created; if it already was, read again.
                if kazoo.exists(path, watch=watch) is None:
                    return (([],), None) if self._children else ((None, None), None)

    def _deliver(self, args: tuple[Any, ...]) -> None:  # the trio thread
        if self.cancelled or self._client._closing:
            return
        try:
            self._callback(*args)
        except Exception:
            _log.exception("watch callback for %s failed", self.path)


class ZkClient:
    """One ZooKeeper session at a time (kazoo starts a new one after expiry), used from trio."""

    def __init__(self, kazoo: Any, token: trio.lowlevel.TrioToken, hosts: str) -> None:
        """Use :meth:`connect`."""
        self._kazoo = kazoo
        self._token = token
        self.hosts = hosts
        self._closing = False
        # Bumped (on kazoo's connection thread) whenever the connection drops: a watch armed
        # in an older generation was dropped by kazoo and must be re-armed.
        self._generation = 0
        self._watches: set[Watch] = set()
        self._state_callbacks: list[Subscription] = []

    @classmethod
    async def connect(
        cls, hosts: str, *, session_timeout_ms: int, connection_timeout_ms: int
    ) -> ZkClient:
        """Connect to ``host:port[,host:port...][/chroot]``, creating the chroot if absent
        (Kafka's ``createChrootIfNecessary``); ZkConnectionError when not connected in time."""
        token = trio.lowlevel.current_trio_token()
        deadline = trio.current_time() + connection_timeout_ms / 1000
        servers, _, chroot = hosts.partition("/")
        chroot = chroot.strip("/")
        if chroot:
            root = await cls._start(servers, token, session_timeout_ms, deadline, hosts)
            try:
                with trio.fail_at(deadline):
                    await root.create(f"/{chroot}", makepath=True)
            except ZkNodeExists:
                pass
            except trio.TooSlowError:
                raise ZkConnectionError(f"could not create chroot /{chroot} in time") from None
            finally:
                await root.close()
            hosts = f"{servers}/{chroot}"
        return await cls._start(hosts, token, session_timeout_ms, deadline, hosts)

    @classmethod
    async def _start(
        cls,
        hosts: str,
        token: trio.lowlevel.TrioToken,
        session_timeout_ms: int,
        deadline: float,
        shown: str,
    ) -> ZkClient:
        kazoo = await trio.to_thread.run_sync(
            partial(
                KazooClient,
                hosts=hosts,
                timeout=session_timeout_ms / 1000,
                connection_retry=dict(_CONNECTION_RETRY),
            )
        )
        client = cls(kazoo, token, hosts)
        kazoo.add_listener(client._on_kazoo_state)
        timeout = max(0.0, deadline - trio.current_time())
        try:
            await trio.to_thread.run_sync(kazoo.start, timeout)
        except KazooTimeoutError:  # kazoo has stopped itself
            raise ZkConnectionError(
                f"could not connect to ZooKeeper at {shown} in {timeout * 1000:.0f} ms"
            ) from None
        return client

    async def close(self) -> None:
        """End the session (its ephemerals go at once); idempotent, and done even if cancelled."""
        if self._closing:
            return
        self._closing = True
        self._watches.clear()
        self._state_callbacks.clear()
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._stop_kazoo)

    def _stop_kazoo(self) -> None:
        self._kazoo.stop()
        self._kazoo.close()

    async def __aenter__(self) -> ZkClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def session_id(self) -> int | None:
        """The current session's id (a znode's ``ephemeral_owner``), None before the first."""
        client_id = self._kazoo.client_id
        return None if client_id is None else int(client_id[0])

    @property
    def connected(self) -> bool:
        return bool(self._kazoo.connected)

    # -- requests --------------------------------------------------------------------------

    async def _wait(self, async_result: Any, path: str | None) -> Any:
        """Await a kazoo IAsyncResult without blocking trio's thread."""
        done = trio.Event()
        token = self._token

        def completed(_: object) -> None:  # kazoo's completion thread, or inline once stopped
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass

        async_result.rawlink(completed)
        await done.wait()
        try:
            return async_result.get(block=False)
        except KazooException as exc:
            raise _zk_error(exc, path) from None

    async def get(self, path: str) -> tuple[bytes, ZnodeStat] | None:
        """The data and stat, or None when the znode is absent."""
        try:
            data, stat = await self._wait(self._kazoo.get_async(path), path)
        except ZkNoNode:
            return None
        return bytes(data), ZnodeStat._of(stat)

    async def exists(self, path: str) -> ZnodeStat | None:
        stat = await self._wait(self._kazoo.exists_async(path), path)
        return None if stat is None else ZnodeStat._of(stat)

    async def get_children(self, path: str) -> list[str]:
        """Child names, sorted; [] when the znode is absent (as Kafka's ``getChildren``)."""
        try:
            children = await self._wait(self._kazoo.get_children_async(path), path)
        except ZkNoNode:
            return []
        return sorted(children)

    async def create(
        self,
        path: str,
        data: bytes = b"",
        *,
        ephemeral: bool = False,
        sequential: bool = False,
        makepath: bool = False,
    ) -> str:
        """Create a znode; returns its path (with the sequence number when ``sequential``)."""
        result = self._kazoo.create_async(
            path, data, ephemeral=ephemeral, sequence=sequential, makepath=makepath
        )
        return str(await self._wait(result, path))

    async def set(self, path: str, data: bytes, version: int = -1) -> ZnodeStat:
        """Set data, conditional on ``version`` unless it is -1; returns the new stat."""
        return ZnodeStat._of(await self._wait(self._kazoo.set_async(path, data, version), path))

    async def delete(self, path: str, version: int = -1, recursive: bool = False) -> None:
        """Delete a znode (ZkNoNode if absent); ``recursive`` deletes its subtree first, and
        ``version`` then applies to ``path`` itself."""
        if recursive:
            for child in await self.get_children(path):
                try:
                    await self.delete(_join(path, child), recursive=True)
                except ZkNoNode:
                    pass
        await self._wait(self._kazoo.delete_async(path, version), path)

    async def multi(self, ops: Sequence[Op]) -> list[OpResult]:
        """Commit ``ops`` atomically. On failure raises the failing op's error with its
        ``op_index`` (e.g. ZkBadVersion at index 0 for a failed check); nothing was applied."""
        tx = self._kazoo.transaction()
        for op in ops:
            if isinstance(op, CheckOp):
                tx.check(op.path, op.version)
            elif isinstance(op, CreateOp):
                tx.create(op.path, op.data, ephemeral=op.ephemeral, sequence=op.sequential)
            elif isinstance(op, SetOp):
                tx.set_data(op.path, op.data, op.version)
            else:
                tx.delete(op.path, op.version)
        shown = ops[0].path if ops else None
        results = list(await self._wait(tx.commit_async(), shown))
        failures = [(i, r) for i, r in enumerate(results) if isinstance(r, Exception)]
        if failures:
            rolled_back = (RolledBackError, RuntimeInconsistency)
            real = [(i, r) for i, r in failures if not isinstance(r, rolled_back)] or failures
            index, exc = real[0]
            raise _zk_error(exc, ops[index].path if index < len(ops) else None, index)
        return [
            OpResult(created_path=r) if isinstance(r, str)
            else OpResult(stat=ZnodeStat._of(r)) if isinstance(r, tuple)
            else OpResult()
            for r in results
        ]

    # -- watches and session state -----------------------------------------------------------

    async def watch_children(self, path: str, callback: Callable[[list[str]], None]) -> Watch:
        """Call ``callback(children)`` now and on every change ([] while ``path`` is absent)."""
        return await self._watch(path, True, callback)

    async def watch_data(
        self, path: str, callback: Callable[[bytes | None, ZnodeStat | None], None]
    ) -> Watch:
        """Call ``callback(data, stat)`` now and on every change ((None, None) while absent)."""
        return await self._watch(path, False, callback)

    async def _watch(self, path: str, children: bool, callback: Callable[..., None]) -> Watch:
        if self._closing:
            raise ZkClientClosed("client closed", path=path)
        watch = Watch(self, path, children, callback)
        self._watches.add(watch)
        try:
            await trio.to_thread.run_sync(partial(watch._refresh, event=False, initial=True))
        except BaseException:
            watch.cancel()
            raise
        return watch

    def on_state(self, callback: Callable[[SessionState], None]) -> Subscription:
        """Call ``callback(state)`` on the trio thread at each session state change:
        "suspended" (connection lost, session may live on), "expired" (session and its
        ephemerals gone; kazoo starts a new one) and "connected" (again)."""
        subscription = Subscription(self._state_callbacks, callback)
        self._state_callbacks.append(subscription)
        return subscription

    def _on_kazoo_state(self, state: str) -> None:  # kazoo's connection thread: never block
        if self._closing:
            return
        if state != KazooState.CONNECTED:
            self._generation += 1
        ours = _KAZOO_STATES.get(state)
        if ours is not None:
            self._kazoo.handler.dispatch_callback(
                Callback("state", self._to_trio, (self._dispatch_state, ours))
            )
        if state == KazooState.CONNECTED:
            self._kazoo.handler.spawn(self._rearm_watches)

    def _rearm_watches(self) -> None:  # a kazoo thread
        for watch in list(self._watches):
            watch._rearm()

    def _dispatch_state(self, state: SessionState) -> None:  # the trio thread
        for subscription in list(self._state_callbacks):
            if self._closing:
                return
            try:
                subscription.callback(state)
            except Exception:
                _log.exception("ZooKeeper state callback failed")

    def _to_trio(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the trio thread and wait for it (from a kazoo thread)."""
        try:
            trio.from_thread.run_sync(fn, *args, trio_token=self._token)
        except trio.RunFinishedError:  # trio's run is over: nobody left to tell
            pass


def _join(path: str, child: str) -> str:
    return f"{path.rstrip('/')}/{child}"
