"""Restart time after SIGKILL against the size of a flushed log (issue #18).

Fills a broker's log with ``--gigabytes`` of 1 KiB messages (confluent-kafka, idempotent,
6 partitions), stops it cleanly (everything flushed, recovery points at the log ends), then
``--runs`` times: start it, wait for its first Metadata answer, SIGKILL it. Each start after
the first follows a SIGKILL, so it is a crash recovery with nothing unflushed. The same on an
empty log directory for reference. Reports the broker's own "ready in" (from its log line) and
the time from spawn to the first Metadata answer, medians with min-max, then one JSON object.

Usage::

    .venv/bin/python benchmarks/restart_bench.py                 # 5 GB, 5 runs (~1 min)
    .venv/bin/python benchmarks/restart_bench.py --gigabytes 1 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from perf import free_port, wait_for_metadata  # noqa: E402


def start(data: Path) -> tuple[subprocess.Popen[bytes], int, float]:
    """The broker's log goes to ``<data>.stderr`` (a pipe could fill during a long fill)."""
    port = free_port()
    t0 = time.perf_counter()
    with open(f"{data}.stderr", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pykbroker", "--override",
             f"listeners=PLAINTEXT://127.0.0.1:{port}", "--override", f"log.dirs={data}"],
            stderr=err)
    first = wait_for_metadata(port, proc, 120) - t0
    return proc, port, first


def kill(proc: subprocess.Popen[bytes], data: Path) -> int | None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    m = re.search(r"ready in (\d+) ms", Path(f"{data}.stderr").read_text(errors="replace"))
    return int(m.group(1)) if m else None


def fill(data: Path, gigabytes: float) -> float:
    proc, port, _ = start(data)
    bootstrap = f"127.0.0.1:{port}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the result
    admin.create_topics([NewTopic("restart-bench", 6, 1)])["restart-bench"].result()
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "linger.ms": 5, "batch.size": 1_000_000})
    value = os.urandom(1024)
    t0 = time.perf_counter()
    for i in range(int(gigabytes * 1024 * 1024)):
        while True:
            try:
                producer.produce("restart-bench", value)
                break
            except BufferError:
                producer.poll(0.01)
        if i % 10_000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("messages left undelivered")
    took = time.perf_counter() - t0
    proc.send_signal(signal.SIGTERM)  # a clean stop: flushed, recovery points at the ends
    proc.wait(timeout=120)
    return took


def measure(data: Path, runs: int) -> dict[str, list[float]]:
    ready: list[float] = []
    first: list[float] = []
    proc, _, _ = start(data)  # after the clean stop
    kill(proc, data)
    for _ in range(runs):
        proc, _, t = start(data)  # after a SIGKILL
        r = kill(proc, data)
        first.append(t * 1000)
        if r is not None:
            ready.append(float(r))
    return {"ready_in_ms": ready, "first_metadata_ms": first}


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gigabytes", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="restart-bench-"))
    try:
        full, empty = tmp / "full", tmp / "empty"
        full.mkdir()
        empty.mkdir()
        took = fill(full, args.gigabytes)
        size = sum(f.stat().st_size for f in full.rglob("*.log"))
        print(f"filled {size / 1e9:.2f} GB in {took:.1f} s", file=sys.stderr)
        os.sync()
        rows = {"empty log": measure(empty, args.runs),
                f"{size / 1e9:.1f} GB flushed log": measure(full, args.runs)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'restart after SIGKILL':<28} {'ready in (ms)':>22} {'first Metadata (ms)':>24}")
    out = {}
    for label, row in rows.items():
        r, f = summary(row["ready_in_ms"]), summary(row["first_metadata_ms"])
        out[label] = {"ready_in_ms": r, "first_metadata_ms": f}
        print(f"{label:<28} {r['median']:>8.0f} ({r['min']:.0f}-{r['max']:.0f})"
              f"{'':>6} {f['median']:>8.0f} ({f['min']:.0f}-{f['max']:.0f})")
    print(json.dumps({"benchmark": "restart", "gigabytes": args.gigabytes, "runs": args.runs,
                      "rows": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
