"""``/cluster/id``: the cluster id every broker of the cluster shares (ZkData ``ClusterIdZNode``).

The first broker to start creates it; later brokers read it and compare it with their
``meta.properties``. Kafka writes ``"version"`` as the string ``"1"`` and never reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pykbroker.metadata.zk.codec import JsonObject, dump_json

__all__ = ["CLUSTER_PATH", "ClusterId"]

CLUSTER_PATH: Final = "/cluster"


@dataclass(frozen=True)
class ClusterId:
    """``{"version":"1","id":"<22-char Kafka uuid>"}``."""

    id: str

    @staticmethod
    def path() -> str:
        return f"{CLUSTER_PATH}/id"

    def to_json(self) -> bytes:
        return dump_json([("version", "1"), ("id", self.id)])

    @classmethod
    def from_json(cls, data: bytes) -> ClusterId:
        return cls(JsonObject.parse(data, "cluster id znode").get_str("id"))
