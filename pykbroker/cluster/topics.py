"""Topic names and the durable description of a topic (id, assignment, config overrides)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError

MAX_NAME_LENGTH = 249
_LEGAL = re.compile(r"[a-zA-Z0-9._-]+")
INTERNAL_TOPICS = frozenset(["__consumer_offsets", "__transaction_state"])


def validate_topic_name(name: str | None) -> str:
    """Kafka's Topic.validate: raises INVALID_TOPIC_EXCEPTION with Kafka's reasons."""
    if not name:
        raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION, "Topic name is illegal, it can't be empty")
    if name in (".", ".."):
        raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION,
                         "Topic name cannot be \".\" or \"..\"")
    if len(name) > MAX_NAME_LENGTH:
        raise KafkaError(
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            f"Topic name is illegal, it can't be longer than {MAX_NAME_LENGTH} characters, "
            f"topic name: {name}",
        )
    if not _LEGAL.fullmatch(name):
        raise KafkaError(
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            f"Topic name \"{name}\" is illegal, it contains a character other than ASCII "
            "alphanumerics, '.', '_' and '-'",
        )
    return name


def collision_key(name: str) -> str:
    """Kafka forbids topics whose names differ only by '.' versus '_' (metric names clash)."""
    return name.replace(".", "_")


def new_topic_id() -> uuid.UUID:
    """A random topic id that is never the zero or the reserved "metadata" uuid."""
    while True:
        tid = uuid.uuid4()
        if tid.int not in (0, 1):
            return tid


@dataclass
class TopicInfo:
    name: str
    topic_id: uuid.UUID
    # partition -> replica broker ids (the first is the preferred leader)
    assignment: dict[int, list[int]]
    configs: dict[str, str] = field(default_factory=dict)

    @property
    def is_internal(self) -> bool:
        return self.name in INTERNAL_TOPICS

    @property
    def partition_count(self) -> int:
        return len(self.assignment)

    def to_json(self) -> dict[str, object]:
        return {
            "topic_id": str(self.topic_id),
            "partitions": {str(p): r for p, r in sorted(self.assignment.items())},
            "configs": dict(sorted(self.configs.items())),
        }

    @classmethod
    def from_json(cls, name: str, data: dict[str, object]) -> TopicInfo:
        parts = data["partitions"]
        configs = data.get("configs", {})
        assert isinstance(parts, dict) and isinstance(configs, dict)
        return cls(
            name=name,
            topic_id=uuid.UUID(str(data["topic_id"])),
            assignment={int(p): [int(b) for b in r] for p, r in parts.items()},
            configs={str(k): str(v) for k, v in configs.items()},
        )
