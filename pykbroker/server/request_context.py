"""What a handler knows about the request it is answering, besides the request body."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pykbroker.security.authenticator import SaslSession
    from pykbroker.security.plan import BrokerSecurity


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
    principal: str = "User:ANONYMOUS"  # User:alice once TLS or SASL said who it is
    session: SaslSession | None = None  # the connection's SASL state, on SASL listeners
    security: BrokerSecurity | None = None  # listeners' security and SCRAM credentials


@dataclass(slots=True)
class DeferredResponse:
    """A response that may leave only once ``ready()`` returns (say, when the appended records
    are fsynced). Meanwhile the connection reads and serves the next request, so that work
    overlaps the wait; responses still leave in request order."""

    response: Any
    ready: Callable[[], Awaitable[None]]
