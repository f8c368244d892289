"""The broker's configuration keys: Kafka 3.9's names, types, defaults, validators and modes.

Transcribed from Kafka 3.9's generated broker-config documentation (KafkaConfig and the
``*Configs`` classes it gathers) so DescribeConfigs answers match Apache Kafka's; doc strings
are cut to their first sentence or two. Group and transaction coordinator keys live in
``config_defs_groups``, security, quota, tiered-storage and KRaft keys in ``config_defs_extra``;
this module merges them all into ``BROKER_DEFS``.

pykbroker differs from Kafka's defaults on purpose in these places, each said in its doc text:
``listeners``, ``log.dir``, ``node.id``/``broker.id``, the socket buffer sizes, and its own
``metrics.port`` and ``log.page.cache.keep.bytes`` keys.
"""

from __future__ import annotations

from pykbroker.config.defs_extra import EXTRA_DEFS, METADATA_VERSIONS
from pykbroker.config.defs_groups import COORDINATOR_DEFS
from pykbroker.config.types import (
    INT_MAX,
    LONG_MAX,
    ConfigDef,
    ConfigType,
    Importance,
    Range,
    UpdateMode,
    ValidList,
    at_least,
    between,
    define,
    one_of,
    table,
)

B, S, INT, SH, LG, D, LS = (
    ConfigType.BOOLEAN,
    ConfigType.STRING,
    ConfigType.INT,
    ConfigType.SHORT,
    ConfigType.LONG,
    ConfigType.DOUBLE,
    ConfigType.LIST,
)
H, M, L = Importance.HIGH, Importance.MEDIUM, Importance.LOW
RO, PB, CW = UpdateMode.READ_ONLY, UpdateMode.PER_BROKER, UpdateMode.CLUSTER_WIDE

DEFAULT_LISTENERS = "PLAINTEXT://localhost:9092"
DEFAULT_SECURITY_PROTOCOL_MAP = (
    "SASL_SSL:SASL_SSL,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT"
)
DEFAULT_NODE_ID = 1
COMPRESSION_TYPES = ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")
TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")
CLEANUP_POLICIES = ("compact", "delete")

_SERVER = (
    define("node.id", INT, DEFAULT_NODE_ID,
           "The node ID associated with the roles this process is playing. A synonym of "
           "broker.id. pykbroker defaults to 1 (as the apache/kafka image's server.properties "
           "sets node.id=1) where Kafka defaults to -1.", H),
    define("broker.id", INT, DEFAULT_NODE_ID,
           "The broker id for this server. A synonym of node.id: setting only one sets both, "
           "setting both to different values is an error. pykbroker defaults to 1 where Kafka "
           "defaults to -1 (generate an id).", H),
    define("broker.id.generation.enable", B, True,
           "Enable automatic broker id generation on the server.", M),
    define("reserved.broker.max.id", INT, 1000, "Max number that can be used for a broker.id",
           M, at_least(0)),
    define("broker.rack", S, None,
           "Rack of the broker. This will be used in rack aware replication assignment for "
           "fault tolerance.", M),
    define("listeners", S, DEFAULT_LISTENERS,
           "Listener List - Comma-separated list of URIs we will listen on and the listener "
           "names. Leave hostname empty to bind to the default interface, or use 0.0.0.0 to "
           "bind to all interfaces. pykbroker defaults to PLAINTEXT://localhost:9092 where "
           "Kafka defaults to PLAINTEXT://:9092, so a fresh broker is not reachable from "
           "other machines.", H, mode=PB),
    define("advertised.listeners", S, None,
           "Listeners to publish to ZooKeeper for clients to use, if different than the "
           "listeners config property. If this is not set, the value for listeners will be "
           "used; pykbroker then advertises an empty or 0.0.0.0 host as localhost, where Kafka "
           "would use the machine's canonical host name.", H, mode=PB),
    define("listener.security.protocol.map", S, DEFAULT_SECURITY_PROTOCOL_MAP,
           "Map between listener names and security protocols, as NAME:PROTOCOL entries "
           "separated by commas.", L, mode=PB),
    define("inter.broker.listener.name", S, None,
           "Name of listener used for communication between brokers. If this is unset, the "
           "listener name is defined by security.inter.broker.protocol.", M),
    define("security.inter.broker.protocol", S, "PLAINTEXT",
           "Security protocol used to communicate between brokers.", M,
           one_of("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")),
    define("control.plane.listener.name", S, None,
           "Name of listener used for communication between controller and brokers.", H),
    define("inter.broker.protocol.version", S, "3.9-IV0",
           "Specify which version of the inter-broker protocol will be used.", M,
           one_of(*METADATA_VERSIONS)),
    define("auto.create.topics.enable", B, True, "Enable auto creation of topic on the server.",
           H),
    define("delete.topic.enable", B, True,
           "Enables delete topic. Delete topic through the admin tool will have no effect if "
           "this config is turned off", H),
    define("num.partitions", INT, 1, "The default number of log partitions per topic", M,
           at_least(1)),
    define("default.replication.factor", INT, 1,
           "The replication factor for automatically created topics, and for topics created "
           "with -1 as the replication factor", M),
    define("auto.leader.rebalance.enable", B, True, "Enables auto leader balancing.", H),
    define("leader.imbalance.check.interval.seconds", LG, 300,
           "The frequency with which the partition rebalance check is triggered by the "
           "controller", H, at_least(1)),
    define("leader.imbalance.per.broker.percentage", INT, 10,
           "The ratio of leader imbalance allowed per broker.", H),
    define("background.threads", INT, 10,
           "The number of threads to use for various background processing tasks", H,
           at_least(1), CW),
    define("request.timeout.ms", INT, 30000,
           "The configuration controls the maximum amount of time the client will wait for "
           "the response of a request.", H),
    define("controlled.shutdown.enable", B, True, "Enable controlled shutdown of the server.",
           M),
    define("controlled.shutdown.max.retries", INT, 3,
           "Controlled shutdown can fail for multiple reasons. This determines the number of "
           "retries when such failure happens", M),
    define("controlled.shutdown.retry.backoff.ms", LG, 5000,
           "Before each retry, the system needs time to recover from the state that caused "
           "the previous failure (Controller fail over, replica lag etc).", M),
    define("controller.socket.timeout.ms", INT, 30000,
           "The socket timeout for controller-to-broker channels.", M),
    define("delete.records.purgatory.purge.interval.requests", INT, 1,
           "The purge interval (in number of requests) of the delete records request "
           "purgatory", M),
    define("fetch.purgatory.purge.interval.requests", INT, 1000,
           "The purge interval (in number of requests) of the fetch request purgatory", M),
    define("producer.purgatory.purge.interval.requests", INT, 1000,
           "The purge interval (in number of requests) of the producer request purgatory", M),
    define("fetch.max.bytes", INT, 57671680,
           "The maximum number of bytes we will return for a fetch request. Must be at least "
           "1024.", M, at_least(1024)),
    define("max.incremental.fetch.session.cache.slots", INT, 1000,
           "The maximum number of total incremental fetch sessions that we will maintain.", M,
           at_least(0)),
    define("max.request.partition.size.limit", INT, 2000,
           "The maximum number of partitions can be served in one request.", M, at_least(1)),
    define("metrics.port", INT, -1,
           "pykbroker's own key (not Kafka's): the TCP port of the Prometheus metrics endpoint; "
           "-1 turns it off, 0 picks a free port.", L, Range(min=-1, max=65535)),
)

_NETWORK = (
    define("num.network.threads", INT, 3,
           "The number of threads that the server uses for receiving requests from the network "
           "and sending responses to the network. Accepted and unused by pykbroker, which "
           "serves every connection from one event loop.", H, at_least(1), CW),
    define("num.io.threads", INT, 8,
           "The number of threads that the server uses for processing requests, which may "
           "include disk I/O. Accepted and unused by pykbroker.", H, at_least(1), CW),
    define("queued.max.requests", INT, 500,
           "The number of queued requests allowed for data-plane, before blocking the network "
           "threads", H, at_least(1)),
    define("queued.max.request.bytes", LG, -1,
           "The number of queued bytes allowed before no more requests are read", M),
    # pykbroker's socket buffer defaults are -1 (Linux's autotuning), Kafka's 102400 and
    # 65536: with fixed 100 KiB buffers the broker reads a 1 MiB produce request in ~10
    # receive calls instead of 2-3, which cost 12-25 % of produce throughput (measured).
    define("socket.send.buffer.bytes", INT, -1,
           "The SO_SNDBUF buffer of the socket server sockets. If the value is -1, the OS "
           "default will be used. (Kafka's default: 102400.)", H),
    define("socket.receive.buffer.bytes", INT, -1,
           "The SO_RCVBUF buffer of the socket server sockets. If the value is -1, the OS "
           "default will be used. (Kafka's default: 102400.)", H),
    define("socket.request.max.bytes", INT, 104857600,
           "The maximum number of bytes in a socket request", H, at_least(1)),
    define("socket.listen.backlog.size", INT, 50,
           "The maximum number of pending connections on the socket.", M, at_least(1)),
    define("socket.connection.setup.timeout.ms", LG, 10000,
           "The amount of time the client will wait for the socket connection to be "
           "established.", M),
    define("socket.connection.setup.timeout.max.ms", LG, 30000,
           "The maximum amount of time the client will wait for the socket connection to be "
           "established.", M),
    define("connections.max.idle.ms", LG, 600000,
           "Idle connections timeout: the server socket processor threads close the "
           "connections that idle more than this", M),
    define("connections.max.reauth.ms", LG, 0,
           "When explicitly set to a positive number (the default is 0, not a positive "
           "number), a session lifetime that will not exceed the configured value will be "
           "communicated to v2.2.0 or later clients when they authenticate.", M),
    define("connection.failed.authentication.delay.ms", INT, 100,
           "Connection close delay on failed authentication: this is the time (in "
           "milliseconds) by which connection close will be delayed on authentication "
           "failure.", L, at_least(0)),
    define("max.connections", INT, INT_MAX,
           "The maximum number of connections we allow in the broker at any time.", M,
           at_least(0), CW),
    define("max.connections.per.ip", INT, INT_MAX,
           "The maximum number of connections we allow from each ip address.", M, at_least(0),
           CW),
    define("max.connections.per.ip.overrides", S, "",
           "A comma-separated list of per-ip or hostname overrides to the default maximum "
           "number of connections.", M, mode=CW),
    define("max.connection.creation.rate", INT, INT_MAX,
           "The maximum connection creation rate we allow in the broker at any time.", M,
           at_least(0), CW),
)

_LOG = (
    define("log.dir", S, None,
           "The directory in which the log data is kept (supplemental for log.dirs property). "
           "pykbroker defaults to a per-user data directory, $XDG_DATA_HOME/pykbroker/data or "
           "~/.local/share/pykbroker/data, where Kafka defaults to /tmp/kafka-logs.", H),
    define("log.dirs", S, None,
           "A comma-separated list of the directories where the log data is stored. If not "
           "set, the value in log.dir is used.", H),
    define("log.segment.bytes", INT, 1073741824, "The maximum size of a single log file", H,
           at_least(14), CW),
    define("log.roll.ms", LG, None,
           "The maximum time before a new log segment is rolled out (in milliseconds). If not "
           "set, the value in log.roll.hours is used", H, mode=CW),
    define("log.roll.hours", INT, 168,
           "The maximum time before a new log segment is rolled out (in hours), secondary to "
           "log.roll.ms property", H, at_least(1)),
    define("log.roll.jitter.ms", LG, None,
           "The maximum jitter to subtract from logRollTimeMillis (in milliseconds). If not "
           "set, the value in log.roll.jitter.hours is used", H, mode=CW),
    define("log.roll.jitter.hours", INT, 0,
           "The maximum jitter to subtract from logRollTimeMillis (in hours), secondary to "
           "log.roll.jitter.ms property", H, at_least(0)),
    define("log.retention.ms", LG, None,
           "The number of milliseconds to keep a log file before deleting it (in "
           "milliseconds), If not set, the value in log.retention.minutes is used. If set to "
           "-1, no time limit is applied.", H, mode=CW),
    define("log.retention.minutes", INT, None,
           "The number of minutes to keep a log file before deleting it (in minutes), "
           "secondary to log.retention.ms property. If not set, the value in "
           "log.retention.hours is used", H),
    define("log.retention.hours", INT, 168,
           "The number of hours to keep a log file before deleting it (in hours), tertiary to "
           "log.retention.ms property", H),
    define("log.retention.bytes", LG, -1, "The maximum size of the log before deleting it", H,
           mode=CW),
    define("log.retention.check.interval.ms", LG, 300000,
           "The frequency in milliseconds that the log cleaner checks whether any log is "
           "eligible for deletion", M, at_least(1)),
    define("log.segment.delete.delay.ms", LG, 60000,
           "The amount of time to wait before deleting a file from the filesystem.", H,
           at_least(0), CW),
    define("log.index.interval.bytes", INT, 4096,
           "The interval with which we add an entry to the offset index.", M, at_least(0), CW),
    define("log.index.size.max.bytes", INT, 10485760,
           "The maximum size in bytes of the offset index", M, at_least(4), CW),
    define("log.flush.interval.messages", LG, LONG_MAX,
           "The number of messages accumulated on a log partition before messages are "
           "flushed to disk.", H, at_least(1), CW),
    define("log.flush.interval.ms", LG, None,
           "The maximum time in ms that a message in any topic is kept in memory before "
           "flushed to disk. If not set, the value in log.flush.scheduler.interval.ms is used",
           H, mode=CW),
    define("log.flush.scheduler.interval.ms", LG, LONG_MAX,
           "The frequency in ms that the log flusher checks whether any log needs to be "
           "flushed to disk", H),
    define("log.flush.offset.checkpoint.interval.ms", INT, 60000,
           "The frequency with which we update the persistent record of the last flush which "
           "acts as the log recovery point.", H, at_least(0)),
    define("log.flush.start.offset.checkpoint.interval.ms", INT, 60000,
           "The frequency with which we update the persistent record of log start offset", H,
           at_least(0)),
    define("log.preallocate", B, False,
           "Should pre allocate file when create new segment?", M, mode=CW),
    define("log.page.cache.keep.bytes", LG, 16 * 1024 * 1024,
           "pykbroker's own key (not Kafka's): how much of the end of each log segment stays "
           "in the OS page cache. Older data is written back and dropped from the cache as "
           "the segment grows (posix_fadvise DONTNEED, every 4 MiB), so a broker's page cache "
           "stays bounded and its writes reuse the same memory; consumers reading further "
           "behind read from disk. -1 leaves the page cache to the OS, as Kafka does.", L,
           at_least(-1)),
    define("log.message.timestamp.type", S, "CreateTime",
           "Define whether the timestamp in the message is message create time or log append "
           "time. The value should be either CreateTime or LogAppendTime.", M,
           one_of(*TIMESTAMP_TYPES), CW),
    define("log.message.timestamp.before.max.ms", LG, LONG_MAX,
           "This configuration sets the allowable timestamp difference between the broker's "
           "timestamp and the message timestamp.", M, at_least(0), CW),
    define("log.message.timestamp.after.max.ms", LG, LONG_MAX,
           "This configuration sets the allowable timestamp difference between the message "
           "timestamp and the broker's timestamp.", M, at_least(0), CW),
    define("log.message.timestamp.difference.max.ms", LG, LONG_MAX,
           "[DEPRECATED] The maximum difference allowed between the timestamp when a broker "
           "receives a message and the timestamp specified in the message.", M, at_least(0),
           CW),
    define("log.message.format.version", S, "3.0-IV1",
           "Specify the message format version the broker will use to append messages to the "
           "logs.", M, one_of(*METADATA_VERSIONS)),
    define("log.message.downconversion.enable", B, True,
           "This configuration controls whether down-conversion of message formats is enabled "
           "to satisfy consume requests.", L, mode=CW),
    define("log.cleanup.policy", LS, ["delete"],
           "The default cleanup policy for segments beyond the retention window. A comma "
           "separated list of valid policies.", M, ValidList(CLEANUP_POLICIES), CW),
    define("log.local.retention.ms", LG, -2,
           "The number of milliseconds to keep the local log segments before it gets eligible "
           "for deletion. Default value is -2, it represents `log.retention.ms` value is to be "
           "used.", M, at_least(-2), CW),
    define("log.local.retention.bytes", LG, -2,
           "The maximum size of local log segments that can grow for a partition before it "
           "gets eligible for deletion. Default value is -2, it represents "
           "`log.retention.bytes` value to be used.", M, at_least(-2), CW),
    define("log.dir.failure.timeout.ms", LG, 30000,
           "If the broker is unable to successfully communicate to the controller that some "
           "log directory has failed for longer than this time, the broker will fail and shut "
           "down.", L, at_least(1)),
    define("num.recovery.threads.per.data.dir", INT, 1,
           "The number of threads per data directory to be used for log recovery at startup "
           "and flushing at shutdown", H, at_least(1), CW),
    define("message.max.bytes", INT, 1048588,
           "The largest record batch size allowed by Kafka (after compression if compression "
           "is enabled). This can be set per topic with the topic level max.message.bytes "
           "config.", H, at_least(0), CW),
    define("compression.type", S, "producer",
           "Specify the final compression type for a given topic. This configuration accepts "
           "the standard compression codecs ('gzip', 'snappy', 'lz4', 'zstd'), 'uncompressed' "
           "and 'producer' (retain the producer's codec).", H, one_of(*COMPRESSION_TYPES), CW),
    define("compression.gzip.level", INT, -1,
           "The compression level to use if compression.type is set to 'gzip'.", M,
           between(1, 9, also=(-1,)), CW),
    define("compression.lz4.level", INT, 9,
           "The compression level to use if compression.type is set to 'lz4'.", M,
           between(1, 17), CW),
    define("compression.zstd.level", INT, 3,
           "The compression level to use if compression.type is set to 'zstd'.", M,
           between(-131072, 22), CW),
    define("log.cleaner.enable", B, True,
           "Enable the log cleaner process to run on the server.", M),
    define("log.cleaner.threads", INT, 1,
           "The number of background threads to use for log cleaning", M, at_least(0), CW),
    define("log.cleaner.backoff.ms", LG, 15000,
           "The amount of time to sleep when there are no logs to clean", M, at_least(0), CW),
    define("log.cleaner.dedupe.buffer.size", LG, 134217728,
           "The total memory used for log deduplication across all cleaner threads", M,
           mode=CW),
    define("log.cleaner.io.buffer.size", INT, 524288,
           "The total memory used for log cleaner I/O buffers across all cleaner threads", M,
           at_least(0), CW),
    define("log.cleaner.io.buffer.load.factor", D, 0.9,
           "Log cleaner dedupe buffer load factor.", M, mode=CW),
    define("log.cleaner.io.max.bytes.per.second", D, 1.7976931348623157e308,
           "The log cleaner will be throttled so that the sum of its read and write i/o will "
           "be less than this value on average", M, mode=CW),
    define("log.cleaner.delete.retention.ms", LG, 86400000,
           "The amount of time to retain tombstone message markers for log compacted topics.",
           M, at_least(0), CW),
    define("log.cleaner.min.cleanable.ratio", D, 0.5,
           "The minimum ratio of dirty log to total log for a log to eligible for cleaning.",
           M, between(0, 1), CW),
    define("log.cleaner.min.compaction.lag.ms", LG, 0,
           "The minimum time a message will remain uncompacted in the log.", M, at_least(0),
           CW),
    define("log.cleaner.max.compaction.lag.ms", LG, LONG_MAX,
           "The maximum time a message will remain ineligible for compaction in the log.", M,
           at_least(1), CW),
)

_REPLICATION = (
    define("min.insync.replicas", INT, 1,
           "When a producer sets acks to \"all\" (or \"-1\"), min.insync.replicas specifies "
           "the minimum number of replicas that must acknowledge a write for the write to be "
           "considered successful.", H, at_least(1), CW),
    define("unclean.leader.election.enable", B, False,
           "Indicates whether to enable replicas not in the ISR set to be elected as leader as "
           "a last resort, even though doing so may result in data loss", H, mode=CW),
    define("replica.lag.time.max.ms", LG, 30000,
           "If a follower hasn't sent any fetch requests or hasn't consumed up to the leaders "
           "log end offset for at least this time, the leader will remove the follower from "
           "isr", H),
    define("replica.fetch.min.bytes", INT, 1,
           "Minimum bytes expected for each fetch response.", H),
    define("replica.fetch.wait.max.ms", INT, 500,
           "The maximum wait time for each fetcher request issued by follower replicas.", H),
    define("replica.fetch.max.bytes", INT, 1048576,
           "The number of bytes of messages to attempt to fetch for each partition.", M,
           at_least(0)),
    define("replica.fetch.response.max.bytes", INT, 10485760,
           "Maximum bytes expected for the entire fetch response.", M, at_least(0)),
    define("replica.fetch.backoff.ms", INT, 1000,
           "The amount of time to sleep when fetch partition error occurs.", M, at_least(0)),
    define("replica.high.watermark.checkpoint.interval.ms", LG, 5000,
           "The frequency with which the high watermark is saved out to disk", H),
    define("replica.socket.timeout.ms", INT, 30000,
           "The socket timeout for network requests. Its value should be at least "
           "replica.fetch.wait.max.ms", H),
    define("replica.socket.receive.buffer.bytes", INT, -1,
           "The socket receive buffer for network requests to the leader for replicating "
           "data. If the value is -1, the OS default will be used. (Kafka's default: "
           "65536.)", H),
    define("replica.selector.class", S, None,
           "The fully qualified class name that implements ReplicaSelector.", M),
    define("num.replica.fetchers", INT, 1,
           "Number of fetcher threads used to replicate records from each source broker.", H,
           mode=CW),
    define("num.replica.alter.log.dirs.threads", INT, None,
           "The number of threads that can move replicas between log directories, which may "
           "include disk I/O", H),
)

_ZOOKEEPER = (
    define("zookeeper.connect", S, None,
           "Specifies the ZooKeeper connection string in the form hostname:port, or "
           "host1:port1,host2:port2/chroot/path. pykbroker keeps cluster metadata in a local "
           "file when this is unset.", H),
    define("zookeeper.session.timeout.ms", INT, 18000, "Zookeeper session timeout", H),
    define("zookeeper.connection.timeout.ms", INT, None,
           "The max time that the client waits to establish a connection to ZooKeeper. If not "
           "set, the value in zookeeper.session.timeout.ms is used", H),
    define("zookeeper.max.in.flight.requests", INT, 10,
           "The maximum number of unacknowledged requests the client will send to ZooKeeper "
           "before blocking.", H, at_least(1)),
    define("zookeeper.set.acl", B, False, "Set client to use secure ACLs", H),
    define("zookeeper.metadata.migration.enable", B, False, "Enable ZK to KRaft migration", H),
)

BROKER_DEFS: dict[str, ConfigDef] = table(
    *_SERVER, *_NETWORK, *_LOG, *_REPLICATION, *_ZOOKEEPER, *COORDINATOR_DEFS, *EXTRA_DEFS,
)
"""Every broker configuration key pykbroker knows, by name."""

MINUTE_MS = 60 * 1000
HOUR_MS = 60 * MINUTE_MS

SYNONYM_CHAINS: dict[str, tuple[tuple[str, int], ...]] = {
    "log.retention.ms": (
        ("log.retention.ms", 1),
        ("log.retention.minutes", MINUTE_MS),
        ("log.retention.hours", HOUR_MS),
    ),
    "log.roll.ms": (("log.roll.ms", 1), ("log.roll.hours", HOUR_MS)),
    "log.roll.jitter.ms": (("log.roll.jitter.ms", 1), ("log.roll.jitter.hours", HOUR_MS)),
    "log.flush.interval.ms": (
        ("log.flush.interval.ms", 1),
        ("log.flush.scheduler.interval.ms", 1),
    ),
}
"""Kafka's broker synonyms (DynamicBrokerConfig.brokerConfigSynonyms), in priority order,
with the factor that turns each into the first key's unit."""

RESOLVE_CHAINS: dict[str, tuple[tuple[str, int], ...]] = {
    **SYNONYM_CHAINS,
    "zookeeper.connection.timeout.ms": (
        ("zookeeper.connection.timeout.ms", 1),
        ("zookeeper.session.timeout.ms", 1),
    ),
    "log.dirs": (("log.dirs", 1), ("log.dir", 1)),
}
"""Keys whose effective value falls back to other keys when unset, as KafkaConfig's getters."""


def broker_synonyms(name: str) -> list[str]:
    """The keys DescribeConfigs reports as synonyms of ``name``, highest priority first."""
    for head, chain in SYNONYM_CHAINS.items():
        names = [n for n, _ in chain]
        # log.flush.scheduler.interval.ms is only a fallback of log.flush.interval.ms
        if name in names and (head != "log.flush.interval.ms" or name == head):
            return names
    return [name]
