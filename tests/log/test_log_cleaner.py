"""The background cleaner beside trio: cleans while the event loop appends and reads,
takes policy changes without a restart, checkpoints, reports its figures, stops promptly."""

from __future__ import annotations

import time
from pathlib import Path

import trio

from pykbroker.log import LogConfig, LogManager
from pykbroker.log.checkpoints import read_offset_checkpoint
from pykbroker.log.cleaner_manager import CLEANER_CHECKPOINT
from pykbroker.log.log_cleaner import CleanerConfig, LogCleaner
from tests.log.cleaner_helpers import latest, put, read_committed

COMPACT = LogConfig.from_mapping({"cleanup.policy": "compact", "segment.bytes": 4096,
                                  "min.cleanable.dirty.ratio": 0.1})


async def _until(predicate: object, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():  # type: ignore[operator]
            await trio.sleep(0.01)


def test_background_cleaning_beside_appends_and_policy_change(tmp_path: Path) -> None:
    manager = LogManager([tmp_path], LogConfig())
    hot = manager.get_or_create("hot", 0, COMPACT)
    later = manager.get_or_create("later", 0, LogConfig(segment_bytes=4096))
    for r in range(30):
        for k in range(50):
            put(hot, (b"k%d" % k, b"v%d" % r + b"x" * 20))
            put(later, (b"k%d" % k, b"v%d" % r))
    cleaner = LogCleaner(lambda: manager.logs, [tmp_path],
                         CleanerConfig(backoff_ms=20, threads=2))
    gaps: list[float] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(cleaner.run)

            async def ticker() -> None:
                last = time.monotonic()
                while True:
                    await trio.sleep(0.005)
                    now = time.monotonic()
                    gaps.append(now - last)
                    last = now

            nursery.start_soon(ticker)
            size = hot.size_in_bytes
            appended = 0
            while cleaner.cleanings == 0:  # the loop keeps appending and reading meanwhile
                put(hot, (b"k%d" % (appended % 50), b"new%d" % appended))
                appended += 1
                assert read_committed(hot)
                await trio.sleep(0.001)
            await _until(lambda: hot.size_in_bytes < size / 3)
            seen = latest(read_committed(hot))
            assert len(seen) == 50
            assert cleaner.max_clean_time_secs > 0 and 0 < cleaner.cleaner_recopy_percent < 100
            assert 0 <= cleaner.max_dirty_percent <= 100
            # cleanup.policy delete -> compact at runtime: cleaned without a restart
            before = later.size_in_bytes
            later.update_config(COMPACT)
            cleaner.wake()
            await _until(lambda: later.size_in_bytes < before / 3)
            assert latest(read_committed(later))[b"k7"][1] == b"v29"
            await _until(lambda: ("later", 0) in read_offset_checkpoint(
                tmp_path / CLEANER_CHECKPOINT))
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert max(gaps) < 1.0  # the event loop was never held for long
    checkpoint = read_offset_checkpoint(tmp_path / CLEANER_CHECKPOINT)
    assert checkpoint[("hot", 0)] > 0 and checkpoint[("later", 0)] > 0
    assert not [p for p in (tmp_path / "hot-0").iterdir()
                if p.name.endswith((".cleaned", ".swap", ".deleted"))]
    manager.close()


def test_disabled_cleaner_does_nothing(tmp_path: Path) -> None:
    manager = LogManager([tmp_path], LogConfig())
    log = manager.get_or_create("t", 0, COMPACT)
    for r in range(200):
        put(log, (b"k", b"v%d" % r))
    size = log.size_in_bytes
    cleaner = LogCleaner(lambda: manager.logs, [tmp_path],
                         CleanerConfig(enable=False, backoff_ms=10))

    async def main() -> None:
        await cleaner.run()
        await trio.sleep(0.1)

    trio.run(main)
    assert log.size_in_bytes == size
    manager.close()


def test_config_from_broker_settings() -> None:
    values = {"log.cleaner.enable": False, "log.cleaner.threads": 3,
              "log.cleaner.backoff.ms": 100, "log.cleaner.dedupe.buffer.size": 3000,
              "log.cleaner.io.buffer.size": 1 << 16,
              "log.cleaner.io.max.bytes.per.second": 1e6}
    config = CleanerConfig.from_broker(values.get)
    assert (config.enable, config.threads, config.backoff_ms) == (False, 3, 100)
    cleaner = config.new_cleaner()
    assert cleaner.offset_map.slots == 1000 // 24 and cleaner.io_buffer_size == (1 << 16) // 6
    assert cleaner.throttler.rate == 1e6 / 3
