"""Certificates made by the tests (trustme): a CA, the broker's certificate, client
certificates (valid, expired, and one from a CA the broker does not trust), as PEM files."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA clients and the broker trust
    server: Path  # the broker's key and certificate chain, one PEM file
    server_key: Path
    server_chain: Path
    client_cert: Path  # CN=alice,OU=clients,O=Example
    client_key: Path
    expired_cert: Path
    expired_key: Path
    rogue_cert: Path  # issued by a CA nobody trusts
    rogue_key: Path


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="Example")
    rogue_ca = trustme.CA(organization_name="Rogue")
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("alice.example.com", common_name="alice", organization_name="Example",
                           organization_unit_name="clients")
    now = datetime.datetime.now(datetime.UTC)
    expired = ca.issue_cert("bob.example.com", common_name="bob", organization_name="Example",
                            not_before=now - datetime.timedelta(days=30),
                            not_after=now - datetime.timedelta(days=1))
    rogue = rogue_ca.issue_cert("mallory.example.com", common_name="mallory")
    paths = {name: directory / f"{name}.pem" for name in (
        "ca", "server", "server_key", "server_chain", "client_cert", "client_key",
        "expired_cert", "expired_key", "rogue_cert", "rogue_key")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.private_key_and_cert_chain_pem.write_to_path(str(paths["server"]))
    server.private_key_pem.write_to_path(str(paths["server_key"]))
    paths["server_chain"].write_bytes(b"".join(c.bytes() for c in server.cert_chain_pems))
    for name, leaf in (("client", client), ("expired", expired), ("rogue", rogue)):
        leaf.private_key_pem.write_to_path(str(paths[f"{name}_key"]))
        paths[f"{name}_cert"].write_bytes(b"".join(c.bytes() for c in leaf.cert_chain_pems))
    return Pki(**paths)


PLAIN_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
              'username="admin" password="admin-secret" '
              'user_admin="admin-secret" user_alice="alice-secret";')


def secure_listeners(pki: Pki, ports: tuple[int, int, int, int] = (0, 0, 0, 0),
                     mechanisms: str = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
                     ) -> dict[str, str]:
    """Broker settings for PLAINTEXT, SSL (client certificates requested), SASL_PLAINTEXT and
    SASL_SSL listeners on ``ports``, PEM stores from ``pki``, PLAIN users from JAAS."""
    p = ports
    return {
        "listeners": f"PLAINTEXT://127.0.0.1:{p[0]},SSL://127.0.0.1:{p[1]},"
                     f"SASL_PLAINTEXT://127.0.0.1:{p[2]},SASL_SSL://127.0.0.1:{p[3]}",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(pki.server),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(pki.ca),
        "listener.name.ssl.ssl.client.auth": "requested",
        "sasl.enabled.mechanisms": mechanisms,
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS,
        "listener.name.sasl_ssl.plain.sasl.jaas.config": PLAIN_JAAS,
    }
