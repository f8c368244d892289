"""Security settings pykbroker does not implement yet: refused at start-up, never ignored.

Until TLS, SASL and ACLs exist, a broker that started with them configured would serve
plaintext, unauthenticated, allow-everything connections where the operator asked for
protection. So every setting that asks for protection stops start-up with an error naming
the key and its value:

* a listener whose security protocol (through ``listener.security.protocol.map``) is SSL,
  SASL_PLAINTEXT or SASL_SSL, and ``security.inter.broker.protocol`` other than PLAINTEXT;
* ``authorizer.class.name`` (ACLs would not be enforced);
* settings that decide who may connect: server key and trust stores, ``ssl.client.auth``
  other than ``none``, SASL mechanisms and JAAS logins, also in their
  ``listener.name.<listener>.`` forms;
* ZooKeeper over TLS or with ACLs (``zookeeper.ssl.client.enable``, ``zookeeper.set.acl``).

Other SSL/SASL tuning keys (protocol versions, cipher suites, Kerberos and OAuth details)
only matter on a listener that would already be refused, and ``super.users``,
``allow.everyone.if.no.acl.found`` and ``principal.builder.class`` only with an authorizer;
Kafka ignores them in that case too, so they are a warning.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from pykbroker.config.broker_config import BrokerConfig
from pykbroker.config.types import ConfigError, Password

PLAINTEXT = "PLAINTEXT"
NOT_YET = "pykbroker does not implement TLS, SASL or ACLs yet"

# Keys (after any ``listener.name.<l>.`` or ``listener.name.<l>.<mechanism>.`` prefix) that
# decide who may connect or what they may do; refused when set.
_ACCESS_KEYS = {
    "ssl.keystore.location": "a TLS server identity",
    "ssl.keystore.key": "a TLS server identity",
    "ssl.keystore.certificate.chain": "a TLS server identity",
    "ssl.truststore.location": "TLS client certificates",
    "ssl.truststore.certificates": "TLS client certificates",
    "sasl.enabled.mechanisms": "SASL authentication",
    "sasl.jaas.config": "SASL authentication",
    "sasl.server.callback.handler.class": "SASL authentication",
}
# Keys that only matter once an authorizer or authentication exists: harmless alone.
_AUTHORIZATION_TUNING = ("super.users", "allow.everyone.if.no.acl.found",
                         "principal.builder.class")
_LISTENER_PREFIX = re.compile(r"listener\.name\.[^.]+\.(?:[^.]+\.)?(?=(?:ssl|sasl)\.)")


class Refusal(NamedTuple):
    key: str
    value: str
    reason: str


def _base_key(key: str) -> str:
    """``listener.name.client.scram-sha-256.sasl.jaas.config`` -> ``sasl.jaas.config``."""
    return _LISTENER_PREFIX.sub("", key, count=1)


def _value(config: BrokerConfig, key: str) -> str:
    value = config.value(key)
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return Password.HIDDEN if isinstance(value, Password) else str(value)


def refusals(config: BrokerConfig) -> list[Refusal]:
    """Every setting that asks for protection pykbroker cannot give yet, in a stable order."""
    out: list[Refusal] = []
    secured = [f"{lst.name} ({lst.security_protocol})" for lst in config.listeners
               if lst.security_protocol != PLAINTEXT]
    if secured:
        out.append(Refusal("listeners", str(config.get("listeners") or ""),
                           f"listener{'s' if len(secured) > 1 else ''} {', '.join(secured)} "
                           f"would be served as plaintext without authentication: {NOT_YET}. "
                           "Use PLAINTEXT listeners until security support lands."))
    set_keys = config.origins()
    protocol = str(config.get("security.inter.broker.protocol"))
    if "security.inter.broker.protocol" in set_keys and protocol != PLAINTEXT:
        out.append(Refusal("security.inter.broker.protocol", protocol,
                           f"{NOT_YET}; brokers would talk in plaintext."))
    authorizer = str(config.get("authorizer.class.name") or "")
    if authorizer:
        out.append(Refusal("authorizer.class.name", authorizer,
                           f"{NOT_YET}; every client would be allowed every operation."))
    for key in set_keys:
        base = _base_key(key)
        if base in _ACCESS_KEYS:
            out.append(Refusal(key, _value(config, key),
                               f"it asks for {_ACCESS_KEYS[base]}, and {NOT_YET}."))
        elif base == "ssl.client.auth" and str(config.value(key)).lower() != "none":
            out.append(Refusal(key, _value(config, key),
                               f"it asks for TLS client authentication, and {NOT_YET}."))
    for key in ("zookeeper.ssl.client.enable", "zookeeper.set.acl"):
        if config.get(key) is True:
            out.append(Refusal(key, "true", "pykbroker does not implement ZooKeeper TLS or "
                                            "ACLs yet; it would connect in plaintext and "
                                            "leave its znodes open."))
    return out


def ignored_warnings(config: BrokerConfig) -> list[str]:
    """Harmless SSL/SASL/ACL tuning keys: no effect without TLS, SASL or an authorizer."""
    refused = {r.key for r in refusals(config)}
    return [f"'{key}' (from {origin}) has no effect: pykbroker serves PLAINTEXT listeners "
            "without an authorizer (TLS, SASL and ACLs are not implemented yet)"
            for key, origin in config.origins().items()
            if key not in refused and (_base_key(key).startswith(("ssl.", "sasl."))
                                       or key in _AUTHORIZATION_TUNING)]


def refuse_unsupported_security(config: BrokerConfig) -> None:
    """Raise a ConfigError for the first refused setting, naming the others too."""
    found = refusals(config)
    if not found:
        return
    first, rest = found[0], found[1:]
    reason = first.reason
    if rest:
        reason += " Also refused: " + "; ".join(f"{r.key}={r.value}" for r in rest) + "."
    raise ConfigError(first.key, first.value, reason, config.origin(first.key))
