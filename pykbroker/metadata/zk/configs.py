"""``/config/<type>/<name>`` overrides and the ``/config/changes`` notifications that announce them.

Dynamic configs (``kafka-configs --alter``, CreateTopics configs, AlterConfigs) are written to
the entity's znode, then a persistent sequential ``config_change_`` znode tells every broker
which entity to re-read (``AdminZkClient.changeEntityConfig``, ``ZkConfigManager``). Entity
names in paths are already sanitised: topics and broker ids as they are, ``<default>`` for
the cluster-wide default, users and client ids URL-encoded by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote, unquote_plus

from pykbroker.metadata.zk.codec import JsonObject, ZNodeDecodeError, dump_json, parse_java_int

__all__ = [
    "CHANGES_PATH",
    "CHANGE_PREFIX",
    "CONFIG_PATH",
    "DEFAULT_ENTITY",
    "ENTITY_TYPES",
    "ConfigChangeNotification",
    "EntityConfig",
    "desanitize",
    "sanitize",
]

CONFIG_PATH: Final = "/config"
CHANGES_PATH: Final = "/config/changes"
CHANGE_PREFIX: Final = "config_change_"
# ZooKeeperInternals.DEFAULT_STRING: /config/brokers/<default> holds cluster-wide defaults.
DEFAULT_ENTITY: Final = "<default>"
# ConfigType.ALL: each has a persistent /config/<type> created at broker start-up.
ENTITY_TYPES: Final = ("topics", "clients", "users", "brokers", "ips")


def sanitize(name: str) -> str:
    """Kafka's ``Sanitizer.sanitize``: a user or client id as a znode name (Java's URLEncoder,
    with ``*`` as ``%2A`` and a space as ``%20``)."""
    return quote(name, safe="-_.").replace("~", "%7E")


def desanitize(name: str) -> str:
    """Kafka's ``Sanitizer.desanitize`` (URLDecoder)."""
    return unquote_plus(name)


@dataclass(frozen=True)
class EntityConfig:
    """``{"version":1,"config":{"retention.ms":"1000"}}``; every value is a string.

    Like ``ConfigEntityZNode.decode``, empty data, a non-object or a missing ``config`` read as
    no overrides; a non-string value is an error.
    """

    config: Mapping[str, str] = field(default_factory=dict)

    @staticmethod
    def path(entity_type: str, entity_name: str) -> str:
        return f"{CONFIG_PATH}/{entity_type}/{entity_name}"

    def to_json(self) -> bytes:
        return dump_json([("version", 1), ("config", dict(self.config))])

    @classmethod
    def from_json(cls, data: bytes) -> EntityConfig:
        if not data:
            return cls({})
        obj = JsonObject.parse(data, "entity config znode")
        if not isinstance(obj.values.get("config"), dict):
            return cls({})
        config = obj.get_object("config")
        return cls({key: config.get_str(key) for key, _ in config.items()})


@dataclass(frozen=True)
class ConfigChangeNotification:
    """Version 2: ``{"version":2,"entity_path":"topics/orders"}`` (type, ``/``, sanitised name).

    Reading also accepts version 1, ``{"version":1,"entity_type":"topics","entity_name":"x"}``,
    which Kafka still processes for topics and clients.
    """

    entity_type: str
    entity_name: str

    @staticmethod
    def create_path() -> str:
        """The prefix to create with ``sequence=True``; ZooKeeper appends ``%010d``."""
        return f"{CHANGES_PATH}/{CHANGE_PREFIX}"

    @staticmethod
    def sequence_number(node_name: str) -> int:
        """The number ZooKeeper appended to ``config_change_NNNNNNNNNN``."""
        if not node_name.startswith(CHANGE_PREFIX):
            raise ZNodeDecodeError(f"{node_name!r} is not a config change notification")
        return parse_java_int(node_name[len(CHANGE_PREFIX) :], "config change sequence number")

    @property
    def entity_path(self) -> str:
        return f"{self.entity_type}/{self.entity_name}"

    def to_json(self) -> bytes:
        return dump_json([("version", 2), ("entity_path", self.entity_path)])

    @classmethod
    def from_json(cls, data: bytes) -> ConfigChangeNotification:
        obj = JsonObject.parse(data, "config change notification")
        version = obj.get_int("version")
        if version == 1:
            entity_type = obj.opt_str("entity_type")
            entity_name = obj.opt_str("entity_name")
            if entity_type not in ("topics", "clients") or entity_name is None:
                raise obj.error("version 1 needs entity_type topics or clients, and entity_name")
            return cls(entity_type, entity_name)
        if version != 2:
            raise obj.error(f"unsupported version {version}, supported versions are 1 and 2")
        entity_path = obj.opt_str("entity_path")
        if entity_path is None:
            raise obj.error("version 2 must specify 'entity_path'")
        entity_type, slash, entity_name = entity_path.partition("/")
        if not slash or entity_type not in ENTITY_TYPES:
            raise obj.error(f"'entity_path' must start with one of {'/, '.join(ENTITY_TYPES)}/")
        return cls(entity_type, entity_name)
