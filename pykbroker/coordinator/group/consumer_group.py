"""KIP-848 consumer groups: ConsumerGroupHeartbeat with server-side assignment.

Kafka's ``GroupMetadataManager.consumerGroupHeartbeat`` cut down to its essentials:

* the group epoch is bumped whenever membership, a subscription or the metadata of a
  subscribed topic changes; the target assignment is then recomputed by the group's
  assignor and stamped with that epoch (the assignment epoch);
* each member reconciles towards its target (Kafka's ``CurrentAssignmentBuilder``): it first
  revokes what it must give up (state UNREVOKED_PARTITIONS, epoch unchanged), then moves to
  the assignment epoch and receives new partitions only once their previous owners have
  released them (UNRELEASED_PARTITIONS until then) -- revocation before reassignment;
* a member that misses its session timeout, or keeps partitions pending revocation past its
  rebalance timeout, is fenced and removed.

Every change is written to ``__consumer_offsets`` as Kafka's ConsumerGroup* records (see
:mod:`.consumer_records`, wired by the coordinator through ``on_change``) and replayed at
start-up, so members keep their epochs and assignments across a restart.
"""

from __future__ import annotations

import base64
import enum
import logging
import re
import uuid
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field

from pykbroker.coordinator.group.assignors import (
    Assignment,
    Assignor,
    MemberSpec,
    make_assignors,
)
from pykbroker.coordinator.group.timer import CoordinatorTimer
from pykbroker.error_codes import ErrorCode

log = logging.getLogger("pykbroker.coordinator.group.consumer")

LEAVE_EPOCH = -1
STATIC_LEAVE_EPOCH = -2
CONSUMER_GROUP_TYPE = "consumer"

# topic name -> (topic id, partition count); what the assignment is computed against
TopicsView = Mapping[str, tuple[uuid.UUID, int]]


class MemberState(enum.Enum):
    STABLE = "stable"
    UNREVOKED_PARTITIONS = "unrevoked_partitions"
    UNRELEASED_PARTITIONS = "unreleased_partitions"


class HeartbeatError(Exception):
    def __init__(self, code: ErrorCode, message: str | None = None) -> None:
        super().__init__(message or code.name)
        self.code = code
        self.message = message


def new_member_id() -> str:
    """Kafka's ``Uuid.randomUuid().toString()``: url-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def copy_assignment(a: Assignment) -> Assignment:
    return {t: set(p) for t, p in a.items() if p}


def _pairs(a: Assignment) -> set[tuple[uuid.UUID, int]]:
    return {(t, p) for t, parts in a.items() for p in parts}


def _from_pairs(pairs: set[tuple[uuid.UUID, int]]) -> Assignment:
    out: Assignment = {}
    for t, p in pairs:
        out.setdefault(t, set()).add(p)
    return out


@dataclass(eq=False, slots=True)
class ConsumerMember:
    member_id: str
    instance_id: str | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    rebalance_timeout_ms: int = 300000
    subscribed_topic_names: list[str] = field(default_factory=list)
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    member_epoch: int = 0
    previous_member_epoch: int = 0
    state: MemberState = MemberState.STABLE
    assigned: Assignment = field(default_factory=dict)
    pending_revocation: Assignment = field(default_factory=dict)

    def subscribed_topics(self, topic_names: list[str]) -> set[str]:
        out = set(self.subscribed_topic_names)
        if self.subscribed_topic_regex:
            try:
                pattern = re.compile(self.subscribed_topic_regex)
            except re.error:
                pattern = None
            if pattern is not None:
                out.update(n for n in topic_names
                           if not n.startswith("__") and pattern.fullmatch(n))
        return out


class ConsumerGroup:
    """One KIP-848 group: members, epochs and the target assignment."""

    def __init__(self, group_id: str) -> None:
        self.group_id = group_id
        self.group_epoch = 0
        self.assignment_epoch = 0
        self.members: dict[str, ConsumerMember] = {}
        self.static_members: dict[str, str] = {}
        self.target: dict[str, Assignment] = {}
        self.subscription_metadata: dict[str, tuple[uuid.UUID, int]] = {}
        self.assignor_name = ""

    @property
    def state(self) -> str:
        if not self.members:
            return "Empty"
        if self.group_epoch > self.assignment_epoch:
            return "Assigning"
        if any(m.member_epoch != self.assignment_epoch or m.state != MemberState.STABLE
               for m in self.members.values()):
            return "Reconciling"
        return "Stable"

    # -- subscriptions and the target assignment ------------------------------------------

    def subscribed_topics(self, topics: TopicsView) -> dict[str, tuple[uuid.UUID, int]]:
        names = sorted(topics)
        wanted: set[str] = set()
        for m in self.members.values():
            wanted |= m.subscribed_topics(names)
        return {n: topics[n] for n in sorted(wanted) if n in topics}

    def refresh_metadata(self, topics: TopicsView) -> bool:
        """Refresh the subscribed topics' ids and partition counts; True when they changed."""
        meta = self.subscribed_topics(topics)
        if meta != self.subscription_metadata:
            self.subscription_metadata = meta
            return True
        return False

    def compute_target(self, assignor: Assignor, topics: TopicsView) -> None:
        names = sorted(topics)
        specs = {}
        for mid, m in self.members.items():
            subscribed = {topics[n][0] for n in m.subscribed_topics(names) if n in topics}
            specs[mid] = MemberSpec(subscribed, copy_assignment(self.target.get(mid, {})))
        counts = {tid: count for tid, count in self.subscription_metadata.values()}
        self.target = {mid: copy_assignment(a) for mid, a in
                       assignor.assign(specs, counts).items()}
        self.assignment_epoch = self.group_epoch
        self.assignor_name = assignor.name

    # -- reconciliation (Kafka's CurrentAssignmentBuilder) ----------------------------------

    def owners(self, exclude: str) -> set[tuple[uuid.UUID, int]]:
        """Partitions other members still hold (assigned or pending revocation)."""
        held: set[tuple[uuid.UUID, int]] = set()
        for mid, m in self.members.items():
            if mid != exclude:
                held |= _pairs(m.assigned) | _pairs(m.pending_revocation)
        return held

    def reconcile(self, member: ConsumerMember,
                  owned: list[tuple[uuid.UUID, list[int]]] | None) -> None:
        """Move ``member`` one step towards its target; ``owned`` is what it reports."""
        if member.state == MemberState.UNREVOKED_PARTITIONS:
            if owned is None:
                return
            reported = {(t, p) for t, parts in owned for p in parts}
            if reported & _pairs(member.pending_revocation):
                return  # still revoking
            member.pending_revocation = {}
            self._next(member, self.assignment_epoch)
            return
        if member.member_epoch != self.assignment_epoch or \
                member.state == MemberState.UNRELEASED_PARTITIONS:
            self._next(member, self.assignment_epoch)

    def _next(self, member: ConsumerMember, target_epoch: int) -> None:
        target = _pairs(self.target.get(member.member_id, {}))
        current = _pairs(member.assigned)
        keep = current & target
        revoke = current - target
        if revoke:
            member.assigned = _from_pairs(keep)
            member.pending_revocation = _from_pairs(revoke)
            member.state = MemberState.UNREVOKED_PARTITIONS
            return
        held = self.owners(member.member_id)
        unreleased = (target - current) & held
        member.assigned = _from_pairs(target - unreleased)
        member.pending_revocation = {}
        if member.member_epoch != target_epoch:
            member.previous_member_epoch = member.member_epoch
            member.member_epoch = target_epoch
        member.state = MemberState.UNRELEASED_PARTITIONS if unreleased else MemberState.STABLE


@dataclass(frozen=True, slots=True)
class ConsumerGroupConfig:
    session_timeout_ms: int = 45000
    heartbeat_interval_ms: int = 5000
    assignors: tuple[str, ...] = ("uniform", "range")
    max_size: int = 2**31 - 1

    @classmethod
    def from_getter(cls, get: Callable[[str], object]) -> ConsumerGroupConfig:
        assignors = get("group.consumer.assignors")
        return cls(
            session_timeout_ms=int(get("group.consumer.session.timeout.ms")),  # type: ignore[call-overload]
            heartbeat_interval_ms=int(get("group.consumer.heartbeat.interval.ms")),  # type: ignore[call-overload]
            assignors=tuple(assignors) if isinstance(assignors, list | tuple) else
            tuple(str(assignors).split(",")),
            max_size=int(get("group.consumer.max.size")),  # type: ignore[call-overload]
        )


@dataclass(slots=True)
class HeartbeatRequest:
    group_id: str
    member_id: str
    member_epoch: int
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = -1
    subscribed_topic_names: list[str] | None = None
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    owned: list[tuple[uuid.UUID, list[int]]] | None = None
    client_id: str = ""
    client_host: str = ""


@dataclass(slots=True)
class HeartbeatResult:
    error: ErrorCode
    message: str | None = None
    member_id: str | None = None
    member_epoch: int = 0
    heartbeat_interval_ms: int = 0
    assignment: Assignment | None = None


class ConsumerGroupCoordinator:
    """Heartbeats, timeouts and administration of the KIP-848 groups of one coordinator."""

    def __init__(self, timer: CoordinatorTimer, topics: Callable[[], TopicsView],
                 config: ConsumerGroupConfig | None = None, *,
                 classic_in_use: Callable[[str], bool] = lambda group_id: False) -> None:
        self.timer = timer
        self.topics = topics
        self.config = config or ConsumerGroupConfig()
        self.assignors = make_assignors(list(self.config.assignors))
        self.classic_in_use = classic_in_use
        self.groups: dict[str, ConsumerGroup] = {}
        # Called after every change to a group (the coordinator writes its records).
        self.on_change: Callable[[ConsumerGroup], None] = lambda group: None

    def configure(self, config: ConsumerGroupConfig) -> None:
        self.config = config
        self.assignors = make_assignors(list(self.config.assignors))

    def has_members(self, group_id: str) -> bool:
        group = self.groups.get(group_id)
        return group is not None and bool(group.members)

    # -- ConsumerGroupHeartbeat -------------------------------------------------------------

    def heartbeat(self, req: HeartbeatRequest) -> HeartbeatResult:
        try:
            return self._heartbeat(req)
        except HeartbeatError as exc:
            return HeartbeatResult(exc.code, exc.message, member_epoch=0)

    def _validate(self, req: HeartbeatRequest) -> None:
        def invalid(message: str) -> HeartbeatError:
            return HeartbeatError(ErrorCode.INVALID_REQUEST, message)

        if not req.group_id:
            raise invalid("GroupId can't be empty.")
        if req.instance_id is not None and not req.instance_id:
            raise invalid("InstanceId can't be empty.")
        if req.member_epoch == 0:
            if req.rebalance_timeout_ms == -1:
                raise invalid("RebalanceTimeoutMs must be provided in first request.")
            if req.owned is None or any(parts for _, parts in req.owned):
                raise invalid("TopicPartitions must be empty when (re-)joining.")
            if req.subscribed_topic_names is None and req.subscribed_topic_regex is None:
                raise invalid("SubscribedTopicNames or SubscribedTopicRegex must be set in "
                              "first request.")
        elif req.member_epoch == STATIC_LEAVE_EPOCH:
            if req.instance_id is None:
                raise invalid("InstanceId can't be null.")
        elif req.member_epoch < STATIC_LEAVE_EPOCH:
            raise invalid(f"MemberEpoch {req.member_epoch} is invalid.")
        if req.member_epoch != 0 and not req.member_id:
            raise invalid("MemberId can't be empty.")
        if req.subscribed_topic_regex is not None:
            try:
                re.compile(req.subscribed_topic_regex)
            except re.error as exc:
                raise invalid(f"SubscribedTopicRegex is invalid: {exc}") from None
        if req.server_assignor is not None and req.server_assignor not in self.assignors:
            raise HeartbeatError(ErrorCode.UNSUPPORTED_ASSIGNOR,
                                 f"ServerAssignor {req.server_assignor} is not supported. "
                                 f"Supported assignors: {', '.join(self.assignors)}.")

    def _heartbeat(self, req: HeartbeatRequest) -> HeartbeatResult:
        self._validate(req)
        group = self.groups.get(req.group_id)
        if group is None:
            if req.member_epoch != 0:
                raise HeartbeatError(ErrorCode.GROUP_ID_NOT_FOUND,
                                     f"Group {req.group_id} not found.")
            if self.classic_in_use(req.group_id):
                raise HeartbeatError(ErrorCode.GROUP_ID_NOT_FOUND,
                                     f"Group {req.group_id} is not a consumer group.")
            group = self.groups[req.group_id] = ConsumerGroup(req.group_id)
        if req.member_epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
            return self._leave(group, req)
        member, joined = self._member(group, req)
        before_epoch = member.member_epoch
        before_assigned = copy_assignment(member.assigned)
        changed = self._update_member(member, req)
        topics = self.topics()
        if group.refresh_metadata(topics) or changed or joined:
            group.group_epoch += 1
        if group.group_epoch > group.assignment_epoch:
            group.compute_target(self._assignor(group), topics)
        group.reconcile(member, req.owned)
        self._schedule_session(group, member)
        self.on_change(group)
        full = req.member_epoch == 0 or (req.owned is not None and
                                         req.subscribed_topic_names is not None)
        send = full or member.member_epoch != before_epoch or \
            copy_assignment(member.assigned) != before_assigned
        return HeartbeatResult(
            ErrorCode.NONE, None, member.member_id, member.member_epoch,
            self.config.heartbeat_interval_ms,
            copy_assignment(member.assigned) if send else None)

    def _member(self, group: ConsumerGroup, req: HeartbeatRequest
                ) -> tuple[ConsumerMember, bool]:
        """The member the request is from (True: it has just joined), or HeartbeatError."""
        if req.member_epoch == 0:
            if len(group.members) >= self.config.max_size and \
                    req.member_id not in group.members:
                raise HeartbeatError(ErrorCode.GROUP_MAX_SIZE_REACHED,
                                     f"The consumer group has reached its maximum capacity of "
                                     f"{self.config.max_size} members.")
            member_id = req.member_id or new_member_id()
            old_id = group.static_members.get(req.instance_id) if req.instance_id else None
            if old_id is not None and old_id in group.members and old_id != member_id:
                # A static member restarted: it takes over the old incarnation's place.
                # Its partitions are released: the new incarnation starts owning nothing.
                self._remove(group, old_id)
            if member_id in group.members:
                # Rejoining with epoch 0: it owns nothing any more.
                self._remove(group, member_id)
            joined = ConsumerMember(member_id=member_id, instance_id=req.instance_id)
            group.members[member_id] = joined
            if req.instance_id is not None:
                group.static_members[req.instance_id] = member_id
            log.info("member %s joined consumer group %s", member_id, group.group_id)
            return joined, True
        member = group.members.get(req.member_id)
        if member is None:
            raise HeartbeatError(ErrorCode.UNKNOWN_MEMBER_ID,
                                 f"Member {req.member_id} is not a member of group "
                                 f"{group.group_id}.")
        if req.member_epoch > member.member_epoch:
            raise HeartbeatError(ErrorCode.FENCED_MEMBER_EPOCH,
                                 "The consumer group member has a greater member epoch "
                                 f"({req.member_epoch}) than the one known by the group "
                                 f"coordinator ({member.member_epoch}).")
        if req.member_epoch < member.member_epoch:
            reported = {(t, p) for t, parts in req.owned or [] for p in parts}
            if req.member_epoch != member.previous_member_epoch or req.owned is None or \
                    not reported <= _pairs(member.assigned):
                raise HeartbeatError(ErrorCode.FENCED_MEMBER_EPOCH,
                                     "The consumer group member has a smaller member epoch "
                                     f"({req.member_epoch}) than the one known by the group "
                                     f"coordinator ({member.member_epoch}).")
        return member, False

    @staticmethod
    def _update_member(member: ConsumerMember, req: HeartbeatRequest) -> bool:
        """Apply the request's non-null fields; True when the subscription changed."""
        changed = False
        if req.rebalance_timeout_ms != -1:
            member.rebalance_timeout_ms = req.rebalance_timeout_ms
        if req.rack_id is not None:
            member.rack_id = req.rack_id
        if req.client_id:
            member.client_id = req.client_id
        if req.client_host:
            member.client_host = req.client_host
        if req.subscribed_topic_names is not None and \
                sorted(req.subscribed_topic_names) != sorted(member.subscribed_topic_names):
            member.subscribed_topic_names = sorted(set(req.subscribed_topic_names))
            changed = True
        if req.subscribed_topic_regex is not None and \
                req.subscribed_topic_regex != (member.subscribed_topic_regex or ""):
            member.subscribed_topic_regex = req.subscribed_topic_regex or None
            changed = True
        if req.server_assignor is not None and req.server_assignor != member.server_assignor:
            member.server_assignor = req.server_assignor
            changed = True
        return changed

    def _assignor(self, group: ConsumerGroup) -> Assignor:
        """The assignor most members ask for, else the first configured one."""
        votes: dict[str, int] = {}
        for m in group.members.values():
            if m.server_assignor is not None:
                votes[m.server_assignor] = votes.get(m.server_assignor, 0) + 1
        if votes:
            return self.assignors[max(votes, key=lambda n: (votes[n], n))]
        return next(iter(self.assignors.values()))

    def _leave(self, group: ConsumerGroup, req: HeartbeatRequest) -> HeartbeatResult:
        member: ConsumerMember | None = group.members.get(req.member_id)
        if member is None:
            if req.member_epoch == STATIC_LEAVE_EPOCH and req.instance_id is not None:
                mid = group.static_members.get(req.instance_id)
                member = group.members.get(mid) if mid is not None else None
            if member is None:
                raise HeartbeatError(ErrorCode.UNKNOWN_MEMBER_ID,
                                     f"Member {req.member_id} is not a member of group "
                                     f"{group.group_id}.")
        self._remove(group, member.member_id)
        self._membership_changed(group)
        self.on_change(group)
        log.info("member %s left consumer group %s", member.member_id, group.group_id)
        return HeartbeatResult(ErrorCode.NONE, None, req.member_id, req.member_epoch,
                               self.config.heartbeat_interval_ms, None)

    def _remove(self, group: ConsumerGroup, member_id: str) -> ConsumerMember | None:
        member = group.members.pop(member_id, None)
        group.target.pop(member_id, None)
        if member is not None and member.instance_id is not None and \
                group.static_members.get(member.instance_id) == member_id:
            del group.static_members[member.instance_id]
        self.timer.cancel(self._session_key(group, member_id))
        self.timer.cancel(self._rebalance_key(group, member_id))
        return member

    def _membership_changed(self, group: ConsumerGroup) -> None:
        group.group_epoch += 1
        topics = self.topics()
        group.refresh_metadata(topics)
        if group.members:
            group.compute_target(self._assignor(group), topics)
        else:
            group.target = {}
            group.assignment_epoch = group.group_epoch

    # -- timeouts ---------------------------------------------------------------------------

    @staticmethod
    def _session_key(group: ConsumerGroup, member_id: str) -> Hashable:
        return ("consumer-session", group.group_id, member_id)

    @staticmethod
    def _rebalance_key(group: ConsumerGroup, member_id: str) -> Hashable:
        return ("consumer-rebalance", group.group_id, member_id)

    def _schedule_session(self, group: ConsumerGroup, member: ConsumerMember) -> None:
        mid = member.member_id
        self.timer.schedule(self._session_key(group, mid), self.config.session_timeout_ms,
                            lambda: self._fence(group, mid, "session timeout"))
        key = self._rebalance_key(group, mid)
        if member.state == MemberState.UNREVOKED_PARTITIONS:
            if not self.timer.is_scheduled(key):
                self.timer.schedule(key, member.rebalance_timeout_ms,
                                    lambda: self._fence(group, mid, "rebalance timeout"))
        else:
            self.timer.cancel(key)

    def _fence(self, group: ConsumerGroup, member_id: str, why: str) -> None:
        if self.groups.get(group.group_id) is not group or member_id not in group.members:
            return
        log.info("fencing member %s of consumer group %s: %s", member_id, group.group_id, why)
        self._remove(group, member_id)
        self._membership_changed(group)
        self.on_change(group)

    # -- offsets and administration ---------------------------------------------------------

    def commit_error(self, group_id: str, member_id: str, member_epoch: int
                     ) -> tuple[bool, ErrorCode | None]:
        """(handled, error) for an OffsetCommit; handled False when not a consumer group."""
        group = self.groups.get(group_id)
        if group is None:
            return False, None
        if member_epoch < 0 and not group.members:
            return True, None
        member = group.members.get(member_id)
        if member is None:
            return True, ErrorCode.UNKNOWN_MEMBER_ID
        if member_epoch > member.member_epoch:
            return True, ErrorCode.FENCED_MEMBER_EPOCH
        if member_epoch < member.member_epoch:
            return True, ErrorCode.STALE_MEMBER_EPOCH
        return True, None

    def drop_if_empty(self, group_id: str) -> bool:
        """Forget an empty consumer group (before a classic group takes its id)."""
        group = self.groups.get(group_id)
        if group is not None and not group.members:
            del self.groups[group_id]
            return True
        return group is None

    def after_load(self) -> None:
        """Loaded members must heartbeat again within their session timeout."""
        for group in self.groups.values():
            for member in group.members.values():
                self._schedule_session(group, member)

    def unload_all(self) -> None:
        for group in self.groups.values():
            for mid in list(group.members):
                self.timer.cancel(self._session_key(group, mid))
                self.timer.cancel(self._rebalance_key(group, mid))
        self.groups.clear()

    def topic_names(self) -> dict[uuid.UUID, str]:
        return {tid: name for name, (tid, _) in self.topics().items()}
