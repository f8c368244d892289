"""Hostile bytes: whatever arrives, only DecodeError (or CorruptRecordError) comes out."""

from __future__ import annotations

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pykbroker.errors import DecodeError
from pykbroker.records import (
    GZIP,
    LZ4,
    NONE,
    SNAPPY,
    ZSTD,
    build_batch,
    build_control_batch,
    control_type,
    end_txn_coordinator_epoch,
    iter_batches,
    iter_records,
    valid_prefix_length,
    validate_batch,
)
from pykbroker.records.batch import HEADER
from tests.records.helpers import fix_crc

CAP = 1 << 20
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def consume(buf: bytes | bytearray) -> None:
    """Everything a broker might do with untrusted batch bytes."""
    try:
        valid_prefix_length(buf)
        for _ in iter_batches(buf, allow_partial=True, validate=False):
            pass
    except DecodeError:
        pass
    try:
        header = validate_batch(buf)
    except DecodeError:
        header = None
    try:
        for record in iter_records(buf, max_decompressed_size=CAP):
            if header is not None and header.is_control:
                control_type(record)
                end_txn_coordinator_epoch(record)
    except DecodeError:
        pass


def seed_batches() -> list[bytes]:
    recs = [(b"k%d" % i, b"v" * i, [("h", b"x"), ("n", None)], 1000 + i) for i in range(4)]
    seeds = [build_batch(recs, compression=c) for c in (NONE, GZIP, SNAPPY, LZ4, ZSTD)]
    seeds.append(build_control_batch(1, 0, True, 3, timestamp=5))
    return seeds


SEEDS = seed_batches()


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    consume(data)


@FUZZ
@given(st.binary(max_size=150), st.integers(0, 0x7F), st.integers(-3, 10))
def test_random_section_with_valid_header(section: bytes, attributes: int, count: int) -> None:
    """Valid length, magic and CRC around random bytes: reaches the record decoder."""
    header = HEADER.pack(
        0, 49 + len(section), 0, 2, 0, attributes, max(count - 1, 0), 0, 0, -1, -1, -1, count
    )
    consume(fix_crc(header + section))


@FUZZ
@given(st.sampled_from(SEEDS), st.data(), st.booleans())
def test_mutated_valid_batches(seed: bytes, data: st.DataObject, recrc: bool) -> None:
    buf = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["set", "flip", "cut", "insert", "delete"]))
        i = data.draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "set" and buf:
            buf[i] = data.draw(st.integers(0, 255))
        elif op == "flip" and buf:
            buf[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del buf[i:]
        elif op == "insert":
            buf[i:i] = data.draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del buf[i : i + data.draw(st.integers(1, 8))]
    consume(fix_crc(buf) if recrc else bytes(buf))


@FUZZ
@given(st.lists(st.sampled_from(SEEDS), min_size=1, max_size=4), st.data())
def test_concatenated_batches_with_damage(batches: list[bytes], data: st.DataObject) -> None:
    buf = bytearray(b"".join(batches))
    ends = [sum(len(b) for b in batches[: n + 1]) for n in range(len(batches))]
    i = data.draw(st.integers(0, len(buf) - 1))
    start = max([0, *[e for e in ends if e <= i]])
    # Base offset and leader epoch are outside the CRC: damage there is undetectable.
    assume(not (i - start < 8 or 12 <= i - start < 16))
    buf[i] ^= 0xFF
    prefix = valid_prefix_length(buf)
    assert prefix <= i
    assert prefix == max([0, *[e for e in ends if e <= i]])
    consume(buf)
