"""Consumer groups: the classic protocol, with state replayed from ``__consumer_offsets``."""

from pykbroker.coordinator.group.classic import ClassicGroup, GroupState, JoinResult, SyncResult
from pykbroker.coordinator.group.coordinator import (
    GroupCoordinator,
    GroupDescription,
    GroupListing,
    MemberDescription,
)
from pykbroker.coordinator.group.join import JoinRequest
from pykbroker.coordinator.group.manager import GroupConfig
from pykbroker.coordinator.group.offsets import OffsetAndMetadata
from pykbroker.coordinator.group.records import OFFSETS_TOPIC, partition_for

__all__ = [
    "OFFSETS_TOPIC",
    "ClassicGroup",
    "GroupConfig",
    "GroupCoordinator",
    "GroupDescription",
    "GroupListing",
    "GroupState",
    "JoinRequest",
    "JoinResult",
    "MemberDescription",
    "OffsetAndMetadata",
    "SyncResult",
    "partition_for",
]
