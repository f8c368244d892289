"""Security settings pykbroker cannot honour yet stop start-up; nothing is served with less
protection than the configuration asked for (issue #13)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from pykbroker.broker import Broker
from pykbroker.config import BrokerConfig, ConfigError
from pykbroker.config.security import ignored_warnings, refusals, refuse_unsupported_security
from pykbroker.testing import open_broker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp_path: Path, **props: str) -> BrokerConfig:
    return BrokerConfig({"listeners": "PLAINTEXT://127.0.0.1:0", "log.dirs": str(tmp_path),
                         **props})


# (extra config, refused key, text the error must contain)
REFUSED = [
    ({"listeners": "PLAINTEXT://127.0.0.1:{p},SSL://127.0.0.1:{q}"}, "listeners",
     "SSL (SSL)"),
    ({"listeners": "PLAINTEXT://127.0.0.1:{p},SASL_PLAINTEXT://127.0.0.1:{q}"}, "listeners",
     "SASL_PLAINTEXT (SASL_PLAINTEXT)"),
    ({"listeners": "PLAINTEXT://127.0.0.1:{p},SASL_SSL://127.0.0.1:{q}"}, "listeners",
     "SASL_SSL (SASL_SSL)"),
    ({"listeners": "CLIENT://127.0.0.1:{p},BROKER://127.0.0.1:{q}",
      "listener.security.protocol.map": "CLIENT:SSL,BROKER:PLAINTEXT",
      "inter.broker.listener.name": "BROKER"}, "listeners", "CLIENT (SSL)"),
    ({"listeners": "SSL://127.0.0.1:{p}", "security.inter.broker.protocol": "SSL"},
     "listeners", "SSL (SSL)"),
    ({"authorizer.class.name": "kafka.security.authorizer.AclAuthorizer"},
     "authorizer.class.name", "kafka.security.authorizer.AclAuthorizer"),
    ({"sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256"}, "sasl.enabled.mechanisms",
     "PLAIN,SCRAM-SHA-256"),
    ({"ssl.keystore.location": "/etc/kafka/broker.jks"}, "ssl.keystore.location",
     "/etc/kafka/broker.jks"),
    ({"ssl.truststore.location": "/etc/kafka/trust.jks"}, "ssl.truststore.location",
     "/etc/kafka/trust.jks"),
    ({"ssl.client.auth": "required"}, "ssl.client.auth", "required"),
    ({"listener.name.plaintext.plain.sasl.jaas.config": "x required;"},
     "listener.name.plaintext.plain.sasl.jaas.config", "[hidden]"),
    ({"listener.name.plaintext.ssl.keystore.location": "/k.jks"},
     "listener.name.plaintext.ssl.keystore.location", "/k.jks"),
    ({"zookeeper.set.acl": "true"}, "zookeeper.set.acl", "true"),
    ({"zookeeper.ssl.client.enable": "true"}, "zookeeper.ssl.client.enable", "true"),
]


def _fill(props: dict[str, str]) -> dict[str, str]:
    p, q = _free_port(), _free_port()
    return {k: v.format(p=p, q=q) for k, v in props.items()}


@pytest.mark.parametrize(("props", "key", "shown"), REFUSED)
def test_refused_settings_name_key_and_value(tmp_path: Path, props: dict[str, str], key: str,
                                             shown: str) -> None:
    config = _config(tmp_path, **_fill(props))  # a valid Kafka configuration ...
    with pytest.raises(ConfigError) as info:  # ... that pykbroker cannot honour yet
        refuse_unsupported_security(config)
    assert info.value.key == key
    assert shown in str(info.value)
    assert "not implement" in str(info.value)


@pytest.mark.parametrize(("props", "key", "shown"), REFUSED)
def test_a_broker_object_refuses_them_too(tmp_path: Path, props: dict[str, str], key: str,
                                          shown: str) -> None:
    with pytest.raises(ConfigError, match="not implement"):
        Broker(_config(tmp_path, **_fill(props)))


def test_the_issue_configuration_names_every_refused_key(tmp_path: Path) -> None:
    p, q = _free_port(), _free_port()
    config = BrokerConfig({
        "listeners": f"SSL://127.0.0.1:{p},SASL_SSL://127.0.0.1:{q}",
        "security.inter.broker.protocol": "SSL",
        "log.dirs": str(tmp_path),
        "ssl.keystore.location": "/etc/kafka/broker.jks", "ssl.keystore.password": "secret",
        "ssl.key.password": "secret", "sasl.enabled.mechanisms": "PLAIN",
        "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
    })
    keys = [r.key for r in refusals(config)]
    assert keys[:3] == ["listeners", "security.inter.broker.protocol", "authorizer.class.name"]
    assert {"ssl.keystore.location", "sasl.enabled.mechanisms"} <= set(keys)
    with pytest.raises(ConfigError) as info:
        refuse_unsupported_security(config)
    text = str(info.value)
    for needle in ("SSL (SSL)", "SASL_SSL (SASL_SSL)", "authorizer.class.name=",
                   "ssl.keystore.location=/etc/kafka/broker.jks", "sasl.enabled.mechanisms=PLAIN"):
        assert needle in text
    assert "secret" not in text


def test_plaintext_defaults_are_not_refused_and_tuning_keys_only_warn(tmp_path: Path) -> None:
    assert refusals(_config(tmp_path)) == []
    config = _config(tmp_path, **{"ssl.cipher.suites": "TLS_AES_128_GCM_SHA256",
                                  "ssl.client.auth": "none", "super.users": "User:admin",
                                  "sasl.kerberos.service.name": "kafka"})
    assert refusals(config) == []
    warned = ignored_warnings(config)
    assert len(warned) == 4 and all("has no effect" in w for w in warned)


@pytest.mark.parametrize("protocol", ["SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def test_the_command_exits_with_the_error_and_serves_nothing(tmp_path: Path,
                                                             protocol: str) -> None:
    plain, secured = _free_port(), _free_port()
    out = subprocess.run(
        [sys.executable, "-m", "pykbroker", "--override", f"log.dirs={tmp_path}",
         "--override",
         f"listeners=PLAINTEXT://127.0.0.1:{plain},{protocol}://127.0.0.1:{secured}"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "configuration error" in out.stderr and f"{protocol} ({protocol})" in out.stderr
    assert "set by override" in out.stderr
    assert not any(tmp_path.iterdir()), "nothing may be written before the refusal"
    for port in (plain, secured):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0


def test_the_command_refuses_an_authorizer_from_a_properties_file(tmp_path: Path) -> None:
    props = tmp_path / "server.properties"
    props.write_text(f"listeners=PLAINTEXT://127.0.0.1:{_free_port()}\nlog.dirs={tmp_path}/d\n"
                     "authorizer.class.name=kafka.security.authorizer.AclAuthorizer\n")
    out = subprocess.run([sys.executable, "-m", "pykbroker", str(props)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "authorizer.class.name" in out.stderr and str(props) in out.stderr


@pytest.mark.trio
async def test_open_broker_refuses_an_sasl_listener(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SASL_PLAINTEXT"):
        async with open_broker(
            tmp_path, **{"listeners": "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0"}):
            await trio.sleep(0)  # pragma: no cover - never reached
