"""Helpers for the log cleaner tests: writing keyed records, reading as a consumer does."""

from __future__ import annotations

from pathlib import Path

from pykbroker.log import LogConfig, PartitionLog
from pykbroker.log.cleaner import Cleaner
from pykbroker.log.cleaner_manager import cleanable_offsets
from pykbroker.log.log_cleaner import CleaningResult, clean_log
from pykbroker.records import (
    CONTROL_ABORT,
    NONE,
    BatchHeader,
    NewRecord,
    build_batch,
    control_type,
    iter_batches,
    iter_records,
    validate_batch,
)
from tests.log.helpers import FakeClock

Visible = list[tuple[int, bytes | None, bytes | None]]


def compact_log(path: Path, clock: FakeClock | None = None, **config: object) -> PartitionLog:
    props: dict[str, object] = {"cleanup.policy": "compact", "segment.bytes": 1024}
    props.update({k.replace("_", "."): v for k, v in config.items()})
    return PartitionLog.open(path, LogConfig.from_mapping(props), now_ms=clock or FakeClock())


def put(log: PartitionLog, *records: tuple[bytes | None, bytes | None], codec: int = NONE,
        headers: tuple[tuple[str, bytes | None], ...] = (), ts: int | None = None,
        pid: int = -1, epoch: int = -1, seq: int = -1, txn: bool = False) -> int:
    """Append one batch as leader; its first offset."""
    stamp = ts if ts is not None else log._now_ms()
    data = build_batch([NewRecord(k, v, headers, stamp) for k, v in records],
                       compression=codec, producer_id=pid, producer_epoch=epoch,
                       base_sequence=seq, is_transactional=txn)
    return log.append_as_leader(bytearray(data), leader_epoch=0).first_offset


def clean(log: PartitionLog, now: int | None = None, cleaner: Cleaner | None = None,
          high_watermark: int | None = None) -> CleaningResult | None:
    """One cleaning of everything cleanable (checkpoint kept on the log object)."""
    now = log._now_ms() if now is None else now
    checkpoint = getattr(log, "_test_checkpoint", None)
    first_dirty, uncleanable, _ = cleanable_offsets(log, checkpoint, now, high_watermark)
    if uncleanable <= log.segments[0] and first_dirty >= uncleanable and checkpoint is None:
        return None
    result = clean_log(log, cleaner or Cleaner(), first_dirty, uncleanable, now)
    log._test_checkpoint = result.end_offset  # type: ignore[attr-defined]
    return result


def batches(log: PartitionLog) -> list[tuple[BatchHeader, bytes]]:
    data = bytes(log.read(log.log_start_offset, 1 << 30).data)
    return [(validate_batch(data, pos), data[pos:pos + h.size]) for pos, h in iter_batches(data)]


def read_committed(log: PartitionLog) -> Visible:
    """What a read_committed consumer sees: aborted transactions dropped via the index."""
    data = bytes(log.read(log.log_start_offset, 1 << 30).data)
    pending = sorted(log.collect_aborted(log.log_start_offset, log.log_end_offset),
                     key=lambda a: a.first_offset)
    aborting: set[int] = set()
    out: Visible = []
    for pos, header in iter_batches(data):
        while pending and pending[0].first_offset <= header.last_offset:
            aborting.add(pending.pop(0).producer_id)
        if header.is_control:
            for record in iter_records(data, pos):
                if control_type(record) == CONTROL_ABORT:
                    aborting.discard(header.producer_id)
            continue
        if header.is_transactional and header.producer_id in aborting:
            continue
        out.extend((r.offset, r.key, r.value) for r in iter_records(data, pos))
    return out


def latest(visible: Visible) -> dict[bytes | None, tuple[int, bytes | None]]:
    out: dict[bytes | None, tuple[int, bytes | None]] = {}
    for offset, key, value in visible:
        out[key] = (offset, value)
    return out
