from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from pykbroker.log import LogConfig, PartitionLog
from pykbroker.records import BatchHeader, iter_batches, validate_batch
from tests.log.helpers import T0, batch, batch_spans, open_log

CONFIG = LogConfig(segment_bytes=1200, index_interval_bytes=100)


def _name(base: int, suffix: str) -> str:
    return f"{base:020d}{suffix}"


def _build(path: Path, batches: int = 12) -> PartitionLog:
    log = PartitionLog.open(path, CONFIG)
    for i in range(batches):
        log.append_as_leader(
            batch(1 + i % 3, timestamps=[T0 + (i * 7) % 5 + j for j in range(1 + i % 3)]),
            leader_epoch=1,
        )
    return log


def _snapshot(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}


def _restore(path: Path, files: dict[str, bytes]) -> None:
    shutil.rmtree(path)
    path.mkdir()
    for name, data in files.items():
        (path / name).write_bytes(data)


def _assert_consistent(log: PartitionLog) -> None:
    data = log.read(log.log_start_offset, 1 << 30).data
    spans = [validate_batch(data, pos) for pos, _ in iter_batches(data)]
    assert spans[-1].next_offset == log.log_end_offset if spans else True
    for segment in log._segments:
        for entry in segment.offset_index.entries():
            found = segment.translate_offset(entry.offset)
            assert found is not None and found[0] == entry.position


def test_torn_tail_at_every_byte_of_last_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "t-0"
    log = _build(path)
    last_base = log.active_segment.base_offset
    log.close()
    files = _snapshot(path)
    log_name = _name(last_base, ".log")
    data = files[log_name]
    positions = [pos for pos, _ in iter_batches(data)]
    last_pos = positions[-1]
    last = BatchHeader.parse(data, last_pos)
    for cut in range(last_pos, len(data)):
        _restore(path, {**files, log_name: data[:cut]})
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            reopened = PartitionLog.open(path, CONFIG)
        assert reopened.log_end_offset == last.base_offset
        if cut > last_pos:
            assert str(path) in caplog.text and f"dropping {cut - last_pos} bytes" in caplog.text
        assert (
            reopened.read(0, 1 << 30).data
            == b"".join(files[_name(b, ".log")] for b in reopened.segments)[
                : reopened.size_in_bytes
            ]
        )
        info = reopened.append_as_leader(batch(2), leader_epoch=2)
        assert info.first_offset == last.base_offset
        _assert_consistent(reopened)
        reopened.close()


def test_garbage_and_flipped_bytes_are_cut(tmp_path: Path) -> None:
    path = tmp_path / "t-0"
    log = _build(path)
    last_base = log.active_segment.base_offset
    leo = log.log_end_offset
    log.close()
    files = _snapshot(path)
    log_name = _name(last_base, ".log")
    data = files[log_name]
    last_pos = [pos for pos, _ in iter_batches(data)][-1]
    last = BatchHeader.parse(data, last_pos)
    for garbage in (b"\x00" * 100, os.urandom(37), b"\xff" * 12, bytes(61)):
        _restore(path, {**files, log_name: data + garbage})
        reopened = PartitionLog.open(path, CONFIG)
        assert reopened.log_end_offset == leo
        _assert_consistent(reopened)
        reopened.close()
    # bytes 0-15 (base offset, length's neighbours, leader epoch) are outside the CRC
    for flip in range(last_pos + 8, len(data)):
        if last_pos + 12 <= flip < last_pos + 16:
            continue  # partition leader epoch: not covered by the CRC, as in Kafka
        mutated = bytearray(data)
        mutated[flip] ^= 0x40
        _restore(path, {**files, log_name: bytes(mutated)})
        reopened = PartitionLog.open(path, CONFIG)
        assert reopened.log_end_offset == last.base_offset, flip
        assert reopened.append_as_leader(batch(1), leader_epoch=2).first_offset == last.base_offset
        reopened.close()


def test_corruption_in_unflushed_segment_drops_later_segments(tmp_path: Path) -> None:
    path = tmp_path / "t-0"
    log = _build(path, batches=30)
    bases = log.segments
    assert len(bases) >= 3
    log.flush(bases[1])  # segment 0 is below the recovery point
    recovery_point = log.recovery_point
    log.close()
    victim = path / _name(bases[1], ".log")
    raw = bytearray(victim.read_bytes())
    raw[100] ^= 0x01
    victim.write_bytes(bytes(raw))
    reopened = PartitionLog.open(path, CONFIG, recovery_point=recovery_point)
    assert reopened.segments == bases[:2]
    assert reopened.log_end_offset < bases[2]
    assert not (path / _name(bases[2], ".log")).exists()
    _assert_consistent(reopened)


@pytest.mark.parametrize(
    "damage",
    ["delete", "truncate_odd", "garbage", "past_log", "decreasing", "time_garbage"],
)
def test_bad_index_files_are_rebuilt(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "t-0"
    log = _build(path, batches=30)
    expected = log.read(0, 1 << 30).data
    bases = log.segments
    log.close()
    files = _snapshot(path)
    for base in bases:
        index = path / _name(base, ".index")
        timeindex = path / _name(base, ".timeindex")
        if damage == "delete":
            index.unlink()
            timeindex.unlink()
        elif damage == "truncate_odd":
            index.write_bytes(index.read_bytes()[:-3])
        elif damage == "garbage":
            index.write_bytes(b"\x00\x00\x00\x05\x00\x00\x00\x03" * 4)
        elif damage == "past_log":
            index.write_bytes(index.read_bytes() + b"\x00\x00\x7f\x00\x00\x10\x00\x00")
        elif damage == "decreasing":
            index.write_bytes(index.read_bytes()[8:16] + index.read_bytes()[:8])
        else:
            timeindex.write_bytes(b"\x00\x00\x00\x00\x00\x00\x00\x09\x7f\x00\x00\x00")
    # trusted segments (clean shutdown) still get their indexes checked
    with caplog.at_level(logging.WARNING):
        reopened = PartitionLog.open(path, CONFIG, had_clean_shutdown=True)
    assert "rebuilding indexes" in caplog.text
    assert reopened.read(0, 1 << 30).data == expected
    reopened.close()
    for base in bases:
        for suffix in (".index", ".timeindex"):
            assert (path / _name(base, suffix)).read_bytes() == files[_name(base, suffix)]
    for offset in range(0, reopened.log_end_offset, 3):
        fetched = PartitionLog.open(path, CONFIG, had_clean_shutdown=True).read(offset, 1)
        (first, last), *_ = batch_spans(fetched.data)
        assert first <= offset <= last


def test_stray_files(tmp_path: Path) -> None:
    path = tmp_path / "t-0"
    log = _build(path, batches=30)
    bases = log.segments
    expected = log.read(0, 1 << 30).data
    log.close()
    (path / (_name(bases[0], ".log") + ".deleted")).write_bytes(b"old")
    (path / (_name(bases[1], ".log") + ".cleaned")).write_bytes(b"half")
    (path / (_name(bases[1], ".index") + ".swap")).write_bytes(b"junk")
    (path / _name(999_999, ".index")).write_bytes(b"")  # index without a log
    reopened = PartitionLog.open(path, CONFIG, had_clean_shutdown=True)
    assert reopened.read(0, 1 << 30).data == expected
    reopened.close()
    names = {p.name for p in path.iterdir()}
    assert not [n for n in names if n.endswith((".deleted", ".cleaned", ".swap"))]
    assert _name(999_999, ".index") not in names


def test_interrupted_swap_is_completed(tmp_path: Path) -> None:
    path = tmp_path / "t-0"
    log = _build(path, batches=30)
    bases = log.segments
    expected = log.read(0, 1 << 30).data
    log.close()
    # a "compacted" replacement for the first two segments, left as a .swap file
    merged = (path / _name(bases[0], ".log")).read_bytes() + (
        path / _name(bases[1], ".log")
    ).read_bytes()
    (path / (_name(bases[0], ".log") + ".swap")).write_bytes(merged)
    reopened = PartitionLog.open(path, CONFIG, had_clean_shutdown=True)
    assert reopened.segments == [bases[0], *bases[2:]]
    assert reopened.read(0, 1 << 30).data == expected
    assert not (path / _name(bases[1], ".log")).exists()
    _assert_consistent(reopened)


def test_empty_directory_and_empty_files(tmp_path: Path) -> None:
    path = tmp_path / "t-0"
    path.mkdir()
    (path / _name(0, ".log")).write_bytes(b"")
    log = open_log(path)
    assert (log.log_end_offset, log.segments) == (0, [0])
    assert log.append_as_leader(batch(1), leader_epoch=0).first_offset == 0
