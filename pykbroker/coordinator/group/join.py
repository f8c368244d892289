"""JoinGroup for classic groups: new and known members, KIP-394 member ids, static members.

Split from :mod:`.rebalance` (which owns what happens once members have joined) because the
ways a member can join -- new, pending, known, a static instance restarting -- are most of
Kafka's GroupCoordinator.handleJoinGroup and read best together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pykbroker.coordinator.group.classic import (
    UNKNOWN_MEMBER_ID,
    ClassicGroup,
    ClassicMember,
    GroupState,
    JoinCallback,
    JoinResult,
)
from pykbroker.coordinator.group.manager import store_group_error
from pykbroker.coordinator.group.rebalance import ClassicGroupProtocol, Future
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError

log = logging.getLogger("pykbroker.coordinator.group")

# A new member's first JoinGroup may wait this long before the member is dropped (Kafka's
# NewMemberJoinTimeoutMs): it has no member id yet, so it cannot heartbeat meanwhile.
NEW_MEMBER_JOIN_TIMEOUT_MS = 5 * 60 * 1000

S = GroupState


@dataclass(slots=True)
class JoinRequest:
    group_id: str
    member_id: str
    group_instance_id: str | None
    require_known_member_id: bool
    support_skip_assignment: bool
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    reason: str | None = None


class ClassicJoinProtocol(ClassicGroupProtocol):
    """JoinGroup on top of the rebalance machinery."""

    # -- JoinGroup --------------------------------------------------------------------------

    async def join_group(self, req: JoinRequest) -> JoinResult:
        future: Future[JoinResult] = Future()
        self._join(req, future.set)
        return await future.get()

    def _join(self, req: JoinRequest, callback: JoinCallback) -> None:
        error = self.group_status_error(req.group_id)
        if error is None and not (self.config.group_min_session_timeout_ms
                                  <= req.session_timeout_ms
                                  <= self.config.group_max_session_timeout_ms):
            error = ErrorCode.INVALID_SESSION_TIMEOUT
        if error is not None:
            callback(JoinResult(error, req.member_id))
            return
        unknown = req.member_id == UNKNOWN_MEMBER_ID
        group = self.groups.get(req.group_id)
        if group is None:
            if not unknown:
                callback(JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, req.member_id))
                return
            group = self.groups[req.group_id] = ClassicGroup(req.group_id, self.now())
        if not self._accept_joining_member(group, req.member_id):
            member = group.members.get(req.member_id)
            if member is not None:
                group.invoke_join(member, JoinResult(ErrorCode.GROUP_MAX_SIZE_REACHED, ""))
            group.remove(req.member_id)
            callback(JoinResult(ErrorCode.GROUP_MAX_SIZE_REACHED, UNKNOWN_MEMBER_ID))
        elif unknown:
            self._join_new_member(group, req, callback)
        else:
            self._join_current_member(group, req, callback)
        if group.is_in(S.PREPARING_REBALANCE):
            self._try_complete_join(group)

    def _accept_joining_member(self, group: ClassicGroup, member_id: str) -> bool:
        limit = self.config.group_max_size
        if group.is_in(S.EMPTY, S.DEAD):
            return True
        if group.is_in(S.PREPARING_REBALANCE):
            member = group.members.get(member_id)
            return (member is not None and member.awaiting_join is not None) or \
                group.num_awaiting_join < limit
        return group.has(member_id) or group.size < limit

    def _join_new_member(self, group: ClassicGroup, req: JoinRequest,
                         callback: JoinCallback) -> None:
        protocol_names = {name for name, _ in req.protocols}
        if group.is_in(S.DEAD):
            callback(JoinResult(ErrorCode.COORDINATOR_NOT_AVAILABLE, req.member_id))
            return
        if not group.supports_protocols(req.protocol_type, protocol_names):
            callback(JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, req.member_id))
            return
        new_id = group.generate_member_id(req.client_id, req.group_instance_id)
        instance_id = req.group_instance_id
        if instance_id is not None:
            old_id = group.static_member_id(instance_id)
            if old_id is not None:
                log.info("static member %s of group %s rejoins with an unknown member id in "
                         "state %s; replacing %s by %s", instance_id, group.group_id,
                         group.state.value, old_id, new_id)
                self._update_static_member_and_rebalance(group, old_id, new_id, req, callback)
                return
            self._add_member_and_rebalance(group, req, new_id, callback)
        elif req.require_known_member_id:
            # KIP-394: hand out the id and expect a second JoinGroup that carries it.
            group.pending_members.add(new_id)
            self.timer.schedule(("hb", group.group_id, new_id), req.session_timeout_ms,
                                lambda: self._on_pending_member_expired(group, new_id))
            callback(JoinResult(ErrorCode.MEMBER_ID_REQUIRED, new_id))
        else:
            self._add_member_and_rebalance(group, req, new_id, callback)

    def _join_current_member(self, group: ClassicGroup, req: JoinRequest,
                             callback: JoinCallback) -> None:
        member_id = req.member_id
        if group.is_in(S.DEAD):
            callback(JoinResult(ErrorCode.COORDINATOR_NOT_AVAILABLE, member_id))
            return
        if not group.supports_protocols(req.protocol_type, {n for n, _ in req.protocols}):
            callback(JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id))
            return
        if member_id in group.pending_members:
            self._add_member_and_rebalance(group, req, member_id, callback)
            return
        if group.is_static_member_fenced(req.group_instance_id, member_id):
            callback(JoinResult(ErrorCode.FENCED_INSTANCE_ID, member_id))
            return
        if not group.has(member_id) or (req.group_instance_id is not None
                                        and group.static_member_id(req.group_instance_id)
                                        is None):
            callback(JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id))
            return
        member = group.members[member_id]
        if group.is_in(S.PREPARING_REBALANCE):
            self._update_member_and_rebalance(group, member, req, callback,
                                              "member joining during PreparingRebalance")
        elif group.is_in(S.COMPLETING_REBALANCE):
            if member.matches(req.protocols):
                # It missed its JoinGroup response: answer again for this generation.
                callback(group.join_result(member))
            else:
                self._update_member_and_rebalance(group, member, req, callback,
                                                  "metadata changed during CompletingRebalance")
        elif group.is_in(S.STABLE):
            if group.is_leader(member_id):
                # The leader may rejoin to react to metadata changes the members cannot see.
                self._update_member_and_rebalance(group, member, req, callback,
                                                  "leader re-joining a stable group")
            elif not member.matches(req.protocols):
                self._update_member_and_rebalance(group, member, req, callback,
                                                  "member metadata changed")
            else:
                callback(group.join_result(member, with_members=False))
        else:
            log.warning("rejoining member %s of group %s in unexpected state %s", member_id,
                        group.group_id, group.state.value)
            callback(JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id))

    def _add_member_and_rebalance(self, group: ClassicGroup, req: JoinRequest, member_id: str,
                                  callback: JoinCallback) -> None:
        member = ClassicMember(
            member_id=member_id, group_instance_id=req.group_instance_id,
            client_id=req.client_id, client_host=req.client_host,
            rebalance_timeout_ms=req.rebalance_timeout_ms,
            session_timeout_ms=req.session_timeout_ms, protocol_type=req.protocol_type,
            protocols=list(req.protocols), is_new=True)
        if group.is_in(S.PREPARING_REBALANCE) and group.generation_id == 0:
            group.new_member_added = True
        group.add(member, callback)
        self._schedule_heartbeat(group, member, NEW_MEMBER_JOIN_TIMEOUT_MS)
        self._maybe_prepare_rebalance(group, f"adding new member {member_id} with group "
                                             f"instance id {req.group_instance_id}")

    def _update_member_and_rebalance(self, group: ClassicGroup, member: ClassicMember,
                                     req: JoinRequest, callback: JoinCallback,
                                     reason: str) -> None:
        group.update_member(member, req.protocols, req.rebalance_timeout_ms,
                            req.session_timeout_ms, callback)
        self._maybe_prepare_rebalance(group, f"{reason} ({member.member_id})")

    def _update_static_member_and_rebalance(self, group: ClassicGroup, old_id: str,
                                            new_id: str, req: JoinRequest,
                                            callback: JoinCallback) -> None:
        assert req.group_instance_id is not None
        current_leader = group.leader_id
        member = group.replace_static_member(req.group_instance_id, old_id, new_id)
        self.timer.cancel(("hb", group.group_id, old_id))
        self._heartbeat(group, member)
        old = (list(member.protocols), member.rebalance_timeout_ms, member.session_timeout_ms)
        group.update_member(member, req.protocols, req.rebalance_timeout_ms,
                            req.session_timeout_ms, callback)
        if group.is_in(S.STABLE):
            if group.protocol_name != group.select_protocol():
                self._maybe_prepare_rebalance(
                    group, f"static member {req.group_instance_id} changed the protocol")
                return
            # Same protocol: persist the new member id, keep the generation and assignment.
            try:
                self.manager.store_group(group, {m.member_id: m.assignment
                                                 for m in group.members.values()})
            except KafkaError as exc:
                log.warning("failed to persist group %s: %s", group.group_id, exc)
                group.update_member(member, old[0], old[1], old[2], None)
                group.replace_static_member(req.group_instance_id, new_id, old_id)
                self._heartbeat(group, member)
                callback(JoinResult(store_group_error(exc.error_code), UNKNOWN_MEMBER_ID,
                                    group.generation_id, group.protocol_type,
                                    group.protocol_name, current_leader or ""))
                return
            if req.support_skip_assignment:
                # JoinGroup v9+: the leader learns it leads but keeps the current assignment.
                is_leader = group.is_leader(new_id)
                group.invoke_join(member, group.join_result(member, skip_assignment=is_leader))
            else:
                # Older clients: name the old leader so that nobody recomputes an assignment
                # that a stable group would not distribute.
                group.invoke_join(member, group.join_result(
                    member, leader_id=current_leader or "", with_members=False))
        elif group.is_in(S.COMPLETING_REBALANCE):
            # The leader may already assign to the old member id: start over.
            self._prepare_rebalance(group, f"static member {req.group_instance_id} rejoined")
