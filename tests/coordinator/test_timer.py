"""Keyed coordinator timers on trio's clock: replace, cancel, order, failures contained."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from pykbroker.coordinator.group.timer import CoordinatorTimer


@pytest.mark.trio
async def test_timers_fire_in_order_and_rescheduling_replaces(
        autojump_clock: trio.testing.MockClock) -> None:
    timer = CoordinatorTimer()
    fired: list[tuple[str, float]] = []

    def op(name: str) -> None:
        fired.append((name, trio.current_time()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(timer.run)
        start = trio.current_time()
        timer.schedule("a", 300, lambda: op("a"))
        timer.schedule("b", 100, lambda: op("b"))
        timer.schedule("c", 200, lambda: op("c"))
        timer.schedule("a", 500, lambda: op("a2"))  # replaces "a"
        timer.cancel("c")
        timer.schedule("boom", 50, lambda: 1 / 0)  # logged, the others still run
        await trio.sleep(1)
        assert [(n, round(t - start, 3)) for n, t in fired] == [("b", 0.1), ("a2", 0.5)]
        assert len(timer) == 0 and not timer.is_scheduled("a")
        nursery.cancel_scope.cancel()

