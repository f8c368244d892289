"""The cleaner's key -> newest offset map over the dirty section (Kafka's SkimpyOffsetMap).

Kafka hashes each key into a fixed buffer of ``log.cleaner.dedupe.buffer.size`` bytes, 24
bytes a slot (an MD5 digest and an offset), and stops mapping when the slots are 90% used:
a cleaning then covers only the dirty offsets mapped so far. This map keeps that capacity
rule (slots from the same byte budget, the same load factor) but keys a dict by the key bytes
themselves, so there are no hash collisions to reason about.
"""

from __future__ import annotations

from typing import Final

__all__ = ["SLOT_BYTES", "OffsetMap"]

SLOT_BYTES: Final = 24  # a 16-byte digest and an 8-byte offset, as Kafka sizes its slots


class OffsetMap:
    """Newest offset per key, bounded to ``slots * load_factor`` keys."""

    __slots__ = ("_map", "capacity", "latest_offset", "slots")

    def __init__(self, memory_bytes: int, load_factor: float = 0.9) -> None:
        self.slots = max(memory_bytes // SLOT_BYTES, 1)
        self.capacity = max(int(self.slots * load_factor), 1)
        self._map: dict[bytes, int] = {}
        self.latest_offset = -1

    def __len__(self) -> int:
        return len(self._map)

    @property
    def full(self) -> bool:
        return len(self._map) >= self.capacity

    def put(self, key: bytes, offset: int) -> bool:
        """Map ``key`` to ``offset`` (later offsets win); False when the map is full and the
        key is new, in which case nothing changed."""
        known = self._map.get(key)
        if known is None:
            if len(self._map) >= self.capacity:
                return False
        elif known > offset:
            return True
        self._map[key] = offset
        if offset > self.latest_offset:
            self.latest_offset = offset
        return True

    def get(self, key: bytes) -> int:
        """The newest offset of ``key``, -1 when it is not mapped."""
        return self._map.get(key, -1)

    def update_latest_offset(self, offset: int) -> None:
        if offset > self.latest_offset:
            self.latest_offset = offset

    def clear(self) -> None:
        self._map.clear()
        self.latest_offset = -1

    @property
    def utilization(self) -> float:
        return len(self._map) / self.slots
