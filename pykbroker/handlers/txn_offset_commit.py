"""TxnOffsetCommit 0-4: a consumer group's offsets committed inside a transaction."""

from __future__ import annotations

from pykbroker.coordinator.group import OFFSETS_TOPIC, OffsetAndMetadata
from pykbroker.error_codes import ErrorCode
from pykbroker.handlers.authz import GROUP, TRANSACTIONAL_ID, Op, authorize
from pykbroker.handlers.groups import known_partition, unreadable_topics
from pykbroker.protocol._generated.txn_offset_commit_request import TxnOffsetCommitRequest
from pykbroker.protocol._generated.txn_offset_commit_response import (
    TxnOffsetCommitResponse,
    TxnOffsetCommitResponsePartition,
    TxnOffsetCommitResponseTopic,
)
from pykbroker.protocol.api import ApiKey
from pykbroker.server.dispatch import HandlerSpec
from pykbroker.server.request_context import RequestContext

_VERIFICATION_ERRORS = {ErrorCode.PRODUCER_FENCED: ErrorCode.INVALID_PRODUCER_EPOCH,
                        ErrorCode.NETWORK_EXCEPTION: ErrorCode.COORDINATOR_LOAD_IN_PROGRESS}


async def handle_txn_offset_commit(ctx: RequestContext, req: TxnOffsetCommitRequest
                                   ) -> TxnOffsetCommitResponse:
    v = ctx.api_version
    groups = ctx.services.groups
    now = groups.now()
    errors: dict[tuple[str, int], ErrorCode] = {}
    offsets: dict[tuple[str, int], OffsetAndMetadata] = {}
    # WRITE on the transactional id, READ on the group: else every partition has the error.
    refused = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED if not authorize(
        ctx, Op.WRITE, TRANSACTIONAL_ID, req.transactional_id) else \
        ErrorCode.GROUP_AUTHORIZATION_FAILED if not authorize(
            ctx, Op.READ, GROUP, req.group_id) else None
    if refused is not None:
        errors = dict.fromkeys(((t.name, p.partition_index) for t in req.topics
                                for p in t.partitions), refused)
    unreadable = unreadable_topics(ctx, (t.name for t in req.topics))
    for t in req.topics if refused is None else ():
        for p in t.partitions:
            tp = (t.name, p.partition_index)
            if t.name in unreadable:
                errors[tp] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
                continue
            if not known_partition(ctx, t.name, p.partition_index):
                errors[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            offsets[tp] = OffsetAndMetadata(
                offset=p.committed_offset,
                leader_epoch=p.committed_leader_epoch if v >= 2 else -1,
                metadata=p.committed_metadata or "", commit_timestamp=now)
    verifier = ctx.services.transactions.verifier
    if offsets and verifier is not None:
        # In a cluster the transaction's coordinator may be another broker: ask it whether
        # the group's partition is in the transaction (KIP-890, as Kafka's group coordinator
        # does) before the group coordinator checks the outcome.
        tp = (OFFSETS_TOPIC, groups.manager.partition_for(req.group_id))
        await verifier.verify(req.transactional_id, req.producer_id, req.producer_epoch, [tp])
    if offsets:
        errors.update(await groups.txn_commit_offsets(
            req.transactional_id, req.group_id, req.producer_id, req.producer_epoch,
            req.generation_id if v >= 3 else -1, req.member_id if v >= 3 else "",
            req.group_instance_id if v >= 3 else None, offsets))
        # Kafka checks the producer through transaction verification, which reports a
        # fenced producer as INVALID_PRODUCER_EPOCH at every version, and a coordinator it
        # could not reach as COORDINATOR_LOAD_IN_PROGRESS (maybeConvertOffsetCommitError).
        errors = {tp: _VERIFICATION_ERRORS.get(code, code) for tp, code in errors.items()}
    return TxnOffsetCommitResponse(throttle_time_ms=0, topics=[
        TxnOffsetCommitResponseTopic(name=t.name, partitions=[
            TxnOffsetCommitResponsePartition(
                partition_index=p.partition_index,
                error_code=int(errors[(t.name, p.partition_index)]))
            for p in t.partitions])
        for t in req.topics])


HANDLERS = [HandlerSpec(ApiKey.TXN_OFFSET_COMMIT, 0, 4, handle_txn_offset_commit)]
