"""Committed offsets and the rules that expire them (KIP-211).

Kept apart from the group state machine because offsets outlive generations: a group with
no members (a "simple" consumer, or one whose members all left) still owns its offsets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

NO_METADATA = ""
INVALID_OFFSET = -1
NO_LEADER_EPOCH = -1

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class OffsetAndMetadata:
    """One committed offset as OffsetCommitValue stores it."""

    offset: int
    leader_epoch: int = NO_LEADER_EPOCH
    metadata: str = NO_METADATA
    commit_timestamp: int = 0
    # Only v1 values carry one (OffsetCommit v2-v4 with an explicit retention time).
    expire_timestamp: int | None = None


def expired_offsets(
    offsets: Mapping[TopicPartition, OffsetAndMetadata],
    now_ms: int,
    retention_ms: int,
    base_timestamp: int | None,
    keep_topics: Iterable[str] = (),
) -> list[TopicPartition]:
    """Partitions whose offsets have expired, as Kafka's ``removeExpiredOffsets`` decides.

    ``base_timestamp`` is when the group became empty (None: each offset's commit time);
    an explicit expire timestamp (old v1 values) wins over the retention period. Topics in
    ``keep_topics`` (still subscribed by a stable group) never expire.
    """
    keep = set(keep_topics)
    out = []
    for tp, om in offsets.items():
        if tp[0] in keep:
            continue
        if om.expire_timestamp is not None:
            if now_ms >= om.expire_timestamp:
                out.append(tp)
            continue
        base = om.commit_timestamp if base_timestamp is None else base_timestamp
        if now_ms - base >= retention_ms:
            out.append(tp)
    return out
