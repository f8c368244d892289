from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykbroker.errors import CorruptRecordError, EncodeError
from pykbroker.records import (
    CONTROL_ABORT,
    CONTROL_COMMIT,
    GZIP,
    LZ4,
    NONE,
    SNAPPY,
    ZSTD,
    BatchBuilder,
    NewRecord,
    Record,
    build_batch,
    build_control_batch,
    compress,
    control_type,
    end_txn_coordinator_epoch,
    iter_records,
    validate_batch,
)
from tests.records.helpers import raw_batch, raw_record, zz

INT64 = st.integers(-(1 << 63), (1 << 63) - 1)
TIMESTAMPS = st.integers(0, 1 << 45)
maybe_bytes = st.none() | st.binary(max_size=40)
headers = st.lists(st.tuples(st.text(max_size=10), maybe_bytes), max_size=3)
records = st.lists(
    st.tuples(maybe_bytes, maybe_bytes, headers, TIMESTAMPS), min_size=1, max_size=12
)


@settings(max_examples=150, deadline=None)
@given(
    records,
    st.sampled_from([NONE, GZIP, SNAPPY, LZ4, ZSTD]),
    st.sampled_from([0, 1]),
    st.integers(0, (1 << 62)),
    st.integers(-1, (1 << 31) - 1),
    st.booleans(),
)
def test_build_validate_iterate_roundtrip(
    recs: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]], int]],
    codec: int,
    timestamp_type: int,
    base_offset: int,
    epoch: int,
    transactional: bool,
) -> None:
    batch = build_batch(
        recs,
        base_offset=base_offset,
        compression=codec,
        timestamp_type=timestamp_type,
        producer_id=1234 if transactional else -1,
        producer_epoch=2 if transactional else -1,
        base_sequence=10 if transactional else -1,
        is_transactional=transactional,
        partition_leader_epoch=epoch,
    )
    h = validate_batch(batch, strict=True)
    assert h.size == len(batch)
    assert (h.compression, h.timestamp_type, h.is_transactional, h.is_control) == (
        codec,
        timestamp_type,
        transactional,
        False,
    )
    assert (h.base_offset, h.partition_leader_epoch, h.records_count) == (
        base_offset,
        epoch,
        len(recs),
    )
    assert h.base_timestamp == recs[0][3]
    assert h.max_timestamp == max(r[3] for r in recs)
    got = list(iter_records(batch))
    assert [r.offset for r in got] == [base_offset + i for i in range(len(recs))]
    assert [r.offset_delta for r in got] == list(range(len(recs)))
    assert [(r.key, r.value, r.headers) for r in got] == [(k, v, list(hs)) for k, v, hs, _ in recs]
    if timestamp_type == 1:
        assert [r.timestamp for r in got] == [h.max_timestamp] * len(recs)
    else:
        assert [r.timestamp for r in got] == [r[3] for r in recs]
    assert all(r.attributes == 0 for r in got)


def test_default_timestamp_is_now_ms() -> None:
    import time

    before = int(time.time() * 1000)
    batch = build_batch([NewRecord(b"k", b"v")])
    after = int(time.time() * 1000)
    [record] = iter_records(batch)
    assert before <= record.timestamp <= after


def test_negative_timestamp_delta_and_base_is_first() -> None:
    batch = build_batch([(None, b"a", [], 5000), (None, b"b", [], 1000), (None, b"c", [], 9000)])
    h = validate_batch(batch)
    assert (h.base_timestamp, h.max_timestamp) == (5000, 9000)
    got = list(iter_records(batch))
    assert [r.timestamp_delta for r in got] == [0, -4000, 4000]
    assert [r.timestamp for r in got] == [5000, 1000, 9000]


def test_invalid_utf8_header_key_survives_rewrite() -> None:
    section = raw_record(b"k", b"v", [(b"\xff\xfebad", b"x")])
    [record] = iter_records(raw_batch(section, 1))
    assert record.headers[0][0].encode("utf-8", "surrogateescape") == b"\xff\xfebad"
    rebuilt = build_batch([(record.key, record.value, record.headers, 0)])
    assert rebuilt[61:] == section


def test_negative_lengths_other_than_minus_one_mean_null_like_java() -> None:
    body = b"\x00" + zz(0) + zz(0) + zz(-5) + zz(-2) + zz(1) + zz(1) + b"h" + zz(-7)
    [record] = iter_records(raw_batch(zz(len(body)) + body, 1))
    assert (record.key, record.value, record.headers) == (None, None, [("h", None)])


def test_record_repr_and_eq() -> None:
    a = Record(1, 2, b"k", None, [])
    assert a == Record(1, 2, b"k", None, [])
    assert a != Record(1, 3, b"k", None, [])
    assert a != "Record"
    assert "offset=1" in repr(a)


def test_record_header_checks_not_crc() -> None:
    """iter_records trusts the CRC (callers validate first) but checks the header itself."""
    rec = raw_record(b"k", b"v")
    with pytest.raises(CorruptRecordError, match="shorter"):
        iter_records(raw_batch(rec, 1)[:60])
    with pytest.raises(CorruptRecordError, match="truncated"):
        iter_records(raw_batch(rec, 1)[:-1])
    with pytest.raises(CorruptRecordError, match="magic"):
        iter_records(raw_batch(rec, 1, magic=1))
    with pytest.raises(CorruptRecordError, match="negative"):
        iter_records(raw_batch(rec, -1))
    short = bytearray(raw_batch(rec, 1))
    struct.pack_into(">i", short, 8, 40)
    with pytest.raises(CorruptRecordError, match="minimum"):
        iter_records(short)


FRAMING_CASES = {
    "length too long": (raw_record(b"k", b"v", length_adjust=1), 1),
    "length too long, slack": (raw_record(b"k", b"v", length_adjust=1) + b"\x00", 1),
    "length too short": (raw_record(b"k", b"v", length_adjust=-1) + b"\x00", 1),
    "length past end": (raw_record(b"k", b"v", length_adjust=50), 1),
    "length tiny": (zz(3) + b"\x00\x00\x00", 1),
    "length negative": (zz(-10) + b"\x00" * 10, 1),
    "fewer records than count": (raw_record(b"k", b"v"), 2),
    "trailing garbage": (raw_record(b"k", b"v") + b"\x00", 1),
    "more records than count": (raw_record(b"k", b"v") * 2, 1),
    "key overruns": (zz(7) + b"\x00" + zz(0) + zz(0) + zz(40) + b"abc", 1),
    "negative header count": (zz(6) + b"\x00" + zz(0) + zz(0) + zz(-1) + zz(-1) + zz(-1), 1),
    "huge header count": (zz(9) + b"\x00" + zz(0) + zz(0) + zz(-1) + zz(-1) + zz(1 << 30), 1),
    "negative header key": (zz(8) + b"\x00" + zz(0) * 2 + zz(-1) * 2 + zz(1) + zz(-1) + zz(-1), 1),
    "truncated varint": (zz(6) + b"\x00\x80\x80\x80\x80\x80", 1),
}


@pytest.mark.parametrize("case", FRAMING_CASES)
@pytest.mark.parametrize("codec", [NONE, GZIP, ZSTD])
def test_record_framing_errors(case: str, codec: int) -> None:
    section, count = FRAMING_CASES[case]
    if codec:
        section = compress(codec, section)
    batch = raw_batch(section, count, attributes=codec, last_offset_delta=5)
    validate_batch(batch)  # the CRC is fine; only record framing is wrong
    with pytest.raises(CorruptRecordError):
        list(iter_records(batch))


def test_records_decoded_lazily() -> None:
    batch = raw_batch(raw_record(b"a", b"1") + raw_record(b"b", b"2") + b"junk", 2)
    it = iter_records(batch)
    assert next(it).key == b"a"
    assert next(it).key == b"b"
    with pytest.raises(CorruptRecordError, match="4 bytes follow"):
        next(it)


def test_compressed_bomb_in_batch() -> None:
    batch = build_batch([(None, b"\0" * 200_000, [], 1)], compression=ZSTD)
    assert len(batch) < 1000
    with pytest.raises(CorruptRecordError, match="more than"):
        iter_records(batch, max_decompressed_size=100_000)
    assert len(list(iter_records(batch, max_decompressed_size=300_000))) == 1


def test_unknown_codec_in_batch() -> None:
    with pytest.raises(CorruptRecordError, match="codec"):
        iter_records(raw_batch(raw_record(b"k", b"v"), 1, attributes=5))


def test_empty_compressed_batch() -> None:
    assert list(iter_records(raw_batch(b"", 0, attributes=GZIP))) == []


@pytest.mark.parametrize("commit", [True, False])
def test_control_batch(commit: bool) -> None:
    batch = build_control_batch(
        99, 4, commit, 17, base_offset=50, timestamp=1234, partition_leader_epoch=3
    )
    h = validate_batch(batch, strict=True)
    assert h.is_control and h.is_transactional
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (99, 4, -1)
    assert (h.base_offset, h.records_count, h.max_timestamp, h.partition_leader_epoch) == (
        50,
        1,
        1234,
        3,
    )
    [record] = iter_records(batch)
    assert record.key == struct.pack(">hh", 0, 1 if commit else 0)
    assert record.value == struct.pack(">hi", 0, 17)
    assert control_type(record) == (CONTROL_COMMIT if commit else CONTROL_ABORT)
    assert end_txn_coordinator_epoch(record) == 17
    assert record.offset == 50 and record.timestamp == 1234 and record.headers == []


def test_control_record_parsing_rules() -> None:
    assert control_type(Record(0, 0, struct.pack(">hhxx", 1, 7), None, [])) == 7
    for key in (None, b"\x00\x00\x00", struct.pack(">hh", -1, 1)):
        with pytest.raises(CorruptRecordError):
            control_type(Record(0, 0, key, None, []))
    for value in (None, b"\x00" * 5, struct.pack(">hi", -1, 0)):
        with pytest.raises(CorruptRecordError):
            end_txn_coordinator_epoch(Record(0, 0, b"\x00" * 4, value, []))


def test_builder_explicit_offset_deltas_for_compaction() -> None:
    builder = BatchBuilder(base_offset=100, producer_id=5, producer_epoch=1, base_sequence=0)
    builder.append(b"a", b"1", timestamp=10, offset_delta=2)
    builder.append(b"b", None, timestamp=20, offset_delta=7)
    assert len(builder) == 2
    batch = builder.build(last_offset_delta=9)
    h = validate_batch(batch)
    assert (h.last_offset, h.records_count) == (109, 2)
    assert [r.offset for r in iter_records(batch)] == [102, 107]
    with pytest.raises(EncodeError):
        builder.append(b"c", None, timestamp=30, offset_delta=7)
    with pytest.raises(EncodeError):
        builder.build(last_offset_delta=6)


def test_builder_empty_batch_needs_span() -> None:
    with pytest.raises(EncodeError):
        BatchBuilder().build()
    batch = BatchBuilder(base_offset=10, compression=ZSTD).build(last_offset_delta=4)
    h = validate_batch(batch)
    assert (h.records_count, h.next_offset, h.base_timestamp, h.max_timestamp) == (0, 15, -1, -1)
    assert list(iter_records(batch)) == []


def test_builder_rejects_bad_arguments() -> None:
    with pytest.raises(EncodeError):
        BatchBuilder(compression=6)
    with pytest.raises(EncodeError):
        BatchBuilder(timestamp_type=2)
    with pytest.raises(EncodeError):
        build_batch([(None, None, [], 0)], producer_epoch=1 << 20)
    with pytest.raises(EncodeError):
        build_batch([(None, None, [], 1 << 70)])
