from __future__ import annotations

import pytest

from pykbroker.log import LONG_MAX, LogConfig


def test_defaults_are_kafkas() -> None:
    c = LogConfig()
    assert c.segment_bytes == 1 << 30
    assert c.segment_ms == c.retention_ms == 604_800_000
    assert c.segment_index_bytes == 10_485_760 and c.index_interval_bytes == 4096
    assert c.retention_bytes == -1 and c.max_message_bytes == 1_048_588
    assert c.message_timestamp_type == "CreateTime" and not c.log_append_time
    assert c.flush_messages == c.flush_ms == c.message_timestamp_after_max_ms == LONG_MAX
    assert c.cleanup_policy == ("delete",) and c.delete_enabled and not c.compact_enabled
    assert c.file_delete_delay_ms == 60_000 and c.preallocate is False


def test_from_mapping_uses_kafka_keys_and_ignores_others() -> None:
    c = LogConfig.from_mapping(
        {
            "segment.bytes": 1024,
            "retention.ms": -1,
            "cleanup.policy": ["compact", "delete"],
            "message.timestamp.type": "LogAppendTime",
            "min.insync.replicas": 2,
            "preallocate": "true",
            "flush.messages": "1",
        }
    )
    assert c.segment_bytes == 1024 and c.retention_ms == -1 and c.flush_messages == 1
    assert c.cleanup_policy == ("compact", "delete") and c.compact_enabled
    assert c.log_append_time and c.preallocate
    assert LogConfig.from_mapping({"cleanup.policy": "compact"}).cleanup_policy == ("compact",)
    assert LogConfig.from_mapping({"segment.ms": 5}, base=c).segment_bytes == 1024
    assert c.to_mapping()["segment.bytes"] == 1024


def test_deprecated_difference_fills_before_and_after() -> None:
    c = LogConfig.from_mapping(
        {"message.timestamp.difference.max.ms": 100, "message.timestamp.after.max.ms": 5}
    )
    assert (c.message_timestamp_before_max_ms, c.message_timestamp_after_max_ms) == (100, 5)


@pytest.mark.parametrize(
    "props",
    [
        {"segment.bytes": 10},
        {"retention.ms": -2},
        {"message.timestamp.type": "Now"},
        {"cleanup.policy": ["forever"]},
        {"segment.bytes": True},
        {"segment.bytes": "lots"},
    ],
)
def test_invalid_values_raise(props: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        LogConfig.from_mapping(props)
