"""Produce-time inspection of a compressed batch's records, streamed and bounded.

Kafka's LogValidator walks the records of every compressed batch a producer sends (count,
offsets, framing) through a streaming decompressor, record by record, so it never holds the
whole decompressed batch. We do the same here, with two additions a small shared broker needs:

* a hard cap on the decompressed bytes (:func:`max_decompressed_size`): a 1 MB gzip "bomb" that
  inflates to 1 GiB is refused after at most the cap has gone through the decompressor, in
  chunks of :data:`CHUNK` bytes; only one chunk (plus one incomplete record carried over to the
  next chunk) is held at a time;
* the walk can be split: :meth:`RecordsCheck.run` takes a budget of decompressed bytes, so the
  produce handler checks small batches inline and finishes large ones in a worker thread.

What is checked, per record: the length varint (at least the 6 bytes of an empty record, no
longer than the data left), the timestampDelta (at most 10 bytes) and the offset delta (must be
the record's index: 0..n-1 in order), and room in the declared length for the key, value and
header fields; then the records must end exactly at the end of the decompressed data and their
number must equal the header's record count. The key, value and header lengths inside a record
are not checked against its length (Kafka's skipKeyValueIterator does): that would double the
per-record cost, the Python walk being most of what this check costs, and a record whose inner
lengths lie still occupies exactly its declared bytes, so the batch's framing holds. Kafka
rewrites (recompresses) a v2 batch whose inner offsets are wrong; we store batches as they were
sent, so such a batch is refused.

Errors, mapped to Kafka's codes by the produce path:

* :class:`~pykbroker.errors.CorruptRecordError`: the codec cannot decode the data (bad or
  truncated stream) -> ``CORRUPT_MESSAGE``;
* :class:`InvalidRecordsError`: the records disagree with the header or are badly framed
  (Kafka's ``InvalidRecordException``) -> ``INVALID_RECORD``;
* :class:`DecompressedTooLargeError`: more than the cap -> ``MESSAGE_TOO_LARGE``, see
  :func:`max_decompressed_size`.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Final

from pykbroker.errors import CorruptRecordError, DecodeError
from pykbroker.records.batch import BATCH_OVERHEAD, BatchHeader
from pykbroker.records.compression import CODEC_NAMES, GZIP, LZ4, SNAPPY, XERIAL_MAGIC, ZSTD
from pykbroker.records.record_walk import skip_simple_records
from pykbroker.records.varint import read_varint

__all__ = [
    "CHUNK",
    "DECOMPRESSED_FACTOR",
    "DECOMPRESSED_FLOOR",
    "DecompressedTooLargeError",
    "InvalidRecordsError",
    "RecordsCheck",
    "check_compressed_records",
    "max_decompressed_size",
]

Buffer = bytes | bytearray | memoryview

#: Most decompressed bytes produced (and held) per step of the walk. zstd may add one block.
CHUNK: Final = 256 * 1024
#: The cap is this multiple of the topic's max.message.bytes ...
DECOMPRESSED_FACTOR: Final = 64
#: ... and never below this (the limit iter_records has always used for any look inside).
DECOMPRESSED_FLOOR: Final = 64 * 1024 * 1024
#: Nor above this: batch sizes are int32 on the wire, nothing honest inflates further.
DECOMPRESSED_CEILING: Final = 2**31 - 1

_MIN_RECORD = 7  # length varint + the 6 one-byte fields of an empty record
_MIN_BODY = 6


class InvalidRecordsError(DecodeError):
    """Records that disagree with their batch header or are badly framed (INVALID_RECORD)."""


class DecompressedTooLargeError(DecodeError):
    """A records section that inflates past the cap (MESSAGE_TOO_LARGE)."""


def max_decompressed_size(max_message_bytes: int) -> int:
    """Most decompressed bytes one produced batch may hold on a topic.

    ``max.message.bytes`` bounds the compressed batch (1 MiB by default); honest data
    compresses 2-10x, text and JSON up to ~20x with zstd, so 64x leaves room for very
    repetitive data, and the 64 MiB floor keeps small-limit topics usable. A gzip bomb reaches
    ~1000x, a zstd one ~30000x, so bombs are still cut off early. The cap bounds the work (time)
    of a check; memory stays one :data:`CHUNK` plus one record whatever the cap.

    Past the cap the batch gets ``MESSAGE_TOO_LARGE``, Kafka's code for "larger than this broker
    accepts": it is not retriable as is (CORRUPT_MESSAGE is, so a Java producer would resend
    the same batch until its delivery timeout), it does not claim the records are malformed
    (they may be fine, INVALID_RECORD would say otherwise), and the Java producer answers it by
    splitting a compressed batch in two and retrying, which rescues an honest producer whose
    batch compressed unusually well.
    """
    return min(max(DECOMPRESSED_FLOOR, DECOMPRESSED_FACTOR * max_message_bytes),
               DECOMPRESSED_CEILING)


# -- streaming decoders: each yields chunks of at most about CHUNK bytes ---------------------


def _gzip_chunks(data: memoryview, cap: int) -> Iterator[bytes]:
    """Concatenated gzip members, as Java's ``GZIPInputStream`` reads them."""
    rest: Buffer = data
    while True:
        obj = zlib.decompressobj(31)
        tail = rest
        while not obj.eof:
            piece = obj.decompress(tail, CHUNK)
            new_tail = obj.unconsumed_tail
            if piece:
                yield piece
            elif not new_tail or len(new_tail) == len(tail):
                if not obj.eof:
                    raise CorruptRecordError("truncated gzip stream")
            tail = new_tail
        rest = obj.unused_data
        if not rest:
            return


def _snappy_block(block: memoryview, room: int) -> bytes:
    import cramjam

    size = int(cramjam.snappy.decompress_raw_len(block))
    if size > room:
        raise DecompressedTooLargeError(
            f"snappy records section decompresses to more than the limit ({size} > {room})")
    out = bytes(cramjam.snappy.decompress_raw(block))
    if len(out) != size:
        raise CorruptRecordError("snappy output length differs from its preamble")
    return out


def _snappy_chunks(data: memoryview, cap: int) -> Iterator[bytes]:
    """Raw snappy (one block, its length read before anything is allocated: at most ~21x the
    input) or xerial framing (block by block)."""
    if not data:
        raise CorruptRecordError("empty snappy stream")
    if bytes(data[:8]) != XERIAL_MAGIC:
        yield _snappy_block(data, cap)
        return
    if len(data) < 16:
        raise CorruptRecordError("truncated xerial snappy header")
    pos, end, total = 16, len(data), 0
    while pos < end:
        if pos + 4 > end:
            raise CorruptRecordError("truncated xerial snappy block length")
        block_len = int.from_bytes(data[pos:pos + 4], "big", signed=True)
        pos += 4
        if block_len < 0 or pos + block_len > end:
            raise CorruptRecordError(f"xerial snappy block length {block_len} out of bounds")
        piece = _snappy_block(data[pos:pos + block_len], cap - total)
        total += len(piece)
        pos += block_len
        yield piece


def _lz4_chunks(data: memoryview, cap: int) -> Iterator[bytes]:
    """Concatenated lz4 frames, decoded where they lie with python-lz4's low-level calls
    (``LZ4FrameDecompressor`` copies the unread input at each call: for a 1 MB batch read in
    256 KiB pieces that copying took longer than the decoding)."""
    from lz4.frame import (
        create_decompression_context,
        decompress_chunk,
        reset_decompression_context,
    )

    end = len(data)
    if not end:
        raise CorruptRecordError("empty lz4 stream")
    context = create_decompression_context()
    pos = 0
    while True:
        piece, used, eof = decompress_chunk(context, data[pos:], max_length=CHUNK)
        pos += used
        if piece:
            yield piece
        if eof:
            if pos >= end:
                return
            reset_decompression_context(context)  # another frame follows
        elif not piece and not used:
            raise CorruptRecordError("truncated lz4 frame")


_ZSTD_MAGIC: Final = 0xFD2FB528
_ZSTD_BLOCK_MAX: Final = 128 * 1024
def _zstd_chunks(data: memoryview, cap: int) -> Iterator[bytes]:
    """Concatenated zstd frames (content size optional: zstd-jni omits it).

    zstandard's streaming objects have no output bound (and its readers accept truncated
    frames), so we walk the frame and block headers ourselves (RFC 8878: 3-byte block headers,
    at most 128 KiB out per block) and feed whole blocks, about CHUNK bytes of output at a time.
    """
    import zstandard

    end = len(data)
    if not end:
        raise CorruptRecordError("empty zstd stream")
    # One decompressor per check (about 9 us), not per thread: a check may be suspended on the
    # event loop and finished in a worker thread while the loop starts others.
    decompressor = zstandard.ZstdDecompressor()
    pos = 0
    while pos < end:
        if end - pos < 5:
            raise CorruptRecordError("truncated zstd frame header")
        magic = int.from_bytes(data[pos:pos + 4], "little")
        if magic & 0xFFFFFFF0 == 0x184D2A50:  # skippable frame
            if end - pos < 8:
                raise CorruptRecordError("truncated zstd skippable frame")
            pos += 8 + int.from_bytes(data[pos + 4:pos + 8], "little")
            if pos > end:
                raise CorruptRecordError("truncated zstd skippable frame")
            continue
        if magic != _ZSTD_MAGIC:
            raise CorruptRecordError(f"invalid zstd frame magic {magic:#010x}")
        fhd = data[pos + 4]
        if fhd & 0x08:
            raise CorruptRecordError("zstd frame header has its reserved bit set")
        single = fhd & 0x20
        fcs = (1 if single else 0, 2, 4, 8)[fhd >> 6]
        p = pos + 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + fcs
        obj = decompressor.decompressobj()
        fed = pos
        pending = 0
        while True:
            if p + 3 > end:
                raise CorruptRecordError("truncated zstd frame")
            bh = data[p] | data[p + 1] << 8 | data[p + 2] << 16
            kind = (bh >> 1) & 3
            size = bh >> 3
            if kind == 3:
                raise CorruptRecordError("zstd block of reserved type")
            if size > _ZSTD_BLOCK_MAX:
                raise CorruptRecordError(f"zstd block of {size} bytes")
            p += 3 + (1 if kind == 1 else size)
            pending += size if kind != 2 else _ZSTD_BLOCK_MAX
            last = bh & 1
            if last and fhd & 0x04:
                p += 4  # content checksum
            if p > end:
                raise CorruptRecordError("truncated zstd frame")
            if last or pending >= CHUNK:
                piece = obj.decompress(data[fed:p])
                fed, pending = p, 0
                if piece:
                    yield piece
            if last:
                break
        if not obj.eof:
            raise CorruptRecordError("zstd frame did not end where its last block does")
        pos = p


_STREAMS = {GZIP: _gzip_chunks, SNAPPY: _snappy_chunks, LZ4: _lz4_chunks, ZSTD: _zstd_chunks}


# -- the walk --------------------------------------------------------------------------------


class RecordsCheck:
    """The records walk of one compressed batch, resumable: :meth:`run` until it returns True.

    Construct with the batch (already header- and CRC-checked) and the cap; ``run(budget)``
    decompresses and walks at least ``budget`` more bytes (or to the end) and returns whether
    the check is complete; errors are raised as described in the module docstring. A check may
    be continued in another thread, never in two at once.

    Chunks are walked where they lie; only a record cut by a chunk boundary is copied: its
    pieces are kept until the chunk that completes it (its length is known from its first
    bytes), then joined once, so even a record of many chunks costs one copy.
    """

    __slots__ = ("_cap", "_carry", "_carry_len", "_chunks", "_codec", "_count", "_done",
                 "_index", "_need", "_total")

    @property
    def decompressed(self) -> int:
        """Decompressed bytes produced so far, refused or not."""
        return self._total

    def __init__(self, batch: Buffer, header: BatchHeader, cap: int) -> None:
        codec = header.compression
        stream = _STREAMS.get(codec)
        if stream is None:
            raise CorruptRecordError(f"unknown compression codec {codec}")
        count = header.records_count
        if count * _MIN_RECORD > cap:
            raise DecompressedTooLargeError(
                f"{count} records cannot fit in the {cap}-byte limit on decompressed batches")
        self._codec = codec
        self._count = count
        self._cap = cap
        section = memoryview(batch)[BATCH_OVERHEAD:header.batch_length + 12]
        self._chunks = stream(section, cap)
        self._carry: list[bytes] = []  # pieces of the record cut by the last chunk boundary
        self._carry_len = 0
        self._need = 0  # that record's size with its length varint; 0: not known yet
        self._index = 0
        self._total = 0
        self._done = False

    def run(self, budget: int = DECOMPRESSED_CEILING) -> bool:
        if self._done:
            return True
        name = CODEC_NAMES[self._codec]
        count, cap = self._count, self._cap
        carry, carry_len, need = self._carry, self._carry_len, self._need
        index, total = self._index, self._total
        stop = total + budget
        try:
            for chunk in self._chunks:
                total += len(chunk)
                self._total = total
                if total > cap:
                    raise DecompressedTooLargeError(
                        f"{name} records section decompresses to more than {cap} bytes, this "
                        "broker's limit on decompressed batches")
                start = 0
                if carry_len:
                    if not need:
                        need = _record_size(b"".join(carry) + chunk[:5])
                    if not need or carry_len + len(chunk) < need:
                        carry.append(chunk)
                        carry_len += len(chunk)
                    else:
                        start = need - carry_len
                        carry.append(chunk[:start])
                        joined = b"".join(carry)
                        _, index = _walk(joined, 0, index, count,
                                         cap - total + len(chunk) - start, cap)
                        carry, carry_len, need = [], 0, 0
                if not carry_len:
                    pos, index = _walk(chunk, start, index, count, cap - total, cap)
                    if pos < len(chunk):
                        if index == count:
                            raise InvalidRecordsError(
                                "Incorrect declared batch size, records still remaining: more "
                                f"data follows the {count} records the batch header declares")
                        carry = [chunk[pos:]]
                        carry_len = len(chunk) - pos
                        need = _record_size(chunk[pos:pos + 5])
                if total >= stop:
                    self._carry, self._carry_len, self._need = carry, carry_len, need
                    self._index, self._total = index, total
                    return False
        except DecodeError:
            self._done = True
            raise
        except Exception as exc:  # codec libraries raise their own types (and MemoryError)
            self._done = True
            raise CorruptRecordError(f"invalid {name} data: {exc!r}") from exc
        self._done = True
        self._carry = []
        self._total = total
        if carry_len:
            raise InvalidRecordsError(
                f"record {index} is truncated: the decompressed data ends inside it")
        if index != count:
            raise InvalidRecordsError(
                f"batch header declares {count} records but the batch holds {index}")
        return True


def _record_size(head: bytes) -> int:
    """Size (length varint included) of the record ``head`` starts, 0 while its length varint
    is cut short (the walk already refused invalid lengths)."""
    try:
        length, pos = read_varint(head, 0)
    except DecodeError:
        return 0
    return pos + max(length, _MIN_BODY)  # a shorter length is refused when the record is walked


def check_compressed_records(batch: Buffer, header: BatchHeader, cap: int) -> None:
    """Walk all records of a compressed batch (see :class:`RecordsCheck`)."""
    RecordsCheck(batch, header, cap).run()


def _bad_delta(data: bytes | bytearray, q: int, index: int) -> InvalidRecordsError:
    delta, _ = read_varint(data, q)
    return InvalidRecordsError(
        f"record {index} has offset delta {delta}; inner offsets must be 0..n-1 in order")


def _walk(data: bytes | bytearray, pos: int, index: int, count: int, room: int,
          cap: int) -> tuple[int, int]:
    """Check the complete records of ``data`` from ``pos``; return where the first incomplete
    one starts (or the end) and the index of the next record. ``room``: decompressed bytes
    still allowed after ``data``, to refuse a record too long for the cap as soon as its
    length is read (``cap``: for the message).

    The hot loop of the check, so it reads only what the checks need: each record's length
    varint (to step to the next record), the timestampDelta's size (to find the offsetDelta)
    and the offsetDelta. Varints of one or two bytes (lengths below 8 KiB, deltas below 8192)
    are decoded inline, longer ones by :func:`read_varint`; nothing is allocated per record.
    Key, value and header framing inside a record are not checked here (Kafka's
    skipKeyValueIterator does check it): doing so costs as much again per record, and a record
    whose inner lengths lie still occupies exactly its declared bytes, so it cannot shift or
    hide the records around it.
    """
    end = len(data)
    # The fast loop (compiled, see record_walk) steps over the plainly valid records; it
    # stops, without advancing, at anything else, which the careful loop below judges.
    if type(data) is bytes:
        pos, index = skip_simple_records(data, pos, index, count)
    try:
        while index < count and pos < end:
            b = data[pos]
            if b < 0x80:
                if b & 1 or b < 2 * _MIN_BODY:
                    raise InvalidRecordsError(
                        f"record {index} has invalid size {(b >> 1) ^ -(b & 1)}")
                p = pos + 1
                rec_end = p + (b >> 1)
            elif pos + 1 < end and data[pos + 1] < 0x80 and not b & 1:
                p = pos + 2
                rec_end = p + (((b & 0x7F) | (data[pos + 1] << 7)) >> 1)
            else:
                if end - pos < 5 and data[end - 1] & 0x80:
                    return pos, index  # the length varint may continue in the next chunk
                try:
                    length, p = read_varint(data, pos)
                except DecodeError as exc:
                    raise InvalidRecordsError(
                        f"record {index} has an invalid length: {exc}") from None
                if length < _MIN_BODY:
                    raise InvalidRecordsError(f"record {index} has invalid size {length}")
                rec_end = p + length
            if rec_end > end:
                if rec_end - end > room:
                    raise DecompressedTooLargeError(
                        f"records section decompresses to more than {cap} bytes, this "
                        f"broker's limit on decompressed batches (record {index} of "
                        f"{rec_end - p} bytes does not fit)")
                return pos, index
            # attributes (1 byte), then timestampDelta: a varlong of at most 10 bytes.
            q = p + 1
            if data[q] < 0x80:
                q += 1
            elif data[q + 1] < 0x80:
                q += 2
            else:
                start = q
                while data[q] & 0x80:
                    q += 1
                    if q - start >= 10:
                        raise InvalidRecordsError(
                            f"record {index} has a timestamp delta of over 10 bytes")
                q += 1
            b = data[q]  # offsetDelta, zigzag: index << 1
            if b < 0x80:
                if b != index << 1:
                    raise _bad_delta(data, q, index)
                q += 1
            elif (c := data[q + 1]) < 0x80:
                if (b & 0x7F) | (c << 7) != index << 1:
                    raise _bad_delta(data, q, index)
                q += 2
            else:  # 8192 and above
                delta, q2 = read_varint(data, q)
                if delta != index:
                    raise _bad_delta(data, q, index)
                q = q2
            if q + 3 > rec_end:  # key length, value length and header count still to come
                raise InvalidRecordsError(
                    f"Invalid record size: record {index} declares {rec_end - p} bytes, too "
                    "few for its fields")
            pos = rec_end
            index += 1
    except IndexError:
        raise InvalidRecordsError(
            f"record {index} is malformed: its fields overrun the records section") from None
    except (InvalidRecordsError, DecompressedTooLargeError):
        raise
    except DecodeError as exc:
        raise InvalidRecordsError(f"record {index} is malformed: {exc}") from None
    return pos, index
