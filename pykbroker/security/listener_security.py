"""A secured listener's plan built from the broker configuration, with everything loaded.

For each listener a value is read from ``listener.name.<listener>.<key>`` when set, else from
``<key>`` (and for ``sasl.jaas.config`` first from ``listener.name.<listener>.<mechanism>.``),
as Kafka's ListenerName.configPrefix does. Building the plan loads key stores and trust stores
and parses JAAS and principal rules, so a mistake stops start-up with a ConfigError naming the
key and its value, never a failing handshake later.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path

from pykbroker.config.broker_config import BrokerConfig
from pykbroker.config.types import ConfigError, Password
from pykbroker.security.jaas import (
    PLAIN_LOGIN_MODULE,
    SCRAM_LOGIN_MODULE,
    JaasError,
    parse_jaas_config,
    plain_users,
)
from pykbroker.security.plan import SUPPORTED_MECHANISMS, ListenerSecurity
from pykbroker.security.ssl_principal import SslPrincipalMapper

CLIENT_AUTH = {"none": ssl.CERT_NONE, "requested": ssl.CERT_OPTIONAL,
               "required": ssl.CERT_REQUIRED}
PROTOCOLS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                "TLS_CHACHA20_POLY1305_SHA256")
# Kafka (Java) names the TLS 1.2 suites by their IANA names; OpenSSL by its own.
TLS12_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256": "DHE-RSA-AES128-GCM-SHA256",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384": "DHE-RSA-AES256-GCM-SHA384",
    "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "DHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384": "ECDHE-ECDSA-AES256-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384": "ECDHE-RSA-AES256-SHA384",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
}
CONVERT_TO_PEM = (
    "pykbroker reads PEM key and trust stores only (ssl.keystore.type=PEM, "
    "ssl.truststore.type=PEM); convert the store, e.g. `keytool -importkeystore -srckeystore "
    "<store>.jks -destkeystore <store>.p12 -deststoretype PKCS12` then `openssl pkcs12 -in "
    "<store>.p12 -nodes -out <store>.pem`, and set the type to PEM")


class _Resolver:
    """Per-listener values with the key they came from, for error messages."""

    def __init__(self, config: BrokerConfig, listener: str) -> None:
        self.config = config
        self.prefix = f"listener.name.{listener.lower()}."

    def key(self, key: str, mechanism: str | None = None) -> str:
        """The key that supplies ``key`` for this listener (and mechanism)."""
        candidates = [f"{self.prefix}{mechanism.lower()}.{key}"] if mechanism else []
        candidates.append(self.prefix + key)
        for candidate in candidates:
            try:
                self.config.value(candidate)
            except KeyError:
                continue
            return candidate
        return key

    def get(self, key: str, mechanism: str | None = None) -> object:
        used = self.key(key, mechanism)
        return self.config.get(used) if used == key else self.config.value(used)

    def text(self, key: str, mechanism: str | None = None) -> str | None:
        value = self.get(key, mechanism)
        if value is None:
            return None
        if isinstance(value, Password):
            return value.value
        if isinstance(value, list):
            return ",".join(str(v) for v in value)
        return str(value)

    def fail(self, key: str, reason: str, mechanism: str | None = None) -> ConfigError:
        used = self.key(key, mechanism)
        value = self.get(key, mechanism)
        shown = Password.HIDDEN if isinstance(value, Password) else (
            ",".join(map(str, value)) if isinstance(value, list) else value)
        return ConfigError(used, shown, reason, self.config.origin(used))


def _ssl_context(r: _Resolver) -> tuple[ssl.SSLContext, str, SslPrincipalMapper]:
    if r.get("ssl.engine.factory.class") is not None:
        raise r.fail("ssl.engine.factory.class", "pykbroker does not implement custom SSL "
                     "engine factories; use the ssl.* PEM settings")
    if r.get("ssl.provider") is not None:
        raise r.fail("ssl.provider", "pykbroker uses OpenSSL and does not implement "
                     "ssl.provider")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.options |= ssl.OP_NO_COMPRESSION
    _protocols(r, ctx)
    _keystore(r, ctx)
    client_auth = (r.text("ssl.client.auth") or "none").lower()
    if client_auth not in CLIENT_AUTH:
        raise r.fail("ssl.client.auth", "it must be one of none, requested, required")
    ctx.verify_mode = CLIENT_AUTH[client_auth]
    trusted = _truststore(r, ctx)
    if client_auth != "none" and not trusted:
        ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)  # Java's default trust store
    try:
        mapper = SslPrincipalMapper(r.text("ssl.principal.mapping.rules") or "DEFAULT")
    except ValueError as exc:
        raise r.fail("ssl.principal.mapping.rules", str(exc)) from None
    return ctx, client_auth, mapper


def _protocols(r: _Resolver, ctx: ssl.SSLContext) -> None:
    protocol = r.text("ssl.protocol") or "TLSv1.3"
    if protocol not in ("TLS", "TLSv1.2", "TLSv1.3"):
        raise r.fail("ssl.protocol", "pykbroker serves TLS, TLSv1.2 and TLSv1.3 only")
    enabled = r.get("ssl.enabled.protocols")
    names = [str(p) for p in enabled] if isinstance(enabled, list) else []
    unknown = [p for p in names if p not in PROTOCOLS]
    if unknown or not names:
        raise r.fail("ssl.enabled.protocols", "pykbroker serves TLSv1.2 and TLSv1.3 only "
                     f"(not {', '.join(unknown) or 'an empty list'})")
    versions = sorted(PROTOCOLS[p] for p in names)
    low, high = versions[0], versions[-1]
    suites_value = r.get("ssl.cipher.suites")
    suites = [str(s) for s in suites_value] if isinstance(suites_value, list) else []
    if suites:
        tls12 = [s for s in suites if s in TLS12_SUITES]
        tls13 = [s for s in suites if s in TLS13_SUITES]
        unknown = [s for s in suites if s not in TLS12_SUITES and s not in TLS13_SUITES]
        if unknown:
            raise r.fail("ssl.cipher.suites", f"unknown or unsupported cipher suite "
                         f"{unknown[0]}; pykbroker knows {', '.join([*TLS13_SUITES, *TLS12_SUITES])}")
        if tls13 and set(tls13) != set(TLS13_SUITES):
            raise r.fail("ssl.cipher.suites", "pykbroker cannot restrict the TLS 1.3 cipher "
                         "suites (OpenSSL through Python's ssl module): list all of "
                         f"{', '.join(TLS13_SUITES)} or none")
        if not tls12:
            low = max(low, ssl.TLSVersion.TLSv1_3)
        else:
            ctx.set_ciphers(":".join(TLS12_SUITES[s] for s in tls12))
        if not tls13:
            high = min(high, ssl.TLSVersion.TLSv1_2)
        if low > high:
            raise r.fail("ssl.cipher.suites", "no listed cipher suite belongs to an enabled "
                         "protocol (ssl.enabled.protocols)")
    ctx.minimum_version, ctx.maximum_version = low, high


def _pem_only(r: _Resolver, kind: str) -> None:
    store_type = (r.text(f"ssl.{kind}.type") or "JKS").upper()
    if store_type != "PEM":
        location = r.text(f"ssl.{kind}.location")
        where = f" ({r.key(f'ssl.{kind}.location')}={location})" if location else ""
        raise r.fail(f"ssl.{kind}.type", f"the {kind}{where} is not PEM: {CONVERT_TO_PEM}")


def _keystore(r: _Resolver, ctx: ssl.SSLContext) -> None:
    location = r.text("ssl.keystore.location")
    chain = r.text("ssl.keystore.certificate.chain")
    key = r.text("ssl.keystore.key")
    if location is None and chain is None and key is None:
        raise r.fail("ssl.keystore.location", "a TLS listener needs the server's key and "
                     "certificate: set ssl.keystore.type=PEM and ssl.keystore.location (a PEM "
                     "file with the private key and the certificate chain), or "
                     "ssl.keystore.certificate.chain and ssl.keystore.key")
    _pem_only(r, "keystore")
    if r.get("ssl.keystore.password") is not None:
        raise r.fail("ssl.keystore.password", "SSL key store password cannot be specified "
                     "with PEM format, only key password may be specified")
    key_password = r.text("ssl.key.password")
    if location is not None:
        if chain is not None or key is not None:
            raise r.fail("ssl.keystore.location", "set either ssl.keystore.location or "
                         "ssl.keystore.certificate.chain with ssl.keystore.key, not both")
        try:
            ctx.load_cert_chain(location, password=key_password)
        except (OSError, ssl.SSLError) as exc:
            raise r.fail("ssl.keystore.location", f"cannot load the PEM key and certificate "
                         f"chain: {exc}") from None
        return
    if chain is None or key is None:
        missing = "ssl.keystore.key" if key is None else "ssl.keystore.certificate.chain"
        raise r.fail(missing, "ssl.keystore.certificate.chain and ssl.keystore.key must both "
                     "be set")
    with tempfile.TemporaryDirectory(prefix="pykbroker-pem-") as tmp:
        cert_path, key_path = Path(tmp) / "chain.pem", Path(tmp) / "key.pem"
        for path, text in ((cert_path, chain), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
        try:
            ctx.load_cert_chain(cert_path, key_path, password=key_password)
        except (OSError, ssl.SSLError) as exc:
            raise r.fail("ssl.keystore.key", "cannot load the PEM key with "
                         f"ssl.keystore.certificate.chain: {exc}") from None


def _truststore(r: _Resolver, ctx: ssl.SSLContext) -> bool:
    location = r.text("ssl.truststore.location")
    certificates = r.text("ssl.truststore.certificates")
    if location is None and certificates is None:
        return False
    _pem_only(r, "truststore")
    if r.get("ssl.truststore.password") is not None:
        raise r.fail("ssl.truststore.password", "SSL trust store password cannot be "
                     "specified for PEM format.")
    try:
        if location is not None:
            ctx.load_verify_locations(cafile=location)
        if certificates is not None:
            ctx.load_verify_locations(cadata=certificates)
    except (OSError, ssl.SSLError, ValueError) as exc:
        which = "ssl.truststore.location" if location is not None else \
            "ssl.truststore.certificates"
        raise r.fail(which, f"cannot load the trusted certificates: {exc}") from None
    return True


def _sasl(r: _Resolver, out: ListenerSecurity) -> None:
    mechanisms_value = r.get("sasl.enabled.mechanisms")
    mechanisms = [str(m) for m in mechanisms_value] if isinstance(mechanisms_value, list) \
        else []
    if not mechanisms:
        raise r.fail("sasl.enabled.mechanisms", "a SASL listener needs at least one "
                     "mechanism")
    unsupported = [m for m in mechanisms if m not in SUPPORTED_MECHANISMS]
    if unsupported:
        raise r.fail("sasl.enabled.mechanisms", f"pykbroker does not implement SASL "
                     f"mechanism {unsupported[0]} (it implements "
                     f"{', '.join(SUPPORTED_MECHANISMS)})"
                     + ("; GSSAPI is Kafka's default, set sasl.enabled.mechanisms"
                        if unsupported[0] == "GSSAPI" else ""))
    if r.get("sasl.server.callback.handler.class") is not None:
        raise r.fail("sasl.server.callback.handler.class", "pykbroker does not implement "
                     "custom SASL callback handlers")
    out.mechanisms = mechanisms
    for mechanism in mechanisms:
        jaas = r.text("sasl.jaas.config", mechanism)
        if jaas is None:
            if mechanism == "PLAIN":
                raise r.fail("sasl.jaas.config", "SASL/PLAIN needs its users: set "
                             f"{r.prefix}plain.sasl.jaas.config to "
                             f"'{PLAIN_LOGIN_MODULE} required user_<name>=\"<password>\";'",
                             mechanism)
            continue
        try:
            entries = parse_jaas_config(jaas)
        except JaasError as exc:
            raise r.fail("sasl.jaas.config", str(exc), mechanism) from None
        expected = PLAIN_LOGIN_MODULE if mechanism == "PLAIN" else SCRAM_LOGIN_MODULE
        other = [e.login_module for e in entries if e.login_module != expected]
        if other:
            raise r.fail("sasl.jaas.config", f"pykbroker does not implement login module "
                         f"{other[0]} for {mechanism} (only {expected})", mechanism)
        if mechanism == "PLAIN":
            out.plain_users = plain_users(entries)
    max_receive = r.get("sasl.server.max.receive.size")
    out.sasl_max_receive_size = int(max_receive) if isinstance(max_receive, int) else 524288


def listener_security(config: BrokerConfig, name: str, protocol: str) -> ListenerSecurity:
    r = _Resolver(config, name)
    out = ListenerSecurity(name, protocol)
    if protocol in ("SSL", "SASL_SSL"):
        out.ssl_context, out.client_auth, out.principal_mapper = _ssl_context(r)
    if protocol.startswith("SASL_"):
        _sasl(r, out)
    reauth = r.get("connections.max.reauth.ms")
    out.reauth_ms = int(reauth) if isinstance(reauth, int) else 0
    delay = r.get("connection.failed.authentication.delay.ms")
    out.failed_auth_delay_s = (int(delay) if isinstance(delay, int) else 100) / 1000.0
    return out
