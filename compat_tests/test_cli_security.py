"""``pykbroker acls|users ... --command-config FILE``: the admin CLI over TLS and SASL.

One real broker (a subprocess) with PLAINTEXT, SSL (client certificates requested),
SASL_PLAINTEXT and SASL_SSL listeners (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), Kafka's
AclAuthorizer and super users ``admin`` (PLAIN) and the client certificate's subject. The CLI
runs as a subprocess with a Kafka client properties file, as ``kafka-acls.sh
--command-config``. Authorization tells who the broker saw: a non-super principal is refused
``acls list`` until an ACL added through the secured CLI allows it, so a test passes only when
the login was really the one the file describes. Certificates are made by trustme.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from compat_tests.broker_process import BrokerProcess
from pykbroker.free_ports import free_port
from tests.security.pki import Pki, make_pki, secure_listeners

CERT_PRINCIPAL = "User:CN=alice,OU=clients,O=Example"  # the client certificate's subject
PLAIN_LOGIN = "org.apache.kafka.common.security.plain.PlainLoginModule"
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
PLAIN_FAILED = "Authentication failed: Invalid username or password"
AUTHZ_FAILED = "CLUSTER_AUTHORIZATION_FAILED"


class Secured:
    def __init__(self, proc: BrokerProcess, pki: Pki, ports: dict[str, int], base: Path) -> None:
        self.proc, self.pki, self.ports, self.base = proc, pki, ports, base

    def addr(self, listener: str) -> str:
        return f"127.0.0.1:{self.ports[listener]}"

    def props(self, text: str) -> Path:
        """A ``--command-config`` file holding ``text``."""
        path = self.base / f"client-{uuid.uuid4().hex[:8]}.properties"
        path.write_text(text)
        return path


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    base = tmp_path_factory.mktemp("cli-security")
    pki = make_pki(base / "pki")
    names = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
    ports = {n: free_port() for n in names}
    overrides = secure_listeners(pki, (ports["PLAINTEXT"], ports["SSL"],
                                       ports["SASL_PLAINTEXT"], ports["SASL_SSL"]))
    overrides.update({
        "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
        "super.users": f"User:admin;{CERT_PRINCIPAL}",
    })
    proc = BrokerProcess(base / "data", overrides)
    proc.port = ports["PLAINTEXT"]
    proc.start()
    try:
        yield Secured(proc, pki, ports, base)
    finally:
        proc.close()


def cli(s: Secured, listener: str, config: Path | None, *args: str,
        bootstrap: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pykbroker", *args,
            "--bootstrap-server", bootstrap or s.addr(listener), "--request-timeout", "15"]
    if config is not None:
        argv += ["--command-config", str(config)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def plain(user: str, password: str, protocol: str = "SASL_PLAINTEXT", extra: str = "") -> str:
    return (f"security.protocol={protocol}\nsasl.mechanism=PLAIN\n"
            f'sasl.jaas.config={PLAIN_LOGIN} required username="{user}" '
            f'password="{password}";\n' + extra)


def listed(out: str) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = json.loads(out)
    return rows


def grant_cluster_describe(s: Secured, principal: str) -> None:
    """As admin (PLAIN over SASL_PLAINTEXT): let ``principal`` list ACLs."""
    out = ok(cli(s, "SASL_PLAINTEXT", s.props(plain("admin", "admin-secret")), "acls", "add",
                 "--allow-principal", principal, "--operation", "Describe", "--cluster"))
    assert principal in out


def test_plain_super_user_adds_an_acl_that_is_enforced(secured: Secured) -> None:
    s = secured
    alice = s.props(plain("alice", "alice-secret"))
    # alice logs in (PLAIN) but may not describe the cluster's ACLs yet.
    refused = cli(s, "SASL_PLAINTEXT", alice, "acls", "list")
    assert refused.returncode == 1 and AUTHZ_FAILED in refused.stderr, refused.stderr
    topic = f"t-{uuid.uuid4().hex[:8]}"
    admin = s.props(plain("admin", "admin-secret"))
    ok(cli(s, "SASL_PLAINTEXT", admin, "acls", "add", "--allow-principal", "User:alice",
           "--operation", "Read", "--topic", topic))
    rows = listed(ok(cli(s, "SASL_PLAINTEXT", admin, "acls", "list", "--topic", topic,
                         "--json")))
    assert [(r["name"], r["principal"], r["operation"], r["permission"]) for r in rows] == \
        [(topic, "User:alice", "Read", "Allow")]
    # The ACL added over SASL is enforced: alice may now list, and sees both ACLs.
    grant_cluster_describe(s, "User:alice")
    rows = listed(ok(cli(s, "SASL_PLAINTEXT", alice, "acls", "list", "--json")))
    seen = {(r["resource"], r["name"], r["operation"]) for r in rows}
    assert ("Topic", topic, "Read") in seen and ("Cluster", "kafka-cluster", "Describe") in seen


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_user_created_by_the_cli_logs_in(secured: Secured, mechanism: str) -> None:
    s = secured
    user = f"carol{mechanism[-3:]}"
    ok(cli(s, "SASL_PLAINTEXT", s.props(plain("admin", "admin-secret")), "users", "set",
           "--user", user, "--mechanism", mechanism, "--password", f"{user}-secret"))
    if mechanism == "SCRAM-SHA-256":  # Kafka's JAAS line
        login = (f'sasl.jaas.config={SCRAM_LOGIN} required username="{user}" '
                 f'password="{user}-secret";\n')
    else:  # librdkafka's spelling
        login = f"sasl.username={user}\nsasl.password={user}-secret\n"
    config = s.props(f"security.protocol=SASL_PLAINTEXT\nsasl.mechanism={mechanism}\n{login}")
    refused = cli(s, "SASL_PLAINTEXT", config, "acls", "list")
    assert refused.returncode == 1 and AUTHZ_FAILED in refused.stderr, refused.stderr
    grant_cluster_describe(s, f"User:{user}")
    rows = listed(ok(cli(s, "SASL_PLAINTEXT", config, "acls", "list", "--cluster",
                         "--principal", f"User:{user}", "--json")))
    assert [(r["principal"], r["operation"]) for r in rows] == [(f"User:{user}", "Describe")]
    # The same user with a wrong password: the broker's message, a non-zero exit.
    wrong = s.props(f"security.protocol=SASL_PLAINTEXT\nsasl.mechanism={mechanism}\n"
                    f"sasl.username={user}\nsasl.password=nope\n")
    failed = cli(s, "SASL_PLAINTEXT", wrong, "acls", "list")
    assert failed.returncode == 1
    assert f"due to invalid credentials with SASL mechanism {mechanism}" in failed.stderr


@pytest.mark.parametrize("trust", ["location", "certificates", "ca.location"])
def test_sasl_ssl_with_a_pem_trust_store(secured: Secured, trust: str) -> None:
    s = secured
    if trust == "location":
        tls = f"ssl.truststore.type=PEM\nssl.truststore.location={s.pki.ca}\n"
    elif trust == "certificates":  # one value over continued lines, as in Kafka's docs
        lines = s.pki.ca.read_text().strip().splitlines()
        tls = "ssl.truststore.type=PEM\nssl.truststore.certificates=" + " \\\n  ".join(lines) \
            + "\n"
    else:
        tls = f"ssl.ca.location={s.pki.ca}\n"
    config = s.props(plain("admin", "admin-secret", "SASL_SSL", tls))
    topic = f"t-{uuid.uuid4().hex[:8]}"
    ok(cli(s, "SASL_SSL", config, "acls", "add", "--deny-principal", "User:bob",
           "--operation", "Write", "--topic", topic))
    rows = listed(ok(cli(s, "SASL_SSL", config, "acls", "list", "--topic", topic, "--json")))
    assert [(r["principal"], r["operation"], r["permission"]) for r in rows] == \
        [("User:bob", "Write", "Deny")]
    # The same login over plaintext TCP to the TLS listener does not get through.
    wrong = cli(s, "SASL_SSL", s.props(plain("admin", "admin-secret")), "acls", "list")
    assert wrong.returncode != 0


def test_tls_verifies_the_broker_certificate(secured: Secured) -> None:
    """Without the test CA the broker's certificate is not trusted: no fallback, an error."""
    s = secured
    result = cli(s, "SASL_SSL", s.props(plain("admin", "admin-secret", "SASL_SSL")),
                 "acls", "list")
    assert result.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr, result.stderr


@pytest.mark.parametrize("keystore", ["location", "chain-and-key"])
def test_ssl_with_a_client_certificate(secured: Secured, keystore: str) -> None:
    s = secured
    trust = f"security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location={s.pki.ca}\n"
    # Without a certificate the broker sees User:ANONYMOUS, who may not list ACLs.
    anonymous = cli(s, "SSL", s.props(trust), "acls", "list")
    assert anonymous.returncode == 1 and AUTHZ_FAILED in anonymous.stderr, anonymous.stderr
    key, cert = s.pki.client_key.read_text(), s.pki.client_cert.read_text()
    if keystore == "location":
        pem = s.base / f"client-{uuid.uuid4().hex[:6]}.pem"
        pem.write_text(key + cert)
        store = f"ssl.keystore.type=PEM\nssl.keystore.location={pem}\n"
    else:
        def one_line(text: str) -> str:
            return " \\\n  ".join(text.strip().splitlines())
        store = (f"ssl.keystore.type=PEM\nssl.keystore.certificate.chain={one_line(cert)}\n"
                 f"ssl.keystore.key={one_line(key)}\n")
    topic = f"t-{uuid.uuid4().hex[:8]}"
    config = s.props(trust + store)
    ok(cli(s, "SSL", config, "acls", "add", "--allow-principal", "User:dave",
           "--operation", "Describe", "--topic", topic))
    rows = listed(ok(cli(s, "SSL", config, "acls", "list", "--topic", topic, "--json")))
    assert [(r["principal"], r["operation"]) for r in rows] == [("User:dave", "Describe")]


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_wrong_plain_password_shows_the_broker_message(secured: Secured, protocol: str) -> None:
    s = secured
    tls = f"ssl.truststore.type=PEM\nssl.truststore.location={s.pki.ca}\n"
    config = s.props(plain("admin", "not-the-password", protocol,
                           tls if protocol == "SASL_SSL" else ""))
    result = cli(s, protocol, config, "acls", "add", "--allow-principal", "User:eve",
                 "--operation", "All", "--cluster")
    assert result.returncode == 1
    assert PLAIN_FAILED in result.stderr and "as admin" in result.stderr, result.stderr
    assert "not-the-password" not in result.stderr + result.stdout


@pytest.mark.parametrize(("text", "key", "value"), [
    ("security.protocol=SASL_PLAINTEXT\nsasl.mechanisms=PLAIN\n", "sasl.mechanisms", "PLAIN"),
    ("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=GSSAPI\n"
     f'sasl.jaas.config={PLAIN_LOGIN} required username="a" password="b";\n',
     "sasl.mechanism", "GSSAPI"),
    ("security.protocol=SASL_SSL\nsasl.username=a\nsasl.password=b\n",
     "sasl.mechanism", "GSSAPI"),
    ("security.protocol=SSL\nssl.truststore.type=JKS\nssl.truststore.location=/x.jks\n",
     "ssl.truststore.type", "JKS"),
    ("security.protocol=TLS\n", "security.protocol", "TLS"),
    ("security.protocol=SSL\nssl.endpoint.identification.algorithm=ldaps\n",
     "ssl.endpoint.identification.algorithm", "ldaps"),
    ("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n"
     f'sasl.jaas.config={SCRAM_LOGIN} required username="a" password="s3cr3t";\n',
     "sasl.jaas.config", "[hidden]"),
], ids=["unknown-key", "gssapi", "default-gssapi", "jks", "bad-protocol", "bad-algorithm",
        "wrong-login-module"])
def test_bad_command_config_fails_before_connecting(secured: Secured, text: str, key: str,
                                                    value: str) -> None:
    s = secured
    with socket.socket() as listener:  # a "broker" that records whether anyone connected
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        result = cli(s, "", s.props(text), "acls", "list", bootstrap=f"127.0.0.1:{port}")
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert result.returncode == 2, result.stderr
    assert f"Invalid value {value}" in result.stderr, result.stderr
    assert f"for configuration {key}:" in result.stderr, result.stderr
    assert "s3cr3t" not in result.stderr


def test_ignored_and_honoured_client_keys(secured: Secured) -> None:
    """client.id and request.timeout.ms are honoured; Java-only tuning keys are warned about;
    ssl.* keys under a protocol without TLS are warned about, never silently dropped."""
    s = secured
    config = s.props(plain("admin", "admin-secret", extra=(
        "client.id=cli-test\nrequest.timeout.ms=20000\nretries=5\n"
        f"ssl.truststore.location={s.pki.ca}\n")))
    result = cli(s, "SASL_PLAINTEXT", config, "acls", "list")
    ok(result)
    assert "warning: retries" in result.stderr
    assert "ssl.truststore.location" in result.stderr and "does not use TLS" in result.stderr
