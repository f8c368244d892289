"""Security settings pykbroker cannot honour stop start-up with the key and value; nothing is
served with less protection than the configuration asked for (issues #13, #17). The SSL,
SASL_PLAINTEXT and SASL_SSL listeners pykbroker does serve start and are secured."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from pykbroker.broker import Broker
from pykbroker.config import BrokerConfig, ConfigError
from pykbroker.config.security import ignored_warnings, refusals, refuse_unsupported_security
from pykbroker.free_ports import free_port as _free_port
from pykbroker.protocol._generated.metadata_request import MetadataRequest
from pykbroker.protocol.api import ApiKey
from pykbroker.protocol.framing import encode_request
from pykbroker.testing import open_broker
from tests.security.pki import Pki, make_pki, secure_listeners


def _config(tmp_path: Path, **props: str) -> BrokerConfig:
    return BrokerConfig({"listeners": "PLAINTEXT://127.0.0.1:0", "log.dirs": str(tmp_path),
                         **props})


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


_SSL = "PLAINTEXT://127.0.0.1:{p},SSL://127.0.0.1:{q}"
_SASL = "PLAINTEXT://127.0.0.1:{p},SASL_PLAINTEXT://127.0.0.1:{q}"
_PLAIN_JAAS = "org.apache.kafka.common.security.plain.PlainLoginModule required user_a=\"b\";"

# (extra config, refused key, texts the error must contain); "{pem}" is the broker's PEM.
REFUSED = [
    ({"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer"},
     "authorizer.class.name", ["StandardAuthorizer", "not implement KRaft"]),
    ({"authorizer.class.name": "com.example.MyAuthorizer"},
     "authorizer.class.name", ["com.example.MyAuthorizer", "not implement the authorizer"]),
    ({"principal.builder.class": "com.example.Builder"}, "principal.builder.class",
     ["com.example.Builder", "not implement"]),
    ({"sasl.enabled.mechanisms": "PLAIN,GSSAPI"}, "sasl.enabled.mechanisms",
     ["PLAIN,GSSAPI", "not implement SASL mechanism GSSAPI"]),
    ({"listeners": _SASL}, "sasl.enabled.mechanisms",
     ["GSSAPI", "not implement", "Kafka's default"]),
    ({"listeners": _SASL, "listener.name.sasl_plaintext.sasl.enabled.mechanisms":
      "OAUTHBEARER"}, "listener.name.sasl_plaintext.sasl.enabled.mechanisms",
     ["OAUTHBEARER", "not implement"]),
    ({"listeners": _SASL, "sasl.enabled.mechanisms": "PLAIN"}, "sasl.jaas.config",
     ["PLAIN needs its users", "listener.name.sasl_plaintext.plain.sasl.jaas.config"]),
    ({"listeners": _SASL, "sasl.enabled.mechanisms": "PLAIN",
      "listener.name.sasl_plaintext.plain.sasl.jaas.config": "x.Y required user_a;"},
     "listener.name.sasl_plaintext.plain.sasl.jaas.config",
     ["[hidden]", "Value not specified for key 'user_a'"]),
    ({"listeners": _SASL, "sasl.enabled.mechanisms": "PLAIN",
      "listener.name.sasl_plaintext.plain.sasl.jaas.config":
      "com.sun.security.auth.module.Krb5LoginModule required;"},
     "listener.name.sasl_plaintext.plain.sasl.jaas.config", ["Krb5LoginModule"]),
    ({"listeners": _SSL}, "ssl.keystore.location", ["needs the server's key"]),
    ({"listeners": _SSL, "ssl.keystore.location": "/etc/kafka/broker.jks"},
     "ssl.keystore.type", ["JKS", "/etc/kafka/broker.jks", "convert", "PEM"]),
    ({"ssl.keystore.type": "PKCS12"}, "ssl.keystore.type", ["PKCS12", "not implement"]),
    ({"listener.name.ssl.ssl.truststore.type": "JKS"}, "listener.name.ssl.ssl.truststore.type",
     ["JKS", "only PEM"]),
    ({"listeners": _SSL, "ssl.keystore.type": "PEM", "ssl.keystore.location": "/nope.pem"},
     "ssl.keystore.location", ["/nope.pem", "cannot load"]),
    ({"listeners": _SSL, "ssl.keystore.type": "PEM", "ssl.keystore.location": "{pem}",
      "ssl.keystore.password": "secret"}, "ssl.keystore.password",
     ["[hidden]", "cannot be specified with PEM"]),
    ({"listeners": _SSL, "ssl.keystore.type": "PEM", "ssl.keystore.location": "{pem}",
      "ssl.principal.mapping.rules": "RULE:oops"}, "ssl.principal.mapping.rules",
     ["RULE:oops", "Invalid rule"]),
    ({"listeners": _SSL, "ssl.keystore.type": "PEM", "ssl.keystore.location": "{pem}",
      "ssl.enabled.protocols": "TLSv1.1,TLSv1.2"}, "ssl.enabled.protocols",
     ["TLSv1.1", "TLSv1.2 and TLSv1.3 only"]),
    ({"listeners": _SSL, "ssl.keystore.type": "PEM", "ssl.keystore.location": "{pem}",
      "ssl.cipher.suites": "TLS_AES_128_GCM_SHA256"}, "ssl.cipher.suites",
     ["cannot restrict the TLS 1.3"]),
    ({"ssl.engine.factory.class": "com.example.Engine"}, "ssl.engine.factory.class",
     ["not implement custom SSL engine"]),
    ({"sasl.server.callback.handler.class": "com.example.Cb"},
     "sasl.server.callback.handler.class", ["not implement custom SASL"]),
    # Between brokers a JAAS configuration without the broker's own login is refused (Kafka's
    # config checks already refuse a mechanism that is not enabled); TLS and SASL PLAIN/SCRAM
    # are served (compat_tests/test_cluster_inter_broker_security.py).
    ({"listeners": "PLAINTEXT://127.0.0.1:{p},SASL_PLAINTEXT://127.0.0.1:{q}",
      "inter.broker.listener.name": "SASL_PLAINTEXT", "sasl.enabled.mechanisms": "PLAIN",
      "sasl.mechanism.inter.broker.protocol": "PLAIN",
      "listener.name.sasl_plaintext.plain.sasl.jaas.config": _PLAIN_JAAS,
      "zookeeper.connect": "127.0.0.1:1"},
     "listener.name.sasl_plaintext.plain.sasl.jaas.config", ["username and password"]),
    ({"zookeeper.set.acl": "true"}, "zookeeper.set.acl", ["true", "not implement"]),
    ({"zookeeper.ssl.client.enable": "true"}, "zookeeper.ssl.client.enable",
     ["true", "not implement"]),
]


def _fill(props: dict[str, str], pki: Pki) -> dict[str, str]:
    p, q = _free_port(), _free_port()
    return {k: v.format(p=p, q=q, pem=pki.server) for k, v in props.items()}


@pytest.mark.parametrize(("props", "key", "shown"), REFUSED)
def test_refused_settings_name_key_and_value(tmp_path: Path, pki: Pki, props: dict[str, str],
                                             key: str, shown: list[str]) -> None:
    config = _config(tmp_path, **_fill(props, pki))  # a valid Kafka configuration ...
    with pytest.raises(ConfigError) as info:  # ... that pykbroker cannot honour
        refuse_unsupported_security(config)
    assert info.value.key == key
    for text in shown:
        assert text in str(info.value)
    assert "secret" not in str(info.value)


@pytest.mark.parametrize(("props", "key", "shown"), REFUSED)
def test_a_broker_object_refuses_them_too(tmp_path: Path, pki: Pki, props: dict[str, str],
                                          key: str, shown: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        Broker(_config(tmp_path, **_fill(props, pki)))
    assert info.value.key == key


def test_the_issue_configuration_names_every_refused_key(tmp_path: Path) -> None:
    p, q = _free_port(), _free_port()
    config = BrokerConfig({
        "listeners": f"SSL://127.0.0.1:{p},SASL_SSL://127.0.0.1:{q}",
        "security.inter.broker.protocol": "SSL",
        "log.dirs": str(tmp_path),
        "ssl.keystore.location": "/etc/kafka/broker.jks", "ssl.keystore.password": "secret",
        "ssl.keystore.type": "JKS",
        "ssl.key.password": "secret", "sasl.enabled.mechanisms": "GSSAPI",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    })
    keys = [r.key for r in refusals(config)]
    assert keys[0] == "authorizer.class.name"
    assert {"ssl.keystore.type", "sasl.enabled.mechanisms"} <= set(keys)
    with pytest.raises(ConfigError) as info:
        refuse_unsupported_security(config)
    text = str(info.value)
    for needle in ("configuration authorizer.class.name", "ssl.keystore.type=JKS",
                   "sasl.enabled.mechanisms=GSSAPI"):
        assert needle in text
    assert "secret" not in text


def test_plaintext_defaults_are_not_refused_and_tuning_keys_only_warn(tmp_path: Path) -> None:
    assert refusals(_config(tmp_path)) == []
    config = _config(tmp_path, **{"ssl.cipher.suites": "TLS_AES_128_GCM_SHA256",
                                  "ssl.client.auth": "none", "super.users": "User:admin",
                                  "sasl.kerberos.service.name": "kafka"})
    assert refusals(config) == []
    refuse_unsupported_security(config)
    warned = ignored_warnings(config)
    assert len(warned) == 4 and all("has no effect" in w for w in warned)


def test_tls_and_sasl_settings_of_served_listeners_do_not_warn(tmp_path: Path,
                                                              pki: Pki) -> None:
    config = _config(tmp_path, **secure_listeners(pki))
    plan = refuse_unsupported_security(config)
    assert ignored_warnings(config) == []
    assert plan.listeners["SSL"].ssl_context is not None
    assert plan.listeners["SSL"].client_auth == "requested"
    assert plan.listeners["SASL_SSL"].mechanisms == ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
    assert plan.listeners["SASL_PLAINTEXT"].ssl_context is None
    assert plan.listeners["SASL_PLAINTEXT"].plain_users == {"admin": "admin-secret",
                                                            "alice": "alice-secret"}


@pytest.mark.parametrize(("protocol", "key"), [("SSL", "ssl.keystore.location"),
                                               ("SASL_PLAINTEXT", "sasl.enabled.mechanisms"),
                                               ("SASL_SSL", "ssl.keystore.location")])
def test_the_command_exits_with_the_error_and_serves_nothing(tmp_path: Path, protocol: str,
                                                             key: str) -> None:
    plain, secured = _free_port(), _free_port()
    out = subprocess.run(
        [sys.executable, "-m", "pykbroker", "--override", f"log.dirs={tmp_path}",
         "--override",
         f"listeners=PLAINTEXT://127.0.0.1:{plain},{protocol}://127.0.0.1:{secured}"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "configuration error" in out.stderr and key in out.stderr
    assert not any(tmp_path.iterdir()), "nothing may be written before the refusal"
    for port in (plain, secured):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("extra", [
    "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n",
    "authorizer.class.name=com.example.MyAuthorizer\nzookeeper.connect=127.0.0.1:1\n"])
def test_the_command_refuses_an_authorizer_from_a_properties_file(tmp_path: Path,
                                                                   extra: str) -> None:
    props = tmp_path / "server.properties"
    props.write_text(f"listeners=PLAINTEXT://127.0.0.1:{_free_port()}\nlog.dirs={tmp_path}/d\n"
                     + extra)
    out = subprocess.run([sys.executable, "-m", "pykbroker", str(props)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "authorizer.class.name" in out.stderr and str(props) in out.stderr
    assert not (tmp_path / "d").exists()


def test_the_acl_authorizer_is_served_on_a_single_broker(tmp_path: Path) -> None:
    """Every handler checks its ACLs now (#17): AclAuthorizer is accepted on a lone broker
    (and in a ZooKeeper cluster, where the ACLs live in /kafka-acl), and super.users /
    allow.everyone.if.no.acl.found take effect instead of warning."""
    assert refusals(_config(tmp_path, **{
        "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
        "zookeeper.connect": "127.0.0.1:1"})) == []
    config = _config(tmp_path, **{"authorizer.class.name":
                                  "kafka.security.authorizer.AclAuthorizer",
                                  "super.users": "User:admin",
                                  "allow.everyone.if.no.acl.found": "false"})
    assert refusals(config) == []
    plan = refuse_unsupported_security(config)
    assert plan.authorizer is not None
    assert plan.authorizer.super_users == {"User:admin"}
    assert ignored_warnings(config) == []
    # Unknown classes and KRaft's authorizer stay refused.
    for name, text in [("com.example.MyAuthorizer", "not implement the authorizer"),
                       ("org.apache.kafka.metadata.authorizer.StandardAuthorizer", "KRaft")]:
        (refusal,) = refusals(_config(tmp_path, **{"authorizer.class.name": name}))
        assert refusal.key == "authorizer.class.name" and text in refusal.reason


def _metadata_topics(port: int) -> list[str]:
    from pykbroker.testing import _Client

    client = _Client(f"127.0.0.1:{port}")
    try:
        resp = client.send(int(ApiKey.METADATA), 1, MetadataRequest(topics=None))
        return sorted(t.name for t in resp.topics)
    finally:
        client.close()


def test_the_command_serves_the_acl_authorizer_and_enforces_it(tmp_path: Path) -> None:
    """A real broker process with the authorizer, its ACLs in the first log directory
    (written here first: User:ANONYMOUS may CREATE and so DESCRIBE topic "seen"): the
    plaintext client creates "seen", is refused "denied", and Metadata shows it "seen" only."""
    from pykbroker.security.acl_codes import (
        AclOperation,
        AclPermissionType,
        PatternType,
        ResourceType,
    )
    from pykbroker.security.acl_store import StoredAclAuthorizer
    from pykbroker.security.acls import AccessControlEntry, AclBinding, ResourcePattern

    (tmp_path / "d").mkdir()
    acls = StoredAclAuthorizer(tmp_path / "d", frozenset(), False)
    allow = AclPermissionType.ALLOW
    assert acls.create([AclBinding(ResourcePattern(ResourceType.TOPIC, "seen",
                                                   PatternType.LITERAL),
                                   AccessControlEntry("User:ANONYMOUS", "*", op, allow))
                        for op in (AclOperation.CREATE, AclOperation.READ)]) == [None, None]
    port = _free_port()
    props = tmp_path / "server.properties"
    props.write_text(f"listeners=PLAINTEXT://127.0.0.1:{port}\nlog.dirs={tmp_path}/d\n"
                     "authorizer.class.name=kafka.security.authorizer.AclAuthorizer\n"
                     "auto.create.topics.enable=true\n")
    proc = subprocess.Popen([sys.executable, "-m", "pykbroker", str(props)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        import time

        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the broker did not start"
            time.sleep(0.1)
        from pykbroker.testing import create_topic

        assert _metadata_topics(port) == []
        with pytest.raises(RuntimeError, match="error 29"):
            create_topic(f"127.0.0.1:{port}", "denied")
        create_topic(f"127.0.0.1:{port}", "seen")
        assert _metadata_topics(port) == ["seen"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.trio
async def test_open_broker_refuses_an_sasl_listener_with_kafkas_default_gssapi(
        tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="GSSAPI"):
        async with open_broker(
            tmp_path, **{"listeners": "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0"}):
            await trio.sleep(0)  # pragma: no cover - never reached


def _metadata_frame() -> bytes:
    return encode_request(ApiKey.METADATA, 1, 7, "probe", MetadataRequest(topics=None))


def _answered(sock: socket.socket | ssl.SSLSocket) -> bytes:
    sock.settimeout(5)
    try:
        return sock.recv(4)
    except (ConnectionError, ssl.SSLError):
        return b""


@pytest.mark.trio
async def test_ssl_and_sasl_listeners_start_and_never_serve_in_plaintext(tmp_path: Path,
                                                                         pki: Pki) -> None:
    """Where #13 refused, the listeners now start; a plaintext request on the TLS listener
    and an unauthenticated one on the SASL listener are not answered; over TLS it is."""
    async with open_broker(tmp_path, **secure_listeners(pki)) as broker:
        ports = broker.bound_ports

        def probe() -> tuple[bytes, bytes, bytes, bytes]:
            with socket.create_connection(("127.0.0.1", ports["SSL"])) as s:
                s.sendall(_metadata_frame())
                plaintext_on_tls = _answered(s)
            with socket.create_connection(("127.0.0.1", ports["SASL_PLAINTEXT"])) as s:
                s.sendall(_metadata_frame())
                unauthenticated = _answered(s)
            ctx = ssl.create_default_context(cafile=str(pki.ca))
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", ports["SSL"])),
                                 server_hostname="localhost") as s:
                s.sendall(_metadata_frame())
                over_tls = _answered(s)
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", ports["SASL_SSL"])),
                                 server_hostname="localhost") as s:
                s.sendall(_metadata_frame())
                unauthenticated_tls = _answered(s)
            return plaintext_on_tls, unauthenticated, over_tls, unauthenticated_tls

        plaintext_on_tls, unauthenticated, over_tls, unauthenticated_tls = \
            await trio.to_thread.run_sync(probe)
        assert plaintext_on_tls == b"" and unauthenticated == b""
        assert unauthenticated_tls == b""
        assert len(over_tls) == 4
