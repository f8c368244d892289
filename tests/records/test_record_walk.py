"""The records walk's compiled hot loop (pykbroker.records.record_walk, built by mypyc at
install) against its own source run by the interpreter: same answers on valid records, on
records that stop the fast loop (long varints, wrong offset deltas, lying lengths) and on
garbage; and the install really compiled it where a C compiler exists."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from types import ModuleType

from hypothesis import given, settings
from hypothesis import strategies as st

from pykbroker.errors import DecodeError
from pykbroker.records import record_walk
from pykbroker.records.inspect import _walk
from tests.records.helpers import raw_record

SOURCE = Path(record_walk.__file__).with_name("record_walk.py")


def _source_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("record_walk_source", SOURCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


INTERPRETED = _source_module()


def test_the_install_compiled_the_walk_when_it_could() -> None:
    """`make test`'s install builds the extension (setup.py); a silent fall-back to the
    interpreted loop would cost the lz4/zstd produce cells a third of their throughput."""
    if os.environ.get("PYKBROKER_PURE_PYTHON") == "1" or shutil.which("cc") is None:
        assert record_walk.__file__.endswith(".py")
    else:
        assert not record_walk.__file__.endswith(".py"), record_walk.__file__


records = st.lists(
    st.tuples(
        st.one_of(st.binary(max_size=300),  # value (key none): lengths of 1 to 3 bytes
                  st.integers(8000, 20000).map(lambda n: b"v" * n)),
        st.integers(-(1 << 62), 1 << 62),  # timestamp delta: varlongs of 1 to 10 bytes
        st.sampled_from([0, 0, 0, 0, 1, -1, 5000]),  # offset delta error
        st.sampled_from([0, 0, 0, 0, 0, 0, 1, -1, 3, -50]),  # a lying length
    ),
    max_size=30,
)
first_index = st.one_of(st.integers(0, 80), st.integers(8150, 8250),
                        st.integers((1 << 20) - 50, (1 << 20) + 50), st.just((1 << 27) - 3))


def _records(recs: list[tuple[bytes, int, int, int]], first: int, tail: bytes) -> bytes:
    data = bytearray()
    for i, (value, ts, wrong, adjust) in enumerate(recs):
        data += raw_record(None, value, offset_delta=first + i + wrong, timestamp_delta=ts,
                           length_adjust=adjust)
    return bytes(data + tail)


@settings(max_examples=300, deadline=None)
@given(records, first_index, st.integers(0, 30), st.integers(0, 50), st.binary(max_size=40))
def test_compiled_and_interpreted_loops_agree(
        recs: list[tuple[bytes, int, int, int]], first: int, start: int, count: int,
        tail: bytes) -> None:
    blob = _records(recs, first, tail)
    pos = min(start, len(blob))
    got = record_walk.skip_simple_records(blob, pos, first, first + count)
    assert got == INTERPRETED.skip_simple_records(blob, pos, first, first + count)
    assert pos <= got[0] <= len(blob) and first <= got[1] <= first + count


def _careful_walk(data: bytes | bytearray, index: int, count: int) -> object:
    """What inspect._walk answers: (pos, index) or the error's type and message."""
    try:
        return _walk(data, 0, index, count, 1 << 30, 1 << 30)
    except DecodeError as exc:
        return type(exc).__name__, str(exc)


@settings(max_examples=300, deadline=None)
@given(records, first_index, st.integers(0, 35), st.binary(max_size=40))
def test_the_fast_loop_never_changes_the_walks_verdict(
        recs: list[tuple[bytes, int, int, int]], first: int, count: int, tail: bytes) -> None:
    """inspect._walk runs the fast loop on bytes only: on a bytearray of the same records
    its careful loop judges every record. Same position and index, or the same error."""
    blob = _records(recs, first, tail)
    assert _careful_walk(blob, first, first + count) == _careful_walk(
        bytearray(blob), first, first + count)


def test_the_walk_steps_over_simple_records_and_stops_at_a_wrong_delta() -> None:
    blob = b"".join(raw_record(None, b"v" * 50, offset_delta=i) for i in range(100))
    size = len(raw_record(None, b"v" * 50, offset_delta=0))
    for walk in (record_walk.skip_simple_records, INTERPRETED.skip_simple_records):
        end, index = walk(blob + bytes(24), 0, 0, 100)
        assert index == 100 and end == len(blob)  # 2-byte offset deltas from 64 on
        bad = blob[:10 * size] + raw_record(None, b"v" * 50, offset_delta=7) + bytes(64)
        assert walk(bad, 0, 0, 100) == (10 * size, 10)
