"""Consumer-group benchmark: join time and commit throughput, against a pykbroker subprocess.

* join: time from the first consumer's subscribe to every member holding a share of a
  60-partition topic (all 60 assigned, none empty), 10 confluent-kafka consumers, for the
  classic protocol (range assignor) and KIP-848 (``group.protocol=consumer``).
* commit: synchronous OffsetCommit round trips per second from one consumer.

The broker runs with ``group.initial.rebalance.delay.ms=0`` (Kafka's 3 s default would
dominate the classic join time; the README states it). Prints a table, then JSON.
Usage: ``python benchmarks/group_bench.py [--rounds 3] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from compat_tests.broker_process import BrokerProcess  # noqa: E402

CONSUMERS = 10
PARTITIONS = 60


def _consumer_config(bootstrap: str, group: str, protocol: str) -> dict[str, object]:
    conf: dict[str, object] = {"bootstrap.servers": bootstrap, "group.id": group,
                               "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    if protocol == "consumer":
        conf["group.protocol"] = "consumer"
    else:
        conf.update({"partition.assignment.strategy": "range", "session.timeout.ms": 10_000,
                     "heartbeat.interval.ms": 500})
    return conf


def join_time(bootstrap: str, topic: str, protocol: str, timeout: float = 60.0) -> float:
    """Seconds from the first subscribe until all 60 partitions are held, none idle. One
    thread polls every consumer in turn (a consumer's calls must not race each other)."""
    group = f"bench-{uuid.uuid4().hex[:8]}"
    consumers = [Consumer(_consumer_config(bootstrap, group, protocol))
                 for _ in range(CONSUMERS)]
    start = time.monotonic()
    for c in consumers:
        c.subscribe([topic])
    elapsed = float("nan")
    try:
        while time.monotonic() - start < timeout:
            for c in consumers:
                c.poll(0.005)
            shares = [len(c.assignment()) for c in consumers]
            if sum(shares) == PARTITIONS and min(shares) > 0:
                elapsed = time.monotonic() - start
                break
    finally:
        for c in consumers:
            c.close()
    return elapsed


def commit_rate(bootstrap: str, topic: str, seconds: float = 3.0) -> float:
    c = Consumer(_consumer_config(bootstrap, f"commit-{uuid.uuid4().hex[:8]}", "classic"))
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)  # finds the coordinator
        n = 0
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            c.commit(offsets=[TopicPartition(topic, 0, n)], asynchronous=False)
            n += 1
        return n / (time.monotonic() - start)
    finally:
        c.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = BrokerProcess(Path(tmp) / "data", {"group.initial.rebalance.delay.ms": "0"})
        broker.start()
        try:
            admin = AdminClient({"bootstrap.servers": broker.bootstrap})
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
            results: dict[str, list[float]] = {"join classic (s)": [], "join KIP-848 (s)": [],
                                               "commits/s (1 consumer)": []}
            for _ in range(args.rounds):  # interleaved, so noise hits every row alike
                results["join classic (s)"].append(join_time(broker.bootstrap, topic, "classic"))
                results["join KIP-848 (s)"].append(join_time(broker.bootstrap, topic,
                                                             "consumer"))
                results["commits/s (1 consumer)"].append(commit_rate(broker.bootstrap, topic))
        finally:
            broker.close()
    summary = {k: {"median": statistics.median(v), "min": min(v), "max": max(v)}
               for k, v in results.items()}
    if not args.json:
        print(f"{CONSUMERS} consumers, {PARTITIONS} partitions, {args.rounds} rounds; "
              "median (min-max)")
        for k, s in summary.items():
            print(f"{k:26s} {s['median']:10.3f}  ({s['min']:.3f}-{s['max']:.3f})")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
