"""The cleaner and transactions / idempotence: aborted data removed, markers removed by the
two-pass rule, the last batch of each producer kept, txn index and producer state intact;
compressed batches rewritten with the topic codec and valid headers."""

from __future__ import annotations

from pathlib import Path

import pytest

from pykbroker.log import PartitionLog
from pykbroker.records import GZIP, LZ4, NONE, SNAPPY, ZSTD, iter_records
from tests.log.cleaner_helpers import batches, clean, compact_log, latest, put, read_committed
from tests.log.helpers import FakeClock

RETENTION = 1000


def _pad(log: PartitionLog, n: int = 15) -> None:
    for i in range(n):
        put(log, (b"pad", b"p%d" % i + b"x" * 50))


def test_aborted_data_removed_and_markers_go_after_two_passes(tmp_path: Path) -> None:
    clock = FakeClock()
    log = compact_log(tmp_path / "t-0", clock, delete_retention_ms=RETENTION)
    put(log, (b"k", b"committed"), pid=1, epoch=0, seq=0, txn=True)
    log.append_marker(1, 0, True, 0, leader_epoch=0)
    put(log, (b"k", b"aborted"), pid=2, epoch=0, seq=0, txn=True)
    log.append_marker(2, 0, False, 0, leader_epoch=0)
    put(log, (b"k", b"newer"))
    _pad(log)
    assert log.collect_aborted(0, log.log_end_offset)
    clean(log)
    kinds = [(h.is_control, h.producer_id, h.records_count) for h, _ in batches(log)]
    # pid 2's aborted batch is its producer's last data batch: kept, empty
    assert (False, 2, 0) in kinds and (False, 1, 0) in kinds
    assert latest(read_committed(log))[b"k"][1] == b"newer"
    assert all(v != b"aborted" for _, _, v in read_committed(log))
    markers = [h for h, _ in batches(log) if h.is_control]
    assert len(markers) == 2
    # while the producers are active their last batches stay, so do the markers; once they
    # expire, the data goes, then (no data seen) the markers get a delete horizon, then go
    clock.advance(10)
    assert log.producer_state.expire(clock(), 5) == 2
    horizons_seen = False
    for _ in range(4):
        put(log, (b"z", b"1"))
        _pad(log, 3)
        clean(log)
        markers = [h for h, _ in batches(log) if h.is_control]
        horizons_seen |= any(h.has_delete_horizon for h in markers)
        clock.advance(RETENTION)
    assert horizons_seen and not [h for h, _ in batches(log) if h.is_control]
    assert not [h for h, _ in batches(log) if h.producer_id in (1, 2)]
    assert latest(read_committed(log))[b"k"][1] == b"newer"


def test_txn_index_and_producer_state_after_cleaning_and_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    log = compact_log(tmp_path / "t-0", clock)
    for seq in range(3):
        put(log, (b"a", b"v%d" % seq), pid=5, epoch=0, seq=seq)
    put(log, (b"b", b"x"), pid=6, epoch=1, seq=0, txn=True)
    log.append_marker(6, 1, False, 3, leader_epoch=0)
    _pad(log)
    clean(log)
    for reopen in (False, True):
        current = _reopen(log) if reopen else log
        producers = current.producer_state.producers
        assert producers[5].last_seq == 2 and producers[6].epoch == 1
        assert all(v != b"x" for _, _, v in read_committed(current))
        end = current.log_end_offset
        again = put(current, (b"a", b"v2"), pid=5, epoch=0, seq=2)  # a retried batch
        assert again == 2 and current.log_end_offset == end
        log = current


def test_open_transaction_bounds_the_cleaning(tmp_path: Path) -> None:
    log = compact_log(tmp_path / "t-0")
    put(log, (b"k", b"old"))
    open_at = put(log, (b"k", b"pending"), pid=9, epoch=0, seq=0, txn=True)
    _pad(log)
    result = clean(log)
    assert result is None or result.end_offset <= open_at
    assert [v for _, k, v in read_committed(log) if k == b"k"][:1] == [b"old"]


def _reopen(log: PartitionLog) -> PartitionLog:
    log.close()
    return PartitionLog.open(log.directory, log.config, now_ms=log._now_ms,
                             had_clean_shutdown=False)


@pytest.mark.parametrize("topic_codec", ["producer", "zstd", "uncompressed"])
def test_compressed_batches_rewritten_with_topic_codec(tmp_path: Path, topic_codec: str) -> None:
    log = compact_log(tmp_path / "t-0", compression_type=topic_codec)
    codecs = [NONE, GZIP, SNAPPY, LZ4, ZSTD]
    headers = (("h1", b"x"), ("h2", None))
    for r in range(3):
        for i, codec in enumerate(codecs):
            put(log, (b"k%d" % i, b"v%d" % r), (b"s%d" % i, b"w%d" % r), codec=codec,
                headers=headers)
    _pad(log)
    clean(log)
    expect = {"producer": None, "zstd": ZSTD, "uncompressed": NONE}[topic_codec]
    rewritten = 0
    for header, raw in batches(log):  # every batch passes its CRC and header checks
        records = list(iter_records(raw))
        assert header.records_count == len(records)
        assert all(header.base_offset <= r.offset <= header.last_offset for r in records)
        if records and records[0].key is not None and records[0].key.startswith(b"s"):
            rewritten += 1
            assert header.compression in ((expect,) if expect is not None else tuple(codecs))
            assert all(r.headers == list(headers) for r in records)
    assert rewritten == 0 or rewritten <= len(codecs)
    seen = latest(read_committed(log))
    assert seen[b"k3"][1] == b"v2" and seen[b"s4"][1] == b"w2"
