"""Produce-time inspection of compressed batches (pykbroker.records.inspect) and the error codes
the produce path gives (validate_produce_batch): valid batches of every codec pass, records
that disagree with their header are INVALID_RECORD, undecodable data CORRUPT_MESSAGE, and
bombs are refused without ever holding their inflated size (tracemalloc)."""

from __future__ import annotations

import tracemalloc
import zlib
from collections.abc import Callable, Iterable, Iterator

import cramjam
import lz4.frame
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pykbroker.cluster.produce_checks import validate_produce_batch
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import DecodeError, KafkaError
from pykbroker.records import (
    GZIP,
    LZ4,
    SNAPPY,
    ZSTD,
    BatchHeader,
    build_batch,
    compress,
    iter_records,
)
from pykbroker.records import inspect as ins
from pykbroker.records.compression import XERIAL_MAGIC
from pykbroker.records.inspect import (
    DecompressedTooLargeError,
    InvalidRecordsError,
    RecordsCheck,
    check_compressed_records,
    max_decompressed_size,
)
from tests.records.helpers import raw_batch, raw_record, zz

CODECS = [GZIP, SNAPPY, LZ4, ZSTD]
CODEC_IDS = ["gzip", "snappy", "lz4", "zstd"]
MIB = 1024 * 1024
CAP = 64 * MIB


def _compress(codec: int, section: bytes, *, xerial: bool = False) -> bytes:
    return compress(codec, section, xerial=xerial) if section or codec != SNAPPY else b""


def _batch(codec: int, section: bytes, count: int, **kw: bool) -> bytes:
    return raw_batch(_compress(codec, section, **kw), count, attributes=codec)


def _code(batch: bytes | bytearray, cap: int = CAP) -> int:
    """The produce path's verdict: 0, or the KafkaError code (a bytearray is not copied)."""
    try:
        validate_produce_batch(batch if isinstance(batch, bytearray) else bytearray(batch), cap)
    except KafkaError as exc:
        assert exc.message, "every refusal carries a message"
        return int(exc.error_code)
    return 0


def _records(n: int, value: bytes = b"v" * 20, start: int = 0) -> bytes:
    return b"".join(raw_record(b"k", value, offset_delta=start + i, timestamp_delta=i)
                    for i in range(n))


# -- valid batches ----------------------------------------------------------------------------

record_st = st.tuples(
    st.none() | st.binary(max_size=40),
    st.none() | st.binary(max_size=400),
    st.lists(st.tuples(st.text(max_size=8), st.none() | st.binary(max_size=20)), max_size=2),
    st.integers(min_value=0, max_value=2**40),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(CODECS), st.lists(record_st, min_size=1, max_size=60))
def test_valid_batches_of_every_codec_pass(codec: int, records: list) -> None:
    batch = build_batch(records, compression=codec)
    assert _code(batch) == 0


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
def test_large_batches_pass(codec: int) -> None:
    """Over 8192 records (three-byte offset deltas), records larger than a chunk (carried
    across chunks), and xerial snappy."""
    many = build_batch([(None, b"x" * 30, [], 5 * i) for i in range(20000)], compression=codec)
    assert _code(many) == 0
    big = build_batch([(b"k", bytes(range(256)) * 2000, [("h", b"v")], None)] * 3,
                      compression=codec)
    assert len(bytes(range(256)) * 2000) > ins.CHUNK
    assert _code(big) == 0
    if codec == SNAPPY:
        section = _records(3000)
        assert _code(_batch(SNAPPY, section, 3000, xerial=True)) == 0


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(record_st, min_size=1, max_size=40), st.data())
def test_outcome_does_not_depend_on_chunking(records: list, data: st.DataObject) -> None:
    """Chunk boundaries anywhere (inside varints, records, between them) change nothing, for
    valid sections and for sections cut, extended or with a byte changed."""
    batch = build_batch(records, compression=GZIP)
    header = BatchHeader.parse(batch)
    section = zlib.decompress(batch[61:], 31)
    variant = data.draw(st.sampled_from(["same", "cut", "extra", "mutated"]))
    if variant == "cut":
        section = section[:data.draw(st.integers(0, len(section) - 1))]
    elif variant == "extra":
        section += data.draw(st.binary(min_size=1, max_size=5))
    elif variant == "mutated":
        at = data.draw(st.integers(0, len(section) - 1))
        section = section[:at] + bytes([data.draw(st.integers(0, 255))]) + section[at + 1:]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(section)), max_size=8)))
    pieces = [section[a:b] for a, b in zip([0, *cuts], [*cuts, len(section)], strict=True)]

    def outcome(chunks: list[bytes]) -> str:
        check = RecordsCheck(batch, header, CAP)
        check._chunks = iter(chunks)  # type: ignore[assignment]  # the decoder's chunks, forced
        try:
            check.run()
        except DecodeError as exc:
            return type(exc).__name__
        return "ok"

    whole = outcome([section])
    assert outcome([p for p in pieces if p]) == whole
    if variant != "mutated":
        assert (whole == "ok") == (variant == "same")


# -- records that disagree with the header: INVALID_RECORD -------------------------------------


def _invalid_sections() -> Iterator[tuple[str, bytes, int]]:
    good = _records(5)
    yield "count too high", good, 6
    yield "count too low", good, 4
    yield "trailing garbage", good + b"\x00\x07", 5
    yield "truncated record", good[:-3], 5
    yield "offset deltas out of order", b"".join(
        raw_record(None, b"v", offset_delta=d) for d in (0, 2, 1)), 3
    yield "offset deltas from 1", b"".join(
        raw_record(None, b"v", offset_delta=d) for d in (1, 2, 3)), 3
    yield "offset delta past 8192", _records(8199) + raw_record(
        b"k", b"v" * 20, offset_delta=9000, timestamp_delta=8199), 8200
    yield "record length too small", zz(3) + b"\x00\x00\x00", 1
    yield "negative record length", zz(-5) + good, 6
    yield "record shorter than its fields", raw_record(b"key", b"value", length_adjust=-12), 1
    yield "zeros", bytes(1000), 1


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
@pytest.mark.parametrize("case", list(_invalid_sections()), ids=lambda c: c[0])
def test_records_disagreeing_with_the_header_are_invalid_record(
        codec: int, case: tuple[str, bytes, int]) -> None:
    _, section, count = case
    assert _code(_batch(codec, section, count)) == ErrorCode.INVALID_RECORD


def test_error_messages_say_what_is_wrong() -> None:
    batch = _batch(LZ4, _records(5), 6)
    with pytest.raises(KafkaError, match="declares 6 records but the batch holds 5"):
        validate_produce_batch(bytearray(batch), CAP)
    batch = _batch(ZSTD, b"".join(raw_record(None, b"v", offset_delta=d) for d in (0, 2)), 2)
    with pytest.raises(KafkaError, match="record 1 has offset delta 2"):
        validate_produce_batch(bytearray(batch), CAP)


# -- undecodable data: CORRUPT_MESSAGE -----------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_undecodable_data_is_corrupt_message(codec: int, damage: str) -> None:
    compressed = _compress(codec, _records(200, b"payload " * 8))
    if damage == "truncated":
        compressed = compressed[:len(compressed) // 2]
    elif damage == "garbage":
        compressed = b"\x13\x37" * 40
    else:
        compressed = b""
    batch = raw_batch(compressed, 200, attributes=codec)
    assert _code(batch) == ErrorCode.CORRUPT_MESSAGE


def test_zstd_truncated_at_a_block_boundary_is_corrupt_message() -> None:
    """zstandard's readers accept a frame cut after a whole block; the block walk does not."""
    section = _records(4000, b"payload " * 30)
    frame = zstandard.ZstdCompressor(write_checksum=True).compress(section)
    assert _code(raw_batch(frame[:-4], 4000, attributes=ZSTD)) == ErrorCode.CORRUPT_MESSAGE
    assert _code(raw_batch(frame, 4000, attributes=ZSTD)) == 0


# -- bombs: refused within the cap, never held ----------------------------------------------


def _stream_compress(codec: int, pieces: Iterable[bytes]) -> bytes:
    """Compress without ever holding the inflated data."""
    out: list[bytes] = []
    if codec == GZIP:
        gz = zlib.compressobj(9, zlib.DEFLATED, 31)
        out += [gz.compress(p) for p in pieces]
        out.append(gz.flush())
    elif codec == ZSTD:
        zc = zstandard.ZstdCompressor(level=3).compressobj()
        out += [zc.compress(p) for p in pieces]
        out.append(zc.flush())
    elif codec == LZ4:
        lc = lz4.frame.LZ4FrameCompressor(block_size=lz4.frame.BLOCKSIZE_MAX64KB,
                                          block_linked=False, content_checksum=False)
        out.append(lc.begin())
        out += [lc.compress(p) for p in pieces]
        out.append(lc.flush())
    else:  # xerial snappy, block by block
        out.append(XERIAL_MAGIC + (1).to_bytes(4, "big") + (1).to_bytes(4, "big"))
        for piece in pieces:
            for start in range(0, len(piece), 32 * 1024):
                block = bytes(cramjam.snappy.compress_raw(piece[start:start + 32 * 1024]))
                out.append(len(block).to_bytes(4, "big") + block)
    return b"".join(out)


def _zeros(total: int, prefix: bytes = b"") -> Iterator[bytes]:
    yield prefix
    block = bytes(MIB)
    for _ in range(total // MIB):
        yield block


def _many_records(total: int) -> Iterator[bytes]:
    """Valid 1 KiB records, offset deltas in order, ``total`` bytes of them."""
    value = bytes(1000)
    n = total // 1010
    for start in range(0, n, 1000):
        yield b"".join(raw_record(None, value, offset_delta=i) for i in range(start, start + 1000))


BOMB_INFLATED = 256 * MIB
BOMB_CAP = 16 * MIB
BOMB_PEAK = 4 * MIB  # a few chunks: what a check may hold, whatever the inflated size


def _bombs() -> Iterator[tuple[str, Callable[[int], tuple[bytes, int]], int]]:
    """(name, builder(codec) -> (batch, inflated size), expected code)."""

    def zeros(codec: int) -> tuple[bytes, int]:
        return raw_batch(_stream_compress(codec, _zeros(BOMB_INFLATED)), 1,
                         attributes=codec), BOMB_INFLATED

    def one_huge_record(codec: int) -> tuple[bytes, int]:
        head = zz(BOMB_INFLATED) + b"\x00\x00\x00\x01" + zz(BOMB_INFLATED - 5)
        return raw_batch(_stream_compress(codec, _zeros(BOMB_INFLATED, head)), 1,
                         attributes=codec), BOMB_INFLATED

    def many_valid_records(codec: int) -> tuple[bytes, int]:
        total = 4 * BOMB_CAP if codec != SNAPPY else 3 * BOMB_CAP
        n = (total // 1010) // 1000 * 1000
        return raw_batch(_stream_compress(codec, _many_records(total)), n,
                         attributes=codec), n * 1010

    yield "zeros", zeros, ErrorCode.INVALID_RECORD
    yield "one huge record", one_huge_record, ErrorCode.MESSAGE_TOO_LARGE
    yield "many valid records", many_valid_records, ErrorCode.MESSAGE_TOO_LARGE


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
@pytest.mark.parametrize("bomb", list(_bombs()), ids=lambda b: b[0])
def test_bombs_are_refused_without_holding_their_inflated_size(codec: int, bomb: tuple) -> None:
    _, build, expected = bomb
    batch, inflated = build(codec)
    assert inflated >= 2 * BOMB_CAP
    if codec != SNAPPY:
        assert len(batch) * 50 < inflated, "a bomb: small compressed, huge inflated"
    buf = bytearray(batch)
    tracemalloc.start()
    try:
        code = _code(buf, BOMB_CAP)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == expected
    assert peak < BOMB_PEAK, f"held {peak} bytes checking a {inflated}-byte bomb"


def test_raw_snappy_bomb_is_refused_from_its_preamble() -> None:
    """Raw snappy is one block: its declared length is checked before anything is inflated."""
    section = bytes(cramjam.snappy.compress_raw(bytes(8 * MIB)))
    batch = bytearray(raw_batch(section, 1, attributes=SNAPPY))
    tracemalloc.start()
    try:
        code = _code(batch, MIB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == ErrorCode.MESSAGE_TOO_LARGE
    assert peak < MIB


def test_record_count_that_cannot_fit_is_refused_at_once() -> None:
    batch = raw_batch(_compress(LZ4, _records(1)), 2**31 - 1, attributes=LZ4)
    assert _code(batch, CAP) == ErrorCode.MESSAGE_TOO_LARGE


# -- the cap, and agreement with the full decoder ----------------------------------------------


def test_cap_follows_max_message_bytes_with_a_floor() -> None:
    assert max_decompressed_size(1048588) == 64 * 1048588
    assert max_decompressed_size(1000) == 64 * MIB
    assert max_decompressed_size(100 * MIB) == 2**31 - 1


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(record_st, min_size=1, max_size=20), st.data())
def test_whatever_the_full_decoder_accepts_the_check_accepts(records: list,
                                                              data: st.DataObject) -> None:
    """Mutated sections: the check never raises anything but its three errors, and a section
    iter_records decodes whole, with offset deltas 0..n-1, always passes."""
    section = bytearray(zlib.decompress(build_batch(records, compression=GZIP)[61:], 31))
    for _ in range(data.draw(st.integers(0, 3))):
        if section:
            section[data.draw(st.integers(0, len(section) - 1))] = data.draw(st.integers(0, 255))
    count = len(records) + data.draw(st.sampled_from([0, 0, 0, -1, 1]))
    if count < 1:
        return
    batch = _batch(ZSTD, bytes(section), count)
    try:
        ok = all(r.offset_delta == i for i, r in enumerate(iter_records(batch)))
    except DecodeError:
        ok = False
    try:
        check_compressed_records(batch, BatchHeader.parse(batch), CAP)
    except (InvalidRecordsError, DecompressedTooLargeError):
        assert not ok
