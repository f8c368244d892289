from __future__ import annotations

import struct

import pytest

from pykbroker.errors import CorruptRecordError, DecodeError
from pykbroker.records import (
    BATCH_OVERHEAD,
    LOG_APPEND_TIME,
    BatchHeader,
    build_batch,
    iter_batches,
    iter_records,
    set_base_offset,
    set_max_timestamp,
    set_partition_leader_epoch,
    valid_prefix_length,
    validate_batch,
)
from pykbroker.records.batch import HEADER
from tests.records.helpers import raw_batch, raw_record

# Golden v2 batches from Sarama's record_test.go (Go's independent implementation, checked
# against Kafka): one record, key 01020304, value 050607, header 08090a=0b0c,
# first timestamp 1479847795000 ms, timestamp delta 5 ms, max timestamp 0.
_REST = [0, 0, 0, 0, 0, 0, 1, 88, 141, 205, 89, 56, *[0] * 22, 0, 0, 0, 1]
_RECORD = [40, 0, 10, 0, 8, 1, 2, 3, 4, 6, 5, 6, 7, 2, 6, 8, 9, 10, 4, 11, 12]


def _sarama(length: int, crc: list[int], codec: int, rest: list[int], section: list[int]) -> bytes:
    return bytes([*[0] * 8, 0, 0, 0, length, 0, 0, 0, 0, 2, *crc, 0, codec, *rest, *section])


SARAMA_UNCOMPRESSED = _sarama(70, [84, 121, 97, 253], 0, _REST, _RECORD)
SARAMA_GZIP = _sarama(
    95,
    [231, 74, 206, 165],
    1,
    _REST,
    [31, 139, 8, 0, 0, 9, 110, 136, 0, 255, 0, 21, 0, 234, 255, *_RECORD]
    + [3, 0, 173, 201, 88, 103, 21, 0, 0, 0],
)
SARAMA_SNAPPY = _sarama(72, [21, 0, 159, 97], 2, _REST, [21, 80, *_RECORD])
SARAMA_LZ4 = _sarama(
    89,
    [169, 74, 119, 197],
    3,
    _REST,
    [4, 34, 77, 24, 100, 112, 185, 21, 0, 0, 128, *_RECORD, 0, 0, 0, 0, 12, 59, 239, 146],
)
SARAMA_EMPTY = _sarama(49, [89, 95, 183, 221], 0, [0] * 40, [])


def small_batch(base_offset: int = 0) -> bytes:
    return build_batch(
        [(b"k1", b"v1", [("h", b"x")], 1000), (None, b"v2", [], 1002), (b"k3", None, [], 999)],
        base_offset=base_offset,
        producer_id=42,
        producer_epoch=3,
        base_sequence=7,
        partition_leader_epoch=5,
    )


def test_header_layout() -> None:
    assert HEADER.format == ">qiibIhiqqqhii"
    assert HEADER.size == BATCH_OVERHEAD == 61


@pytest.mark.parametrize(
    "golden",
    [SARAMA_UNCOMPRESSED, SARAMA_GZIP, SARAMA_SNAPPY, SARAMA_LZ4],
    ids=["none", "gzip", "snappy", "lz4"],
)
def test_sarama_golden_batches(golden: bytes) -> None:
    header = validate_batch(golden)
    assert header.size == len(golden)
    assert (header.base_timestamp, header.max_timestamp, header.records_count) == (
        1479847795000,
        0,
        1,
    )
    [record] = iter_records(golden)
    assert record.offset == 0
    assert record.timestamp == 1479847795005
    assert record.key == b"\x01\x02\x03\x04"
    assert record.value == b"\x05\x06\x07"
    assert record.headers == [("\x08\t\n", b"\x0b\x0c")]


def test_sarama_empty_batch() -> None:
    header = validate_batch(SARAMA_EMPTY)
    assert header.records_count == 0
    assert list(iter_records(SARAMA_EMPTY)) == []


def test_builder_reproduces_sarama_bytes() -> None:
    built = bytearray(
        build_batch(
            [(b"\x01\x02\x03\x04", b"\x05\x06\x07", [("\x08\t\n", b"\x0b\x0c")], 1479847795005)],
            producer_id=0,
            producer_epoch=0,
            base_sequence=0,
            partition_leader_epoch=0,
        )
    )
    # Sarama's batch says base timestamp = record timestamp - 5 and max timestamp 0.
    struct.pack_into(">q", built, 27, 1479847795000)
    built[BATCH_OVERHEAD + 2] = 10  # timestamp delta 5 as zigzag
    set_max_timestamp(built, 0, 0)  # recomputes the CRC over the rewritten span
    assert bytes(built) == SARAMA_UNCOMPRESSED


def test_header_properties() -> None:
    batch = small_batch(base_offset=100)
    h = validate_batch(batch)
    assert isinstance(h, BatchHeader)
    assert h == BatchHeader.parse(batch)
    assert (h.base_offset, h.last_offset_delta, h.last_offset, h.next_offset) == (100, 2, 102, 103)
    assert h.size == len(batch) == h.batch_length + 12
    assert (h.base_timestamp, h.max_timestamp) == (1000, 1002)
    assert (h.producer_id, h.producer_epoch, h.base_sequence, h.last_sequence) == (42, 3, 7, 9)
    assert h.partition_leader_epoch == 5
    assert h.magic == 2 and h.records_count == 3
    assert h.compression == 0 and h.timestamp_type == 0
    assert not (h.is_transactional or h.is_control or h.has_delete_horizon)
    assert h.has_producer_id


@pytest.mark.parametrize(
    ("attributes", "expect"),
    [
        (0x01, (1, 0, False, False, False)),
        (0x04, (4, 0, False, False, False)),
        (0x08, (0, 1, False, False, False)),
        (0x10, (0, 0, True, False, False)),
        (0x20, (0, 0, False, True, False)),
        (0x40, (0, 0, False, False, True)),
        (0x7B, (3, 1, True, True, True)),
    ],
)
def test_attribute_bits(attributes: int, expect: tuple[int, int, bool, bool, bool]) -> None:
    h = BatchHeader.parse(raw_batch(b"", 0, attributes=attributes))
    got = (h.compression, h.timestamp_type, h.is_transactional, h.is_control)
    assert (*got, h.has_delete_horizon) == expect


def test_last_sequence_wraps() -> None:
    h = BatchHeader.parse(raw_batch(b"", 0, base_sequence=0x7FFFFFFE, last_offset_delta=3))
    assert h.last_sequence == 1
    assert BatchHeader.parse(raw_batch(b"", 0)).last_sequence == -1


def test_parse_short_buffer() -> None:
    with pytest.raises(DecodeError):
        BatchHeader.parse(b"\x00" * 60)
    with pytest.raises(DecodeError):
        BatchHeader.parse(small_batch(), len(small_batch()) - 60)


def test_every_bit_flip_in_crc_span_detected() -> None:
    batch = small_batch()
    assert validate_batch(batch)
    for pos in range(21, len(batch)):
        for bit in range(8):
            damaged = bytearray(batch)
            damaged[pos] ^= 1 << bit
            with pytest.raises(CorruptRecordError, match="CRC"):
                validate_batch(bytes(damaged))


def test_bit_flips_in_crc_field_detected() -> None:
    batch = small_batch()
    for pos in range(17, 21):
        for bit in range(8):
            damaged = bytearray(batch)
            damaged[pos] ^= 1 << bit
            with pytest.raises(CorruptRecordError, match="CRC"):
                validate_batch(bytes(damaged))


def test_bit_flips_outside_crc_span_are_not_crc_failures() -> None:
    batch = small_batch()
    for pos in range(0, 16):  # base offset and partition leader epoch; skip the length
        if 8 <= pos < 12:
            continue
        for bit in range(8):
            damaged = bytearray(batch)
            damaged[pos] ^= 1 << bit
            h = validate_batch(bytes(damaged))
            assert h.crc == BatchHeader.parse(batch).crc


def test_wrong_magic() -> None:
    for magic in (0, 1, 3, -1):
        with pytest.raises(CorruptRecordError, match="magic"):
            validate_batch(raw_batch(raw_record(b"k", b"v"), 1, magic=magic))


def test_length_field_checks() -> None:
    batch = bytearray(small_batch())
    with pytest.raises(CorruptRecordError, match="length field"):
        validate_batch(bytes(batch[:11]))
    for bad_length in (48, 0, -1):
        damaged = bytearray(batch)
        struct.pack_into(">i", damaged, 8, bad_length)
        with pytest.raises(CorruptRecordError, match="minimum"):
            validate_batch(bytes(damaged))
    damaged = bytearray(batch)
    struct.pack_into(">i", damaged, 8, len(batch) - 11)
    with pytest.raises(CorruptRecordError, match="exceeds"):
        validate_batch(bytes(damaged))
    with pytest.raises(CorruptRecordError, match="exceeds"):
        validate_batch(bytes(batch[:-1]))


def test_count_and_offset_delta_checks() -> None:
    rec = raw_record(b"k", b"v")
    with pytest.raises(CorruptRecordError, match="negative record count"):
        validate_batch(raw_batch(rec, -1, last_offset_delta=0))
    with pytest.raises(CorruptRecordError, match="inconsistent"):
        validate_batch(raw_batch(rec + rec, 2, last_offset_delta=0))
    with pytest.raises(CorruptRecordError, match="inconsistent"):
        validate_batch(raw_batch(b"", 0, last_offset_delta=-1))
    # Compaction leaves gaps: lastOffsetDelta past count - 1 is fine unless strict.
    gappy = raw_batch(rec, 1, last_offset_delta=9)
    assert validate_batch(gappy).last_offset == 9
    with pytest.raises(CorruptRecordError, match="differs"):
        validate_batch(gappy, strict=True)
    with pytest.raises(CorruptRecordError, match="no records"):
        validate_batch(raw_batch(b"", 0), strict=True)
    assert validate_batch(small_batch(), strict=True).records_count == 3


def test_validate_at_offset_in_larger_buffer() -> None:
    a, b = small_batch(0), small_batch(3)
    buf = memoryview(a + b + b"\xff" * 5)
    assert validate_batch(buf, len(a)).base_offset == 3


def test_patch_base_offset_and_epoch_keep_crc() -> None:
    a, b = small_batch(0), small_batch(0)
    buf = bytearray(a + b)
    set_base_offset(buf, len(a), 1 << 40)
    set_partition_leader_epoch(buf, len(a), 77)
    set_base_offset(memoryview(buf), 0, 9)
    h = validate_batch(buf, len(a))
    assert (h.base_offset, h.partition_leader_epoch, h.crc) == (
        1 << 40,
        77,
        BatchHeader.parse(b).crc,
    )
    assert validate_batch(buf, 0).base_offset == 9
    assert [r.offset for r in iter_records(buf, len(a))] == [(1 << 40) + i for i in range(3)]


def test_set_max_timestamp_log_append_time() -> None:
    a = small_batch()
    buf = bytearray(b"pad" + a)
    set_max_timestamp(buf, 3, 5555, LOG_APPEND_TIME)
    h = validate_batch(buf, 3)
    assert (h.max_timestamp, h.timestamp_type) == (5555, 1)
    assert h.crc != BatchHeader.parse(a).crc
    assert [r.timestamp for r in iter_records(buf, 3)] == [5555, 5555, 5555]
    set_max_timestamp(buf, 3, 1002, 0)  # back to CreateTime: the original bytes
    assert bytes(buf[3:]) == a


def test_set_max_timestamp_keeps_type_and_skips_noop() -> None:
    buf = bytearray(small_batch())
    set_max_timestamp(memoryview(buf), 0, 1002)
    assert bytes(buf) == small_batch()
    set_max_timestamp(buf, 0, 2000)
    h = validate_batch(buf)
    assert (h.max_timestamp, h.timestamp_type) == (2000, 0)
    with pytest.raises(ValueError):
        set_max_timestamp(buf, 0, 1, 2)


def three_batches() -> tuple[bytes, list[int]]:
    batches = [
        small_batch(0),
        build_batch([(b"x" * 50, None, [], 5)], base_offset=3),
        small_batch(4),
    ]
    ends = []
    total = 0
    for b in batches:
        total += len(b)
        ends.append(total)
    return b"".join(batches), ends


def test_iter_batches() -> None:
    buf, ends = three_batches()
    got = list(iter_batches(buf))
    assert [pos for pos, _ in got] == [0, *ends[:2]]
    assert [h.base_offset for _, h in got] == [0, 3, 4]
    assert [pos for pos, _ in iter_batches(buf, validate=False)] == [0, *ends[:2]]
    assert list(iter_batches(b"")) == []


def test_iter_batches_partial_tail() -> None:
    buf, ends = three_batches()
    for cut in (ends[1] + 5, ends[1] + 20, ends[2] - 1):
        with pytest.raises(CorruptRecordError):
            list(iter_batches(buf[:cut]))
        assert [p for p, _ in iter_batches(buf[:cut], allow_partial=True)] == [0, ends[0]]


def test_iter_batches_corrupt_middle_raises() -> None:
    buf, ends = three_batches()
    damaged = bytearray(buf)
    damaged[ends[0] + 30] ^= 1
    with pytest.raises(CorruptRecordError, match="CRC"):
        list(iter_batches(damaged, allow_partial=True))
    assert len(list(iter_batches(damaged, validate=False))) == 3
    struct.pack_into(">i", damaged, ends[0] + 8, 10)
    with pytest.raises(CorruptRecordError):
        list(iter_batches(damaged, validate=False, allow_partial=True))


def test_valid_prefix_length_every_truncation() -> None:
    buf, ends = three_batches()
    for cut in range(len(buf) + 1):
        expected = max([0, *[e for e in ends if e <= cut]])
        assert valid_prefix_length(buf[:cut]) == expected, cut


def test_valid_prefix_length_stops_at_corruption() -> None:
    buf, ends = three_batches()
    damaged = bytearray(buf)
    damaged[ends[1] - 1] ^= 0x80
    assert valid_prefix_length(damaged) == ends[0]
    assert valid_prefix_length(buf + b"\x00" * 12) == ends[2]
    assert valid_prefix_length(buf, ends[0]) == ends[2]
