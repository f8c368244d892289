"""Idempotent producers: per-partition sequence state, duplicate detection, snapshots.

As Kafka's ProducerStateManager: for each producer id the epoch and the metadata of its last
five batches. A retried batch that matches one of them is a duplicate and is answered with
the original offsets; a gap in sequence numbers is OUT_OF_ORDER_SEQUENCE_NUMBER; an older
epoch is INVALID_PRODUCER_EPOCH. State is snapshotted beside the segments (Kafka's
``<offset>.snapshot`` files) and rebuilt from batch headers past the newest snapshot.
"""

from __future__ import annotations

import logging
import os
import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.records import BatchHeader
from pykbroker.records.checksum import crc32c

_log = logging.getLogger(__name__)

NUM_BATCHES_TO_RETAIN = 5
NO_PRODUCER_EPOCH = -1
SNAPSHOT_SUFFIX = ".snapshot"
SNAPSHOT_VERSION = 1
_HEAD = struct.Struct(">hI")  # version, crc32c of the rest
_COUNT = struct.Struct(">i")
# ProducerId, Epoch, LastSequence, LastOffset, OffsetDelta, Timestamp, CoordinatorEpoch,
# CurrentTxnFirstOffset: Kafka's ProducerSnapshot v1 entry.
_ENTRY = struct.Struct(">qhiqiqiq")


@dataclass(slots=True)
class BatchMetadata:
    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int
    timestamp: int


@dataclass
class ProducerEntry:
    producer_id: int
    epoch: int = NO_PRODUCER_EPOCH
    batches: deque[BatchMetadata] = field(
        default_factory=lambda: deque(maxlen=NUM_BATCHES_TO_RETAIN))
    last_timestamp: int = -1
    coordinator_epoch: int = -1
    current_txn_first_offset: int = -1

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else -1

    @property
    def last_offset(self) -> int:
        return self.batches[-1].last_offset if self.batches else -1


def _in_sequence(last_seq: int, next_seq: int) -> bool:
    return next_seq == last_seq + 1 or (next_seq == 0 and last_seq == 2**31 - 1)


class ProducerStateManager:
    """The producers of one partition, keyed by producer id."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.producers: dict[int, ProducerEntry] = {}
        # Open transactions: producer id -> offset of its first transactional batch here.
        self.ongoing: dict[int, int] = {}

    def first_unstable_offset(self) -> int | None:
        """Where the oldest open transaction starts: the last stable offset's bound."""
        return min(self.ongoing.values()) if self.ongoing else None

    def check_marker(self, producer_id: int, epoch: int, coordinator_epoch: int = -1) -> None:
        """A transaction marker may not carry a producer epoch older than the producer's, nor
        come from an older coordinator than the last marker (a deposed coordinator)."""
        entry = self.producers.get(producer_id)
        if entry is not None and coordinator_epoch < entry.coordinator_epoch:
            raise KafkaError(
                ErrorCode.TRANSACTION_COORDINATOR_FENCED,
                f"Invalid coordinator epoch for producer {producer_id}: {coordinator_epoch} "
                f"(zombie), {entry.coordinator_epoch} (current)",
            )
        if entry is not None and epoch < entry.epoch:
            raise KafkaError(
                ErrorCode.INVALID_PRODUCER_EPOCH,
                f"Epoch of producer {producer_id} at offset marker is {epoch}, which is "
                f"smaller than the last seen epoch {entry.epoch}",
            )

    # -- checks and updates on append --------------------------------------------------------

    def check(self, header: BatchHeader) -> BatchMetadata | None:
        """Validate a leader append; returns the original batch when it is a duplicate."""
        entry = self.producers.get(header.producer_id)
        if entry is None:
            return None  # a new (or expired) producer may start at any sequence (KIP-360)
        epoch = header.producer_epoch
        if epoch < entry.epoch:
            raise KafkaError(
                ErrorCode.INVALID_PRODUCER_EPOCH,
                f"Epoch of producer {header.producer_id} is {epoch}, which is smaller than "
                f"the last seen epoch {entry.epoch}",
            )
        first, last = header.base_sequence, header.last_sequence
        if first < 0:
            return None  # no sequence (coordinator-written transactional batches)
        if epoch == entry.epoch:
            for meta in entry.batches:
                if meta.first_seq == first and meta.last_seq == last:
                    return meta
            if entry.batches and not _in_sequence(entry.last_seq, first):
                raise KafkaError(
                    ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                    f"Out of order sequence number for producer {header.producer_id}: "
                    f"{first} (incoming seq. number), {entry.last_seq} (current end sequence "
                    "number)",
                )
        elif first != 0 and entry.epoch != NO_PRODUCER_EPOCH:
            raise KafkaError(
                ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                f"Invalid sequence number for new epoch of producer {header.producer_id}: "
                f"{epoch} (request epoch), {first} (seq. number), {entry.epoch} (current "
                "producer epoch)",
            )
        return None

    def update(self, header: BatchHeader, timestamp: int) -> int:
        """Record an appended batch (offsets already assigned). For a transaction marker,
        returns the first offset of the transaction it ends here (-1 when none was open)."""
        if header.producer_id < 0:
            return -1
        entry = self.producers.get(header.producer_id)
        if entry is None:
            entry = self.producers[header.producer_id] = ProducerEntry(header.producer_id)
        if header.producer_epoch != entry.epoch:
            entry.epoch = header.producer_epoch
            entry.batches.clear()
        completed = -1
        if header.is_control:
            completed = entry.current_txn_first_offset
            entry.current_txn_first_offset = -1
            self.ongoing.pop(header.producer_id, None)
        elif header.is_transactional and entry.current_txn_first_offset < 0:
            entry.current_txn_first_offset = header.base_offset
            self.ongoing[header.producer_id] = header.base_offset
        if header.base_sequence >= 0:
            entry.batches.append(BatchMetadata(header.base_sequence, header.last_sequence,
                                               header.base_offset, header.last_offset,
                                               timestamp))
        entry.last_timestamp = max(entry.last_timestamp, timestamp)
        return completed

    def replay(self, headers: Iterable[BatchHeader]) -> None:
        for header in headers:
            if header.producer_id >= 0:
                self.update(header, header.max_timestamp)

    def expire(self, now_ms: int, expiration_ms: int) -> int:
        """Forget producers idle for ``producer.id.expiration.ms`` (not mid-transaction)."""
        doomed = [pid for pid, e in self.producers.items()
                  if e.current_txn_first_offset < 0 and now_ms - e.last_timestamp >= expiration_ms]
        for pid in doomed:
            del self.producers[pid]
        return len(doomed)

    def truncate(self) -> None:
        """Forget everything (after a truncation the caller replays the log)."""
        self.producers.clear()
        self.ongoing.clear()

    # -- snapshots ---------------------------------------------------------------------------

    def snapshot_files(self) -> list[tuple[int, Path]]:
        out = []
        for path in self.directory.glob(f"*{SNAPSHOT_SUFFIX}"):
            try:
                out.append((int(path.stem), path))
            except ValueError:
                continue
        return sorted(out)

    def write_snapshot(self, offset: int) -> None:
        """Write ``<offset>.snapshot`` atomically, keeping only the two newest snapshots."""
        body = bytearray(_COUNT.pack(len(self.producers)))
        for e in self.producers.values():
            last = e.batches[-1] if e.batches else None
            body += _ENTRY.pack(
                e.producer_id, e.epoch, last.last_seq if last else -1,
                last.last_offset if last else -1,
                (last.last_offset - last.first_offset) if last else 0,
                e.last_timestamp, e.coordinator_epoch, e.current_txn_first_offset)
        data = _HEAD.pack(SNAPSHOT_VERSION, crc32c(bytes(body))) + body
        path = self.directory / f"{offset:020d}{SNAPSHOT_SUFFIX}"
        tmp = path.with_suffix(".snapshot.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        for _, old in self.snapshot_files()[:-2]:
            old.unlink(missing_ok=True)

    def load_snapshot(self, max_offset: int) -> int:
        """Load the newest valid snapshot at or below ``max_offset``; returns its offset
        (0 when none). Newer or unreadable snapshots are deleted."""
        for offset, path in reversed(self.snapshot_files()):
            if offset > max_offset:
                path.unlink(missing_ok=True)
                continue
            try:
                self.producers = _parse_snapshot(path.read_bytes())
                self.ongoing = {pid: e.current_txn_first_offset
                                for pid, e in self.producers.items()
                                if e.current_txn_first_offset >= 0}
                return offset
            except (ValueError, struct.error, OSError) as exc:
                _log.warning("%s: ignoring unreadable producer snapshot: %s", path, exc)
                path.unlink(missing_ok=True)
        self.producers = {}
        self.ongoing = {}
        return 0

    def delete_snapshots(self) -> None:
        for _, path in self.snapshot_files():
            path.unlink(missing_ok=True)


def _parse_snapshot(data: bytes) -> dict[int, ProducerEntry]:
    version, crc = _HEAD.unpack_from(data, 0)
    if version != SNAPSHOT_VERSION:
        raise ValueError(f"unknown snapshot version {version}")
    body = data[_HEAD.size:]
    if crc32c(body) != crc:
        raise ValueError("snapshot CRC mismatch")
    (count,) = _COUNT.unpack_from(body, 0)
    if count < 0 or _COUNT.size + count * _ENTRY.size != len(body):
        raise ValueError("snapshot length does not match its entry count")
    producers: dict[int, ProducerEntry] = {}
    for i in range(count):
        pid, epoch, last_seq, last_offset, delta, ts, coord, txn = _ENTRY.unpack_from(
            body, _COUNT.size + i * _ENTRY.size)
        entry = ProducerEntry(pid, epoch, last_timestamp=ts, coordinator_epoch=coord,
                              current_txn_first_offset=txn)
        if last_seq >= 0:
            first_seq = (last_seq - delta) & 0x7FFFFFFF
            entry.batches.append(BatchMetadata(first_seq, last_seq, last_offset - delta,
                                               last_offset, ts))
        producers[pid] = entry
    return producers
