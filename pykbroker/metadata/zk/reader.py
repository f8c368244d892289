"""A synchronous, read-only look at a cluster's znodes, for test tooling.

``pykbroker.cluster_testing`` (the ``kafka_cluster`` fixture) reads the controller, broker
registrations and partition states straight from ZooKeeper from plain Python threads; only
this package talks to kazoo (tests/metadata/test_kazoo_boundary.py), so the reading lives here.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

__all__ = ["ZkReader"]


class ZkReader:
    """kazoo's blocking client inside one chroot; every read answers None / [] for a
    missing znode."""

    def __init__(self, hosts: str, timeout: float = 10.0) -> None:
        self._client = KazooClient(hosts=hosts)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "No chroot path exists")
            self._client.start(timeout=timeout)

    def json(self, path: str) -> Any:
        try:
            data, _ = self._client.get(path)
        except NoNodeError:
            return None
        return json.loads(data)

    def children(self, path: str) -> list[str]:
        try:
            return list(self._client.get_children(path))
        except NoNodeError:
            return []

    def close(self) -> None:
        self._client.stop()
        self._client.close()
