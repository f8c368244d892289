"""Request handlers, one module per API family, each exporting ``HANDLERS``."""

from __future__ import annotations

from pykbroker.server.dispatch import HandlerSpec


def all_handlers(cluster: bool = False) -> list[HandlerSpec]:
    """Every handler this broker serves; the dispatch table (and ApiVersions) come from it.
    A member of a ZooKeeper cluster also serves the controller's requests."""
    from pykbroker.handlers import (
        api_versions,
        configs,
        consumer_groups,
        fetch,
        groups,
        list_offsets,
        metadata,
        produce,
        producer_id,
        replica_info,
        security_apis,
        topics,
        transactions,
        txn_offset_commit,
    )

    modules = [api_versions, metadata, produce, fetch, list_offsets, topics, configs,
               replica_info, producer_id, groups, consumer_groups, transactions,
               txn_offset_commit, security_apis]
    if cluster:
        from pykbroker.handlers import controller_requests

        modules.append(controller_requests)
    return [spec for module in modules for spec in module.HANDLERS]
