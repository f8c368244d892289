"""pykbroker.timers: the heap of deadlines that replaces a cancel scope per long-poll wait.
Run on trio's MockClock, so every deadline is exact and no test sleeps in real time."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from pykbroker import timers
from pykbroker.timers import call_after, call_at

pytestmark = pytest.mark.trio


async def test_callbacks_run_at_their_deadlines_in_order(autojump_clock: trio.testing.MockClock
                                                         ) -> None:
    fired: list[tuple[str, float]] = []
    start = trio.current_time()
    for name, delay in (("c", 3.0), ("a", 1.0), ("b", 2.0), ("a2", 1.0)):
        call_after(delay, lambda n=name: fired.append((n, trio.current_time() - start)))
    await trio.sleep(5)
    assert fired == [("a", 1.0), ("a2", 1.0), ("b", 2.0), ("c", 3.0)]


async def test_a_cancelled_timer_never_fires(autojump_clock: trio.testing.MockClock) -> None:
    fired: list[str] = []
    keep = call_after(2.0, lambda: fired.append("kept"))
    gone = call_after(1.0, lambda: fired.append("cancelled"))
    gone.cancel()
    await trio.sleep(3)
    assert fired == ["kept"]
    keep.cancel()  # cancelling a timer that already fired is harmless
    assert keep.done


async def test_an_earlier_deadline_wakes_the_sleeping_task(autojump_clock: trio.testing.MockClock
                                                           ) -> None:
    """The task sleeps until the earliest deadline it knows; a new, earlier one must not wait
    for that."""
    start = trio.current_time()
    fired: list[float] = []
    call_after(100.0, lambda: fired.append(trio.current_time() - start))
    await trio.sleep(1)  # the task now sleeps until start + 100
    call_after(0.5, lambda: fired.append(trio.current_time() - start))
    await trio.sleep(1)
    assert fired == [1.5]
    await trio.sleep(100)
    assert fired == [1.5, 100.0]


async def test_an_event_waited_on_is_set_at_the_deadline(autojump_clock: trio.testing.MockClock
                                                         ) -> None:
    event = trio.Event()
    start = trio.current_time()
    call_at(start + 0.25, event.set)
    await event.wait()
    assert trio.current_time() - start == 0.25


async def test_cancelled_entries_do_not_pile_up(autojump_clock: trio.testing.MockClock) -> None:
    """Waits that end early (the usual case) leave marked entries behind; the heap sweeps
    them instead of growing with every wait."""
    live = call_after(1000.0, lambda: None)
    for _ in range(20_000):
        call_after(500.0, lambda: None).cancel()
    heap = timers._TIMERS.get().heap
    assert len(heap) <= 2 * timers._SWEEP_MIN + 1
    assert any(entry[2] is live for entry in heap)


async def test_a_failing_callback_is_logged_and_the_others_still_run(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    fired: list[str] = []

    def boom() -> None:
        raise ValueError("boom")

    call_after(1.0, boom)
    call_after(1.0, lambda: fired.append("after"))
    call_after(2.0, lambda: fired.append("later"))
    with caplog.at_level(logging.ERROR, logger="pykbroker.timers"):
        await trio.sleep(3)
    assert fired == ["after", "later"]
    assert "timer callback" in caplog.text and "boom" in caplog.text


async def test_an_infinite_deadline_is_never_due(autojump_clock: trio.testing.MockClock) -> None:
    fired: list[str] = []
    timer = call_at(float("inf"), lambda: fired.append("never"))
    await trio.sleep(10_000)
    assert not fired and not timer.done
