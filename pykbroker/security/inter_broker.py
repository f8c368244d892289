"""The client side of broker-to-broker connections on a secured inter-broker listener.

Kafka's brokers connect to each other (replica fetchers, the controller's channel,
AlterPartition, transaction markers) as clients of the inter-broker listener, with that
listener's settings: TLS trusting ``ssl.truststore.*`` (Java's default trust store when none),
presenting ``ssl.keystore.*`` when set (for ``ssl.client.auth=required``), checking the peer's
host name unless ``ssl.endpoint.identification.algorithm`` is empty; and SASL with
``sasl.mechanism.inter.broker.protocol`` (Kafka's default GSSAPI is refused: not implemented),
logging in as the ``username``/``password`` of the listener's JAAS configuration for that
mechanism (``listener.name.<l>.<mechanism>.sasl.jaas.config``), as Kafka's brokers do.
"""

from __future__ import annotations

import base64
import os
import ssl
from dataclasses import dataclass
from typing import Any

from pykbroker.config.broker_config import BrokerConfig
from pykbroker.config.types import ConfigError
from pykbroker.security.jaas import JaasError, parse_jaas_config
from pykbroker.security.listener_security import _keystore, _protocols, _Resolver, _truststore
from pykbroker.security.plan import SUPPORTED_MECHANISMS

MECHANISM_KEY = "sasl.mechanism.inter.broker.protocol"


@dataclass(frozen=True)
class InterBrokerClientSecurity:
    """How this broker connects to the others (None of it for PLAINTEXT)."""

    protocol: str
    ssl_context: ssl.SSLContext | None = None
    check_hostname: bool = True
    mechanism: str | None = None
    username: str = ""
    password: str = ""


def _client_ssl_context(r: _Resolver) -> tuple[ssl.SSLContext, bool]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _protocols(r, ctx)
    if not _truststore(r, ctx):
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)  # Java's default trust store
    if any(r.text(k) is not None for k in ("ssl.keystore.location",
                                           "ssl.keystore.certificate.chain")):
        _keystore(r, ctx)  # this broker's certificate, for peers requiring client auth
    algorithm = (r.text("ssl.endpoint.identification.algorithm") or "").lower()
    check = algorithm == "https"
    if algorithm not in ("", "https"):
        raise r.fail("ssl.endpoint.identification.algorithm",
                     "it must be https (check the peer's host name) or empty")
    ctx.check_hostname = check
    return ctx, check


def inter_broker_client_security(config: BrokerConfig) -> InterBrokerClientSecurity | None:
    """ConfigError for what cannot be served; None when the inter-broker listener is
    PLAINTEXT."""
    listener = config.inter_broker_listener_name
    protocol = config.security_protocol_map.get(listener, "PLAINTEXT")
    if protocol == "PLAINTEXT":
        return None
    r = _Resolver(config, listener)
    ctx, check = _client_ssl_context(r) if protocol in ("SSL", "SASL_SSL") else (None, True)
    if not protocol.startswith("SASL_"):
        return InterBrokerClientSecurity(protocol, ctx, check)
    mechanism = str(config.get(MECHANISM_KEY) or "GSSAPI")
    if mechanism not in SUPPORTED_MECHANISMS:
        raise ConfigError(MECHANISM_KEY, mechanism,
                          f"pykbroker does not implement SASL mechanism {mechanism} between "
                          f"brokers (only {', '.join(SUPPORTED_MECHANISMS)})"
                          + ("; GSSAPI is Kafka's default, set it" if mechanism == "GSSAPI"
                             else ""), config.origin(MECHANISM_KEY))
    jaas = r.text("sasl.jaas.config", mechanism)
    options: dict[str, str] = {}
    if jaas is not None:
        try:
            for entry in parse_jaas_config(jaas):
                options.update(entry.options)
        except JaasError as exc:
            raise r.fail("sasl.jaas.config", str(exc), mechanism) from None
    if not options.get("username") or "password" not in options:
        raise r.fail("sasl.jaas.config", f"the inter-broker listener {listener} uses SASL "
                     f"{mechanism}: its JAAS configuration needs username and password, the "
                     "broker's own login to the other brokers", mechanism)
    return InterBrokerClientSecurity(protocol, ctx, check, mechanism, options["username"],
                                     options["password"])


class SaslClient:
    """The client's side of one SASL exchange: ``first()``, then ``respond(server_bytes)``
    until it returns None (PLAIN: one message; SCRAM: client-first, client-final, then the
    server's signature is checked)."""

    def __init__(self, security: InterBrokerClientSecurity) -> None:
        self.security = security
        self._step = 0
        self._nonce = base64.b64encode(os.urandom(24)).decode()
        self._bare = ""
        self._server_signature = b""

    def first(self) -> bytes:
        s = self.security
        if s.mechanism == "PLAIN":
            return f"\0{s.username}\0{s.password}".encode()
        name = s.username.replace("=", "=3D").replace(",", "=2C")
        self._bare = f"n={name},r={self._nonce}"
        return f"n,,{self._bare}".encode()

    def respond(self, data: bytes) -> bytes | None:
        from pykbroker.security.scram import (
            SaslError,
            ScramMechanism,
            _hmac,
            client_proof,
            salted_password,
            server_signature,
        )

        s = self.security
        if s.mechanism == "PLAIN":
            return None
        mechanism = ScramMechanism.by_name(str(s.mechanism))
        assert mechanism is not None
        self._step += 1
        if self._step == 1:  # server-first: r=<nonce>,s=<salt>,i=<iterations>
            fields = dict(item.split("=", 1) for item in data.decode().split(","))
            nonce, salt, iterations = fields["r"], base64.b64decode(fields["s"]), int(fields["i"])
            if not nonce.startswith(self._nonce):
                raise SaslError("the server's nonce does not extend ours")
            without_proof = f"c=biws,r={nonce}"
            auth = f"{self._bare},{data.decode()},{without_proof}".encode()
            salted = salted_password(mechanism, s.password, salt, iterations)
            proof = client_proof(mechanism, salted, auth)
            server_key = _hmac(mechanism, salted, b"Server Key")
            self._server_signature = server_signature(mechanism, server_key, auth)
            return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()
        text = data.decode()
        if not text.startswith("v=") or \
                base64.b64decode(text[2:]) != self._server_signature:
            raise SaslError(f"the server's SCRAM signature did not verify ({text[:40]!r})")
        return None


def describe(security: Any) -> str:
    return "plaintext" if security is None else (
        security.protocol + (f" ({security.mechanism} as {security.username})"
                             if security.mechanism else ""))
