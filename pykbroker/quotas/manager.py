"""Client quotas as Kafka 3.9 (ZooKeeper mode) keeps and applies them.

Entities (KIP-55): a user, a client id, a user with a client id, and the defaults of each
(``<default>``, a null entity name in the API). Which quota applies to a request, most specific
first (``ClientQuotaManager``'s ``DefaultQuotaCallback``)::

    user + client-id, user + <default> client-id, user,
    <default> user + client-id, <default> user + <default> client-id, <default> user,
    client-id, <default> client-id

Clients sharing the entity that holds their quota share its rate: a quota set on ``user=alice``
limits all of alice's clients together. Every (user, client id) is measured by the sensor of
the entity level in use (Kafka's metric tags), so the rate history survives quota changes.

``producer_byte_rate`` counts Produce request bytes, ``consumer_byte_rate`` Fetch response
bytes, ``request_percentage`` the time spent handling a client's requests as a percentage of one
thread (KIP-124; requests brokers send each other are exempt). ``controller_mutation_rate`` and
``ip`` entities (``connection_creation_rate``) are refused by AlterClientQuotas: pykbroker does
not enforce them.

A single broker keeps the quotas in ``pykbroker-client-quotas.json`` in the first log directory
(written to a temporary file, fsynced and renamed), next to its other metadata; a ZooKeeper
cluster keeps them where Kafka does (``pykbroker.quotas.zk_store``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import trio

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.log.checkpoints import write_atomically
from pykbroker.quotas.files import FILE_NAME
from pykbroker.quotas.rate import QuotaSensor

USER: Final = "user"
CLIENT_ID: Final = "client-id"
IP: Final = "ip"
PRODUCER_BYTE_RATE: Final = "producer_byte_rate"
CONSUMER_BYTE_RATE: Final = "consumer_byte_rate"
REQUEST_PERCENTAGE: Final = "request_percentage"
CONTROLLER_MUTATION_RATE: Final = "controller_mutation_rate"
ENFORCED_KEYS: Final = (PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, REQUEST_PERCENTAGE)
UNENFORCED_KEYS: Final = (CONTROLLER_MUTATION_RATE,)
# Requests brokers send each other (ClusterAction): never throttled by request quotas.
EXEMPT_API_KEYS: Final = frozenset({4, 5, 6, 7, 27, 56})
FORMAT_VERSION = 1
INACTIVE_SENSOR_EXPIRY_MS = 3600 * 1000  # ClientQuotaManager.InactiveSensorExpirationTimeSeconds
_SWEEP_INTERVAL_MS = 60_000

# DescribeClientQuotasRequest match types
MATCH_EXACT: Final = 0
MATCH_DEFAULT: Final = 1
MATCH_SPECIFIED: Final = 2


class _Default:
    """The ``<default>`` entity (a null entity name in the API)."""

    _instance: _Default | None = None

    def __new__(cls) -> _Default:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<default>"


DEFAULT: Final = _Default()
Name = str | _Default | None  # None: the entity has no such component
Entity = tuple[Name, Name]  # (user, client-id)

# Kafka's QuotaTypes bits: which entity levels were ever configured (until restart)
_CLIENT_ID_QUOTAS = 1
_USER_QUOTAS = 2
_USER_CLIENT_ID_QUOTAS = 4


class ClientQuotaManager:
    """One quota type (produce or fetch): the configured quotas and the sensors measuring
    clients against them (kafka.server.ClientQuotaManager with its DefaultQuotaCallback)."""

    def __init__(self, key: str, samples: int = 11, window_s: int = 1) -> None:
        self.key = key
        self.samples = samples
        self.window_ms = window_s * 1000
        self.overrides: dict[Entity, float] = {}
        self.types = 0
        self.sensors: dict[tuple[str, str], QuotaSensor] = {}  # by metric tags (user, client)
        self._resolved: dict[tuple[str, str], QuotaSensor] = {}  # (user, client id) -> sensor
        self._last_sweep_ms: int | None = None

    @property
    def enabled(self) -> bool:
        """ClientQuotaManager.quotasEnabled: once any quota of this type was set, requests are
        measured until the broker restarts, even if every quota was removed since."""
        return self.types != 0

    def update(self, entity: Entity, value: float | None) -> None:
        """updateQuota: set (``value``) or remove (None) the quota of ``entity``."""
        user, client = entity
        if user is not None:
            self.types |= _USER_CLIENT_ID_QUOTAS if client is not None else _USER_QUOTAS
        elif client is not None:
            self.types |= _CLIENT_ID_QUOTAS
        if value is None:
            self.overrides.pop(entity, None)
        else:
            self.overrides[entity] = float(value)
        self._resolved.clear()  # the metric tags of a (user, client id) may have changed
        for tags, sensor in self.sensors.items():
            sensor.bound = self._bound(tags)

    def metric_tags(self, user: str, client: str) -> tuple[str, str]:
        """DefaultQuotaCallback.quotaMetricTags: the (user, client id) tags of the sensor that
        measures this client; "" stands for a component the quota's entity does not have."""
        types = self.types
        if types in (0, _CLIENT_ID_QUOTAS):
            return "", client
        if types == _USER_QUOTAS:
            return user, ""
        if types == _USER_CLIENT_ID_QUOTAS:
            return user, client
        q = self.overrides
        if (user, client) in q or (user, DEFAULT) in q:
            return user, client
        if (user, None) in q:
            return user, ""
        if (DEFAULT, client) in q or (DEFAULT, DEFAULT) in q:
            return user, client
        if (DEFAULT, None) in q:
            return user, ""
        return "", client

    def quota_limit(self, tags: tuple[str, str]) -> float | None:
        """DefaultQuotaCallback.quotaLimit: the quota of the sensor with these tags, None when
        no entity gives one (the client is measured but never throttled)."""
        user, client = tags
        q = self.overrides
        candidates: tuple[Entity, ...]
        if user and client:
            candidates = ((user, client), (user, DEFAULT), (DEFAULT, client), (DEFAULT, DEFAULT))
        elif user:
            candidates = ((user, None), (DEFAULT, None))
        elif client:
            candidates = ((None, client), (None, DEFAULT))
        else:
            return None
        for entity in candidates:
            if entity in q:
                return q[entity]
        return None

    def quota(self, user: str, client: str) -> float | None:
        """The quota that applies to ``user`` (a principal's name) with ``client``."""
        return self.quota_limit(self.metric_tags(user, client))

    def _bound(self, tags: tuple[str, str]) -> float:
        limit = self.quota_limit(tags)
        return math.inf if limit is None else limit

    def sensor(self, user: str, client: str, now_ms: int) -> QuotaSensor:
        key = (user, client)
        sensor = self._resolved.get(key)
        if sensor is not None:
            return sensor
        self._sweep(now_ms)
        tags = self.metric_tags(user, client)
        sensor = self.sensors.get(tags)
        if sensor is None:
            sensor = self.sensors[tags] = QuotaSensor(self.samples, self.window_ms,
                                                      self._bound(tags))
        self._resolved[key] = sensor
        return sensor

    def _sweep(self, now_ms: int) -> None:
        """Sensors idle for an hour go (Kafka's sensor expiry), at most once a minute."""
        if self._last_sweep_ms is not None and now_ms - self._last_sweep_ms < _SWEEP_INTERVAL_MS:
            return
        self._last_sweep_ms = now_ms
        idle = [tags for tags, s in self.sensors.items()
                if s.rate.last_record_ms and now_ms - s.rate.last_record_ms >= INACTIVE_SENSOR_EXPIRY_MS]
        if idle:
            for tags in idle:
                del self.sensors[tags]
            self._resolved.clear()

    def record(self, user: str, client: str, value: float, now_ms: int) -> int:
        """recordAndGetThrottleTimeMs: count ``value`` and answer the throttle time (ms)."""
        return self.sensor(user, client, now_ms).record(value, now_ms)

    def unrecord(self, user: str, client: str, value: float, now_ms: int) -> None:
        """unrecordQuotaSensor: a throttled fetch sends no data, so its bytes do not count."""
        self.sensor(user, client, now_ms).record(-value, now_ms, check=False)

    def max_value_in_window(self, user: str, client: str) -> float:
        """getMaxValueInQuotaWindow: the most a single fetch may return without being
        throttled for sure, quota * (samples - 1) * window."""
        limit = self.quota_limit(self.metric_tags(user, client))
        if limit is None:
            return math.inf
        return limit * (self.samples - 1) * (self.window_ms / 1000)


@dataclass(frozen=True, slots=True)
class Alteration:
    """One AlterClientQuotas entry: entity components as sent, and (key, value|None) ops."""

    components: list[tuple[str, str | None]]
    ops: list[tuple[str, float | None]]


def user_name(principal: str) -> str:
    """The name a user quota is set for: ``User:alice`` -> ``alice``."""
    _, sep, name = principal.partition(":")
    return name if sep else principal


def _entity_of(components: Iterable[tuple[str, str | None]]) -> Entity:
    """ZkAdminManager.parseAndSanitizeQuotaEntity, for the entities pykbroker supports."""
    parts: dict[str, str | None] = {}
    for entity_type, name in components:
        if entity_type not in (USER, CLIENT_ID, IP):
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             f"Unhandled client quota entity type: {entity_type}")
        if name is not None and not name:
            raise KafkaError(ErrorCode.INVALID_REQUEST, f"Empty {entity_type} not supported")
        parts[entity_type] = name
    if not parts:
        raise KafkaError(ErrorCode.INVALID_REQUEST, "Invalid empty client quota entity")
    if IP in parts:
        if len(parts) > 1:
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             "Invalid quota entity combination, IP entity should not be used "
                             "with user/client ID entity.")
        raise KafkaError(ErrorCode.INVALID_REQUEST,
                         "pykbroker does not support ip quotas (connection_creation_rate); "
                         "only user and client-id quotas are enforced")

    def part(entity_type: str) -> Name:
        if entity_type not in parts:
            return None
        value = parts[entity_type]
        return DEFAULT if value is None else value

    return part(USER), part(CLIENT_ID)


def _components(entity: Entity) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for entity_type, value in zip((USER, CLIENT_ID), entity, strict=True):
        if value is not None:
            out.append((entity_type, None if value is DEFAULT else str(value)))
    return out


def _validated_value(key: str, value: float) -> float:
    """ZkAdminManager.alterClientQuotas: the LONG byte rates must be whole numbers."""
    if key in UNENFORCED_KEYS:
        raise KafkaError(ErrorCode.INVALID_REQUEST,
                         f"pykbroker does not enforce {key} quotas; only producer_byte_rate, "
                         "consumer_byte_rate and request_percentage are supported")
    if key not in ENFORCED_KEYS:
        raise KafkaError(ErrorCode.INVALID_REQUEST, f"Invalid configuration key {key}")
    if key == REQUEST_PERCENTAGE:  # a DOUBLE
        if not math.isfinite(value):
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             f"Configuration {key} must be a DOUBLE value")
        return float(value)
    if not math.isfinite(value):
        raise KafkaError(ErrorCode.INVALID_REQUEST, f"Configuration {key} must be a LONG value")
    epsilon = 1e-6
    whole = math.trunc(value + epsilon)
    if abs(whole - value) > epsilon or not -2**63 <= whole < 2**63:
        raise KafkaError(ErrorCode.INVALID_REQUEST, f"Configuration {key} must be a LONG value")
    return float(whole)


def parse_alteration(alteration: Alteration) -> tuple[Entity, list[tuple[str, float | None]]]:
    """An AlterClientQuotas entry's entity and validated ops (KafkaError when invalid)."""
    entity = _entity_of(alteration.components)
    return entity, [(key, None if value is None else _validated_value(key, value))
                    for key, value in alteration.ops]


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


def produce_request_size(client_id: str | None, req: Any) -> int:
    """Kafka counts a Produce request's size (RequestChannel.Request.sizeInBytes): header and
    body as the non-flexible versions lay them out (a flexible one is a few bytes shorter)."""
    size = 10 + len(client_id or "") + 12 + len(req.transactional_id or "")
    for topic in req.topic_data:
        size += 6 + len(topic.name)
        for part in topic.partition_data:
            size += 8 + (len(part.records) if part.records is not None else 0)
    return size


def fetch_response_size(topics: int, partitions: int, record_bytes: int) -> int:
    """FetchContext.getResponseSize, estimated: the header, each topic (id or name) and each
    partition's fixed fields, and the records."""
    return 22 + 22 * topics + 50 * partitions + record_bytes


class ClientQuotas:
    """The broker's client quotas: what AlterClientQuotas set (and DescribeClientQuotas
    shows), the produce and fetch quota managers applying them, and their file."""

    def __init__(self, directory: Path | None, samples: int = 11, window_s: int = 1) -> None:
        """``directory`` None keeps the quotas in memory only (tests)."""
        self.path = None if directory is None else Path(directory) / FILE_NAME
        self.produce = ClientQuotaManager(PRODUCER_BYTE_RATE, samples, window_s)
        self.fetch = ClientQuotaManager(CONSUMER_BYTE_RATE, samples, window_s)
        self.request = ClientQuotaManager(REQUEST_PERCENTAGE, samples, window_s)
        self.entries: dict[Entity, dict[str, float]] = {}
        self.muted: dict[int, float] = {}  # connection id -> trio time its mute ends
        if self.path is not None and self.path.exists():
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("version") != FORMAT_VERSION:
                raise RuntimeError(f"{self.path}: unsupported version {data.get('version')}")
            for item in data.get("entities", []):
                entity = _entity_of((str(t), None if n is None else str(n))
                                    for t, n in item["entity"].items())
                for key, value in item["quotas"].items():
                    self._apply(entity, str(key), float(value))

    @classmethod
    def for_broker(cls, services: Any) -> ClientQuotas:
        """A single broker's quotas live in its first log directory; a cluster member's in
        ZooKeeper (``pykbroker.quotas.zk_store``), so it keeps no file."""
        cfg = services.config
        directory = None if getattr(services, "cluster", None) is not None \
            else Path(services.log_dirs[0])
        return cls(directory, int(str(cfg.get("quota.window.num"))),
                   int(str(cfg.get("quota.window.size.seconds"))))

    def manager(self, key: str) -> ClientQuotaManager | None:
        return self.produce if key == PRODUCER_BYTE_RATE else \
            self.fetch if key == CONSUMER_BYTE_RATE else \
            self.request if key == REQUEST_PERCENTAGE else None

    def _apply(self, entity: Entity, key: str, value: float | None) -> None:
        values = self.entries.setdefault(entity, {})
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
        if not values:
            del self.entries[entity]
        manager = self.manager(key)
        if manager is not None:
            manager.update(entity, value)

    def alter(self, alterations: list[Alteration], validate_only: bool
              ) -> list[tuple[ErrorCode, str | None]]:
        """Each entry is validated as a whole and applied unless ``validate_only``; the file
        is written once at the end. Returns (error, message) per entry."""
        results: list[tuple[ErrorCode, str | None]] = []
        changed = False
        for alteration in alterations:
            try:
                entity, ops = parse_alteration(alteration)
            except KafkaError as exc:
                results.append((exc.error_code, exc.message))
                continue
            if not validate_only:
                for key, value in ops:
                    self._apply(entity, key, value)
                changed = True
            results.append((ErrorCode.NONE, None))
        if changed:
            self._save()
        return results

    def describe(self, components: list[tuple[str, int, str | None]], strict: bool
                 ) -> list[tuple[list[tuple[str, str | None]], dict[str, float]]]:
        """ZkAdminManager.describeClientQuotas: the entities matching every component (exact
        name, default, or any), and with ``strict`` only entities with no other component."""
        seen: dict[str, tuple[int, str | None]] = {}
        for entity_type, match_type, match in components:
            if entity_type == "":
                raise KafkaError(ErrorCode.INVALID_REQUEST,
                                 "Unexpected empty filter component entity type")
            if entity_type not in (USER, CLIENT_ID, IP):
                raise KafkaError(ErrorCode.UNSUPPORTED_VERSION,
                                 f"Custom entity type '{entity_type}' not supported")
            if entity_type in seen:
                what = "client" if entity_type == CLIENT_ID else entity_type
                raise KafkaError(ErrorCode.INVALID_REQUEST,
                                 f"Duplicate {what} filter component entity type")
            if match_type not in (MATCH_EXACT, MATCH_DEFAULT, MATCH_SPECIFIED):
                raise KafkaError(ErrorCode.INVALID_REQUEST,
                                 f"Unexpected match type: {match_type}")
            if match_type == MATCH_EXACT and match is None:
                raise KafkaError(ErrorCode.INVALID_REQUEST,
                                 f"An exact {entity_type} filter component needs a name")
            seen[entity_type] = (match_type, match)
        if IP in seen and (USER in seen or CLIENT_ID in seen):
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             "Invalid entity filter component combination, IP filter component "
                             "should not be used with user or clientId filter component.")
        if IP in seen:
            return []  # no ip quotas here

        def matches(entity_type: str, name: Name) -> bool:
            component = seen.get(entity_type)
            if component is None:
                return name is None or not strict
            match_type, match = component
            if match_type == MATCH_SPECIFIED:
                return name is not None
            if match_type == MATCH_DEFAULT:
                return name is DEFAULT
            return isinstance(name, str) and name == match

        out = []
        for entity, values in self.entries.items():
            if values and matches(USER, entity[0]) and matches(CLIENT_ID, entity[1]):
                out.append((_components(entity), dict(values)))
        return out

    # -- enforcement (the Produce and Fetch handlers) --

    async def unmuted(self, connection_id: int) -> None:
        """KIP-219: a client over its quota got its response at once with throttle_time_ms,
        and its channel is muted for that long: the connection waits here before it reads its
        next request (server/connection.py), whatever the API."""
        until = self.muted.pop(connection_id, None)
        if until is not None:
            delay = until - trio.current_time()
            if delay > 0:
                await trio.sleep(delay)

    def mute(self, connection_id: int, throttle_ms: int) -> None:
        if throttle_ms <= 0:
            return
        now = trio.current_time()
        if len(self.muted) >= 1024:  # connections closed while muted
            self.muted = {c: t for c, t in self.muted.items() if t > now}
        self.muted[connection_id] = now + throttle_ms / 1000.0

    def on_produce(self, principal: str, client_id: str | None, connection_id: int,
                   size: int) -> int:
        """Record a Produce request of ``size`` bytes; its throttle time (ms), the connection
        muted for that long."""
        if not self.produce.enabled:
            return 0
        throttle = self.produce.record(user_name(principal), client_id or "", size, _now_ms())
        self.mute(connection_id, throttle)
        return throttle

    def fetch_max_bytes(self, principal: str, client_id: str | None) -> float:
        """KafkaApis caps a consumer's fetch at getMaxValueInQuotaWindow: more would be
        throttled even after a quiet window."""
        if not self.fetch.enabled:
            return math.inf
        return self.fetch.max_value_in_window(user_name(principal), client_id or "")

    def on_fetch(self, principal: str, client_id: str | None, connection_id: int,
                 size: int) -> int:
        """Record a Fetch response of ``size`` bytes. When throttled (the answer, in ms) the
        bytes are unrecorded: the response goes out empty, as Kafka's does."""
        if not self.fetch.enabled:
            return 0
        user, client, now = user_name(principal), client_id or "", _now_ms()
        throttle = self.fetch.record(user, client, size, now)
        if throttle > 0:
            self.fetch.unrecord(user, client, size, now)
            self.mute(connection_id, throttle)
        return throttle

    def on_request(self, principal: str, client_id: str | None, connection_id: int,
                   seconds: float) -> int:
        """KIP-124: record the time a request took to handle as a percentage of one thread
        (ClientRequestQuotaManager's nanosToPercentage); its throttle time (ms), the
        connection muted for that long."""
        if not self.request.enabled:
            return 0
        throttle = self.request.record(user_name(principal), client_id or "", seconds * 100.0,
                                       _now_ms())
        self.mute(connection_id, throttle)
        return throttle

    def _save(self) -> None:
        if self.path is None:
            return
        entities = [{"entity": dict(_components(entity)), "quotas": dict(sorted(values.items()))}
                    for entity, values in self.entries.items()]
        data = {"version": FORMAT_VERSION, "entities": entities}
        write_atomically(self.path, json.dumps(data, indent=1))
