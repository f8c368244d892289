"""Incremental fetch sessions (KIP-227).

A session remembers the partitions a client fetches and what it was last told about each,
so that an incremental fetch request names only what changed and the response carries only
partitions with news (records, a new high watermark, log start or stable offset, an error).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError

INITIAL_EPOCH = 0
FINAL_EPOCH = -1


@dataclass(slots=True)
class CachedPartition:
    topic: str
    partition: int
    fetch_offset: int
    max_bytes: int
    current_leader_epoch: int = -1
    # What the client was last told; -1 means never.
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1

    def needs_report(self, hw: int, lso: int, lso_start: int, has_data: bool,
                     error: int) -> bool:
        """Kafka's rule for an incremental response, updating what was reported."""
        changed = (has_data or error != 0 or hw != self.high_watermark
                   or lso != self.last_stable_offset or lso_start != self.log_start_offset)
        if changed:
            self.high_watermark = hw
            self.last_stable_offset = lso
            self.log_start_offset = lso_start
        return changed


@dataclass
class FetchSession:
    session_id: int
    epoch: int  # the epoch the next request must carry
    partitions: dict[tuple[str, int], CachedPartition] = field(default_factory=dict)
    last_used: float = field(default_factory=time.monotonic)
    # A follower's session (replication.leader): the follower's id, its partitions by
    # (topic id or name, partition).
    follower: int = -1
    follower_partitions: dict[tuple[uuid.UUID | str, int], Any] = field(default_factory=dict)
    follower_view: Any = None  # what its idle partitions' watches wake (replication.leader)
    on_close: Callable[[], None] | None = None  # run when the session is closed or evicted

    def next_epoch(self) -> None:
        self.epoch = self.epoch + 1 if self.epoch < 2**31 - 1 else 1


class FetchSessionCache:
    """Sessions by id, bounded like Kafka's ``max.incremental.fetch.session.cache.slots``."""

    def __init__(self, max_slots: int = 1000, idle_eviction_s: float = 120.0) -> None:
        self.max_slots = max_slots
        self.idle_eviction_s = idle_eviction_s
        self.sessions: dict[int, FetchSession] = {}

    def _evict_idle(self) -> None:
        cutoff = time.monotonic() - self.idle_eviction_s
        for sid in [s for s, sess in self.sessions.items() if sess.last_used < cutoff]:
            self.close(sid)

    def create(self) -> FetchSession | None:
        """A new session, or None when every slot is taken (the fetch runs sessionless)."""
        self._evict_idle()
        if len(self.sessions) >= self.max_slots:
            return None
        while True:
            sid = random.randint(1, 2**31 - 1)
            if sid not in self.sessions:
                break
        session = FetchSession(sid, INITIAL_EPOCH + 1)
        self.sessions[sid] = session
        return session

    def lookup(self, session_id: int, epoch: int) -> FetchSession:
        session = self.sessions.get(session_id)
        if session is None:
            raise KafkaError(ErrorCode.FETCH_SESSION_ID_NOT_FOUND)
        if session.epoch != epoch:
            raise KafkaError(ErrorCode.INVALID_FETCH_SESSION_EPOCH)
        session.last_used = time.monotonic()
        return session

    def close(self, session_id: int) -> None:
        session = self.sessions.pop(session_id, None)
        if session is not None and session.on_close is not None:
            session.on_close()
