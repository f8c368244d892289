"""Transaction state while the cleaner walks a log (Kafka's CleanedTransactionMetadata).

Decides which batches belong to aborted transactions (they are discarded) and when a
transaction marker may go: an ABORT marker once no batch of its transaction is left, a COMMIT
marker once no batch of its transaction was seen in this pass (the first pass then stamps a
delete horizon on it, a later pass past that horizon removes it: Kafka's two-pass rule).
Aborted transactions still holding batches are written to the cleaned segment's txn index.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from pykbroker.errors import DecodeError
from pykbroker.log.txn_index import AbortedTxn, TransactionIndex
from pykbroker.records import CONTROL_ABORT, CONTROL_COMMIT, BatchHeader, control_type, iter_records

__all__ = ["CleanedTransactionMetadata", "collect_aborted"]

Buffer = bytes | bytearray | memoryview


def collect_aborted(entries: Iterable[AbortedTxn], start: int, upper: int) -> list[AbortedTxn]:
    """Aborted transactions overlapping [start, upper), as Kafka's collectAbortedTransactions."""
    return [e for e in entries if e.last_offset >= start and e.first_offset < upper]


class _Aborted:
    __slots__ = ("last_observed", "txn")

    def __init__(self, txn: AbortedTxn) -> None:
        self.txn = txn
        self.last_observed = -1


class CleanedTransactionMetadata:
    """Ongoing committed and aborted transactions at the cleaner's position."""

    def __init__(self) -> None:
        self._committed: set[int] = set()
        self._aborted: dict[int, _Aborted] = {}
        self._pending: list[tuple[int, int, AbortedTxn]] = []  # heap by first offset
        self._seen: set[AbortedTxn] = set()
        self.cleaned_index: TransactionIndex | None = None

    def add_aborted(self, entries: Iterable[AbortedTxn]) -> None:
        for entry in entries:
            if entry not in self._seen:
                self._seen.add(entry)
                heapq.heappush(self._pending, (entry.first_offset, entry.last_offset, entry))

    def _consume_up_to(self, offset: int) -> None:
        while self._pending and self._pending[0][0] <= offset:
            entry = heapq.heappop(self._pending)[2]
            self._aborted.setdefault(entry.producer_id, _Aborted(entry))

    def on_control_batch(self, header: BatchHeader, batch: Buffer) -> bool:
        """A marker was read; True when it may be discarded."""
        self._consume_up_to(header.last_offset)
        if header.records_count == 0:
            return True  # already emptied by an earlier cleaning
        try:
            record = next(iter_records(batch))
            kind = control_type(record)
        except (DecodeError, StopIteration):
            return False
        pid = header.producer_id
        if kind == CONTROL_ABORT:
            ongoing = self._aborted.pop(pid, None)
            if ongoing is not None and ongoing.last_observed >= 0:
                if self.cleaned_index is not None:
                    self.cleaned_index.append(ongoing.txn)
                return False
            return True
        if kind == CONTROL_COMMIT:
            if pid in self._committed:
                self._committed.discard(pid)
                return False
            return True
        return False

    def on_batch(self, header: BatchHeader) -> bool:
        """A data batch was read; True when it belongs to an aborted transaction."""
        self._consume_up_to(header.last_offset)
        if not header.is_transactional:
            return False
        ongoing = self._aborted.get(header.producer_id)
        if ongoing is not None:
            ongoing.last_observed = header.last_offset
            return True
        self._committed.add(header.producer_id)
        return False
