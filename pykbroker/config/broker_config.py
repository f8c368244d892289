"""The broker's configuration: Kafka's key names and semantics, loaded in layers.

Precedence, lowest first: defaults < config file < ``KAFKA_*`` environment < ``key=value``
overrides (all three "static", as Kafka's server.properties) < dynamic cluster-wide defaults <
dynamic per-broker values (``with_overrides``, for AlterConfigs later). Every value remembers
where it came from, for the start-up banner and for DescribeConfigs sources and synonyms.

Unknown keys only warn (Kafka logs them and carries on); a bad value stops start-up with a
ConfigError naming key, value and reason, because a broker silently running with a default
the operator did not ask for is worse than one that refuses to start.
"""

from __future__ import annotations

import copy
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Generic, TypeVar, overload

from pykbroker.config.checks import find_def, first_failed_rule, unknown_key_warning
from pykbroker.config.defs import BROKER_DEFS, MINUTE_MS, RESOLVE_CHAINS, broker_synonyms
from pykbroker.config.listeners import Listener, ListenerConfigError, resolve_listeners
from pykbroker.config.sources import (
    default_data_dir,
    env_configs,
    listeners_from_advertised,
    load_properties_file,
    parse_overrides,
)
from pykbroker.config.types import ConfigError, ConfigSource, ConfigSynonym, Password, render_value

log = logging.getLogger("pykbroker.config")

T = TypeVar("T")


class _Setting(Generic[T]):
    """A typed read-only attribute that reads one key through ``BrokerConfig.get``."""

    def __init__(self, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type) -> _Setting[T]: ...
    @overload
    def __get__(self, obj: BrokerConfig, owner: type) -> T: ...
    def __get__(self, obj: BrokerConfig | None, owner: type) -> _Setting[T] | T:
        if obj is None:
            return self
        return obj.get(self.name)  # type: ignore[return-value]


class BrokerConfig:
    """A validated, typed broker configuration; immutable once built (``with_*`` copies)."""

    warnings: list[str]

    def __init__(
        self,
        props: Mapping[str, object] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        origin: str = "constructor",
    ) -> None:
        """Build from ``key -> value`` (strings, or Python values rendered the Kafka way).

        Only ``load`` reads files and ``KAFKA_*`` variables; ``env`` here just supplies
        ``XDG_DATA_HOME``/``HOME`` for the default data directory.
        """
        static = {k: _as_string(v) for k, v in (props or {}).items()}
        self._setup(static, dict.fromkeys(static, origin), {}, {},
                    default_data_dir(os.environ if env is None else env))
        self._log_warnings(self.warnings)

    @classmethod
    def load(
        cls,
        config_file: Path | None = None,
        env: Mapping[str, str] | None = None,
        overrides: Sequence[str] = (),
    ) -> BrokerConfig:
        """Defaults < ``config_file`` < ``KAFKA_*`` variables of ``env`` < ``overrides``."""
        env = os.environ if env is None else env
        static: dict[str, str] = {}
        origins: dict[str, str] = {}
        if config_file is not None:
            for key, value in load_properties_file(Path(config_file)).items():
                static[key], origins[key] = value, str(config_file)
        env_items = env_configs(env)
        for var, key, value in env_items:
            static[key], origins[key] = value, f"env {var}"
        advertised_var = "KAFKA_ADVERTISED_LISTENERS"
        if env.get(advertised_var) and not env.get("KAFKA_LISTENERS") and (
            env.get("KAFKA_PROCESS_ROLES") != "controller"
        ):
            # The apache/kafka image binds 0.0.0.0 on the advertised ports when only
            # KAFKA_ADVERTISED_LISTENERS is given (its `configure` script).
            static["listeners"] = listeners_from_advertised(env[advertised_var])
            origins["listeners"] = f"env {advertised_var} (hosts replaced by 0.0.0.0)"
        for key, value in parse_overrides(overrides):
            static[key], origins[key] = value, "override"
        self = cls.__new__(cls)
        self._setup(static, origins, {}, {}, default_data_dir(env))
        self._log_warnings(self.warnings)
        return self

    def with_overrides(
        self,
        overrides: Mapping[str, str | None],
        source: ConfigSource = ConfigSource.DYNAMIC_BROKER_CONFIG,
    ) -> BrokerConfig:
        """A copy with dynamic values set (None removes one), validated like static ones.

        ``source`` is DYNAMIC_BROKER_CONFIG (this broker) or DYNAMIC_DEFAULT_BROKER_CONFIG
        (cluster-wide default). Whether a key may change at run time is the caller's check
        (``BROKER_DEFS[key].update_mode``), as AlterConfigs answers that per key.
        """
        layers = {
            ConfigSource.DYNAMIC_BROKER_CONFIG: dict(self._dynamic),
            ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG: dict(self._dynamic_default),
        }
        if source not in layers:
            raise ValueError(f"not a dynamic config source: {source!r}")
        layer = layers[source]
        for key, value in overrides.items():
            if value is None:
                layer.pop(key, None)
            else:
                layer[key] = value
        new = type(self).__new__(type(self))
        new._setup(dict(self._static), dict(self._static_origin),
                   layers[ConfigSource.DYNAMIC_BROKER_CONFIG],
                   layers[ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG], self._data_dir)
        new._log_warnings([w for w in new.warnings if w not in self.warnings])
        return new

    def with_generated_broker_id(self, broker_id: int) -> BrokerConfig:
        """A copy whose ``broker.id`` / ``node.id`` is the one generated (or found in
        meta.properties) for ``broker.id=-1``; shown as coming from there."""
        static = {**self._static, "broker.id": str(broker_id), "node.id": str(broker_id)}
        origins = {**self._static_origin, "broker.id": "generated", "node.id": "generated"}
        new = type(self).__new__(type(self))
        new._setup(static, origins, dict(self._dynamic), dict(self._dynamic_default),
                   self._data_dir)
        return new

    def with_bound_port(self, listener_name: str, port: int) -> BrokerConfig:
        """A copy where listener ``listener_name`` has ``port`` (after binding port 0).

        The advertised listener of that name takes the port too when it advertised port 0,
        as Kafka does for ephemeral ports.
        """
        name = listener_name.upper()
        if name not in {lst.name for lst in self._listeners}:
            raise KeyError(listener_name)
        new = copy.copy(self)
        new._listeners = [lst.with_port(port) if lst.name == name else lst
                          for lst in self._listeners]
        new._advertised = [a.with_port(port) if a.name == name and a.port == 0 else a
                           for a in self._advertised]
        return new

    # ------------------------------------------------------------------------------ building

    def _setup(
        self,
        static: dict[str, str],
        origins: dict[str, str],
        dynamic: dict[str, str],
        dynamic_default: dict[str, str],
        data_dir: Path,
    ) -> None:
        self._data_dir = data_dir
        for a, b in (("broker.id", "node.id"), ("node.id", "broker.id")):
            if a in static and b not in static:  # KafkaConfig.populateSynonyms
                static[b] = static[a]
                origins[b] = f"{origins[a]} (as {a})"
        self._static, self._static_origin = static, origins
        self._dynamic, self._dynamic_default = dynamic, dynamic_default
        self._defaults: dict[str, object] = {
            n: list(d.default) if isinstance(d.default, list) else d.default
            for n, d in BROKER_DEFS.items()
        }
        self._defaults["log.dir"] = str(data_dir)
        self._default_strings = {
            n: s for n, v in self._defaults.items()
            if (s := render_value(BROKER_DEFS[n].type, v)) is not None
        }
        self._values: dict[str, object] = dict(self._defaults)
        self._prefixed: dict[str, object] = {}
        self._unknown: dict[str, str] = {}
        self.warnings = []
        merged = {**static, **dynamic_default, **dynamic}
        for key, raw in merged.items():
            origin = self.origin(key)
            defn = find_def(key)
            if defn is None:
                self._unknown[key] = raw
                self.warnings.append(unknown_key_warning(key, origin))
            elif key in BROKER_DEFS:
                self._values[key] = defn.parse(raw, origin)
            else:
                self._prefixed[key] = defn.parse(raw, origin)
        if self._values["process.roles"]:
            self.warnings.append(
                "process.roles is set but pykbroker runs with ZooKeeper-mode semantics; "
                "the KRaft settings are accepted and ignored"
            )
        self._check_ids()
        self._setup_listeners()
        self._check_values()

    def _log_warnings(self, warnings: list[str]) -> None:
        for text in warnings:
            log.warning("%s", text)

    def _fail(self, key: str, reason: str) -> ConfigError:
        value = self._raw_or_default(key)
        return ConfigError(key, value, reason, self.origin(key))

    def _raw_or_default(self, key: str) -> str | None:
        for layer in (self._dynamic, self._dynamic_default, self._static):
            if key in layer:
                return layer[key]
        return self._default_strings.get(key)

    def _check_ids(self) -> None:
        if self._values["broker.id"] != self._values["node.id"]:
            raise self._fail("node.id", "You must set `node.id` to the same value as "
                                        f"`broker.id` ({self._values['broker.id']}).")
        if _int(self._values["node.id"]) < 0:
            if self._values["zookeeper.connect"] and self._values["broker.id.generation.enable"]:
                return  # generated from ZooKeeper's /brokers/seqid at start-up, as Kafka does
            raise self._fail("node.id", "Value must be at least 0 (-1, a generated id, needs "
                                        "zookeeper.connect and broker.id.generation.enable)")

    def _setup_listeners(self) -> None:
        get = self.get
        try:
            setup = resolve_listeners(
                str(get("listeners") or ""),
                None if get("advertised.listeners") is None else str(get("advertised.listeners")),
                str(get("listener.security.protocol.map") or ""),
                _opt_str(get("controller.listener.names")),
                _opt_str(get("inter.broker.listener.name")),
                str(get("security.inter.broker.protocol")),
                self._is_set("security.inter.broker.protocol"),
            )
        except ListenerConfigError as exc:
            raise self._fail(exc.key, exc.reason) from None
        self._listeners, self._advertised = setup.listeners, setup.advertised
        self._protocol_map = setup.protocol_map
        self._inter_broker = setup.inter_broker_listener_name
        control = get("control.plane.listener.name")
        if control is not None and str(control).upper() not in {x.name for x in setup.listeners}:
            raise self._fail("control.plane.listener.name",
                             "control.plane.listener.name must be a listener name defined in "
                             "listeners.")

    def _check_values(self) -> None:
        if not self.log_dirs:
            raise self._fail("log.dirs", "At least one log directory must be defined via "
                                         "log.dirs or log.dir.")
        failed = first_failed_rule(self.get, self._protocol_map.get(self._inter_broker, ""))
        if failed is not None:
            key, reason = failed
            raise self._fail(self._effective_key(key), reason)

    def _effective_key(self, name: str) -> str:
        """Which key of ``name``'s fallback chain supplies its value (for error messages)."""
        for key, _ in RESOLVE_CHAINS.get(name, ((name, 1),)):
            if self._values.get(key) is not None:
                return key
        return name

    def _is_set(self, key: str) -> bool:
        return key in self._dynamic or key in self._dynamic_default or key in self._static

    # ------------------------------------------------------------------------------ reading

    def get(self, name: str) -> object:
        """Typed effective value; ms/minutes/hours-style fallbacks resolved as KafkaConfig does.

        ``get("log.retention.ms")`` is log.retention.ms, else minutes, else hours, in ms
        (negative means unlimited: -1). Unknown keys that were set come back as strings.
        """
        chain = RESOLVE_CHAINS.get(name)
        if chain is not None:
            for key, factor in chain:
                value = self._values.get(key)
                if value is not None:
                    if isinstance(value, int) and not isinstance(value, bool):
                        value *= factor
                        if name == "log.retention.ms" and value < 0:
                            value = -1
                    return value
            return None
        for mapping in (self._values, self._prefixed, self._unknown):
            if name in mapping:
                return mapping[name]
        raise KeyError(name)

    def value(self, name: str) -> object:
        """The typed value of exactly this key, without synonym fallback (None when unset)."""
        for mapping in (self._values, self._prefixed, self._unknown):
            if name in mapping:
                return mapping[name]
        raise KeyError(name)

    def source(self, name: str) -> ConfigSource:
        """The DescribeConfigs source of this key's own value."""
        if name in self._dynamic:
            return ConfigSource.DYNAMIC_BROKER_CONFIG
        if name in self._dynamic_default:
            return ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG
        if name in self._static:
            return ConfigSource.STATIC_BROKER_CONFIG
        return ConfigSource.DEFAULT_CONFIG

    def origin(self, name: str) -> str:
        """Where the value came from: "default", a file path, "env KAFKA_X", "override"..."""
        if name in self._dynamic:
            return "dynamic broker config"
        if name in self._dynamic_default:
            return "dynamic default broker config"
        return self._static_origin.get(name, "default")

    def origins(self) -> dict[str, str]:
        """``key -> origin`` for every key that was set (not defaulted)."""
        keys = {*self._static, *self._dynamic_default, *self._dynamic}
        return {k: self.origin(k) for k in sorted(keys)}

    def banner_lines(self) -> list[str]:
        """``key = value (origin)`` for every key that was set, secrets hidden, for logs."""
        lines = []
        for key, origin in self.origins().items():
            value = self.value(key)
            shown = Password.HIDDEN if isinstance(value, Password) else (
                render_value(None, value) if key not in self._unknown else value)
            lines.append(f"{key} = {shown} ({origin})")
        return lines

    def config_synonyms(self, name: str) -> list[ConfigSynonym]:
        """Kafka's ``ConfigHelper.configSynonyms``: dynamic, dynamic-default, static and
        default values of ``name``'s synonyms, from the first entry named ``name`` on."""
        defn = find_def(name)
        sensitive = defn is None or defn.sensitive
        names = broker_synonyms(name)
        out: list[ConfigSynonym] = []
        for layer, source in (
            (self._dynamic, ConfigSource.DYNAMIC_BROKER_CONFIG),
            (self._dynamic_default, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG),
            (self._static, ConfigSource.STATIC_BROKER_CONFIG),
            (self._default_strings, ConfigSource.DEFAULT_CONFIG),
        ):
            out.extend(ConfigSynonym(n, None if sensitive else layer[n], int(source))
                       for n in names if n in layer)
        while out and out[0].name != name:
            out.pop(0)
        return out

    # Typed accessors for what the broker reads most.
    node_id = _Setting[int]("node.id")
    broker_id = _Setting[int]("broker.id")
    broker_rack = _Setting[str | None]("broker.rack")
    num_partitions = _Setting[int]("num.partitions")
    default_replication_factor = _Setting[int]("default.replication.factor")
    auto_create_topics_enable = _Setting[bool]("auto.create.topics.enable")
    delete_topic_enable = _Setting[bool]("delete.topic.enable")
    socket_request_max_bytes = _Setting[int]("socket.request.max.bytes")
    socket_send_buffer_bytes = _Setting[int]("socket.send.buffer.bytes")
    socket_receive_buffer_bytes = _Setting[int]("socket.receive.buffer.bytes")
    connections_max_idle_ms = _Setting[int]("connections.max.idle.ms")
    max_connections = _Setting[int]("max.connections")
    max_connections_per_ip = _Setting[int]("max.connections.per.ip")
    queued_max_requests = _Setting[int]("queued.max.requests")
    queued_max_request_bytes = _Setting[int]("queued.max.request.bytes")
    message_max_bytes = _Setting[int]("message.max.bytes")
    fetch_max_bytes = _Setting[int]("fetch.max.bytes")
    metrics_port = _Setting[int]("metrics.port")
    log_page_cache_keep_bytes = _Setting[int]("log.page.cache.keep.bytes")
    compression_type = _Setting[str]("compression.type")
    min_insync_replicas = _Setting[int]("min.insync.replicas")
    unclean_leader_election_enable = _Setting[bool]("unclean.leader.election.enable")
    log_segment_bytes = _Setting[int]("log.segment.bytes")
    log_roll_ms = _Setting[int]("log.roll.ms")
    log_retention_ms = _Setting[int]("log.retention.ms")
    log_retention_bytes = _Setting[int]("log.retention.bytes")
    log_retention_check_interval_ms = _Setting[int]("log.retention.check.interval.ms")
    log_flush_interval_messages = _Setting[int]("log.flush.interval.messages")
    log_flush_interval_ms = _Setting[int]("log.flush.interval.ms")
    log_cleaner_enable = _Setting[bool]("log.cleaner.enable")
    log_message_timestamp_type = _Setting[str]("log.message.timestamp.type")
    offsets_topic_num_partitions = _Setting[int]("offsets.topic.num.partitions")
    offsets_topic_replication_factor = _Setting[int]("offsets.topic.replication.factor")
    offsets_topic_segment_bytes = _Setting[int]("offsets.topic.segment.bytes")
    offsets_commit_timeout_ms = _Setting[int]("offsets.commit.timeout.ms")
    offset_metadata_max_bytes = _Setting[int]("offset.metadata.max.bytes")
    transaction_state_log_num_partitions = _Setting[int]("transaction.state.log.num.partitions")
    transaction_state_log_replication_factor = _Setting[int](
        "transaction.state.log.replication.factor")
    transaction_state_log_min_isr = _Setting[int]("transaction.state.log.min.isr")
    transaction_max_timeout_ms = _Setting[int]("transaction.max.timeout.ms")
    transactional_id_expiration_ms = _Setting[int]("transactional.id.expiration.ms")
    producer_id_expiration_ms = _Setting[int]("producer.id.expiration.ms")
    group_initial_rebalance_delay_ms = _Setting[int]("group.initial.rebalance.delay.ms")
    group_min_session_timeout_ms = _Setting[int]("group.min.session.timeout.ms")
    group_max_session_timeout_ms = _Setting[int]("group.max.session.timeout.ms")
    group_max_size = _Setting[int]("group.max.size")
    group_consumer_session_timeout_ms = _Setting[int]("group.consumer.session.timeout.ms")
    group_consumer_heartbeat_interval_ms = _Setting[int]("group.consumer.heartbeat.interval.ms")
    group_consumer_assignors = _Setting[list[str]]("group.consumer.assignors")
    zookeeper_session_timeout_ms = _Setting[int]("zookeeper.session.timeout.ms")
    zookeeper_connection_timeout_ms = _Setting[int]("zookeeper.connection.timeout.ms")
    controlled_shutdown_enable = _Setting[bool]("controlled.shutdown.enable")
    replica_lag_time_max_ms = _Setting[int]("replica.lag.time.max.ms")
    replica_fetch_max_bytes = _Setting[int]("replica.fetch.max.bytes")
    replica_fetch_wait_max_ms = _Setting[int]("replica.fetch.wait.max.ms")
    num_replica_fetchers = _Setting[int]("num.replica.fetchers")
    sasl_enabled_mechanisms = _Setting[list[str]]("sasl.enabled.mechanisms")
    authorizer_class_name = _Setting[str]("authorizer.class.name")
    allow_everyone_if_no_acl_found = _Setting[bool]("allow.everyone.if.no.acl.found")

    @property
    def listeners(self) -> list[Listener]:
        return list(self._listeners)

    @property
    def advertised_listeners(self) -> list[Listener]:
        return list(self._advertised)

    @property
    def security_protocol_map(self) -> dict[str, str]:
        return dict(self._protocol_map)

    @property
    def inter_broker_listener_name(self) -> str:
        return self._inter_broker

    @property
    def log_dirs(self) -> list[Path]:
        text = str(self.get("log.dirs") or "")
        return [Path(p) for p in re.split(r"\s*,\s*", text.strip()) if p]

    @property
    def zookeeper_connect(self) -> str | None:
        value = self.get("zookeeper.connect")
        return str(value) if value else None

    @property
    def offsets_retention_ms(self) -> int:
        return _int(self.get("offsets.retention.minutes")) * MINUTE_MS

    @property
    def super_users(self) -> list[str]:
        """AclAuthorizer's ``super.users``: principals separated by semicolons."""
        return [p.strip() for p in str(self.get("super.users") or "").split(";") if p.strip()]

    def extra_keys(self) -> list[str]:
        """Keys that were set without a definition of their own: listener-prefixed, unknown."""
        return [*sorted(self._prefixed), *sorted(self._unknown)]

    def __repr__(self) -> str:
        return f"BrokerConfig(node_id={self.node_id}, listeners={self._listeners})"


# ----------------------------------------------------------------------------------- helpers


def _as_string(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Password):
        return value.value
    return render_value(None, value) or ""


def _int(value: object) -> int:
    assert isinstance(value, int), value
    return value


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)
