"""Per-API fault injection, shared by the single-broker fixture (``kafka_broker.faults``:
it wraps the in-process broker's handlers) and the cluster's client proxies
(``kafka_cluster.faults(broker)``: the proxy applies them to the requests it forwards).
Re-exported by :mod:`pykbroker.testing`.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING, Any

from pykbroker.error_codes import ErrorCode
from pykbroker.protocol.api import ApiKey

if TYPE_CHECKING:
    from pykbroker.server.dispatch import HandlerSpec
    from pykbroker.server.request_context import RequestContext

__all__ = ["Faults", "fail_partitions", "failed_response"]


class Faults:
    """Fault injection and request counting per API key; safe to call from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[int] = Counter()
        self._fail: dict[int, list[int]] = {}
        self._latency: dict[int, float] = {}
        self._drop: dict[int, int] = {}

    def fail_next(self, api_key: int, error: int, count: int = 1) -> None:
        """Answer the next ``count`` requests of ``api_key`` with ``error``."""
        with self._lock:
            self._fail.setdefault(int(api_key), []).extend([int(error)] * count)

    def add_latency(self, api_key: int, seconds: float) -> None:
        with self._lock:
            self._latency[int(api_key)] = seconds

    def drop_next(self, api_key: int, count: int = 1) -> None:
        """Close the connection instead of answering the next ``count`` requests."""
        with self._lock:
            self._drop[int(api_key)] = self._drop.get(int(api_key), 0) + count

    def count(self, api_key: int) -> int:
        with self._lock:
            return self._counts[int(api_key)]

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._fail.clear()
            self._latency.clear()
            self._drop.clear()

    def _take(self, key: int) -> tuple[float, bool, int | None]:
        with self._lock:
            self._counts[key] += 1
            latency = self._latency.get(key, 0.0)
            if self._drop.get(key, 0) > 0:
                self._drop[key] -= 1
                return latency, True, None
            queue = self._fail.get(key)
            return latency, False, (queue.pop(0) if queue else None)

    def wrap(self, spec: HandlerSpec) -> HandlerSpec:
        from dataclasses import replace

        import trio

        from pykbroker.errors import CloseConnection

        inner = spec.handler
        key = int(spec.api_key)

        async def handler(ctx: RequestContext, req: Any) -> Any:
            latency, drop, error = self._take(key)
            if latency:
                await trio.sleep(latency)
            if drop:
                raise CloseConnection(f"fault injection: dropping {spec.api_key.name}")
            if error is not None:
                return await _error_response(inner, ctx, req, error)
            return await inner(ctx, req)

        return replace(spec, handler=handler)


async def _error_response(inner: Any, ctx: RequestContext, req: Any, error: int) -> Any:
    """The response a failing broker would send: errors where the API carries them."""
    from pykbroker.errors import CloseConnection

    key = ctx.api_key
    resp = failed_response(key, req, error)
    if resp is not None:
        return resp
    if key in (ApiKey.FETCH, ApiKey.LIST_OFFSETS, ApiKey.METADATA):
        resp = await inner(ctx, req)  # the real answer, with every partition failing
        fail_partitions(key, resp, error)
        return resp
    raise CloseConnection(f"fault injection: {ApiKey(key).name} has no error field")


def failed_response(key: int, req: Any, error: int) -> Any:
    """An answer with ``error`` built from the request alone: Produce fails every partition,
    other APIs carry it at the top level. None for Fetch, ListOffsets and Metadata (their
    real answer gets the error on every partition, :func:`fail_partitions`) and for APIs
    without an error field."""
    from pykbroker.server.connection import error_response

    if key == ApiKey.PRODUCE:
        from pykbroker.protocol._generated.produce_response import (
            PartitionProduceResponse,
            ProduceResponse,
            TopicProduceResponse,
        )

        return ProduceResponse(responses=[TopicProduceResponse(t.name, [
            PartitionProduceResponse(index=p.index, error_code=error, base_offset=-1,
                                     log_append_time_ms=-1, log_start_offset=-1)
            for p in t.partition_data]) for t in req.topic_data])
    if key in (ApiKey.FETCH, ApiKey.LIST_OFFSETS, ApiKey.METADATA):
        return None
    return error_response(key, req, ErrorCode(error), None)


def fail_partitions(key: int, resp: Any, error: int) -> None:
    """Put ``error`` on every topic (Metadata) or partition (Fetch, ListOffsets) of ``resp``."""
    if key == ApiKey.METADATA:
        for t in resp.topics:
            t.error_code = error
        return
    for t in (resp.responses if key == ApiKey.FETCH else resp.topics):
        for p in t.partitions:
            p.error_code = error
            if key == ApiKey.FETCH:
                p.records = b""
