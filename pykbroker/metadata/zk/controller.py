"""``/controller`` and ``/controller_epoch``: who controls the cluster, and since when.

A broker becomes controller by creating the ephemeral ``/controller`` and bumping
``/controller_epoch`` in one multi-op whose set is conditional on the epoch znode's version
(``KafkaZkClient.registerControllerAndIncrementControllerEpoch``); every later controller
write checks that version, so a deposed controller's writes fail with BADVERSION.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pykbroker.metadata.zk.codec import JsonObject, ZNodeDecodeError, dump_json, parse_java_int

__all__ = [
    "INITIAL_CONTROLLER_EPOCH",
    "INITIAL_CONTROLLER_EPOCH_ZK_VERSION",
    "ControllerEpoch",
    "ControllerRegistration",
]

# KafkaController.InitialControllerEpoch / InitialControllerEpochZkVersion: the value and
# znode version of /controller_epoch when the first controller creates it.
INITIAL_CONTROLLER_EPOCH: Final = 0
INITIAL_CONTROLLER_EPOCH_ZK_VERSION: Final = 0


@dataclass(frozen=True)
class ControllerRegistration:
    """``{"version":2,"brokerid":N,"timestamp":"<ms>","kraftControllerEpoch":-1}``.

    Kafka reads only ``brokerid`` and the optional ``kraftControllerEpoch`` (absent before
    version 2, ``-1`` when a ZK broker is controller, a KRaft epoch during migration); the
    timestamp is informational, so an absent or odd one reads as ``-1``.
    """

    broker_id: int
    timestamp: int = -1
    kraft_controller_epoch: int = -1

    @staticmethod
    def path() -> str:
        return "/controller"

    def to_json(self) -> bytes:
        return dump_json(
            [
                ("version", 2),
                ("brokerid", self.broker_id),
                ("timestamp", str(self.timestamp)),
                ("kraftControllerEpoch", self.kraft_controller_epoch),
            ]
        )

    @classmethod
    def from_json(cls, data: bytes) -> ControllerRegistration:
        obj = JsonObject.parse(data, "controller znode")
        epoch = obj.opt_int("kraftControllerEpoch")
        return cls(
            broker_id=obj.get_int("brokerid"),
            timestamp=obj.lenient_millis("timestamp"),
            kraft_controller_epoch=-1 if epoch is None else epoch,
        )


@dataclass(frozen=True)
class ControllerEpoch:
    """``/controller_epoch`` holds the epoch as bare decimal text (``"7"``), not JSON."""

    epoch: int

    @staticmethod
    def path() -> str:
        return "/controller_epoch"

    def to_json(self) -> bytes:
        return str(self.epoch).encode("ascii")

    @classmethod
    def from_json(cls, data: bytes) -> ControllerEpoch:
        try:
            text = bytes(data).decode("ascii")
        except UnicodeDecodeError:
            raise ZNodeDecodeError(f"controller epoch znode: not decimal text: {data!r}") from None
        return cls(parse_java_int(text, "controller epoch znode"))
