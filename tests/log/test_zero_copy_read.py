"""Zero-copy fetch reads: large batches come back as a FileSlice for sendfile, holding the
same bytes, offsets and limits as an ordinary read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pykbroker.file_slice import FileSlice
from pykbroker.log.reader import SENDFILE_MIN
from tests.log.helpers import batch, open_log


def _materialize(data: object) -> bytes:
    return data.read() if isinstance(data, FileSlice) else bytes(data)  # type: ignore[call-overload]


def test_large_batches_come_back_as_a_slice_of_the_segment(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    for _ in range(4):
        log.append_as_leader(batch(2, value_size=SENDFILE_MIN), leader_epoch=0)
    plain = log.read(0, 1 << 30)
    sliced = log.read(0, 1 << 30, zero_copy=True)
    assert isinstance(sliced.data, FileSlice)
    assert _materialize(sliced.data) == bytes(plain.data)
    assert (sliced.first_offset, sliced.next_offset) == (0, 8)
    # Inside a batch: that whole batch; a budget of 2.5 batches: two whole ones.
    one = len(plain.data) // 4
    part = log.read(3, one * 5 // 2, zero_copy=True)
    assert (part.first_offset, part.next_offset, len(part.data)) == (2, 6, 2 * one)
    # The high watermark caps it; a first batch over the budget still comes whole...
    assert log.read(0, 1 << 30, max_offset=4, zero_copy=True).next_offset == 4
    assert len(log.read(0, 10, zero_copy=True).data) == one
    # ...unless it is not the first data of the response.
    assert len(log.read(0, 10, min_one_batch=False, zero_copy=True).data) == 0
    log.close()


def test_small_batches_are_read_as_bytes(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    for _ in range(10):
        log.append_as_leader(batch(3), leader_epoch=0)
    got = log.read(0, 1 << 20, zero_copy=True)
    assert not isinstance(got.data, FileSlice) and got.next_offset == 30
    log.close()


def test_a_slice_outlives_its_segment(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append_as_leader(batch(1, value_size=SENDFILE_MIN * 2), leader_epoch=0)
    expected = bytes(log.read(0, 1 << 30).data)
    sliced = log.read(0, 1 << 30, zero_copy=True).data
    assert isinstance(sliced, FileSlice)
    log.delete()  # retention or topic deletion while the response waits to be sent
    assert sliced.read() == expected
    fd = sliced.fd
    sliced.close()
    with pytest.raises(OSError):
        os.fstat(fd)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.sampled_from([10, 500, SENDFILE_MIN // 2, SENDFILE_MIN, SENDFILE_MIN * 2]),
                   min_size=1, max_size=12),
    segment_kib=st.sampled_from([300, 600, 2048]),
    data=st.data(),
)
def test_zero_copy_read_is_a_prefix_of_the_plain_read(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], segment_kib: int,
    data: st.DataObject,
) -> None:
    """Same first batch, whole batches only, never past the budget or the limit; it may stop
    at a segment end where the plain read goes on into the next segment."""
    log = open_log(tmp_path_factory.mktemp("z") / "t-0", segment_bytes=segment_kib * 1024)
    for size in sizes:
        log.append_as_leader(batch(2, value_size=size), leader_epoch=0)
    end = log.log_end_offset
    offset = data.draw(st.integers(0, end - 1))
    limit = data.draw(st.integers(offset + 1, end))
    max_bytes = data.draw(st.integers(0, 3 * SENDFILE_MIN))
    first = data.draw(st.booleans())
    plain = log.read(offset, max_bytes, max_offset=limit, min_one_batch=first)
    sliced = log.read(offset, max_bytes, max_offset=limit, min_one_batch=first, zero_copy=True)
    event("file slice" if isinstance(sliced.data, FileSlice) else "bytes")
    got, want = _materialize(sliced.data), bytes(plain.data)
    assert want.startswith(got)
    assert bool(got) == bool(want)
    if got:
        assert sliced.first_offset == plain.first_offset
        assert sliced.next_offset <= plain.next_offset <= limit or (
            plain.next_offset > limit and len(want) == len(got))
    if got == want:
        assert sliced.next_offset == plain.next_offset
    log.close()


@pytest.mark.trio
async def test_a_file_that_shrinks_mid_send_closes_the_connection(tmp_path: Path) -> None:
    from pykbroker.server.connection import ConnectionClosed, _sendfile_all

    path = tmp_path / "f"
    path.write_bytes(b"x" * 4096)
    fd = os.open(path, os.O_RDONLY)
    piece = FileSlice(fd, 0, 4096)
    os.close(fd)
    os.truncate(path, 100)
    a, b = trio.socket.socketpair()
    with a, b:
        with pytest.raises(ConnectionClosed, match="short"):
            await _sendfile_all(a, piece)
        assert await b.recv(8192) == b"x" * 100  # what the file still had went out
    piece.close()
