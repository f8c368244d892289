"""The classic rebalance protocol: rebalances, SyncGroup, Heartbeat, LeaveGroup, timeouts.

Semantics follow Kafka 3.9's GroupCoordinator (the Scala one brokers run by default): member
ids required on first join (KIP-394), static membership (KIP-345), the initial rebalance
delay, group.max.size, and three kinds of deadline -- session (heartbeat), rebalance (join)
and pending sync -- as keyed timers. Every state change is synchronous; requests that must
wait (JoinGroup until the rebalance completes, SyncGroup until the leader's assignment) wait
on a small future that a member's callback resolves.
"""

from __future__ import annotations

import logging
from typing import Generic, TypeVar

import trio

from pykbroker.coordinator.group.classic import (
    UNKNOWN_MEMBER_ID,
    ClassicGroup,
    ClassicMember,
    GroupState,
    JoinResult,
    SyncResult,
)
from pykbroker.coordinator.group.manager import GroupMetadataManager, store_group_error
from pykbroker.coordinator.group.timer import CoordinatorTimer
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError

log = logging.getLogger("pykbroker.coordinator.group")

S = GroupState
T = TypeVar("T")


class Future(Generic[T]):
    """A value set once, awaited by the request that needs it."""

    def __init__(self) -> None:
        self._event = trio.Event()
        self._value: T | None = None

    def set(self, value: T) -> None:
        if not self._event.is_set():
            self._value = value
            self._event.set()

    async def get(self) -> T:
        await self._event.wait()
        assert self._value is not None
        return self._value


def valid_group_id(group_id: str | None, allow_empty: bool) -> bool:
    """Offset and admin APIs accept the empty group id (for old clients); the rest do not."""
    return group_id is not None and (allow_empty or group_id != "")


class ClassicGroupProtocol:
    """Drives :class:`ClassicGroup` state machines; owns their timers."""

    def __init__(self, manager: GroupMetadataManager, timer: CoordinatorTimer) -> None:
        self.manager = manager
        self.timer = timer
        self.config = manager.config
        self._initial_join: set[str] = set()

    @property
    def groups(self) -> dict[str, ClassicGroup]:
        return self.manager.groups

    def now(self) -> int:
        return self.manager.now_ms()

    # -- validation shared by every group API -----------------------------------------------

    def group_status_error(self, group_id: str | None, *, allow_empty: bool = False
                           ) -> ErrorCode | None:
        if group_id is None or not valid_group_id(group_id, allow_empty):
            return ErrorCode.INVALID_GROUP_ID
        if self.manager.is_loading(group_id):
            return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        if not self.manager.is_owner(group_id):
            return ErrorCode.NOT_COORDINATOR
        return None

    @staticmethod
    def current_member_error(group: ClassicGroup, member_id: str,
                             instance_id: str | None) -> ErrorCode | None:
        """A static member must map to ``member_id``; a dynamic one must exist."""
        if instance_id is not None:
            current = group.static_member_id(instance_id)
            if current is None:
                return ErrorCode.UNKNOWN_MEMBER_ID
            if current != member_id:
                log.info("member %s of group %s with instance id %s is fenced by %s",
                         member_id, group.group_id, instance_id, current)
                return ErrorCode.FENCED_INSTANCE_ID
            return None
        return None if group.has(member_id) else ErrorCode.UNKNOWN_MEMBER_ID

    # -- rebalance ---------------------------------------------------------------------------

    def _maybe_prepare_rebalance(self, group: ClassicGroup, reason: str) -> None:
        if group.can_rebalance():
            self._prepare_rebalance(group, reason)

    def _prepare_rebalance(self, group: ClassicGroup, reason: str) -> None:
        if group.is_in(S.COMPLETING_REBALANCE):
            self._reset_and_propagate_assignment_error(group, ErrorCode.REBALANCE_IN_PROGRESS)
        self.timer.cancel(("sync", group.group_id))
        was_empty = group.is_in(S.EMPTY)
        group.transition_to(S.PREPARING_REBALANCE, self.now())
        log.info("Preparing to rebalance group %s with old generation %d (reason: %s)",
                 group.group_id, group.generation_id, reason)
        if was_empty:
            delay = self.config.group_initial_rebalance_delay_ms
            self._schedule_initial_join(group, delay,
                                        max(group.rebalance_timeout_ms() - delay, 0))
        else:
            self._schedule_join(group)
            self._try_complete_join(group)

    def _schedule_join(self, group: ClassicGroup) -> None:
        self._initial_join.discard(group.group_id)
        self.timer.schedule(("join", group.group_id), group.rebalance_timeout_ms(),
                            lambda: self._complete_join(group))

    def _schedule_initial_join(self, group: ClassicGroup, delay: int, remaining: int) -> None:
        """Wait ``delay`` for more members; each newcomer extends it, up to the rebalance
        timeout (Kafka's InitialDelayedJoin)."""
        self._initial_join.add(group.group_id)

        def expire() -> None:
            if group.new_member_added and remaining != 0:
                group.new_member_added = False
                self._schedule_initial_join(
                    group, min(self.config.group_initial_rebalance_delay_ms, remaining),
                    max(remaining - delay, 0))
            else:
                self._initial_join.discard(group.group_id)
                self._complete_join(group)

        self.timer.schedule(("join", group.group_id), delay, expire)

    def _try_complete_join(self, group: ClassicGroup) -> None:
        key = ("join", group.group_id)
        if group.group_id in self._initial_join or not self.timer.is_scheduled(key):
            return
        if group.is_in(S.PREPARING_REBALANCE) and group.has_all_members_joined():
            self.timer.cancel(key)
            self._complete_join(group)

    def _complete_join(self, group: ClassicGroup) -> None:
        if not group.is_in(S.PREPARING_REBALANCE):
            return
        gone = [m for m in group.not_yet_rejoined() if not m.is_static]
        for member in gone:
            group.remove(member.member_id)
            self.timer.cancel(("hb", group.group_id, member.member_id))
        if gone:
            log.info("group %s removed dynamic members who did not rejoin: %s",
                     group.group_id, [m.member_id for m in gone])
        if not group.maybe_elect_new_joined_leader() and group.members:
            log.error("group %s could not complete its rebalance: no member rejoined",
                      group.group_id)
            self._schedule_join(group)
            return
        group.init_next_generation(self.now())
        if group.is_in(S.EMPTY):
            log.info("group %s with generation %d is now empty", group.group_id,
                     group.generation_id)
            try:
                self.manager.store_group(group, {})
            except KafkaError as exc:
                log.warning("failed to write empty metadata for group %s: %s",
                            group.group_id, exc)
            return
        log.info("Stabilized group %s generation %d with %d members", group.group_id,
                 group.generation_id, group.size)
        for member in list(group.members.values()):
            group.invoke_join(member, group.join_result(member))
            self._heartbeat(group, member)
            member.is_new = False
            group.pending_sync_members.add(member.member_id)
        generation = group.generation_id
        self.timer.schedule(("sync", group.group_id), group.rebalance_timeout_ms(),
                            lambda: self._on_pending_sync_expired(group, generation))

    def _on_pending_sync_expired(self, group: ClassicGroup, generation: int) -> None:
        if generation != group.generation_id or \
                not group.is_in(S.COMPLETING_REBALANCE, S.STABLE):
            return
        pending = sorted(group.pending_sync_members)
        log.info("group %s: members %s did not send SyncGroup in time", group.group_id,
                 pending)
        for member_id in pending:
            member = group.remove(member_id)
            if member is not None:
                group.invoke_sync(member, SyncResult(ErrorCode.UNKNOWN_MEMBER_ID))
            self.timer.cancel(("hb", group.group_id, member_id))
        self._prepare_rebalance(group, f"removing {pending} on pending sync expiration")

    def _remove_pending_sync(self, group: ClassicGroup, member_id: str) -> None:
        group.pending_sync_members.discard(member_id)
        if not group.pending_sync_members:
            self.timer.cancel(("sync", group.group_id))

    # -- heartbeats and expiry ---------------------------------------------------------------

    def _heartbeat(self, group: ClassicGroup, member: ClassicMember) -> None:
        self._schedule_heartbeat(group, member, member.session_timeout_ms)

    def _schedule_heartbeat(self, group: ClassicGroup, member: ClassicMember,
                            timeout_ms: int) -> None:
        member_id = member.member_id
        self.timer.schedule(("hb", group.group_id, member_id), timeout_ms,
                            lambda: self._on_heartbeat_expired(group, member_id))

    def _on_heartbeat_expired(self, group: ClassicGroup, member_id: str) -> None:
        member = group.members.get(member_id)
        if group.is_in(S.DEAD) or member is None:
            return
        if not member.is_new and (member.awaiting_join is not None
                                  or member.awaiting_sync is not None):
            return  # waiting in a rebalance counts as alive
        log.info("Member %s in group %s has failed, removing it from the group", member_id,
                 group.group_id)
        self._remove_member_and_update_group(group, member,
                                             f"removing member {member_id} on heartbeat "
                                             "expiration")

    def _on_pending_member_expired(self, group: ClassicGroup, member_id: str) -> None:
        if member_id in group.pending_members:
            log.info("pending member %s of group %s removed after its session timeout",
                     member_id, group.group_id)
            self._remove_pending_member(group, member_id)

    def _remove_pending_member(self, group: ClassicGroup, member_id: str) -> None:
        group.remove(member_id)
        if group.is_in(S.PREPARING_REBALANCE):
            self._try_complete_join(group)

    def _remove_member_and_update_group(self, group: ClassicGroup, member: ClassicMember,
                                        reason: str) -> None:
        group.invoke_join(member, JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, UNKNOWN_MEMBER_ID))
        group.invoke_sync(member, SyncResult(ErrorCode.UNKNOWN_MEMBER_ID))
        group.remove(member.member_id)
        self.timer.cancel(("hb", group.group_id, member.member_id))
        if group.is_in(S.STABLE, S.COMPLETING_REBALANCE):
            self._maybe_prepare_rebalance(group, reason)
        elif group.is_in(S.PREPARING_REBALANCE):
            self._try_complete_join(group)

    # -- SyncGroup ----------------------------------------------------------------------------

    async def sync_group(self, group_id: str, generation_id: int, member_id: str,
                         instance_id: str | None, protocol_type: str | None,
                         protocol_name: str | None,
                         assignments: dict[str, bytes]) -> SyncResult:
        error = self.group_status_error(group_id)
        if error == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:
            # The rebalance was lost with the old coordinator state: make the member rejoin.
            return SyncResult(ErrorCode.REBALANCE_IN_PROGRESS)
        if error is not None:
            return SyncResult(error)
        group = self.groups.get(group_id)
        if group is None:
            return SyncResult(ErrorCode.UNKNOWN_MEMBER_ID)
        if group.is_in(S.DEAD):
            return SyncResult(ErrorCode.COORDINATOR_NOT_AVAILABLE)
        error = self.current_member_error(group, member_id, instance_id)
        if error is None:
            if generation_id != group.generation_id:
                error = ErrorCode.ILLEGAL_GENERATION
            elif (protocol_type is not None and protocol_type != group.protocol_type) or \
                    (protocol_name is not None and protocol_name != group.protocol_name):
                error = ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        if error is not None:
            return SyncResult(error)
        if group.is_in(S.EMPTY):
            return SyncResult(ErrorCode.UNKNOWN_MEMBER_ID)
        if group.is_in(S.PREPARING_REBALANCE):
            return SyncResult(ErrorCode.REBALANCE_IN_PROGRESS)
        member = group.members[member_id]
        if group.is_in(S.STABLE):
            self._remove_pending_sync(group, member_id)
            self._heartbeat(group, member)
            return SyncResult(ErrorCode.NONE, group.protocol_type, group.protocol_name,
                              member.assignment)
        future: Future[SyncResult] = Future()
        group.invoke_sync(member, SyncResult(ErrorCode.REBALANCE_IN_PROGRESS))
        member.awaiting_sync = future.set
        self._remove_pending_sync(group, member_id)
        if group.is_leader(member_id):
            await self._store_assignment(group, assignments)
        return await future.get()

    async def _store_assignment(self, group: ClassicGroup, assignments: dict[str, bytes]
                                ) -> None:
        """Persist the leader's assignment, then hand each member its share byte for byte."""
        generation = group.generation_id
        missing = [m for m in group.members if m not in assignments]
        if missing:
            log.warning("setting empty assignments for members %s of group %s generation %d",
                        missing, group.group_id, generation)
        assignment = {m: bytes(assignments.get(m, b"")) for m in group.members}
        log.info("assignment received from leader for group %s generation %d (%d members)",
                 group.group_id, generation, group.size)
        error = ErrorCode.NONE
        try:
            part, next_offset = self.manager.store_group(group, assignment)
            await self.manager.wait_durable(part, next_offset)
        except KafkaError as exc:
            error = store_group_error(exc.error_code)
        except OSError as exc:
            log.error("fsync of group %s metadata failed: %s", group.group_id, exc)
            error = ErrorCode.NOT_COORDINATOR
        # Another member may have joined meanwhile: only this generation's sync completes.
        if not group.is_in(S.COMPLETING_REBALANCE) or group.generation_id != generation:
            return
        if error != ErrorCode.NONE:
            self._reset_and_propagate_assignment_error(group, error)
            self._maybe_prepare_rebalance(group, "error storing the group assignment")
            return
        for member in group.members.values():
            member.assignment = assignment.get(member.member_id, b"")
        self._propagate_assignment(group, ErrorCode.NONE)
        group.transition_to(S.STABLE, self.now())

    def _reset_and_propagate_assignment_error(self, group: ClassicGroup,
                                              error: ErrorCode) -> None:
        for member in group.members.values():
            member.assignment = b""
        self._propagate_assignment(group, error)

    def _propagate_assignment(self, group: ClassicGroup, error: ErrorCode) -> None:
        for member in list(group.members.values()):
            result = SyncResult(error, group.protocol_type, group.protocol_name,
                                member.assignment) if error == ErrorCode.NONE \
                else SyncResult(error)
            if group.invoke_sync(member, result):
                self._heartbeat(group, member)

    # -- Heartbeat and LeaveGroup -------------------------------------------------------------

    def heartbeat(self, group_id: str, generation_id: int, member_id: str,
                  instance_id: str | None) -> ErrorCode:
        error = self.group_status_error(group_id)
        if error == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:
            return ErrorCode.NONE
        if error is not None:
            return error
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if group.is_in(S.DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        error = self.current_member_error(group, member_id, instance_id)
        if error is not None:
            return error
        if generation_id != group.generation_id:
            return ErrorCode.ILLEGAL_GENERATION
        if group.is_in(S.EMPTY):
            return ErrorCode.UNKNOWN_MEMBER_ID
        self._heartbeat(group, group.members[member_id])
        if group.is_in(S.PREPARING_REBALANCE):
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE

    def leave_group(self, group_id: str, leaving: list[tuple[str, str | None, str | None]]
                    ) -> tuple[ErrorCode, list[ErrorCode]]:
        """(top-level error, one error per (member id, instance id, reason) leaving)."""
        error = self.group_status_error(group_id)
        if error is not None:
            return error, []
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.NONE, [ErrorCode.UNKNOWN_MEMBER_ID] * len(leaving)
        if group.is_in(S.DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, []
        out = []
        for member_id, instance_id, reason in leaving:
            why = f"member {member_id} left (client reason: {reason or 'not provided'})"
            if member_id == UNKNOWN_MEMBER_ID:
                # Administrative removal by group instance id.
                current = group.static_member_id(instance_id)
                if current is None:
                    out.append(ErrorCode.UNKNOWN_MEMBER_ID)
                    continue
                self._remove_member_and_update_group(group, group.members[current], why)
                out.append(ErrorCode.NONE)
            elif member_id in group.pending_members:
                self._remove_pending_member(group, member_id)
                self.timer.cancel(("hb", group.group_id, member_id))
                out.append(ErrorCode.NONE)
            else:
                error = self.current_member_error(group, member_id, instance_id)
                if error is None:
                    log.info("member %s has left group %s through LeaveGroup", member_id,
                             group_id)
                    self._remove_member_and_update_group(group, group.members[member_id], why)
                out.append(error or ErrorCode.NONE)
        return ErrorCode.NONE, out

    # -- unloading ------------------------------------------------------------------------

    def unload_all(self, error: ErrorCode = ErrorCode.NOT_COORDINATOR) -> None:
        """Answer every waiting request (at shutdown): clients find the coordinator again."""
        for group in list(self.groups.values()):
            for member in list(group.members.values()):
                group.invoke_join(member, JoinResult(error, member.member_id))
                group.invoke_sync(member, SyncResult(error))


