"""Broker configuration: loading precedence, Kafka's syntax and semantics, DescribeConfigs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pykbroker.config import (
    BROKER_DEFS,
    TOPIC_DEFS,
    BrokerConfig,
    ConfigDef,
    ConfigEntry,
    ConfigError,
    ConfigSource,
    ConfigSynonym,
    Listener,
    Password,
    describe_broker_configs,
    describe_topic_configs,
    message_timestamp_bounds,
    topic_config_defaults,
    validate_topic_configs,
)
from pykbroker.config.sources import env_config_key, parse_properties
from pykbroker.config.topic import TOPIC_SERVER_SYNONYMS
from pykbroker.config.types import LONG_MAX, ConfigType, java_double, render_value
from pykbroker.errors import PykbrokerError

STATIC, DEFAULT, TOPIC = 4, 5, 1
NO_ENV: dict[str, str] = {"HOME": "/home/test"}


def load(*overrides: str, env: dict[str, str] | None = None) -> BrokerConfig:
    return BrokerConfig.load(env=NO_ENV if env is None else env, overrides=overrides)


def entry(entries: list[ConfigEntry], name: str) -> ConfigEntry:
    (found,) = [e for e in entries if e.name == name]
    return found


# ------------------------------------------------------------------------------ precedence


def test_precedence_default_file_env_override(tmp_path: Path) -> None:
    props = tmp_path / "server.properties"
    props.write_text(
        "num.partitions=2\n"
        "log.retention.hours=24\n"
        "message.max.bytes=100\n"
        "auto.create.topics.enable=false\n"
    )
    env = {**NO_ENV, "KAFKA_NUM_PARTITIONS": "3", "KAFKA_MESSAGE_MAX_BYTES": "200"}
    cfg = BrokerConfig.load(props, env=env, overrides=["message.max.bytes=300"])

    assert cfg.num_partitions == 3  # env beats file
    assert cfg.get("log.retention.hours") == 24  # file beats default
    assert cfg.message_max_bytes == 300  # override beats env and file
    assert cfg.auto_create_topics_enable is False
    assert cfg.default_replication_factor == 1  # Kafka's default
    assert cfg.origin("num.partitions") == "env KAFKA_NUM_PARTITIONS"
    assert cfg.origin("log.retention.hours") == str(props)
    assert cfg.origin("message.max.bytes") == "override"
    assert cfg.origin("default.replication.factor") == "default"
    assert cfg.source("num.partitions") == ConfigSource.STATIC_BROKER_CONFIG == STATIC
    assert cfg.source("default.replication.factor") == DEFAULT
    assert "num.partitions = 3 (env KAFKA_NUM_PARTITIONS)" in cfg.banner_lines()
    assert cfg.warnings == []


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        BrokerConfig.load(tmp_path / "absent.properties", env=NO_ENV)


def test_bad_value_in_file_names_the_file(tmp_path: Path) -> None:
    props = tmp_path / "server.properties"
    props.write_text("num.partitions = many\n")
    with pytest.raises(ConfigError) as info:
        BrokerConfig.load(props, env=NO_ENV)
    assert str(props) in str(info.value)
    assert info.value.key == "num.partitions" and info.value.value == "many"


def test_constructor_takes_python_values(tmp_path: Path) -> None:
    cfg = BrokerConfig(
        {"log.dirs": tmp_path, "auto.create.topics.enable": False, "num.partitions": 4},
        env=NO_ENV,
    )
    assert cfg.log_dirs == [tmp_path]
    assert cfg.auto_create_topics_enable is False and cfg.num_partitions == 4


# ----------------------------------------------------------------------------- environment


@pytest.mark.parametrize(
    ("var", "key"),
    [
        ("KAFKA_LOG_RETENTION_MS", "log.retention.ms"),
        ("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "listener.security.protocol.map"),
        ("KAFKA_ZOOKEEPER_CONNECT", "zookeeper.connect"),
        ("KAFKA_NODE_ID", "node.id"),
        ("KAFKA_LISTENER_NAME_SASL__SSL_PLAIN_SASL_JAAS_CONFIG",
         "listener.name.sasl_ssl.plain.sasl.jaas.config"),
        ("KAFKA_LISTENER_NAME_SASL__SSL_SCRAM___SHA___256_SASL_JAAS_CONFIG",
         "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config"),
        ("KAFKA_HEAP_OPTS", None),
        ("KAFKA_OPTS", None),
        ("KAFKA_JMX_PORT", None),
        ("KAFKA_LOG4J_ROOT_LOGLEVEL", None),
        ("KAFKA_VERSION", None),
        ("KAFKA_", None),
        ("PATH", None),
    ],
)
def test_env_var_mapping(var: str, key: str | None) -> None:
    assert env_config_key(var) == key


def test_env_loading_ignores_image_variables_and_knows_listener_prefixes() -> None:
    env = {
        **NO_ENV,
        "KAFKA_HEAP_OPTS": "-Xmx1G",
        "KAFKA_JMX_OPTS": "-Dcom.sun.management.jmxremote",
        "KAFKA_LOG4J_LOGGERS": "kafka=WARN",
        "KAFKA_ZOOKEEPER_CONNECT": "zk1:2181,zk2:2181/kafka",
        "KAFKA_LISTENER_NAME_PLAINTEXT_PLAIN_SASL_JAAS_CONFIG": "x required;",
        "KAFKA_LOG_RETENTION_MS": "5000",
        "JAVA_HOME": "/opt/java",
    }
    cfg = load(env=env)
    assert cfg.warnings == []
    assert cfg.zookeeper_connect == "zk1:2181,zk2:2181/kafka"
    assert cfg.log_retention_ms == 5000
    assert isinstance(cfg.get("listener.name.plaintext.plain.sasl.jaas.config"), Password)


def test_env_advertised_only_binds_all_interfaces_like_the_image() -> None:
    env = {**NO_ENV, "KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://broker1:9092"}
    cfg = load(env=env)
    assert cfg.listeners == [Listener("PLAINTEXT", "0.0.0.0", 9092, "PLAINTEXT")]
    assert cfg.advertised_listeners == [Listener("PLAINTEXT", "broker1", 9092, "PLAINTEXT")]


# ---------------------------------------------------------------------- properties syntax


def test_properties_syntax() -> None:
    text = (
        "# a comment ending in a backslash is not continued \\\n"
        "! so is this one\n"
        "\n"
        "   plain = value with spaces   \n"
        "colon:value2\n"
        "spaced value3\n"
        "spaced.colon : value4\n"
        "cont = first, \\\r\n"
        "       second, \\\n"
        "   third\n"
        "key\\=with\\:seps = v\n"
        "esc = tab\\there\\nnewline \\u0041\\\\ \\q\n"
        "twice=1\n"
        "twice=2\n"
        "empty\n"
        "trailing = dropped\\"
    )
    props = parse_properties(text)
    assert props == {
        "plain": "value with spaces   ",
        "colon": "value2",
        "spaced": "value3",
        "spaced.colon": "value4",
        "cont": "first, second, third",
        "key=with:seps": "v",
        "esc": "tab\there\nnewline A\\ q",
        "twice": "2",
        "empty": "",
        "trailing": "dropped",
    }


def test_properties_file_values_are_typed(tmp_path: Path) -> None:
    props = tmp_path / "server.properties"
    props.write_text(
        "log.cleanup.policy = compact, \\\n    delete\n"
        "listeners: PLAINTEXT://localhost:0\n"
        "broker.rack   rack\\u002d1\n"
    )
    cfg = BrokerConfig.load(props, env=NO_ENV)
    assert cfg.get("log.cleanup.policy") == ["compact", "delete"]
    assert cfg.broker_rack == "rack-1"
    assert cfg.listeners[0].port == 0


def test_malformed_unicode_escape_is_an_error() -> None:
    with pytest.raises(ConfigError, match="Malformed"):
        parse_properties("key=\\u12G4\n", "server.properties")


# ------------------------------------------------------------------------ unknown and bad


def test_unknown_key_warns_with_suggestion(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pykbroker.config"):
        cfg = load("log.retention.hour=5", "retention.ms=1000")
    assert len(cfg.warnings) == 2
    hour, topic_key = cfg.warnings
    assert "'log.retention.hour'" in hour and "did you mean 'log.retention.hours'" in hour
    assert "'retention.ms' is a topic config" in topic_key and "'log.retention.ms'" in topic_key
    assert [r.name for r in caplog.records] == ["pykbroker.config"] * 2
    assert cfg.get("log.retention.hours") == 168  # the misspelt key changed nothing
    assert cfg.get("log.retention.hour") == "5"


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("num.partitions", "abc", "Not a number of type INT"),
        ("num.partitions", "0", "Value must be at least 1"),
        ("num.partitions", "1.5", "Not a number of type INT"),
        ("log.message.timestamp.type", "Foo", "String must be one of: CreateTime, LogAppendTime"),
        ("auto.create.topics.enable", "yes", "Expected value to be either true or false"),
        ("offsets.topic.replication.factor", "40000", "Not a number of type SHORT"),
        ("message.max.bytes", "2147483648", "Not a number of type INT"),
        ("log.cleanup.policy", "compact,foo", "String must be one of: compact, delete"),
        ("log.cleaner.min.cleanable.ratio", "1.5", "Value must be no more than 1"),
        ("compression.gzip.level", "10", "Value must be no more than 9"),
        ("metrics.port", "70000", "Value must be no more than 65535"),
    ],
)
def test_bad_values_raise_config_error(key: str, value: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(f"{key}={value}")
    err = info.value
    assert isinstance(err, PykbrokerError)
    assert (err.key, err.value) == (key, value)
    assert why in err.reason
    assert key in str(err) and value in str(err)


def test_values_are_trimmed_and_booleans_case_insensitive() -> None:
    cfg = load("num.partitions=  7 ", "delete.topic.enable=FALSE", "compression.gzip.level=-1")
    assert cfg.num_partitions == 7 and cfg.delete_topic_enable is False
    assert cfg.get("compression.gzip.level") == -1


def test_override_without_equals_is_rejected() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        load("num.partitions")


def test_node_id_and_broker_id_are_synonyms() -> None:
    assert load().node_id == 1 and load().broker_id == 1
    assert load("broker.id=3").node_id == 3
    assert load("node.id=4").broker_id == 4
    assert load("node.id=5", "broker.id=5").node_id == 5
    with pytest.raises(ConfigError, match="same value"):
        load("node.id=5", "broker.id=6")


def test_cross_key_rules() -> None:
    with pytest.raises(ConfigError, match="replica.lag.time.max.ms"):
        load("replica.fetch.wait.max.ms=40000", "replica.socket.timeout.ms=50000")
    with pytest.raises(ConfigError) as info:
        load("log.retention.minutes=0")
    assert info.value.key == "log.retention.minutes"
    with pytest.raises(ConfigError, match="group.consumer.heartbeat.interval.ms"):
        load("group.consumer.heartbeat.interval.ms=50000")


# -------------------------------------------------------------------------------- listeners


def test_default_listener_is_localhost() -> None:
    cfg = load()
    assert cfg.listeners == [Listener("PLAINTEXT", "localhost", 9092, "PLAINTEXT")]
    assert cfg.advertised_listeners == cfg.listeners
    assert cfg.inter_broker_listener_name == "PLAINTEXT"
    assert cfg.security_protocol_map == {
        "PLAINTEXT": "PLAINTEXT", "SSL": "SSL",
        "SASL_PLAINTEXT": "SASL_PLAINTEXT", "SASL_SSL": "SASL_SSL",
    }


def test_listeners_ipv6_wildcards_and_protocol_map() -> None:
    cfg = load(
        "listeners=PLAINTEXT://[::1]:9092, client://:9093,REPLICATION://0.0.0.0:9094",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CLIENT:sasl_ssl,REPLICATION:SSL",
    )
    assert cfg.listeners == [
        Listener("PLAINTEXT", "::1", 9092, "PLAINTEXT"),
        Listener("CLIENT", "", 9093, "SASL_SSL"),
        Listener("REPLICATION", "0.0.0.0", 9094, "SSL"),
    ]
    # empty and 0.0.0.0 hosts are advertised as localhost
    assert [(a.name, a.host) for a in cfg.advertised_listeners] == [
        ("PLAINTEXT", "::1"), ("CLIENT", "localhost"), ("REPLICATION", "localhost")]
    assert str(cfg.listeners[0]) == "PLAINTEXT://[::1]:9092"


def test_explicit_advertised_listeners() -> None:
    cfg = load("listeners=PLAINTEXT://0.0.0.0:9092",
               "advertised.listeners=PLAINTEXT://kafka.example.com:19092")
    assert cfg.advertised_listeners == [
        Listener("PLAINTEXT", "kafka.example.com", 19092, "PLAINTEXT")]


@pytest.mark.parametrize(
    ("overrides", "key", "why"),
    [
        (["listeners=PLAINTEXT://:9092,PLAINTEXT://:9093"], "listeners", "different name"),
        (["listeners=PLAINTEXT://:9092,SSL://:9092"], "listeners", "different port"),
        (["listeners=PLAINTEXT://9092"], "listeners", "Unable to parse"),
        (["listeners=PLAINTEXT://:99999"], "listeners", "between 0 and 65535"),
        (["listeners=OTHER://:9092"], "listeners", "No security protocol defined"),
        (["listener.security.protocol.map=PLAINTEXT:TLS"], "listener.security.protocol.map",
         "security protocol"),
        (["advertised.listeners=PLAINTEXT://0.0.0.0:9092"], "advertised.listeners",
         "nonroutable"),
        (["advertised.listeners=SSL://host:9093"], "advertised.listeners", "subset"),
        (["listeners=CLIENT://:9092", "listener.security.protocol.map=CLIENT:PLAINTEXT"],
         "security.inter.broker.protocol", "inter.broker.listener.name must be"),
        (["inter.broker.listener.name=PLAINTEXT", "security.inter.broker.protocol=PLAINTEXT"],
         "inter.broker.listener.name", "Only one of"),
    ],
)
def test_bad_listener_configs(overrides: list[str], key: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(*overrides)
    assert info.value.key == key
    assert why in info.value.reason


def test_same_port_allowed_for_ipv4_and_ipv6_and_for_ephemeral_ports() -> None:
    cfg = load("listeners=PLAINTEXT://127.0.0.1:9092,SSL://[::1]:9092")
    assert [lst.port for lst in cfg.listeners] == [9092, 9092]
    cfg = load("listeners=PLAINTEXT://localhost:0,SSL://localhost:0")
    assert [lst.port for lst in cfg.listeners] == [0, 0]


def test_bound_port_replaces_ephemeral_port() -> None:
    cfg = load("listeners=PLAINTEXT://localhost:0,CLIENT://localhost:0",
               "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CLIENT:PLAINTEXT")
    bound = cfg.with_bound_port("client", 40123)
    assert [lst.port for lst in bound.listeners] == [0, 40123]
    assert [a.port for a in bound.advertised_listeners] == [0, 40123]
    assert [lst.port for lst in cfg.listeners] == [0, 0]  # the original is unchanged
    with pytest.raises(KeyError):
        cfg.with_bound_port("nope", 1)


def test_inter_broker_listener_name() -> None:
    cfg = load("listeners=CLIENT://:9092,BROKER://:9093",
               "listener.security.protocol.map=CLIENT:SSL,BROKER:PLAINTEXT",
               "inter.broker.listener.name=BROKER")
    assert cfg.inter_broker_listener_name == "BROKER"


# ------------------------------------------------------------------------ synonyms, dirs


@pytest.mark.parametrize(
    ("overrides", "retention_ms"),
    [
        ([], 7 * 24 * 3600 * 1000),
        (["log.retention.hours=1"], 3600 * 1000),
        (["log.retention.hours=1", "log.retention.minutes=5"], 5 * 60 * 1000),
        (["log.retention.minutes=5", "log.retention.ms=1234"], 1234),
        (["log.retention.ms=-5"], -1),
    ],
)
def test_retention_synonyms(overrides: list[str], retention_ms: int) -> None:
    cfg = load(*overrides)
    assert cfg.get("log.retention.ms") == retention_ms == cfg.log_retention_ms
    assert cfg.value("log.retention.ms") in (None, 1234, -5)  # value() does not resolve


def test_roll_flush_and_zookeeper_synonyms() -> None:
    cfg = load()
    assert cfg.log_roll_ms == 168 * 3600 * 1000
    assert cfg.log_flush_interval_ms == LONG_MAX
    assert cfg.zookeeper_connection_timeout_ms == 18000
    assert cfg.zookeeper_connect is None
    cfg = load("log.roll.hours=2", "zookeeper.session.timeout.ms=6000",
               "log.flush.scheduler.interval.ms=100")
    assert cfg.log_roll_ms == 2 * 3600 * 1000
    assert cfg.zookeeper_connection_timeout_ms == 6000
    assert cfg.log_flush_interval_ms == 100
    assert load("log.roll.ms=10", "log.roll.hours=2").log_roll_ms == 10


def test_log_dirs_defaults_and_fallback(tmp_path: Path) -> None:
    assert load(env={"HOME": "/home/u"}).log_dirs == [
        Path("/home/u/.local/share/pykbroker/data")]
    xdg = {"HOME": "/home/u", "XDG_DATA_HOME": str(tmp_path)}
    assert load(env=xdg).log_dirs == [tmp_path / "pykbroker" / "data"]
    assert load("log.dir=/data/one").log_dirs == [Path("/data/one")]
    assert load("log.dir=/data/one", "log.dirs=/a , /b").log_dirs == [Path("/a"), Path("/b")]


def test_typed_accessors() -> None:
    cfg = load("super.users=User:admin; User:alice", "metrics.port=9404",
               "offsets.retention.minutes=2")
    assert cfg.super_users == ["User:admin", "User:alice"]
    assert cfg.metrics_port == 9404
    assert cfg.offsets_retention_ms == 120000
    assert load().metrics_port == -1
    assert load().offsets_topic_num_partitions == 50
    assert load().socket_request_max_bytes == 104857600
    with pytest.raises(KeyError):
        load().get("no.such.key")


# ----------------------------------------------------------------------------- topic configs


def test_topic_defaults_from_broker_synonyms() -> None:
    broker = load("log.retention.minutes=10", "log.cleanup.policy=compact",
                  "message.max.bytes=5000", "log.roll.hours=1", "compression.type=lz4",
                  "log.cleaner.delete.retention.ms=77", "log.index.size.max.bytes=4096")
    defaults = topic_config_defaults(broker)
    assert defaults["retention.ms"] == 600000
    assert defaults["cleanup.policy"] == ["compact"]
    assert defaults["max.message.bytes"] == 5000
    assert defaults["segment.ms"] == 3600000
    assert defaults["compression.type"] == "lz4"
    assert defaults["delete.retention.ms"] == 77
    assert defaults["segment.index.bytes"] == 4096
    assert defaults["remote.storage.enable"] is False  # no broker synonym
    assert set(defaults) == set(TOPIC_DEFS)


def test_topic_defaults_of_a_default_broker_are_kafkas_topic_defaults() -> None:
    defaults = topic_config_defaults(load())
    assert defaults == {name: d.default for name, d in TOPIC_DEFS.items()}


def test_validate_topic_configs() -> None:
    parsed = validate_topic_configs(
        {"retention.ms": "-1", "cleanup.policy": "compact,delete", "min.insync.replicas": "2",
         "segment.bytes": None}
    )
    assert parsed == {"retention.ms": -1, "cleanup.policy": ["compact", "delete"],
                      "min.insync.replicas": 2, "segment.bytes": None}
    with pytest.raises(ConfigError, match="Unknown topic config name: retention.hours"):
        validate_topic_configs({"retention.hours": "1"})
    with pytest.raises(ConfigError, match="Value must be at least -1"):
        validate_topic_configs({"retention.ms": "-2"})
    with pytest.raises(ConfigError, match="message.timestamp.type"):
        validate_topic_configs({"message.timestamp.type": "Whenever"})
    with pytest.raises(ConfigError, match="min.compaction.lag.ms"):
        validate_topic_configs({"min.compaction.lag.ms": "10", "max.compaction.lag.ms": "5"})
    with pytest.raises(ConfigError, match="Tiered Storage"):
        validate_topic_configs({"remote.storage.enable": "true"}, load())


def test_message_timestamp_bounds_fall_back_to_difference() -> None:
    values = topic_config_defaults(load())
    assert message_timestamp_bounds(values) == (LONG_MAX, LONG_MAX)
    values["message.timestamp.difference.max.ms"] = 1000
    values["message.timestamp.after.max.ms"] = 50
    assert message_timestamp_bounds(values) == (1000, 50)


# ----------------------------------------------------------------------------- describe


def test_describe_topic_with_override(tmp_path: Path) -> None:
    props = tmp_path / "server.properties"
    props.write_text("message.max.bytes=2000\nlog.retention.ms=5000\n")
    broker = BrokerConfig.load(props, env=NO_ENV)
    entries = describe_topic_configs(
        broker, {"max.message.bytes": "1000", "retention.ms": "99", "cleanup.policy": "compact"}
    )
    assert {e.name for e in entries} == set(TOPIC_DEFS)

    mmb = entry(entries, "max.message.bytes")
    assert (mmb.value, mmb.source, mmb.is_default, mmb.read_only) == ("1000", TOPIC, False, False)
    assert mmb.config_type == 3 and not mmb.is_sensitive
    assert mmb.synonyms == [
        ConfigSynonym("max.message.bytes", "1000", TOPIC),
        ConfigSynonym("message.max.bytes", "2000", STATIC),
        ConfigSynonym("message.max.bytes", "1048588", DEFAULT),
    ]
    assert entry(entries, "retention.ms").synonyms == [
        ConfigSynonym("retention.ms", "99", TOPIC),
        ConfigSynonym("log.retention.ms", "5000", STATIC),
        ConfigSynonym("log.retention.hours", "168", DEFAULT),
    ]
    assert entry(entries, "cleanup.policy").synonyms == [
        ConfigSynonym("cleanup.policy", "compact", TOPIC),
        ConfigSynonym("log.cleanup.policy", "delete", DEFAULT),
    ]
    seg = entry(entries, "segment.bytes")
    assert (seg.value, seg.source, seg.is_default) == ("1073741824", DEFAULT, True)
    assert seg.synonyms == [ConfigSynonym("log.segment.bytes", "1073741824", DEFAULT)]
    ratio = entry(entries, "min.cleanable.dirty.ratio")
    assert (ratio.value, ratio.config_type) == ("0.5", 6)
    assert entry(entries, "remote.storage.enable").value == "false"


def test_describe_topic_without_override_follows_kafkas_synonym_drop() -> None:
    # Kafka lists synonyms from the first one named like the topic key's broker synonym on:
    # log.retention.ms is unset, so the log.retention.hours default is not shown.
    broker = load()
    (ret,) = describe_topic_configs(broker, {}, names=["retention.ms"])
    assert (ret.value, ret.source, ret.synonyms) == ("604800000", DEFAULT, [])
    broker = load("log.retention.hours=1")
    (ret,) = describe_topic_configs(broker, {}, names=["retention.ms"])
    assert (ret.value, ret.source, ret.synonyms) == ("3600000", DEFAULT, [])


def test_describe_password_config(tmp_path: Path) -> None:
    props = tmp_path / "server.properties"
    props.write_text("ssl.keystore.password=hunter2\n")
    broker = BrokerConfig.load(props, env=NO_ENV)
    assert isinstance(broker.get("ssl.keystore.password"), Password)
    assert "hunter2" not in repr(broker.get("ssl.keystore.password"))
    assert "hunter2" not in "\n".join(broker.banner_lines())

    pw, unset = describe_broker_configs(broker, ["ssl.keystore.password", "ssl.key.password"])
    assert (pw.value, pw.is_sensitive, pw.config_type, pw.source) == (None, True, 9, STATIC)
    assert pw.synonyms == [ConfigSynonym("ssl.keystore.password", None, STATIC)]
    assert not pw.read_only  # per-broker dynamic in Kafka
    assert (unset.value, unset.source, unset.is_default, unset.synonyms) == (
        None, DEFAULT, True, [])


def test_describe_broker_configs_render_like_kafka() -> None:
    broker = load("log.retention.hours=24", "foo.bar=1")
    entries = describe_broker_configs(broker)
    assert len(entries) == len(BROKER_DEFS) + 1
    hours = entry(entries, "log.retention.hours")
    assert (hours.value, hours.source, hours.read_only) == ("24", STATIC, True)
    assert hours.synonyms == [ConfigSynonym("log.retention.hours", "24", STATIC),
                              ConfigSynonym("log.retention.hours", "168", DEFAULT)]
    ms = entry(entries, "log.retention.ms")
    assert (ms.value, ms.source, ms.synonyms, ms.read_only) == (None, DEFAULT, [], False)
    assert entry(entries, "auto.create.topics.enable").value == "true"
    assert entry(entries, "log.cleaner.io.max.bytes.per.second").value == (
        "1.7976931348623157E308")
    assert entry(entries, "group.consumer.assignors").value == (
        "org.apache.kafka.coordinator.group.assignor.UniformAssignor,"
        "org.apache.kafka.coordinator.group.assignor.RangeAssignor")
    assert entry(entries, "log.dir").value == "/home/test/.local/share/pykbroker/data"
    unknown = entry(entries, "foo.bar")  # Kafka cannot type it, so hides it
    assert (unknown.value, unknown.is_sensitive, unknown.config_type) == (None, True, 0)


def test_dynamic_overrides_layer_over_static() -> None:
    broker = load("log.retention.hours=24", "message.max.bytes=2000")
    cluster = broker.with_overrides({"message.max.bytes": "3000"},
                                    ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)
    dynamic = cluster.with_overrides({"message.max.bytes": "4000", "log.retention.ms": "10"})
    assert broker.message_max_bytes == 2000 and cluster.message_max_bytes == 3000
    assert dynamic.message_max_bytes == 4000 and dynamic.log_retention_ms == 10
    assert dynamic.source("message.max.bytes") == ConfigSource.DYNAMIC_BROKER_CONFIG
    assert dynamic.config_synonyms("message.max.bytes") == [
        ConfigSynonym("message.max.bytes", "4000", 2),
        ConfigSynonym("message.max.bytes", "3000", 3),
        ConfigSynonym("message.max.bytes", "2000", STATIC),
        ConfigSynonym("message.max.bytes", "1048588", DEFAULT),
    ]
    assert dynamic.config_synonyms("log.retention.ms") == [
        ConfigSynonym("log.retention.ms", "10", 2),
        ConfigSynonym("log.retention.hours", "24", STATIC),
        ConfigSynonym("log.retention.hours", "168", DEFAULT),
    ]
    removed = dynamic.with_overrides({"message.max.bytes": None})
    assert removed.message_max_bytes == 3000
    with pytest.raises(ConfigError):
        broker.with_overrides({"message.max.bytes": "-1"})


# ------------------------------------------------------------------------------- the table


@pytest.mark.parametrize("defn", [*BROKER_DEFS.values(), *TOPIC_DEFS.values()],
                         ids=lambda d: d.name)
def test_every_default_is_valid_and_round_trips(defn: ConfigDef) -> None:
    assert defn.documentation.strip()
    if defn.default is None or defn.type is ConfigType.PASSWORD:
        return
    defn.validate(defn.default)
    rendered = render_value(defn.type, defn.default)
    assert rendered is not None
    assert defn.parse(rendered) == defn.default


def test_topic_synonyms_point_at_broker_keys_of_the_same_kind() -> None:
    numeric = {ConfigType.INT, ConfigType.LONG, ConfigType.SHORT}
    for topic_key, broker_key in TOPIC_SERVER_SYNONYMS.items():
        t, b = TOPIC_DEFS[topic_key].type, BROKER_DEFS[broker_key].type
        assert t == b or {t, b} <= numeric, (topic_key, broker_key)


def test_java_double_rendering() -> None:
    assert [java_double(x) for x in (0.5, 1.0, 0.9, 100.0, 1e7, 1e-4, 123456.75)] == [
        "0.5", "1.0", "0.9", "100.0", "1.0E7", "1.0E-4", "123456.75"]
    assert render_value(ConfigType.BOOLEAN, False) == "false"
    assert render_value(ConfigType.LIST, ["a", "b"]) == "a,b"
    assert render_value(ConfigType.STRING, None) is None


def test_a_generated_broker_id_needs_zookeeper(tmp_path: Path) -> None:
    """broker.id=-1 (Kafka's default: generate one) is valid only for a cluster member with
    broker.id.generation.enable; the id then comes from ZooKeeper at start-up."""
    base = {"log.dirs": str(tmp_path)}
    with pytest.raises(ConfigError, match="needs zookeeper.connect"):
        BrokerConfig({**base, "broker.id": "-1"})
    with pytest.raises(ConfigError, match="needs zookeeper.connect"):
        BrokerConfig({**base, "broker.id": "-1", "zookeeper.connect": "127.0.0.1:2181",
                      "broker.id.generation.enable": "false"})
    config = BrokerConfig({**base, "broker.id": "-1", "zookeeper.connect": "127.0.0.1:2181"})
    assert config.node_id == -1
    named = config.with_generated_broker_id(1001)
    assert named.node_id == 1001 and named.get("broker.id") == 1001
    assert named.origin("broker.id") == "generated"
