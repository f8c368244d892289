"""The broker's security plan from its configuration.

A PLAINTEXT listener needs nothing built; a secured one is built by ``listener_security``
(TLS contexts, JAAS, principal rules) and the authorizer by ``acl_store``, each imported only
when the configuration asks for it.
"""

from __future__ import annotations

from pathlib import Path

from pykbroker.config.broker_config import BrokerConfig
from pykbroker.security.credentials import ScramCredentialStore
from pykbroker.security.plan import BrokerSecurity, ListenerSecurity


def security_from_config(config: BrokerConfig, directory: Path | None) -> BrokerSecurity:
    """ConfigError (key, value, reason) for anything that cannot be served as asked;
    ``directory`` keeps the SCRAM credentials and ACLs (None: in memory)."""
    listeners: dict[str, ListenerSecurity] = {}
    for lst in config.listeners:
        if lst.security_protocol == "PLAINTEXT":
            listeners[lst.name] = ListenerSecurity(lst.name, "PLAINTEXT")
        else:
            from pykbroker.security.listener_security import listener_security

            listeners[lst.name] = listener_security(config, lst.name, lst.security_protocol)
    authorizer = None
    if str(config.get("authorizer.class.name") or ""):
        from pykbroker.security.acl_store import authorizer_from_config

        authorizer = authorizer_from_config(config, directory)
    return BrokerSecurity(listeners, ScramCredentialStore(directory), authorizer)
