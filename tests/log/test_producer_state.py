"""Idempotent producer state: duplicates answered with the original offsets, sequence gaps
and stale epochs refused, and state kept across restarts (snapshot or rebuilt from the log)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.log import LogConfig, PartitionLog
from pykbroker.log.producer_state import ProducerStateManager
from pykbroker.records import NewRecord, build_batch


def _batch(pid: int, epoch: int, seq: int, n: int = 2) -> bytearray:
    return bytearray(build_batch([NewRecord(b"k", b"%d" % i) for i in range(n)],
                                 producer_id=pid, producer_epoch=epoch, base_sequence=seq))


def _open(path: Path) -> PartitionLog:
    return PartitionLog.open(path, LogConfig())


def test_duplicates_gaps_and_epochs(tmp_path: Path) -> None:
    log = _open(tmp_path / "t-0")
    first = log.append_as_leader(_batch(7, 0, 0), leader_epoch=0)
    second = log.append_as_leader(_batch(7, 0, 2), leader_epoch=0)
    assert (first.first_offset, second.first_offset) == (0, 2)
    # A retry of the first batch is not appended again: same offsets back.
    dup = log.append_as_leader(_batch(7, 0, 0), leader_epoch=0)
    assert (dup.first_offset, dup.last_offset) == (0, 1)
    assert log.log_end_offset == 4
    # A gap.
    with pytest.raises(KafkaError) as exc:
        log.append_as_leader(_batch(7, 0, 9), leader_epoch=0)
    assert exc.value.error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    # A new epoch must start at sequence 0; an older epoch is refused.
    with pytest.raises(KafkaError) as exc:
        log.append_as_leader(_batch(7, 1, 5), leader_epoch=0)
    assert exc.value.error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert log.append_as_leader(_batch(7, 1, 0), leader_epoch=0).first_offset == 4
    with pytest.raises(KafkaError) as exc:
        log.append_as_leader(_batch(7, 0, 4), leader_epoch=0)
    assert exc.value.error_code == ErrorCode.INVALID_PRODUCER_EPOCH
    # Another producer is independent, and may start anywhere (KIP-360).
    assert log.append_as_leader(_batch(8, 0, 100), leader_epoch=0).first_offset == 6
    # Only the last five batches are remembered for duplicates.
    for seq in range(2, 14, 2):
        log.append_as_leader(_batch(7, 1, seq), leader_epoch=0)
    with pytest.raises(KafkaError):
        log.append_as_leader(_batch(7, 1, 0), leader_epoch=0)
    log.close()


@pytest.mark.parametrize("keep_snapshot", [True, False])
def test_state_survives_restart(tmp_path: Path, keep_snapshot: bool) -> None:
    log = _open(tmp_path / "t-0")
    log.append_as_leader(_batch(7, 3, 0), leader_epoch=0)
    log.append_as_leader(_batch(7, 3, 2), leader_epoch=0)
    log.close()
    snapshots = list((tmp_path / "t-0").glob("*.snapshot"))
    assert [p.name for p in snapshots] == ["00000000000000000004.snapshot"]
    if not keep_snapshot:
        snapshots[0].unlink()  # rebuilt from the batch headers instead
    log = _open(tmp_path / "t-0")
    dup = log.append_as_leader(_batch(7, 3, 2), leader_epoch=0)
    assert dup.first_offset == 2 and log.log_end_offset == 4
    with pytest.raises(KafkaError) as exc:
        log.append_as_leader(_batch(7, 2, 0), leader_epoch=0)
    assert exc.value.error_code == ErrorCode.INVALID_PRODUCER_EPOCH
    assert log.append_as_leader(_batch(7, 3, 4), leader_epoch=0).first_offset == 4
    log.close()


def test_truncation_forgets_truncated_batches(tmp_path: Path) -> None:
    log = _open(tmp_path / "t-0")
    log.append_as_leader(_batch(7, 0, 0), leader_epoch=0)
    log.append_as_leader(_batch(7, 0, 2), leader_epoch=0)
    log.truncate_to(2)
    # Sequence 2 is no longer in the log: appending it again is new data, not a duplicate.
    assert log.append_as_leader(_batch(7, 0, 2), leader_epoch=0).first_offset == 2
    log.close()


def test_snapshot_corruption_and_expiry(tmp_path: Path) -> None:
    psm = ProducerStateManager(tmp_path)
    log = _open(tmp_path / "t-0")
    log.append_as_leader(_batch(1, 0, 0), leader_epoch=0)
    log.close()
    snap = next((tmp_path / "t-0").glob("*.snapshot"))
    snap.write_bytes(snap.read_bytes()[:-1] + b"\x00")  # CRC mismatch: ignored, rebuilt
    log = _open(tmp_path / "t-0")
    assert log.producer_state.producers[1].last_seq == 1
    assert log.producer_state.expire(now_ms=2**62, expiration_ms=1) == 1
    log.close()
    assert psm.load_snapshot(0) == 0
