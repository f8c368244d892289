"""The persistent znodes a Kafka 3.9 broker creates at start-up (``ZkData.PersistentZkPaths``).

Creating them up front lets every later create be a plain create of a leaf, and lets the
controller set child watches on paths that exist.
"""

from __future__ import annotations

from typing import Final

from pykbroker.metadata.zk.admin import DELETE_TOPICS_PATH
from pykbroker.metadata.zk.brokers import BROKER_IDS_PATH, BrokerSequenceId
from pykbroker.metadata.zk.configs import CHANGES_PATH, CONFIG_PATH, ENTITY_TYPES
from pykbroker.metadata.zk.isr_changes import ISR_CHANGE_PATH
from pykbroker.metadata.zk.producer_ids import ProducerIdBlock
from pykbroker.metadata.zk.topics import TOPICS_PATH

__all__ = ["PERSISTENT_PATHS"]

PERSISTENT_PATHS: Final = (
    "/consumers",  # the pre-0.9 consumer's offsets, still created
    BROKER_IDS_PATH,
    TOPICS_PATH,
    CHANGES_PATH,
    DELETE_TOPICS_PATH,
    BrokerSequenceId.path(),
    ISR_CHANGE_PATH,
    ProducerIdBlock.path(),
    "/log_dir_event_notification",
    *(f"{CONFIG_PATH}/{entity_type}" for entity_type in ENTITY_TYPES),
)
