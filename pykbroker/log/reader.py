"""Fetch reads: whole batches from the batch containing the fetch offset, up to a byte budget.

Kafka's fetch rules that clients depend on: a fetch at an offset inside a batch returns that
whole batch; a first batch larger than the budget is still returned whole (when the caller
allows it, i.e. for the first partition of a response); nothing past ``max_offset`` (the high
watermark) is returned. Unlike Kafka, which may end a response in a partial batch and stops at
a segment boundary, this never returns a partial batch and continues into the next segment
while budget remains, so small segments do not shrink fetches (a zero-copy read of large
batches does stop at the end of its segment, as Kafka's reads do).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Final

from pykbroker.log.segment import LogSegment
from pykbroker.log.store import FetchData, TimestampAndOffset

__all__ = ["SENDFILE_MIN", "max_timestamp_and_offset", "offset_for_timestamp", "read_batches"]

# Batches at least this large go to the socket by sendfile when the caller allows it.
SENDFILE_MIN: Final = 64 * 1024


def read_batches(
    segments: Sequence[LogSegment],
    bases: Sequence[int],
    offset: int,
    max_bytes: int,
    limit: int,
    min_one_batch: bool,
    zero_copy: bool = False,
) -> FetchData:
    """Read from ``offset`` (already range-checked) up to offset ``limit`` (exclusive).

    With ``zero_copy``, a read that starts with a batch of SENDFILE_MIN bytes or more comes
    back as a :class:`FileSlice` of one segment (headers read, data left in the page cache
    for sendfile); smaller batches, whose headers would cost a read each, are read as bytes.
    """
    chunks: list[bytes | memoryview] = []
    first_offset = -1
    next_offset = offset
    remaining = max_bytes
    i = max(bisect_right(bases, offset) - 1, 0)
    while i < len(segments) and next_offset < limit:
        segment = segments[i]
        found = segment.translate_offset(next_offset)
        if found is None:
            i += 1
            continue
        position, header = found
        if header.next_offset > limit:
            break
        if zero_copy and not chunks and header.size >= SENDFILE_MIN:
            if header.size > remaining:
                if not min_one_batch:
                    break
                used, after = header.size, header.next_offset
            else:
                used, after = segment.whole_batches(position, remaining, limit)
            return FetchData(header.base_offset, after, segment.slice(position, used))
        if header.size > remaining:
            if not chunks and min_one_batch:
                chunks.append(segment.read(position, header.size))
                first_offset = header.base_offset
                next_offset = header.next_offset
            break
        buf = segment.read(position, remaining)
        used, after = segment.whole_batches(position, len(buf), limit, buf)
        if not used:
            break
        chunks.append(buf if used == len(buf) else memoryview(buf)[:used])  # no copy
        if first_offset < 0:
            first_offset = header.base_offset
        next_offset = after
        remaining -= used
        if position + used < segment.size:
            break  # stopped by the byte budget or the offset limit inside this segment
        i += 1
    if not chunks:
        return FetchData(offset, offset, b"")
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return FetchData(first_offset, next_offset, data)


def offset_for_timestamp(
    segments: Sequence[LogSegment], timestamp: int, log_start_offset: int
) -> TimestampAndOffset | None:
    """The first record at or after ``log_start_offset`` with a timestamp >= ``timestamp``.

    Only segments whose max timestamp qualifies are searched, each from the batch its time
    index points at (Kafka's ``fetchOffsetByTimestamp``).
    """
    for segment in segments:
        if segment.max_timestamp < timestamp:
            continue
        found = segment.find_offset_by_timestamp(timestamp, log_start_offset)
        if found is not None:
            return TimestampAndOffset(*found)
    return None


def max_timestamp_and_offset(segments: Sequence[LogSegment]) -> TimestampAndOffset:
    """The largest timestamp in the log and the offset of the first record carrying it."""
    best: LogSegment | None = None
    for segment in segments:
        if segment.max_timestamp >= 0 and (
            best is None or segment.max_timestamp > best.max_timestamp
        ):
            best = segment
    if best is None:
        return TimestampAndOffset(-1, -1)
    return TimestampAndOffset(best.max_timestamp, best.exact_offset_of_max_timestamp())
