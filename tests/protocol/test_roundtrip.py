"""Every message round-trips in every version: object -> bytes -> object and bytes -> object
-> bytes, and every truncation of valid bytes raises DecodeError."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pykbroker.errors import DecodeError
from tests.protocol.strategies import all_versions, message_by_name, message_class, message_strategy

CASES = all_versions()


@pytest.mark.parametrize(("name", "version"), CASES, ids=[f"{n}-v{v}" for n, v in CASES])
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_roundtrip(name: str, version: int, data: st.DataObject) -> None:
    cls = message_class(message_by_name(name))
    obj = data.draw(message_strategy(name, version))
    encoded = obj.to_bytes(version)
    decoded, end = cls.decode(encoded, 0, version)
    assert end == len(encoded)
    assert decoded == obj
    assert decoded.to_bytes(version) == encoded
    # Decoding at an offset inside a larger buffer works the same.
    padded = b"\x07" * 3 + encoded + b"\x09"
    again, end = cls.decode(padded, 3, version)
    assert again == obj and end == 3 + len(encoded)
    # Any truncation is detected, with our exception only.
    for cut in sorted({0, len(encoded) // 2, max(len(encoded) - 1, 0)}):
        if cut < len(encoded):
            with pytest.raises(DecodeError):
                cls.decode(encoded[:cut], 0, version)


def test_every_schema_has_cases() -> None:
    names = {n for n, _ in CASES}
    assert len(names) == 218
    assert ("FetchRequest", 17) in CASES and ("ProduceRequest", 11) in CASES
