"""ApiVersions: the versions this broker serves, straight from the dispatch table."""

from __future__ import annotations

import re
from typing import Any

from pykbroker.error_codes import ErrorCode
from pykbroker.protocol._generated.api_versions_request import ApiVersionsRequest
from pykbroker.protocol._generated.api_versions_response import ApiVersion, ApiVersionsResponse
from pykbroker.protocol.api import ApiKey
from pykbroker.server.dispatch import DispatchTable, HandlerSpec
from pykbroker.server.request_context import RequestContext

# Kafka's rule for ClientSoftwareName / ClientSoftwareVersion (KIP-511).
_SOFTWARE = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?")


def api_versions_response(dispatch: DispatchTable, error: ErrorCode) -> ApiVersionsResponse:
    """Every served API; on UNSUPPORTED_VERSION only ApiVersions' own range, and nothing on
    other errors, exactly as Kafka's ApiVersionsRequest.getErrorResponse answers."""
    if error == ErrorCode.NONE:
        specs = dispatch.supported()
    elif error == ErrorCode.UNSUPPORTED_VERSION:
        specs = [s for s in dispatch.supported() if s.api_key == ApiKey.API_VERSIONS]
    else:
        specs = []
    keys = [ApiVersion(s.api_key, s.min_version, s.max_version) for s in specs]
    return ApiVersionsResponse(error_code=int(error), api_keys=keys, throttle_time_ms=0)


async def handle_api_versions(ctx: RequestContext, req: ApiVersionsRequest) -> Any:
    dispatch: DispatchTable = ctx.services.dispatch
    if ctx.api_version >= 3 and not (
        _SOFTWARE.fullmatch(req.client_software_name or "")
        and _SOFTWARE.fullmatch(req.client_software_version or "")
    ):
        return api_versions_response(dispatch, ErrorCode.INVALID_REQUEST)
    return api_versions_response(dispatch, ErrorCode.NONE)


HANDLERS = [HandlerSpec(ApiKey.API_VERSIONS, 0, 4, handle_api_versions)]
