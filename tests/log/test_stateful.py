"""A model-based check: random appends, truncations, deletions, retention, clean and unclean
reopens, with every read and timestamp lookup compared against a plain list of records."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pykbroker.log import LogConfig, PartitionLog
from pykbroker.records import iter_batches, iter_records, validate_batch
from tests.log.helpers import T0, FakeClock, batch

CONFIG = LogConfig(segment_bytes=700, index_interval_bytes=150, retention_bytes=2500)


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp())
        self.clock = FakeClock(T0)
        self.log = PartitionLog.open(self.tmp / "t-0", CONFIG, now_ms=self.clock)
        self.records: list[tuple[int, int]] = []  # (offset, timestamp)
        self.batches: list[tuple[int, int]] = []  # (base, last)
        self.lso = 0

    def teardown(self) -> None:
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def leo(self) -> int:
        return self.batches[-1][1] + 1 if self.batches else 0

    @rule(stamps=st.lists(st.integers(0, 100), min_size=1, max_size=4), size=st.integers(0, 80))
    def append(self, stamps: list[int], size: int) -> None:
        info = self.log.append_as_leader(
            batch(len(stamps), timestamps=[T0 + s for s in stamps], value_size=size),
            leader_epoch=1,
        )
        assert info.first_offset == self.leo
        self.batches.append((info.first_offset, info.last_offset))
        self.records += [(info.first_offset + i, T0 + s) for i, s in enumerate(stamps)]

    @precondition(lambda self: self.batches)
    @rule(data=st.data())
    def truncate(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(self.lso, self.leo))
        self.log.truncate_to(offset)
        self.batches = [b for b in self.batches if b[1] < offset]
        self.records = [r for r in self.records if r[0] < self.leo]
        self.lso = min(self.lso, self.leo)  # a cut inside the batch holding the start offset

    @rule(data=st.data())
    def delete_records(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(self.lso, self.log.log_end_offset))
        assert self.log.delete_records_before(offset) == max(offset, self.lso)
        self.lso = max(offset, self.lso)

    @rule()
    def retention(self) -> None:
        self.log.apply_retention()
        assert self.log.log_start_offset >= self.lso
        self.lso = self.log.log_start_offset

    @rule(clean=st.booleans())
    def reopen(self, clean: bool) -> None:
        if clean:
            self.log.close()
        recovery_point = self.log.recovery_point
        self.log = PartitionLog.open(
            self.tmp / "t-0",
            CONFIG,
            now_ms=self.clock,
            log_start_offset=self.lso,
            recovery_point=recovery_point,
            had_clean_shutdown=clean,
        )

    @invariant()
    def reads_match_model(self) -> None:
        log = self.log
        assert log.log_start_offset == self.lso
        assert log.log_end_offset == self.leo
        assert log.segments[0] <= self.lso <= self.leo
        fetched = log.read(self.lso, 1 << 30)
        assert fetched.first_offset <= self.lso
        got = []
        for pos, _ in iter_batches(fetched.data):
            validate_batch(fetched.data, pos)
            got += [(r.offset, r.timestamp) for r in iter_records(fetched.data, pos)]
        assert got == [r for r in self.records if r[0] >= fetched.first_offset]
        visible = [r for r in self.records if r[0] >= self.lso]
        for target in (T0 - 1, T0 + 20, T0 + 50, T0 + 99, T0 + 101):
            expected = next(((t, o) for o, t in visible if t >= target), None)
            assert log.offset_for_timestamp(target) == expected


TestLogMachine = LogMachine.TestCase
TestLogMachine.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)
