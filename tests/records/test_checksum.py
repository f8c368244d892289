"""The lazily imported CRC-32C is the Castagnoli CRC record batches carry."""

from __future__ import annotations

import crc32c as reference
from hypothesis import given
from hypothesis import strategies as st

from pykbroker.records.checksum import crc32c


def test_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    assert crc32c(b"") == 0


@given(st.binary(max_size=4096), st.sampled_from([bytes, bytearray, memoryview]))
def test_matches_the_crc32c_package_for_any_buffer(data: bytes, kind: type) -> None:
    assert crc32c(kind(data)) == reference.crc32c(data)
