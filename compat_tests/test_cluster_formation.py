"""Cluster mode through ZooKeeper (issue #14): several pykbroker processes form one cluster.

The harness self-tests check compat_tests/cluster.py itself (ZooKeeper and three broker
processes start, answer, restart and are cleaned up) without asserting any cluster behaviour.
"""

from __future__ import annotations

import os
import signal

import pytest
from kazoo.client import KazooClient

from compat_tests.cluster import BrokerStartError, Cluster
from pykbroker.metadata.zk.server import ZooKeeperServer

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

METADATA_KEY = 3
API_VERSIONS_KEY = 18


def test_harness_starts_answers_restarts_brokers(cluster: Cluster) -> None:
    assert cluster.broker_ids == [1, 2, 3]
    ports = {cluster.brokers[i].port for i in cluster.broker_ids}
    assert len(ports) == 3
    assert cluster.bootstrap_all() == ",".join(f"127.0.0.1:{cluster.brokers[i].port}"
                                               for i in (1, 2, 3))
    for i in cluster.broker_ids:
        broker = cluster.brokers[i]
        assert f"broker.id={i}" in broker.command()
        assert f"zookeeper.connect={cluster.zookeeper_connect}" in broker.command()
        assert cluster.zookeeper_connect.startswith(cluster.zookeeper_server.hosts + "/")
        versions = cluster.api_versions(i)
        assert METADATA_KEY in versions and API_VERSIONS_KEY in versions
        assert cluster.metadata(i).origin == i  # answered by broker i itself
    assert cluster.zk.connected
    cluster.controller_id()  # None or an id: readable either way
    cluster.registered_ids()

    assert cluster.terminate(2) == 0
    assert cluster.running_ids() == [1, 3]
    with pytest.raises(OSError):
        cluster.api_versions(2)
    cluster.start(2)  # same port, same data directory
    assert API_VERSIONS_KEY in cluster.api_versions(2)
    assert cluster.brokers[2].starts == 2

    assert cluster.kill(3) == -signal.SIGKILL
    assert cluster.running_ids() == [1, 2]
    assert cluster.wait_until(lambda: 42, 1.0) == 42
    with pytest.raises(AssertionError, match="never not true after 0.2 s"):
        cluster.wait_until(lambda: 0, 0.2, what="never")


@pytest.mark.parametrize("cluster", [{"brokers": 1, "num.partitions": "2"}], indirect=True)
def test_harness_size_and_overrides(cluster: Cluster) -> None:
    assert cluster.broker_ids == [1]
    assert "num.partitions=2" in cluster.brokers[1].command()
    assert "group.initial.rebalance.delay.ms=0" in cluster.brokers[1].command()


def test_harness_cleans_up_and_reports_start_failures(zookeeper_server: ZooKeeperServer) -> None:
    with Cluster(zookeeper_server, 2) as c:
        pids = [c.brokers[i].proc.pid for i in c.broker_ids]  # type: ignore[union-attr]
        directory = c.directory
        c.zk.ensure_path("/harness-check")
        assert c.zk.exists("/harness-check")
    assert not directory.exists()
    for pid in pids:  # killed and reaped
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    root = KazooClient(hosts=zookeeper_server.hosts)
    root.start(timeout=10)
    try:
        assert root.exists(c.chroot) is None
    finally:
        root.stop()
        root.close()

    bad = Cluster(zookeeper_server, 1,
                  overrides={"authorizer.class.name": "kafka.security.authorizer.AclAuthorizer"})
    with pytest.raises(BrokerStartError, match="authorizer.class.name"):
        with bad:
            pass
    assert not bad.directory.exists()
    assert bad.running_ids() == []
