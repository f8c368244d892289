"""Client quotas in ZooKeeper, where a Kafka 3.9 ZooKeeper-mode cluster keeps them, so that
every broker enforces the same quotas (AdminZkClient.changeClientIdConfig /
changeUserOrUserClientIdConfig, ZkConfigManager's ClientIdConfigHandler and UserConfigHandler).

An entity's quotas are its config keys: ``/config/users/<user>``,
``/config/users/<user>/clients/<client-id>`` and ``/config/clients/<client-id>`` (names
sanitized as Kafka's Sanitizer does, ``<default>`` for a default), e.g.
``{"version":1,"config":{"producer_byte_rate":"1048576"}}``; a user's config also holds its
SCRAM credentials, which are left alone here. Each change is announced in ``/config/changes``
(``users/alice/clients/app``) and every broker re-reads that entity.
"""

from __future__ import annotations

from typing import Any

from pykbroker.metadata.zk.configs import DEFAULT_ENTITY, desanitize, sanitize
from pykbroker.quotas.manager import (
    CONSUMER_BYTE_RATE,
    DEFAULT,
    PRODUCER_BYTE_RATE,
    REQUEST_PERCENTAGE,
    ClientQuotas,
    Entity,
    Name,
)

QUOTA_KEYS = (PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, REQUEST_PERCENTAGE)
_CLIENTS = "/clients/"


def _znode_name(name: Name) -> str:
    return DEFAULT_ENTITY if name is DEFAULT else sanitize(str(name))


def _entity_name(znode_name: str) -> Name:
    return DEFAULT if znode_name == DEFAULT_ENTITY else desanitize(znode_name)


def entity_path(entity: Entity) -> tuple[str, str]:
    """(config kind, entity name) of an entity: ``("users", "alice/clients/app")``."""
    user, client = entity
    if user is not None and client is not None:
        return "users", f"{_znode_name(user)}{_CLIENTS}{_znode_name(client)}"
    if user is not None:
        return "users", _znode_name(user)
    return "clients", _znode_name(client)


def entity_of(kind: str, name: str) -> Entity | None:
    """The entity a ``/config/changes`` notification names (None: not a quota entity)."""
    if kind == "clients":
        return None, _entity_name(name)
    if kind != "users":
        return None
    user, sep, client = name.partition(_CLIENTS)
    return (_entity_name(user), _entity_name(client)) if sep else (_entity_name(user), None)


def quota_values(config: dict[str, str]) -> dict[str, float]:
    out = {}
    for key in QUOTA_KEYS:
        if key in config:
            try:
                out[key] = float(config[key])
            except ValueError:
                continue  # Kafka would refuse to start on it; one bad value skips one quota
    return out


def _config_value(value: float) -> str:
    """Kafka writes the LONG byte rates as whole numbers."""
    return str(int(value)) if value.is_integer() else repr(value)


async def read_entity(zk: Any, entity: Entity) -> dict[str, float]:
    return quota_values(await zk.get_entity_config(*entity_path(entity)))


async def read_all(zk: Any) -> dict[Entity, dict[str, float]]:
    """Every entity with a quota, for a broker starting."""
    out: dict[Entity, dict[str, float]] = {}
    for user in await zk.kafka.get_all_entities_with_config("users"):
        entities: list[Entity] = [(_entity_name(user), None)]
        for client in await zk.kafka.get_all_entities_with_config(f"users/{user}/clients"):
            entities.append((_entity_name(user), _entity_name(client)))
        for entity in entities:
            values = await read_entity(zk, entity)
            if values:
                out[entity] = values
    for client in await zk.kafka.get_all_entities_with_config("clients"):
        values = await read_entity(zk, (None, _entity_name(client)))
        if values:
            out[(None, _entity_name(client))] = values
    return out


async def write_entity(zk: Any, entity: Entity, ops: list[tuple[str, float | None]]
                       ) -> dict[str, float]:
    """Apply ``ops`` to the entity's config (other keys kept), write and announce it; the
    entity's quotas afterwards."""
    kind, name = entity_path(entity)
    config = await zk.get_entity_config(kind, name)
    for key, value in ops:
        if value is None:
            config.pop(key, None)
        else:
            config[key] = _config_value(value)
    await zk.change_entity_config(kind, name, config)
    return quota_values(config)


def replace_entity(quotas: ClientQuotas, entity: Entity, values: dict[str, float]) -> None:
    """Make ``quotas`` hold exactly ``values`` for the entity (as read from ZooKeeper)."""
    current = quotas.entries.get(entity, {})
    for key in sorted(set(current) | set(values)):
        if current.get(key) != values.get(key):
            quotas._apply(entity, key, values.get(key))
