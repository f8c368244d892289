"""pykbroker's performance harness (issue #8): pykbroker against Tansu 0.6.0 and librdkafka's mock.

Every broker runs as its own process on 127.0.0.1 and the same confluent-kafka client code in
this process drives all of them, with the same client settings:

* **pykbroker**: ``python -m pykbroker`` with a fresh log directory in a temp dir (on disk),
  Kafka 3.9's defaults otherwise.
* **tansu**: Tansu 0.6.0's static binary (``benchmarks/fetch_peers.py`` fetches it into
  ``benchmarks/.peers/``), ``--storage-engine memory://tansu/``: it keeps everything in memory.
* **mock**: librdkafka's mock cluster (1 broker) in a helper process, as in ``throughput.py``.
  Produce cells and end-to-end latency only: it keeps only the newest 5 MiB of a partition, so a
  whole log cannot be read back, and it is no process one would start, so start-up and RSS are
  not measured for it.

Sections (see benchmarks/README.md for the method and the figures):

* ``produce``: 100 B and 1 KiB values x acks=1/all x compression none/lz4/zstd x 1/6 partitions,
  ``--messages`` (1,000,000) per run. Peak RSS (VmHWM, reset before each run through
  ``/proc/PID/clear_refs``) of the broker during each run.
* ``consume``: a fresh consumer reads each acks=all topic of the produce section back whole.
* ``flush``: pykbroker only, 1 KiB acks=all uncompressed, with ``log.flush.interval.messages=1``
  (flush.messages=1 on every topic) against the same broker without it, back to back.
* ``latency``: end-to-end latency at 1,000 msg/s (100 B, linger.ms=0), with the consumer's
  default ``fetch.wait.max.ms`` (500) and with 10: p50, p99, p999 of receive - send time.
* ``startup``: time from spawn to the first Metadata answer on a raw socket; VmRSS after
  ``--idle`` (3) idle seconds.
* ``join``: consumer-group join time with broker defaults: one consumer on a 6-partition topic,
  and 10 consumers on a 60-partition topic (classic protocol, range assignor).

Runs interleave the brokers (the order alternates from round to round), ``--rounds`` (3)
rounds, medians with min-max. Prints tables and then one JSON object on the last line.

Usage::

    .venv/bin/python benchmarks/perf.py             # full run (about 30 min on 2 cores)
    .venv/bin/python benchmarks/perf.py --quick     # 100,000 messages, 1 round, short latency runs
    .venv/bin/python benchmarks/perf.py --only produce,latency --rounds 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import confluent_kafka
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fetch_peers import TANSU, TANSU_VERSION, tansu_version  # noqa: E402
from throughput import (  # noqa: E402
    MockCluster,
    client_conf,
    proc_cpu_seconds,
)
from throughput import watermarks as high_watermarks  # noqa: E402

SIZES = (100, 1024)
COMPRESSIONS = ("none", "lz4", "zstd")
PARTITION_COUNTS = (1, 6)
ACKS = ("1", "all")
SECTIONS = ("startup", "latency", "join", "produce", "consume", "flush")
VALUE_POOL = 1024  # distinct values cycled through: lz4 finds no whole-message repeats nearby
BATCH = 10_000  # messages per Consumer.consume() call, at most
MIB = 1024 * 1024


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_status(pid: int, key: str) -> int:
    """A ``/proc/PID/status`` field in bytes (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def reset_peak_rss(pid: int) -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0, ``clear_refs`` value 5)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def settle() -> None:
    """Write back the page cache's dirty data before a measurement. pykbroker's earlier runs
    leave up to a few GB of segment data dirty (and deleted files to discard); without this,
    the kernel writes it back during whichever run comes next, on either broker."""
    os.sync()


def make_values(size: int) -> list[bytes]:
    """Text-like values (words from a small vocabulary, as in JSON or logs) that lz4 can
    shrink, cycled through ``VALUE_POOL`` distinct ones. The same list serves every broker."""
    rng = random.Random(size)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(2000)]
    values = []
    for _ in range(VALUE_POOL):
        out = bytearray()
        while len(out) < size:
            out += rng.choice(words) + b" "
        values.append(bytes(out[:size]))
    return values


# ---------------------------------------------------------------------------------------------
# Metadata probe: the first answer after spawn
# ---------------------------------------------------------------------------------------------

def _metadata_v1_request(correlation_id: int) -> bytes:
    client = b"perf-probe"
    body = struct.pack(">hhih", 3, 1, correlation_id, len(client)) + client
    body += struct.pack(">i", 0)  # no topics: brokers and controller only
    return struct.pack(">i", len(body)) + body


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return bytes(buf)


def wait_for_metadata(port: int, proc: subprocess.Popen[bytes], timeout: float) -> float:
    """Poll until the broker on ``port`` answers a Metadata v1 request; the perf_counter time
    of that answer. Refused connections are retried every millisecond."""
    deadline = time.perf_counter() + timeout
    corr = 0
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode} before answering")
        corr += 1
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.sendall(_metadata_v1_request(corr))
                (size,) = struct.unpack(">i", _recv_exact(s, 4))
                resp = _recv_exact(s, size)
                answered = time.perf_counter()
            if struct.unpack_from(">i", resp, 0)[0] == corr:
                return answered
        except (ConnectionError, OSError):
            pass
        time.sleep(0.001)
    raise TimeoutError(f"no Metadata answer on port {port} after {timeout} s")


# ---------------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------------

class Target:
    name: str
    bootstrap: str
    pid: int
    startup_s: float | None = None
    # Tansu 0.6.0 answers ListOffsets(latest) with the last batch's base offset + 1, not the
    # high watermark, so its counts are checked by consuming instead.
    exact_watermarks = True

    def create_topic(self, topic: str, partitions: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


# The brokers run as an installed program would: Python caches compiled modules (.pyc) even
# where this shell says PYTHONDONTWRITEBYTECODE, else every start compiles all of pykbroker
# (~0.8 s here). The untimed warm-up start writes the cache.
BROKER_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


class Spawned(Target):
    """A broker binary spawned on a free port; ready at its first Metadata answer."""

    def __init__(self, name: str, tmp: Path) -> None:
        self.name = name
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmp))
        for attempt in range(3):  # the free port may be taken between probe and bind
            self.port = free_port()
            self.bootstrap = f"127.0.0.1:{self.port}"
            self.log_path = self.tmp / f"broker-{attempt}.log"
            with open(self.log_path, "wb") as out:
                t0 = time.perf_counter()
                self.proc = subprocess.Popen(self.command(), stdout=out, stderr=out,
                                             stdin=subprocess.DEVNULL, env=BROKER_ENV)
            self.pid = self.proc.pid
            try:
                self.startup_s = wait_for_metadata(self.port, self.proc, 60) - t0
                break
            except RuntimeError:
                if attempt == 2:
                    raise RuntimeError(
                        f"{name} did not start:\n{self.log_path.read_text()}") from None
        self.admin = AdminClient({"bootstrap.servers": self.bootstrap,
                                  "allow.auto.create.topics": False})

    def command(self) -> list[str]:
        raise NotImplementedError

    def create_topic(self, topic: str, partitions: int) -> None:
        futures = self.admin.create_topics([NewTopic(topic, partitions, 1)], request_timeout=30)
        futures[topic].result(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            md = self.admin.list_topics(topic, timeout=10).topics.get(topic)
            if (md is not None and md.error is None and len(md.partitions) == partitions
                    and all(p.leader >= 0 for p in md.partitions.values())):
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.name}: {topic} not visible with {partitions} partitions")

    def close(self) -> None:
        del self.admin
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


class PykBroker(Spawned):
    def __init__(self, tmp: Path, overrides: dict[str, str] | None = None,
                 name: str = "pykbroker") -> None:
        self.overrides = dict(overrides or {})
        super().__init__(name, tmp)

    def command(self) -> list[str]:
        args = [sys.executable, "-m", "pykbroker",
                "--override", f"listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "--override", f"log.dirs={self.tmp / 'data'}"]
        for key, value in self.overrides.items():
            args += ["--override", f"{key}={value}"]
        return args


class Tansu(Spawned):
    exact_watermarks = False

    def __init__(self, tmp: Path) -> None:
        super().__init__("tansu", tmp)

    def command(self) -> list[str]:
        url = f"tcp://127.0.0.1:{self.port}"
        return [str(TANSU), "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]


class Mock(Target):
    name = "mock"

    def __init__(self, tmp: Path) -> None:
        self.mock = MockCluster()
        self.pid = self.mock.pid
        self.bootstrap = self.mock.bootstrap

    def create_topic(self, topic: str, partitions: int) -> None:
        self.mock.create_topic(topic, partitions)

    def close(self) -> None:
        self.mock.close()


FACTORIES: dict[str, Callable[[Path], Target]] = {
    "pykbroker": PykBroker, "tansu": Tansu, "mock": Mock}


# ---------------------------------------------------------------------------------------------
# Throughput workloads
# ---------------------------------------------------------------------------------------------

@dataclass
class Run:
    messages: int
    value_bytes: int
    seconds: float
    broker_cpu_s: float
    client_cpu_s: float
    peak_rss: int | None = None  # broker VmHWM during the run, bytes

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.messages * self.value_bytes / 1e6 / self.seconds

    def to_json(self) -> dict[str, Any]:
        return {"messages": self.messages, "seconds": round(self.seconds, 4),
                "mb_per_s": round(self.mb_per_s, 2), "msgs_per_s": round(self.msgs_per_s, 1),
                "broker_cpu_s": round(self.broker_cpu_s, 3),
                "client_cpu_s": round(self.client_cpu_s, 3),
                "peak_rss_mib": None if self.peak_rss is None else round(self.peak_rss / MIB, 1)}


def produce(target: Target, topic: str, partitions: int, n: int, values: list[bytes],
            acks: str, compression: str, track_rss: bool) -> Run:
    """One Producer (linger.ms=5, librdkafka's batching defaults) sends ``n`` keyless values;
    timed from the first produce() to the end of flush(); watermarks checked afterwards."""
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    p = Producer({**client_conf(target.bootstrap), "acks": acks, "linger.ms": 5,
                  "compression.type": compression, "delivery.report.only.error": True,
                  "on_delivery": on_delivery, "message.timeout.ms": 120000})
    p.list_topics(topic, timeout=10)  # connect and cache the topic's metadata before timing
    settle()
    produce_, poll = p.produce, p.poll
    mask = len(values) - 1
    if track_rss:
        reset_peak_rss(target.pid)
    cpu0, ccpu0 = proc_cpu_seconds(target.pid), time.process_time()
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
    cpu, ccpu = proc_cpu_seconds(target.pid) - cpu0, time.process_time() - ccpu0
    peak = proc_status(target.pid, "VmHWM") if track_rss else None
    if remaining or errors:
        raise RuntimeError(f"{target.name} produce {topic}: {remaining} undelivered, "
                           f"{len(errors)} errors, first: {errors[:1]}")
    marks = high_watermarks(target.bootstrap, topic, partitions)
    if target.exact_watermarks and sum(high for _low, high in marks) != n:
        raise RuntimeError(f"{target.name} {topic}: watermarks {marks}, expected {n} messages")
    return Run(n, len(values[0]), seconds, cpu, ccpu, peak)


# librdkafka >= 2.4 stops fetching a partition for fetch.queue.backoff.ms (1 s) whenever its
# local queue holds queued.min.messages (100,000): with 100 B messages the Python loop falls
# that far behind and the run would mostly time those pauses (1M x 100 B: ~0.2 M msgs/s on
# either broker, ~1.7 M msgs/s with 1 ms). Same setting for every broker.
CONSUME_TUNING = {"fetch.queue.backoff.ms": 1}


def consume(target: Target, topic: str, partitions: int, expected: int, value_bytes: int) -> Run:
    """A fresh Consumer reads every partition from offset 0 to its end. Connection, metadata and
    the watermarks are fetched before the clock starts; timed from assign() to the last message."""
    c = Consumer({**client_conf(target.bootstrap), "group.id": f"perf-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "enable.auto.offset.store": False,
                  "auto.offset.reset": "error", **CONSUME_TUNING})
    try:
        c.list_topics(topic, timeout=10)
        marks = [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
                 for p in range(partitions)]
        if any(low != 0 for low, _high in marks) or (
                target.exact_watermarks and sum(high for _low, high in marks) != expected):
            raise RuntimeError(f"{target.name} {topic}: watermarks {marks}, expected {expected}")
        n = expected
        got = 0
        settle()
        deadline = time.monotonic() + 600
        cpu0, ccpu0 = proc_cpu_seconds(target.pid), time.process_time()
        t0 = time.perf_counter()
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        while got < n:
            for m in c.consume(min(BATCH, n - got), 1.0):
                err = m.error()
                if err is not None:
                    raise KafkaException(err)
                got += 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"{target.name} consume {topic}: {got}/{n} after 600 s")
        seconds = time.perf_counter() - t0
        cpu, ccpu = proc_cpu_seconds(target.pid) - cpu0, time.process_time() - ccpu0
    finally:
        c.close()
    return Run(got, value_bytes, seconds, cpu, ccpu)


# ---------------------------------------------------------------------------------------------
# End-to-end latency, start-up, group join
# ---------------------------------------------------------------------------------------------

E2E_VALUE = 100
_STAMP = struct.Struct("<dq")


def percentile(sorted_vals: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return sorted_vals[max(0, min(len(sorted_vals) - 1, math.ceil(q * len(sorted_vals)) - 1))]


def e2e_latency(target: Target, topic: str, seconds: float, rate: int,
                fetch_wait_ms: int | None, warmup_s: float = 1.0) -> dict[str, float]:
    """A producer thread sends ``rate`` msg/s (100 B, linger.ms=0, the send time in the value)
    to a 1-partition topic; this thread's consumer (assigned at offset 0 before the first send)
    takes receive time - send time. The first ``warmup_s`` of messages are not counted."""
    cconf = {**client_conf(target.bootstrap), "group.id": f"perf-e2e-{uuid.uuid4().hex[:8]}",
             "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    if fetch_wait_ms is not None:
        cconf["fetch.wait.max.ms"] = fetch_wait_ms
    c = Consumer(cconf)
    p = Producer({**client_conf(target.bootstrap), "linger.ms": 0, "acks": "all"})
    warmup = int(rate * warmup_s)
    total = warmup + int(rate * seconds)
    pad = b"x" * (E2E_VALUE - _STAMP.size)
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
        p.list_topics(topic, timeout=10)
        c.assign([TopicPartition(topic, 0, 0)])
        for _ in range(3):  # let the consumer connect and start fetching
            m = c.poll(0.3)
            if m is not None:
                raise RuntimeError(f"{target.name} {topic}: unexpected message before the run")
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        got = 0
        deadline = time.monotonic() + seconds + warmup_s + 60
        while got < total and time.monotonic() < deadline and not failure:
            m = c.poll(0.2)
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
        sender.join(60)
        if failure:
            raise RuntimeError(f"{target.name} e2e producer: {failure[0]!r}")
        if got != total:
            raise RuntimeError(f"{target.name} e2e: {got}/{total} messages received")
    finally:
        c.close()
        p.flush(5)
    lat.sort()
    return {"p50_ms": percentile(lat, 0.50) * 1e3, "p99_ms": percentile(lat, 0.99) * 1e3,
            "p999_ms": percentile(lat, 0.999) * 1e3, "max_ms": lat[-1] * 1e3,
            "samples": len(lat)}


def group_join(target: Target, topic: str, consumers: int, partitions: int,
               timeout: float) -> float:
    """Seconds from the first subscribe() until all ``partitions`` are assigned and no member is
    idle (classic protocol, range assignor, as benchmarks/group_bench.py). NaN on timeout."""
    group = f"perf-join-{uuid.uuid4().hex[:8]}"
    conf = {**client_conf(target.bootstrap), "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "partition.assignment.strategy": "range",
            "session.timeout.ms": 10_000, "heartbeat.interval.ms": 500}
    members = [Consumer(conf) for _ in range(consumers)]
    start = time.monotonic()
    for m in members:
        m.subscribe([topic])
    elapsed = float("nan")
    try:
        while time.monotonic() - start < timeout:
            for m in members:
                m.poll(0.005)
            shares = [len(m.assignment()) for m in members]
            if sum(shares) == partitions and min(shares) > 0:
                elapsed = time.monotonic() - start
                break
    finally:
        for m in members:
            m.close()
    return elapsed


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

@dataclass
class Row:
    """One table row: runs per broker (Run objects or plain numbers)."""

    section: str
    label: str
    unit: str = ""
    runs: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, side: str, value: Any) -> None:
        self.runs.setdefault(side, []).append(value)

    def stat(self, side: str, key: Callable[[Any], float | None] = lambda v: v
             ) -> tuple[float, float, float] | None:
        vals = [x for x in (key(v) for v in self.runs.get(side, [])) if x is not None]
        vals = [x for x in vals if not math.isnan(x)]
        if not vals:
            return None
        return statistics.median(vals), min(vals), max(vals)


def fmt(stat: tuple[float, float, float] | None, digits: int = 0) -> str:
    if stat is None:
        return "n/a"
    med, lo, hi = stat
    if lo == hi:
        return f"{med:,.{digits}f}"
    return f"{med:,.{digits}f} ({lo:,.{digits}f}-{hi:,.{digits}f})"


def median(stat: tuple[float, float, float] | None, digits: int = 0) -> str:
    return "n/a" if stat is None else f"{stat[0]:,.{digits}f}"


def ratio(a: tuple[float, float, float] | None, b: tuple[float, float, float] | None) -> str:
    """Ratio of the medians."""
    if a is None or b is None or not a[0] or not b[0]:
        return "n/a"
    r = a[0] / b[0]
    return f"{r:.3f}x" if r < 0.1 else f"{r:.2f}x"


def render(header: list[str], lines: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]

    def one(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths, strict=True)))

    return "\n".join([one(header), "  ".join("-" * w for w in widths), *map(one, lines)])


def throughput_table(rows: Iterable[Row]) -> str:
    header = ["workload", "pykbroker msgs/s", "MB/s", "tansu msgs/s", "MB/s", "mock msgs/s",
              "pyk/tansu", "pyk/mock", "peak RSS MiB pyk|tansu", "CPU% broker+client pyk|tansu|mock"]
    lines = []
    for row in rows:
        ms = {s: row.stat(s, lambda r: r.msgs_per_s) for s in ("pykbroker", "tansu", "mock")}
        mb = {s: row.stat(s, lambda r: r.mb_per_s) for s in ("pykbroker", "tansu")}
        rss = [row.stat(s, lambda r: None if r.peak_rss is None else r.peak_rss / MIB)
               for s in ("pykbroker", "tansu")]
        cpus = []
        for s in ("pykbroker", "tansu", "mock"):
            b = row.stat(s, lambda r: 100 * r.broker_cpu_s / r.seconds)
            c = row.stat(s, lambda r: 100 * r.client_cpu_s / r.seconds)
            cpus.append(f"{b[0]:.0f}+{c[0]:.0f}" if b and c else "n/a")
        lines.append([row.label, fmt(ms["pykbroker"]), median(mb["pykbroker"], 1),
                      fmt(ms["tansu"]), median(mb["tansu"], 1),
                      fmt(ms["mock"]), ratio(ms["pykbroker"], ms["tansu"]),
                      ratio(ms["pykbroker"], ms["mock"]),
                      " | ".join(f"{r[2]:.0f}" if r else "n/a" for r in rss), " | ".join(cpus)])
    return render(header, lines)


def plain_table(rows: Iterable[Row], sides: tuple[str, ...]) -> str:
    header = ["measure", *sides, *(f"pyk/{s}" for s in sides[1:])]
    lines = []
    for row in rows:
        digits = 1 if row.unit in ("ms", "MiB") else 2
        stats = [row.stat(s) for s in sides]
        lines.append([f"{row.label} ({row.unit})", *(fmt(s, digits) for s in stats),
                      *(ratio(stats[0], s) for s in stats[1:])])
    return render(header, lines)


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="pykbroker-perf-"))
        self.rows: dict[tuple[str, str], Row] = {}
        self.run_id = uuid.uuid4().hex[:6]
        self.values = {size: make_values(size) for size in SIZES}

    def row(self, section: str, label: str, unit: str = "") -> Row:
        return self.rows.setdefault((section, label), Row(section, label, unit))

    def start(self, name: str) -> Target:
        settle()
        return FACTORIES[name](self.tmp)

    def order(self, rnd: int, sides: list[str]) -> list[str]:
        return sides if rnd % 2 == 0 else sides[::-1]

    def topic(self, *parts: object) -> str:
        return "-".join(["perf", self.run_id, *map(str, parts)])

    # -- sections ---------------------------------------------------------------------------

    def startup_latency_join(self, rnd: int) -> None:
        """Per broker: spawn (time to first Metadata), idle RSS, end-to-end latency with both
        fetch waits, group join; then stop. Mock: latency and join only."""
        a = self.args
        sides = [s for s in ("pykbroker", "tansu", "mock") if s in a.targets]
        for side in self.order(rnd, sides):
            t = self.start(side)
            try:
                if "startup" in a.only and side != "mock":
                    assert t.startup_s is not None
                    self.row("startup", "spawn to first Metadata answer", "ms").add(
                        side, t.startup_s * 1e3)
                    time.sleep(a.idle)
                    rss = proc_status(t.pid, "VmRSS") / MIB
                    self.row("startup", f"idle RSS after {a.idle:g} s", "MiB").add(side, rss)
                    log(f"  {side:<9} startup {t.startup_s * 1e3:7.1f} ms, idle RSS {rss:.1f} MiB")
                if "latency" in a.only:
                    for wait in (None, 10):
                        topic = self.topic("e2e", rnd, wait or "default")
                        t.create_topic(topic, 1)
                        res = e2e_latency(t, topic, a.e2e_seconds, a.e2e_rate, wait)
                        what = "default fetch.wait.max.ms" if wait is None else \
                            f"fetch.wait.max.ms={wait}"
                        for q in ("p50", "p99", "p999"):
                            self.row("latency", f"e2e {q}, {what}", "ms").add(
                                side, res[f"{q}_ms"])
                        log(f"  {side:<9} e2e {what}: p50 {res['p50_ms']:.2f} p99 "
                            f"{res['p99_ms']:.2f} p999 {res['p999_ms']:.2f} max "
                            f"{res['max_ms']:.2f} ms ({res['samples']} samples)")
                if "join" in a.only:
                    for consumers, partitions in ((1, 6), (10, 60)):
                        topic = self.topic("join", rnd, partitions)
                        t.create_topic(topic, partitions)
                        s = group_join(t, topic, consumers, partitions, a.join_timeout)
                        self.row("join", f"group join, {consumers} consumer(s), "
                                 f"{partitions} partitions", "s").add(side, s)
                        log(f"  {side:<9} join {consumers}x{partitions}: {s:.3f} s")
            finally:
                t.close()

    def throughput(self, rnd: int) -> None:
        """Per (size, compression, partitions): on each broker in turn (fresh process), produce
        with acks=1, then acks=all, then consume the acks=all topic back; then stop it."""
        a = self.args
        sides = [s for s in ("pykbroker", "tansu", "mock") if s in a.targets]
        n = a.messages
        for size in SIZES:
            for comp in COMPRESSIONS:
                for parts in PARTITION_COUNTS:
                    cell = f"{'1 KiB' if size == 1024 else f'{size} B'} {comp} {parts}p"
                    if a.cells and not any(c in cell for c in a.cells):
                        continue
                    for side in self.order(rnd, sides):
                        t = self.start(side)
                        try:
                            for acks in ACKS:
                                if "produce" not in a.only:
                                    continue
                                topic = self.topic(size, comp, parts, acks, rnd)
                                t.create_topic(topic, parts)
                                run = produce(t, topic, parts, n, self.values[size], acks, comp,
                                              track_rss=side != "mock")
                                self.row("produce", f"produce {cell} acks={acks}").add(side, run)
                                self.report(f"produce {cell} acks={acks}", side, run)
                            if "consume" in a.only and side != "mock":
                                topic = self.topic(size, comp, parts, "all", rnd)
                                if "produce" not in a.only:
                                    t.create_topic(topic, parts)
                                    produce(t, topic, parts, n, self.values[size], "all", comp,
                                            track_rss=False)
                                run = consume(t, topic, parts, n, size)
                                self.row("consume", f"consume {cell}").add(side, run)
                                self.report(f"consume {cell}", side, run)
                        finally:
                            t.close()

    def flush(self, rnd: int) -> None:
        """pykbroker with and without log.flush.interval.messages=1, 1 KiB acks=all, none."""
        a = self.args
        variants = [("pykbroker", {}), ("pykbroker flush.messages=1",
                                         {"log.flush.interval.messages": "1"})]
        for name, overrides in (variants if rnd % 2 == 0 else variants[::-1]):
            t = PykBroker(self.tmp, overrides, name=name)
            try:
                for parts in PARTITION_COUNTS:
                    topic = self.topic("flush", rnd, parts)
                    t.create_topic(topic, parts)
                    run = produce(t, topic, parts, a.messages, self.values[1024], "all", "none",
                                  track_rss=True)
                    label = f"produce 1 KiB none {parts}p acks=all"
                    self.row("flush", label).add(name, run)
                    self.report(f"flush: {label}", name, run)
            finally:
                t.close()

    @staticmethod
    def report(label: str, side: str, run: Run) -> None:
        rss = "" if run.peak_rss is None else f"  peak RSS {run.peak_rss / MIB:6.1f} MiB"
        log(f"  {label:<34} {side:<9} {run.seconds:7.3f} s {run.msgs_per_s:11,.0f} msgs/s "
            f"{run.mb_per_s:7.1f} MB/s  CPU broker {run.broker_cpu_s:5.2f} s client "
            f"{run.client_cpu_s:5.2f} s{rss}")

    def warm_up(self) -> None:
        """One untimed start of each spawned broker: the first start after a fresh clone
        compiles pykbroker's .pyc files and reads the binaries from disk (0.7-0.9 s instead of
        about 0.25 s here), which is not what ``startup`` is about."""
        for side in ("pykbroker", "tansu"):
            if side in self.args.targets:
                t = self.start(side)
                log(f"  warm-up start of {side}: {t.startup_s * 1e3:.1f} ms (not counted)"
                    if t.startup_s is not None else f"  warm-up start of {side}")
                t.close()

    def run(self) -> None:
        a = self.args
        self.warm_up()
        for rnd in range(a.rounds):
            log(f"round {rnd + 1}/{a.rounds}")
            if {"startup", "latency", "join"} & set(a.only):
                self.startup_latency_join(rnd)
            if {"produce", "consume"} & set(a.only):
                self.throughput(rnd)
            if "flush" in a.only:
                self.flush(rnd)

    # -- output -----------------------------------------------------------------------------

    def section(self, name: str) -> list[Row]:
        return [r for (s, _label), r in self.rows.items() if s == name]

    def targets(self) -> list[dict[str, Any]]:
        """Issue #8's targets, judged on the medians."""
        out: list[dict[str, Any]] = []

        def check(what: str, value: float | None, goal: str, ok: bool | None) -> None:
            out.append({"target": what, "value": None if value is None else round(value, 3),
                        "goal": goal, "met": ok})

        for row in self.section("produce"):
            p, t = row.stat("pykbroker", lambda r: r.msgs_per_s), row.stat(
                "tansu", lambda r: r.msgs_per_s)
            if p and t:
                check(f"{row.label}: pykbroker/tansu", p[0] / t[0], ">= 1.0", p[0] >= t[0])
        for row in self.section("consume"):
            if "1 KiB" not in row.label:
                continue
            p, t = row.stat("pykbroker", lambda r: r.msgs_per_s), row.stat(
                "tansu", lambda r: r.msgs_per_s)
            if p and t:
                check(f"{row.label}: pykbroker/tansu", p[0] / t[0], ">= 1.0", p[0] >= t[0])
        for row in self.section("latency"):
            if " p99," in row.label and (s := row.stat("pykbroker")):
                check(f"pykbroker {row.label}", s[0], "<= 10 ms", s[0] <= 10)
        for row in self.section("startup"):
            s = row.stat("pykbroker")
            if s and row.label.startswith("spawn"):
                check(f"pykbroker {row.label} (ms)", s[0], "< 300 ms", s[0] < 300)
            elif s:
                check(f"pykbroker {row.label} (MiB)", s[0], "< 40 MiB", s[0] < 40)
        peaks = [r.peak_rss for row in self.section("produce")
                 for r in row.runs.get("pykbroker", []) if r.peak_rss is not None]
        if peaks:
            worst = max(peaks) / MIB
            check("pykbroker peak RSS during a produce run (worst cell, MiB)", worst,
                  "< 200 MiB", worst < 200)
        for row in self.section("flush"):
            f = row.stat("pykbroker flush.messages=1", lambda r: r.msgs_per_s)
            p = row.stat("pykbroker", lambda r: r.msgs_per_s)
            if f and p:
                check(f"flush.messages=1 / without, {row.label}", f[0] / p[0], ">= 0.5",
                      f[0] / p[0] >= 0.5)
        return out

    def to_json(self, elapsed: float) -> dict[str, Any]:
        a = self.args
        rows = []
        for (section, label), row in self.rows.items():
            entry: dict[str, Any] = {"section": section, "label": label, "unit": row.unit}
            for side, runs in row.runs.items():
                if runs and isinstance(runs[0], Run):
                    ms = row.stat(side, lambda r: r.msgs_per_s)
                    mb = row.stat(side, lambda r: r.mb_per_s)
                    assert ms is not None and mb is not None
                    entry[side] = {"msgs_per_s": round(ms[0], 1), "msgs_per_s_min": round(ms[1], 1),
                                   "msgs_per_s_max": round(ms[2], 1), "mb_per_s": round(mb[0], 2),
                                   "runs": [r.to_json() for r in runs]}
                else:
                    st = row.stat(side)
                    entry[side] = None if st is None else {
                        "median": round(st[0], 4), "min": round(st[1], 4), "max": round(st[2], 4),
                        "runs": [round(v, 4) for v in runs]}
            rows.append(entry)
        return {"benchmark": "perf", "messages": a.messages, "rounds": a.rounds,
                "e2e_seconds": a.e2e_seconds, "e2e_rate": a.e2e_rate, "idle_s": a.idle,
                "elapsed_s": round(elapsed, 1), "python": platform.python_version(),
                "confluent_kafka": confluent_kafka.version(),
                "librdkafka": confluent_kafka.libversion()[0], "tansu": TANSU_VERSION,
                "cpus": os.cpu_count(), "targets": self.targets(), "rows": rows}

    def print_tables(self, elapsed: float) -> None:
        a = self.args
        print(f"{a.messages:,} messages per throughput run; median (min-max) of {a.rounds} "
              f"round(s); MB/s counts value bytes only; {elapsed:.0f} s in all")
        for name in ("produce", "consume"):
            rows = self.section(name)
            if rows:
                print()
                print(throughput_table(rows))
        if rows := self.section("flush"):
            print()
            print(render(
                ["pykbroker produce, flush.messages", "unset msgs/s", "=1 msgs/s", "=1 / unset"],
                [[r.label, fmt(r.stat("pykbroker", lambda x: x.msgs_per_s)),
                  fmt(r.stat("pykbroker flush.messages=1", lambda x: x.msgs_per_s)),
                  ratio(r.stat("pykbroker flush.messages=1", lambda x: x.msgs_per_s),
                        r.stat("pykbroker", lambda x: x.msgs_per_s))] for r in rows]))
        for name, sides in (("latency", ("pykbroker", "tansu", "mock")),
                            ("startup", ("pykbroker", "tansu")),
                            ("join", ("pykbroker", "tansu", "mock"))):
            if rows := self.section(name):
                print()
                print(plain_table(rows, sides))
        if goals := self.targets():
            print()
            print(render(["issue #8 target (medians)", "value", "goal", "met"],
                         [[g["target"], "n/a" if g["value"] is None else f"{g['value']:,.3f}",
                           g["goal"], "yes" if g["met"] else "NO"] for g in goals]))
        print()


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="100,000 messages, 1 round, 3 s latency runs, 1 s idle")
    ap.add_argument("--messages", type=int, default=None,
                    help="messages per produce run (default 1,000,000)")
    ap.add_argument("--rounds", type=int, default=None, help="default 3")
    ap.add_argument("--e2e-seconds", type=float, default=None,
                    help="counted seconds per latency run (default 10)")
    ap.add_argument("--e2e-rate", type=int, default=1000, help="messages per second")
    ap.add_argument("--idle", type=float, default=None, help="idle seconds before RSS (3)")
    ap.add_argument("--join-timeout", type=float, default=60.0)
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections out of {','.join(SECTIONS)}")
    ap.add_argument("--targets", default="pykbroker,tansu,mock",
                    help="brokers to run (pykbroker,tansu,mock)")
    ap.add_argument("--cells", default="",
                    help="throughput cells to run, comma-separated parts of their names "
                         "(e.g. '100 B lz4 1p,1 KiB none'); default all")
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    args = ap.parse_args(argv)
    args.messages = args.messages or (100_000 if args.quick else 1_000_000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.e2e_seconds = args.e2e_seconds or (3.0 if args.quick else 10.0)
    args.idle = args.idle if args.idle is not None else (1.0 if args.quick else 3.0)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    args.targets = [s.strip() for s in args.targets.split(",") if s.strip()]
    args.cells = [s.strip() for s in args.cells.split(",") if s.strip()]
    if unknown := set(args.only) - set(SECTIONS):
        ap.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if unknown := set(args.targets) - set(FACTORIES):
        ap.error(f"unknown targets: {', '.join(sorted(unknown))}")
    if "tansu" in args.targets and tansu_version(TANSU) != TANSU_VERSION:
        ap.error(f"{TANSU} missing or not {TANSU_VERSION}: run benchmarks/fetch_peers.py "
                 "(make bench does)")

    # SIGTERM unwinds like Ctrl-C, so every broker started so far is stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.perf_counter()
    load_start = os.getloadavg()
    bench = Bench(args)
    log(f"{args.messages:,} messages per run, {args.rounds} round(s), sections "
        f"{','.join(args.only)}, brokers {','.join(args.targets)}")
    try:
        bench.run()
    finally:
        shutil.rmtree(bench.tmp, ignore_errors=True)
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
