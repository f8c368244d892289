"""InitProducerId: a fresh id for idempotent producers; transactional ids go to the
transaction coordinator (epoch bumps, fencing, KIP-360 recovery)."""

from __future__ import annotations

from pykbroker.error_codes import ErrorCode
from pykbroker.handlers.authz import (
    CLUSTER,
    TOPIC,
    TRANSACTIONAL_ID,
    Op,
    authorize,
    authorize_by_resource_type,
)
from pykbroker.handlers.transactions import fenced_for_version
from pykbroker.protocol._generated.init_producer_id_request import InitProducerIdRequest
from pykbroker.protocol._generated.init_producer_id_response import InitProducerIdResponse
from pykbroker.protocol.api import ApiKey
from pykbroker.server.dispatch import HandlerSpec
from pykbroker.server.request_context import RequestContext


async def handle_init_producer_id(ctx: RequestContext,
                                  req: InitProducerIdRequest) -> InitProducerIdResponse:
    refused = _refused(ctx, req.transactional_id)
    if refused is not None:
        return InitProducerIdResponse(throttle_time_ms=0, error_code=int(refused),
                                      producer_id=-1, producer_epoch=-1)
    if req.transactional_id is not None:
        v = ctx.api_version
        result = await ctx.services.transactions.init_producer_id(
            req.transactional_id, req.transaction_timeout_ms,
            req.producer_id if v >= 3 else -1, req.producer_epoch if v >= 3 else -1)
        error = fenced_for_version(result.error, v, 4)
        return InitProducerIdResponse(throttle_time_ms=0, error_code=int(error),
                                      producer_id=result.producer_id,
                                      producer_epoch=result.producer_epoch)
    pid = ctx.services.producer_ids.next_id()
    return InitProducerIdResponse(throttle_time_ms=0, error_code=0, producer_id=pid,
                                  producer_epoch=0)


def _refused(ctx: RequestContext, transactional_id: str | None) -> ErrorCode | None:
    """WRITE on the transactional id; without one, IDEMPOTENT_WRITE on the cluster or
    (Kafka 3.x, KIP-679) WRITE on at least one topic."""
    if transactional_id is not None:
        if not authorize(ctx, Op.WRITE, TRANSACTIONAL_ID, transactional_id):
            return ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    elif not (authorize(ctx, Op.IDEMPOTENT_WRITE, CLUSTER)
              or authorize_by_resource_type(ctx, Op.WRITE, TOPIC)):
        return ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    return None


HANDLERS = [HandlerSpec(ApiKey.INIT_PRODUCER_ID, 0, 5, handle_init_producer_id)]
