"""Produce v3+: one v2 batch per partition appended as bytes; acks=0 gets no response."""

from __future__ import annotations

from typing import Any

import trio

from pykbroker.cluster.produce_checks import (
    produce_records_cap,
    run_records_check,
    start_records_check,
    validate_produce_batch,
)
from pykbroker.cluster.replica_manager import Partition
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import CloseConnection, KafkaError, RecordValidationError
from pykbroker.handlers.authz import (
    TOPIC,
    TRANSACTIONAL_ID,
    Op,
    authorize,
    authorizer,
    filter_authorized,
)
from pykbroker.protocol._generated.produce_request import ProduceRequest
from pykbroker.protocol._generated.produce_response import (
    BatchIndexAndErrorMessage,
    PartitionProduceResponse,
    ProduceResponse,
    TopicProduceResponse,
)
from pykbroker.protocol.api import ApiKey
from pykbroker.quotas import load_client_quotas
from pykbroker.records import BatchHeader
from pykbroker.records.inspect import RecordsCheck
from pykbroker.server.dispatch import HandlerSpec
from pykbroker.server.request_context import DeferredResponse, RequestContext


def _error(index: int, code: ErrorCode, message: str | None = None) -> PartitionProduceResponse:
    return PartitionProduceResponse(
        index=index, error_code=int(code), base_offset=-1, log_append_time_ms=-1,
        log_start_offset=-1, error_message=message,
    )


def _authorize_transactional(ctx: RequestContext, req: ProduceRequest) -> Any:
    """KafkaApis: a request holding transactional batches needs WRITE on its transactional
    id (attributes bit 4 of a v2 batch header, at bytes 21-22); refused, every partition
    answers TRANSACTIONAL_ID_AUTHORIZATION_FAILED (ProduceRequest.getErrorResponse), and an
    acks=0 producer, which gets no response, has its connection closed. None: allowed."""
    if authorizer(ctx) is None:
        return None
    transactional = any(isinstance(p.records, (bytes, bytearray, memoryview))
                        and len(p.records) >= 23 and p.records[22] & 0x10
                        for t in req.topic_data for p in t.partition_data)
    if transactional and (req.transactional_id is None or not authorize(
            ctx, Op.WRITE, TRANSACTIONAL_ID, req.transactional_id)):
        code = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        if req.acks == 0:
            raise CloseConnection("acks=0 transactional produce without WRITE on its "
                                  "transactional id")
        return ProduceResponse(throttle_time_ms=0, responses=[
            TopicProduceResponse(name=t.name, partition_responses=[
                _error(p.index, code, code.message) for p in t.partition_data])
            for t in req.topic_data])
    return None


async def handle_produce(ctx: RequestContext, req: ProduceRequest) -> Any:
    services = ctx.services
    try:
        quotas = services.client_quotas
    except AttributeError:  # the first request: are there quotas at all?
        quotas = load_client_quotas(services)
    if quotas is not None:
        await quotas.unmuted(ctx.connection_id)  # KIP-219: the previous response throttled
    replicas = services.replicas
    acks = req.acks
    bad_acks = acks not in (0, 1, -1)
    refused = _authorize_transactional(ctx, req)
    if refused is not None:
        return refused
    writable = filter_authorized(ctx, Op.WRITE, TOPIC, (t.name for t in req.topic_data))
    checked = None if bad_acks else await _check_compressed(replicas, req, writable)
    responses = []
    durable: list[tuple[Partition, int, PartitionProduceResponse]] = []
    replicated: list[tuple[Partition, int, PartitionProduceResponse]] = []
    for topic_data in req.topic_data:
        name = topic_data.name
        results = []
        for pdata in topic_data.partition_data:
            if name not in writable:
                results.append(_error(pdata.index, ErrorCode.TOPIC_AUTHORIZATION_FAILED))
                continue
            if bad_acks:
                results.append(_error(pdata.index, ErrorCode.INVALID_REQUIRED_ACKS))
                continue
            try:
                part = replicas.partition(name, pdata.index)
                if name.startswith("__") and name in services.internal_topics:
                    raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION,
                                     f"Cannot append to internal topic {name}")
                result = replicas.append(part, pdata.records, acks, req.transactional_id,
                                         checked=checked.get(id(pdata)) if checked else None)
            except KafkaError as exc:
                error = _error(pdata.index, exc.error_code, exc.message)
                if isinstance(exc, RecordValidationError):
                    error.record_errors = [BatchIndexAndErrorMessage(i, m)
                                           for i, m in exc.record_errors]
                results.append(error)
                continue
            ok = PartitionProduceResponse(
                index=pdata.index, error_code=0, base_offset=result.base_offset,
                log_append_time_ms=result.log_append_time,
                log_start_offset=result.log_start_offset,
            )
            results.append(ok)
            if part.needs_sync_ack():
                durable.append((part, result.last_offset + 1, ok))
            if acks == -1 and part.high_watermark <= result.last_offset:
                replicated.append((part, result.last_offset + 1, ok))
        responses.append(TopicProduceResponse(name=name, partition_responses=results))
    throttle_ms = 0
    if quotas is not None:  # producer_byte_rate: the request's bytes, even with acks=0
        from pykbroker.quotas.manager import produce_request_size

        throttle_ms = quotas.on_produce(ctx.principal, ctx.client_id, ctx.connection_id,
                                        produce_request_size(ctx.client_id, req))
    if acks == 0:
        await _fsync(durable)
        if any(p.error_code for t in responses for p in t.partition_responses):
            raise CloseConnection("acks=0 produce failed; closing so the client refreshes "
                                  "its metadata")
        return None
    response = ProduceResponse(responses=responses, throttle_time_ms=throttle_ms)
    if not durable and not replicated:
        return response

    # flush.messages: the batches are fsynced before they are acknowledged (appends made
    # meanwhile share the next fsync); acks=all: every ISR member has them (the high
    # watermark passed them). The connection serves the next request meanwhile.
    async def ready() -> None:
        await _fsync(durable)
        await _replicated(replicas, replicated, req.timeout_ms / 1000.0)

    return DeferredResponse(response, ready)


#: The compressed batches of one request are walked inline for this many decompressed bytes
#: in all, the rest finished in a worker thread. The work of a check grows with its
#: decompressed bytes, not its compressed size (every decoder here stops at the chunk asked
#: for), so this bounds what the loop spends on one request (about 5 ms for 100-byte records
#: on the 2-core test machine, however many partitions it holds) while a batch as librdkafka
#: builds them (batch.size 1,000,000 uncompressed) pays no thread hop when it comes alone.
#: Bombs and big batches go to the thread after their first MiB.
INLINE_DECOMPRESSED = 1024 * 1024
#: Checks running in worker threads at once, per broker: they are pure Python (the GIL) apart
#: from decompression, so more would only hold more buffers.
CHECK_THREADS = 2

_check_limiter: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar(
    "produce_check_limiter")


async def _check_compressed(replicas: Any, req: ProduceRequest,
                            writable: Any) -> dict[int, BatchHeader | KafkaError] | None:
    """Kafka's produce-time look inside compressed batches (LogValidator), before any append:
    header, CRC and the records walk of pykbroker.records.inspect, bounded by the topic's
    decompressed-size cap. The request's first INLINE_DECOMPRESSED decompressed bytes are
    checked here on the event loop; what is left is finished in a worker thread, so the loop
    keeps serving other connections meanwhile. Returns the outcome per partition data
    (keyed by ``id``), or None when nothing in the request is compressed (the usual case costs
    one byte test per partition)."""
    outcomes: dict[int, BatchHeader | KafkaError] | None = None
    pending: list[tuple[int, RecordsCheck, BatchHeader]] = []
    inline = INLINE_DECOMPRESSED  # left for this request
    for topic_data in req.topic_data:
        if topic_data.name not in writable:
            continue
        for pdata in topic_data.partition_data:
            records = pdata.records
            # attributes are bytes 21-22: the codec is the low 3 bits of byte 22
            if (not isinstance(records, (bytes, bytearray, memoryview)) or len(records) < 61
                    or not records[22] & 0x07):
                continue
            if outcomes is None:
                outcomes = {}
            try:
                part = replicas.partition(topic_data.name, pdata.index)
                cap = produce_records_cap(part, records)
                if cap is None:
                    continue  # over max.message.bytes: the append refuses it as it is
                header = validate_produce_batch(records)
                check = start_records_check(records, header, cap)
                if inline <= 0:
                    pending.append((id(pdata), check, header))
                    continue
                try:
                    done = run_records_check(check, inline)
                finally:
                    inline -= check.decompressed
                if not done:
                    pending.append((id(pdata), check, header))
                    continue
                outcomes[id(pdata)] = header
            except KafkaError as exc:
                outcomes[id(pdata)] = exc
    if pending:
        assert outcomes is not None
        try:
            limiter = _check_limiter.get()
        except LookupError:
            limiter = trio.CapacityLimiter(CHECK_THREADS)
            _check_limiter.set(limiter)
        results = await trio.to_thread.run_sync(_finish_checks, pending, limiter=limiter)
        outcomes.update(results)
    return outcomes


def _finish_checks(pending: list[tuple[int, RecordsCheck, BatchHeader]],
                   ) -> list[tuple[int, BatchHeader | KafkaError]]:
    """In a worker thread: complete each check (one thread hop per request)."""
    results: list[tuple[int, BatchHeader | KafkaError]] = []
    for key, check, header in pending:
        try:
            run_records_check(check)
        except KafkaError as exc:
            results.append((key, exc))
            continue
        results.append((key, header))
    return results


async def _replicated(replicas: Any,
                      waiting: list[tuple[Partition, int, PartitionProduceResponse]],
                      timeout_s: float) -> None:
    """Kafka's DelayedProduce for acks=all: each batch waits (within one deadline for the
    request) until the ISR has it; a partition that fails gets the error
    ``ReplicaManager.wait_replicated`` gives (REQUEST_TIMED_OUT, NOT_LEADER_OR_FOLLOWER,
    NOT_ENOUGH_REPLICAS_AFTER_APPEND)."""
    deadline = trio.current_time() + timeout_s
    for part, offset, result in waiting:
        try:
            await replicas.wait_replicated(part, offset, deadline - trio.current_time())
        except KafkaError as exc:
            _fail(result, exc.error_code)


def _fail(result: PartitionProduceResponse, code: ErrorCode) -> None:
    result.error_code = int(code)
    result.base_offset = -1


async def _fsync(durable: list[tuple[Partition, int, PartitionProduceResponse]]) -> None:
    """Wait until each partition's appended batch is on disk; a failed fsync fails that
    partition with KAFKA_STORAGE_ERROR, as Kafka answers for a log directory it lost."""
    for part, offset, result in durable:
        try:
            await part.wait_durable(offset)
        except OSError as exc:
            result.error_code = int(ErrorCode.KAFKA_STORAGE_ERROR)
            result.error_message = f"fsync of {part.topic}-{part.index} failed: {exc}"
            result.base_offset = -1


HANDLERS = [HandlerSpec(ApiKey.PRODUCE, 3, 11, handle_produce)]
