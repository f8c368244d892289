"""``/isr_change_notification/isr_change_NNNNNNNNNN``: ISR changes written straight to ZooKeeper.

Brokers whose inter-broker protocol predates AlterPartition (IBP < 2.7-IV2) update a
partition's state znode themselves and then leave one of these sequential notifications so
the controller re-reads the states and sends UpdateMetadata; 3.9 brokers send AlterPartition
instead, but the 3.9 controller still watches this path and deletes what it processed
(``KafkaZkClient.propagateIsrChanges``, ``KafkaController.processIsrChangeNotification``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pykbroker.metadata.zk.codec import JsonObject, ZNodeDecodeError, dump_json, parse_java_int

__all__ = ["ISR_CHANGE_PATH", "ISR_CHANGE_PREFIX", "IsrChangeNotification"]

ISR_CHANGE_PATH: Final = "/isr_change_notification"
ISR_CHANGE_PREFIX: Final = "isr_change_"


@dataclass(frozen=True)
class IsrChangeNotification:
    """``{"version":1,"partitions":[{"topic":"t","partition":0}]}``."""

    partitions: tuple[tuple[str, int], ...]

    @staticmethod
    def create_path() -> str:
        """The prefix to create with ``sequence=True``; ZooKeeper appends ``%010d``."""
        return f"{ISR_CHANGE_PATH}/{ISR_CHANGE_PREFIX}"

    @staticmethod
    def sequence_number(node_name: str) -> int:
        if not node_name.startswith(ISR_CHANGE_PREFIX):
            raise ZNodeDecodeError(f"{node_name!r} is not an ISR change notification")
        return parse_java_int(node_name[len(ISR_CHANGE_PREFIX) :], "ISR change sequence number")

    def to_json(self) -> bytes:
        entries = [{"topic": topic, "partition": partition} for topic, partition in self.partitions]
        return dump_json([("version", 1), ("partitions", entries)])

    @classmethod
    def from_json(cls, data: bytes) -> IsrChangeNotification:
        obj = JsonObject.parse(data, "ISR change notification")
        return cls(
            tuple((p.get_str("topic"), p.get_int("partition")) for p in obj.objects("partitions"))
        )
