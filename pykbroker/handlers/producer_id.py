"""InitProducerId: a fresh id for idempotent producers; transactional ids go to the
transaction coordinator (epoch bumps, fencing, KIP-360 recovery)."""

from __future__ import annotations

from pykbroker.handlers.transactions import fenced_for_version
from pykbroker.protocol._generated.init_producer_id_request import InitProducerIdRequest
from pykbroker.protocol._generated.init_producer_id_response import InitProducerIdResponse
from pykbroker.protocol.api import ApiKey
from pykbroker.server.dispatch import HandlerSpec
from pykbroker.server.request_context import RequestContext


async def handle_init_producer_id(ctx: RequestContext,
                                  req: InitProducerIdRequest) -> InitProducerIdResponse:
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


HANDLERS = [HandlerSpec(ApiKey.INIT_PRODUCER_ID, 0, 5, handle_init_producer_id)]
