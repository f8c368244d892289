"""Lookup of generated request and response classes by API key, imported on first use.

The generated package is large; importing a module only when its API is first used keeps
start-up (and the pytest plugin) cheap.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any, ClassVar, Protocol, Self

from pykbroker.protocol._generated.api_index import APIS, DATA_MODULES, ApiKey, ApiSpec

__all__ = ["APIS", "ApiKey", "ApiSpec", "Message", "request_class", "response_class",
           "data_class"]


class Message(Protocol):
    """What every generated top-level message class offers."""

    NAME: ClassVar[str]
    API_KEY: ClassVar[int | None]
    MIN_VERSION: ClassVar[int]
    MAX_VERSION: ClassVar[int]
    FIRST_FLEXIBLE_VERSION: ClassVar[int | None]

    def encode(self, out: bytearray, version: int) -> None: ...

    def to_bytes(self, version: int) -> bytes: ...

    @classmethod
    def decode(cls, buf: bytes | bytearray | memoryview, pos: int, version: int) -> tuple[
        Self, int]: ...


def _load(module: str, name: str) -> Any:
    return getattr(importlib.import_module(f"pykbroker.protocol._generated.{module}"), name)


@cache
def request_class(api_key: int) -> type[Message]:
    spec = APIS[api_key]
    cls: type[Message] = _load(spec.request_module, spec.name + "Request")
    return cls


@cache
def response_class(api_key: int) -> type[Message]:
    spec = APIS[api_key]
    cls: type[Message] = _load(spec.response_module, spec.name + "Response")
    return cls


@cache
def data_class(name: str) -> type[Message]:
    """A non-API schema by name: headers, ConsumerProtocol*, internal records."""
    cls: type[Message] = _load(DATA_MODULES[name], name)
    return cls
