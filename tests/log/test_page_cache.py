"""``log.page.cache.keep.bytes``: a log keeps only the end of each segment in the page cache.

Residency is read from the kernel with mincore(2) on the real segment file, so these tests
fail if the drop never happens (or happens with -1, Kafka's behaviour).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
from pathlib import Path

import pytest

from pykbroker.config.broker_config import BrokerConfig
from pykbroker.config.types import ConfigError
from pykbroker.log import LogConfig, LogManager, PartitionLog
from pykbroker.log.segment import CACHE_DROP_STEP
from tests.log.helpers import FakeClock, batch

MIB = 1024 * 1024
PAGE = mmap.PAGESIZE
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def resident_fraction(path: Path, start: int, end: int) -> float:
    """The share of ``path``'s pages in [start, end) that are in the page cache."""
    start -= start % PAGE
    length = end - start
    pages = (length + PAGE - 1) // PAGE
    _libc.mmap.restype = ctypes.c_void_p
    _libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                           ctypes.c_int, ctypes.c_long]
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = _libc.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd, start)
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            vec = (ctypes.c_ubyte * pages)()
            ok = _libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(length), vec)
            assert ok == 0, os.strerror(ctypes.get_errno())
            return sum(v & 1 for v in vec) / pages
        finally:
            _libc.munmap(ctypes.c_void_p(addr), ctypes.c_size_t(length))
    finally:
        os.close(fd)


def fill(log: PartitionLog, nbytes: int) -> None:
    """Append ~64 KiB batches until the log has grown by ``nbytes``."""
    grown = 0
    while grown < nbytes:
        b = batch(16, value_size=4096)
        log.append_as_leader(b, leader_epoch=0)
        grown += len(b)


def segment_file(log: PartitionLog) -> Path:
    (path,) = sorted(log.directory.glob("*.log"))
    return path


def _manager(tmp_path: Path, keep: int) -> LogManager:
    return LogManager([tmp_path / "data"], LogConfig(), now_ms=FakeClock(),
                      page_cache_keep_bytes=keep)


def test_a_growing_segment_keeps_only_its_end_in_the_page_cache(tmp_path: Path) -> None:
    log = _manager(tmp_path, 1 * MIB).get_or_create("t", 0)
    fill(log, 12 * MIB)
    log.flush()  # what was dirty at the last drop is clean now: the next drop evicts it
    fill(log, CACHE_DROP_STEP + MIB)
    path = segment_file(log)
    size = path.stat().st_size
    assert resident_fraction(path, 0, 8 * MIB) < 0.05
    assert resident_fraction(path, size - MIB // 2, size) > 0.9  # the end stays cached
    # Nothing is lost: every record reads back (from disk).
    assert log.log_end_offset == 16 * (log.log_end_offset // 16)
    data = log.read(0, 1 << 30).data
    assert len(data) == size


def test_minus_one_leaves_the_page_cache_to_the_os(tmp_path: Path) -> None:
    log = _manager(tmp_path, -1).get_or_create("t", 0)
    fill(log, 12 * MIB)
    log.flush()
    fill(log, CACHE_DROP_STEP + MIB)
    assert resident_fraction(segment_file(log), 0, 8 * MIB) > 0.9


def test_loaded_logs_get_the_setting_too(tmp_path: Path) -> None:
    first = _manager(tmp_path, 1 * MIB)
    first.get_or_create("t", 0)
    first.close()
    again = _manager(tmp_path, 1 * MIB)
    logs = again.load_all()
    assert [log.page_cache_keep_bytes for log in logs.values()] == [1 * MIB]


def test_the_broker_setting() -> None:
    no_env: dict[str, str] = {}
    assert BrokerConfig.load(env=no_env).log_page_cache_keep_bytes == 16 * MIB
    cfg = BrokerConfig.load(env=no_env, overrides=["log.page.cache.keep.bytes=-1"])
    assert cfg.log_page_cache_keep_bytes == -1
    with pytest.raises(ConfigError, match="log.page.cache.keep.bytes"):
        BrokerConfig.load(env=no_env, overrides=["log.page.cache.keep.bytes=-2"])
