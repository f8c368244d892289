"""Stock clients over TLS and SASL (issue #17): confluent-kafka, kafka-python and aiokafka
connect over SSL (with and without a client certificate), SASL_PLAINTEXT and SASL_SSL with
PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, produce and consume; wrong passwords, unknown users,
untrusted or expired certificates and plaintext clients on the TLS listener fail with Kafka's
errors and the broker keeps serving. Certificates are made by the test (trustme)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from compat_tests.broker_process import BrokerProcess
from pykbroker.free_ports import free_port
from tests.security.pki import Pki, make_pki, secure_listeners

MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
USERS = {"PLAIN": ("alice", "alice-secret"), "SCRAM-SHA-256": ("carol", "carol-secret"),
         "SCRAM-SHA-512": ("carol", "carol-secret")}


class Secured:
    def __init__(self, proc: BrokerProcess, pki: Pki, ports: dict[str, int]) -> None:
        self.proc, self.pki, self.ports = proc, pki, ports

    def addr(self, listener: str) -> str:
        return f"127.0.0.1:{self.ports[listener]}"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    base = tmp_path_factory.mktemp("secured")
    pki = make_pki(base / "pki")
    names = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
    ports = {n: free_port() for n in names}
    overrides = secure_listeners(pki, (ports["PLAINTEXT"], ports["SSL"],
                                       ports["SASL_PLAINTEXT"], ports["SASL_SSL"]))
    proc = BrokerProcess(base / "data", overrides)
    proc.port = ports["PLAINTEXT"]
    proc.start()
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{ports['PLAINTEXT']}"})
    ups = [UserScramCredentialUpsertion("carol", ScramCredentialInfo(m, 4096), b"carol-secret")
           for m in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512)]
    for future in admin.alter_user_scram_credentials(ups).values():
        future.result(10)
    try:
        yield Secured(proc, pki, ports)
    finally:
        proc.close()


def _ck_conf(s: Secured, listener: str, mechanism: str | None = None,
             cert: bool = False, password: str | None = None,
             user: str | None = None) -> dict[str, Any]:
    conf: dict[str, Any] = {"bootstrap.servers": s.addr(listener), "security.protocol": listener}
    if "SSL" in listener:
        conf["ssl.ca.location"] = str(s.pki.ca)
    if cert:
        conf["ssl.certificate.location"] = str(s.pki.client_cert)
        conf["ssl.key.location"] = str(s.pki.client_key)
    if mechanism:
        name, secret = USERS[mechanism]
        conf.update({"sasl.mechanism": mechanism, "sasl.username": user or name,
                     "sasl.password": password or secret})
    return conf


def _ck_round_trip(conf: dict[str, Any]) -> None:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    producer = Producer(conf)
    for i in range(5):
        producer.produce(topic, f"m{i}".encode())
    assert producer.flush(20) == 0
    consumer = Consumer({**conf, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(got) < 5 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
    consumer.close()
    assert got == [f"m{i}".encode() for i in range(5)]


@pytest.mark.parametrize("cert", [False, True], ids=["server-auth", "client-cert"])
def test_confluent_over_ssl(secured: Secured, cert: bool) -> None:
    _ck_round_trip(_ck_conf(secured, "SSL", cert=cert))


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("listener", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_confluent_over_sasl(secured: Secured, listener: str, mechanism: str) -> None:
    _ck_round_trip(_ck_conf(secured, listener, mechanism))


def _ck_errors(conf: dict[str, Any], seconds: float = 5.0) -> list[KafkaError]:
    errors: list[KafkaError] = []
    producer = Producer({**conf, "error_cb": errors.append, "reconnect.backoff.ms": 1000})
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not errors:
        producer.poll(0.2)
    return errors


@pytest.mark.parametrize(("mechanism", "user", "password", "text"), [
    ("PLAIN", "alice", "wrong", "Authentication failed: Invalid username or password"),
    ("PLAIN", "nobody", "x", "Authentication failed: Invalid username or password"),
    ("SCRAM-SHA-256", "carol", "wrong", "invalid credentials with SASL mechanism SCRAM-SHA-256"),
    ("SCRAM-SHA-512", "nobody", "x", "invalid credentials with SASL mechanism SCRAM-SHA-512"),
])
def test_confluent_sees_kafkas_authentication_errors(secured: Secured, mechanism: str,
                                                     user: str, password: str,
                                                     text: str) -> None:
    errors = _ck_errors(_ck_conf(secured, "SASL_SSL", mechanism, user=user, password=password))
    assert errors and errors[0].code() == KafkaError._AUTHENTICATION, errors
    assert text in errors[0].str()
    _ck_round_trip(_ck_conf(secured, "SASL_PLAINTEXT", "PLAIN"))  # still serving


@pytest.mark.parametrize("which", ["expired", "rogue"])
def test_confluent_with_an_expired_or_untrusted_certificate_fails(secured: Secured,
                                                                  which: str) -> None:
    conf = _ck_conf(secured, "SSL")
    conf["ssl.certificate.location"] = str(getattr(secured.pki, f"{which}_cert"))
    conf["ssl.key.location"] = str(getattr(secured.pki, f"{which}_key"))
    errors = _ck_errors(conf)
    assert errors, "the broker must refuse the certificate"
    assert any(e.code() in (KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
                            KafkaError._AUTHENTICATION) for e in errors), errors
    _ck_round_trip(_ck_conf(secured, "SSL", cert=True))


def test_a_plaintext_client_on_the_tls_listener_fails(secured: Secured) -> None:
    errors = _ck_errors({"bootstrap.servers": secured.addr("SSL"),
                         "security.protocol": "PLAINTEXT"})
    assert errors
    assert secured.proc.proc is not None and secured.proc.proc.poll() is None
    _ck_round_trip(_ck_conf(secured, "SSL"))


def _kp_conf(s: Secured, listener: str, mechanism: str | None, cert: bool = False,
             password: str | None = None) -> dict[str, Any]:
    conf: dict[str, Any] = {"bootstrap_servers": s.addr(listener),
                            "security_protocol": listener, "request_timeout_ms": 10000}
    if "SSL" in listener:
        conf["ssl_cafile"] = str(s.pki.ca)
        conf["ssl_check_hostname"] = True
    if cert:
        conf["ssl_certfile"] = str(s.pki.client_cert)
        conf["ssl_keyfile"] = str(s.pki.client_key)
    if mechanism:
        name, secret = USERS[mechanism]
        conf.update({"sasl_mechanism": mechanism, "sasl_plain_username": name,
                     "sasl_plain_password": password or secret})
    return conf


@pytest.mark.parametrize(("listener", "mechanism", "cert"), [
    ("SSL", None, False), ("SSL", None, True),
    *[(lst, m, False) for lst in ("SASL_PLAINTEXT", "SASL_SSL") for m in MECHANISMS]])
def test_kafka_python(secured: Secured, listener: str, mechanism: str | None,
                      cert: bool) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    conf = _kp_conf(secured, listener, mechanism, cert)
    topic = f"kp-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(**conf)
    for i in range(3):
        producer.send(topic, f"m{i}".encode(), partition=0).get(20)
    producer.close()
    consumer = KafkaConsumer(**conf, group_id=None)  # assign + seek, as test_kafka_python
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got: list[bytes] = []
    deadline = time.monotonic() + 20
    while len(got) < 3 and time.monotonic() < deadline:
        for records in consumer.poll(500).values():
            got.extend(r.value for r in records)
    consumer.close()
    assert got == [b"m0", b"m1", b"m2"]


def test_kafka_python_with_a_wrong_password(secured: Secured,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """kafka-python logs the broker's SaslAuthenticationFailedError (code 58, Kafka's
    message) on each try, then gives up bootstrapping."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError as KpError

    with pytest.raises(KpError):
        KafkaProducer(**_kp_conf(secured, "SASL_PLAINTEXT", "SCRAM-SHA-256",
                                 password="wrong"), max_block_ms=15000).send("x", b"v").get(10)
    assert "SaslAuthenticationFailedError: Authentication failed during authentication due " \
           "to invalid credentials with SASL mechanism SCRAM-SHA-256" in caplog.text


def _aio_conf(s: Secured, listener: str, mechanism: str | None, cert: bool = False,
              password: str | None = None) -> dict[str, Any]:
    from aiokafka.helpers import create_ssl_context

    conf: dict[str, Any] = {"bootstrap_servers": s.addr(listener),
                            "security_protocol": listener}
    if "SSL" in listener:
        conf["ssl_context"] = create_ssl_context(
            cafile=str(s.pki.ca), certfile=str(s.pki.client_cert) if cert else None,
            keyfile=str(s.pki.client_key) if cert else None)
    if mechanism:
        name, secret = USERS[mechanism]
        conf.update({"sasl_mechanism": mechanism, "sasl_plain_username": name,
                     "sasl_plain_password": password or secret})
    return conf


@pytest.mark.parametrize(("listener", "mechanism", "cert"), [
    ("SSL", None, False), ("SSL", None, True),
    *[(lst, m, False) for lst in ("SASL_PLAINTEXT", "SASL_SSL") for m in MECHANISMS]])
def test_aiokafka(secured: Secured, listener: str, mechanism: str | None, cert: bool) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = f"aio-{uuid.uuid4().hex[:8]}"

    async def main() -> list[bytes]:
        producer = AIOKafkaProducer(**_aio_conf(secured, listener, mechanism, cert))
        await producer.start()
        try:
            for i in range(3):
                await producer.send_and_wait(topic, f"m{i}".encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, **_aio_conf(secured, listener, mechanism, cert),
                                    auto_offset_reset="earliest")
        await consumer.start()
        got = []
        try:
            async with asyncio.timeout(20):
                async for msg in consumer:
                    got.append(msg.value)
                    if len(got) == 3:
                        break
        finally:
            await consumer.stop()
        return got

    assert asyncio.run(main()) == [b"m0", b"m1", b"m2"]


def test_aiokafka_with_a_wrong_password(secured: Secured,
                                       caplog: pytest.LogCaptureFixture) -> None:
    """aiokafka reports the broker's error (Kafka's message) in its log, then fails to
    bootstrap, as against Kafka."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError as AioError

    async def main() -> None:
        producer = AIOKafkaProducer(**_aio_conf(secured, "SASL_SSL", "PLAIN",
                                                password="wrong"))
        try:
            await producer.start()
        finally:
            await producer.stop()

    caplog.set_level(logging.DEBUG, logger="aiokafka")
    with pytest.raises(AioError):
        asyncio.run(main())
    assert "Authentication failed: Invalid username or password" in caplog.text


def test_the_credentials_survive_a_restart(secured: Secured) -> None:
    secured.proc.restart()
    _ck_round_trip(_ck_conf(secured, "SASL_SSL", "SCRAM-SHA-512"))
