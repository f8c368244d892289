"""``--command-config``: the client settings file of Kafka's admin tools (TLS and SASL).

The file is a Java properties file as ``kafka-acls.sh --command-config`` reads it. Every key is
checked before any connection is made: a key the admin tools do not understand, or a value they
cannot honour (``sasl.mechanism=GSSAPI``, a JKS store), is a ConfigError naming the key and the
value, so a typo never silently turns a secured connection into a plaintext one. TLS is the
stdlib's; the SASL exchange reuses the brokers' own client (``security.inter_broker``).
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import tempfile
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pykbroker.config.sources import load_properties_file
from pykbroker.config.types import ConfigError, Password
from pykbroker.security.jaas import (
    PLAIN_LOGIN_MODULE,
    SCRAM_LOGIN_MODULE,
    JaasError,
    parse_jaas_config,
)
from pykbroker.security.plan import SUPPORTED_MECHANISMS

if TYPE_CHECKING:
    from pykbroker.security.inter_broker import SaslClient

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
TLS_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
SSL_KEYS = frozenset({
    "ssl.truststore.type", "ssl.truststore.location", "ssl.truststore.certificates",
    "ssl.truststore.password", "ssl.keystore.type", "ssl.keystore.location",
    "ssl.keystore.certificate.chain", "ssl.keystore.key", "ssl.keystore.password",
    "ssl.key.password", "ssl.endpoint.identification.algorithm", "ssl.protocol",
    "ssl.enabled.protocols", "ssl.ca.location"})
SASL_KEYS = frozenset({"sasl.mechanism", "sasl.jaas.config", "sasl.username", "sasl.password"})
OTHER_KEYS = frozenset({"security.protocol", "client.id", "request.timeout.ms"})
# Client settings that only tune a Java client's behaviour: accepted with a warning.
IGNORED_KEYS = frozenset({
    "bootstrap.servers", "retries", "retry.backoff.ms", "retry.backoff.max.ms",
    "default.api.timeout.ms", "connections.max.idle.ms", "metadata.max.age.ms",
    "reconnect.backoff.ms", "reconnect.backoff.max.ms", "socket.connection.setup.timeout.ms",
    "socket.connection.setup.timeout.max.ms", "send.buffer.bytes", "receive.buffer.bytes",
    "client.dns.lookup", "ssl.keymanager.algorithm", "ssl.trustmanager.algorithm",
    "ssl.secure.random.implementation", "sasl.kerberos.service.name"})
_SECRET_KEYS = frozenset({"sasl.jaas.config", "sasl.password", "ssl.key.password",
                          "ssl.keystore.password", "ssl.truststore.password",
                          "ssl.keystore.key"})


_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)


def _reflow_pem(text: str) -> str:
    """PEM text as OpenSSL reads it. In a properties file a PEM value is often one line (a
    ``\\`` continuation joins lines without their breaks), which Kafka's PEM reader accepts."""
    blocks = [(kind, re.sub(r"\s+", "", body)) for kind, body in _PEM_BLOCK.findall(text)]
    return "".join(f"-----BEGIN {kind}-----\n" + "\n".join(textwrap.wrap(body, 64))
                   + f"\n-----END {kind}-----\n" for kind, body in blocks) or text


def _shown(key: str, value: str) -> str:
    """What an error message may show of ``value``: never a secret."""
    secret = key in _SECRET_KEYS or key.endswith((".password", ".secret"))
    return Password.HIDDEN if secret else value


@dataclass(frozen=True)
class CommandConfig:
    """How the admin client connects: PLAINTEXT with no file; TLS and/or SASL from it."""

    protocol: str = "PLAINTEXT"
    ssl_context: ssl.SSLContext | None = None
    mechanism: str | None = None
    username: str = ""
    password: str = field(default="", repr=False)
    client_id: str | None = None
    request_timeout: float | None = None
    warnings: tuple[str, ...] = ()

    def wrap(self, sock: socket.socket, host: str) -> socket.socket:
        """The TLS socket over ``sock`` (handshake done), or ``sock`` without TLS."""
        if self.ssl_context is None:
            return sock
        return self.ssl_context.wrap_socket(sock, server_hostname=host)

    def sasl_client(self) -> SaslClient:
        """A fresh SASL exchange for one connection (the brokers' own client code)."""
        from pykbroker.security.inter_broker import InterBrokerClientSecurity, SaslClient

        return SaslClient(InterBrokerClientSecurity(self.protocol, None, True, self.mechanism,
                                                    self.username, self.password))


class _Props:
    """The file's settings, with errors that name the key, its value and the file."""

    def __init__(self, props: Mapping[str, str], origin: str) -> None:
        self.props, self.origin = props, origin

    def get(self, key: str) -> str | None:
        return self.props.get(key)

    def fail(self, key: str, reason: str, value: str | None = None) -> ConfigError:
        shown = value if value is not None else self.props.get(key, "(not set)")
        return ConfigError(key, _shown(key, shown), reason, self.origin)


def load_command_config(path: str | Path) -> CommandConfig:
    """Read and check ``--command-config``; ConfigError for anything it cannot honour."""
    path = Path(path)
    return command_config(load_properties_file(path), str(path))


def command_config(props: Mapping[str, str], origin: str = "--command-config") -> CommandConfig:
    """Check every key of ``props`` and build the TLS context and SASL login they describe."""
    p = _Props(props, origin)
    warnings: list[str] = []
    for key, value in props.items():
        if key in IGNORED_KEYS:
            warnings.append(f"{key} ({origin}) is ignored by pykbroker's admin tools")
        elif key not in SSL_KEYS | SASL_KEYS | OTHER_KEYS:
            raise p.fail(key, "not a client setting pykbroker's admin tools understand "
                         "(they support security.protocol, ssl.* PEM stores, "
                         "sasl.mechanism with sasl.jaas.config, client.id, "
                         "request.timeout.ms)", value)
    raw_protocol = props.get("security.protocol", "PLAINTEXT")
    protocol = raw_protocol.strip().upper()
    if protocol not in PROTOCOLS:
        raise p.fail("security.protocol", f"it must be one of {', '.join(PROTOCOLS)}")
    uses_tls, uses_sasl = protocol in ("SSL", "SASL_SSL"), protocol.startswith("SASL_")
    for keys, used, what in ((SSL_KEYS, uses_tls, "TLS"), (SASL_KEYS, uses_sasl, "SASL")):
        unused = sorted(k for k in props if k in keys and not used)
        if unused:
            warnings.append(f"{', '.join(unused)} ({origin}) ignored: "
                            f"security.protocol={protocol} does not use {what}")
    ctx = _ssl_context(p) if uses_tls else None
    mechanism, username, password = _sasl_login(p) if uses_sasl else (None, "", "")
    return CommandConfig(protocol, ctx, mechanism, username, password,
                         client_id=props.get("client.id") or None,
                         request_timeout=_timeout(p), warnings=tuple(warnings))


def _timeout(p: _Props) -> float | None:
    text = p.get("request.timeout.ms")
    if text is None:
        return None
    try:
        ms = int(text.strip())
    except ValueError:
        raise p.fail("request.timeout.ms", "it must be a number of milliseconds") from None
    if ms <= 0:
        raise p.fail("request.timeout.ms", "it must be positive")
    return ms / 1000.0


# -- TLS ---------------------------------------------------------------------------------


def _ssl_context(p: _Props) -> ssl.SSLContext:
    """Kafka's client TLS: verify the broker against the trust store (the system's when none
    is set) and its host name unless ``ssl.endpoint.identification.algorithm`` is empty."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _tls_versions(p, ctx)
    for kind in ("truststore", "keystore"):
        if p.get(f"ssl.{kind}.type") is not None:  # a JKS store named is refused, used or not
            _pem_only(p, kind)
    if not _truststore(p, ctx):
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)  # Java's default trust store
    _keystore(p, ctx)
    algorithm = (p.get("ssl.endpoint.identification.algorithm") or "").strip().lower() \
        if "ssl.endpoint.identification.algorithm" in p.props else "https"
    if algorithm not in ("https", ""):
        raise p.fail("ssl.endpoint.identification.algorithm",
                     "it must be https (check the broker's host name) or empty")
    ctx.check_hostname = algorithm == "https"
    return ctx


def _tls_versions(p: _Props, ctx: ssl.SSLContext) -> None:
    protocol = p.get("ssl.protocol")
    if protocol is not None and protocol.strip() not in ("TLS", *TLS_VERSIONS):
        raise p.fail("ssl.protocol", "pykbroker's admin tools speak TLS, TLSv1.2 and "
                     "TLSv1.3 only")
    text = p.get("ssl.enabled.protocols")
    names = [n.strip() for n in (text or "TLSv1.2,TLSv1.3").split(",") if n.strip()]
    unknown = [n for n in names if n not in TLS_VERSIONS]
    if unknown or not names:
        raise p.fail("ssl.enabled.protocols", "pykbroker's admin tools speak TLSv1.2 and "
                     f"TLSv1.3 only (not {', '.join(unknown) or 'an empty list'})")
    versions = sorted(TLS_VERSIONS[n] for n in names)
    ctx.minimum_version, ctx.maximum_version = versions[0], versions[-1]


def _pem_only(p: _Props, kind: str) -> None:
    """Key and trust stores must be PEM (``ssl.<kind>.type`` defaults to JKS, as in Kafka)."""
    from pykbroker.security.listener_security import CONVERT_TO_PEM

    key = f"ssl.{kind}.type"
    store_type = p.get(key)
    if (store_type or "JKS").strip().upper() != "PEM":
        raise p.fail(key, f"the {kind} is not PEM: {CONVERT_TO_PEM}",
                     store_type if store_type is not None else "JKS (the default)")
    if kind == "truststore" and p.get("ssl.truststore.password") is not None:
        raise p.fail("ssl.truststore.password", "SSL trust store password cannot be "
                     "specified for PEM format.")
    if kind == "keystore" and p.get("ssl.keystore.password") is not None:
        raise p.fail("ssl.keystore.password", "SSL key store password cannot be specified "
                     "with PEM format, only key password may be specified")


def _truststore(p: _Props, ctx: ssl.SSLContext) -> bool:
    """Load the trusted CAs; False when the file names none."""
    location, certificates = p.get("ssl.truststore.location"), p.get("ssl.truststore.certificates")
    ca_location = p.get("ssl.ca.location")  # librdkafka's spelling, a PEM file
    if location is not None or certificates is not None:
        _pem_only(p, "truststore")
        if location is not None and certificates is not None:
            raise p.fail("ssl.truststore.location", "set either ssl.truststore.location or "
                         "ssl.truststore.certificates, not both")
    loads = (("ssl.truststore.location", {"cafile": location}),
             ("ssl.truststore.certificates",
              {"cadata": None if certificates is None else _reflow_pem(certificates)}),
             ("ssl.ca.location", {"cafile": ca_location}))
    loaded = False
    for key, kwargs in loads:
        if p.get(key) is None:
            continue
        try:
            ctx.load_verify_locations(**kwargs)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise p.fail(key, f"cannot load the trusted certificates: {exc}") from None
        loaded = True
    return loaded


def _keystore(p: _Props, ctx: ssl.SSLContext) -> None:
    """The client certificate, for listeners with ``ssl.client.auth``; none when unset."""
    location = p.get("ssl.keystore.location")
    chain, key = p.get("ssl.keystore.certificate.chain"), p.get("ssl.keystore.key")
    if location is None and chain is None and key is None:
        return
    _pem_only(p, "keystore")
    key_password = p.get("ssl.key.password")
    if location is not None:
        if chain is not None or key is not None:
            raise p.fail("ssl.keystore.location", "set either ssl.keystore.location or "
                         "ssl.keystore.certificate.chain with ssl.keystore.key, not both")
        try:
            ctx.load_cert_chain(location, password=key_password)
        except (OSError, ssl.SSLError) as exc:
            raise p.fail("ssl.keystore.location", "cannot load the PEM key and certificate "
                         f"chain: {exc}") from None
        return
    if chain is None or key is None:
        missing = "ssl.keystore.key" if key is None else "ssl.keystore.certificate.chain"
        raise p.fail(missing, "ssl.keystore.certificate.chain and ssl.keystore.key must both "
                     "be set")
    # load_cert_chain reads files only: the PEM text goes to private temporary files.
    with tempfile.TemporaryDirectory(prefix="pykbroker-pem-") as tmp:
        paths = Path(tmp) / "chain.pem", Path(tmp) / "key.pem"
        for path, text in zip(paths, (chain, key), strict=True):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(_reflow_pem(text))
        try:
            ctx.load_cert_chain(*paths, password=key_password)
        except (OSError, ssl.SSLError) as exc:
            raise p.fail("ssl.keystore.key", "cannot load the PEM key with "
                         f"ssl.keystore.certificate.chain: {exc}") from None


# -- SASL --------------------------------------------------------------------------------


def _sasl_login(p: _Props) -> tuple[str, str, str]:
    """``(mechanism, username, password)`` from ``sasl.jaas.config`` (Kafka's way) or from
    librdkafka's ``sasl.username``/``sasl.password``."""
    mechanism = p.get("sasl.mechanism")
    if mechanism is None or mechanism.strip() not in SUPPORTED_MECHANISMS:
        value = "GSSAPI (Kafka's default)" if mechanism is None else mechanism
        raise p.fail("sasl.mechanism", "pykbroker's admin tools implement SASL "
                     f"{', '.join(SUPPORTED_MECHANISMS)} only", value)
    mechanism = mechanism.strip()
    jaas = p.get("sasl.jaas.config")
    username, password = p.get("sasl.username"), p.get("sasl.password")
    if jaas is not None:
        if username is not None or password is not None:
            raise p.fail("sasl.jaas.config", "set either sasl.jaas.config or "
                         "sasl.username/sasl.password, not both")
        username, password = _jaas_login(p, jaas, mechanism)
    if not username:
        raise p.fail("sasl.jaas.config" if jaas is not None else "sasl.username",
                     f"SASL {mechanism} needs a user name: set sasl.jaas.config (with "
                     "username=\"...\" password=\"...\") or sasl.username and sasl.password")
    if password is None:
        raise p.fail("sasl.jaas.config" if jaas is not None else "sasl.password",
                     f"SASL {mechanism} needs the password of {username}")
    return mechanism, username, password


def _jaas_login(p: _Props, jaas: str, mechanism: str) -> tuple[str | None, str | None]:
    try:
        entries = parse_jaas_config(jaas)
    except JaasError as exc:
        raise p.fail("sasl.jaas.config", str(exc)) from None
    if len(entries) != 1:
        raise p.fail("sasl.jaas.config", f"JAAS config property contains {len(entries)} "
                     "login modules, should be 1 module")
    expected = PLAIN_LOGIN_MODULE if mechanism == "PLAIN" else SCRAM_LOGIN_MODULE
    entry = entries[0]
    if entry.login_module != expected:
        raise p.fail("sasl.jaas.config", f"login module {entry.login_module} does not do "
                     f"sasl.mechanism={mechanism} (use {expected})")
    return entry.options.get("username"), entry.options.get("password")
