"""What both coordinators do with their internal topic: create it on first use and read a
partition of it back, batch by batch, for replay."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.records import BatchHeader, iter_batches

log = logging.getLogger("pykbroker.coordinator")


def create_internal_topic(topics: Any, name: str, partitions: int, replication_factor: int,
                          configs: dict[str, str], rf_setting: str) -> int:
    """Create ``name`` (or find it, if someone else just did); returns its partition count.

    Kafka's default replication factor for internal topics is 3, which a cluster with fewer
    live brokers could never satisfy; like a development-mode Kafka we use min(configured,
    live brokers) and warn that we did.
    """
    live = len(topics.live_brokers)
    rf = min(replication_factor, live)
    if rf < replication_factor:
        log.warning("creating %s with replication factor %d: only %d live broker(s), %s=%d",
                    name, rf, live, rf_setting, replication_factor)
    try:
        info = topics.create_topic(name, partitions, rf, configs=configs)
    except KafkaError as exc:
        if exc.error_code != ErrorCode.TOPIC_ALREADY_EXISTS:
            raise
        info = topics.get(name)
    return int(info.partition_count)


def stored_batches(part: Any, buffer_size: int
                   ) -> Iterator[tuple[bytes | memoryview, int, BatchHeader]]:
    """``(data, position, header)`` for every batch of a hosted partition, from its log
    start to its log end, read ``buffer_size`` bytes at a time. The end, not the high
    watermark, as Kafka loads coordinators: a new leader's high watermark waits for its
    followers' next fetches, while its log holds everything the ISR had."""
    plog = part.log
    offset, end = int(plog.log_start_offset), int(plog.log_end_offset)
    while offset < end:
        data = plog.read(offset, buffer_size, max_offset=end).data
        if not data:
            return
        for pos, header in iter_batches(data, allow_partial=True):
            offset = header.next_offset
            yield data, pos, header
