"""Keyed timers for a coordinator (Kafka's CoordinatorTimer), run by one trio task.

Scheduling under an existing key replaces that timer, so "reset the session timeout" is a
single call. Operations are synchronous and run on the event loop, so they see and leave
the coordinator's state whole; an operation that fails is logged and the others still run.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable, Hashable

import trio

log = logging.getLogger("pykbroker.coordinator.group.timer")

Operation = Callable[[], None]


class _Entry:
    __slots__ = ("alive", "deadline", "key", "operation", "seq")

    def __init__(self, deadline: float, seq: int, key: Hashable, operation: Operation) -> None:
        self.deadline = deadline
        self.seq = seq
        self.key = key
        self.operation = operation
        self.alive = True

    def __lt__(self, other: _Entry) -> bool:
        return (self.deadline, self.seq) < (other.deadline, other.seq)


class CoordinatorTimer:
    def __init__(self, clock: Callable[[], float] = trio.current_time) -> None:
        self._clock = clock
        self._heap: list[_Entry] = []
        self._entries: dict[Hashable, _Entry] = {}
        self._seq = itertools.count()
        self._wake = trio.Event()

    def schedule(self, key: Hashable, delay_ms: float, operation: Operation) -> None:
        self.cancel(key)
        entry = _Entry(self._clock() + max(delay_ms, 0) / 1000.0, next(self._seq), key,
                       operation)
        self._entries[key] = entry
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:
            self._wake.set()

    def cancel(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            entry.alive = False

    def is_scheduled(self, key: Hashable) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def run_due(self) -> None:
        """Run every operation whose deadline has passed (also used by tests)."""
        now = self._clock()
        while self._heap and (not self._heap[0].alive or self._heap[0].deadline <= now):
            entry = heapq.heappop(self._heap)
            if not entry.alive:
                continue
            del self._entries[entry.key]
            entry.alive = False
            try:
                entry.operation()
            except Exception:
                log.exception("coordinator timer %r failed", entry.key)

    async def run(self) -> None:
        while True:
            self.run_due()
            while self._heap and not self._heap[0].alive:
                heapq.heappop(self._heap)
            timeout = self._heap[0].deadline - self._clock() if self._heap else float("inf")
            with trio.move_on_after(max(timeout, 0)):
                await self._wake.wait()
            self._wake = trio.Event()
