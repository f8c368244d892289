"""Which old segments a retention pass deletes (Kafka's ``deleteOldSegments``), as a plan.

Kept apart from the log so the policy is a pure function of segment metadata: the log then
deletes the planned count of oldest segments in one synchronous step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pykbroker.log.log_config import LogConfig
from pykbroker.log.segment import LogSegment

__all__ = ["segments_to_delete"]

Predicate = Callable[[LogSegment, LogSegment | None], bool]


def segments_to_delete(
    segments: Sequence[LogSegment],
    config: LogConfig,
    now_ms: int,
    log_end_offset: int,
    log_start_offset: int,
    upper_bound_offset: int,
) -> int:
    """How many of the oldest segments to delete; all of them means "roll first".

    Three passes, each over what the previous left: retention.ms against each segment's
    largest timestamp (its file mtime when no record has one), retention.bytes removing
    oldest whole segments while the rest stays at or above the limit (both only with
    cleanup.policy delete), then segments wholly below the log start offset. A segment
    qualifies only if it ends at or below ``upper_bound_offset`` (the high watermark), and
    an empty active segment never does.
    """
    live = list(segments)
    total = 0

    def run(predicate: Predicate) -> None:
        nonlocal live, total
        count = 0
        for i, segment in enumerate(live):
            following = live[i + 1] if i + 1 < len(live) else None
            if following is None and segment.size == 0:
                break
            end = following.base_offset if following is not None else log_end_offset
            if not (end <= upper_bound_offset and predicate(segment, following)):
                break
            count += 1
        total += count
        live = live[count:]

    if config.delete_enabled and config.retention_ms >= 0:

        def expired(segment: LogSegment, _following: LogSegment | None) -> bool:
            largest = segment.max_timestamp
            if largest < 0:
                largest = segment.last_modified_ms()
            return now_ms - largest > config.retention_ms

        run(expired)
    if config.delete_enabled and config.retention_bytes >= 0:
        excess = sum(s.size for s in live) - config.retention_bytes
        if excess >= 0:

            def oversized(segment: LogSegment, _following: LogSegment | None) -> bool:
                nonlocal excess
                if excess - segment.size < 0:
                    return False
                excess -= segment.size
                return True

            run(oversized)

    def below_start(_segment: LogSegment, following: LogSegment | None) -> bool:
        return following is not None and following.base_offset <= log_start_offset

    run(below_start)
    return total
