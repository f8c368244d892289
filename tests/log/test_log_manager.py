from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.log import (
    InconsistentBrokerIdError,
    InconsistentClusterIdError,
    LogConfig,
    LogManager,
    parse_partition_dir,
)
from pykbroker.log.checkpoints import (
    CLEAN_SHUTDOWN_FILE,
    LOG_START_OFFSET_CHECKPOINT,
    RECOVERY_POINT_CHECKPOINT,
    read_offset_checkpoint,
)
from tests.log.helpers import T0, FakeClock, batch

CONFIG = LogConfig(segment_bytes=500)
TOPICS = ["plain", "with-dashes-9", "dots.and-dashes.1", "__consumer_offsets", "a-0-0"]


def test_parse_partition_dir() -> None:
    assert parse_partition_dir("with-dashes-9-12") == ("with-dashes-9", 12)
    assert parse_partition_dir("dots.and-dashes.1-0") == ("dots.and-dashes.1", 0)
    for bad in ("nodash", "-3", "topic-", "topic-x", "topic-1.abc-delete", "bad topic-1", "..-1"):
        assert parse_partition_dir(bad) is None


def _populate(manager: LogManager) -> dict[tuple[str, int], tuple[uuid.UUID, int, int]]:
    expected = {}
    for i, topic in enumerate(TOPICS):
        tid = uuid.uuid4()
        for partition in range(2):
            log = manager.get_or_create(topic, partition, CONFIG, tid)
            for _ in range(i + partition * 3):
                log.append_as_leader(batch(4, value_size=30), leader_epoch=2)
            if i == 2 and partition == 1:
                log.delete_records_before(5)
            expected[(topic, partition)] = (tid, log.log_start_offset, log.log_end_offset)
    return expected


def test_reload_after_close_finds_everything(tmp_path: Path) -> None:
    dirs = [tmp_path / "d1", tmp_path / "d2"]
    manager = LogManager(dirs, CONFIG, now_ms=FakeClock())
    expected = _populate(manager)
    assert {d: len(list(d.iterdir())) for d in dirs} == {dirs[0]: 5, dirs[1]: 5}
    manager.close()
    for d in dirs:
        assert (d / CLEAN_SHUTDOWN_FILE).exists()
        assert read_offset_checkpoint(d / RECOVERY_POINT_CHECKPOINT)
    reloaded = LogManager(dirs, CONFIG)
    logs = reloaded.load_all()
    assert set(logs) == set(expected)
    for tp, (tid, start, end) in expected.items():
        log = logs[tp]
        assert (log.topic_id, log.log_start_offset, log.log_end_offset) == (tid, start, end)
        assert log.recovery_point == end
        assert log.leader_epoch_cache.entries == ([(2, start)] if end else [])
    for d in dirs:
        assert not (d / CLEAN_SHUTDOWN_FILE).exists()
    with pytest.raises(KafkaError) as err:
        reloaded.get_or_create("plain", 0, CONFIG, uuid.uuid4())
    assert err.value.error_code == ErrorCode.INCONSISTENT_TOPIC_ID
    reloaded.close()


def test_unclean_reload_uses_checkpoints(tmp_path: Path) -> None:
    manager = LogManager([tmp_path], CONFIG)
    log = manager.get_or_create("t", 0, CONFIG, uuid.uuid4())
    for _ in range(10):
        log.append_as_leader(batch(2, ts=T0), leader_epoch=0)
    log.delete_records_before(3)
    log.flush()
    manager.checkpoint()
    assert read_offset_checkpoint(tmp_path / LOG_START_OFFSET_CHECKPOINT) == {("t", 0): 3}
    log.append_as_leader(batch(2, ts=T0), leader_epoch=0)  # after the checkpoint, unflushed
    # no close(): simulate a crash; the active segment is recovered from the log itself
    again = LogManager([tmp_path], CONFIG).load_all()[("t", 0)]
    assert (again.log_start_offset, again.log_end_offset, again.recovery_point) == (3, 22, 20)


def test_delete_and_leftover_delete_dirs(tmp_path: Path) -> None:
    manager = LogManager([tmp_path], CONFIG)
    log = manager.get_or_create("gone", 0)
    log.append_as_leader(batch(1), leader_epoch=0)
    assert manager.delete("gone", 0) and not manager.delete("gone", 0)
    assert manager.get("gone", 0) is None
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "old-0.0123abcd-delete").mkdir()
    (tmp_path / "moving-0-future").mkdir()
    (tmp_path / "not a partition").mkdir()
    (tmp_path / "stray-file-0").write_text("")
    assert manager.load_all() == {}
    assert not (tmp_path / "old-0.0123abcd-delete").exists()


def test_invalid_topic_names(tmp_path: Path) -> None:
    manager = LogManager([tmp_path], CONFIG)
    for topic in ("bad/name", "", "..", "x" * 250):
        with pytest.raises(KafkaError):
            manager.get_or_create(topic, 0)


def test_meta_properties_across_dirs(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    manager = LogManager(dirs, CONFIG)
    cluster_id = manager.read_or_create_meta(1)
    assert len(cluster_id) == 22
    assert LogManager(dirs, CONFIG).read_or_create_meta(1) == cluster_id
    (dirs[1] / "meta.properties").unlink()
    assert LogManager(dirs, CONFIG).read_or_create_meta(1) == cluster_id
    assert f"cluster.id={cluster_id}" in (dirs[1] / "meta.properties").read_text()
    with pytest.raises(InconsistentBrokerIdError):
        LogManager(dirs, CONFIG).read_or_create_meta(2)
    (dirs[1] / "meta.properties").write_text("version=0\nbroker.id=1\ncluster.id=other\n")
    with pytest.raises(InconsistentClusterIdError):
        LogManager(dirs, CONFIG).read_or_create_meta(1)


def test_retention_and_flush_over_all_logs(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    config = LogConfig(segment_bytes=500, retention_ms=1000, flush_messages=1)
    manager = LogManager([tmp_path], config, now_ms=clock)
    for p in range(3):
        log = manager.get_or_create("r", p)
        for _ in range(6):
            log.append_as_leader(batch(2, ts=T0, value_size=60), leader_epoch=0)
    assert manager.flush_if_needed() == 3
    clock.advance(2000)
    hw = {("r", 0): 0}
    deleted = manager.apply_retention(high_watermark=lambda tp: hw.get(tp))
    assert deleted > 0
    assert manager.get("r", 0).log_start_offset == 0  # type: ignore[union-attr]
    assert manager.get("r", 1).log_start_offset == 12  # type: ignore[union-attr]
