"""Topic-level configuration: Kafka 3.9's TopicConfig keys and their broker-wide synonyms.

A topic's effective config is its overrides on top of defaults derived from the broker's
synonyms (``retention.ms`` from ``log.retention.ms``, else ``log.retention.minutes``, else
``log.retention.hours``), exactly as Kafka's LogConfig/ServerTopicConfigSynonyms do, so
CreateTopics validation and DescribeConfigs answers match Apache Kafka's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from pykbroker.config.defs import (
    CLEANUP_POLICIES,
    COMPRESSION_TYPES,
    TIMESTAMP_TYPES,
)
from pykbroker.config.defs_extra import METADATA_VERSIONS
from pykbroker.config.types import (
    LONG_MAX,
    ConfigDef,
    ConfigType,
    Described,
    Importance,
    InvalidConfigurationError,
    ValidList,
    at_least,
    between,
    define,
    one_of,
    table,
)


class BrokerSettings(Protocol):
    """What topic defaults read from the broker's configuration (BrokerConfig has it); a
    protocol, so this module stays below the one that defines BrokerConfig."""

    def get(self, name: str) -> object: ...


B, S, INT, LG, D, LS = (
    ConfigType.BOOLEAN,
    ConfigType.STRING,
    ConfigType.INT,
    ConfigType.LONG,
    ConfigType.DOUBLE,
    ConfigType.LIST,
)
M, L = Importance.MEDIUM, Importance.LOW
_THROTTLED = Described("[partitionId]:[brokerId],[partitionId]:[brokerId],...")

TOPIC_DEFS: dict[str, ConfigDef] = table(
    define("cleanup.policy", LS, ["delete"],
           "This config designates the retention policy to use on log segments: \"delete\", "
           "\"compact\" or both (\"delete,compact\").", M, ValidList(CLEANUP_POLICIES)),
    define("compression.gzip.level", INT, -1,
           "The compression level to use if compression.type is set to gzip.", M,
           between(1, 9, also=(-1,))),
    define("compression.lz4.level", INT, 9,
           "The compression level to use if compression.type is set to lz4.", M,
           between(1, 17)),
    define("compression.type", S, "producer",
           "Specify the final compression type for a given topic.", M,
           one_of(*COMPRESSION_TYPES)),
    define("compression.zstd.level", INT, 3,
           "The compression level to use if compression.type is set to zstd.", M,
           between(-131072, 22)),
    define("delete.retention.ms", LG, 86400000,
           "The amount of time to retain delete tombstone markers for log compacted topics.",
           M, at_least(0)),
    define("file.delete.delay.ms", LG, 60000,
           "The time to wait before deleting a file from the filesystem", M, at_least(0)),
    define("flush.messages", LG, LONG_MAX,
           "This setting allows specifying an interval at which we will force an fsync of "
           "data written to the log.", M, at_least(1)),
    define("flush.ms", LG, LONG_MAX,
           "This setting allows specifying a time interval at which we will force an fsync of "
           "data written to the log.", M, at_least(0)),
    define("follower.replication.throttled.replicas", LS, [],
           "A list of replicas for which log replication should be throttled on the follower "
           "side.", M, _THROTTLED),
    define("index.interval.bytes", INT, 4096,
           "This setting controls how frequently Kafka adds an index entry to its offset "
           "index.", M, at_least(0)),
    define("leader.replication.throttled.replicas", LS, [],
           "A list of replicas for which log replication should be throttled on the leader "
           "side.", M, _THROTTLED),
    define("local.retention.bytes", LG, -2,
           "The maximum size of local log segments that can grow for a partition before it "
           "deletes the old segments.", M, at_least(-2)),
    define("local.retention.ms", LG, -2,
           "The number of milliseconds to keep the local log segment before it gets "
           "deleted.", M, at_least(-2)),
    define("max.compaction.lag.ms", LG, LONG_MAX,
           "The maximum time a message will remain ineligible for compaction in the log.", M,
           at_least(1)),
    define("max.message.bytes", INT, 1048588,
           "The largest record batch size allowed by Kafka (after compression if compression "
           "is enabled).", M, at_least(0)),
    define("message.downconversion.enable", B, True,
           "This configuration controls whether down-conversion of message formats is enabled "
           "to satisfy consume requests.", L),
    define("message.format.version", S, "3.0-IV1",
           "[DEPRECATED] Specify the message format version the broker will use to append "
           "messages to the logs.", M, one_of(*METADATA_VERSIONS)),
    define("message.timestamp.after.max.ms", LG, LONG_MAX,
           "This configuration sets the allowable timestamp difference between the message "
           "timestamp and the broker's timestamp.", M, at_least(0)),
    define("message.timestamp.before.max.ms", LG, LONG_MAX,
           "This configuration sets the allowable timestamp difference between the broker's "
           "timestamp and the message timestamp.", M, at_least(0)),
    define("message.timestamp.difference.max.ms", LG, LONG_MAX,
           "[DEPRECATED] The maximum difference allowed between the timestamp when a broker "
           "receives a message and the timestamp specified in the message.", M, at_least(0)),
    define("message.timestamp.type", S, "CreateTime",
           "Define whether the timestamp in the message is message create time or log append "
           "time.", M, one_of(*TIMESTAMP_TYPES)),
    define("min.cleanable.dirty.ratio", D, 0.5,
           "This configuration controls how frequently the log compactor will attempt to "
           "clean the log (assuming log compaction is enabled).", M, between(0, 1)),
    define("min.compaction.lag.ms", LG, 0,
           "The minimum time a message will remain uncompacted in the log.", M, at_least(0)),
    define("min.insync.replicas", INT, 1,
           "When a producer sets acks to \"all\" (or \"-1\"), this configuration specifies the "
           "minimum number of replicas that must acknowledge a write for the write to be "
           "considered successful.", M, at_least(1)),
    define("preallocate", B, False,
           "True if we should preallocate the file on disk when creating a new log segment.",
           M),
    define("remote.log.copy.disable", B, False,
           "Determines whether tiered data for a topic should become read only, and no more "
           "data uploading on a topic.", M),
    define("remote.log.delete.on.disable", B, False,
           "Determines whether tiered data for a topic should be deleted after tiered storage "
           "is disabled on a topic.", M),
    define("remote.storage.enable", B, False,
           "To enable tiered storage for a topic, set this configuration to true. pykbroker "
           "has no tiered storage and accepts only false.", M),
    define("retention.bytes", LG, -1,
           "This configuration controls the maximum size a partition (which consists of log "
           "segments) can grow to before we will discard old log segments to free up space if "
           "we are using the \"delete\" retention policy.", M),
    define("retention.ms", LG, 604800000,
           "This configuration controls the maximum time we will retain a log before we will "
           "discard old log segments to free up space if we are using the \"delete\" retention "
           "policy. If set to -1, no time limit is applied.", M, at_least(-1)),
    define("segment.bytes", INT, 1073741824,
           "This configuration controls the segment file size for the log.", M, at_least(14)),
    define("segment.index.bytes", INT, 10485760,
           "This configuration controls the size of the index that maps offsets to file "
           "positions.", M, at_least(4)),
    define("segment.jitter.ms", LG, 0,
           "The maximum random jitter subtracted from the scheduled segment roll time to avoid "
           "thundering herds of segment rolling", M, at_least(0)),
    define("segment.ms", LG, 604800000,
           "This configuration controls the period of time after which Kafka will force the "
           "log to roll even if the segment file isn't full to ensure that retention can "
           "delete or compact old data.", M, at_least(1)),
    define("unclean.leader.election.enable", B, False,
           "Indicates whether to enable replicas not in the ISR set to be elected as leader as "
           "a last resort, even though doing so may result in data loss.", M),
)
"""Every topic-level configuration key Kafka 3.9 accepts, by name."""

TOPIC_SERVER_SYNONYMS: dict[str, str] = {
    "segment.bytes": "log.segment.bytes",
    "segment.ms": "log.roll.ms",
    "segment.jitter.ms": "log.roll.jitter.ms",
    "segment.index.bytes": "log.index.size.max.bytes",
    "flush.messages": "log.flush.interval.messages",
    "flush.ms": "log.flush.interval.ms",
    "retention.bytes": "log.retention.bytes",
    "retention.ms": "log.retention.ms",
    "max.message.bytes": "message.max.bytes",
    "index.interval.bytes": "log.index.interval.bytes",
    "delete.retention.ms": "log.cleaner.delete.retention.ms",
    "min.compaction.lag.ms": "log.cleaner.min.compaction.lag.ms",
    "max.compaction.lag.ms": "log.cleaner.max.compaction.lag.ms",
    "file.delete.delay.ms": "log.segment.delete.delay.ms",
    "min.cleanable.dirty.ratio": "log.cleaner.min.cleanable.ratio",
    "cleanup.policy": "log.cleanup.policy",
    "unclean.leader.election.enable": "unclean.leader.election.enable",
    "min.insync.replicas": "min.insync.replicas",
    "compression.type": "compression.type",
    "compression.gzip.level": "compression.gzip.level",
    "compression.lz4.level": "compression.lz4.level",
    "compression.zstd.level": "compression.zstd.level",
    "preallocate": "log.preallocate",
    "message.format.version": "log.message.format.version",
    "message.timestamp.type": "log.message.timestamp.type",
    "message.timestamp.difference.max.ms": "log.message.timestamp.difference.max.ms",
    "message.timestamp.before.max.ms": "log.message.timestamp.before.max.ms",
    "message.timestamp.after.max.ms": "log.message.timestamp.after.max.ms",
    "message.downconversion.enable": "log.message.downconversion.enable",
    "local.retention.ms": "log.local.retention.ms",
    "local.retention.bytes": "log.local.retention.bytes",
}
"""Topic key -> its highest-priority broker key (ServerTopicConfigSynonyms); the broker key's
own fallbacks (log.retention.minutes, log.roll.hours...) follow from ``broker_synonyms``."""


def topic_config_defaults(broker: BrokerSettings) -> dict[str, object]:
    """Typed value of every topic key for a topic without overrides on this broker."""
    out: dict[str, object] = {}
    for name, defn in TOPIC_DEFS.items():
        server = TOPIC_SERVER_SYNONYMS.get(name)
        value = defn.default if server is None else broker.get(server)
        out[name] = list(value) if isinstance(value, list) else value
    return out


def validate_topic_configs(
    overrides: Mapping[str, str | None], broker: BrokerSettings | None = None
) -> dict[str, object]:
    """Parse topic overrides; unknown keys and bad values raise ConfigError (INVALID_CONFIG).

    A None value passes through as None (a deletion in AlterConfigs terms). With ``broker``,
    the checks that need the effective config (compaction lags, tiered storage) run too.
    """
    parsed: dict[str, object] = {}
    for name, raw in overrides.items():
        defn = TOPIC_DEFS.get(name)
        if defn is None:
            raise InvalidConfigurationError(name, raw, f"Unknown topic config name: {name}")
        parsed[name] = None if raw is None else defn.parse(raw)
    effective = {n: d.default for n, d in TOPIC_DEFS.items()}
    if broker is not None:
        effective = topic_config_defaults(broker)
    effective.update({k: v for k, v in parsed.items() if v is not None})
    min_lag, max_lag = effective["min.compaction.lag.ms"], effective["max.compaction.lag.ms"]
    assert isinstance(min_lag, int) and isinstance(max_lag, int)
    if min_lag > max_lag:
        raise InvalidConfigurationError(
            "min.compaction.lag.ms", min_lag,
            f"conflict topic config setting min.compaction.lag.ms ({min_lag}) > "
            f"max.compaction.lag.ms ({max_lag})",
        )
    if parsed.get("remote.storage.enable") is True and (
        broker is None or not broker.get("remote.log.storage.system.enable")
    ):
        raise InvalidConfigurationError(
            "remote.storage.enable", "true",
            "Tiered Storage functionality is disabled in the broker. Topic cannot be "
            "configured with remote log storage.",
        )
    return parsed


def message_timestamp_bounds(values: Mapping[str, object]) -> tuple[int, int]:
    """``(before_max_ms, after_max_ms)`` as LogConfig: the deprecated difference key fills in
    for either bound left at its Long.MAX_VALUE default."""
    diff = values["message.timestamp.difference.max.ms"]
    before, after = values["message.timestamp.before.max.ms"], values["message.timestamp.after.max.ms"]
    assert isinstance(diff, int) and isinstance(before, int) and isinstance(after, int)
    return (diff if before == LONG_MAX else before, diff if after == LONG_MAX else after)
