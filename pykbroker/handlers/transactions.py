"""Transaction APIs: AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, WriteTxnMarkers, and the
admin views DescribeTransactions, ListTransactions and DescribeProducers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import trio

from pykbroker.coordinator.group import OFFSETS_TOPIC
from pykbroker.coordinator.transaction import TxnState
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import DecodeError, KafkaError
from pykbroker.handlers.authz import (
    CLUSTER,
    GROUP,
    TOPIC,
    TRANSACTIONAL_ID,
    Op,
    authorize,
    secured,
)
from pykbroker.handlers.groups import known_partition
from pykbroker.protocol._generated import describe_producers_response as dp
from pykbroker.protocol._generated import describe_transactions_response as dt
from pykbroker.protocol._generated import list_transactions_response as lt
from pykbroker.protocol._generated.add_offsets_to_txn_request import AddOffsetsToTxnRequest
from pykbroker.protocol._generated.add_offsets_to_txn_response import AddOffsetsToTxnResponse
from pykbroker.protocol._generated.add_partitions_to_txn_request import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnTopic,
)
from pykbroker.protocol._generated.add_partitions_to_txn_response import (
    AddPartitionsToTxnPartitionResult,
    AddPartitionsToTxnResponse,
    AddPartitionsToTxnResult,
    AddPartitionsToTxnTopicResult,
)
from pykbroker.protocol._generated.describe_producers_request import DescribeProducersRequest
from pykbroker.protocol._generated.describe_transactions_request import (
    DescribeTransactionsRequest,
)
from pykbroker.protocol._generated.end_txn_request import EndTxnRequest
from pykbroker.protocol._generated.end_txn_response import EndTxnResponse
from pykbroker.protocol._generated.list_transactions_request import ListTransactionsRequest
from pykbroker.protocol._generated.produce_request import ProduceRequest
from pykbroker.protocol._generated.write_txn_markers_request import WriteTxnMarkersRequest
from pykbroker.protocol._generated.write_txn_markers_response import (
    WritableTxnMarkerPartitionResult,
    WritableTxnMarkerResult,
    WritableTxnMarkerTopicResult,
    WriteTxnMarkersResponse,
)
from pykbroker.protocol.api import ApiKey
from pykbroker.records import BatchHeader
from pykbroker.server.dispatch import HandlerSpec
from pykbroker.server.request_context import RequestContext

TopicPartition = tuple[str, int]


def fenced_for_version(code: ErrorCode, version: int, first_fenced_version: int) -> ErrorCode:
    """Before the version that added PRODUCER_FENCED (KIP-588), Kafka answers fencing as
    INVALID_PRODUCER_EPOCH: older clients (aiokafka, v0 only) know no other code for it."""
    if code == ErrorCode.PRODUCER_FENCED and version < first_fenced_version:
        return ErrorCode.INVALID_PRODUCER_EPOCH
    return code


def _partitions(topics: Iterable[AddPartitionsToTxnTopic]) -> list[TopicPartition]:
    return [(t.name, p) for t in topics for p in t.partitions]


def _topic_results(results: dict[TopicPartition, ErrorCode]
                   ) -> list[AddPartitionsToTxnTopicResult]:
    by_topic: dict[str, list[AddPartitionsToTxnPartitionResult]] = {}
    for (topic, index), code in results.items():
        by_topic.setdefault(topic, []).append(
            AddPartitionsToTxnPartitionResult(partition_index=index,
                                              partition_error_code=int(code)))
    return [AddPartitionsToTxnTopicResult(name=t, results_by_partition=r)
            for t, r in by_topic.items()]


async def handle_add_partitions_to_txn(ctx: RequestContext, req: AddPartitionsToTxnRequest
                                       ) -> AddPartitionsToTxnResponse:
    txns = ctx.services.transactions
    if ctx.api_version <= 3:
        wanted = _partitions(req.v3_and_below_topics)
        refused = _refused_partitions(ctx, req.v3_and_below_transactional_id, wanted)
        if refused is not None:
            results = refused
        else:
            results = await txns.add_partitions(
                req.v3_and_below_transactional_id, req.v3_and_below_producer_id,
                req.v3_and_below_producer_epoch, wanted)
        results = {tp: fenced_for_version(code, ctx.api_version, 2)
                   for tp, code in results.items()}
        return AddPartitionsToTxnResponse(throttle_time_ms=0,
                                          results_by_topic_v3_and_below=_topic_results(results))
    # v4+: batched, from brokers verifying transactional produces (KIP-890).
    if not authorize(ctx, Op.CLUSTER_ACTION, CLUSTER):
        return AddPartitionsToTxnResponse(
            throttle_time_ms=0, error_code=int(ErrorCode.CLUSTER_AUTHORIZATION_FAILED),
            results_by_transaction=[])
    out = []
    for txn in req.transactions:
        wanted = _partitions(txn.topics)
        if txn.verify_only:
            results = txns.verify(txn.transactional_id, txn.producer_id, txn.producer_epoch,
                                  wanted)
        else:
            results = await txns.add_partitions(txn.transactional_id, txn.producer_id,
                                                txn.producer_epoch, wanted)
        out.append(AddPartitionsToTxnResult(transactional_id=txn.transactional_id,
                                            topic_results=_topic_results(results)))
    return AddPartitionsToTxnResponse(throttle_time_ms=0, error_code=0,
                                      results_by_transaction=out)


def _refused_partitions(ctx: RequestContext, transactional_id: str,
                        wanted: list[TopicPartition]) -> dict[TopicPartition, ErrorCode] | None:
    """A client's AddPartitionsToTxn (v0-3) needs WRITE on its transactional id and on every
    topic (never granted on an internal topic); when any partition fails its check, none is
    added and the others answer OPERATION_NOT_ATTEMPTED. None: every check passed."""
    if not secured(ctx):
        return None
    if not authorize(ctx, Op.WRITE, TRANSACTIONAL_ID, transactional_id):
        return dict.fromkeys(wanted, ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    internal = ctx.services.internal_topics
    writable = {t for t, _ in wanted if t not in internal and authorize(ctx, Op.WRITE, TOPIC, t)}
    if all(t in writable for t, _ in wanted):
        return None
    return {(t, p): ErrorCode.TOPIC_AUTHORIZATION_FAILED if t not in writable
            else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION if not known_partition(ctx, t, p)
            else ErrorCode.OPERATION_NOT_ATTEMPTED for t, p in wanted}


async def handle_add_offsets_to_txn(ctx: RequestContext, req: AddOffsetsToTxnRequest
                                    ) -> AddOffsetsToTxnResponse:
    """The group's ``__consumer_offsets`` partition joins the transaction. In a cluster the
    group's coordinator may be another broker: only the partition matters here, as in
    Kafka (the topic is created first if it does not exist yet)."""
    groups = ctx.services.groups
    if not authorize(ctx, Op.WRITE, TRANSACTIONAL_ID, req.transactional_id):
        code = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        return AddOffsetsToTxnResponse(throttle_time_ms=0, error_code=int(code))
    if not authorize(ctx, Op.READ, GROUP, req.group_id):
        code = ErrorCode.GROUP_AUTHORIZATION_FAILED
        return AddOffsetsToTxnResponse(throttle_time_ms=0, error_code=int(code))
    if ctx.services.cluster is not None and ctx.services.topics.get(OFFSETS_TOPIC) is not None:
        code = ErrorCode.NONE
    else:
        code = groups.find_coordinator(req.group_id)
    if code == ErrorCode.NONE:
        tp = (OFFSETS_TOPIC, groups.manager.partition_for(req.group_id))
        results = await ctx.services.transactions.add_partitions(
            req.transactional_id, req.producer_id, req.producer_epoch, [tp])
        code = fenced_for_version(results[tp], ctx.api_version, 2)
    return AddOffsetsToTxnResponse(throttle_time_ms=0, error_code=int(code))


async def handle_end_txn(ctx: RequestContext, req: EndTxnRequest) -> EndTxnResponse:
    if not authorize(ctx, Op.WRITE, TRANSACTIONAL_ID, req.transactional_id):
        return EndTxnResponse(throttle_time_ms=0, producer_id=-1, producer_epoch=-1,
                              error_code=int(ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED))
    code = await ctx.services.transactions.end_txn(
        req.transactional_id, req.producer_id, req.producer_epoch, req.committed)
    code = fenced_for_version(code, ctx.api_version, 2)
    return EndTxnResponse(throttle_time_ms=0, error_code=int(code), producer_id=-1,
                          producer_epoch=-1)


async def handle_write_txn_markers(ctx: RequestContext, req: WriteTxnMarkersRequest
                                   ) -> WriteTxnMarkersResponse:
    """Markers from a transaction coordinator (in a cluster, possibly another broker's).

    Only a partition's leader writes them (NOT_LEADER_OR_FOLLOWER otherwise); a marker from
    an older coordinator epoch than the partition's last one is TRANSACTION_COORDINATOR_-
    FENCED, an older producer epoch INVALID_PRODUCER_EPOCH. As Kafka appends markers with
    acks=-1, the answer waits until the ISR holds them (up to request.timeout.ms); a lone
    broker's high watermark is its log end, so it never waits."""
    replicas = ctx.services.replicas
    # ALTER on the cluster or CLUSTER_ACTION; refused, every partition answers the error.
    if not (authorize(ctx, Op.ALTER, CLUSTER) or authorize(ctx, Op.CLUSTER_ACTION, CLUSTER)):
        code = int(ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
        return WriteTxnMarkersResponse(markers=[WritableTxnMarkerResult(
            producer_id=m.producer_id, topics=[WritableTxnMarkerTopicResult(
                name=t.name, partitions=[WritableTxnMarkerPartitionResult(
                    partition_index=i, error_code=code) for i in t.partition_indexes])
                for t in m.topics]) for m in req.markers])
    out = []
    written: list[tuple[Any, int, WritableTxnMarkerPartitionResult]] = []
    for marker in req.markers:
        topics = []
        for topic in marker.topics:
            results = []
            for index in topic.partition_indexes:
                result = WritableTxnMarkerPartitionResult(partition_index=index, error_code=0)
                try:
                    part = replicas.partition(topic.name, index)
                    replicas.write_marker(part, marker.producer_id, marker.producer_epoch,
                                          marker.transaction_result, marker.coordinator_epoch)
                    written.append((part, int(part.log.log_end_offset), result))
                except KafkaError as exc:
                    result.error_code = int(exc.error_code)
                results.append(result)
            topics.append(WritableTxnMarkerTopicResult(name=topic.name, partitions=results))
        out.append(WritableTxnMarkerResult(producer_id=marker.producer_id, topics=topics))
    unreplicated = [w for w in written if w[0].high_watermark < w[1]]
    if unreplicated:
        timeout_s = int(str(ctx.services.config.get("request.timeout.ms"))) / 1000.0
        deadline = trio.current_time() + timeout_s
        for part, end, result in unreplicated:
            try:
                await replicas.wait_replicated(part, end,
                                               max(deadline - trio.current_time(), 0.0))
            except KafkaError as exc:
                result.error_code = int(exc.error_code)
    return WriteTxnMarkersResponse(markers=out)


async def handle_describe_transactions(ctx: RequestContext, req: DescribeTransactionsRequest
                                       ) -> dt.DescribeTransactionsResponse:
    txns = ctx.services.transactions
    states = []
    check = secured(ctx)
    allowed = [t for t in req.transactional_ids
               if not check or authorize(ctx, Op.DESCRIBE, TRANSACTIONAL_ID, t)]
    for txn_id in req.transactional_ids:  # Kafka answers the unauthorized ids first
        if txn_id not in allowed:
            states.append(dt.TransactionState(
                error_code=int(ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
                transactional_id=txn_id, transaction_state="", transaction_timeout_ms=0,
                transaction_start_time_ms=-1, producer_id=-1, producer_epoch=-1, topics=[]))
    for txn_id in allowed:
        code, meta = txns.describe(txn_id)
        if meta is None:
            states.append(dt.TransactionState(
                error_code=int(code), transactional_id=txn_id, transaction_state="",
                transaction_timeout_ms=0, transaction_start_time_ms=-1, producer_id=-1,
                producer_epoch=-1, topics=[]))
            continue
        by_topic: dict[str, list[int]] = {}
        for topic, index in sorted(meta.partitions):
            if check and not authorize(ctx, Op.DESCRIBE, TOPIC, topic):
                continue  # only the partitions of topics it may describe
            by_topic.setdefault(topic, []).append(index)
        states.append(dt.TransactionState(
            error_code=0, transactional_id=txn_id, transaction_state=meta.state.title,
            transaction_timeout_ms=meta.timeout_ms,
            transaction_start_time_ms=meta.start_timestamp,
            producer_id=meta.producer_id, producer_epoch=meta.producer_epoch,
            topics=[dt.TopicData(topic=t, partitions=p) for t, p in by_topic.items()]))
    return dt.DescribeTransactionsResponse(throttle_time_ms=0, transaction_states=states)


async def handle_list_transactions(ctx: RequestContext, req: ListTransactionsRequest
                                   ) -> lt.ListTransactionsResponse:
    wanted: set[TxnState] = set()
    unknown = []
    for name in req.state_filters:
        state = TxnState.from_title(name)
        if state is None:
            unknown.append(name)
        else:
            wanted.add(state)
    duration = req.duration_filter if ctx.api_version >= 1 else -1
    found = [] if unknown and not wanted else ctx.services.transactions.list_transactions(
        wanted, set(req.producer_id_filters), duration)
    if secured(ctx):
        found = [m for m in found
                 if authorize(ctx, Op.DESCRIBE, TRANSACTIONAL_ID, m.transactional_id)]
    return lt.ListTransactionsResponse(
        throttle_time_ms=0, error_code=0, unknown_state_filters=unknown,
        transaction_states=[lt.TransactionState(transactional_id=m.transactional_id,
                                                producer_id=m.producer_id,
                                                transaction_state=m.state.title)
                            for m in found])


async def handle_describe_producers(ctx: RequestContext, req: DescribeProducersRequest
                                    ) -> dp.DescribeProducersResponse:
    replicas = ctx.services.replicas
    topics = []
    for topic in req.topics:
        parts = []
        allowed = authorize(ctx, Op.READ, TOPIC, topic.name)
        for index in topic.partition_indexes:
            try:
                if not allowed:
                    raise KafkaError(ErrorCode.TOPIC_AUTHORIZATION_FAILED)
                part = replicas.partition(topic.name, index)
            except KafkaError as exc:
                parts.append(dp.PartitionResponse(partition_index=index,
                                                  error_code=int(exc.error_code),
                                                  error_message=exc.message,
                                                  active_producers=[]))
                continue
            producers = [
                dp.ProducerState(
                    producer_id=e.producer_id, producer_epoch=e.epoch,
                    last_sequence=e.last_seq, last_timestamp=e.last_timestamp,
                    coordinator_epoch=e.coordinator_epoch,
                    current_txn_start_offset=e.current_txn_first_offset)
                for e in part.log.producer_state.producers.values()]
            parts.append(dp.PartitionResponse(partition_index=index, error_code=0,
                                              error_message=None, active_producers=producers))
        topics.append(dp.TopicResponse(name=topic.name, partitions=parts))
    return dp.DescribeProducersResponse(throttle_time_ms=0, topics=topics)


def verify_transactional_produce(spec: HandlerSpec) -> HandlerSpec:
    """Produce in a cluster: the transactional batches of a request are verified with their
    transaction coordinator, possibly another broker, before the produce handler appends
    them (KIP-890; the append checks the outcome through ``ReplicaManager.verify_transaction``
    without awaiting)."""
    inner = spec.handler

    async def handle(ctx: RequestContext, req: Any) -> Any:
        verifier = ctx.services.transactions.verifier
        if req.transactional_id is not None and verifier is not None:
            await _verify_batches(verifier, req)
        return await inner(ctx, req)

    return HandlerSpec(spec.api_key, spec.min_version, spec.max_version, handle)


async def _verify_batches(verifier: Any, req: ProduceRequest) -> None:
    by_producer: dict[tuple[int, int], list[TopicPartition]] = {}
    for topic in req.topic_data:
        for pdata in topic.partition_data:
            records = pdata.records
            if not isinstance(records, (bytes, bytearray, memoryview)):
                continue
            try:
                header = BatchHeader.parse(records)
            except DecodeError:
                continue  # the produce handler answers for a malformed batch
            if header.is_transactional and not header.is_control:
                by_producer.setdefault((header.producer_id, header.producer_epoch), []).append(
                    (topic.name, pdata.index))
    for (producer_id, producer_epoch), partitions in by_producer.items():
        await verifier.verify(req.transactional_id, producer_id, producer_epoch, partitions)


HANDLERS = [
    HandlerSpec(ApiKey.ADD_PARTITIONS_TO_TXN, 0, 5, handle_add_partitions_to_txn),
    HandlerSpec(ApiKey.ADD_OFFSETS_TO_TXN, 0, 4, handle_add_offsets_to_txn),
    HandlerSpec(ApiKey.END_TXN, 0, 4, handle_end_txn),
    HandlerSpec(ApiKey.WRITE_TXN_MARKERS, 0, 1, handle_write_txn_markers),
    HandlerSpec(ApiKey.DESCRIBE_TRANSACTIONS, 0, 0, handle_describe_transactions),
    HandlerSpec(ApiKey.LIST_TRANSACTIONS, 0, 1, handle_list_transactions),
    HandlerSpec(ApiKey.DESCRIBE_PRODUCERS, 0, 0, handle_describe_producers),
]
