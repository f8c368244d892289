"""A normal producer's throughput while hostile clients flood the broker (issues #17, #18).

One ``python -m pykbroker`` on a free loopback port. A confluent-kafka producer (1 KiB values,
``acks=1``, one partition) produces as fast as it can for ``--seconds``: alone, then while a
flood process keeps ``--connections`` (100) connections sending ``--frames`` (10,000) bad
frames spread over the run (``--rate``, default frames / seconds), then alone again; the
flooded rate is compared with the mean of the two runs alone. Each flood
connection (one asyncio task in one process) sends one bad frame, waits for the broker to close
the connection, and reconnects;
the frames cycle through the kinds below. The flood's time from sending a frame to seeing the
connection closed is recorded (the broker must close a bad connection within a second).

Frame kinds: ``garbage`` (random bytes), ``bad-api`` (a header with API key 999),
``bad-version`` (Produce v99), ``negative-size`` (size prefix -1), ``oversized`` (size prefix
above ``socket.request.max.bytes``), ``truncated-body`` (a Metadata request whose body stops
short), ``slow`` (half a size prefix, then nothing: closed by the broker's idle timeout only,
so it is sent once per connection at most and not waited for).

Also reported: the broker's peak RSS during the flood and the lines its log holds about bad
clients. Prints a table and one JSON object on the last line.

Usage::

    .venv/bin/python benchmarks/flood_bench.py              # 10 s runs, 10,000 frames
    .venv/bin/python benchmarks/flood_bench.py --seconds 5 --frames 3000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from perf import free_port, wait_for_metadata  # noqa: E402

KINDS = ["garbage", "bad-api", "bad-version", "negative-size", "oversized", "truncated-body"]


def frame(kind: str, rng: random.Random) -> bytes:
    def header(api_key: int, version: int) -> bytes:
        return struct.pack(">hhih", api_key, version, rng.randrange(1 << 30), 5) + b"flood"

    if kind == "garbage":
        body = rng.randbytes(rng.randrange(8, 200))
        return struct.pack(">i", len(body)) + body
    if kind == "bad-api":
        body = header(999, 0)
        return struct.pack(">i", len(body)) + body
    if kind == "bad-version":
        body = header(0, 99)
        return struct.pack(">i", len(body)) + body
    if kind == "negative-size":
        return struct.pack(">i", -1)
    if kind == "oversized":
        return struct.pack(">i", 200 * 1024 * 1024)
    if kind == "truncated-body":
        body = header(3, 12) + b"\x02\x00"  # Metadata v12: topics array cut short
        return struct.pack(">i", len(body)) + body
    raise ValueError(kind)


FLOOD_SCRIPT = r"""
import asyncio, json, random, socket, sys, time
sys.path.insert(0, sys.argv[5])
from flood_bench import KINDS, frame
port, connections, frames = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
slow_every, rate = int(sys.argv[4]), float(sys.argv[6])
sent = 0; close_times = []; errors = 0; slow = []
async def worker(i, start):
    global sent, errors
    rng = random.Random(i)
    if slow_every and i % slow_every == 0:
        r, w = await asyncio.open_connection("127.0.0.1", port); w.write(b"\x00\x00")
        slow.append(w)
    while sent < frames:
        sent += 1; n = sent
        delay = start + n / rate - time.perf_counter()  # paced: rate frames/s in all
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            t0 = time.perf_counter()
            w.write(frame(KINDS[n % len(KINDS)], rng))
            while await asyncio.wait_for(r.read(65536), 5):
                pass
            close_times.append(time.perf_counter() - t0)
            w.close()
        except (OSError, asyncio.TimeoutError):
            errors += 1
async def main():
    start = time.perf_counter()
    await asyncio.gather(*(worker(i, start) for i in range(connections)))
    return time.perf_counter() - start
took = asyncio.run(main())
print(json.dumps({"frames": sent, "seconds": took, "close_s": sorted(close_times),
                  "errors": errors, "slow": len(slow)}))
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU seconds of this process's waited-for children (the flood, once it exits)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def _bad_client_lines(log: bytes, skip: int) -> int:
    """Lines past the first ``skip`` written by the broker's connection and listener
    loggers (about bad clients), not the log manager's (segments deleted by retention)."""
    lines = log.split(b"\n")[skip:]
    return sum(1 for line in lines if line.rstrip().endswith(
        (b"(pykbroker.server.connection)", b"(pykbroker.server.listener)")))


def sample_rss(pid: int, peak: list[float], stop: threading.Event) -> None:
    """Keep ``peak[0]`` at the highest RSS of ``pid`` seen every 0.1 s until ``stop``."""
    while not stop.is_set():
        peak[0] = max(peak[0], rss_mib(pid))
        time.sleep(0.1)


def produce_for(bootstrap: str, topic: str, seconds: float) -> float:
    delivered = [0]

    def on_delivery(err: object, msg: object) -> None:
        if err is None:
            delivered[0] += 1

    p = Producer({"bootstrap.servers": bootstrap, "acks": 1, "linger.ms": 5})
    value = os.urandom(512) * 2
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        try:
            p.produce(topic, value, on_delivery=on_delivery)
        except BufferError:
            p.poll(0.005)
        p.poll(0)
    p.flush(30)
    return delivered[0] / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--rate", type=float, default=0.0,
                    help="flood frames per second (default: --frames spread over --seconds)")
    ap.add_argument("--flood-nice", type=int, default=0,
                    help="run the flood process at this niceness (19: it gets the CPU only "
                         "when the broker and producer leave some, as an attacker on another "
                         "machine would; the default 0 shares the two cores evenly)")
    ap.add_argument("--slow-every", type=int, default=10,
                    help="one idle half-frame connection per N flood threads (0: none)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="flood runs, each between two runs alone (default 3)")
    ap.add_argument("--keep-log", type=Path, default=None,
                    help="copy the broker's log here before its directory is removed")
    args = ap.parse_args()
    if not args.rate:
        args.rate = args.frames / args.seconds
    tmp = Path(tempfile.mkdtemp(prefix="flood-bench-"))
    port = free_port()
    log_path = tmp / "broker.log"
    with open(log_path, "wb") as err:
        broker = subprocess.Popen(
            [sys.executable, "-m", "pykbroker", "--override",
             f"listeners=PLAINTEXT://127.0.0.1:{port}", "--override", f"log.dirs={tmp / 'data'}",
             # retention applied every second and deleted segments removed at once, so that
             # the log stays near the topic's retention.bytes (below) throughout
             "--override", "log.retention.check.interval.ms=1000",
             "--override", "log.segment.delete.delay.ms=0"],
            stderr=err)
    alone: list[float] = []  # the producer's rate alone, before each flood round and after
    rounds: list[dict[str, object]] = []
    try:
        wait_for_metadata(port, broker, 60)
        bootstrap = f"127.0.0.1:{port}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("flood-bench", 1, 1, config={
            # the log stays small: the page cache's write-back of a growing log would slow
            # every later run, whatever the flood does
            "retention.bytes": str(1 << 30), "segment.bytes": str(128 << 20)})])[
                "flood-bench"].result()
        produce_for(bootstrap, "flood-bench", 1.0)  # warm-up
        idle_rss = rss_mib(broker.pid)
        peak = [idle_rss]
        lines_before = log_path.read_bytes().count(b"\n")
        for _ in range(args.rounds):
            cpu0 = cpu_seconds(broker.pid)
            alone.append(produce_for(bootstrap, "flood-bench", args.seconds))
            cpu_alone = cpu_seconds(broker.pid) - cpu0
            flood = subprocess.Popen(
                [sys.executable, "-c", FLOOD_SCRIPT, str(port), str(args.connections),
                 str(args.frames), str(args.slow_every), str(HERE), str(args.rate)],
                stdout=subprocess.PIPE, text=True,
                preexec_fn=(lambda: os.nice(args.flood_nice)) if args.flood_nice else None)
            cpu0 = cpu_seconds(broker.pid)
            stop = threading.Event()
            sampler = threading.Thread(target=sample_rss, args=(broker.pid, peak, stop),
                                       daemon=True)
            sampler.start()
            flooded = produce_for(bootstrap, "flood-bench", args.seconds)
            cpu_flooded = cpu_seconds(broker.pid) - cpu0
            flood_cpu = children_cpu_seconds()
            out, _ = flood.communicate(timeout=600)
            flood_cpu = children_cpu_seconds() - flood_cpu
            stop.set()
            sampler.join()
            rounds.append({"flooded": flooded, "flood": json.loads(out), "cpu_alone": cpu_alone,
                           "cpu_flooded": cpu_flooded, "flood_cpu": flood_cpu})
        alive = broker.poll() is None
        log_lines = _bad_client_lines(log_path.read_bytes(), lines_before)
        alone.append(produce_for(bootstrap, "flood-bench", args.seconds))
    finally:
        broker.send_signal(signal.SIGTERM)
        try:
            broker.wait(30)
        except subprocess.TimeoutExpired:
            broker.kill()
        if args.keep_log is not None and log_path.exists():
            shutil.copyfile(log_path, args.keep_log)
        shutil.rmtree(tmp, ignore_errors=True)
    # Each flood round against the mean of the runs alone just before and just after it
    # (the machine's drift), then the median over the rounds.
    ratios = [float(r["flooded"]) / ((alone[i] + alone[i + 1]) / 2)  # type: ignore[arg-type]
              for i, r in enumerate(rounds)]
    closes = sorted(c for r in rounds for c in r["flood"]["close_s"])  # type: ignore[index]
    p99 = closes[int(len(closes) * 0.99) - 1] if closes else float("nan")
    frames = sum(r["flood"]["frames"] for r in rounds)  # type: ignore[index]
    rows = {
        "alone msgs/s": " / ".join(f"{a:,.0f}" for a in alone),
        "during flood msgs/s": " / ".join(
            f"{r['flooded']:,.0f} ({100 * q:.0f}%)" for r, q in zip(rounds, ratios, strict=True)),
        "median share during flood": f"{100 * statistics.median(ratios):.0f}% "
                                     "(each round against the runs alone around it)",
        "flood frames sent": " / ".join(
            f"{r['flood']['frames']:,} in {r['flood']['seconds']:.1f} s, "  # type: ignore[index]
            f"{r['flood']['errors']} errors" for r in rounds),  # type: ignore[index]
        "bad connection closed after": (f"median {1000 * statistics.median(closes):.1f} ms, "
                                        f"p99 {1000 * p99:.1f} ms, max {1000 * max(closes):.1f} ms"
                                        if closes else "n/a"),
        "broker CPU, alone / flood run": " ; ".join(
            f"{r['cpu_alone']:.2f} / {r['cpu_flooded']:.2f} s" for r in rounds)
            + f" (flood process {statistics.mean(r['flood_cpu'] for r in rounds):.2f} s, "  # type: ignore[misc]
            f"nice {args.flood_nice})",
        "broker RSS": f"idle {idle_rss:.1f} MiB, peak during floods {peak[0]:.1f} MiB",
        "broker log lines during floods": f"{log_lines}",
        "broker alive": str(alive),
    }
    width = max(map(len, rows))
    for k, v in rows.items():
        print(f"{k:<{width}}  {v}")
    print(json.dumps({
        "benchmark": "flood", "seconds": args.seconds, "rounds": args.rounds,
        "frames": frames, "connections": args.connections, "alone_msgs_per_s": alone,
        "flood_msgs_per_s": [r["flooded"] for r in rounds], "ratios": ratios,
        "ratio": statistics.median(ratios),
        "close_ms_median": 1000 * statistics.median(closes) if closes else None,
        "close_ms_max": 1000 * max(closes) if closes else None,
        "rss_idle_mib": idle_rss, "rss_peak_mib": peak[0], "log_lines": log_lines,
        "broker_cpu_alone_s": [r["cpu_alone"] for r in rounds],
        "broker_cpu_flood_s": [r["cpu_flooded"] for r in rounds],
        "flood_process_cpu_s": [r["flood_cpu"] for r in rounds], "flood_nice": args.flood_nice,
        "alive": alive}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
