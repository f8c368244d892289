"""Log compaction: cleaning throughput (MB/s of dirty log) and append throughput on the event
loop with the background cleaner running beside it, against the same appends without it.

    .venv/bin/python benchmarks/compaction_bench.py [--mb 64] [--keys 10000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import trio

from pykbroker.log import LogConfig, LogManager, PartitionLog
from pykbroker.log.cleaner import Cleaner
from pykbroker.log.cleaner_manager import cleanable_offsets
from pykbroker.log.log_cleaner import CleanerConfig, LogCleaner, clean_log
from pykbroker.records import build_batch

CONFIG = LogConfig.from_mapping({"cleanup.policy": "compact", "segment.bytes": 8 << 20,
                                 "min.cleanable.dirty.ratio": 0.01})


def _batch(i: int, keys: int, per_batch: int = 10) -> bytearray:
    return bytearray(build_batch([(b"key-%d" % ((i * per_batch + j) % keys), b"v" * 100, (),
                                   None) for j in range(per_batch)]))


def fill(log: PartitionLog, mb: int, keys: int) -> int:
    i = 0
    while log.size_in_bytes < mb << 20:
        log.append_as_leader(_batch(i, keys), leader_epoch=0)
        i += 1
    log.roll()
    return log.size_in_bytes


def cleaning_throughput(mb: int, keys: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = PartitionLog.open(Path(tmp) / "t-0", CONFIG)
        size = fill(log, mb, keys)
        first_dirty, uncleanable, _ = cleanable_offsets(log, None, 0, None)
        start = time.perf_counter()
        result = clean_log(log, Cleaner(), first_dirty, uncleanable)
        secs = time.perf_counter() - start
        print(f"cleaning: {size / 1e6:.1f} MB dirty in {secs:.2f} s = "
              f"{size / 1e6 / secs:.1f} MB/s; {result.stats.messages_read} -> "
              f"{result.stats.messages_written} records, {log.size_in_bytes / 1e6:.2f} MB left")
        log.close()


def append_throughput(mb: int, keys: int, with_cleaner: bool, seconds: float = 5.0) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        manager = LogManager([Path(tmp)], CONFIG)
        dirty = manager.get_or_create("dirty", 0, CONFIG)
        fill(dirty, mb, keys)
        hot = manager.get_or_create("hot", 0, LogConfig())
        cleaner = LogCleaner(lambda: manager.logs, [Path(tmp)], CleanerConfig(backoff_ms=10))
        appended = 0

        async def main() -> None:
            nonlocal appended
            async with trio.open_nursery() as nursery:
                if with_cleaner:
                    await nursery.start(cleaner.run)
                deadline = time.perf_counter() + seconds
                i = 0
                while time.perf_counter() < deadline:
                    for _ in range(50):
                        hot.append_as_leader(_batch(i, keys), leader_epoch=0)
                        i += 1
                        appended += 1400
                    await trio.sleep(0)
                nursery.cancel_scope.cancel()

        trio.run(main)
        manager.close()
        rate = appended / seconds / 1e6
        print(f"appends {'with' if with_cleaner else 'without'} the cleaner: {rate:.1f} MB/s"
              + (f" (cleanings: {cleaner.cleanings})" if with_cleaner else ""))
        return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--keys", type=int, default=10000)
    args = parser.parse_args()
    cleaning_throughput(args.mb, args.keys)
    append_throughput(args.mb, args.keys, with_cleaner=False)
    append_throughput(args.mb, args.keys, with_cleaner=True)


if __name__ == "__main__":
    main()
