"""One connection's SASL state, as Kafka's SaslServerAuthenticator keeps it.

    HANDSHAKE     ApiVersions and SaslHandshake only
    AUTHENTICATE  SaslAuthenticate only (or, after SaslHandshake v0, raw size-prefixed tokens)
    COMPLETE      every request; a SaslHandshake starts a re-authentication (KIP-368)
    FAILED        the connection is answered, then closed

The connection enforces which requests each state admits; handlers/sasl.py drives the
transitions through ``handshake`` and ``authenticate``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum
from typing import Protocol

from pykbroker.error_codes import ErrorCode
from pykbroker.protocol.api import ApiKey
from pykbroker.security.credentials import ScramCredentialStore
from pykbroker.security.plain import PlainServer
from pykbroker.security.plan import ListenerSecurity
from pykbroker.security.principal import user
from pykbroker.security.scram import (
    SaslAuthenticationError,
    SaslError,
    ScramMechanism,
    ScramServer,
)


class SaslState(Enum):
    HANDSHAKE = "handshake"
    AUTHENTICATE = "authenticate"
    COMPLETE = "complete"
    FAILED = "failed"


_ALLOWED = {
    SaslState.HANDSHAKE: frozenset({ApiKey.API_VERSIONS, ApiKey.SASL_HANDSHAKE}),
    SaslState.AUTHENTICATE: frozenset({ApiKey.SASL_AUTHENTICATE}),
    SaslState.FAILED: frozenset(),
}


class SaslFailed(Exception):
    """Authentication failed; the message is what Kafka tells the client."""


class _Mechanism(Protocol):
    complete: bool
    username: str | None

    def evaluate(self, data: bytes) -> bytes: ...


class SaslSession:
    def __init__(self, listener: ListenerSecurity, credentials: ScramCredentialStore,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.listener = listener
        self.credentials = credentials
        self.clock = clock
        self.state = SaslState.HANDSHAKE
        self.mechanism: str | None = None
        self.principal: str | None = None
        self.raw_tokens = False  # SaslHandshake v0: tokens follow without request headers
        self.reauthenticating = False
        self.expires_at: float | None = None
        self._server: _Mechanism | None = None

    @property
    def authenticated(self) -> bool:
        return self.state is SaslState.COMPLETE

    @property
    def failed(self) -> bool:
        return self.state is SaslState.FAILED

    @property
    def expects_raw_token(self) -> bool:
        """After SaslHandshake v0 the next frame is a bare token, not a request."""
        return self.raw_tokens and self.state is SaslState.AUTHENTICATE

    def admits(self, api_key: int) -> bool:
        """Whether a request of ``api_key`` may be served in the current state."""
        if self.state is SaslState.COMPLETE:
            return True
        return api_key in _ALLOWED[self.state]

    def expired(self) -> bool:
        return (self.state is SaslState.COMPLETE and self.expires_at is not None
                and self.clock() > self.expires_at)

    def handshake(self, mechanism: str, version: int) -> ErrorCode:
        """SaslHandshake: NONE, or the error to answer (the session then fails)."""
        if self.state is SaslState.COMPLETE:
            if mechanism != self.mechanism:
                self.state = SaslState.FAILED
                return ErrorCode.ILLEGAL_SASL_STATE
            self.reauthenticating = True
        elif self.state is not SaslState.HANDSHAKE:
            self.state = SaslState.FAILED
            return ErrorCode.ILLEGAL_SASL_STATE
        if mechanism not in self.listener.mechanisms:
            self.state = SaslState.FAILED
            return ErrorCode.UNSUPPORTED_SASL_MECHANISM
        self.mechanism = mechanism
        self.raw_tokens = version == 0
        scram = ScramMechanism.by_name(mechanism)
        if scram is None:
            self._server = PlainServer(self.listener.plain_users)
        else:
            self._server = ScramServer(scram, lambda name: self.credentials.get(name, scram))
        self.state = SaslState.AUTHENTICATE
        return ErrorCode.NONE

    def authenticate(self, token: bytes) -> bytes:
        """One SASL token from the client; the server's answer. SaslFailed on failure."""
        server = self._server
        assert self.state is SaslState.AUTHENTICATE and server is not None
        what = "re-authentication" if self.reauthenticating else "authentication"
        try:
            answer = server.evaluate(token)
        except SaslAuthenticationError as exc:
            self.state = SaslState.FAILED
            raise SaslFailed(str(exc)) from None
        except SaslError:
            self.state = SaslState.FAILED
            raise SaslFailed(f"Authentication failed during {what} due to invalid credentials "
                             f"with SASL mechanism {self.mechanism}") from None
        if server.complete:
            assert server.username is not None
            principal = user(server.username)
            if self.reauthenticating and principal != self.principal:
                self.state = SaslState.FAILED
                raise SaslFailed(f"Cannot change principals during re-authentication from "
                                 f"{self.principal}: {principal}")
            self.principal = principal
            self.state = SaslState.COMPLETE
            self.reauthenticating = False
            self.raw_tokens = False
            self._server = None
            reauth = self.listener.reauth_ms
            self.expires_at = self.clock() + reauth / 1000.0 if reauth > 0 else None
        return answer

    @property
    def session_lifetime_ms(self) -> int:
        """KIP-368: what SaslAuthenticate v1+ tells the client once authenticated."""
        return self.listener.reauth_ms if self.authenticated else 0
