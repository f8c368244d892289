"""ACLs in ZooKeeper, where a Kafka 3.9 ZooKeeper-mode cluster keeps them, so that an ACL
created through one broker is enforced by every broker (Kafka's AclAuthorizer with ZkData's
ZkAclStore and ZkAclChangeStore).

* Literal patterns: ``/kafka-acl/<Topic|Group|Cluster|...>/<name>``; prefixed ones:
  ``/kafka-acl-extended/prefixed/<type>/<name>``. Each znode holds the pattern's entries as
  ``{"version":1,"acls":[{"principal":"User:alice","permissionType":"Allow","operation":"Read",
  "host":"*"}]}``, written with the znode version read (compare-and-set, retried on a
  conflict) and deleted when its last entry goes.
* After each change, a persistent sequential ``acl_changes_`` znode names the pattern:
  ``TOPIC:name`` under ``/kafka-acl-changes`` for a literal one, ``{"version":1,
  "resourceType":"TOPIC","name":"...","patternType":"PREFIXED"}`` under
  ``/kafka-acl-extended-changes`` otherwise. Every broker watches both and re-reads the named
  pattern, so each broker's cache follows ZooKeeper a moment after a change.

Kafka's own ``kafka-acls.sh --authorizer-properties zookeeper.connect=...`` reads and writes the
same znodes. Notifications older than 15 minutes are removed, as Kafka's
ZkNodeChangeNotificationListener does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from functools import partial

import trio

from pykbroker.metadata.zk.client import (
    Watch,
    ZkBadVersion,
    ZkClient,
    ZkError,
    ZkNodeExists,
    ZkNoNode,
)
from pykbroker.security.acl_codes import RESOURCE_TYPE_NAMES, PatternType, ResourceType
from pykbroker.security.acls import (
    AccessControlEntry,
    AclBinding,
    AclBindingFilter,
    AclCache,
    InvalidAcl,
    ResourcePattern,
    entry_from_json,
    entry_to_json,
    validate_binding,
)

log = logging.getLogger("pykbroker.security.acls")

LITERAL_ACL_PATH = "/kafka-acl"
EXTENDED_ACL_PATH = "/kafka-acl-extended"
LITERAL_CHANGES_PATH = "/kafka-acl-changes"
EXTENDED_CHANGES_PATH = "/kafka-acl-extended-changes"
CHANGE_PREFIX = "acl_changes_"
CHANGE_PATHS = (LITERAL_CHANGES_PATH, EXTENDED_CHANGES_PATH)
NOTIFICATION_MAX_AGE_MS = 15 * 60 * 1000  # ZkNodeChangeNotificationListener's default

_TYPES_BY_PATH_NAME = {v: k for k, v in RESOURCE_TYPE_NAMES.items()}
_STORED_PATTERNS = (PatternType.LITERAL, PatternType.PREFIXED)

Entries = frozenset[AccessControlEntry]


def acl_root(pattern_type: PatternType) -> str:
    if pattern_type == PatternType.LITERAL:
        return LITERAL_ACL_PATH
    return f"{EXTENDED_ACL_PATH}/{pattern_type.name.lower()}"


def resource_path(pattern: ResourcePattern) -> str:
    return f"{acl_root(pattern.pattern_type)}/{RESOURCE_TYPE_NAMES[pattern.resource_type]}/" \
           f"{pattern.name}"


def encode_entries(entries: Iterable[AccessControlEntry]) -> bytes:
    return json.dumps({"version": 1, "acls": [entry_to_json(e) for e in sorted(entries)]},
                      separators=(",", ":")).encode()


def decode_entries(data: bytes) -> Entries:
    if not data:
        return frozenset()
    obj = json.loads(data)
    return frozenset(entry_from_json(e) for e in obj.get("acls", []))


def encode_change(pattern: ResourcePattern) -> tuple[str, bytes]:
    """(notification path, data) announcing a change to ``pattern``."""
    if pattern.pattern_type == PatternType.LITERAL:
        return LITERAL_CHANGES_PATH, f"{pattern.resource_type.name}:{pattern.name}".encode()
    return EXTENDED_CHANGES_PATH, json.dumps({
        "version": 1, "resourceType": pattern.resource_type.name, "name": pattern.name,
        "patternType": pattern.pattern_type.name}, separators=(",", ":")).encode()


def _resource_type(text: str) -> ResourceType:
    """ResourceType.fromString: the enum name, any case (TOPIC, Topic, topic)."""
    compact = text.replace("_", "").upper()
    for member in ResourceType:
        if member.name.replace("_", "") == compact:
            return member
    raise ValueError(f"unknown resource type {text!r}")


def decode_change(changes_path: str, data: bytes) -> ResourcePattern:
    text = data.decode()
    if changes_path == LITERAL_CHANGES_PATH:
        type_name, sep, name = text.partition(":")
        if not sep:
            raise ValueError(f"expected ResourceType:ResourceName, got {text!r}")
        return ResourcePattern(_resource_type(type_name), name, PatternType.LITERAL)
    obj = json.loads(text)
    if int(obj.get("version", 1)) > 1:
        raise ValueError(f"unsupported ACL change event version {obj['version']}")
    return ResourcePattern(_resource_type(str(obj["resourceType"])), str(obj["name"]),
                           PatternType[str(obj["patternType"]).upper()])


def sequence_of(child: str) -> int:
    return int(child[len(CHANGE_PREFIX):]) if child.startswith(CHANGE_PREFIX) else -1


class ZkAclStore:
    """Keeps an AclCache equal to ZooKeeper's ACLs and writes changes there."""

    def __init__(self, zk: ZkClient, cache: AclCache) -> None:
        self.zk = zk
        self.cache = cache
        self._seen = {path: -1 for path in CHANGE_PATHS}
        self._send, self._receive = trio.open_memory_channel[tuple[str, str]](1000)
        self._watches: list[Watch] = []

    async def load(self) -> None:
        """Create the ACL paths, read every ACL and start watching the change paths (call
        before serving clients: until then the cache is empty)."""
        for path in (LITERAL_ACL_PATH, acl_root(PatternType.PREFIXED), *CHANGE_PATHS):
            try:
                await self.zk.create(path, b"", makepath=True)
            except ZkNodeExists:
                pass
        for path in CHANGE_PATHS:  # changes from here on are replayed by the watch
            self._seen[path] = max((sequence_of(c) for c in await self.zk.get_children(path)),
                                   default=-1)
        count = await self._reload_all()
        log.info("loaded the ACLs of %d resource patterns from ZooKeeper", count)
        for path in CHANGE_PATHS:
            self._watches.append(await self.zk.watch_children(
                path, partial(self._on_children, path)))

    def _on_children(self, path: str, children: list[str]) -> None:  # the trio thread
        for child in sorted(children, key=sequence_of):
            seq = sequence_of(child)
            if seq > self._seen[path]:
                self._seen[path] = seq
                try:
                    self._send.send_nowait((path, child))
                except trio.WouldBlock:  # a burst: re-read everything
                    log.warning("ACL change backlog full; reloading all ACLs")
                    self._send.send_nowait(("", ""))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Apply change notifications as they come (in a broker nursery)."""
        task_status.started()
        async for path, child in self._receive:
            try:
                if not path:
                    await self._reload_all()
                    continue
                got = await self.zk.get(f"{path}/{child}")
                if got is None:
                    continue  # purged already: the pattern was re-read when it was created
                await self.reload(decode_change(path, got[0]))
                await self._purge(path, got[1].ctime)
            except (ZkError, ValueError, KeyError) as exc:
                log.warning("ACL change notification %s/%s not applied: %s", path, child, exc)

    async def _reload_all(self) -> int:
        """Read every stored pattern's ACLs into a cleared cache; how many patterns."""
        self.cache.acls.clear()
        count = 0
        for pattern_type in _STORED_PATTERNS:
            root = acl_root(pattern_type)
            for type_name in await self.zk.get_children(root):
                resource_type = _TYPES_BY_PATH_NAME.get(type_name)
                if resource_type is None:
                    log.warning("ignoring ACLs under %s/%s: unknown resource type", root,
                                type_name)
                    continue
                for name in await self.zk.get_children(f"{root}/{type_name}"):
                    await self.reload(ResourcePattern(resource_type, name, pattern_type))
                    count += 1
        return count

    async def _purge(self, path: str, newest_ctime_ms: int) -> None:
        """Remove notifications created over 15 minutes before ``newest_ctime_ms``."""
        for child in await self.zk.get_children(path):
            got = await self.zk.get(f"{path}/{child}")
            if got is not None and newest_ctime_ms - got[1].ctime > NOTIFICATION_MAX_AGE_MS:
                try:
                    await self.zk.delete(f"{path}/{child}")
                except ZkNoNode:
                    pass

    async def reload(self, pattern: ResourcePattern) -> Entries:
        got = await self.zk.get(resource_path(pattern))
        entries = decode_entries(got[0]) if got is not None else frozenset()
        self.cache.set_resource(pattern, entries)
        return entries

    async def update(self, pattern: ResourcePattern, change: Callable[[Entries], Entries]
                     ) -> tuple[Entries, Entries]:
        """Apply ``change`` to the pattern's entries in ZooKeeper (compare-and-set, retried
        on a concurrent change; ``change`` may run more than once); returns (before, after)."""
        path = resource_path(pattern)
        while True:
            got = await self.zk.get(path)
            before = decode_entries(got[0]) if got is not None else frozenset()
            after = change(before)
            if after == before:
                break
            try:
                if got is None:
                    await self.zk.create(path, encode_entries(after), makepath=True)
                elif not after:
                    await self.zk.delete(path, version=got[1].version)
                else:
                    await self.zk.set(path, encode_entries(after), version=got[1].version)
            except (ZkNodeExists, ZkBadVersion, ZkNoNode):
                continue  # another broker changed it first: read it again
            changes_path, data = encode_change(pattern)
            await self.zk.create(f"{changes_path}/{CHANGE_PREFIX}", data, sequential=True)
            break
        self.cache.set_resource(pattern, after)
        return before, after

    async def create(self, bindings: Sequence[AclBinding]) -> list[str | None]:
        """AclAuthorizer.createAcls: valid bindings are added, grouped per pattern."""
        out: list[str | None] = []
        wanted: dict[ResourcePattern, set[AccessControlEntry]] = {}
        at: dict[ResourcePattern, list[int]] = {}
        for i, binding in enumerate(bindings):
            try:
                validate_binding(binding)
            except InvalidAcl as exc:
                out.append(str(exc))
                continue
            wanted.setdefault(binding.pattern, set()).add(binding.entry)
            at.setdefault(binding.pattern, []).append(i)
            out.append(None)
        for pattern, entries in wanted.items():
            added: Entries = frozenset(entries)

            def plus(current: Entries, added: Entries = added) -> Entries:
                return current | added

            try:
                await self.update(pattern, plus)
            except ZkError as exc:
                for i in at[pattern]:
                    out[i] = f"Failed to update the ACLs of {pattern} in ZooKeeper: {exc}"
        return out

    async def delete(self, filters: Sequence[AclBindingFilter]) -> list[list[AclBinding]]:
        """AclAuthorizer.deleteAcls: every pattern some filter matches (from the cache) is
        rewritten without the entries a filter matches; each removed binding is reported
        under the first filter that matches it."""
        out: list[list[AclBinding]] = [[] for _ in filters]
        patterns = sorted(p for p in list(self.cache.acls)
                          if any(f.matches_pattern(p) for f in filters))
        for pattern in patterns:
            first: dict[AccessControlEntry, int] = {}

            def without(current: Entries, pattern: ResourcePattern = pattern,
                        first: dict[AccessControlEntry, int] = first) -> Entries:
                first.clear()
                for entry in current:
                    binding = AclBinding(pattern, entry)
                    index = next((i for i, f in enumerate(filters) if f.matches(binding)), None)
                    if index is not None:
                        first[entry] = index
                return current - first.keys()

            before, after = await self.update(pattern, without)
            for entry in sorted(before - after):
                out[first[entry]].append(AclBinding(pattern, entry))
        return out

    def close(self) -> None:
        for watch in self._watches:
            watch.cancel()
        self._watches.clear()
