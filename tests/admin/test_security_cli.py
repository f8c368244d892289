"""``pykbroker acls`` and ``pykbroker users`` against a real broker with an authorizer and a
SCRAM listener, run as subprocesses; their effect checked with confluent-kafka."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer

from pykbroker.testing import KafkaBroker
from tests.admin.test_admin_cli import cli, cli_json

ACL_AUTHORIZER = "kafka.security.authorizer.AclAuthorizer"


@pytest.fixture(scope="module")
def secured() -> Iterator[KafkaBroker]:
    with KafkaBroker(**{
            "listeners": "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
            "sasl.enabled.mechanisms": "SCRAM-SHA-256",
            "authorizer.class.name": ACL_AUTHORIZER,
            "allow.everyone.if.no.acl.found": "true"}) as broker:
        yield broker


def sasl_port(broker: KafkaBroker) -> int:
    assert broker.broker is not None and broker.broker.server is not None
    return broker.broker.server.bound_ports["SASL_PLAINTEXT"]


def produce_error(bootstrap: str, topic: str, **conf: str) -> str | None:
    errors: list[str | None] = []
    p = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 10000, **conf})
    p.produce(topic, b"v", on_delivery=lambda err, _: errors.append(
        None if err is None else err.name()))
    p.flush(20)
    return errors[0] if errors else "not delivered"


def test_acls_add_list_remove_take_effect(secured: KafkaBroker) -> None:
    bootstrap = secured.bootstrap_servers
    topic = f"cli-acl-{uuid.uuid4().hex[:8]}"
    secured.create_topic(topic)
    assert produce_error(bootstrap, topic) is None
    added = cli_json(bootstrap, "acls", "add", "--deny-principal", "User:ANONYMOUS",
                     "--operation", "Write", "--topic", topic)
    assert added == [{"resource": "Topic", "name": topic, "pattern": "LITERAL",
                      "principal": "User:ANONYMOUS", "host": "*", "operation": "Write",
                      "permission": "Deny"}]
    assert produce_error(bootstrap, topic) == "TOPIC_AUTHORIZATION_FAILED"
    listed = cli(bootstrap, "acls", "list", "--topic", topic).stdout
    assert "User:ANONYMOUS" in listed and "Deny" in listed and topic in listed
    assert cli_json(bootstrap, "acls", "list", "--group", "nothing-here") == []
    prefixed = cli_json(bootstrap, "acls", "add", "--allow-principal", "User:app",
                        "--operation", "read", "--operation", "describe", "--group", "app-",
                        "--resource-pattern-type", "prefixed")
    assert {r["operation"] for r in prefixed} == {"Read", "Describe"}
    removed = cli_json(bootstrap, "acls", "remove", "--topic", topic)
    assert [r["permission"] for r in removed] == ["Deny"]
    assert produce_error(bootstrap, topic) is None
    assert len(cli_json(bootstrap, "acls", "list")) == 2  # the two group entries remain
    bad = cli(bootstrap, "acls", "add", "--allow-principal", "alice", "--operation", "Read",
              "--topic", topic, ok=False)  # not Type:name
    assert bad.returncode == 1 and "INVALID_REQUEST" in bad.stderr


def test_users_set_list_delete_and_log_in(secured: KafkaBroker) -> None:
    bootstrap = secured.bootstrap_servers
    user = f"cli-user-{uuid.uuid4().hex[:6]}"
    topic = f"cli-scram-{uuid.uuid4().hex[:8]}"
    secured.create_topic(topic)
    login = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256",
             "sasl.username": user, "sasl.password": "s3cret"}
    scram_bootstrap = f"127.0.0.1:{sasl_port(secured)}"
    cli(bootstrap, "users", "set", "--user", user, "--password", "s3cret",
        "--iterations", "8192")
    assert cli_json(bootstrap, "users", "list", "--user", user) == [
        {"user": user, "mechanism": "SCRAM-SHA-256", "iterations": 8192}]
    assert produce_error(scram_bootstrap, topic, **login) is None  # logs in with it
    cli(bootstrap, "users", "delete", "--user", user, "--mechanism", "SCRAM-SHA-256")
    gone = cli(bootstrap, "users", "list", "--user", user, ok=False)
    assert gone.returncode == 1 and "RESOURCE_NOT_FOUND" in gone.stderr
    assert produce_error(scram_bootstrap, topic, **login) is not None  # no longer
