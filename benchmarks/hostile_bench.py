"""Memory under hostile or merely numerous clients (issue #18): the broker's RSS idle, with
5,000 idle TCP connections and after they close, and with 100 connections that each declare
a 100 MiB request frame (``socket.request.max.bytes``, the default) and then send nothing or
only part of it; once with ``queued.max.request.bytes`` unset (-1) and once set. A normal
client (confluent-kafka) then produces and consumes on connection 5,001.

    .venv/bin/python benchmarks/hostile_bench.py [--idle 5000] [--declared 100]
        [--partial-kib 512] [--queued-bytes 104857600]

RSS is VmRSS from /proc/<pid>/status (Linux only). Figures are noisy: one run, a shared
machine. Prints a table, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
DECLARED = 104_857_600  # the default socket.request.max.bytes


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _raise_nofile(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        sys.exit(f"RLIMIT_NOFILE is {soft}; this benchmark needs {want} (raise the hard limit)")


class Broker:
    def __init__(self, overrides: dict[str, str]) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="hostile-bench-")
        self.port = _free_port()
        args = [sys.executable, "-m", "pykbroker",
                "--override", f"listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "--override", f"log.dirs={self.tmp.name}"]
        for key, value in overrides.items():
            args += ["--override", f"{key}={value}"]
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited: {self.proc.stderr.read().decode()[-2000:]}"
                                   if self.proc.stderr else "broker exited")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.warn_lines = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def settle(self, fds: int | None = None, *, atleast: bool = True, seconds: float = 1.5,
               timeout: float = 60.0) -> int:
        """Wait until the broker holds ``fds`` descriptors (at least / at most), then until
        its RSS stops moving for a moment; the RSS in KiB."""
        deadline = time.monotonic() + timeout
        if fds is not None:
            while time.monotonic() < deadline:
                n = _open_fds(self.pid)
                if (n >= fds) if atleast else (n <= fds):
                    break
                time.sleep(0.05)
        last = _rss_kib(self.pid)
        while time.monotonic() < deadline:
            time.sleep(seconds)
            now = _rss_kib(self.pid)
            if abs(now - last) < 512:
                return now
            last = now
        return last

    def stop(self) -> str:
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self.tmp.cleanup()
        return err.decode(errors="replace")


def _connect_many(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 0, 0))
        s.connect(("127.0.0.1", port))
        socks.append(s)
    return socks


def _close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()


def _normal_client(port: int) -> dict[str, Any]:
    """A confluent-kafka producer and consumer: 100 messages out and back."""
    from confluent_kafka import Consumer, Producer

    topic = f"hostile-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    producer = Producer({"bootstrap.servers": f"127.0.0.1:{port}", "linger.ms": 5})
    for i in range(100):
        producer.produce(topic, value=b"v%d" % i)
    left = producer.flush(30)
    consumer = Consumer({"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "hostile-bench",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(got) < 100 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
    consumer.close()
    ok = left == 0 and sorted(got) == sorted(b"v%d" % i for i in range(100))
    return {"ok": ok, "produced": 100 - left, "consumed": len(got),
            "seconds": round(time.monotonic() - started, 2)}


def _declare(port: int, n: int, partial: int) -> list[socket.socket]:
    """``n`` connections, each sending a frame header that declares DECLARED bytes, then
    ``partial`` bytes of the body (not a valid request: it is never completed)."""
    socks = _connect_many(port, n)
    body = b"\x00" * partial
    for s in socks:
        s.setblocking(False)
        try:
            s.send(struct.pack(">i", DECLARED) + body)  # what the kernel takes now
        except BlockingIOError:
            pass
    return socks


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"idle_connections": args.idle, "declared_connections": args.declared,
                           "declared_bytes": DECLARED, "partial_bytes": args.partial_kib * 1024,
                           "queued_max_request_bytes": args.queued_bytes}
    broker = Broker({})
    try:
        # A first client run loads the produce, fetch and group code and creates
        # __consumer_offsets, so that the figures below measure connections, not that.
        out["warm_up_client"] = _normal_client(broker.port)
        base = broker.settle()
        out["idle_rss_kib"] = base
        fds0 = _open_fds(broker.pid)
        socks = _connect_many(broker.port, args.idle)
        with_idle = broker.settle(fds0 + args.idle)
        out["idle_conns_rss_kib"] = with_idle
        out["per_idle_conn_bytes"] = round((with_idle - base) * 1024 / args.idle)
        out["client_on_next_connection"] = _normal_client(broker.port)
        _close_all(socks)
        out["after_close_rss_kib"] = broker.settle(fds0 + 10, atleast=False, seconds=3.0)
    finally:
        err = broker.stop()
        out["warn_lines_default_broker"] = sum(1 for line in err.splitlines() if "WARN" in line)
    for label, overrides in (("unbounded", {}),
                             ("bounded", {"queued.max.request.bytes": str(args.queued_bytes)})):
        broker = Broker(overrides)
        try:
            base = broker.settle()
            fds0 = _open_fds(broker.pid)
            row: dict[str, Any] = {"idle_rss_kib": base}
            for partial in (0, args.partial_kib * 1024):
                socks = _declare(broker.port, args.declared, partial)
                rss = broker.settle(fds0 + args.declared)
                row[f"rss_kib_partial_{partial}"] = rss
                row[f"delta_mib_partial_{partial}"] = round((rss - base) / 1024, 1)
                _close_all(socks)
                broker.settle(fds0 + 10, atleast=False)
            row["client_after"] = _normal_client(broker.port)
        finally:
            err = broker.stop()
            row["warn_lines"] = sum(1 for line in err.splitlines() if "WARN" in line)
        out[f"declared_{label}"] = row
    return out


def _table(r: dict[str, Any]) -> str:
    def mib(kib: float) -> str:
        return f"{kib / 1024:8.1f} MiB"

    idle_label = f"with {r['idle_connections']:,} idle connections"
    grew = r["idle_conns_rss_kib"] - r["idle_rss_kib"]
    lines = [
        f"{'measure':<62} {'RSS':>12}",
        f"{'idle broker':<62} {mib(r['idle_rss_kib'])}",
        f"{idle_label:<62} {mib(r['idle_conns_rss_kib'])}  (+{grew / 1024:.1f} MiB, "
        f"{r['per_idle_conn_bytes'] / 1024:.1f} KiB each)",
        f"{'after they close':<62} {mib(r['after_close_rss_kib'])}",
        f"{'client on the next connection (produce+consume 100)':<62} "
        f"{'ok' if r['client_on_next_connection']['ok'] else 'FAILED':>12}",
    ]
    n, part = r["declared_connections"], r["partial_bytes"]
    for label in ("unbounded", "bounded"):
        row = r[f"declared_{label}"]
        bound = ("queued.max.request.bytes=-1" if label == "unbounded"
                 else f"queued.max.request.bytes={r['queued_max_request_bytes']}")
        lines.append(f"{bound}: idle broker{'':<{max(0, 62 - len(bound) - 13)}} "
                     f"{mib(row['idle_rss_kib'])}")
        for p in (0, part):
            what = f"  {n} x declared 100 MiB, {p // 1024} KiB sent"
            lines.append(f"{what:<62} {mib(row[f'rss_kib_partial_{p}'])}  "
                         f"(+{row[f'delta_mib_partial_{p}']:.1f} MiB)")
        lines.append(f"{'  client afterwards':<62} "
                     f"{'ok' if row['client_after']['ok'] else 'FAILED':>12}")
        lines.append(f"{'  WARN lines in the broker log':<62} {row['warn_lines']:>12}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=5000)
    parser.add_argument("--declared", type=int, default=100)
    parser.add_argument("--partial-kib", type=int, default=512)
    parser.add_argument("--queued-bytes", type=int, default=DECLARED)
    args = parser.parse_args()
    _raise_nofile(2 * args.idle + 1024)
    result = run(args)
    result["targets"] = {
        "idle_conns_under_40_mib": result["idle_conns_rss_kib"] - result["idle_rss_kib"]
        < 40 * 1024,
        "declared_unbounded_under_64_mib": result["declared_unbounded"]["delta_mib_partial_0"]
        < 64,
        "declared_bounded_under_bound": result["declared_bounded"]["delta_mib_partial_0"]
        * MIB < args.queued_bytes,
        "client_ok": result["client_on_next_connection"]["ok"],
    }
    print(_table(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
