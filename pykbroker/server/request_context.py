"""What a handler knows about the request it is answering, besides the request body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class RequestContext:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    peer: str  # "host:port" of the client
    listener: str  # listener name, e.g. PLAINTEXT
    security_protocol: str
    connection_id: int
    services: Any  # the broker's subsystems (pykbroker.broker.BrokerServices)
    principal: str = "User:ANONYMOUS"
