"""``/latest_producer_id_block``: the last block of producer ids handed to a broker.

A broker needing producer ids reads the block and its znode version, writes the next block
with a set conditional on that version, and retries from the read if another broker won
(``ZkProducerIdManager.getNewProducerIdBlock``); so blocks never overlap. The znode exists
with no data until the first block is taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pykbroker.metadata.zk.codec import INT32_MAX, JsonObject, dump_json, parse_java_long

__all__ = ["PRODUCER_ID_BLOCK_SIZE", "ProducerIdBlock"]

# ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE
PRODUCER_ID_BLOCK_SIZE: Final = 1000
_LONG_MAX: Final = 2**63 - 1


@dataclass(frozen=True)
class ProducerIdBlock:
    """``{"version":1,"broker":N,"block_start":"S","block_end":"E"}`` (ids as decimal strings)."""

    broker: int
    block_start: int
    block_end: int  # inclusive

    @staticmethod
    def path() -> str:
        return "/latest_producer_id_block"

    @classmethod
    def first(cls, broker: int) -> ProducerIdBlock:
        return cls(broker, 0, PRODUCER_ID_BLOCK_SIZE - 1)

    def next(self, broker: int) -> ProducerIdBlock:
        """The block after this one, for ``broker``; raises once the ids are exhausted."""
        if self.block_end > _LONG_MAX - PRODUCER_ID_BLOCK_SIZE:
            raise OverflowError("producer ids exhausted")
        return ProducerIdBlock(broker, self.block_end + 1, self.block_end + PRODUCER_ID_BLOCK_SIZE)

    def to_json(self) -> bytes:
        return dump_json(
            [
                ("version", 1),
                ("broker", self.broker),
                ("block_start", str(self.block_start)),
                ("block_end", str(self.block_end)),
            ]
        )

    @classmethod
    def from_json(cls, data: bytes) -> ProducerIdBlock:
        obj = JsonObject.parse(data, "producer id block znode")
        broker = obj.get_int("broker")
        start = parse_java_long(obj.get_str("block_start"), "producer id block_start")
        end = parse_java_long(obj.get_str("block_end"), "producer id block_end")
        if not 0 <= end - start + 1 <= INT32_MAX:  # Kafka's Math.toIntExact of the block size
            raise obj.error("block size out of range")
        return cls(broker, start, end)

    @classmethod
    def from_json_or_none(cls, data: bytes | None) -> ProducerIdBlock | None:
        """No data (the znode Kafka creates empty at start-up) means no block was taken yet."""
        return None if not data else cls.from_json(data)
