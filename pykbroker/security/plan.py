"""The broker's security plan: one entry per listener, the SCRAM credentials, the authorizer.

Kept apart from the code that builds a secured listener (``listener_security``: TLS contexts,
JAAS, principal rules) and from the ACL authorizer (``acl_store``) so that a broker with only
PLAINTEXT listeners and no authorizer never imports either: start-up time and idle memory stay
what they were before security existed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pykbroker.security.credentials import ScramCredentialStore

if TYPE_CHECKING:
    import ssl

    from pykbroker.security.acl_store import StoredAclAuthorizer
    from pykbroker.security.ssl_principal import SslPrincipalMapper

SUPPORTED_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(slots=True)
class ListenerSecurity:
    """What one listener needs to secure its connections."""

    name: str
    protocol: str  # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    ssl_context: ssl.SSLContext | None = None
    client_auth: str = "none"
    principal_mapper: SslPrincipalMapper | None = None
    mechanisms: list[str] = field(default_factory=list)
    plain_users: dict[str, str] = field(default_factory=dict)
    sasl_max_receive_size: int = 524288
    reauth_ms: int = 0
    failed_auth_delay_s: float = 0.1

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")


@dataclass(slots=True)
class BrokerSecurity:
    """Every listener's plan, and the SCRAM credentials the broker keeps."""

    listeners: dict[str, ListenerSecurity]
    credentials: ScramCredentialStore
    authorizer: StoredAclAuthorizer | None = None  # None: every operation is allowed

    def for_listener(self, name: str, protocol: str) -> ListenerSecurity:
        return self.listeners.get(name) or ListenerSecurity(name, protocol)


def plaintext_only() -> BrokerSecurity:
    """No TLS, no SASL, credentials in memory: for embeddings without a configuration."""
    return BrokerSecurity({}, ScramCredentialStore(None))
