"""SCRAM credentials kept with the broker's metadata, in the first log directory.

One file, ``pykbroker-scram-credentials.json`` (mode 0600), beside the broker's metadata
file, holding per user and mechanism Kafka's own credential string (``salt=...,stored_key=
...,server_key=...,iterations=...``, the value Kafka keeps under ``/config/users/<user>``).
Each change is written to a temporary file, fsynced and renamed over the old one. In a
ZooKeeper cluster each broker keeps its own file for now (not ``/config/users``): a credential
altered through one broker is known to that broker only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from pykbroker.log.checkpoints import write_atomically

if TYPE_CHECKING:  # scram is imported by the methods: a broker without SASL never needs it
    from pykbroker.security.scram import ScramCredential, ScramMechanism

FILE_NAME = "pykbroker-scram-credentials.json"
FORMAT_VERSION = 1


class ScramCredentialStore:
    def __init__(self, directory: Path | None) -> None:
        """``directory`` None keeps credentials in memory only (tests)."""
        self.path = None if directory is None else Path(directory) / FILE_NAME
        self.users: dict[str, dict[str, str]] = {}
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

    def _save(self) -> None:
        if self.path is None:
            return
        data = {"version": FORMAT_VERSION, "users": dict(sorted(self.users.items()))}
        write_atomically(self.path, json.dumps(data, indent=1), mode=0o600)  # secrets
