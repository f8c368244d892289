"""Security settings: served as asked, or refused at start-up, never ignored.

pykbroker serves SSL, SASL_PLAINTEXT and SASL_SSL listeners (TLS 1.2/1.3 with PEM stores,
client certificates, SASL PLAIN and SCRAM-SHA-256/512; pykbroker.security builds them). What
it does not implement would leave a client with less protection than the operator asked for,
so it stops start-up with an error naming the key and its value:

* ``authorizer.class.name``: KRaft's StandardAuthorizer and unknown classes (Kafka's
  AclAuthorizer is served: every handler checks its ACLs as Kafka 3.9's KafkaApis does,
  pykbroker.security.acls decides, the ACLs are kept in the first log directory of a single
  broker and in ZooKeeper's /kafka-acl in a cluster);
* a ``principal.builder.class`` other than Kafka's default;
* a SASL mechanism other than PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 (GSSAPI, OAUTHBEARER),
  in ``sasl.enabled.mechanisms`` or as Kafka's default (GSSAPI) on a SASL listener;
* key and trust store types other than PEM (JKS, PKCS12), custom SSL engine factories,
  security providers and SASL callback handlers;
* between the brokers of a ZooKeeper cluster, a ``sasl.mechanism.inter.broker.protocol``
  other than PLAIN or SCRAM (GSSAPI is Kafka's default) or a SASL inter-broker listener whose
  JAAS configuration gives no username and password (pykbroker.security.inter_broker);
  ZooKeeper over TLS or with ACLs;
* anything the listener plan cannot load: missing or unreadable PEM files, bad JAAS syntax,
  principal mapping rules Kafka would not parse, unknown protocols or cipher suites.

Settings that cannot matter in this configuration (``ssl.*`` without a TLS listener,
``sasl.*`` without a SASL listener, Kerberos and OAuth tuning, ``super.users`` without an
authorizer) only warn, as Kafka ignores them too.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from pykbroker.config.broker_config import BrokerConfig
from pykbroker.config.types import ConfigError, Password
from pykbroker.security.configure import security_from_config
from pykbroker.security.plan import SUPPORTED_MECHANISMS, BrokerSecurity

PLAINTEXT = "PLAINTEXT"
NOT_YET = "pykbroker does not implement"
ACL_AUTHORIZER = "kafka.security.authorizer.AclAuthorizer"
STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
DEFAULT_PRINCIPAL_BUILDER = \
    "org.apache.kafka.common.security.authenticator.DefaultKafkaPrincipalBuilder"

_AUTHORIZATION_TUNING = ("super.users", "allow.everyone.if.no.acl.found",
                         "principal.builder.class")
# Keys with no effect on a broker whatever the listeners: Kerberos/OAuth (not implemented,
# refused as mechanisms), client-side login settings, Java-specific TLS plumbing.
_NEVER_USED = re.compile(r"sasl\.(kerberos|oauthbearer|login)\..*|sasl\.client\..*|"
                         r"sasl\.mechanism\.controller\.protocol|ssl\.(keymanager|"
                         r"trustmanager)\.algorithm|ssl\.secure\.random\.implementation|"
                         r"ssl\.endpoint\.identification\.algorithm|ssl\.allow\..*")
_LISTENER_PREFIX = re.compile(r"listener\.name\.([^.]+)\.(?:([^.]+)\.)?(?=(?:ssl|sasl)\.)")
_REFUSED_CLASSES = {
    "ssl.engine.factory.class": "custom SSL engine factories",
    "sasl.server.callback.handler.class": "custom SASL server callback handlers",
    "ssl.provider": "Java security providers (TLS is OpenSSL's)",
    "security.providers": "Java security providers (TLS is OpenSSL's)",
}


class Refusal(NamedTuple):
    key: str
    value: str
    reason: str


def _base_key(key: str) -> str:
    """``listener.name.client.scram-sha-256.sasl.jaas.config`` -> ``sasl.jaas.config``."""
    return _LISTENER_PREFIX.sub("", key, count=1)


def _listener_of(key: str) -> str | None:
    match = _LISTENER_PREFIX.match(key)
    return match[1].upper() if match else None


def _value(config: BrokerConfig, key: str) -> str:
    value = config.value(key)
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return Password.HIDDEN if isinstance(value, Password) else str(value)


def _authorizer_refusal(name: str, config: BrokerConfig) -> str | None:
    """Why ``authorizer.class.name`` cannot be served, or None when it can."""
    if name == STANDARD_AUTHORIZER:
        return (f"{NOT_YET} KRaft mode, whose authorizer this is; use the ZooKeeper-mode "
                f"{ACL_AUTHORIZER}.")
    if name == ACL_AUTHORIZER:  # in a cluster, the ACLs live in ZooKeeper (/kafka-acl)
        return None
    return f"{NOT_YET} the authorizer {name}; every client would be allowed every operation."


def refusals(config: BrokerConfig) -> list[Refusal]:
    """Every setting that asks for what pykbroker cannot give, in a stable order (the
    per-listener plan, which loads files, is checked by ``refuse_unsupported_security``)."""
    out: list[Refusal] = []
    set_keys = config.origins()
    authorizer = str(config.get("authorizer.class.name") or "")
    refused = _authorizer_refusal(authorizer, config) if authorizer else None
    if refused is not None:
        out.append(Refusal("authorizer.class.name", authorizer, refused))
    builder = str(config.get("principal.builder.class") or DEFAULT_PRINCIPAL_BUILDER)
    if builder != DEFAULT_PRINCIPAL_BUILDER:
        out.append(Refusal("principal.builder.class", builder,
                           f"{NOT_YET} custom principal builders; principals are Kafka's "
                           "default ones (User:<name> from SASL or the certificate's DN)."))
    for key in set_keys:
        base = _base_key(key)
        if base == "sasl.enabled.mechanisms":
            value = config.value(key)
            names = [str(m) for m in value] if isinstance(value, list) else []
            bad = [m for m in names if m not in SUPPORTED_MECHANISMS]
            if bad:
                out.append(Refusal(key, _value(config, key),
                                   f"{NOT_YET} SASL mechanism {bad[0]} (only "
                                   f"{', '.join(SUPPORTED_MECHANISMS)})."))
        elif base in ("ssl.keystore.type", "ssl.truststore.type") \
                and str(config.value(key)).upper() != "PEM":
            out.append(Refusal(key, _value(config, key),
                               f"{NOT_YET} {config.value(key)} stores: only PEM. Convert the "
                               "store to PEM and set the type to PEM."))
        elif base in _REFUSED_CLASSES and config.value(key) is not None:
            out.append(Refusal(key, _value(config, key),
                               f"{NOT_YET} {_REFUSED_CLASSES[base]}."))
    for key in ("zookeeper.ssl.client.enable", "zookeeper.set.acl"):
        if config.get(key) is True:
            out.append(Refusal(key, "true", f"{NOT_YET} ZooKeeper TLS or ACLs yet; it would "
                                            "connect in plaintext and leave its znodes open."))
    return out


def ignored_warnings(config: BrokerConfig) -> list[str]:
    """Security keys that are set but cannot have an effect in this configuration."""
    refused = {r.key for r in refusals(config)}
    protocols = {lst.name: lst.security_protocol for lst in config.listeners}
    any_tls = any(p in ("SSL", "SASL_SSL") for p in protocols.values())
    any_sasl = any(p.startswith("SASL_") for p in protocols.values())
    out = []
    for key, origin in config.origins().items():
        if key in refused:
            continue
        base = _base_key(key)
        listener = _listener_of(key)
        protocol = protocols.get(listener, "") if listener is not None else None
        tls = any_tls if protocol is None else protocol in ("SSL", "SASL_SSL")
        sasl = any_sasl if protocol is None else protocol.startswith("SASL_")
        if key in _AUTHORIZATION_TUNING:
            if str(config.get("authorizer.class.name") or ""):
                continue
            why = "there is no authorizer (authorizer.class.name is not set)"
        elif _NEVER_USED.fullmatch(base):
            why = "pykbroker's broker does not use it"
        elif base.startswith("ssl.") and not tls:
            why = f"no TLS listener{'' if protocol is None else ' ' + str(listener)} uses it"
        elif base.startswith("sasl.") and not sasl:
            why = f"no SASL listener{'' if protocol is None else ' ' + str(listener)} uses it"
        else:
            continue
        out.append(f"'{key}' (from {origin}) has no effect: {why}")
    return out


def refuse_unsupported_security(config: BrokerConfig) -> BrokerSecurity:
    """Raise a ConfigError for the first refused setting, naming the others too; else check
    that every listener can be served as configured (loading its stores) and return the plan
    (with credentials in memory only: the broker opens its store itself)."""
    found = refusals(config)
    if found:
        first, rest = found[0], found[1:]
        reason = first.reason
        if rest:
            reason += " Also refused: " + "; ".join(f"{r.key}={r.value}" for r in rest) + "."
        raise ConfigError(first.key, first.value, reason, config.origin(first.key))
    plan = security_from_config(config, None)
    if config.zookeeper_connect:  # how this broker logs in to the others: checked up front
        from pykbroker.security.inter_broker import inter_broker_client_security

        inter_broker_client_security(config)
    return plan
