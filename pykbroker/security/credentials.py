"""SCRAM credentials kept with the broker's metadata, in the first log directory.

One file, ``pykbroker-scram-credentials.json`` (mode 0600), beside the broker's metadata
file, holding per user and mechanism Kafka's own credential string (``salt=...,stored_key=
...,server_key=...,iterations=...``, the value Kafka keeps under ``/config/users/<user>``).
Each change is written to a temporary file, fsynced and renamed over the old one.

In a ZooKeeper cluster the credentials live where Kafka keeps them instead, in the user's
``/config/users/<sanitized user>`` config (``{"version":1,"config":{"SCRAM-SHA-256":
"salt=...,..."}}``, beside the user's quotas), announced by a ``/config/changes`` notification
that makes every broker re-read that user: a credential altered through one broker lets the
user log in on every broker a moment later.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from pykbroker.log.checkpoints import write_atomically

if TYPE_CHECKING:  # scram is imported by the methods: a broker without SASL never needs it
    from pykbroker.metadata.zk.cluster_store import ZkClusterStore
    from pykbroker.security.scram import ScramCredential, ScramMechanism

# The SCRAM keys of a user's config (ScramMechanism.mechanismNames).
SCRAM_KEYS = ("SCRAM-SHA-256", "SCRAM-SHA-512")

FILE_NAME = "pykbroker-scram-credentials.json"
FORMAT_VERSION = 1


def _scram_keys(config: dict[str, str]) -> dict[str, str]:
    """The SCRAM credentials among a user's config keys (the rest are its quotas)."""
    return {k: v for k, v in config.items() if k in SCRAM_KEYS}


class ScramCredentialStore:
    def __init__(self, directory: Path | None) -> None:
        """``directory`` None keeps credentials in memory only (tests)."""
        self.path = None if directory is None else Path(directory) / FILE_NAME
        self.users: dict[str, dict[str, str]] = {}
        self._zk: ZkClusterStore | None = None
        if self.path is not None and self.path.exists():
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("version") != FORMAT_VERSION:
                raise RuntimeError(f"{self.path}: unsupported version {data.get('version')}")
            self.users = {str(u): {str(m): str(c) for m, c in creds.items()}
                          for u, creds in data.get("users", {}).items()}

    def get(self, user: str, mechanism: ScramMechanism) -> ScramCredential | None:
        from pykbroker.security.scram import ScramCredential

        text = self.users.get(user, {}).get(mechanism.mechanism_name)
        return None if text is None else ScramCredential.from_kafka(text)

    def mechanisms(self, user: str) -> dict[ScramMechanism, int]:
        """``mechanism -> iterations`` of ``user``'s credentials."""
        from pykbroker.security.scram import ScramCredential, ScramMechanism

        out = {}
        for name, text in sorted(self.users.get(user, {}).items()):
            mechanism = ScramMechanism.by_name(name)
            if mechanism is not None:
                out[mechanism] = ScramCredential.from_kafka(text).iterations
        return out

    def alter(self, upserts: list[tuple[str, ScramMechanism, ScramCredential]],
              deletes: list[tuple[str, ScramMechanism]]) -> None:
        """Apply a batch and write it once."""
        for user, mechanism in deletes:
            creds = self.users.get(user, {})
            creds.pop(mechanism.mechanism_name, None)
            if not creds:
                self.users.pop(user, None)
        for user, mechanism, credential in upserts:
            self.users.setdefault(user, {})[mechanism.mechanism_name] = credential.to_kafka()
        self._save()

    async def use_zookeeper(self, zk: ZkClusterStore) -> None:
        """Keep the credentials in ZooKeeper from now on (a cluster member): read every
        user's before the broker serves clients (and again once the broker follows
        ``/config/changes``, for a change made in between)."""
        from pykbroker.metadata.zk.configs import desanitize

        users = {}
        for sanitized in await zk.kafka.get_all_entities_with_config("users"):
            creds = _scram_keys(await zk.get_entity_config("users", sanitized))
            if creds:
                users[desanitize(sanitized)] = creds
        self.users = users  # swapped whole: a login never sees a half-read set
        self._zk = zk

    async def reload_user(self, sanitized: str) -> None:
        """Re-read one user's credentials (``/config/changes`` named ``users/<sanitized>``;
        ``<user>/clients/<id>`` entities hold quotas only)."""
        from pykbroker.metadata.zk.configs import desanitize

        if self._zk is None or "/" in sanitized:
            return
        creds = _scram_keys(await self._zk.get_entity_config("users", sanitized))
        user = desanitize(sanitized)
        if creds:
            self.users[user] = creds
        else:
            self.users.pop(user, None)

    async def alter_stored(self, upserts: list[tuple[str, ScramMechanism, ScramCredential]],
                           deletes: list[tuple[str, ScramMechanism]]) -> None:
        """``alter``, written to ZooKeeper in a cluster (each user's config read, its SCRAM
        keys changed, written back and announced, as AdminZkClient.changeConfigs)."""
        if self._zk is None:
            self.alter(upserts, deletes)
            return
        from pykbroker.metadata.zk.configs import sanitize

        users = dict.fromkeys([u for u, _ in deletes] + [u for u, _, _ in upserts])
        for user in users:
            config = await self._zk.get_entity_config("users", sanitize(user))
            for name, mechanism in deletes:
                if name == user:
                    config.pop(mechanism.mechanism_name, None)
            for name, mechanism, credential in upserts:
                if name == user:
                    config[mechanism.mechanism_name] = credential.to_kafka()
            await self._zk.change_entity_config("users", sanitize(user), config)
            await self.reload_user(sanitize(user))

    def _save(self) -> None:
        if self.path is None:
            return
        data = {"version": FORMAT_VERSION, "users": dict(sorted(self.users.items()))}
        write_atomically(self.path, json.dumps(data, indent=1), mode=0o600)  # secrets
