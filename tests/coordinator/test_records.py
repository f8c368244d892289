"""__consumer_offsets records in Kafka's byte layout, and Kafka's group -> partition mapping."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from pykbroker.coordinator.group.offsets import OffsetAndMetadata
from pykbroker.coordinator.group.records import (
    GroupKey,
    GroupMetadataValue,
    MemberMetadata,
    OffsetKey,
    UnknownKey,
    decode_group_value,
    decode_key,
    decode_offset_value,
    group_key,
    group_value,
    java_string_hash,
    offset_key,
    offset_value,
    partition_for,
    subscribed_topics,
)
from pykbroker.protocol._generated.consumer_protocol_subscription import (
    ConsumerProtocolSubscription,
)


def s(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def test_java_string_hash_known_values() -> None:
    # Values from Java: "hello".hashCode(), the Integer.MIN_VALUE classic, collisions.
    assert java_string_hash("") == 0
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("polygenelubricants") == -(2**31)
    assert java_string_hash("Aa") == java_string_hash("BB") == 2112
    assert java_string_hash("abc") == 96354
    # UTF-16 code units, surrogate pairs included: "\U0001F600".hashCode() == 1772897.
    assert java_string_hash("\U0001f600") == 0xD83D * 31 + 0xDE00


def test_partition_for_uses_kafka_utils_abs() -> None:
    assert partition_for("hello", 50) == 99162322 % 50
    assert partition_for("polygenelubricants", 50) == 0  # Utils.abs(MIN_VALUE) == 0
    h = java_string_hash("my-group")
    assert partition_for("my-group", 50) == abs(h) % 50


def test_offset_commit_key_golden_bytes() -> None:
    key = offset_key("grp", "topic", 7)
    assert key == struct.pack(">h", 1) + s("grp") + s("topic") + struct.pack(">i", 7)
    assert decode_key(key) == OffsetKey("grp", "topic", 7)
    # Version 0 keys (old brokers) share the layout.
    assert decode_key(struct.pack(">h", 0) + key[2:]) == OffsetKey("grp", "topic", 7)


def test_offset_commit_value_v3_golden_bytes() -> None:
    om = OffsetAndMetadata(offset=42, leader_epoch=5, metadata="meta", commit_timestamp=1000)
    value = offset_value(om)
    assert value == (struct.pack(">hqi", 3, 42, 5) + s("meta") + struct.pack(">q", 1000))
    assert decode_offset_value(value) == om


def test_offset_commit_value_v1_keeps_expire_timestamp() -> None:
    om = OffsetAndMetadata(offset=1, metadata="", commit_timestamp=10, expire_timestamp=99)
    value = offset_value(om)
    assert value == struct.pack(">hq", 1, 1) + s("") + struct.pack(">qq", 10, 99)
    assert decode_offset_value(value) == om
    # v0: no leader epoch, no expire timestamp.
    v0 = struct.pack(">hq", 0, 9) + s("x") + struct.pack(">q", 5)
    assert decode_offset_value(v0) == OffsetAndMetadata(9, -1, "x", 5, None)


def test_group_metadata_golden_bytes() -> None:
    assert group_key("grp") == struct.pack(">h", 2) + s("grp")
    assert decode_key(group_key("grp")) == GroupKey("grp")
    value = GroupMetadataValue(
        protocol_type="consumer", generation=3, protocol="range", leader="m1",
        current_state_timestamp=1234,
        members=[MemberMetadata(member_id="m1", group_instance_id=None, client_id="c",
                                client_host="/127.0.0.1", rebalance_timeout=300000,
                                session_timeout=10000, subscription=b"\x00\x01",
                                assignment=b"\x02")])
    expected = (struct.pack(">h", 3) + s("consumer") + struct.pack(">i", 3) + s("range")
                + s("m1") + struct.pack(">q", 1234) + struct.pack(">i", 1)
                + s("m1") + struct.pack(">h", -1) + s("c") + s("/127.0.0.1")
                + struct.pack(">ii", 300000, 10000)
                + struct.pack(">i", 2) + b"\x00\x01" + struct.pack(">i", 1) + b"\x02")
    assert group_value(value) == expected
    assert decode_group_value(expected) == value


def test_unknown_key_versions_are_reported_not_failed() -> None:
    assert decode_key(struct.pack(">h", 3) + s("grp")) == UnknownKey(3)


@given(st.text(max_size=30), st.text(max_size=30), st.integers(0, 2**31 - 1),
       st.integers(-1, 2**63 - 1), st.integers(-1, 2**31 - 1), st.text(max_size=50),
       st.integers(0, 2**62))
def test_offset_round_trip(group: str, topic: str, partition: int, offset: int, epoch: int,
                           metadata: str, ts: int) -> None:
    assert decode_key(offset_key(group, topic, partition)) == OffsetKey(group, topic, partition)
    om = OffsetAndMetadata(offset, epoch, metadata, ts)
    assert decode_offset_value(offset_value(om)) == om


def test_subscribed_topics_reads_newer_versions_as_ours() -> None:
    sub = ConsumerProtocolSubscription(topics=["a", "b"], user_data=None)
    data = struct.pack(">h", 1) + sub.to_bytes(1)
    assert subscribed_topics(data) == {"a", "b"}
    # A version above ours (trailing fields we do not know) still yields the topics.
    v3 = struct.pack(">h", 9) + sub.to_bytes(3) + b"\x00\x00"
    assert subscribed_topics(v3) == {"a", "b"}
    assert subscribed_topics(b"\x00") is None
    assert subscribed_topics(b"\x00\x00\xff") is None
