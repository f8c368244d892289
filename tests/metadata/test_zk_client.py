"""ZkClient against a real ZooKeeper: raw ops and their errors, watches delivered on the trio
thread, and both surviving a session expiry."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest
import trio
from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss, SessionExpiredError

from pykbroker.metadata.zk.client import (
    CheckOp,
    CreateOp,
    DeleteOp,
    SetOp,
    ZkBadVersion,
    ZkClient,
    ZkClientClosed,
    ZkConnectionError,
    ZkConnectionLoss,
    ZkNodeExists,
    ZkNoNode,
    ZkNotEmpty,
    ZkSessionExpired,
    _zk_error,
)
from tests.zk_fixtures import ZooKeeperChroot

TIMEOUTS: dict[str, Any] = {"session_timeout_ms": 6000, "connection_timeout_ms": 10_000}


async def connect(hosts: str) -> ZkClient:
    return await ZkClient.connect(hosts, **TIMEOUTS)


class Calls:
    """A callback that records its arguments and whether it ran on the test's trio thread."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.on_trio_thread: list[bool] = []
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.get_ident()
        self._changed = trio.Event()

    def __call__(self, *args: Any) -> None:
        try:
            same_run = trio.lowlevel.current_trio_token() is self._token
        except RuntimeError:
            same_run = False
        self.on_trio_thread.append(same_run and threading.get_ident() == self._thread)
        self.values.append(args[0] if len(args) == 1 else args)
        self._changed.set()
        self._changed = trio.Event()

    async def until(self, predicate: Callable[[list[Any]], bool], timeout: float = 10) -> None:
        with trio.fail_after(timeout):
            while not predicate(self.values):
                await self._changed.wait()
        assert all(self.on_trio_thread)


class FailingCalls(Calls):
    def __call__(self, *args: Any) -> None:
        super().__call__(*args)
        raise RuntimeError("a failing callback is logged, not fatal")


async def expire_session(zk: ZkClient, server_hosts: str) -> None:
    """The standard trick: attach a second client to the session, then close it there."""
    session_id, password = zk._kazoo.client_id

    def attach_and_close() -> None:
        other = KazooClient(hosts=server_hosts, client_id=(session_id, password))
        other.start(timeout=10)
        other.stop()
        other.close()

    await trio.to_thread.run_sync(attach_and_close)


@pytest.mark.trio
async def test_connect_creates_the_chroot(zookeeper: ZooKeeperChroot) -> None:
    async with await connect(f"{zookeeper.hosts}/kafka/nested") as zk:
        assert zk.connected and zk.session_id
        await zk.create("/marker", b"here")
    async with await connect(zookeeper.hosts) as outside:
        got = await outside.get("/kafka/nested/marker")
        assert got is not None and got[0] == b"here"
    async with await connect(f"{zookeeper.hosts}/kafka/nested/") as again:  # now it exists
        assert await again.get_children("/") == ["marker"]


@pytest.mark.trio
async def test_connect_times_out_when_nothing_listens() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    began = trio.current_time()
    with pytest.raises(ZkConnectionError, match=f"127.0.0.1:{port}"):
        await ZkClient.connect(
            f"127.0.0.1:{port}/kafka", session_timeout_ms=6000, connection_timeout_ms=500
        )
    assert trio.current_time() - began < 2.5


@pytest.mark.trio
async def test_raw_ops_and_their_errors(zookeeper: ZooKeeperChroot) -> None:
    async with await connect(zookeeper.hosts) as zk:
        assert await zk.get("/a") is None
        assert await zk.exists("/a") is None
        assert await zk.get_children("/a") == []  # absent reads as empty, as Kafka's
        assert await zk.create("/a", b"1") == "/a"
        data, stat = await zk.get("/a") or (b"", None)
        assert data == b"1" and stat is not None and stat.version == 0
        assert stat.ephemeral_owner == 0 and stat.num_children == 0 and stat.czxid == stat.mzxid

        with pytest.raises(ZkNodeExists) as exists:
            await zk.create("/a")
        assert exists.value.path == "/a"
        with pytest.raises(ZkNoNode):
            await zk.create("/missing/child")
        assert await zk.create("/deep/er/node", makepath=True) == "/deep/er/node"

        new = await zk.set("/a", b"2", version=0)
        assert new.version == 1 and new.mzxid > stat.mzxid and new.czxid == stat.czxid
        with pytest.raises(ZkBadVersion):
            await zk.set("/a", b"3", version=0)
        with pytest.raises(ZkNoNode):
            await zk.set("/missing", b"")

        ephemeral = await zk.create("/a/e", ephemeral=True)
        owner = await zk.exists(ephemeral)
        assert owner is not None and owner.ephemeral_owner == zk.session_id
        first = await zk.create("/a/seq-", sequential=True)
        second = await zk.create("/a/seq-", sequential=True)
        assert (first, second) == ("/a/seq-0000000001", "/a/seq-0000000002")
        assert await zk.get_children("/a") == ["e", "seq-0000000001", "seq-0000000002"]
        parent = await zk.exists("/a")
        assert parent is not None and parent.num_children == 3

        with pytest.raises(ZkNotEmpty):
            await zk.delete("/a")
        with pytest.raises(ZkBadVersion):
            await zk.delete("/a/e", version=5)
        await zk.delete("/a/e", version=0)
        with pytest.raises(ZkNoNode):
            await zk.delete("/a/e")
        await zk.delete("/deep", recursive=True)
        await zk.delete("/a", recursive=True)
        assert await zk.get_children("/") == []
    with pytest.raises(ZkClientClosed):
        await zk.get("/")


@pytest.mark.trio
async def test_multi_commits_all_or_nothing(zookeeper: ZooKeeperChroot) -> None:
    async with await connect(zookeeper.hosts) as zk:
        await zk.create("/m", b"0")
        results = await zk.multi(
            [CheckOp("/m", 0), CreateOp("/m/c", b"x", sequential=True), SetOp("/m", b"1", 0)]
        )
        assert results[0].created_path is None and results[0].stat is None
        assert results[1].created_path == "/m/c0000000000"
        assert results[2].stat is not None and results[2].stat.version == 1

        with pytest.raises(ZkBadVersion) as failed:
            await zk.multi([CheckOp("/m", 0), CreateOp("/m/d")])
        assert failed.value.op_index == 0
        with pytest.raises(ZkNodeExists) as failed_create:
            await zk.multi([CreateOp("/m/e"), CreateOp("/m/e")])
        assert failed_create.value.op_index == 1
        assert await zk.get_children("/m") == ["c0000000000"]  # nothing of either applied

        await zk.multi([DeleteOp("/m/c0000000000"), DeleteOp("/m", 1)])
        assert await zk.exists("/m") is None


def test_kazoo_errors_map_to_ours() -> None:
    """The two errors a healthy test server cannot produce on demand."""
    expired = _zk_error(SessionExpiredError(), "/p")
    lost = _zk_error(ConnectionLoss(), "/p", 2)
    assert isinstance(expired, ZkSessionExpired) and expired.path == "/p"
    assert isinstance(lost, ZkConnectionLoss) and lost.op_index == 2


@pytest.mark.trio
async def test_watches_fire_on_the_trio_thread(zookeeper: ZooKeeperChroot) -> None:
    async with await connect(zookeeper.hosts) as zk:
        children, data = Calls(), Calls()
        await zk.watch_children("/w", children)
        await zk.watch_data("/w", data)
        # Called at registration with the current value: the znode is absent.
        assert children.values == [[]] and data.values == [(None, None)]

        await zk.create("/w", b"v0")
        await data.until(lambda v: v[-1][0] == b"v0")
        await zk.create("/w/a")
        await children.until(lambda v: v[-1] == ["a"])
        await zk.set("/w", b"v1")
        await data.until(lambda v: v[-1][0] == b"v1" and v[-1][1].version == 1)
        await zk.create("/w/b")
        await children.until(lambda v: v[-1] == ["a", "b"])
        await zk.delete("/w/a")
        await children.until(lambda v: v[-1] == ["b"])
        await zk.delete("/w", recursive=True)
        await data.until(lambda v: v[-1] == (None, None))
        await children.until(lambda v: v[-1] == [] and len(v) > 4)
        await zk.create("/w/again", makepath=True)  # watched while absent: still armed
        await children.until(lambda v: v[-1] == ["again"])
        await data.until(lambda v: v[-1][0] == b"")


@pytest.mark.trio
async def test_cancelled_watch_and_failing_callback(zookeeper: ZooKeeperChroot) -> None:
    async with await connect(zookeeper.hosts) as zk:
        cancelled, after, failing = Calls(), Calls(), FailingCalls()
        handle = await zk.watch_children("/c", cancelled)
        await zk.watch_children("/c", failing)
        await zk.watch_children("/c", after)
        handle.cancel()
        await zk.create("/c/x", makepath=True)
        await after.until(lambda v: v[-1] == ["x"])
        await zk.create("/c/y")
        await after.until(lambda v: v[-1] == ["x", "y"])
        await failing.until(lambda v: v[-1] == ["x", "y"])  # its exceptions were only logged
        assert cancelled.values == [[]]


@pytest.mark.trio
async def test_watches_and_state_survive_session_expiry(zookeeper: ZooKeeperChroot) -> None:
    async with await connect(zookeeper.hosts) as zk, await connect(zookeeper.hosts) as other:
        states, children, data = Calls(), Calls(), Calls()
        zk.on_state(states)
        await zk.create("/live", b"before")
        await zk.create("/live/mine", ephemeral=True)
        await zk.watch_children("/live", children)
        await zk.watch_data("/live", data)
        assert children.values == [["mine"]] and data.values[0][0] == b"before"
        old_session = zk.session_id

        await expire_session(zk, zookeeper.server.hosts)
        await states.until(lambda v: "expired" in v and v[-1] == "connected")
        expired_at = states.values.index("expired")
        assert "suspended" in states.values[:expired_at]  # the connection dropped first
        assert zk.session_id not in (None, old_session)
        # The old session's ephemeral is gone, and the re-armed watch reported it.
        await children.until(lambda v: v[-1] == [])
        assert await other.get_children("/live") == []

        # Re-armed on the new session: later changes, by anyone, still arrive.
        await other.create("/live/theirs")
        await children.until(lambda v: v[-1] == ["theirs"])
        await other.set("/live", b"after")
        await data.until(lambda v: v[-1][0] == b"after")
        await zk.create("/live/mine", ephemeral=True)
        await children.until(lambda v: v[-1] == ["mine", "theirs"])
