"""Producer id allocation: unique across restarts, handed out from persisted blocks.

Like Kafka's ZooKeeper-mode ``/latest_producer_id_block``, a block of ids is reserved in the
metadata store before any id from it is used, so a crash can skip ids but never reuse one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from pykbroker.cluster.metadata_store import LocalMetadataStore
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError

log = logging.getLogger("pykbroker.cluster.producer_ids")

BLOCK_SIZE = 1000


class ProducerIdManager:
    def __init__(self, store: LocalMetadataStore) -> None:
        self.store = store
        self._next = store.producer_id_block_end
        self._end = self._next

    def next_id(self) -> int:
        if self._next >= self._end:
            self._end = self._next + BLOCK_SIZE
            self.store.set_producer_id_block_end(self._end)
        pid = self._next
        self._next += 1
        return pid


class BlockProducerIdManager:
    """A cluster's producer ids: blocks allocated in ZooKeeper (``/latest_producer_id_block``)
    so no two brokers hand out the same id. The next block is fetched in the background when
    the current one is 90 % used; until it arrives an exhausted broker answers
    COORDINATOR_LOAD_IN_PROGRESS, which clients retry (Kafka's RPC producer id manager)."""

    def __init__(self, allocate: Callable[[], Awaitable[tuple[int, int]]],
                 spawn: Callable[[Callable[[], Awaitable[None]]], None]) -> None:
        self._allocate = allocate
        self._spawn = spawn
        self._next = 0
        self._last = -1
        self._prefetched: tuple[int, int] | None = None
        self._fetching = False

    async def start(self) -> None:
        self._next, self._last = await self._allocate()

    async def _prefetch(self) -> None:
        try:
            self._prefetched = await self._allocate()
        except Exception as exc:  # ZooKeeper trouble: the next request tries again
            log.warning("allocating a producer id block failed: %r", exc)
        finally:
            self._fetching = False

    def next_id(self) -> int:
        if self._next > self._last and self._prefetched is not None:
            (self._next, self._last), self._prefetched = self._prefetched, None
        if self._next > self._last:
            self._maybe_prefetch(force=True)
            raise KafkaError(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
                             "waiting for a new producer id block")
        pid = self._next
        self._next += 1
        self._maybe_prefetch()
        return pid

    def _maybe_prefetch(self, force: bool = False) -> None:
        remaining = self._last - self._next + 1
        if self._prefetched is None and not self._fetching and (
                force or remaining < BLOCK_SIZE // 10):
            self._fetching = True
            self._spawn(self._prefetch)
