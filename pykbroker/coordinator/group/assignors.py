"""Server-side partition assignors for KIP-848 consumer groups ("uniform" and "range").

Pure functions over plain values: each member's subscribed topic ids and its current target
assignment in, the new target assignment out. Like Kafka's UniformAssignor the uniform
assignor is sticky (a partition stays with its owner while balance allows) and balances the
partition counts per member to within one where subscriptions allow; the range assignor gives
each member a contiguous range of every topic it subscribes to (members ordered by id),
keeping a member's existing ranges when the member count is unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

Assignment = dict[uuid.UUID, set[int]]
TopicPartition = tuple[uuid.UUID, int]

__all__ = [
    "Assignment",
    "Assignor",
    "MemberSpec",
    "RangeAssignor",
    "UniformAssignor",
    "assignor_name",
    "make_assignors",
]


@dataclass(slots=True)
class MemberSpec:
    subscribed: set[uuid.UUID]
    current: Assignment = field(default_factory=dict)


class Assignor(Protocol):
    name: str

    def assign(self, members: Mapping[str, MemberSpec], topics: Mapping[uuid.UUID, int]
               ) -> dict[str, Assignment]: ...


def _to_assignment(parts: set[TopicPartition]) -> Assignment:
    out: Assignment = {}
    for topic_id, p in parts:
        out.setdefault(topic_id, set()).add(p)
    return out


class UniformAssignor:
    name = "uniform"

    def assign(self, members: Mapping[str, MemberSpec], topics: Mapping[uuid.UUID, int]
               ) -> dict[str, Assignment]:
        order = sorted(members)
        eligible: dict[TopicPartition, list[str]] = {}
        for topic_id in sorted(topics, key=str):
            subs = [m for m in order if topic_id in members[m].subscribed]
            if subs:
                for p in range(topics[topic_id]):
                    eligible[(topic_id, p)] = subs
        owned: dict[str, set[TopicPartition]] = {m: set() for m in order}
        owner: dict[TopicPartition, str] = {}
        # Stickiness: keep every still-valid current partition to start with.
        for m in order:
            for topic_id, parts in members[m].current.items():
                for p in parts:
                    tp = (topic_id, p)
                    if m in eligible.get(tp, ()) and tp not in owner:
                        owner[tp] = m
                        owned[m].add(tp)
        # Members holding more than the (homogeneous) ceiling give back the excess first.
        if order and eligible:
            total = len(eligible)
            ceiling = -(-total // len(order))
            for m in order:
                excess = len(owned[m]) - ceiling
                for tp in sorted(owned[m], key=lambda t: (str(t[0]), t[1]), reverse=True):
                    if excess <= 0:
                        break
                    if len(eligible[tp]) == len(order):
                        owned[m].discard(tp)
                        del owner[tp]
                        excess -= 1
        # New partitions go to the least loaded eligible member.
        for tp, subs in eligible.items():
            if tp not in owner:
                m = min(subs, key=lambda x: (len(owned[x]), x))
                owner[tp] = m
                owned[m].add(tp)
        # Then move partitions from loaded members to lighter eligible ones until balanced.
        moved = True
        while moved:
            moved = False
            for m in sorted(order, key=lambda x: (-len(owned[x]), x)):
                for tp in sorted(owned[m], key=lambda t: (str(t[0]), t[1]), reverse=True):
                    target = min(eligible[tp], key=lambda x: (len(owned[x]), x))
                    if len(owned[target]) + 1 < len(owned[m]):
                        owned[m].discard(tp)
                        owned[target].add(tp)
                        owner[tp] = target
                        moved = True
                        break
                if moved:
                    break
        return {m: _to_assignment(owned[m]) for m in order}


class RangeAssignor:
    name = "range"

    def assign(self, members: Mapping[str, MemberSpec], topics: Mapping[uuid.UUID, int]
               ) -> dict[str, Assignment]:
        out: dict[str, Assignment] = {m: {} for m in members}
        for topic_id, count in topics.items():
            subs = sorted(m for m in members if topic_id in members[m].subscribed)
            if not subs:
                continue
            quota, extra = divmod(count, len(subs))
            start = 0
            for i, m in enumerate(subs):
                n = quota + (1 if i < extra else 0)
                if n:
                    out[m][topic_id] = set(range(start, start + n))
                start += n
        return out


_KNOWN: dict[str, type[UniformAssignor] | type[RangeAssignor]] = {
    "uniform": UniformAssignor, "range": RangeAssignor}


def assignor_name(configured: str) -> str:
    """``org.apache...UniformAssignor`` or ``uniform`` -> ``uniform``."""
    short = configured.strip().rsplit(".", 1)[-1]
    if short.endswith("Assignor"):
        short = short[: -len("Assignor")]
    return short.lower()


def make_assignors(configured: list[str] | tuple[str, ...]) -> dict[str, Assignor]:
    """The assignors named by ``group.consumer.assignors``, in order (the first is default)."""
    out: dict[str, Assignor] = {}
    for entry in configured:
        name = assignor_name(entry)
        cls = _KNOWN.get(name)
        if cls is not None and name not in out:
            out[name] = cls()
    if not out:
        out["uniform"] = UniformAssignor()
    return out
