"""Client quotas (KIP-13, KIP-55, KIP-219, KIP-546), loaded on first use.

A broker whose first log directory holds no ``pykbroker-client-quotas.json`` has no quotas:
``services.client_quotas`` is None and Produce and Fetch record nothing (one attribute read per
request). The quota code itself (``pykbroker.quotas.manager``, ``.rate``) is imported only when
the file exists or AlterClientQuotas / DescribeClientQuotas arrive.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from pykbroker.quotas.files import FILE_NAME

if TYPE_CHECKING:
    from pykbroker.quotas.manager import ClientQuotas

__all__ = ["FILE_NAME", "client_quotas_for_update", "load_client_quotas",
           "load_cluster_quotas", "reload_cluster_quota"]


def load_client_quotas(services: Any) -> ClientQuotas | None:
    """Set and return ``services.client_quotas``: the quotas kept in the first log directory,
    or None when none were ever set there."""
    quotas = None
    if os.path.exists(os.path.join(services.log_dirs[0], FILE_NAME)):
        from pykbroker.quotas.manager import ClientQuotas

        quotas = ClientQuotas.for_broker(services)
    services.client_quotas = quotas
    return quotas


def client_quotas_for_update(services: Any) -> ClientQuotas:
    """The broker's quotas, created (empty) if it had none: for AlterClientQuotas."""
    quotas: ClientQuotas | None
    try:
        quotas = services.client_quotas
    except AttributeError:
        quotas = load_client_quotas(services)
    if quotas is None:
        from pykbroker.quotas.manager import ClientQuotas

        quotas = ClientQuotas.for_broker(services)
        services.client_quotas = quotas
    return quotas


async def load_cluster_quotas(services: Any, zk: Any) -> None:
    """A cluster member's quotas, read from ZooKeeper before it serves clients (None when no
    entity has one: the quota code stays unloaded until one is set)."""
    kafka = zk.kafka
    if not any([await kafka.get_all_entities_with_config("users"),
                await kafka.get_all_entities_with_config("clients")]):
        services.client_quotas = None
        return
    from pykbroker.quotas.manager import ClientQuotas
    from pykbroker.quotas.zk_store import read_all, replace_entity

    found = await read_all(zk)
    if not found:
        services.client_quotas = None
        return
    quotas = ClientQuotas.for_broker(services)
    for entity, values in found.items():
        replace_entity(quotas, entity, values)
    services.client_quotas = quotas


async def reload_cluster_quota(services: Any, zk: Any, kind: str, name: str) -> None:
    """Re-read one entity's quotas after a ``/config/changes`` notification."""
    from pykbroker.quotas.zk_store import entity_of, read_entity, replace_entity

    entity = entity_of(kind, name)
    if entity is None:
        return
    values = await read_entity(zk, entity)
    if values or getattr(services, "client_quotas", None) is not None:
        replace_entity(client_quotas_for_update(services), entity, values)
