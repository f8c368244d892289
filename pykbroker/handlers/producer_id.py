"""InitProducerId for idempotent producers (transactional ids arrive with transactions)."""

from __future__ import annotations

from pykbroker.error_codes import ErrorCode
from pykbroker.protocol._generated.init_producer_id_request import InitProducerIdRequest
from pykbroker.protocol._generated.init_producer_id_response import InitProducerIdResponse
from pykbroker.protocol.api import ApiKey
from pykbroker.server.dispatch import HandlerSpec
from pykbroker.server.request_context import RequestContext


async def handle_init_producer_id(ctx: RequestContext,
                                  req: InitProducerIdRequest) -> InitProducerIdResponse:
    if req.transactional_id is not None:
        return InitProducerIdResponse(error_code=int(ErrorCode.COORDINATOR_NOT_AVAILABLE),
                                      producer_id=-1, producer_epoch=-1)
    pid = ctx.services.producer_ids.next_id()
    return InitProducerIdResponse(throttle_time_ms=0, error_code=0, producer_id=pid,
                                  producer_epoch=0)


HANDLERS = [HandlerSpec(ApiKey.INIT_PRODUCER_ID, 0, 5, handle_init_producer_id)]
