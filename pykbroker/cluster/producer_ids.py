"""Producer id allocation: unique across restarts, handed out from persisted blocks.

Like Kafka's ZooKeeper-mode ``/latest_producer_id_block``, a block of ids is reserved in the
metadata store before any id from it is used, so a crash can skip ids but never reuse one.
"""

from __future__ import annotations

from pykbroker.cluster.metadata_store import LocalMetadataStore

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
