from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pykbroker.errors import DecodeError, EncodeError
from pykbroker.records.varint import (
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    INT64_MIN,
    encode_varint,
    encode_varlong,
    read_varint,
    read_varlong,
    size_of_varint,
    size_of_varlong,
    write_varint,
)
from tests.records.helpers import zz

VARINT_VECTORS = [
    (0, "00"),
    (-1, "01"),
    (1, "02"),
    (-2, "03"),
    (2, "04"),
    (63, "7e"),
    (-64, "7f"),
    (64, "8001"),
    (-65, "8101"),
    (300, "d804"),
    (INT32_MAX, "feffffff0f"),
    (INT32_MIN, "ffffffff0f"),
]
VARLONG_VECTORS = [
    *VARINT_VECTORS,
    (INT64_MAX, "feffffffffffffffff01"),
    (INT64_MIN, "ffffffffffffffffff01"),
    (1 << 40, "808080808040"),
]


@pytest.mark.parametrize(("value", "hexbytes"), VARINT_VECTORS)
def test_varint_vectors(value: int, hexbytes: str) -> None:
    data = bytes.fromhex(hexbytes)
    assert encode_varint(value) == data
    assert read_varint(data, 0) == (value, len(data))
    assert size_of_varint(value) == len(data)


@pytest.mark.parametrize(("value", "hexbytes"), VARLONG_VECTORS)
def test_varlong_vectors(value: int, hexbytes: str) -> None:
    data = bytes.fromhex(hexbytes)
    assert encode_varlong(value) == data
    assert read_varlong(data, 0) == (value, len(data))
    assert size_of_varlong(value) == len(data)


@given(st.integers(INT32_MIN, INT32_MAX), st.binary(max_size=3), st.binary(max_size=3))
def test_varint_roundtrip(value: int, prefix: bytes, suffix: bytes) -> None:
    data = encode_varint(value)
    assert data == zz(value)
    assert len(data) == size_of_varint(value) <= 5
    buf = memoryview(prefix + data + suffix)
    assert read_varint(buf, len(prefix)) == (value, len(prefix) + len(data))


@given(st.integers(INT64_MIN, INT64_MAX), st.binary(max_size=3), st.binary(max_size=3))
def test_varlong_roundtrip(value: int, prefix: bytes, suffix: bytes) -> None:
    data = encode_varlong(value)
    assert data == zz(value)
    assert len(data) == size_of_varlong(value) <= 10
    buf = bytearray(prefix + data + suffix)
    assert read_varlong(buf, len(prefix)) == (value, len(prefix) + len(data))


@given(st.integers(INT32_MIN, INT32_MAX))
def test_write_varint_appends(value: int) -> None:
    out = bytearray(b"xy")
    write_varint(out, value)
    assert bytes(out) == b"xy" + zz(value)


@pytest.mark.parametrize("value", [INT32_MIN, -300, 300, INT32_MAX])
def test_truncated_varint_raises(value: int) -> None:
    data = encode_varint(value)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            read_varint(data[:cut], 0)


@pytest.mark.parametrize("value", [INT64_MIN, -(1 << 40), 1 << 40, INT64_MAX])
def test_truncated_varlong_raises(value: int) -> None:
    data = encode_varlong(value)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            read_varlong(data[:cut], 0)


def test_read_at_end_of_buffer_raises() -> None:
    with pytest.raises(DecodeError):
        read_varint(b"\x02", 1)
    with pytest.raises(DecodeError):
        read_varlong(memoryview(b""), 0)


def test_overlong_varint_rejected() -> None:
    assert read_varint(b"\x80\x80\x80\x80\x00", 0) == (0, 5)  # 5 bytes is the limit
    for n in (5, 6, 9):
        with pytest.raises(DecodeError, match="longer than 5"):
            read_varint(b"\x80" * n + b"\x00", 0)


def test_overlong_varlong_rejected() -> None:
    assert read_varlong(b"\x80" * 9 + b"\x00", 0) == (0, 10)
    for n in (10, 11, 20):
        with pytest.raises(DecodeError, match="longer than 10"):
            read_varlong(b"\x80" * n + b"\x00", 0)


def test_excess_bits_in_last_byte_dropped_like_java() -> None:
    # Java's readVarint computes `b << 28` in 32-bit arithmetic: the high bits fall off.
    assert read_varint(b"\xff\xff\xff\xff\x7f", 0) == (INT32_MIN, 5)
    assert read_varlong(b"\xfe" + b"\xff" * 8 + b"\x7f", 0) == (INT64_MAX, 10)


@pytest.mark.parametrize("value", [INT32_MAX + 1, INT32_MIN - 1])
def test_varint_encode_out_of_range(value: int) -> None:
    with pytest.raises(EncodeError):
        encode_varint(value)


@pytest.mark.parametrize("value", [INT64_MAX + 1, INT64_MIN - 1])
def test_varlong_encode_out_of_range(value: int) -> None:
    with pytest.raises(EncodeError):
        encode_varlong(value)
