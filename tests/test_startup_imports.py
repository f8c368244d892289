"""A single PLAINTEXT broker without an authorizer loads no security, cleaning or cluster code.

Start-up time and idle memory of the embedded default are part of what pykbroker promises;
the TLS/SASL/ACL machinery, the log cleaner's cleaning code and everything ZooKeeper mode
needs are imported only when a configuration, a compacted log or a request asks for them.
The broker here serves a real produce and consume (kafka-python) before the check, so the
modules a working broker needs are loaded and only the unneeded ones are missing.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys
    from kafka import KafkaConsumer, KafkaProducer
    from pykbroker.testing import KafkaBroker

    with KafkaBroker() as kafka:
        kafka.create_topic("imports-probe", 2)
        producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
        for i in range(10):
            producer.send("imports-probe", str(i).encode())
        producer.flush()
        producer.close()
        consumer = KafkaConsumer("imports-probe", bootstrap_servers=kafka.bootstrap_servers,
                                 group_id="imports-probe", auto_offset_reset="earliest",
                                 consumer_timeout_ms=10000)
        got = sum(1 for _ in consumer)
        consumer.close()
        assert got == 10, got
        print("\\n".join(sorted(sys.modules)))
""")

NOT_LOADED = [
    "pykbroker.security.listener_security", "pykbroker.security.ssl_principal",
    "pykbroker.security.jaas", "pykbroker.security.scram", "pykbroker.security.plain",
    "pykbroker.security.authenticator", "pykbroker.security.acls",
    "pykbroker.security.acl_store", "pykbroker.handlers.acls", "pykbroker.handlers.sasl",
    "pykbroker.log.cleaner", "pykbroker.log.cleaner_filter", "pykbroker.log.offset_map",
    "pykbroker.cluster.member", "pykbroker.controller", "pykbroker.metadata.zk",
    "pykbroker.replication", "pykbroker.handlers.controller_requests", "kazoo",
    "pykbroker.quotas.manager", "pykbroker.handlers.quotas", "pykbroker.quotas.zk_store",
    # pykbroker.quotas.rate is loaded: the listeners' connection-creation rate
    # (server/connection_quotas.py) is Kafka's Rate, ~0.2 ms to import (math only).
]


def test_plain_single_broker_loads_no_security_cleaning_or_cluster_code() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = set(out.stdout.split())
    assert "pykbroker.broker" in loaded and "pykbroker.handlers.produce" in loaded
    unexpected = sorted(m for m in loaded if any(m == n or m.startswith(n + ".")
                                                 for n in NOT_LOADED))
    assert not unexpected, f"loaded by a plain single broker: {unexpected}"
