"""KIP-848 records of ``__consumer_offsets`` (key versions 3-8) in Kafka's formats.

A key is an int16 record type (3: group metadata, 4: partition metadata, 5: member metadata,
6: target assignment metadata, 7: target assignment member, 8: current member assignment)
followed by the key struct at that version; a value is int16 version 0 followed by the value
struct, a null value being a tombstone. :func:`group_records` renders a whole group as these
records; :func:`replay` applies one of them to a dict of groups.
"""

from __future__ import annotations

import logging
import struct
import uuid
from collections.abc import Callable

from pykbroker.coordinator.group.assignors import Assignment
from pykbroker.coordinator.group.consumer_group import (
    ConsumerGroup,
    ConsumerMember,
    MemberState,
)
from pykbroker.errors import DecodeError, KafkaError
from pykbroker.protocol._generated.internal_records import (
    consumer_group_current_member_assignment_key as cma_key,
)
from pykbroker.protocol._generated.internal_records import (
    consumer_group_current_member_assignment_value as cma_value,
)
from pykbroker.protocol._generated.internal_records import (
    consumer_group_member_metadata_key as mm_key,
)
from pykbroker.protocol._generated.internal_records import (
    consumer_group_member_metadata_value as mm_value,
)
from pykbroker.protocol._generated.internal_records import (
    consumer_group_metadata_key as gm_key,
)
from pykbroker.protocol._generated.internal_records import (
    consumer_group_metadata_value as gm_value,
)
from pykbroker.protocol._generated.internal_records import (
    consumer_group_partition_metadata_key as pm_key,
)
from pykbroker.protocol._generated.internal_records import (
    consumer_group_partition_metadata_value as pm_value,
)
from pykbroker.protocol._generated.internal_records import (
    consumer_group_target_assignment_member_key as tm_key,
)
from pykbroker.protocol._generated.internal_records import (
    consumer_group_target_assignment_member_value as tm_value,
)
from pykbroker.protocol._generated.internal_records import (
    consumer_group_target_assignment_metadata_key as ta_key,
)
from pykbroker.protocol._generated.internal_records import (
    consumer_group_target_assignment_metadata_value as ta_value,
)

log = logging.getLogger("pykbroker.coordinator.group.consumer")

Record = tuple[bytes, bytes | None]

GROUP_METADATA = 3
PARTITION_METADATA = 4
MEMBER_METADATA = 5
TARGET_METADATA = 6
TARGET_MEMBER = 7
CURRENT_ASSIGNMENT = 8
KEY_VERSIONS = range(GROUP_METADATA, CURRENT_ASSIGNMENT + 1)

_VERSION = struct.Struct(">h")
# Kafka's MemberState values
_STATE_CODES = {MemberState.STABLE: 1, MemberState.UNREVOKED_PARTITIONS: 2,
                MemberState.UNRELEASED_PARTITIONS: 3}
_STATES = {v: k for k, v in _STATE_CODES.items()}


def _key(version: int, body: bytes) -> bytes:
    return _VERSION.pack(version) + body


def _value(body: bytes) -> bytes:
    return _VERSION.pack(0) + body


def group_key(group_id: str) -> bytes:
    return _key(GROUP_METADATA, gm_key.ConsumerGroupMetadataKey(group_id).to_bytes(3))


def member_keys(group_id: str, member_id: str) -> list[bytes]:
    return [
        _key(MEMBER_METADATA, mm_key.ConsumerGroupMemberMetadataKey(group_id, member_id)
             .to_bytes(MEMBER_METADATA)),
        _key(TARGET_MEMBER, tm_key.ConsumerGroupTargetAssignmentMemberKey(group_id, member_id)
             .to_bytes(TARGET_MEMBER)),
        _key(CURRENT_ASSIGNMENT, cma_key.ConsumerGroupCurrentMemberAssignmentKey(
            group_id, member_id).to_bytes(CURRENT_ASSIGNMENT)),
    ]


def _sorted(a: Assignment) -> list[tuple[uuid.UUID, list[int]]]:
    return [(t, sorted(p)) for t, p in sorted(a.items(), key=lambda kv: str(kv[0])) if p]


def group_records(group: ConsumerGroup) -> dict[bytes, bytes]:
    """Every record describing ``group`` now, by key (Kafka writes members before the
    group, and the target assignment before its metadata; replay does not depend on it)."""
    gid = group.group_id
    out: dict[bytes, bytes] = {}
    for mid, m in group.members.items():
        meta_k, target_k, current_k = member_keys(gid, mid)
        out[meta_k] = _value(mm_value.ConsumerGroupMemberMetadataValue(
            instance_id=m.instance_id, rack_id=m.rack_id, client_id=m.client_id,
            client_host=m.client_host, subscribed_topic_names=list(m.subscribed_topic_names),
            subscribed_topic_regex=m.subscribed_topic_regex,
            rebalance_timeout_ms=m.rebalance_timeout_ms, server_assignor=m.server_assignor,
            classic_member_metadata=None).to_bytes(0))
        out[target_k] = _value(tm_value.ConsumerGroupTargetAssignmentMemberValue(
            topic_partitions=[tm_value.TopicPartition(t, p) for t, p in
                              _sorted(group.target.get(mid, {}))]).to_bytes(0))
        out[current_k] = _value(cma_value.ConsumerGroupCurrentMemberAssignmentValue(
            member_epoch=m.member_epoch, previous_member_epoch=m.previous_member_epoch,
            state=_STATE_CODES[m.state],
            assigned_partitions=[cma_value.TopicPartitions(t, p)
                                 for t, p in _sorted(m.assigned)],
            partitions_pending_revocation=[cma_value.TopicPartitions(t, p)
                                           for t, p in _sorted(m.pending_revocation)],
        ).to_bytes(0))
    out[_key(PARTITION_METADATA, pm_key.ConsumerGroupPartitionMetadataKey(gid).to_bytes(4))] = \
        _value(pm_value.ConsumerGroupPartitionMetadataValue(topics=[
            pm_value.TopicMetadata(topic_id=tid, topic_name=name, num_partitions=n,
                                   partition_metadata=[])
            for name, (tid, n) in sorted(group.subscription_metadata.items())]).to_bytes(0))
    out[_key(TARGET_METADATA, ta_key.ConsumerGroupTargetAssignmentMetadataKey(gid)
             .to_bytes(6))] = _value(ta_value.ConsumerGroupTargetAssignmentMetadataValue(
                 assignment_epoch=group.assignment_epoch).to_bytes(0))
    out[group_key(gid)] = _value(gm_value.ConsumerGroupMetadataValue(
        epoch=group.group_epoch).to_bytes(0))
    return out


def _assignment(parts: list[tuple[uuid.UUID, list[int]]]) -> Assignment:
    return {t: set(p) for t, p in parts if p}


def _member(group: ConsumerGroup, member_id: str) -> ConsumerMember:
    member = group.members.get(member_id)
    if member is None:
        member = group.members[member_id] = ConsumerMember(member_id=member_id)
    return member


def replay(groups: dict[str, ConsumerGroup], key: bytes, value: bytes | None) -> str | None:
    """Apply one KIP-848 record; returns the group it touched (None: not such a record)."""
    if len(key) < 2:
        raise DecodeError("record key shorter than its version")
    (version,) = _VERSION.unpack_from(key, 0)
    if version not in KEY_VERSIONS:
        return None
    if value is not None and (len(value) < 2 or _VERSION.unpack_from(value, 0)[0] != 0):
        raise DecodeError("unknown consumer group record value version")
    if version == GROUP_METADATA:
        gk, _ = gm_key.ConsumerGroupMetadataKey.decode(key, 2, version)
        if value is None:
            groups.pop(gk.group_id, None)
            return gk.group_id
        gv, _ = gm_value.ConsumerGroupMetadataValue.decode(value, 2, 0)
        groups.setdefault(gk.group_id, ConsumerGroup(gk.group_id)).group_epoch = gv.epoch
        return gk.group_id
    if version == PARTITION_METADATA:
        pk, _ = pm_key.ConsumerGroupPartitionMetadataKey.decode(key, 2, version)
        group = groups.setdefault(pk.group_id, ConsumerGroup(pk.group_id))
        if value is not None:
            pv, _ = pm_value.ConsumerGroupPartitionMetadataValue.decode(value, 2, 0)
            group.subscription_metadata = {t.topic_name: (t.topic_id, t.num_partitions)
                                           for t in pv.topics}
        return pk.group_id
    if version == TARGET_METADATA:
        tk, _ = ta_key.ConsumerGroupTargetAssignmentMetadataKey.decode(key, 2, version)
        group = groups.setdefault(tk.group_id, ConsumerGroup(tk.group_id))
        if value is not None:
            tv, _ = ta_value.ConsumerGroupTargetAssignmentMetadataValue.decode(value, 2, 0)
            group.assignment_epoch = tv.assignment_epoch
        return tk.group_id
    # member records: 5, 7, 8
    if version == MEMBER_METADATA:
        k5, _ = mm_key.ConsumerGroupMemberMetadataKey.decode(key, 2, version)
        gid, mid = k5.group_id, k5.member_id
    elif version == TARGET_MEMBER:
        k7, _ = tm_key.ConsumerGroupTargetAssignmentMemberKey.decode(key, 2, version)
        gid, mid = k7.group_id, k7.member_id
    else:
        k8, _ = cma_key.ConsumerGroupCurrentMemberAssignmentKey.decode(key, 2, version)
        gid, mid = k8.group_id, k8.member_id
    group = groups.setdefault(gid, ConsumerGroup(gid))
    if value is None:
        if version == MEMBER_METADATA:
            member = group.members.pop(mid, None)
            if member is not None and member.instance_id is not None:
                group.static_members.pop(member.instance_id, None)
        elif version == TARGET_MEMBER:
            group.target.pop(mid, None)
        return gid
    if version == MEMBER_METADATA:
        mv, _ = mm_value.ConsumerGroupMemberMetadataValue.decode(value, 2, 0)
        m = _member(group, mid)
        m.instance_id, m.rack_id = mv.instance_id, mv.rack_id
        m.client_id, m.client_host = mv.client_id, mv.client_host
        m.subscribed_topic_names = list(mv.subscribed_topic_names)
        m.subscribed_topic_regex = mv.subscribed_topic_regex or None
        m.rebalance_timeout_ms = mv.rebalance_timeout_ms
        m.server_assignor = mv.server_assignor or None
        if m.instance_id is not None:
            group.static_members[m.instance_id] = mid
    elif version == TARGET_MEMBER:
        tmv, _ = tm_value.ConsumerGroupTargetAssignmentMemberValue.decode(value, 2, 0)
        group.target[mid] = _assignment([(tp.topic_id, list(tp.partitions))
                                         for tp in tmv.topic_partitions])
    else:
        cv, _ = cma_value.ConsumerGroupCurrentMemberAssignmentValue.decode(value, 2, 0)
        m = _member(group, mid)
        m.member_epoch, m.previous_member_epoch = cv.member_epoch, cv.previous_member_epoch
        m.state = _STATES.get(cv.state, MemberState.STABLE)
        m.assigned = _assignment([(tp.topic_id, list(tp.partitions))
                                  for tp in cv.assigned_partitions])
        m.pending_revocation = _assignment([(tp.topic_id, list(tp.partitions))
                                            for tp in cv.partitions_pending_revocation])
    return gid


class ConsumerGroupStore:
    """Writes what changed in a group since its last write (tombstones for what is gone).

    A failed append is logged and the group stays in memory as it is: the next change
    writes the difference again.
    """

    def __init__(self, append: Callable[[str, list[Record]], object]) -> None:
        self.append = append
        self.written: dict[str, dict[bytes, bytes]] = {}

    def store(self, group: ConsumerGroup) -> None:
        now = group_records(group)
        old = self.written.get(group.group_id, {})
        records: list[Record] = [(k, None) for k in old if k not in now]
        records += [(k, v) for k, v in now.items() if old.get(k) != v]
        if not records:
            return
        # Tombstones first, the group metadata record last (as Kafka orders them).
        records.sort(key=lambda r: (r[1] is not None, r[0][:2] == _VERSION.pack(3)))
        try:
            self.append(group.group_id, records)
        except KafkaError as exc:
            log.warning("could not write consumer group %s: %s", group.group_id, exc)
            return
        self.written[group.group_id] = now

    def delete(self, group_id: str) -> None:
        """Tombstone every record written for the group."""
        old = self.written.pop(group_id, {})
        if old:
            try:
                self.append(group_id, [(k, None) for k in old])
            except KafkaError as exc:
                log.warning("could not delete consumer group %s: %s", group_id, exc)

    def loaded(self, groups: dict[str, ConsumerGroup]) -> None:
        self.written = {gid: group_records(g) for gid, g in groups.items()}
