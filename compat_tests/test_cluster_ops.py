"""Operating a cluster (issue #14): what the admin CLI and the metrics show of three brokers.

* ``pykbroker topics describe`` against any broker shows every partition's leader, replicas
  and ISR as the cluster's Metadata has them, the controller and the live brokers; once a
  broker dies, its replicas are shown offline, partitions missing it from the ISR
  under-replicated, and a partition it alone held unavailable.
* The Prometheus endpoint of each broker (``metrics.port=0``, its port read from the
  broker's log): exactly one broker, the one ZooKeeper's ``/controller`` names, reports
  ``kafka_controller_kafkacontroller_activecontrollercount`` 1; the brokers' leader counts
  add up to the cluster's led partitions; the controller counts offline partitions; after the
  controller's SIGKILL the new one reports all of it.

No replication of data is needed (part 2, issue #15): nothing here produces records.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from typing import Any

import pytest

from compat_tests.cluster import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(60)]

METRICS_PORT = re.compile(r"metrics endpoint listening on \S+:(\d+)")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})?\s+(\S+)$")
CTL = "kafka_controller_kafkacontroller_"
RM = "kafka_server_replicamanager_"


def cli(cluster: Cluster, via: int, *args: str) -> subprocess.CompletedProcess[str]:
    """``pykbroker <args> --bootstrap-server <broker via>``; must exit 0."""
    proc = subprocess.run([sys.executable, "-m", "pykbroker", *args,
                           "--bootstrap-server", cluster.bootstrap(via)],
                          capture_output=True, text=True, timeout=40)
    assert proc.returncode == 0, f"{args} via {via}: {proc.returncode}\n{proc.stdout}" \
                                 f"\n{proc.stderr}"
    return proc


def describe(cluster: Cluster, via: int, *topics: str) -> dict[str, dict[str, Any]]:
    """``topics describe --json`` through broker ``via``: topic -> its description."""
    args = [a for t in topics for a in ("--topic", t)]
    out = json.loads(cli(cluster, via, "topics", "describe", *args, "--json").stdout)
    return {d["topic"]: d for d in out}


def create(cluster: Cluster, via: int, topic: str, partitions: int, rf: int) -> None:
    cli(cluster, via, "topics", "create", "--topic", topic, "--partitions", str(partitions),
        "--replication-factor", str(rf))


def metrics_port(cluster: Cluster, i: int) -> int:
    match = METRICS_PORT.search(cluster.brokers[i].current_log())
    assert match, f"broker {i} logged no metrics endpoint"
    return int(match[1])


def scrape(cluster: Cluster, i: int) -> dict[str, float]:
    """Broker ``i``'s unlabelled series (the controller and replica manager gauges)."""
    url = f"http://127.0.0.1:{metrics_port(cluster, i)}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and "{" not in line:
            out[match[1]] = float(match[2])
    return out


def test_topics_describe_shows_leaders_replicas_isr_and_dead_brokers(
        cluster: Cluster, topic_name: str) -> None:
    cluster.wait_formed()
    solo = f"{topic_name}-rf1"
    create(cluster, 2, topic_name, 6, 3)
    create(cluster, 2, solo, 3, 1)
    cluster.wait_topic(topic_name, 6)
    cluster.wait_topic(solo, 3)
    view = cluster.metadata(1)
    controller = cluster.controller_id()

    for via in cluster.broker_ids:  # every broker describes the same cluster
        desc = describe(cluster, via, topic_name, solo)
        assert desc[topic_name]["replication_factor"] == 3
        assert desc[solo]["replication_factor"] == 1
        for name in (topic_name, solo):
            for p in desc[name]["partitions"]:
                want = view.topics[name][p["partition"]]
                assert (p["leader"], tuple(p["replicas"]), tuple(p["isr"])) == tuple(want)
                assert p["offline"] == [] and p["error"] is None
                assert not p["under_replicated"] and not p["unavailable"]
        for p in desc[topic_name]["partitions"]:
            assert sorted(p["replicas"]) == [1, 2, 3] and p["leader"] == p["replicas"][0]

    text = cli(cluster, 3, "topics", "describe", "--topic", topic_name).stdout
    brokers = ",".join(f"{i}@{cluster.bootstrap(i)}" for i in cluster.broker_ids)
    assert text.splitlines()[0].endswith(f"\tController: {controller}\tBrokers: {brokers}")
    assert text.count(f"\tTopic: {topic_name}\tPartition: ") == 6
    assert "Offline" not in text and "UnderReplicated" not in text

    # A broker other than the controller dies: the describe through a survivor says so.
    dead = next(i for i in cluster.broker_ids if i != controller)
    survivor = next(i for i in cluster.broker_ids if i not in (dead, controller))
    cluster.kill(dead)

    def shown_dead() -> dict[str, dict[str, Any]] | None:
        desc = describe(cluster, survivor, topic_name, solo)
        parts = desc[topic_name]["partitions"] + desc[solo]["partitions"]
        return desc if all(p["offline"] == [dead] for p in parts if dead in p["replicas"]) \
            and all(dead not in p["isr"] for p in desc[topic_name]["partitions"]) else None

    desc = cluster.wait_until(shown_dead, cluster.session_timeout_ms / 1000 + 15,
                              what=f"broker {dead} offline in the describe")
    for p in desc[topic_name]["partitions"]:
        assert p["leader"] != dead and p["leader"] in p["isr"], p
        assert p["under_replicated"] and not p["unavailable"], p
    [lone] = [p for p in desc[solo]["partitions"] if p["replicas"] == [dead]]
    assert lone["unavailable"] and lone["leader"] in (-1, dead), lone
    others = [p for p in desc[solo]["partitions"] if p["replicas"] != [dead]]
    assert len(others) == 2 and not any(p["unavailable"] or p["offline"] for p in others)

    text = cli(cluster, survivor, "topics", "describe", "--topic", solo).stdout
    live = ",".join(f"{i}@{cluster.bootstrap(i)}" for i in cluster.broker_ids if i != dead)
    assert text.splitlines()[0].endswith(f"\tBrokers: {live}"), text
    [line] = [ln for ln in text.splitlines() if f"\tReplicas: {dead}\t" in ln]
    assert line.endswith(f"\tOffline: {dead}\tUnavailable: true"), line


@pytest.mark.cluster_config(**{"metrics.port": "0"})
def test_controller_and_leader_metrics(cluster: Cluster, topic_name: str) -> None:
    cluster.wait_formed()
    solo = f"{topic_name}-rf1"
    create(cluster, 1, topic_name, 12, 3)
    create(cluster, 1, solo, 3, 1)
    cluster.wait_topic(topic_name, 12)
    cluster.wait_topic(solo, 3)
    total = 15
    controller = cluster.controller_id()

    def settled(ids: list[int], led: int) -> dict[int, dict[str, float]] | None:
        """Every broker's gauges once leader counts add up to ``led`` (LeaderAndIsr reaches
        the brokers after Metadata does)."""
        samples = {i: scrape(cluster, i) for i in ids}
        return samples if sum(s[RM + "leadercount"] for s in samples.values()) == led \
            else None

    samples = cluster.wait_until(lambda: settled(cluster.broker_ids, total), 15,
                                 what="leader counts adding up")
    active = [i for i, s in samples.items() if s[CTL + "activecontrollercount"] == 1]
    assert active == [controller]
    assert all(s[CTL + "activecontrollercount"] == 0 for i, s in samples.items()
               if i != controller)
    assert samples[controller][CTL + "offlinepartitionscount"] == 0
    assert samples[controller][CTL + "globalpartitioncount"] == total
    assert samples[controller][CTL + "globaltopiccount"] == 2
    assert samples[controller][CTL + "preferredreplicaimbalancecount"] == 0
    for i, s in samples.items():
        assert s[RM + "leadercount"] == 5, (i, s)  # 4 of the RF 3 topic and 1 of the other
        assert s[RM + "partitioncount"] == 13, (i, s)  # all 12 replicas and its lone one
        assert s[RM + "underreplicatedpartitions"] == 0
        if i != controller:
            assert s[CTL + "offlinepartitionscount"] == 0
            assert s[CTL + "globalpartitioncount"] == 0

    # The controller dies: a survivor takes over and counts the partition only it held.
    cluster.kill(controller)
    survivors = [i for i in cluster.broker_ids if i != controller]
    new = cluster.wait_until(lambda: (c := cluster.controller_id()) in survivors and c,
                             cluster.session_timeout_ms / 1000 + 15, what="a new controller")

    def failed_over() -> dict[int, dict[str, float]] | None:
        samples = settled(survivors, total - 1)
        return samples if samples and samples[new][CTL + "offlinepartitionscount"] == 1 \
            else None

    samples = cluster.wait_until(failed_over, 20, what="the new controller's gauges")
    assert [i for i, s in samples.items() if s[CTL + "activecontrollercount"] == 1] == [new]
    assert samples[new][CTL + "globalpartitioncount"] == total
    # The dead broker's 4 RF 3 partitions are led by other replicas now; its lone partition
    # counts too once its leader is -1 in the controller's state (as the metadata shows).
    view = cluster.metadata(new)
    moved = sum(1 for parts in view.topics.values() for pv in parts.values()
                if pv.leader != pv.replicas[0])
    assert moved >= 4
    assert samples[new][CTL + "preferredreplicaimbalancecount"] == moved

    # Every RF 3 partition lost a replica: its leader counts it under-replicated, until the
    # dead broker is back and caught up (Kafka's UnderReplicatedPartitions).
    def under_replicated(ids: list[int]) -> int:
        return int(sum(scrape(cluster, i)[RM + "underreplicatedpartitions"] for i in ids))

    cluster.wait_until(lambda: under_replicated(survivors) == 12, 30,
                       what="12 under-replicated partitions on the survivors")
    cluster.start(controller)
    cluster.wait_until(lambda: under_replicated(cluster.broker_ids) == 0, 60,
                       what="no under-replicated partition once the broker caught up")
