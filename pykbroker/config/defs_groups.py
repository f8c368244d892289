"""Coordinator keys: consumer groups (classic, KIP-848, share), offsets and transactions.

Part of the broker table (see ``defs``), split out only to keep modules small.
Share-group keys (KIP-932, early access in Kafka 3.9) are accepted and unused.
"""

from __future__ import annotations

from pykbroker.config.types import (
    INT_MAX,
    ConfigType,
    Importance,
    UpdateMode,
    ValidList,
    at_least,
    between,
    define,
)

INT, SH, LG, LS = ConfigType.INT, ConfigType.SHORT, ConfigType.LONG, ConfigType.LIST
B = ConfigType.BOOLEAN
H, M, L = Importance.HIGH, Importance.MEDIUM, Importance.LOW
CW = UpdateMode.CLUSTER_WIDE

_GROUPS = (
    define("group.initial.rebalance.delay.ms", INT, 3000,
           "The amount of time the group coordinator will wait for more consumers to join a "
           "new group before performing the first rebalance.", M),
    define("group.min.session.timeout.ms", INT, 6000,
           "The minimum allowed session timeout for registered consumers.", M),
    define("group.max.session.timeout.ms", INT, 1800000,
           "The maximum allowed session timeout for registered consumers.", M),
    define("group.max.size", INT, INT_MAX,
           "The maximum number of consumers that a single consumer group can accommodate.", M,
           at_least(1)),
    define("group.coordinator.rebalance.protocols", LS, ["classic"],
           "The list of enabled rebalance protocols.", M,
           ValidList(("consumer", "classic", "share", "unknown"))),
    define("group.coordinator.threads", INT, 1,
           "The number of threads used by the group coordinator.", M, at_least(1)),
    define("group.coordinator.append.linger.ms", INT, 10,
           "The duration in milliseconds that the coordinator will wait for writes to "
           "accumulate before flushing them to disk.", M, at_least(0)),
    define("group.consumer.assignors", LS,
           ["org.apache.kafka.coordinator.group.assignor.UniformAssignor",
            "org.apache.kafka.coordinator.group.assignor.RangeAssignor"],
           "The server side assignors as a list of full class names.", M),
    define("group.consumer.session.timeout.ms", INT, 45000,
           "The timeout to detect client failures when using the consumer group protocol.", M,
           at_least(1)),
    define("group.consumer.min.session.timeout.ms", INT, 45000,
           "The minimum allowed session timeout for registered consumers.", M, at_least(1)),
    define("group.consumer.max.session.timeout.ms", INT, 60000,
           "The maximum allowed session timeout for registered consumers.", M, at_least(1)),
    define("group.consumer.heartbeat.interval.ms", INT, 5000,
           "The heartbeat interval given to the members of a consumer group.", M, at_least(1)),
    define("group.consumer.min.heartbeat.interval.ms", INT, 5000,
           "The minimum heartbeat interval for registered consumers.", M, at_least(1)),
    define("group.consumer.max.heartbeat.interval.ms", INT, 15000,
           "The maximum heartbeat interval for registered consumers.", M, at_least(1)),
    define("group.consumer.max.size", INT, INT_MAX,
           "The maximum number of consumers that a single consumer group can accommodate.", M,
           at_least(1)),
    define("offsets.topic.num.partitions", INT, 50,
           "The number of partitions for the offset commit topic (should not change after "
           "deployment).", H, at_least(1)),
    define("offsets.topic.replication.factor", SH, 3,
           "The replication factor for the offsets topic (set higher to ensure "
           "availability).", H, at_least(1)),
    define("offsets.topic.segment.bytes", INT, 104857600,
           "The offsets topic segment bytes should be kept relatively small in order to "
           "facilitate faster log compaction and cache loads.", H, at_least(1)),
    define("offsets.topic.compression.codec", INT, 0,
           "Compression codec for the offsets topic - compression may be used to achieve "
           "\"atomic\" commits.", H),
    define("offsets.load.buffer.size", INT, 5242880,
           "Batch size for reading from the offsets segments when loading offsets into the "
           "cache (soft-limit, overridden if records are too large).", H, at_least(1)),
    define("offsets.retention.minutes", INT, 10080,
           "For subscribed consumers, committed offset of a specific partition will be expired "
           "and discarded when this retention period has elapsed after the group becomes "
           "empty or stops subscribing to the topic.", H, at_least(1)),
    define("offsets.retention.check.interval.ms", LG, 600000,
           "Frequency at which to check for stale offsets", H, at_least(1)),
    define("offsets.commit.timeout.ms", INT, 5000,
           "Offset commit will be delayed until all replicas for the offsets topic receive the "
           "commit or this timeout is reached.", H, at_least(1)),
    define("offsets.commit.required.acks", SH, -1,
           "DEPRECATED: The required acks before the commit can be accepted.", H),
    define("offset.metadata.max.bytes", INT, 4096,
           "The maximum size for a metadata entry associated with an offset commit.", H),
)

_TRANSACTIONS = (
    define("transaction.state.log.num.partitions", INT, 50,
           "The number of partitions for the transaction topic (should not change after "
           "deployment).", H, at_least(1)),
    define("transaction.state.log.replication.factor", SH, 3,
           "The replication factor for the transaction topic (set higher to ensure "
           "availability).", H, at_least(1)),
    define("transaction.state.log.min.isr", INT, 2,
           "The minimum number of replicas that must acknowledge a write to transaction topic "
           "in order to be considered successful.", H, at_least(1)),
    define("transaction.state.log.segment.bytes", INT, 104857600,
           "The transaction topic segment bytes should be kept relatively small in order to "
           "facilitate faster log compaction and cache loads", H, at_least(1)),
    define("transaction.state.log.load.buffer.size", INT, 5242880,
           "Batch size for reading from the transaction log segments when loading producer ids "
           "and transactions into the cache (soft-limit, overridden if records are too "
           "large).", H, at_least(1)),
    define("transaction.max.timeout.ms", INT, 900000,
           "The maximum allowed timeout for transactions.", H, at_least(1)),
    define("transactional.id.expiration.ms", INT, 604800000,
           "The time in ms that the transaction coordinator will wait without receiving any "
           "transaction status updates for the current transaction before expiring its "
           "transactional id.", H, at_least(1)),
    define("transaction.abort.timed.out.transaction.cleanup.interval.ms", INT, 10000,
           "The interval at which to rollback transactions that have timed out", L,
           at_least(1)),
    define("transaction.remove.expired.transaction.cleanup.interval.ms", INT, 3600000,
           "The interval at which to remove transactions that have expired due to "
           "transactional.id.expiration.ms passing", L, at_least(1)),
    define("transaction.partition.verification.enable", B, True,
           "Enable verification that checks that the partition has been added to the "
           "transaction before writing transactional records to the partition", L, mode=CW),
    define("producer.id.expiration.ms", INT, 86400000,
           "The time in ms that a topic partition leader will wait before expiring producer "
           "IDs.", L, at_least(1), CW),
)

_SHARE_GROUPS = (
    define("group.share.delivery.count.limit", INT, 5,
           "The maximum number of delivery attempts for a record delivered to a share group.",
           M, between(2, 10)),
    define("group.share.heartbeat.interval.ms", INT, 5000,
           "The heartbeat interval given to the members of a share group.", M, at_least(1)),
    define("group.share.max.groups", SH, 10, "The maximum number of share groups.", M,
           between(1, 100)),
    define("group.share.max.heartbeat.interval.ms", INT, 15000,
           "The maximum heartbeat interval for share group members.", M, at_least(1)),
    define("group.share.max.record.lock.duration.ms", INT, 60000,
           "The record acquisition lock maximum duration in milliseconds for share groups.",
           M, between(30000, 3600000)),
    define("group.share.max.session.timeout.ms", INT, 60000,
           "The maximum allowed session timeout for share group members.", M, at_least(1)),
    define("group.share.max.size", SH, 200,
           "The maximum number of members that a single share group can accommodate.", M,
           between(10, 1000)),
    define("group.share.min.heartbeat.interval.ms", INT, 5000,
           "The minimum heartbeat interval for share group members.", M, at_least(1)),
    define("group.share.min.record.lock.duration.ms", INT, 15000,
           "The record acquisition lock minimum duration in milliseconds for share groups.",
           M, between(1000, 30000)),
    define("group.share.min.session.timeout.ms", INT, 45000,
           "The minimum allowed session timeout for share group members.", M, at_least(1)),
    define("group.share.partition.max.record.locks", INT, 200,
           "Share-group record lock limit per share-partition.", M, between(100, 10000)),
    define("group.share.record.lock.duration.ms", INT, 30000,
           "The record acquisition lock duration in milliseconds for share groups.", M,
           between(1000, 60000)),
    define("group.share.session.timeout.ms", INT, 45000,
           "The timeout to detect client failures when using the share group protocol.", M,
           at_least(1)),
)

COORDINATOR_DEFS = (*_GROUPS, *_TRANSACTIONS, *_SHARE_GROUPS)
