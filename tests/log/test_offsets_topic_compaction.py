"""__consumer_offsets is compacted on a running broker: a group committing every 100 ms
(here: as fast as it can, many times over the same partitions) keeps it bounded."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pykbroker.testing import KafkaBroker, create_topic

kafka = pytest.importorskip("kafka")


def _offsets_log_size(data_dir: Path) -> int:
    return sum(p.stat().st_size for d in data_dir.glob("__consumer_offsets-*")
               for p in d.glob("*.log"))


def test_consumer_offsets_stay_bounded(tmp_path: Path) -> None:
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    broker = KafkaBroker(tmp_path, **{
        "offsets.topic.num.partitions": 1, "offsets.topic.segment.bytes": 16384,
        "log.cleaner.backoff.ms": 50, "log.cleaner.min.cleanable.ratio": 0.3,
    }).start()
    try:
        create_topic(broker.bootstrap_servers, "t")
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id="g",
                                 enable_auto_commit=False, api_version=(2, 5))
        tp = TopicPartition("t", 0)
        sizes = []
        for i in range(1500):
            consumer.commit({tp: OffsetAndMetadata(i, "", -1)})
            if i % 250 == 249:
                time.sleep(0.3)
                sizes.append(_offsets_log_size(tmp_path))
        consumer.close()
        # a commit record is ~100 bytes: uncleaned the log would pass 150 kB
        assert max(sizes[2:]) < 80_000, sizes
        assert sizes[-1] <= max(sizes[:3]) * 1.5, sizes
    finally:
        broker.stop()
