"""Per-topic log settings with Kafka's topic-config names, defaults and validation.

Field names are the topic config keys with dots replaced by underscores, so a reader of
Kafka's ``TopicConfig`` finds each setting; ``from_mapping`` takes the dotted keys as the
metadata layer stores them (DescribeConfigs / AlterConfigs / CreateTopics).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Final

__all__ = ["LONG_MAX", "LogConfig"]

LONG_MAX: Final = 2**63 - 1
_DAY_MS: Final = 24 * 60 * 60 * 1000
_TIMESTAMP_TYPES: Final = ("CreateTime", "LogAppendTime")
_CLEANUP_POLICIES: Final = ("delete", "compact")
# Deprecated by KIP-937; still honoured as the fallback for both before/after limits.
_DIFFERENCE_KEY: Final = "message.timestamp.difference.max.ms"


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Immutable log settings; replace the whole object to change a topic's config.

    ``cleanup_policy`` is a tuple (Kafka's list type) so the config stays hashable.
    """

    segment_bytes: int = 1 << 30
    segment_ms: int = 7 * _DAY_MS
    segment_jitter_ms: int = 0
    segment_index_bytes: int = 10 * 1024 * 1024
    index_interval_bytes: int = 4096
    retention_ms: int = 7 * _DAY_MS
    retention_bytes: int = -1
    max_message_bytes: int = 1048588
    message_timestamp_type: str = "CreateTime"
    message_timestamp_before_max_ms: int = LONG_MAX
    message_timestamp_after_max_ms: int = LONG_MAX
    flush_messages: int = LONG_MAX
    flush_ms: int = LONG_MAX
    cleanup_policy: tuple[str, ...] = ("delete",)
    file_delete_delay_ms: int = 60000
    preallocate: bool = False
    # Compaction (the log cleaner) and the codec rewritten batches get.
    delete_retention_ms: int = _DAY_MS
    min_cleanable_dirty_ratio: float = 0.5
    min_compaction_lag_ms: int = 0
    max_compaction_lag_ms: int = LONG_MAX
    compression_type: str = "producer"

    def __post_init__(self) -> None:
        # Kafka's ConfigDef lower bounds for the topic-level keys.
        minimums = {
            "segment_bytes": 14,
            "segment_ms": 1,
            "segment_jitter_ms": 0,
            "segment_index_bytes": 4,
            "index_interval_bytes": 0,
            "max_message_bytes": 0,
            "message_timestamp_before_max_ms": 0,
            "message_timestamp_after_max_ms": 0,
            "flush_messages": 1,
            "flush_ms": 0,
            "file_delete_delay_ms": 0,
            "delete_retention_ms": 0,
            "min_compaction_lag_ms": 0,
            "max_compaction_lag_ms": 1,
        }
        for name, low in minimums.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{_key(name)} must be an integer >= {low}, got {value!r}")
        for name in ("retention_ms", "retention_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < -1:
                raise ValueError(f"{_key(name)} must be an integer >= -1, got {value!r}")
        if self.message_timestamp_type not in _TIMESTAMP_TYPES:
            raise ValueError(
                f"message.timestamp.type must be one of {_TIMESTAMP_TYPES}, "
                f"got {self.message_timestamp_type!r}"
            )
        ratio = self.min_cleanable_dirty_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= 1:
            raise ValueError(f"min.cleanable.dirty.ratio must be in [0, 1], got {ratio!r}")
        bad = [p for p in self.cleanup_policy if p not in _CLEANUP_POLICIES]
        if bad or not isinstance(self.cleanup_policy, tuple):
            raise ValueError(f"cleanup.policy must be a subset of {_CLEANUP_POLICIES}")

    @property
    def log_append_time(self) -> bool:
        """True when the broker, not the producer, stamps record timestamps."""
        return self.message_timestamp_type == "LogAppendTime"

    @property
    def delete_enabled(self) -> bool:
        """Time and size retention apply only with the "delete" cleanup policy."""
        return "delete" in self.cleanup_policy

    @property
    def compact_enabled(self) -> bool:
        return "compact" in self.cleanup_policy

    @property
    def max_segment_ms(self) -> int:
        """Kafka's ``maxSegmentMs``: the age at which the active segment rolls; a compacted
        log's is bounded by max.compaction.lag.ms too, so that no record waits longer than
        that to become cleanable."""
        if self.compact_enabled and self.max_compaction_lag_ms > 0:
            return min(self.segment_ms, self.max_compaction_lag_ms)
        return self.segment_ms

    @classmethod
    def from_mapping(cls, props: Mapping[str, object], base: LogConfig | None = None) -> LogConfig:
        """Build from Kafka's dotted keys (``'segment.bytes': 1024``); unknown keys are ignored.

        Values are expected already typed; numeric strings, "true"/"false" and comma-separated
        policies are accepted too. Keys absent from ``props`` keep ``base``'s (or the default)
        value, and the deprecated ``message.timestamp.difference.max.ms`` stands in for
        before/after limits that are not set, as Kafka 3.6+ does.
        """
        start = base if base is not None else cls()
        values: dict[str, object] = {f.name: getattr(start, f.name) for f in fields(cls)}
        for f in fields(cls):
            key = _key(f.name)
            if key in props and props[key] is not None:
                values[f.name] = _coerce(f.name, props[key])
        difference = props.get(_DIFFERENCE_KEY)
        if difference is not None:
            for name in ("message_timestamp_before_max_ms", "message_timestamp_after_max_ms"):
                if _key(name) not in props:
                    values[name] = _coerce(name, difference)
        return cls(**values)  # type: ignore[arg-type]

    def to_mapping(self) -> dict[str, object]:
        """The dotted-key form, for DescribeConfigs and tests."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[_key(f.name)] = list(value) if isinstance(value, tuple) else value
        return out


def _key(name: str) -> str:
    return name.replace("_", ".")


def _coerce(name: str, value: object) -> object:
    if name == "cleanup_policy":
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        if isinstance(value, list | tuple):
            return tuple(str(p) for p in value)
        raise ValueError(f"cleanup.policy must be a list, got {value!r}")
    if name in ("message_timestamp_type", "compression_type"):
        return str(value)
    if name == "min_cleanable_dirty_ratio":
        if isinstance(value, bool):
            raise ValueError(f"{_key(name)} must be a number, got {value!r}")
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"{_key(name)} must be a number, got {value!r}") from None
    if name == "preallocate":
        if isinstance(value, str):
            return value.strip().lower() == "true"
        return bool(value)
    if isinstance(value, bool):
        raise ValueError(f"{_key(name)} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise ValueError(f"{_key(name)} must be an integer, got {value!r}") from None
    raise ValueError(f"{_key(name)} must be an integer, got {value!r}")
