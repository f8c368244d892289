"""Records of ``__consumer_offsets`` in Kafka's own formats, and which partition a group uses.

A record key is an int16 key version followed by the key struct (versions 0 and 1: an
offset commit, 2: group metadata; 3+ belong to KIP-848 and share groups); a value is an int16
value version followed by the value struct, and a null value is a tombstone. We write the
versions Kafka 3.9 writes (key 1, OffsetCommitValue 3 or 1 with an expire timestamp,
GroupMetadataValue 3) so a Kafka broker could load our log and the other way round.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pykbroker.coordinator.group.offsets import OffsetAndMetadata
from pykbroker.errors import DecodeError
from pykbroker.protocol._generated.consumer_protocol_subscription import (
    ConsumerProtocolSubscription,
)
from pykbroker.protocol._generated.internal_records.group_metadata_key import GroupMetadataKey
from pykbroker.protocol._generated.internal_records.group_metadata_value import (
    GroupMetadataValue,
    MemberMetadata,
)
from pykbroker.protocol._generated.internal_records.offset_commit_key import OffsetCommitKey
from pykbroker.protocol._generated.internal_records.offset_commit_value import (
    OffsetCommitValue,
)

__all__ = [
    "OFFSETS_TOPIC",
    "GroupKey",
    "GroupMetadataValue",
    "MemberMetadata",
    "OffsetKey",
    "UnknownKey",
    "decode_group_value",
    "decode_key",
    "decode_offset_value",
    "group_key",
    "group_value",
    "java_string_hash",
    "offset_key",
    "offset_value",
    "partition_for",
    "subscribed_topics",
]

OFFSETS_TOPIC = "__consumer_offsets"
OFFSET_COMMIT_KEY_VERSION = 1
GROUP_METADATA_KEY_VERSION = 2
OFFSET_COMMIT_VALUE_VERSION = 3
OFFSET_COMMIT_VALUE_VERSION_EXPIRE = 1
GROUP_METADATA_VALUE_VERSION = 3

_VERSION = struct.Struct(">h")
_INT_MIN = -(2**31)


def java_string_hash(s: str) -> int:
    """Java's ``String.hashCode`` (over UTF-16 code units, wrapping at 32 bits)."""
    data = s.encode("utf-16-be", "surrogatepass")
    h = 0
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] << 8 | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(group_id: str, num_partitions: int) -> int:
    """Kafka's ``Utils.abs(groupId.hashCode) % numPartitions`` (abs(MIN_VALUE) is 0)."""
    h = java_string_hash(group_id)
    return (0 if h == _INT_MIN else abs(h)) % num_partitions


# ------------------------------------------------------------------------------------ keys


@dataclass(frozen=True, slots=True)
class OffsetKey:
    group: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class GroupKey:
    group: str


@dataclass(frozen=True, slots=True)
class UnknownKey:
    """A key version this coordinator does not replay yet (KIP-848 or share groups)."""

    version: int


def offset_key(group: str, topic: str, partition: int) -> bytes:
    return _VERSION.pack(OFFSET_COMMIT_KEY_VERSION) + OffsetCommitKey(
        group, topic, partition).to_bytes(OFFSET_COMMIT_KEY_VERSION)


def group_key(group: str) -> bytes:
    return _VERSION.pack(GROUP_METADATA_KEY_VERSION) + GroupMetadataKey(group).to_bytes(
        GROUP_METADATA_KEY_VERSION)


def decode_key(data: bytes) -> OffsetKey | GroupKey | UnknownKey:
    if len(data) < 2:
        raise DecodeError("record key shorter than its version")
    (version,) = _VERSION.unpack_from(data, 0)
    if version in (0, 1):
        k, _ = OffsetCommitKey.decode(data, 2, version)
        return OffsetKey(k.group, k.topic, k.partition)
    if version == GROUP_METADATA_KEY_VERSION:
        g, _ = GroupMetadataKey.decode(data, 2, version)
        return GroupKey(g.group)
    return UnknownKey(version)


# ---------------------------------------------------------------------------------- values


def offset_value(om: OffsetAndMetadata) -> bytes:
    """Version 1 only when an explicit expire timestamp must be kept, else 3 (as Kafka)."""
    if om.expire_timestamp is not None:
        version = OFFSET_COMMIT_VALUE_VERSION_EXPIRE
        value = OffsetCommitValue(offset=om.offset, metadata=om.metadata,
                                  commit_timestamp=om.commit_timestamp,
                                  expire_timestamp=om.expire_timestamp)
    else:
        version = OFFSET_COMMIT_VALUE_VERSION
        value = OffsetCommitValue(offset=om.offset, leader_epoch=om.leader_epoch,
                                  metadata=om.metadata, commit_timestamp=om.commit_timestamp)
    return _VERSION.pack(version) + value.to_bytes(version)


def decode_offset_value(data: bytes) -> OffsetAndMetadata:
    version = _value_version(data, OffsetCommitValue.MAX_VERSION)
    v, _ = OffsetCommitValue.decode(data, 2, version)
    return OffsetAndMetadata(
        offset=v.offset,
        leader_epoch=v.leader_epoch if version >= 3 else -1,
        metadata=v.metadata,
        commit_timestamp=v.commit_timestamp,
        expire_timestamp=v.expire_timestamp if version == 1 and v.expire_timestamp != -1
        else None,
    )


def group_value(value: GroupMetadataValue) -> bytes:
    return _VERSION.pack(GROUP_METADATA_VALUE_VERSION) + value.to_bytes(
        GROUP_METADATA_VALUE_VERSION)


def decode_group_value(data: bytes) -> GroupMetadataValue:
    version = _value_version(data, GroupMetadataValue.MAX_VERSION)
    v, _ = GroupMetadataValue.decode(data, 2, version)
    return v


def _value_version(data: bytes, highest: int) -> int:
    if len(data) < 2:
        raise DecodeError("record value shorter than its version")
    (version,) = _VERSION.unpack_from(data, 0)
    if not 0 <= version <= highest:
        raise DecodeError(f"unknown value version {version}")
    return int(version)


# ------------------------------------------------------------------ the consumer protocol


def subscribed_topics(metadata: bytes) -> set[str] | None:
    """Topics in a "consumer" member's subscription, None when it cannot be parsed.

    Newer clients may send a version above ours; like Kafka's ConsumerProtocol we read it as
    our highest version, since later versions only add trailing fields.
    """
    if len(metadata) < 2:
        return None
    (version,) = _VERSION.unpack_from(metadata, 0)
    if version < 0:
        return None
    version = min(version, ConsumerProtocolSubscription.MAX_VERSION)
    try:
        sub, _ = ConsumerProtocolSubscription.decode(metadata, 2, version)
    except DecodeError:
        return None
    return set(sub.topics)
