"""SASL/PLAIN (RFC 4616) as Kafka's PlainSaslServer checks it, users from the JAAS config."""

from __future__ import annotations

import hmac

from pykbroker.security.scram import SaslAuthenticationError


class PlainServer:
    """One PLAIN exchange: a single message ``authzid NUL username NUL password``."""

    def __init__(self, users: dict[str, str]) -> None:
        self._users = users
        self.complete = False
        self.username: str | None = None

    def evaluate(self, data: bytes) -> bytes:
        tokens = data.decode("utf-8", "replace").split("\x00")
        if len(tokens) != 3:
            raise SaslAuthenticationError(
                f"Invalid SASL/PLAIN response: expected 3 tokens, got {len(tokens)}")
        authzid, username, password = tokens
        if not username:
            raise SaslAuthenticationError("Authentication failed: username not specified")
        if not password:
            raise SaslAuthenticationError("Authentication failed: password not specified")
        expected = self._users.get(username)
        # Compared in constant time; an unknown user costs the same comparison.
        ok = hmac.compare_digest(password.encode(), (expected or "\x00" + password).encode())
        if expected is None or not ok:
            raise SaslAuthenticationError("Authentication failed: Invalid username or password")
        if authzid and authzid != username:
            raise SaslAuthenticationError(
                "Authentication failed: Client requested an authorization id that is different "
                "from username")
        self.complete = True
        self.username = username
        return b""
