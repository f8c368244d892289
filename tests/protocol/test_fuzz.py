"""Fuzzing: random and mutated request frames for every API raise only DecodeError, never
hang, and never allocate beyond what the frame holds."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pykbroker.errors import DecodeError
from pykbroker.protocol.api import APIS
from pykbroker.protocol.framing import decode_request_body, encode_request, parse_request_header
from tests.protocol.strategies import message_strategy

API_CASES = [(k, v) for k, spec in sorted(APIS.items())
             for v in range(spec.min_version, spec.max_version + 1)]
FUZZ = settings(max_examples=25, deadline=2000, suppress_health_check=list(HealthCheck))


def _parse(frame: bytes) -> None:
    try:
        req = parse_request_header(frame)
        decode_request_body(frame, req)
    except DecodeError:
        pass


@st.composite
def _mutated(draw: st.DrawFn, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete", "big"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xFF]))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and data:
            del data[pos]
        elif op == "big" and len(data) >= pos + 4:
            # A hostile length or count: must be refused before anything is allocated.
            data[pos:pos + 4] = struct.pack(">i", draw(st.sampled_from([2**31 - 1, 2**28, -2])))
    return bytes(data)


@pytest.mark.parametrize(("api_key", "version"), API_CASES,
                         ids=[f"{APIS[k].name}-v{v}" for k, v in API_CASES])
@FUZZ
@given(data=st.data())
def test_mutated_request_frames(api_key: int, version: int, data: st.DataObject) -> None:
    spec = APIS[api_key]
    body = data.draw(message_strategy(spec.name + "Request", version))
    frame = encode_request(api_key, version, 1, "fuzz", body)[4:]
    req = parse_request_header(frame)
    assert decode_request_body(frame, req) == body
    _parse(data.draw(_mutated(frame)))


@settings(max_examples=3000, deadline=2000, suppress_health_check=list(HealthCheck))
@given(
    api_key=st.sampled_from(sorted(APIS)),
    version=st.integers(0, 20),
    tail=st.binary(max_size=64),
)
def test_random_frames(api_key: int, version: int, tail: bytes) -> None:
    _parse(struct.pack(">hhi", api_key, version, 5) + tail)


@settings(max_examples=500, deadline=2000)
@given(st.binary(max_size=80))
def test_random_bytes(frame: bytes) -> None:
    _parse(frame)


def test_huge_declared_lengths_are_refused_without_allocating() -> None:
    # ProduceRequest v3: transactional id, acks, timeout, then a topic array declaring 2^31-1.
    frame = struct.pack(">hhih", 0, 3, 1, 0) + struct.pack(">hhii", -1, 1, 1000, 2**31 - 1)
    req = parse_request_header(frame)
    with pytest.raises(DecodeError, match="exceeds"):
        decode_request_body(frame, req)
    # A string declaring 32767 bytes with 3 present.
    frame = struct.pack(">hhih", 3, 1, 1, 0) + struct.pack(">ih", 1, 32767) + b"abc"
    with pytest.raises(DecodeError):
        decode_request_body(frame, parse_request_header(frame))


def test_unknown_api_key_and_trailing_bytes() -> None:
    with pytest.raises(DecodeError, match="unknown API key"):
        parse_request_header(struct.pack(">hhih", 999, 0, 1, -1))
    from pykbroker.protocol._generated.api_versions_request import ApiVersionsRequest

    frame = encode_request(18, 2, 9, "c", ApiVersionsRequest())
    # Bytes after a whole body are ignored, as Kafka ignores them (librdkafka#5049).
    padded = frame[4:] + b"\x00\x00\x00"
    assert decode_request_body(padded, parse_request_header(padded)) == ApiVersionsRequest()
