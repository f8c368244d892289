"""The cluster cell of the performance harness (issue #15): three pykbroker brokers, replicated.

One real ZooKeeper (``pykbroker.metadata.zk.server.ZooKeeperServer``) and three
``python -m pykbroker`` processes on loopback (``compat_tests.cluster.Cluster``: broker ids 1-3,
one data directory each in a temp dir on disk, ``zookeeper.connect`` with a fresh chroot),
Kafka 3.9's defaults otherwise. The same confluent-kafka client code as ``perf.py`` drives
them, with ``bootstrap.servers`` naming all three brokers.

Sections (see benchmarks/README.md for the method and the figures):

* ``produce``: 1 KiB values, ``acks=all``, no compression, 6 partitions, ``--messages``
  (1,000,000) per run, on a topic with replication factor 1 and on one with replication
  factor 3 and ``min.insync.replicas=2``, both on the same three brokers; the RF 3 / RF 1
  ratio of the median msgs/s.
* ``latency``: end-to-end latency at ``--e2e-rate`` (1,000) msg/s of 1 KiB messages on a
  6-partition RF 3 topic (``min.insync.replicas=2``): producer ``acks=all``, ``linger.ms=0``,
  its ``perf_counter()`` in the value; a consumer in this process assigned to every partition
  takes receive time - send time. With the consumer's default ``fetch.wait.max.ms`` (500) and
  with 10. An RF 1 topic with the default ``fetch.wait.max.ms`` as a reference
  (``--no-rf1-latency`` leaves it out). The rate at which the messages actually arrived is
  recorded too: below the offered rate, the cluster cannot keep up and the latency grows with
  the run's length.

``--idle-partitions N`` first creates an RF 3 topic of N partitions that nothing writes to, as
on a cluster hosting other topics: what idle partitions in the followers' fetch sessions cost.

Every run also records the CPU time of the brokers, ZooKeeper and this client, the time the
brokers' threads spent runnable but waiting for a CPU (``/proc/PID/task/*/schedstat``) and
how busy the whole machine was (``/proc/stat``): on a 2-CPU box the three brokers and the
client compete for the same two cores, and other work on the machine shows up there too.

``--rounds`` (3) interleaved rounds (RF 1 first in even rounds, RF 3 first in odd ones), each
topic deleted right after its run; ``sync()`` before every timed run; medians with min-max.
Prints tables, the issue's targets met or missed, then one JSON object on the last line. Exits
0 when a target is missed (non-zero only when a run fails).

Usage::

    .venv/bin/python benchmarks/cluster_bench.py            # full run (3-4 min on 2 cores)
    .venv/bin/python benchmarks/cluster_bench.py --quick    # smoke test: 5,000 msgs, 1 s latency
    .venv/bin/python benchmarks/cluster_bench.py --only latency --rounds 1 --e2e-rate 250
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import struct
import sys
import threading
import time
import uuid
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import confluent_kafka
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

from perf import (  # noqa: E402
    Row,
    Run,
    fmt,
    log,
    make_values,
    percentile,
    ratio,
    render,
    settle,
)
from throughput import client_conf, proc_cpu_seconds  # noqa: E402
from throughput import watermarks as high_watermarks  # noqa: E402

from compat_tests.cluster import Cluster  # noqa: E402
from pykbroker.metadata.zk.server import (  # noqa: E402
    ZooKeeperNotFoundError,
    ZooKeeperServer,
    find_zookeeper,
)

SECTIONS = ("produce", "latency")
BROKERS = 3
PARTITIONS = 6
VALUE_SIZE = 1024
MIN_INSYNC = 2
RATIO_GOAL = 0.40  # RF 3 acks=all throughput / RF 1 on the same brokers, at least
P99_GOAL_MS = 20.0  # end-to-end p99 at 1,000 msg/s with RF 3, at most
# Kafka's default; the compat tests' cluster uses 6 s to see expiries quickly.
ZK_SESSION_TIMEOUT_MS = 18000
_STAMP = struct.Struct("<dq")


# ---------------------------------------------------------------------------------------------
# Accounting
# ---------------------------------------------------------------------------------------------

def run_queue_wait_seconds(pid: int) -> float:
    """Time the process's threads spent runnable but waiting for a CPU (``schedstat``)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (FileNotFoundError, IndexError, ValueError):
            pass  # a thread that just ended, or no schedstat in this kernel
    return total / 1e9


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from ``/proc/stat``; busy excludes idle and iowait."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return total - fields[3] - fields[4], total


@dataclass(frozen=True)
class Usage:
    """Counters at one moment (see ``BenchCluster.usage``); ``b - a`` is what a run used."""

    broker_cpu_s: float
    broker_wait_s: float
    zk_cpu_s: float
    client_cpu_s: float
    machine_busy: int
    machine_total: int

    def __sub__(self, other: Usage) -> Usage:
        return Usage(*(a - b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def to_json(self, seconds: float) -> dict[str, float]:
        """Seconds of CPU (and of waiting for one) during a run, and the share of all CPUs of
        the machine that were busy, whoever used them (2 CPUs: 100% = both)."""
        machine = 100 * self.machine_busy / self.machine_total if self.machine_total else 0.0
        return {"broker_cpu_s": round(self.broker_cpu_s, 3),
                "broker_run_queue_wait_s": round(self.broker_wait_s, 3),
                "zk_cpu_s": round(self.zk_cpu_s, 3), "client_cpu_s": round(self.client_cpu_s, 3),
                "machine_busy_pct": round(machine, 1), "seconds": round(seconds, 4)}


# ---------------------------------------------------------------------------------------------
# The cluster
# ---------------------------------------------------------------------------------------------

class BenchCluster:
    """ZooKeeper + three brokers; topics with a replication factor; CPU of every process."""

    def __init__(self) -> None:
        self.zk = ZooKeeperServer(installation=find_zookeeper())
        self.zk.start()
        try:
            self.cluster = Cluster(self.zk, BROKERS, session_timeout_ms=ZK_SESSION_TIMEOUT_MS)
            self.cluster.start_all()
            self.cluster.wait_formed(60)
        except BaseException:
            self.close()
            raise
        self.bootstrap = self.cluster.bootstrap_all()
        self.admin = AdminClient({"bootstrap.servers": self.bootstrap,
                                  "allow.auto.create.topics": False})

    @property
    def pids(self) -> dict[int, int]:
        out = {}
        for i, b in self.cluster.brokers.items():
            assert b.proc is not None and b.proc.poll() is None, f"broker {i} is not running"
            out[i] = b.proc.pid
        return out

    def usage(self) -> Usage:
        """CPU and run-queue counters of the brokers, ZooKeeper, this process and the machine."""
        pids = list(self.pids.values())
        busy, total = machine_jiffies()
        return Usage(broker_cpu_s=sum(proc_cpu_seconds(pid) for pid in pids),
                     broker_wait_s=sum(run_queue_wait_seconds(pid) for pid in pids),
                     zk_cpu_s=proc_cpu_seconds(self.zk.pid) if self.zk.pid else 0.0,
                     client_cpu_s=time.process_time(), machine_busy=busy, machine_total=total)

    def create_topic(self, topic: str, rf: int, partitions: int = PARTITIONS) -> None:
        """Create, then wait until every broker reports every partition led and the ISR full."""
        configs = {"min.insync.replicas": str(MIN_INSYNC)} if rf > 1 else {}
        futures = self.admin.create_topics([NewTopic(topic, partitions, rf, config=configs)],
                                           request_timeout=30)
        futures[topic].result(30)
        self.cluster.wait_topic(topic, partitions, timeout=30)
        self.cluster.wait_until(lambda: self.min_isr(topic) == rf, 30, interval=0.1,
                                what=f"{topic}: full ISR")

    def min_isr(self, topic: str) -> int:
        """The smallest ISR over the topic's partitions, as the controller reports it."""
        controller = self.cluster.controller_id() or 1
        parts = self.cluster.metadata(controller).topics[topic]
        return min(len(p.isr) for p in parts.values())

    def delete_topics(self, topics: list[str]) -> None:
        if not topics:
            return
        futures = self.admin.delete_topics(topics, request_timeout=30)
        for topic, fut in futures.items():
            try:
                fut.result(30)
            except Exception as exc:  # the temp dir goes anyway; only disk use piles up
                log(f"  delete {topic}: {exc}")

    def close(self) -> None:
        with contextlib.suppress(AttributeError):
            del self.admin
        if hasattr(self, "cluster"):
            self.cluster.close()
        self.zk.stop()


# ---------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------

class ClusterRun(Run):
    """A produce run; ``broker_cpu_s`` is the three brokers' CPU together."""

    def __init__(self, messages: int, value_bytes: int, seconds: float, used: Usage,
                 min_isr_after: int) -> None:
        super().__init__(messages, value_bytes, seconds, used.broker_cpu_s, used.client_cpu_s)
        self.used = used
        self.min_isr_after = min_isr_after

    def to_json(self) -> dict[str, Any]:
        out = {**super().to_json(), **self.used.to_json(self.seconds),
               "min_isr_after": self.min_isr_after}
        del out["peak_rss_mib"]
        return out


def produce(c: BenchCluster, topic: str, n: int, values: list[bytes]) -> ClusterRun:
    """One Producer (acks=all, linger.ms=5, librdkafka's batching defaults, keyless values:
    sticky partitioner) sends ``n`` values; timed from the first produce() to the end of
    flush(); afterwards the high watermarks must add up to ``n``."""
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    p = Producer({**client_conf(c.bootstrap), "acks": "all", "linger.ms": 5,
                  "compression.type": "none", "delivery.report.only.error": True,
                  "on_delivery": on_delivery, "message.timeout.ms": 120000})
    md = p.list_topics(topic, timeout=10)  # connect and cache metadata before timing
    # One message to every leader first, so that all three connections are up.
    for part in md.topics[topic].partitions:
        p.produce(topic, values[0], partition=part)
    if p.flush(30) or errors:
        raise RuntimeError(f"{topic}: warm-up messages failed: {errors[:1]}")
    settle()
    produce_, poll = p.produce, p.poll
    mask = len(values) - 1
    before = c.usage()
    t0 = time.perf_counter()
    for i in range(n):
        value = values[i & mask]
        while True:
            try:
                produce_(topic, value)
                break
            except BufferError:  # queue.buffering.max.messages (100,000) reached
                poll(0.001)
    remaining = p.flush(300)
    seconds = time.perf_counter() - t0
    used = c.usage() - before
    if remaining or errors:
        raise RuntimeError(f"produce {topic}: {remaining} undelivered, {len(errors)} errors, "
                           f"first: {errors[:1]}")
    marks = high_watermarks(c.bootstrap, topic, PARTITIONS)
    expected = n + len(md.topics[topic].partitions)
    if sum(high for _low, high in marks) != expected:
        raise RuntimeError(f"{topic}: watermarks {marks}, expected {expected} messages")
    return ClusterRun(n, len(values[0]), seconds, used, c.min_isr(topic))


def e2e_latency(c: BenchCluster, topic: str, seconds: float, rate: int,
                fetch_wait_ms: int | None, warmup_s: float = 1.0) -> dict[str, Any]:
    """A producer thread sends ``rate`` msg/s (1 KiB, acks=all, linger.ms=0, the send time in
    the value) to the topic; this thread's consumer (assigned to every partition at offset 0
    before the first send) takes receive time - send time. The first ``warmup_s`` of messages
    are not counted."""
    cconf = {**client_conf(c.bootstrap), "group.id": f"cbench-e2e-{uuid.uuid4().hex[:8]}",
             "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    if fetch_wait_ms is not None:
        cconf["fetch.wait.max.ms"] = fetch_wait_ms
    consumer = Consumer(cconf)
    p = Producer({**client_conf(c.bootstrap), "linger.ms": 0, "acks": "all"})
    warmup = int(rate * warmup_s)
    total = warmup + int(rate * seconds)
    pad = b"x" * (VALUE_SIZE - _STAMP.size)
    lat: list[float] = []
    failure: list[BaseException] = []

    def send() -> None:
        try:
            start = time.perf_counter()
            for i in range(total):
                due = start + i / rate
                now = time.perf_counter()
                if due > now:
                    time.sleep(due - now)
                p.produce(topic, _STAMP.pack(time.perf_counter(), i) + pad)
                p.poll(0)
            if p.flush(30):
                raise RuntimeError("undelivered messages")
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    try:
        md = p.list_topics(topic, timeout=10)
        consumer.assign([TopicPartition(topic, part, 0) for part in md.topics[topic].partitions])
        for _ in range(3):  # let the consumer connect and start fetching
            m = consumer.poll(0.3)
            if m is not None:
                raise RuntimeError(f"{topic}: unexpected message before the run")
        sender = threading.Thread(target=send, daemon=True)
        before = c.usage()
        t0 = time.perf_counter()
        sender.start()
        got = 0
        deadline = time.monotonic() + seconds + warmup_s + 60
        while got < total and time.monotonic() < deadline and not failure:
            m = consumer.poll(0.2)
            if m is None:
                continue
            now = time.perf_counter()
            err = m.error()
            if err is not None:
                raise KafkaException(err)
            sent, seq = _STAMP.unpack_from(m.value(), 0)
            if seq >= warmup:
                lat.append(now - sent)
            got += 1
        last = time.perf_counter()
        sender.join(60)
        wall = time.perf_counter() - t0
        used = c.usage() - before
        if failure:
            raise RuntimeError(f"e2e producer: {failure[0]!r}")
        if got != total:
            raise RuntimeError(f"e2e {topic}: {got}/{total} messages received")
    finally:
        consumer.close()
        p.flush(5)
    lat.sort()
    return {"p50_ms": percentile(lat, 0.50) * 1e3, "p99_ms": percentile(lat, 0.99) * 1e3,
            "p999_ms": percentile(lat, 0.999) * 1e3, "max_ms": lat[-1] * 1e3,
            "samples": len(lat),
            # Below the offered rate when the cluster cannot keep up: the backlog then grows for
            # the whole run and the latency figures mostly measure the run's length.
            "received_msgs_per_s": total / (last - t0), **used.to_json(wall)}


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------

def produce_label(rf: int) -> str:
    return f"produce 1 KiB none {PARTITIONS}p acks=all RF {rf}"


def latency_label(rf: int, wait: int | None) -> str:
    what = "default fetch.wait.max.ms" if wait is None else f"fetch.wait.max.ms={wait}"
    return f"e2e RF {rf}, {what}"


def pct(part: float, seconds: float) -> float:
    return 100 * part / seconds


class Bench:
    def __init__(self, args: argparse.Namespace, cluster: BenchCluster) -> None:
        self.args = args
        self.c = cluster
        self.rows: dict[tuple[str, str], Row] = {}
        self.run_id = uuid.uuid4().hex[:6]
        self.values = make_values(VALUE_SIZE)

    def row(self, section: str, label: str) -> Row:
        return self.rows.setdefault((section, label), Row(section, label))

    def section(self, name: str) -> list[Row]:
        return [r for (s, _label), r in self.rows.items() if s == name]

    def stat(self, section: str, label: str, key: Any) -> tuple[float, float, float] | None:
        row = self.rows.get((section, label))
        return None if row is None else row.stat("cluster", key)

    def topic(self, *parts: object) -> str:
        return "-".join(["cbench", self.run_id, *map(str, parts)])

    def warm_up(self) -> None:
        """An untimed small produce on an RF 3 topic: replica fetchers, client connections and
        the first segment files are set up once, outside the timed runs."""
        topic = self.topic("warmup")
        self.c.create_topic(topic, 3)
        run = produce(self.c, topic, min(self.args.messages, 20_000), self.values)
        log(f"  warm-up RF 3: {run.msgs_per_s:,.0f} msgs/s (not counted)")
        self.c.delete_topics([topic])

    def round(self, rnd: int) -> None:
        """Produce RF 1 and RF 3 (order alternating by round), then the latency runs; every
        topic is deleted right after its run."""
        a = self.args
        rfs = (1, 3) if rnd % 2 == 0 else (3, 1)
        if "produce" in a.only:
            for rf in rfs:
                topic = self.topic("produce", rnd, f"rf{rf}")
                self.c.create_topic(topic, rf)
                try:
                    run = produce(self.c, topic, a.messages, self.values)
                finally:
                    self.c.delete_topics([topic])
                self.row("produce", produce_label(rf)).add("cluster", run)
                u = run.used
                log(f"  {produce_label(rf):<36} {run.seconds:7.3f} s {run.msgs_per_s:9,.0f} "
                    f"msgs/s {run.mb_per_s:6.1f} MB/s  CPU s: brokers {u.broker_cpu_s:.2f} "
                    f"(+{u.broker_wait_s:.2f} waiting for a CPU) zk {u.zk_cpu_s:.2f} client "
                    f"{u.client_cpu_s:.2f}; min ISR after {run.min_isr_after}")
        if "latency" in a.only:
            waits: list[int | None] = [None, 10] if rnd % 2 == 0 else [10, None]
            for rf in (r for r in rfs if r == 3 or a.rf1_latency):
                for wait in (waits if rf == 3 else [None]):
                    topic = self.topic("e2e", rnd, f"rf{rf}", wait or "default")
                    self.c.create_topic(topic, rf)
                    settle()
                    try:
                        res = e2e_latency(self.c, topic, a.e2e_seconds, a.e2e_rate, wait)
                    finally:
                        self.c.delete_topics([topic])
                    label = latency_label(rf, wait)
                    self.row("latency", label).add("cluster", res)
                    log(f"  {label:<36} p50 {res['p50_ms']:.2f} p99 {res['p99_ms']:.2f} p999 "
                        f"{res['p999_ms']:.2f} max {res['max_ms']:.2f} ms ({res['samples']} "
                        f"samples, received {res['received_msgs_per_s']:,.0f} msg/s); CPU s: "
                        f"brokers {res['broker_cpu_s']:.2f} (+"
                        f"{res['broker_run_queue_wait_s']:.2f} waiting) client "
                        f"{res['client_cpu_s']:.2f} in {res['seconds']:.1f} s")

    def run(self) -> None:
        self.warm_up()
        for rnd in range(self.args.rounds):
            log(f"round {rnd + 1}/{self.args.rounds}")
            self.round(rnd)

    # -- output -----------------------------------------------------------------------------

    def targets(self) -> list[dict[str, Any]]:
        """Issue #15's targets, judged on the medians."""
        out: list[dict[str, Any]] = []

        def check(what: str, value: float | None, goal: str, ok: bool | None) -> None:
            out.append({"target": what, "value": None if value is None else round(value, 3),
                        "goal": goal, "met": ok})

        rf1 = self.stat("produce", produce_label(1), lambda r: r.msgs_per_s)
        rf3 = self.stat("produce", produce_label(3), lambda r: r.msgs_per_s)
        if rf1 and rf3:
            r = rf3[0] / rf1[0]
            check("produce 1 KiB acks=all msgs/s, RF 3 / RF 1 on the same 3 brokers", r,
                  f">= {RATIO_GOAL:.2f}", r >= RATIO_GOAL)
        for wait in (None, 10):
            s = self.stat("latency", latency_label(3, wait), lambda r: r["p99_ms"])
            if s:
                check(f"{latency_label(3, wait)}: p99 at {self.args.e2e_rate:,} msg/s (ms)",
                      s[0], f"<= {P99_GOAL_MS:g} ms", s[0] <= P99_GOAL_MS)
        return out

    def to_json(self, elapsed: float) -> dict[str, Any]:
        a = self.args
        rows = []
        for row in self.section("produce"):
            ms = row.stat("cluster", lambda r: r.msgs_per_s)
            mb = row.stat("cluster", lambda r: r.mb_per_s)
            assert ms is not None and mb is not None
            rows.append({"section": "produce", "label": row.label, "msgs_per_s": round(ms[0], 1),
                         "msgs_per_s_min": round(ms[1], 1), "msgs_per_s_max": round(ms[2], 1),
                         "mb_per_s": round(mb[0], 2),
                         "runs": [r.to_json() for r in row.runs["cluster"]]})
        for row in self.section("latency"):
            entry: dict[str, Any] = {"section": "latency", "label": row.label}
            for q in ("p50", "p99", "p999", "max"):
                st = row.stat("cluster", lambda r, q=q: r[f"{q}_ms"])
                assert st is not None
                entry[f"{q}_ms"] = {"median": round(st[0], 3), "min": round(st[1], 3),
                                    "max": round(st[2], 3)}
            entry["runs"] = [{k: round(v, 3) if isinstance(v, float) else v
                              for k, v in r.items()} for r in row.runs["cluster"]]
            rows.append(entry)
        return {"benchmark": "cluster", "brokers": BROKERS, "partitions": PARTITIONS,
                "value_bytes": VALUE_SIZE, "min_insync_replicas": MIN_INSYNC,
                "messages": a.messages, "rounds": a.rounds, "e2e_seconds": a.e2e_seconds,
                "e2e_rate": a.e2e_rate, "idle_partitions": a.idle_partitions,
                "elapsed_s": round(elapsed, 1),
                "python": platform.python_version(), "confluent_kafka": confluent_kafka.version(),
                "librdkafka": confluent_kafka.libversion()[0], "zookeeper": self.c.zk.version,
                "cpus": os.cpu_count(), "targets": self.targets(), "rows": rows}

    @staticmethod
    def usage_cells(row: Row, used: Any, seconds: Any) -> list[str]:
        """CPU% brokers+zk+client, brokers' run-queue wait %, machine busy % (medians)."""
        def med(key: Any) -> float:
            st = row.stat("cluster", key)
            return st[0] if st else float("nan")

        b = med(lambda r: pct(used(r).broker_cpu_s, seconds(r)))
        z = med(lambda r: pct(used(r).zk_cpu_s, seconds(r)))
        c = med(lambda r: pct(used(r).client_cpu_s, seconds(r)))
        w = med(lambda r: pct(used(r).broker_wait_s, seconds(r)))
        m = med(lambda r: pct(used(r).machine_busy, used(r).machine_total))
        return [f"{b:.0f}+{z:.0f}+{c:.0f}", f"{w:.0f}", f"{m:.0f}"]

    def print_tables(self, elapsed: float) -> None:
        a = self.args
        cpus = os.cpu_count()
        print(f"{BROKERS} brokers + ZooKeeper + this client on {cpus} CPUs; {a.messages:,} "
              f"messages of {VALUE_SIZE} B per produce run; median (min-max) of {a.rounds} "
              f"round(s); MB/s counts value bytes only; {elapsed:.0f} s in all")
        usage_head = [f"CPU% brokers+zk+client (of {100 * (cpus or 1)})",
                      "brokers waiting for a CPU %", "machine busy %"]
        if prows := self.section("produce"):
            lines = []
            for row in prows:
                lines.append([row.label, fmt(row.stat("cluster", lambda r: r.msgs_per_s)),
                              fmt(row.stat("cluster", lambda r: r.mb_per_s), 1),
                              *self.usage_cells(row, lambda r: r.used, lambda r: r.seconds),
                              str(min(r.min_isr_after for r in row.runs["cluster"]))])
            rf1 = self.stat("produce", produce_label(1), lambda r: r.msgs_per_s)
            rf3 = self.stat("produce", produce_label(3), lambda r: r.msgs_per_s)
            if rf1 and rf3:
                lines.append(["RF 3 / RF 1 (ratio of medians)", ratio(rf3, rf1), "", "", "", "",
                              ""])
            print()
            print(render(["workload", "msgs/s", "MB/s", *usage_head, "min ISR after"], lines))
        if lrows := self.section("latency"):
            lines = []
            for row in lrows:
                lines.append([row.label, *(fmt(row.stat("cluster", lambda r, q=q: r[f"{q}_ms"]),
                                               1) for q in ("p50", "p99", "p999", "max")),
                              fmt(row.stat("cluster", lambda r: r["received_msgs_per_s"])),
                              *self.usage_cells(row, lambda r: Usage(
                                  r["broker_cpu_s"], r["broker_run_queue_wait_s"], r["zk_cpu_s"],
                                  r["client_cpu_s"], r["machine_busy_pct"], 100),
                                  lambda r: r["seconds"])])
            print()
            print(render([f"end-to-end latency at {a.e2e_rate:,} msg/s (ms)", "p50", "p99",
                          "p999", "max", "received msg/s", *usage_head], lines))
        if goals := self.targets():
            print()
            print(render(["issue #15 target (medians)", "value", "goal", "result"],
                         [[g["target"], "n/a" if g["value"] is None else f"{g['value']:,.3f}",
                           g["goal"], "met" if g["met"] else "MISSED"] for g in goals]))
        print()


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="5,000 messages, 1 round, 1 s latency runs, no RF 1 latency (a smoke "
                         "test: its figures mean little)")
    ap.add_argument("--messages", type=int, default=None,
                    help="messages per produce run (default 1,000,000)")
    ap.add_argument("--rounds", type=int, default=None, help="default 3")
    ap.add_argument("--e2e-seconds", type=float, default=None,
                    help="counted seconds per latency run (default 10)")
    ap.add_argument("--e2e-rate", type=int, default=1000, help="messages per second")
    ap.add_argument("--no-rf1-latency", dest="rf1_latency", action="store_false", default=None,
                    help="leave out the RF 1 latency reference runs")
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections out of {','.join(SECTIONS)}")
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    ap.add_argument("--idle-partitions", type=int, default=0, metavar="N",
                    help="first create an RF 3 topic of N partitions that nothing writes to "
                         "(as on a cluster hosting other topics): every follower's fetch "
                         "session carries them")
    args = ap.parse_args(argv)
    args.messages = args.messages or (5_000 if args.quick else 1_000_000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.e2e_seconds = args.e2e_seconds or (1.0 if args.quick else 10.0)
    if args.rf1_latency is None:
        args.rf1_latency = not args.quick
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    if unknown := set(args.only) - set(SECTIONS):
        ap.error(f"unknown sections: {', '.join(sorted(unknown))}")
    try:
        find_zookeeper()
    except ZooKeeperNotFoundError as exc:
        ap.error(str(exc))
    # The brokers run as an installed program would, with .pyc caching (see perf.py).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

    # SIGTERM unwinds like Ctrl-C, so the brokers and ZooKeeper are stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.perf_counter()
    load_start = os.getloadavg()
    log(f"{args.messages:,} messages per produce run, {args.rounds} round(s), sections "
        f"{','.join(args.only)}")
    cluster = BenchCluster()
    try:
        log(f"  ZooKeeper {cluster.zk.version} on {cluster.zk.hosts}, brokers "
            + ", ".join(f"{i}: pid {pid}" for i, pid in cluster.pids.items()))
        bench = Bench(args, cluster)
        if args.idle_partitions:
            log(f"  an idle RF 3 topic of {args.idle_partitions:,} partitions")
            cluster.create_topic(bench.topic("idle"), 3, partitions=args.idle_partitions)
        bench.run()
    finally:
        cluster.close()
    elapsed = time.perf_counter() - started
    load = {"loadavg_start": [round(x, 2) for x in load_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()]}
    if not args.json:
        print(f"load average (1, 5, 15 min) at the start {load['loadavg_start']}, at the end "
              f"{load['loadavg_end']}")
        bench.print_tables(elapsed)
    print(json.dumps({**bench.to_json(elapsed), **load}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
