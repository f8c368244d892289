"""Property: random produce / tombstone / transaction / abort / idempotent sequences and
random cleaner runs against a model of what a read_committed consumer must see."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pykbroker.log import PartitionLog
from pykbroker.log.cleaner import Cleaner
from pykbroker.records import BatchHeader, NewRecord, build_batch
from tests.log.cleaner_helpers import clean, compact_log, put, read_committed
from tests.log.helpers import FakeClock

KEYS = [b"a", b"b", b"c", b"d", b"e"]
RETENTION = 1000

op = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(KEYS), st.booleans(), st.sampled_from([0, 1, 4])),
    st.tuples(st.just("idem"), st.sampled_from(KEYS), st.booleans()),
    st.tuples(st.just("txn"), st.lists(st.sampled_from(KEYS), min_size=1, max_size=3),
              st.booleans()),
    st.tuples(st.just("clean"), st.integers(0, 2 * RETENTION)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=1, max_size=40), st.integers(2, 200))
def test_cleaned_log_matches_model(ops: list[tuple[object, ...]], map_keys: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _run(Path(tmp) / "t-0", ops, map_keys)


def _run(path: Path, ops: list[tuple[object, ...]], map_keys: int) -> None:
    clock = FakeClock()
    log = compact_log(path, clock, segment_bytes=400, delete_retention_ms=RETENTION)
    cleaner = Cleaner(dedupe_buffer_size=24 * map_keys)
    written: dict[int, tuple[bytes, bytes | None]] = {}  # offset -> committed record
    model: dict[bytes, bytes | None] = {}  # newest committed value (None: tombstone)
    aborted: set[int] = set()
    idem_seq = 0
    last_idem: tuple[bytearray, int] | None = None
    n = 0
    for step in ops:
        n += 1
        clock.advance(7)
        kind = step[0]
        if kind == "put":
            _, key, tomb, codec = step
            value = None if tomb else b"v%d" % n
            offset = put(log, (key, value), codec=codec)  # type: ignore[arg-type]
            written[offset] = (key, value)  # type: ignore[assignment]
            model[key] = value  # type: ignore[index]
        elif kind == "idem":
            _, key, tomb = step
            value = None if tomb else b"i%d" % n
            raw = bytearray(build_batch([NewRecord(key, value, (), clock())], producer_id=7,  # type: ignore[arg-type]
                                        producer_epoch=0, base_sequence=idem_seq))
            offset = log.append_as_leader(bytearray(raw), leader_epoch=0).first_offset
            last_idem = (raw, offset)
            idem_seq += 1
            written[offset] = (key, value)  # type: ignore[assignment]
            model[key] = value  # type: ignore[index]
        elif kind == "txn":
            _, keys, commit = step
            pid = 100 + n
            first = -1
            for i, key in enumerate(keys):  # type: ignore[attr-defined]
                value = b"t%d-%d" % (n, i)
                offset = put(log, (key, value), pid=pid, epoch=0, seq=i, txn=True)
                first = offset if first < 0 else first
                if commit:
                    written[offset] = (key, value)
                    model[key] = value
                else:
                    aborted.add(offset)
            log.append_marker(pid, 0, bool(commit), 0, leader_epoch=0)
        else:
            clock.advance(int(step[1]))  # type: ignore[call-overload]
            clean(log, cleaner=cleaner)
        _check(log, written, model, aborted)
    # dedup of the idempotent producer's last batch survives cleaning and a restart
    for current in (log, _reopen(log)):
        if last_idem is not None:
            end = current.log_end_offset
            info = current.append_as_leader(bytearray(last_idem[0]), leader_epoch=0)
            assert info.first_offset == last_idem[1] and current.log_end_offset == end
    _check(_reopen(log), written, model, aborted)


def _reopen(log: PartitionLog) -> PartitionLog:
    log.close()
    return PartitionLog.open(log.directory, log.config, now_ms=log._now_ms,
                             had_clean_shutdown=False)


def _check(log: PartitionLog, written: dict[int, tuple[bytes, bytes | None]],
           model: dict[bytes, bytes | None], aborted: set[int]) -> None:
    visible = read_committed(log)
    offsets = [o for o, _, _ in visible]
    assert offsets == sorted(set(offsets))
    newest: dict[bytes, bytes | None] = {}
    for offset, key, value in visible:
        assert offset not in aborted
        assert written[offset] == (key, value)  # offsets kept, record unchanged
        assert key is not None
        newest[key] = value
    for key, value in model.items():
        if value is None:
            assert newest.get(key) is None
        else:
            assert newest.get(key) == value
    for key in newest:
        assert key in model
    # the batches still pass Kafka's header checks
    data = bytes(log.read(log.log_start_offset, 1 << 30).data)
    pos = 0
    while pos < len(data):
        header = BatchHeader.parse(data, pos)
        assert header.magic == 2
        pos += header.size
