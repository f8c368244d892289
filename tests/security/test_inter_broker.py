"""The broker's own client side on a secured inter-broker listener: settings read as Kafka's
brokers read them, and SASL exchanges checked against pykbroker's own server side."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykbroker.config.broker_config import BrokerConfig
from pykbroker.config.types import ConfigError
from pykbroker.security.inter_broker import (
    InterBrokerClientSecurity,
    SaslClient,
    inter_broker_client_security,
)
from pykbroker.security.scram import SaslError, ScramMechanism, ScramServer, make_credential
from tests.security.pki import PLAIN_JAAS, make_pki


def _config(tmp_path: Path, protocol: str, **extra: str) -> BrokerConfig:
    pki = make_pki(tmp_path / "pki")
    return BrokerConfig({
        "listeners": "CLIENT://127.0.0.1:0,INTERNAL://127.0.0.1:0",
        "listener.security.protocol.map": f"CLIENT:PLAINTEXT,INTERNAL:{protocol}",
        "inter.broker.listener.name": "INTERNAL", "log.dirs": str(tmp_path / "d"),
        "zookeeper.connect": "127.0.0.1:1",
        "ssl.keystore.type": "PEM", "ssl.keystore.location": str(pki.server),
        "ssl.truststore.type": "PEM", "ssl.truststore.location": str(pki.ca),
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512",
        "listener.name.internal.plain.sasl.jaas.config": PLAIN_JAAS,
        **extra})


def test_settings_are_the_inter_broker_listeners(tmp_path: Path) -> None:
    plain = BrokerConfig({"listeners": "PLAINTEXT://127.0.0.1:0", "log.dirs": str(tmp_path),
                          "zookeeper.connect": "127.0.0.1:1"})
    assert inter_broker_client_security(plain) is None
    tls = inter_broker_client_security(_config(tmp_path / "a", "SSL"))
    assert tls is not None and tls.ssl_context is not None and tls.mechanism is None
    assert tls.check_hostname and tls.ssl_context.check_hostname
    no_check = inter_broker_client_security(_config(
        tmp_path / "b", "SSL", **{"ssl.endpoint.identification.algorithm": ""}))
    assert no_check is not None and not no_check.ssl_context.check_hostname  # type: ignore[union-attr]
    sasl = inter_broker_client_security(_config(
        tmp_path / "c", "SASL_SSL", **{"sasl.mechanism.inter.broker.protocol": "PLAIN"}))
    assert sasl is not None
    assert (sasl.mechanism, sasl.username, sasl.password) == ("PLAIN", "admin", "admin-secret")
    # SCRAM between brokers with no JAAS login for it: refused, naming the key to set.
    with pytest.raises(ConfigError) as info:
        inter_broker_client_security(_config(
            tmp_path / "d", "SASL_PLAINTEXT",
            **{"sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512"}))
    assert info.value.key == "sasl.jaas.config" or "scram" in info.value.key
    assert "username and password" in str(info.value)


def _scram(mechanism: ScramMechanism, password: str, tried: str) -> bytes:
    credential = make_credential(mechanism, password, 4096)
    server = ScramServer(mechanism, lambda name: credential if name == "broker" else None)
    client = SaslClient(InterBrokerClientSecurity("SASL_SSL", None, True,
                                                  mechanism.mechanism_name, "broker", tried))
    token: bytes | None = client.first()
    while token is not None:
        answer = server.evaluate(token)
        token = client.respond(answer)
    assert server.complete and server.username == "broker"
    return answer


@settings(max_examples=10, deadline=None)
@given(st.sampled_from(list(ScramMechanism)), st.text(min_size=1, max_size=20))
def test_scram_client_logs_in_to_our_server(mechanism: ScramMechanism, password: str) -> None:
    assert _scram(mechanism, password, password).startswith(b"v=")


def test_scram_wrong_password_and_forged_signature_fail() -> None:
    with pytest.raises(SaslError):
        _scram(ScramMechanism.SCRAM_SHA_256, "right", "wrong")
    client = SaslClient(InterBrokerClientSecurity("SASL_SSL", None, True, "SCRAM-SHA-256",
                                                  "broker", "pw"))
    credential = make_credential(ScramMechanism.SCRAM_SHA_256, "pw", 4096)
    server = ScramServer(ScramMechanism.SCRAM_SHA_256, lambda _: credential)
    final = client.respond(server.evaluate(client.first()))
    assert final is not None
    server.evaluate(final)
    with pytest.raises(SaslError):  # a server that cannot prove it knows the key
        client.respond(b"v=AAAA")


def test_plain_client_sends_one_message() -> None:
    client = SaslClient(InterBrokerClientSecurity("SASL_PLAINTEXT", None, True, "PLAIN",
                                                  "admin", "s3cret"))
    assert client.first() == b"\0admin\0s3cret"
    assert client.respond(b"") is None
