"""Which request and response header version an API version uses (KIP-482, KIP-511)."""

from __future__ import annotations

from pykbroker.protocol._generated.api_index import APIS, ApiKey


def request_header_version(api_key: int, api_version: int) -> int:
    """v2 (tagged fields) for flexible versions, v1 otherwise; v0 only for ControlledShutdown v0."""
    spec = APIS[api_key]
    if spec.first_flexible_version is not None and api_version >= spec.first_flexible_version:
        return 2
    if api_key == ApiKey.CONTROLLED_SHUTDOWN and api_version == 0:
        return 0
    return 1


def response_header_version(api_key: int, api_version: int) -> int:
    """v1 for flexible versions, except ApiVersions, whose response header is always v0 so a
    client that sent a version we don't know can still read the error (KIP-511)."""
    if api_key == ApiKey.API_VERSIONS:
        return 0
    spec = APIS[api_key]
    if spec.first_flexible_version is not None and api_version >= spec.first_flexible_version:
        return 1
    return 0
