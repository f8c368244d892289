"""One dispatch table keyed by API key; ApiVersions is built from it.

The broker therefore never advertises a version it cannot handle. A handler returns the
response object, or ``None`` when Kafka sends no response (Produce with acks=0).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pykbroker.protocol.api import APIS, ApiKey
from pykbroker.server.request_context import RequestContext

Handler = Callable[[RequestContext, Any], Awaitable[Any | None]]


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    api_key: ApiKey
    min_version: int
    max_version: int
    handler: Handler

    def __post_init__(self) -> None:
        spec = APIS[self.api_key]
        if not spec.min_version <= self.min_version <= self.max_version <= spec.max_version:
            raise ValueError(
                f"{self.api_key.name}: {self.min_version}-{self.max_version} is outside the "
                f"schema's {spec.min_version}-{spec.max_version}"
            )


def imported_on_first_use(module: str, name: str) -> Handler:
    """``module.name`` as a handler, importing the module when its first request arrives: the
    APIs most brokers never serve (SASL, SCRAM credentials, ACLs) stay off the start-up path."""
    resolved: list[Handler] = []

    async def handle(ctx: RequestContext, request: Any) -> Any | None:
        if not resolved:
            resolved.append(getattr(importlib.import_module(module), name))
        return await resolved[0](ctx, request)

    handle.__name__ = handle.__qualname__ = name
    return handle


class DispatchTable:
    """Handlers by API key; registering one key twice is a programming error."""

    def __init__(self, specs: Iterable[HandlerSpec] = ()) -> None:
        self._specs: dict[int, HandlerSpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: HandlerSpec) -> None:
        if spec.api_key in self._specs:
            raise ValueError(f"{spec.api_key.name} registered twice")
        self._specs[spec.api_key] = spec

    def get(self, api_key: int) -> HandlerSpec | None:
        return self._specs.get(api_key)

    def supported(self) -> list[HandlerSpec]:
        return [self._specs[k] for k in sorted(self._specs)]

    def __contains__(self, api_key: object) -> bool:
        return api_key in self._specs


def handler_for(dispatch: DispatchTable, api_key: int, version: int) -> HandlerSpec | None:
    """The handler of ``api_key`` when this broker serves it at ``version``."""
    spec = dispatch.get(api_key)
    if spec is None or not spec.min_version <= version <= spec.max_version:
        return None
    return spec
