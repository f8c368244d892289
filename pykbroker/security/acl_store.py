"""ACLs kept with the broker's metadata: one file in the first log directory.

``pykbroker-acls.json`` holds, per resource pattern, the entries in the JSON Kafka keeps in a
``/kafka-acl/<ResourceType>/<name>`` znode (``{"version":1,"acls":[{"principal":"User:alice",
"permissionType":"Allow","operation":"Read","host":"*"}]}``); prefixed patterns are Kafka's
``/kafka-acl-extended/prefixed`` ones. Every change is written to a temporary file, fsynced
and renamed over the old one, so a crash leaves either the old or the new ACLs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pykbroker.config.broker_config import BrokerConfig
from pykbroker.log.checkpoints import write_atomically
from pykbroker.security.acl_codes import (
    RESOURCE_TYPE_NAMES,
    PatternType,
)
from pykbroker.security.acls import (
    AclAuthorizer,
    AclBinding,
    AclBindingFilter,
    AclCache,
    ResourcePattern,
    entry_from_json,
    entry_to_json,
    parse_super_users,
)

if TYPE_CHECKING:
    from pykbroker.metadata.zk.client import ZkClient
    from pykbroker.security.zk_acl_store import ZkAclStore

FILE_NAME = "pykbroker-acls.json"
FORMAT_VERSION = 1
ACL_AUTHORIZER = "kafka.security.authorizer.AclAuthorizer"

_TYPES = {v: k for k, v in RESOURCE_TYPE_NAMES.items()}


class FileAclStore:
    """Loads the file into an AclCache and writes the cache back after each change."""

    def __init__(self, directory: Path | None, cache: AclCache) -> None:
        self.path = None if directory is None else Path(directory) / FILE_NAME
        self.cache = cache
        if self.path is not None and self.path.exists():
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("version") != FORMAT_VERSION:
                raise RuntimeError(f"{self.path}: unsupported version {data.get('version')}")
            for r in data.get("resources", []):
                pattern = ResourcePattern(_TYPES[str(r["resourceType"])], str(r["name"]),
                                          PatternType[str(r["patternType"])])
                cache.set_resource(pattern, (entry_from_json(e) for e in r["acls"]))

    def save(self) -> None:
        if self.path is None:
            return
        resources = [{"resourceType": RESOURCE_TYPE_NAMES[p.resource_type],
                      "patternType": p.pattern_type.name, "name": p.name,
                      "version": 1, "acls": [entry_to_json(e) for e in sorted(entries)]}
                     for p, entries in sorted(self.cache.acls.items())]
        data = {"version": FORMAT_VERSION, "resources": resources}
        write_atomically(self.path, json.dumps(data, indent=1))


class StoredAclAuthorizer(AclAuthorizer):
    """The authorizer the broker runs: decisions from AclAuthorizer, changes persisted."""

    def __init__(self, directory: Path | None, super_users: frozenset[str],
                 allow_everyone_if_no_acl_found: bool) -> None:
        cache = AclCache()
        self.store = FileAclStore(directory, cache)
        self.zk_store: ZkAclStore | None = None
        super().__init__(super_users, allow_everyone_if_no_acl_found, cache)

    def create(self, bindings: Sequence[AclBinding]) -> list[str | None]:
        out = super().create(bindings)
        if any(r is None for r in out):
            self.store.save()
        return out

    def delete(self, filters: Sequence[AclBindingFilter]) -> list[list[AclBinding]]:
        out = super().delete(filters)
        if any(out):
            self.store.save()
        return out

    async def use_zookeeper(self, zk: ZkClient) -> ZkAclStore:
        """Keep the ACLs in ZooKeeper from now on (a cluster member): load them all before
        the broker serves clients; the caller runs the returned store's ``run`` (change
        notifications from the other brokers)."""
        from pykbroker.security.zk_acl_store import ZkAclStore

        self.cache.acls.clear()
        store = ZkAclStore(zk, self.cache)
        await store.load()
        self.zk_store = store
        return store

    async def create_acls(self, bindings: Sequence[AclBinding]) -> list[str | None]:
        if self.zk_store is not None:
            return await self.zk_store.create(bindings)
        return self.create(bindings)

    async def delete_acls(self, filters: Sequence[AclBindingFilter]) -> list[list[AclBinding]]:
        if self.zk_store is not None:
            return await self.zk_store.delete(filters)
        return self.delete(filters)


def authorizer_from_config(config: BrokerConfig, directory: Path | None
                           ) -> StoredAclAuthorizer | None:
    """The configured authorizer, or None when ``authorizer.class.name`` is empty (the
    class name itself is checked by pykbroker.config.security)."""
    if not str(config.get("authorizer.class.name") or ""):
        return None
    return StoredAclAuthorizer(directory, parse_super_users(
        str(config.get("super.users") or "")),
        config.get("allow.everyone.if.no.acl.found") is True)
