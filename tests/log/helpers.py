"""Shared helpers for log tests: batches, a fake clock, brute-force readers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pykbroker.log import LogConfig, PartitionLog
from pykbroker.records import build_batch, iter_batches, iter_records

T0 = 1_700_000_000_000


class FakeClock:
    """A settable millisecond clock for PartitionLog's ``now_ms``."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


def batch(
    count: int = 1,
    *,
    timestamps: Sequence[int] | None = None,
    value_size: int = 10,
    ts: int = T0,
) -> bytearray:
    """A fresh client-style batch (base offset 0) of ``count`` records."""
    stamps = list(timestamps) if timestamps is not None else [ts] * count
    records = [(b"k%d" % i, bytes(value_size), (), t) for i, t in enumerate(stamps)]
    return bytearray(build_batch(records))


def open_log(path: Path, clock: FakeClock | None = None, **config: object) -> PartitionLog:
    return PartitionLog.open(
        path,
        LogConfig.from_mapping({k.replace("_", "."): v for k, v in config.items()}),
        now_ms=clock or FakeClock(),
    )


def all_records(log: PartitionLog) -> list[tuple[int, int]]:
    """(offset, timestamp) of every record from the log start, read through the log."""
    out: list[tuple[int, int]] = []
    data = log.read(log.log_start_offset, 1 << 30).data
    for pos, _ in iter_batches(data):
        out.extend((r.offset, r.timestamp) for r in iter_records(data, pos))
    return out


def batch_spans(data: bytes) -> list[tuple[int, int]]:
    """(base offset, last offset) of each batch in ``data``."""
    return [(h.base_offset, h.last_offset) for _, h in iter_batches(data)]
