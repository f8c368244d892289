"""Pytest fixtures for a real ZooKeeper: one server per test session, one chroot per test.

``zookeeper`` gives each test its own fresh chroot (``/t-<uuid>``), so tests share the
server's start-up cost but never its state; ``kazoo_client`` is a started client inside that
chroot. Without a ZooKeeper installation both skip, saying how to install one.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException

from pykbroker.metadata.zk.server import ZooKeeperNotFoundError, ZooKeeperServer, find_zookeeper

__all__ = ["ZooKeeperChroot", "kazoo_client", "zookeeper", "zookeeper_server"]


@dataclass(frozen=True)
class ZooKeeperChroot:
    """A test's private corner of the session's ZooKeeper."""

    server: ZooKeeperServer
    chroot: str

    @property
    def hosts(self) -> str:
        """A connect string that confines a client to the chroot (``127.0.0.1:port/t-..``)."""
        return f"{self.server.hosts}{self.chroot}"


@pytest.fixture(scope="session")
def zookeeper_server() -> Iterator[ZooKeeperServer]:
    try:
        installation = find_zookeeper()
    except ZooKeeperNotFoundError as exc:
        pytest.skip(str(exc))
    with ZooKeeperServer(installation=installation) as server:
        yield server


@pytest.fixture
def zookeeper(zookeeper_server: ZooKeeperServer) -> Iterator[ZooKeeperChroot]:
    chroot = f"/t-{uuid.uuid4().hex}"
    root = KazooClient(hosts=zookeeper_server.hosts)
    root.start(timeout=10)
    try:
        root.create(chroot)
        yield ZooKeeperChroot(zookeeper_server, chroot)
        with contextlib.suppress(KazooException):  # best effort: the chroot is unique anyway
            root.delete(chroot, recursive=True)
    finally:
        root.stop()
        root.close()


@pytest.fixture
def kazoo_client(zookeeper: ZooKeeperChroot) -> Iterator[KazooClient]:
    client = KazooClient(hosts=zookeeper.hosts)
    client.start(timeout=10)
    try:
        yield client
    finally:
        client.stop()
        client.close()
