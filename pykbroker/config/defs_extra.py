"""Broker keys beyond the core: security, quotas, tokens, metrics, tiered storage and KRaft.

Kept apart from ``defs`` only to keep modules small. pykbroker accepts every key here
so a Kafka 3.9 ``server.properties`` loads without warnings and DescribeConfigs lists what
Kafka lists; the KRaft, tiered-storage and share-group keys are accepted and unused.
``super.users`` and ``allow.everyone.if.no.acl.found`` are the ZooKeeper-mode authorizer's
(AclAuthorizer) keys, which Kafka defines outside KafkaConfig.
"""

from __future__ import annotations

from pykbroker.config.types import (
    LONG_MAX,
    ConfigType,
    Described,
    Importance,
    NonEmptyString,
    UpdateMode,
    ValidList,
    at_least,
    define,
    one_of,
)

B, S, INT, SH, LG, D, LS, C, P = (
    ConfigType.BOOLEAN,
    ConfigType.STRING,
    ConfigType.INT,
    ConfigType.SHORT,
    ConfigType.LONG,
    ConfigType.DOUBLE,
    ConfigType.LIST,
    ConfigType.CLASS,
    ConfigType.PASSWORD,
)
H, M, L = Importance.HIGH, Importance.MEDIUM, Importance.LOW
RO, PB, CW = UpdateMode.READ_ONLY, UpdateMode.PER_BROKER, UpdateMode.CLUSTER_WIDE

METADATA_VERSIONS = (
    "0.8.0", "0.8.1", "0.8.2", "0.9.0", "0.10.0-IV0", "0.10.0-IV1", "0.10.1-IV0", "0.10.1-IV1",
    "0.10.1-IV2", "0.10.2-IV0", "0.11.0-IV0", "0.11.0-IV1", "0.11.0-IV2", "1.0-IV0", "1.1-IV0",
    "2.0-IV0", "2.0-IV1", "2.1-IV0", "2.1-IV1", "2.1-IV2", "2.2-IV0", "2.2-IV1", "2.3-IV0",
    "2.3-IV1", "2.4-IV0", "2.4-IV1", "2.5-IV0", "2.6-IV0", "2.7-IV0", "2.7-IV1", "2.7-IV2",
    "2.8-IV0", "2.8-IV1", "3.0-IV0", "3.0-IV1", "3.1-IV0", "3.2-IV0", "3.3-IV0", "3.3-IV1",
    "3.3-IV2", "3.3-IV3", "3.4-IV0", "3.5-IV0", "3.5-IV1", "3.5-IV2", "3.6-IV0", "3.6-IV1",
    "3.6-IV2", "3.7-IV0", "3.7-IV1", "3.7-IV2", "3.7-IV3", "3.7-IV4", "3.8-IV0", "3.9-IV0",
    "4.0-IV0", "4.0-IV1",
)
"""Kafka 3.9's MetadataVersion names: the valid inter.broker.protocol.version values."""

_SSL = (
    define("ssl.protocol", S, "TLSv1.3",
           "The SSL protocol used to generate the SSLContext. The default is 'TLSv1.3' (Kafka "
           "on Java 11 or newer).", M, mode=PB),
    define("ssl.enabled.protocols", LS, ["TLSv1.2", "TLSv1.3"],
           "The list of protocols enabled for SSL connections. The default is "
           "'TLSv1.2,TLSv1.3' (Kafka on Java 11 or newer).", M, mode=PB),
    define("ssl.cipher.suites", LS, [],
           "A list of cipher suites. By default all the available cipher suites are "
           "supported.", M, mode=PB),
    define("ssl.client.auth", S, "none",
           "Configures kafka broker to request client authentication: required, requested or "
           "none.", M, one_of("required", "requested", "none"), PB),
    define("ssl.keystore.type", S, "JKS",
           "The file format of the key store file (JKS, PKCS12 or PEM).", M, mode=PB),
    define("ssl.keystore.location", S, None, "The location of the key store file.", M,
           mode=PB),
    define("ssl.keystore.password", P, None, "The store password for the key store file.", M,
           mode=PB),
    define("ssl.keystore.key", P, None,
           "Private key in the format specified by 'ssl.keystore.type'.", M, mode=PB),
    define("ssl.keystore.certificate.chain", P, None,
           "Certificate chain in the format specified by 'ssl.keystore.type'.", M, mode=PB),
    define("ssl.key.password", P, None,
           "The password of the private key in the key store file or the PEM key specified in "
           "'ssl.keystore.key'.", M, mode=PB),
    define("ssl.truststore.type", S, "JKS",
           "The file format of the trust store file (JKS, PKCS12 or PEM).", M, mode=PB),
    define("ssl.truststore.location", S, None, "The location of the trust store file.", M,
           mode=PB),
    define("ssl.truststore.password", P, None, "The password for the trust store file.", M,
           mode=PB),
    define("ssl.truststore.certificates", P, None,
           "Trusted certificates in the format specified by 'ssl.truststore.type'.", M, mode=PB),
    define("ssl.keymanager.algorithm", S, "SunX509",
           "The algorithm used by key manager factory for SSL connections.", M, mode=PB),
    define("ssl.trustmanager.algorithm", S, "PKIX",
           "The algorithm used by trust manager factory for SSL connections.", M, mode=PB),
    define("ssl.provider", S, None,
           "The name of the security provider used for SSL connections.", M, mode=PB),
    define("ssl.endpoint.identification.algorithm", S, "https",
           "The endpoint identification algorithm to validate server hostname using server "
           "certificate.", L, mode=PB),
    define("ssl.secure.random.implementation", S, None,
           "The SecureRandom PRNG implementation to use for SSL cryptography operations.", L,
           mode=PB),
    define("ssl.engine.factory.class", C, None,
           "The class of type org.apache.kafka.common.security.auth.SslEngineFactory to "
           "provide SSLEngine objects.", L, mode=PB),
    define("ssl.principal.mapping.rules", S, "DEFAULT",
           "A list of rules for mapping from distinguished name from the client certificate "
           "to short name.", L),
    define("ssl.allow.dn.changes", B, False,
           "Indicates whether changes to the certificate distinguished name should be allowed "
           "during a dynamic reconfiguration of certificates or not.", L),
    define("ssl.allow.san.changes", B, False,
           "Indicates whether changes to the certificate subject alternative names should be "
           "allowed during a dynamic reconfiguration of certificates or not.", L),
)

_SASL = (
    define("sasl.enabled.mechanisms", LS, ["GSSAPI"],
           "The list of SASL mechanisms enabled in the Kafka server. Only GSSAPI is enabled by "
           "default.", M, mode=PB),
    define("sasl.mechanism.inter.broker.protocol", S, "GSSAPI",
           "SASL mechanism used for inter-broker communication. Default is GSSAPI.", M, mode=PB),
    define("sasl.mechanism.controller.protocol", S, "GSSAPI",
           "SASL mechanism used for communication with controllers. Default is GSSAPI.", H),
    define("sasl.jaas.config", P, None,
           "JAAS login context parameters for SASL connections in the format used by JAAS "
           "configuration files.", M, mode=PB),
    define("sasl.server.max.receive.size", INT, 524288,
           "The maximum receive size allowed before and during initial SASL authentication.",
           M),
    define("sasl.server.callback.handler.class", C, None,
           "The fully qualified name of a SASL server callback handler class that implements "
           "the AuthenticateCallbackHandler interface.", M),
    define("sasl.client.callback.handler.class", C, None,
           "The fully qualified name of a SASL client callback handler class that implements "
           "the AuthenticateCallbackHandler interface.", M),
    define("sasl.login.callback.handler.class", C, None,
           "The fully qualified name of a SASL login callback handler class that implements "
           "the AuthenticateCallbackHandler interface.", M),
    define("sasl.login.class", C, None,
           "The fully qualified name of a class that implements the Login interface.", M),
    define("sasl.kerberos.service.name", S, None,
           "The Kerberos principal name that Kafka runs as.", M, mode=PB),
    define("sasl.kerberos.kinit.cmd", S, "/usr/bin/kinit", "Kerberos kinit command path.", M,
           mode=PB),
    define("sasl.kerberos.min.time.before.relogin", LG, 60000,
           "Login thread sleep time between refresh attempts.", M, mode=PB),
    define("sasl.kerberos.ticket.renew.jitter", D, 0.05,
           "Percentage of random jitter added to the renewal time.", M, mode=PB),
    define("sasl.kerberos.ticket.renew.window.factor", D, 0.8,
           "Login thread will sleep until the specified window factor of time from last "
           "refresh to ticket's expiry has been reached, at which time it will try to renew "
           "the ticket.", M, mode=PB),
    define("sasl.kerberos.principal.to.local.rules", LS, ["DEFAULT"],
           "A list of rules for mapping from principal names to short names (typically "
           "operating system usernames).", M, mode=PB),
    define("sasl.login.refresh.window.factor", D, 0.8,
           "Login refresh thread will sleep until the specified window factor relative to the "
           "credential's lifetime has been reached, at which time it will try to refresh the "
           "credential.", M, mode=PB),
    define("sasl.login.refresh.window.jitter", D, 0.05,
           "The maximum amount of random jitter relative to the credential's lifetime that is "
           "added to the login refresh thread's sleep time.", M, mode=PB),
    define("sasl.login.refresh.min.period.seconds", SH, 60,
           "The desired minimum time for the login refresh thread to wait before refreshing a "
           "credential, in seconds.", M, mode=PB),
    define("sasl.login.refresh.buffer.seconds", SH, 300,
           "The amount of buffer time before credential expiration to maintain when "
           "refreshing a credential, in seconds.", M, mode=PB),
    define("sasl.login.connect.timeout.ms", INT, None,
           "The (optional) value in milliseconds for the external authentication provider "
           "connection timeout.", L),
    define("sasl.login.read.timeout.ms", INT, None,
           "The (optional) value in milliseconds for the external authentication provider "
           "read timeout.", L),
    define("sasl.login.retry.backoff.ms", LG, 100,
           "The (optional) value in milliseconds for the initial wait between login attempts "
           "to the external authentication provider.", L),
    define("sasl.login.retry.backoff.max.ms", LG, 10000,
           "The (optional) value in milliseconds for the maximum wait between login attempts "
           "to the external authentication provider.", L),
    define("sasl.oauthbearer.jwks.endpoint.url", S, None,
           "The OAuth/OIDC provider URL from which the provider's JWKS (JSON Web Key Set) can "
           "be retrieved.", M),
    define("sasl.oauthbearer.token.endpoint.url", S, None,
           "The URL for the OAuth/OIDC identity provider.", M),
    define("sasl.oauthbearer.clock.skew.seconds", INT, 30,
           "The (optional) value in seconds to allow for differences between the time of the "
           "OAuth/OIDC identity provider and the broker.", L),
    define("sasl.oauthbearer.expected.audience", LS, None,
           "The (optional) comma-delimited setting for the broker to use to verify that the "
           "JWT was issued for one of the expected audiences.", L),
    define("sasl.oauthbearer.expected.issuer", S, None,
           "The (optional) setting for the broker to use to verify that the JWT was created "
           "by the expected issuer.", L),
    define("sasl.oauthbearer.jwks.endpoint.refresh.ms", LG, 3600000,
           "The (optional) value in milliseconds for the broker to wait between refreshing its "
           "JWKS (JSON Web Key Set) cache that contains the keys to verify the signature of "
           "the JWT.", L),
    define("sasl.oauthbearer.jwks.endpoint.retry.backoff.ms", LG, 100,
           "The (optional) value in milliseconds for the initial wait between JWKS (JSON Web "
           "Key Set) retrieval attempts from the external authentication provider.", L),
    define("sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms", LG, 10000,
           "The (optional) value in milliseconds for the maximum wait between attempts to "
           "retrieve the JWKS (JSON Web Key Set) from the external authentication provider.",
           L),
    define("sasl.oauthbearer.scope.claim.name", S, "scope",
           "The OAuth claim for the scope is often named \"scope\", but this (optional) "
           "setting can provide a different name.", L),
    define("sasl.oauthbearer.sub.claim.name", S, "sub",
           "The OAuth claim for the subject is often named \"sub\", but this (optional) "
           "setting can provide a different name.", L),
    define("security.providers", S, None,
           "A list of configurable creator classes each returning a provider implementing "
           "security algorithms.", L),
    define("principal.builder.class", C,
           "org.apache.kafka.common.security.authenticator.DefaultKafkaPrincipalBuilder",
           "The fully qualified name of a class that implements the KafkaPrincipalBuilder "
           "interface, which is used to build the KafkaPrincipal object used during "
           "authorization.", M, mode=PB),
)

_AUTHZ_AND_TOKENS = (
    define("authorizer.class.name", S, "",
           "The fully qualified name of a class that implements "
           "org.apache.kafka.server.authorizer.Authorizer interface, which is used by the "
           "broker for authorization.", L, Described("non-null string")),
    define("super.users", S, None,
           "A list of principals, separated by semicolons, that are allowed to perform any "
           "action without ACLs (ZooKeeper-mode AclAuthorizer, e.g. User:admin;User:alice).",
           L),
    define("allow.everyone.if.no.acl.found", B, False,
           "When true, a resource without any ACL is accessible to everyone "
           "(ZooKeeper-mode AclAuthorizer).", L),
    define("alter.config.policy.class.name", C, None,
           "The alter configs policy class that should be used for validation.", L),
    define("alter.config.policy.kraft.compatibility.enable", B, False,
           "This configuration controls whether for incremental alter config operations of "
           "type SUBTRACT or DELETE on a config entry of type LIST, an incremental alter "
           "config policy will invoked consistently regardless of whether Kafka is running in "
           "KRaft or Zookeeper mode.", L),
    define("create.topic.policy.class.name", C, None,
           "The create topic policy class that should be used for validation.", L),
    define("client.quota.callback.class", C, None,
           "The fully qualified name of a class that implements the ClientQuotaCallback "
           "interface, which is used to determine quota limits applied to client requests.",
           L),
    define("delegation.token.secret.key", P, None,
           "Secret key to generate and verify delegation tokens.", M),
    define("delegation.token.master.key", P, None,
           "DEPRECATED: An alias for delegation.token.secret.key, which should be used instead "
           "of this config.", M),
    define("delegation.token.max.lifetime.ms", LG, 604800000,
           "The token has a maximum lifetime beyond which it cannot be renewed anymore. "
           "Default value 7 days.", M, at_least(1)),
    define("delegation.token.expiry.time.ms", LG, 86400000,
           "The token validity time in milliseconds before the token needs to be renewed. "
           "Default value 1 day.", M, at_least(1)),
    define("delegation.token.expiry.check.interval.ms", LG, 3600000,
           "Scan interval to remove expired delegation tokens.", L, at_least(1)),
    define("password.encoder.secret", P, None,
           "The secret used for encoding dynamically configured passwords for this broker.",
           M),
    define("password.encoder.old.secret", P, None,
           "The old secret that was used for encoding dynamically configured passwords.", M),
    define("password.encoder.keyfactory.algorithm", S, None,
           "The SecretKeyFactory algorithm used for encoding dynamically configured "
           "passwords.", L),
    define("password.encoder.cipher.algorithm", S, "AES/CBC/PKCS5Padding",
           "The Cipher algorithm used for encoding dynamically configured passwords.", L),
    define("password.encoder.key.length", INT, 128,
           "The key length used for encoding dynamically configured passwords.", L,
           at_least(8)),
    define("password.encoder.iterations", INT, 4096,
           "The iteration count used for encoding dynamically configured passwords.", L,
           at_least(1024)),
)

_QUOTAS_AND_METRICS = (
    define("quota.window.num", INT, 11,
           "The number of samples to retain in memory for client quotas", L, at_least(1)),
    define("quota.window.size.seconds", INT, 1,
           "The time span of each sample for client quotas", L, at_least(1)),
    define("replication.quota.window.num", INT, 11,
           "The number of samples to retain in memory for replication quotas", L,
           at_least(1)),
    define("replication.quota.window.size.seconds", INT, 1,
           "The time span of each sample for replication quotas", L, at_least(1)),
    define("alter.log.dirs.replication.quota.window.num", INT, 11,
           "The number of samples to retain in memory for alter log dirs replication quotas",
           L, at_least(1)),
    define("alter.log.dirs.replication.quota.window.size.seconds", INT, 1,
           "The time span of each sample for alter log dirs replication quotas", L,
           at_least(1)),
    define("controller.quota.window.num", INT, 11,
           "The number of samples to retain in memory for controller mutation quotas", L,
           at_least(1)),
    define("controller.quota.window.size.seconds", INT, 1,
           "The time span of each sample for controller mutations quotas", L, at_least(1)),
    define("metric.reporters", LS, [], "A list of classes to use as metrics reporters.", L,
           mode=CW),
    define("metrics.num.samples", INT, 2,
           "The number of samples maintained to compute metrics.", L, at_least(1)),
    define("metrics.recording.level", S, "INFO", "The highest recording level for metrics.",
           L),
    define("metrics.sample.window.ms", LG, 30000,
           "The window of time a metrics sample is computed over.", L, at_least(1)),
    define("kafka.metrics.reporters", LS, [],
           "A list of classes to use as Yammer metrics custom reporters.", L),
    define("kafka.metrics.polling.interval.secs", INT, 10,
           "The metrics polling interval (in seconds) which can be used in "
           "kafka.metrics.reporters implementations.", L, at_least(1)),
    define("auto.include.jmx.reporter", B, True,
           "Deprecated. Whether to automatically include JmxReporter even if it's not listed "
           "in metric.reporters.", L),
    define("telemetry.max.bytes", INT, 1048576,
           "The maximum size (after compression if compression is used) of telemetry metrics "
           "pushed from a client to the broker.", L, at_least(1)),
)

_POOL_TEXT = (
    "The default value of -1 means that this will be set to the configured value of "
    "remote.log.manager.thread.pool.size, if available; otherwise, it defaults to 10."
)

_REMOTE = (
    define("remote.log.storage.system.enable", B, False,
           "Whether to enable tiered storage functionality in a broker or not. pykbroker "
           "accepts the key and has no tiered storage.", M),
    define("remote.log.storage.manager.class.name", S, None,
           "Fully qualified class name of `RemoteStorageManager` implementation.", M,
           NonEmptyString()),
    define("remote.log.storage.manager.class.path", S, None,
           "Class path of the `RemoteStorageManager` implementation.", M),
    define("remote.log.storage.manager.impl.prefix", S, "rsm.config.",
           "Prefix used for properties to be passed to RemoteStorageManager implementation.",
           M, NonEmptyString()),
    define("remote.log.metadata.manager.class.name", S,
           "org.apache.kafka.server.log.remote.metadata.storage.TopicBasedRemoteLogMetadataManager",
           "Fully qualified class name of `RemoteLogMetadataManager` implementation.", M,
           NonEmptyString()),
    define("remote.log.metadata.manager.class.path", S, None,
           "Class path of the `RemoteLogMetadataManager` implementation.", M),
    define("remote.log.metadata.manager.impl.prefix", S, "rlmm.config.",
           "Prefix used for properties to be passed to RemoteLogMetadataManager "
           "implementation.", M, NonEmptyString()),
    define("remote.log.metadata.manager.listener.name", S, None,
           "Listener name of the local broker to which it should get connected if needed by "
           "RemoteLogMetadataManager implementation.", M, NonEmptyString()),
    define("remote.log.metadata.custom.metadata.max.bytes", INT, 128,
           "The maximum size of custom metadata in bytes that the broker should accept from a "
           "remote storage plugin.", L, at_least(0)),
    define("remote.log.index.file.cache.total.size.bytes", LG, 1073741824,
           "The total size of the space allocated to store index files fetched from remote "
           "storage in the local storage.", L, at_least(1), CW),
    define("remote.log.manager.thread.pool.size", INT, 10,
           "Deprecated. Size of the thread pool used in scheduling tasks to copy segments, "
           "fetch remote log indexes and clean up remote log segments.", M, at_least(1)),
    define("remote.log.manager.copier.thread.pool.size", INT, -1,
           "Size of the thread pool used in scheduling tasks to copy segments.", M,
           Described(_POOL_TEXT)),
    define("remote.log.manager.expiration.thread.pool.size", INT, -1,
           "Size of the thread pool used in scheduling tasks to clean up remote log segments.",
           M, Described(_POOL_TEXT)),
    define("remote.log.manager.task.interval.ms", LG, 30000,
           "Interval at which remote log manager runs the scheduled tasks like copy segments, "
           "and clean up remote log segments.", L, at_least(1)),
    define("remote.log.manager.copy.max.bytes.per.second", LG, LONG_MAX,
           "The maximum number of bytes that can be copied from local storage to remote "
           "storage per second.", M, at_least(1), CW),
    define("remote.log.manager.copy.quota.window.num", INT, 11,
           "The number of samples to retain in memory for remote copy quota management.", M,
           at_least(1)),
    define("remote.log.manager.copy.quota.window.size.seconds", INT, 1,
           "The time span of each sample for remote copy quota management.", M, at_least(1)),
    define("remote.log.manager.fetch.max.bytes.per.second", LG, LONG_MAX,
           "The maximum number of bytes that can be fetched from remote storage to local "
           "storage per second.", M, at_least(1), CW),
    define("remote.log.manager.fetch.quota.window.num", INT, 11,
           "The number of samples to retain in memory for remote fetch quota management.", M,
           at_least(1)),
    define("remote.log.manager.fetch.quota.window.size.seconds", INT, 1,
           "The time span of each sample for remote fetch quota management.", M, at_least(1)),
    define("remote.log.reader.threads", INT, 10,
           "Size of the thread pool that is allocated for handling remote log reads.", M,
           at_least(1)),
    define("remote.log.reader.max.pending.tasks", INT, 100,
           "Maximum remote log reader thread pool task queue size.", M, at_least(1)),
    define("remote.fetch.max.wait.ms", INT, 500,
           "The maximum amount of time the server will wait before answering the remote fetch "
           "request", M, at_least(1), CW),
)

_KRAFT = (
    define("process.roles", LS, [],
           "The roles that this process plays in KRaft mode. pykbroker runs with ZooKeeper-mode "
           "semantics, so the key is accepted and ignored.", H,
           ValidList(("broker", "controller"))),
    define("controller.listener.names", S, None,
           "A comma-separated list of the names of the listeners used by the controller "
           "(KRaft only); such listeners are never advertised.", H),
    define("controller.quorum.voters", LS, [],
           "Map of id/endpoint information for the set of voters in a comma-separated list of "
           "{id}@{host}:{port} entries.", H),
    define("controller.quorum.bootstrap.servers", LS, [],
           "List of endpoints to use for bootstrapping the cluster metadata.", H),
    define("controller.quorum.election.backoff.max.ms", INT, 1000,
           "Maximum time in milliseconds before starting new elections.", H),
    define("controller.quorum.election.timeout.ms", INT, 1000,
           "Maximum time in milliseconds to wait without being able to fetch from the leader "
           "before triggering a new election", H),
    define("controller.quorum.fetch.timeout.ms", INT, 2000,
           "Maximum time without a successful fetch from the current leader before becoming a "
           "candidate and triggering an election for voters.", H),
    define("controller.quorum.append.linger.ms", INT, 25,
           "The duration in milliseconds that the leader will wait for writes to accumulate "
           "before flushing them to disk.", M),
    define("controller.quorum.request.timeout.ms", INT, 2000,
           "The configuration controls the maximum amount of time the client will wait for "
           "the response of a request.", M),
    define("controller.quorum.retry.backoff.ms", INT, 20,
           "The amount of time to wait before attempting to retry a failed request to a given "
           "topic partition.", L),
    define("early.start.listeners", S, None,
           "A comma-separated list of listener names which may be started before the "
           "authorizer has finished initialization.", H),
    define("eligible.leader.replicas.enable", B, False, "Enable the Eligible leader replicas",
           H),
    define("broker.heartbeat.interval.ms", INT, 2000,
           "The length of time in milliseconds between broker heartbeats. Used when running "
           "in KRaft mode.", M),
    define("broker.session.timeout.ms", INT, 9000,
           "The length of time in milliseconds that a broker lease lasts if no heartbeats are "
           "made. Used when running in KRaft mode.", M),
    define("initial.broker.registration.timeout.ms", INT, 60000,
           "When initially registering with the controller quorum, the number of "
           "milliseconds to wait before declaring failure and exiting the broker process.", M),
    define("metadata.log.dir", S, None,
           "This configuration determines where we put the metadata log for clusters in KRaft "
           "mode.", H),
    define("metadata.log.segment.bytes", INT, 1073741824,
           "The maximum size of a single metadata log file.", H, at_least(12)),
    define("metadata.log.segment.ms", LG, 604800000,
           "The maximum time before a new metadata log file is rolled out (in "
           "milliseconds).", H),
    define("metadata.log.max.record.bytes.between.snapshots", LG, 20971520,
           "This is the maximum number of bytes in the log between the latest snapshot and the "
           "high-watermark needed before generating a new snapshot.", H, at_least(1)),
    define("metadata.log.max.snapshot.interval.ms", LG, 3600000,
           "This is the maximum number of milliseconds to wait to generate a snapshot if there "
           "are committed records in the log that are not included in the latest snapshot.",
           H, at_least(0)),
    define("metadata.max.retention.bytes", LG, 104857600,
           "The maximum combined size of the metadata log and snapshots before deleting old "
           "snapshots and log files.", H),
    define("metadata.max.retention.ms", LG, 604800000,
           "The number of milliseconds to keep a metadata log file or snapshot before deleting "
           "it.", H),
    define("metadata.max.idle.interval.ms", INT, 500,
           "This configuration controls how often the active controller should write no-op "
           "records to the metadata partition.", L, at_least(0)),
)

_ZK_TLS = (
    define("zookeeper.clientCnxnSocket", S, None,
           "Typically set to org.apache.zookeeper.ClientCnxnSocketNetty when using TLS "
           "connectivity to ZooKeeper.", M),
    define("zookeeper.ssl.client.enable", B, False,
           "Set client to use TLS when connecting to ZooKeeper.", M),
    define("zookeeper.ssl.keystore.location", S, None,
           "Keystore location when using a client-side certificate with TLS connectivity to "
           "ZooKeeper.", M),
    define("zookeeper.ssl.keystore.password", P, None,
           "Keystore password when using a client-side certificate with TLS connectivity to "
           "ZooKeeper.", M),
    define("zookeeper.ssl.keystore.type", S, None,
           "Keystore type when using a client-side certificate with TLS connectivity to "
           "ZooKeeper.", M),
    define("zookeeper.ssl.truststore.location", S, None,
           "Truststore location when using TLS connectivity to ZooKeeper.", M),
    define("zookeeper.ssl.truststore.password", P, None,
           "Truststore password when using TLS connectivity to ZooKeeper.", M),
    define("zookeeper.ssl.truststore.type", S, None,
           "Truststore type when using TLS connectivity to ZooKeeper.", M),
    define("zookeeper.ssl.protocol", S, "TLSv1.2",
           "Specifies the protocol to be used in ZooKeeper TLS negotiation.", L),
    define("zookeeper.ssl.enabled.protocols", LS, None,
           "Specifies the enabled protocol(s) in ZooKeeper TLS negotiation (csv).", L),
    define("zookeeper.ssl.cipher.suites", LS, None,
           "Specifies the enabled cipher suites to be used in ZooKeeper TLS negotiation "
           "(csv).", L),
    define("zookeeper.ssl.endpoint.identification.algorithm", S, "HTTPS",
           "Specifies whether to enable hostname verification in the ZooKeeper TLS "
           "negotiation process.", L),
    define("zookeeper.ssl.crl.enable", B, False,
           "Specifies whether to enable Certificate Revocation List in the ZooKeeper TLS "
           "protocols.", L),
    define("zookeeper.ssl.ocsp.enable", B, False,
           "Specifies whether to enable Online Certificate Status Protocol in the ZooKeeper "
           "TLS protocols.", L),
)

EXTRA_DEFS = (
    *_SSL, *_SASL, *_AUTHZ_AND_TOKENS, *_QUOTAS_AND_METRICS, *_REMOTE, *_KRAFT, *_ZK_TLS,
)
