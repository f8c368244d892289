from __future__ import annotations

import struct
import zlib

import cramjam
import lz4.frame
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from pykbroker.errors import CorruptRecordError, EncodeError
from pykbroker.records.compression import (
    GZIP,
    LZ4,
    NONE,
    SNAPPY,
    XERIAL_MAGIC,
    ZSTD,
    compress,
    decompress,
)

CODECS = [GZIP, SNAPPY, LZ4, ZSTD]
SAMPLE = b"".join(b"record-%05d|" % i for i in range(5000))  # ~60 KB, compressible


def xerial(data: bytes, block: int) -> bytes:
    """A xerial stream built by hand: header, then (int32 length, raw snappy block)*."""
    out = bytearray(XERIAL_MAGIC + struct.pack(">ii", 1, 1))
    for i in range(0, len(data), block):
        chunk = bytes(cramjam.snappy.compress_raw(data[i : i + block]))
        out += struct.pack(">i", len(chunk)) + chunk
    return bytes(out)


@pytest.mark.parametrize("codec", [NONE, *CODECS])
def test_roundtrip_sample(codec: int) -> None:
    assert decompress(codec, compress(codec, SAMPLE)) == SAMPLE
    assert decompress(codec, memoryview(compress(codec, SAMPLE))) == SAMPLE


@settings(max_examples=40)
@given(st.sampled_from(CODECS), st.binary(max_size=3000), st.booleans())
def test_roundtrip_any_bytes(codec: int, data: bytes, framed: bool) -> None:
    assert decompress(codec, compress(codec, data, xerial=framed)) == data


def test_lz4_output_is_kafka_compatible_frame() -> None:
    frame = compress(LZ4, SAMPLE)
    assert frame[:4] == b"\x04\x22\x4d\x18"  # LZ4 frame magic
    flg, bd = frame[4], frame[5]
    assert flg & 0x20  # independent blocks: Java's reader refuses linked blocks
    assert not flg & 0x08  # no content size, like KafkaLZ4BlockOutputStream
    assert bd == 0x40  # 64 KiB max block size
    assert lz4.frame.decompress(frame) == SAMPLE


def test_gzip_output_is_gzip() -> None:
    data = compress(GZIP, SAMPLE)
    assert data[:2] == b"\x1f\x8b"
    assert zlib.decompress(data, 31) == SAMPLE


def test_snappy_default_is_raw_and_xerial_on_request() -> None:
    raw = compress(SNAPPY, SAMPLE)
    assert bytes(cramjam.snappy.decompress_raw(raw)) == SAMPLE
    framed = compress(SNAPPY, SAMPLE, xerial=True)
    assert framed.startswith(XERIAL_MAGIC)
    assert decompress(SNAPPY, framed) == SAMPLE


@pytest.mark.parametrize("block", [1, 100, 32 * 1024, 1 << 20])
def test_xerial_input_decompresses(block: int) -> None:
    data = SAMPLE[:5000] if block == 1 else SAMPLE
    assert decompress(SNAPPY, xerial(data, block)) == data


def test_xerial_version_fields_ignored() -> None:
    # Some writers (redpanda) put little-endian versions here; Java and librdkafka don't care.
    framed = bytearray(xerial(SAMPLE, 32 * 1024))
    framed[8:16] = struct.pack("<ii", 1, 1)
    assert decompress(SNAPPY, bytes(framed)) == SAMPLE


def test_xerial_empty_stream_is_empty() -> None:
    assert decompress(SNAPPY, XERIAL_MAGIC + struct.pack(">ii", 1, 1)) == b""


@pytest.mark.parametrize(
    "tail",
    [b"\x00\x00", struct.pack(">i", -1) + b"x", struct.pack(">i", 1000) + b"abc"],
)
def test_xerial_bad_block_framing(tail: bytes) -> None:
    with pytest.raises(CorruptRecordError):
        decompress(SNAPPY, xerial(b"hello", 100) + tail)


def test_concatenated_gzip_and_zstd_frames() -> None:
    for codec in (GZIP, ZSTD):
        two = compress(codec, b"abc") + compress(codec, b"def")
        assert decompress(codec, two) == b"abcdef"
    two_lz4 = lz4.frame.compress(b"abc") + lz4.frame.compress(b"def")
    assert decompress(LZ4, two_lz4) == b"abcdef"


def test_zstd_frame_without_content_size() -> None:
    obj = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    frame = obj.compress(SAMPLE) + obj.flush()
    assert zstandard.frame_content_size(frame) == -1
    assert decompress(ZSTD, frame) == SAMPLE


@pytest.mark.parametrize("codec", CODECS)
def test_every_truncation_is_detected(codec: int) -> None:
    data = compress(codec, SAMPLE[:3000])
    for cut in range(len(data)):
        with pytest.raises(CorruptRecordError):
            decompress(codec, data[:cut])


@pytest.mark.parametrize("codec", CODECS)
def test_trailing_garbage_rejected(codec: int) -> None:
    with pytest.raises(CorruptRecordError):
        decompress(codec, compress(codec, SAMPLE) + b"\x07garbage")


@pytest.mark.parametrize("codec", [NONE, *CODECS])
def test_cap_is_inclusive(codec: int) -> None:
    data = compress(codec, SAMPLE)
    assert decompress(codec, data, max_size=len(SAMPLE)) == SAMPLE
    with pytest.raises(CorruptRecordError, match="more than"):
        decompress(codec, data, max_size=len(SAMPLE) - 1)


def _bombs() -> list[tuple[str, int, bytes]]:
    zeros = b"\0" * (8 << 20)  # 8 MiB of zeros; cap below is 64 KiB
    gz = zlib.compressobj(9, zlib.DEFLATED, 31)
    zstd_stream = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    return [
        ("gzip", GZIP, gz.compress(zeros) + gz.flush()),
        ("snappy-raw", SNAPPY, bytes(cramjam.snappy.compress_raw(zeros))),
        ("snappy-xerial", SNAPPY, xerial(zeros, 32 * 1024)),
        ("lz4-sized", LZ4, lz4.frame.compress(zeros, store_size=True)),
        ("lz4-unsized", LZ4, compress(LZ4, zeros)),
        ("zstd-sized", ZSTD, zstandard.ZstdCompressor().compress(zeros)),
        ("zstd-unsized", ZSTD, zstd_stream.compress(zeros) + zstd_stream.flush()),
        ("zstd-frames", ZSTD, compress(ZSTD, zeros[: 60 << 10]) * 10),
    ]


@pytest.mark.parametrize(
    ("name", "codec", "bomb"), _bombs(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_decompression_bomb_capped(name: str, codec: int, bomb: bytes) -> None:
    assert len(bomb) < (1 << 20)
    with pytest.raises(CorruptRecordError, match="more than 65536 bytes"):
        decompress(codec, bomb, max_size=64 << 10)


def test_snappy_preamble_checked_before_allocating() -> None:
    # A raw snappy stream claiming 1 GiB: refused from the preamble alone.
    claim = bytes([0x80, 0x80, 0x80, 0x80, 0x04]) + b"\x00"
    with pytest.raises(CorruptRecordError, match="more than"):
        decompress(SNAPPY, claim)


@pytest.mark.parametrize("codec", CODECS)
def test_empty_and_garbage_input(codec: int) -> None:
    for data in (b"", b"\x01", b"not compressed at all, just text"):
        with pytest.raises(CorruptRecordError):
            decompress(codec, data)


def test_unknown_codec() -> None:
    with pytest.raises(CorruptRecordError, match="unknown compression codec 5"):
        decompress(5, b"abc")
    with pytest.raises(EncodeError):
        compress(7, b"abc")


@settings(max_examples=60)
@given(st.sampled_from(CODECS), st.binary(max_size=300))
def test_random_input_raises_only_corrupt(codec: int, data: bytes) -> None:
    try:
        decompress(codec, data, max_size=1 << 16)
    except CorruptRecordError:
        pass


@settings(max_examples=60)
@given(st.sampled_from(CODECS), st.data())
def test_mutated_stream_raises_only_corrupt(codec: int, data: st.DataObject) -> None:
    stream = bytearray(compress(codec, SAMPLE[:2000]))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(stream) - 1))
        stream[i] = data.draw(st.integers(0, 255))
    try:
        decompress(codec, bytes(stream), max_size=1 << 16)
    except CorruptRecordError:
        pass
