"""End-to-end produce/consume throughput with confluent-kafka: pykbroker beside librdkafka's mock cluster.

Both brokers run in the same benchmark run, each in its own process, and the same client code
in this process drives them:

* **pykbroker**: ``python -m pykbroker`` on a free port, writing its log to a temp dir
  (``compat_tests.broker_process.BrokerProcess``).
* **mock**: librdkafka's built-in mock cluster (one broker), the one behind the
  ``test.mock.num.brokers`` client property, in a helper process (this script with
  ``--mock-server``). The helper uses the librdkafka that ships inside the confluent-kafka wheel
  via ``ctypes``. ``rd_kafka_mock_cluster_new`` starts the cluster,
  ``rd_kafka_mock_cluster_bootstraps`` gives its address, and ``rd_kafka_mock_topic_create``
  makes topics. The mock has no CreateTopics handler, so ``AdminClient.create_topics`` cannot
  be used there. With ``test.mock.num.brokers`` on a Python client it would auto-create topics
  with its default of 4 partitions.

Workloads (1 KiB values, no key, no compression):

* ``produce Pp acks=A``: a new topic with P partitions (1 or 6) for every run. One Producer with
  ``linger.ms=5`` and librdkafka's batching defaults (``batch.size`` 1,000,000,
  ``batch.num.messages`` 10,000), ``acks`` = 1 or all, keyless messages (the default sticky
  partitioner). The clock runs from the first ``produce()`` to the end of ``flush()``.
  Connection and topic metadata are set up before that. Delivery reports come only for errors
  (``delivery.report.only.error``). Any error fails the run, and afterwards the partitions' high
  watermarks must add up to the number of messages sent.
* ``consume Pp``: a fresh Consumer ``assign()``s every partition at offset 0 and counts
  messages until it has them all. The clock runs from ``assign()`` to the last message.
  Connecting, metadata and a ListOffsets to the leader happen before that. The mock keeps only
  the newest 5 MiB of each partition, which is hard-coded in ``rd_kafka_mock_partition_init``,
  so a whole 500 MB log cannot be read back from it. This workload therefore reads a prefilled
  topic with ``--window`` (4,000) messages per partition, about 4.1 MB, which fits. It does
  this in passes, one fresh Consumer per pass, until it is close to ``--messages`` messages
  (500,000: 125 passes for 1 partition, 21 passes of 24,000 for 6). The timed parts are added
  up. Both brokers get the same topic shape and the same procedure. Seeking one consumer back
  to offset 0 would not work: every sweep would wait out the Fetch that the broker holds at the
  end of the log (``fetch.wait.max.ms``, 500 ms), so it would time that wait, not the broker.
* ``consume Pp whole log`` (pykbroker only): one such pass over the ``--messages`` messages of
  that round's ``produce Pp acks=all`` topic. This is the plain workload, which the mock cannot
  serve.

Method: ``--rounds`` (3) rounds. In each round every workload runs on both brokers back to back,
and the broker that goes first alternates from round to round (pykbroker first in rounds 1 and
3). The table shows the median and the min-max of the runs. MB/s = messages x 1,024 B of value
/ 10**6 / s, so record and protocol overhead are not counted. The last column gives CPU time as a
percentage of the timed wall time (median), for the broker process (utime + stime from /proc,
all threads) and for this client process (``time.process_time``, Python plus librdkafka's
threads). The JSON has each run's seconds and CPU seconds. An untimed warm-up produce runs
against each broker first. After each partition count's runs in a round, pykbroker's produce topics are
deleted, so every round starts with the same amount of data on disk.

Usage::

    .venv/bin/python benchmarks/throughput.py            # 500,000 messages, 3 rounds
    .venv/bin/python benchmarks/throughput.py --quick    # 50,000 messages
    .venv/bin/python benchmarks/throughput.py --json     # only the JSON object
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import confluent_kafka
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compat_tests.broker_process import BrokerProcess  # noqa: E402

VALUE_SIZE = 1024
PARTITION_COUNTS = (1, 6)
ACKS = ("1", "all")
MOCK_RETENTION = 5 * 1024 * 1024  # rd_kafka_mock_partition_init: mpart->max_size
BATCH = 10_000  # messages per Consumer.consume() call, at most


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# librdkafka mock cluster, through ctypes (helper process)
# ---------------------------------------------------------------------------------------------

def _librdkafka() -> ctypes.CDLL:
    """The librdkafka bundled in the confluent-kafka wheel (the one cimpl itself uses)."""
    pkg = Path(confluent_kafka.__file__).resolve().parent
    candidates = sorted(glob.glob(str(pkg.parent / "confluent_kafka.libs" / "librdkafka*.so*")))
    if not candidates:  # a confluent-kafka built against a system librdkafka
        candidates = ["librdkafka.so.1"]
    lib = ctypes.CDLL(candidates[0])
    vp, cp, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    lib.rd_kafka_conf_new.restype = vp
    lib.rd_kafka_conf_set.argtypes = [vp, cp, cp, cp, ctypes.c_size_t]
    lib.rd_kafka_conf_set.restype = i
    lib.rd_kafka_new.argtypes = [i, vp, cp, ctypes.c_size_t]
    lib.rd_kafka_new.restype = vp
    lib.rd_kafka_destroy.argtypes = [vp]
    lib.rd_kafka_mock_cluster_new.argtypes = [vp, i]
    lib.rd_kafka_mock_cluster_new.restype = vp
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [vp]
    lib.rd_kafka_mock_cluster_bootstraps.restype = cp
    lib.rd_kafka_mock_topic_create.argtypes = [vp, cp, i, i]
    lib.rd_kafka_mock_topic_create.restype = i
    lib.rd_kafka_mock_cluster_destroy.argtypes = [vp]
    lib.rd_kafka_err2str.argtypes = [i]
    lib.rd_kafka_err2str.restype = cp
    return lib


def mock_server() -> int:
    """Helper process: run a 1-broker mock cluster; print its bootstrap servers, then serve
    ``create TOPIC PARTITIONS`` lines from stdin (answering ``ok`` or ``error ...``) until EOF."""
    lib = _librdkafka()
    errstr = ctypes.create_string_buffer(512)
    conf = lib.rd_kafka_conf_new()
    # The owning handle never connects anywhere; keep its "no bootstrap.servers" notice quiet.
    lib.rd_kafka_conf_set(conf, b"log_level", b"3", errstr, len(errstr))
    rk = lib.rd_kafka_new(0, conf, errstr, len(errstr))  # RD_KAFKA_PRODUCER
    if not rk:
        print(f"error rd_kafka_new: {errstr.value.decode()}", flush=True)
        return 1
    mcluster = lib.rd_kafka_mock_cluster_new(rk, 1)
    if not mcluster:
        print("error rd_kafka_mock_cluster_new failed", flush=True)
        return 1
    print(lib.rd_kafka_mock_cluster_bootstraps(mcluster).decode(), flush=True)
    for line in sys.stdin:
        parts = line.split()
        if len(parts) == 3 and parts[0] == "create":
            err = lib.rd_kafka_mock_topic_create(mcluster, parts[1].encode(), int(parts[2]), 1)
            print("ok" if err == 0 else f"error {lib.rd_kafka_err2str(err).decode()}", flush=True)
        else:
            print(f"error bad command {line.strip()!r}", flush=True)
    lib.rd_kafka_mock_cluster_destroy(mcluster)
    lib.rd_kafka_destroy(rk)
    return 0


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# The two targets
# ---------------------------------------------------------------------------------------------

class Target:
    name: str
    bootstrap: str
    pid: int

    def create_topic(self, topic: str, partitions: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class PykBroker(Target):
    name = "pykbroker"

    def __init__(self, tmp: Path) -> None:
        self.broker = BrokerProcess(tmp / "data").start()
        assert self.broker.proc is not None
        self.pid = self.broker.proc.pid
        self.bootstrap = self.broker.bootstrap
        self.admin = AdminClient({"bootstrap.servers": self.bootstrap,
                                  "allow.auto.create.topics": False})

    def create_topic(self, topic: str, partitions: int) -> None:
        futures = self.admin.create_topics([NewTopic(topic, partitions, 1)], request_timeout=30)
        futures[topic].result(30)
        # Wait until the metadata shows the partitions (it does at once on a single broker).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            md = self.admin.list_topics(topic, timeout=10).topics.get(topic)
            if md is not None and md.error is None and len(md.partitions) == partitions:
                return
            time.sleep(0.05)
        raise TimeoutError(f"{topic} not visible with {partitions} partitions")

    def delete_topics(self, topics: list[str]) -> None:
        """Delete finished topics, so every round starts with the same amount of data on disk
        (and in dirty pages)."""
        for future in self.admin.delete_topics(topics, request_timeout=60).values():
            future.result(60)

    def close(self) -> None:
        del self.admin  # destroy the client first, so it does not log the broker going away
        if self.broker.proc is not None:
            self.broker.stop()
        self.broker.close()


class MockCluster(Target):
    name = "mock"

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--mock-server"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        line = self._line()
        if line.startswith("error"):
            raise RuntimeError(f"mock cluster: {line}")
        self.bootstrap = line

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"mock helper exited with {self.proc.wait()}")
        return line.strip()

    def create_topic(self, topic: str, partitions: int) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"create {topic} {partitions}\n")
        self.proc.stdin.flush()
        answer = self._line()
        if answer != "ok":
            raise RuntimeError(f"mock create {topic}: {answer}")

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------

@dataclass
class Run:
    messages: int
    seconds: float
    broker_cpu_s: float
    client_cpu_s: float  # this process: Python and librdkafka's threads

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.messages * VALUE_SIZE / 1e6 / self.seconds


def client_conf(bootstrap: str) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, "socket.timeout.ms": 30000,
            "error_cb": lambda err: log(f"  client error: {err}")}


def watermarks(bootstrap: str, topic: str, partitions: int) -> list[tuple[int, int]]:
    c = Consumer({**client_conf(bootstrap), "group.id": "bench-wm", "enable.auto.commit": False})
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
                for p in range(partitions)]
    finally:
        c.close()


def produce(target: Target, topic: str, partitions: int, n: int, acks: str,
            explicit_partitions: bool = False) -> Run:
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    p = Producer({**client_conf(target.bootstrap), "acks": acks, "linger.ms": 5,
                  "compression.type": "none", "delivery.report.only.error": True,
                  "on_delivery": on_delivery, "message.timeout.ms": 60000})
    p.list_topics(topic, timeout=10)  # connect and cache the topic's metadata before timing
    value = os.urandom(VALUE_SIZE)
    produce_ = p.produce
    poll = p.poll
    cpu0, ccpu0 = proc_cpu_seconds(target.pid), time.process_time()
    t0 = time.perf_counter()
    for i in range(n):
        while True:
            try:
                if explicit_partitions:
                    produce_(topic, value, partition=i % partitions)
                else:
                    produce_(topic, value)
                break
            except BufferError:  # queue.buffering.max.messages (100,000) reached
                poll(0.001)
    remaining = p.flush(120)
    seconds = time.perf_counter() - t0
    cpu, ccpu = proc_cpu_seconds(target.pid) - cpu0, time.process_time() - ccpu0
    if remaining or errors:
        raise RuntimeError(f"{target.name} produce {topic}: {remaining} undelivered, "
                           f"{len(errors)} errors, first: {errors[:1]}")
    marks = watermarks(target.bootstrap, topic, partitions)
    if sum(high for _low, high in marks) != n:
        raise RuntimeError(f"{target.name} {topic}: watermarks {marks}, expected {n} messages")
    return Run(n, seconds, cpu, ccpu)


def _check(msg: Any) -> None:
    err = msg.error()
    if err is not None:
        raise KafkaException(err)


def consume_pass(target: Target, topic: str, partitions: int, expected: int,
                 per_partition: int | None = None) -> Run:
    """One fresh Consumer reads every partition from offset 0 to its end: ``expected``
    messages in all (and ``per_partition`` in each, if given).

    Untimed set-up: the client connects, fetches the topic's metadata and asks the leader for
    the watermarks, which are checked: so the connection that will carry the Fetch requests is
    up before the clock starts, and the data is all there.  Timed: from ``assign()`` to the
    last message.  Returns the timed part as a Run."""
    c = Consumer({**client_conf(target.bootstrap), "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "enable.auto.offset.store": False,
                  "auto.offset.reset": "error"})
    try:
        c.list_topics(topic, timeout=10)
        marks = [tuple(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10,
                                               cached=False)) for p in range(partitions)]
        n = sum(high for _low, high in marks)
        if (any(low != 0 for low, _high in marks) or n != expected
                or (per_partition is not None and any(h != per_partition for _l, h in marks))):
            raise RuntimeError(f"{target.name} {topic}: watermarks {marks}, expected {expected} "
                               f"messages from offset 0")
        got = 0
        deadline = time.monotonic() + 300
        cpu0, ccpu0 = proc_cpu_seconds(target.pid), time.process_time()
        t0 = time.perf_counter()
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        while got < n:
            # consume() waits until it has num_messages (or times out): never ask for more
            # than is still to come.
            for m in c.consume(min(BATCH, n - got), 1.0):
                _check(m)
                got += 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"{target.name} consume {topic}: {got}/{n} after 300 s")
        seconds = time.perf_counter() - t0
        cpu, ccpu = proc_cpu_seconds(target.pid) - cpu0, time.process_time() - ccpu0
    finally:
        c.close()
    if got != n:
        raise RuntimeError(f"{target.name} consume {topic}: {got} messages, expected {n}")
    return Run(got, seconds, cpu, ccpu)


def consume(target: Target, topic: str, partitions: int, per_partition: int,
            passes: int) -> Run:
    """``passes`` consume passes over the same topic; the timed parts add up."""
    runs = [consume_pass(target, topic, partitions, partitions * per_partition, per_partition)
            for _ in range(passes)]
    return Run(sum(r.messages for r in runs), sum(r.seconds for r in runs),
               sum(r.broker_cpu_s for r in runs), sum(r.client_cpu_s for r in runs))


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------

@dataclass
class Row:
    workload: str
    runs: dict[str, list[Run]] = field(default_factory=lambda: {"pykbroker": [], "mock": []})

    def stat(self, side: str, key: Callable[[Run], float]) -> tuple[float, float, float] | None:
        vals = [key(r) for r in self.runs[side]]
        if not vals:
            return None
        return statistics.median(vals), min(vals), max(vals)


def fmt(stat: tuple[float, float, float] | None, digits: int) -> str:
    if stat is None:
        return "n/a"
    med, lo, hi = stat
    return f"{med:,.{digits}f} ({lo:,.{digits}f}-{hi:,.{digits}f})"


def table(rows: list[Row]) -> str:
    header = ["workload", "pykbroker MB/s", "pykbroker msgs/s", "mock MB/s", "mock msgs/s",
              "pykbroker/mock", "CPU% broker+client: pyk | mock"]
    lines = []
    for row in rows:
        mb = {s: row.stat(s, lambda r: r.mb_per_s) for s in ("pykbroker", "mock")}
        ms = {s: row.stat(s, lambda r: r.msgs_per_s) for s in ("pykbroker", "mock")}
        bcpu = {s: row.stat(s, lambda r: 100 * r.broker_cpu_s / r.seconds)
                for s in ("pykbroker", "mock")}
        ccpu = {s: row.stat(s, lambda r: 100 * r.client_cpu_s / r.seconds)
                for s in ("pykbroker", "mock")}
        mbp, mbm = mb["pykbroker"], mb["mock"]
        ratio = f"{mbp[0] / mbm[0]:.2f}x" if mbp and mbm else "n/a"
        cpus = " | ".join(f"{b[0]:.0f}+{c[0]:.0f}" if (b := bcpu[s]) and (c := ccpu[s])
                          else "n/a" for s in ("pykbroker", "mock"))
        lines.append([row.workload, fmt(mbp, 1), fmt(ms["pykbroker"], 0), fmt(mbm, 1),
                      fmt(ms["mock"], 0), ratio, cpus])
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    out = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                     for i, (h, w) in enumerate(zip(header, widths, strict=True)))]
    out.append("  ".join("-" * w for w in widths))
    for r in lines:
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return "\n".join(out)


def run_json(run: Run) -> dict[str, float]:
    return {"messages": run.messages, "seconds": round(run.seconds, 4),
            "mb_per_s": round(run.mb_per_s, 2), "msgs_per_s": round(run.msgs_per_s, 1),
            "broker_cpu_s": round(run.broker_cpu_s, 3), "client_cpu_s": round(run.client_cpu_s, 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=None,
                    help="messages per produce run, and about as many per consume run "
                         "(default 500,000; 50,000 with --quick)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--window", type=int, default=4000,
                    help="messages per partition of the consume topic (must fit the mock's "
                         "5 MiB per-partition retention)")
    ap.add_argument("--quick", action="store_true", help="50,000 messages per run")
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    ap.add_argument("--mock-server", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.mock_server:
        return mock_server()
    n = args.messages or (50_000 if args.quick else 500_000)
    if args.window * (VALUE_SIZE + 16) > MOCK_RETENTION * 0.95:
        ap.error(f"--window {args.window} does not fit the mock's 5 MiB partition retention")

    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="pykbroker-throughput-"))
    targets: list[Target] = []
    try:
        pykbroker = PykBroker(tmp)
        targets.append(pykbroker)
        targets.append(MockCluster())
        log(f"pykbroker at {targets[0].bootstrap} (log.dirs {tmp / 'data'}), "
            f"mock cluster at {targets[1].bootstrap}; {n:,} messages x {args.rounds} rounds")

        run_id = uuid.uuid4().hex[:6]
        passes = {p: max(1, round(n / (args.window * p))) for p in PARTITION_COUNTS}
        for t in targets:  # warm-up and the consume topics' data (untimed)
            t.create_topic(f"warmup-{run_id}", 1)
            produce(t, f"warmup-{run_id}", 1, max(5000, n // 10), "1")
            for p in PARTITION_COUNTS:
                topic = f"window-{run_id}-{p}p"
                t.create_topic(topic, p)
                produce(t, topic, p, args.window * p, "all", explicit_partitions=True)
                marks = watermarks(t.bootstrap, topic, p)
                if marks != [(0, args.window)] * p:
                    raise RuntimeError(f"{t.name} {topic}: watermarks {marks}")

        rows: dict[str, Row] = {}

        def record(workload: str, side: str, run: Run) -> None:
            rows.setdefault(workload, Row(workload)).runs[side].append(run)
            log(f"  {workload:<28} {side:<9} {run.messages:>8,} msgs  {run.seconds:7.3f} s  "
                f"{run.mb_per_s:7.1f} MB/s  CPU broker {run.broker_cpu_s:5.2f} s "
                f"client {run.client_cpu_s:5.2f} s")

        for rnd in range(args.rounds):
            order = targets if rnd % 2 == 0 else targets[::-1]
            log(f"round {rnd + 1}/{args.rounds}")
            for p in PARTITION_COUNTS:
                for acks in ACKS:
                    for t in order:
                        topic = f"p-{run_id}-r{rnd}-{p}p-acks{acks}"
                        t.create_topic(topic, p)
                        record(f"produce {p}p acks={acks}", t.name,
                               produce(t, topic, p, n, acks))
                for t in order:
                    record(f"consume {p}p", t.name,
                           consume(t, f"window-{run_id}-{p}p", p, args.window, passes[p]))
                record(f"consume {p}p whole log", "pykbroker",
                       consume_pass(pykbroker, f"p-{run_id}-r{rnd}-{p}p-acksall", p, n))
                pykbroker.delete_topics([f"p-{run_id}-r{rnd}-{p}p-acks{a}" for a in ACKS])
        elapsed = time.perf_counter() - started
    finally:
        for t in targets:
            try:
                t.close()
            except Exception as exc:  # keep cleaning up
                log(f"closing {t.name}: {exc}")
        shutil.rmtree(tmp, ignore_errors=True)

    order_rows = [rows[k] for k in rows]
    result: dict[str, Any] = {
        "benchmark": "throughput",
        "value_bytes": VALUE_SIZE,
        "messages": n,
        "rounds": args.rounds,
        "consume_window_per_partition": args.window,
        "consume_passes": {f"{p}p": s for p, s in passes.items()},
        "elapsed_s": round(elapsed, 1),
        "python": platform.python_version(),
        "confluent_kafka": confluent_kafka.version(),
        "librdkafka": confluent_kafka.libversion()[0],
        "cpus": os.cpu_count(),
        "rows": [],
    }
    for row in order_rows:
        entry: dict[str, Any] = {"workload": row.workload}
        for side in ("pykbroker", "mock"):
            mb = row.stat(side, lambda r: r.mb_per_s)
            ms = row.stat(side, lambda r: r.msgs_per_s)
            entry[side] = None if mb is None or ms is None else {
                "mb_per_s": round(mb[0], 2), "mb_per_s_min": round(mb[1], 2),
                "mb_per_s_max": round(mb[2], 2), "msgs_per_s": round(ms[0], 1),
                "runs": [run_json(r) for r in row.runs[side]]}
        p_, m_ = entry["pykbroker"], entry["mock"]
        entry["ratio"] = round(p_["mb_per_s"] / m_["mb_per_s"], 3) if p_ and m_ else None
        result["rows"].append(entry)

    if not args.json:
        print(f"{n:,} messages of {VALUE_SIZE} B per run; median (min-max) of {args.rounds} "
              f"rounds; MB/s counts value bytes only; {elapsed:.0f} s in all")
        print(table(order_rows))
        print()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
