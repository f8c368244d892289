"""``/feature``: the cluster's finalized feature levels (KIP-584), written by the controller.

A 3.9 controller creates it enabled at start-up (IBP >= 2.7) and brokers report its
contents as the finalized features of ApiVersions (ZkData ``FeatureZNode``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from pykbroker.metadata.zk.codec import JsonObject, dump_json

__all__ = ["FEATURE_STATUS_DISABLED", "FEATURE_STATUS_ENABLED", "FeatureZNode"]

FEATURE_STATUS_DISABLED: Final = 0
FEATURE_STATUS_ENABLED: Final = 1


@dataclass(frozen=True)
class FeatureZNode:
    """Version 2: ``{"features":{"f":{"max_version_level":2}},"version":2,"status":1}``.

    Version 1 (IBP < 3.3) also wrote ``min_version_level``, equal to the max.
    """

    features: Mapping[str, int] = field(default_factory=dict)
    status: int = FEATURE_STATUS_ENABLED
    version: int = 2

    @staticmethod
    def path() -> str:
        return "/feature"

    def to_json(self) -> bytes:
        """``FeatureZNode.encode``; keys in the order Kafka's HashMap writes them."""
        features: dict[str, dict[str, int]] = {}
        for name, level in self.features.items():
            levels = {"max_version_level": level}
            if self.version == 1:
                levels["min_version_level"] = level
            features[name] = levels
        return dump_json(
            [("features", features), ("version", self.version), ("status", self.status)]
        )

    @classmethod
    def from_json(cls, data: bytes) -> FeatureZNode:
        obj = JsonObject.parse(data, "feature znode")
        version = obj.get_int("version")
        if version not in (1, 2):
            raise obj.error(f"unsupported version {version}")
        status = obj.opt_int("status")
        if status not in (FEATURE_STATUS_DISABLED, FEATURE_STATUS_ENABLED):
            raise obj.error(f"status must be 0 or 1, not {status}")
        if obj.values.get("features") is None:
            raise obj.error("features can not be absent")
        features: dict[str, int] = {}
        for name, levels in obj.get_object("features").items():
            if not isinstance(levels, dict):
                raise obj.error(f"feature {name!r} must be a JSON object")
            entry = obj.child(f"features.{name}", levels)
            for key in levels:
                entry.get_int(key)  # Kafka reads the whole map as Map[String, Int]
            max_level = entry.get_int("max_version_level")
            if version == 1:
                min_level = entry.get_int("min_version_level")
                if min_level < 1 or max_level < min_level:
                    raise entry.error("expected 1 <= min_version_level <= max_version_level")
            if not 1 <= max_level <= 0x7FFF:
                raise entry.error(f"max_version_level must be in 1..32767, not {max_level}")
            features[name] = max_level
        return cls(features, status, version)
