"""Deadlines for the hot paths' waits, kept in one heap instead of a trio cancel scope each.

A long-poll fetch, a follower's fetch and an acks=all produce each wait with a time limit,
thousands of times a second, and almost all of them end early (the records came). Entering
and leaving a trio cancel scope, or moving its deadline, costs ~10-15 us of interpreter time
here (trio re-registers the deadline through a context manager each time): with three
brokers on two cores that was ~5 % of the cluster cell's CPU. Kafka's purgatory keeps such
timeouts in a timing wheel for the same reason.

``call_at(deadline, callback)`` pushes an entry on a heap (``TimerHeap``, which the group
coordinator's keyed timers use too) that one system task per trio run serves: it sleeps (in
the one cancel scope it keeps) until the earliest live deadline, calls the callbacks that are
due, and sleeps again. Cancelling an entry only marks it: marked
entries leave the heap when they reach its top, or all at once when they outnumber the live
ones. The task wakes early only when a new deadline comes before the one it sleeps until,
which the usual waits (the same limit, later each time) do not do.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Callable

import trio

__all__ = ["Timer", "TimerHeap", "call_after", "call_at"]

log = logging.getLogger(__name__)

# Marked entries are swept out of the heap when it grows past this and holds more marked
# entries than live ones.
_SWEEP_MIN = 1024


class Timer:
    """One deadline; ``cancel()`` before it is due and its callback is never called."""

    __slots__ = ("callback", "deadline", "done")

    def __init__(self, deadline: float, callback: Callable[[], object]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.done = False

    def cancel(self) -> None:
        self.done = True


class TimerHeap:
    """Deadlines on ``clock`` in one heap, their callbacks run by ``run_due`` (tests) or by
    one task in ``run``, which needs ``clock`` to be trio's (the default)."""

    def __init__(self, clock: Callable[[], float] = trio.current_time) -> None:
        self.clock = clock
        self.heap: list[tuple[float, int, Timer]] = []
        self.seq = 0
        self.sweep_at = _SWEEP_MIN
        self.sleep_until = math.inf  # what the task's scope waits for
        self.scope = trio.CancelScope()

    def call_at(self, deadline: float, callback: Callable[[], object]) -> Timer:
        timer = Timer(deadline, callback)
        if deadline == math.inf:
            return timer  # never due
        heap = self.heap
        self.seq += 1
        heapq.heappush(heap, (deadline, self.seq, timer))
        if deadline < self.sleep_until:
            self.sleep_until = deadline
            self.scope.deadline = deadline
        if len(heap) > self.sweep_at:
            live = [entry for entry in heap if not entry[2].done]
            if len(live) * 2 < len(heap):
                heapq.heapify(live)
                self.heap = live
            self.sweep_at = max(_SWEEP_MIN, 2 * len(self.heap))
        return timer

    def run_due(self) -> None:
        """Call every callback whose deadline has passed, in deadline order."""
        heap = self.heap
        now = self.clock()
        while heap:
            deadline, _, timer = heap[0]
            if not timer.done and deadline > now:
                break
            heapq.heappop(heap)
            if timer.done:
                continue
            timer.done = True
            try:
                timer.callback()
            except Exception:  # a waiter's bug must not stop every other deadline
                log.exception("timer callback %r failed", timer.callback)

    async def run(self) -> None:
        while True:
            self.run_due()
            self.sleep_until = self.heap[0][0] if self.heap else math.inf
            with trio.CancelScope(deadline=self.sleep_until) as scope:
                self.scope = scope
                await trio.sleep_forever()


_TIMERS: trio.lowlevel.RunVar[TimerHeap] = trio.lowlevel.RunVar("pykbroker_timers")


def _timers() -> TimerHeap:
    try:
        return _TIMERS.get()
    except LookupError:
        timers = TimerHeap()
        _TIMERS.set(timers)
        trio.lowlevel.spawn_system_task(timers.run, name="pykbroker.timers")
        return timers


def call_at(deadline: float, callback: Callable[[], object]) -> Timer:
    """Call ``callback`` (from the timers' task: it must not block or raise) once
    ``trio.current_time()`` reaches ``deadline``, unless the returned timer is cancelled."""
    return _timers().call_at(deadline, callback)


def call_after(seconds: float, callback: Callable[[], object]) -> Timer:
    return call_at(trio.current_time() + seconds, callback)
