"""Differential checks against kafka-python's own, independent v2 record code."""

from __future__ import annotations

from collections.abc import Iterator

import cramjam
import kafka.codec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from pykbroker.records import (
    GZIP,
    LZ4,
    NONE,
    SNAPPY,
    ZSTD,
    build_batch,
    build_control_batch,
    iter_records,
    validate_batch,
)
from pykbroker.records.compression import XERIAL_MAGIC

ALL_CODECS = [NONE, GZIP, SNAPPY, LZ4, ZSTD]


class _SnappyShim:
    """Stands in for python-snappy (not installed), so kafka-python writes xerial snappy."""

    @staticmethod
    def compress(data: bytes) -> bytes:
        return bytes(cramjam.snappy.compress_raw(data))

    @staticmethod
    def decompress(data: bytes) -> bytes:
        return bytes(cramjam.snappy.decompress_raw(data))


@pytest.fixture(autouse=True, scope="module")
def kafka_python_snappy() -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    mp.setattr(kafka.codec, "snappy", _SnappyShim)
    yield
    mp.undo()


Rec = tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]], int]
maybe_bytes = st.none() | st.binary(max_size=60)
records = st.lists(
    st.tuples(
        maybe_bytes,
        maybe_bytes,
        st.lists(st.tuples(st.text(max_size=8), maybe_bytes), max_size=3),
        st.integers(0, 1 << 42),
    ),
    min_size=1,
    max_size=10,
)


def kafka_python_build(recs: list[Rec], codec: int, pid: int = -1) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=pid >= 0,
        producer_id=pid,
        producer_epoch=0 if pid >= 0 else -1,
        base_sequence=0 if pid >= 0 else -1,
        batch_size=1 << 30,
    )
    for offset, (key, value, headers, ts) in enumerate(recs):
        assert builder.append(offset, ts, key, value, headers) is not None
    return bytes(builder.build())


def kafka_python_read(batch: bytes) -> list[Rec]:
    kb = DefaultRecordBatch(batch)
    assert kb.validate_crc()
    return [(r.key, r.value, list(r.headers), r.timestamp) for r in kb]


@pytest.mark.parametrize("codec", ALL_CODECS)
def test_kafka_python_batches_read_by_us(codec: int) -> None:
    recs: list[Rec] = [
        (b"key-%d" % i, b"value %d " % i * 20, [("trace", b"t%d" % i), ("n", None)], 10_000 + i)
        for i in range(30)
    ] + [(None, None, [], 9_000)]
    batch = kafka_python_build(recs, codec, pid=77)
    h = validate_batch(batch, strict=True)
    assert h.compression == codec  # the payload compresses well, so kafka-python keeps the codec
    assert (h.producer_id, h.is_transactional, h.records_count) == (77, True, len(recs))
    if codec == SNAPPY:
        assert batch[61:].startswith(XERIAL_MAGIC)  # kafka-python writes Java's framing
    got = list(iter_records(batch))
    assert [(r.key, r.value, r.headers, r.timestamp) for r in got] == recs
    assert [r.offset for r in got] == list(range(len(recs)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records, st.sampled_from(ALL_CODECS))
def test_differential_both_directions(recs: list[Rec], codec: int) -> None:
    theirs = kafka_python_build(recs, codec)
    validate_batch(theirs, strict=True)
    assert [(r.key, r.value, r.headers, r.timestamp) for r in iter_records(theirs)] == recs

    ours = build_batch(recs, compression=codec)
    assert kafka_python_read(ours) == recs
    assert DefaultRecordBatch(ours).compression_type == codec


@settings(max_examples=60, deadline=None)
@given(records)
def test_uncompressed_bytes_identical_to_kafka_python(recs: list[Rec]) -> None:
    # kafka-python writes partition leader epoch 0; everything else should match to the byte.
    theirs = kafka_python_build(recs, NONE, pid=5)
    ours = build_batch(
        recs,
        producer_id=5,
        producer_epoch=0,
        base_sequence=0,
        is_transactional=True,
        partition_leader_epoch=0,
    )
    assert ours == theirs


def test_control_batch_read_by_kafka_python() -> None:
    for commit in (True, False):
        batch = build_control_batch(9, 2, commit, 5, timestamp=100)
        kb = DefaultRecordBatch(batch)
        assert kb.validate_crc() and kb.is_control_batch and kb.is_transactional
        [marker] = list(kb)
        assert marker.commit is commit and marker.abort is not commit
        assert marker.version == 0
