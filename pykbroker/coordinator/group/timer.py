"""Keyed timers for a coordinator (Kafka's CoordinatorTimer), run by one trio task.

Scheduling under an existing key replaces that timer, so "reset the session timeout" is a
single call. Operations are synchronous and run on the event loop, so they see and leave
the coordinator's state whole; an operation that fails is logged and the others still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable

import trio

from pykbroker.timers import Timer, TimerHeap

log = logging.getLogger("pykbroker.coordinator.group.timer")

Operation = Callable[[], None]


class CoordinatorTimer:
    """Keys over a :class:`pykbroker.timers.TimerHeap` of the coordinator's own (its clock
    may be a test's)."""

    def __init__(self, clock: Callable[[], float] = trio.current_time) -> None:
        self._timers = TimerHeap(clock)
        self._entries: dict[Hashable, Timer] = {}

    def schedule(self, key: Hashable, delay_ms: float, operation: Operation) -> None:
        self.cancel(key)

        def fire() -> None:
            del self._entries[key]  # (a rescheduling cancelled the timer it replaced)
            try:
                operation()
            except Exception:
                log.exception("coordinator timer %r failed", key)

        timers = self._timers
        self._entries[key] = timers.call_at(timers.clock() + max(delay_ms, 0) / 1000.0, fire)

    def cancel(self, key: Hashable) -> None:
        timer = self._entries.pop(key, None)
        if timer is not None:
            timer.cancel()

    def is_scheduled(self, key: Hashable) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def run_due(self) -> None:
        """Run every operation whose deadline has passed (also used by tests)."""
        self._timers.run_due()

    async def run(self) -> None:
        await self._timers.run()
