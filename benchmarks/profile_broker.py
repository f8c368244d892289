"""Where pykbroker's time goes on the produce and fetch paths: py-spy on a broker subprocess.

Starts ``python -m pykbroker`` (as ``perf.py`` does), then for each phase attaches
``py-spy record`` (raw/collapsed output, ``--nonblocking``) to the broker, runs the phase's
workload with the same confluent-kafka client code as ``perf.py``, and stops py-spy. For each
phase it prints the broker's user and system CPU seconds (from /proc), then the functions with
the most samples: *self* (the function is the innermost Python frame) and *total* (the
function is anywhere on the stack), as a percentage of all samples of that phase.

Phases: ``produce-1k`` (1 KiB, uncompressed, 6 partitions, acks=1), ``produce-1k-lz4``,
``produce-100b`` (100 B, uncompressed, 1 partition), ``consume-1k`` (the produce-1k topic read
back whole), ``consume-100b``.

Needs py-spy (``.venv/bin/pip install py-spy``) and the right to ptrace the broker (root, or
``kernel.yama.ptrace_scope=0``). Usage::

    .venv/bin/python benchmarks/profile_broker.py [--messages 1000000] [--top 25] [--phases ...]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from perf import PykBroker, Target, consume, make_values, produce  # noqa: E402
from throughput import proc_cpu_seconds  # noqa: E402

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")
    return exe


def short(path: str) -> str:
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    root = str(HERE.parent) + "/"
    return path[len(root):] if path.startswith(root) else path


def summarize(raw: Path, top: int) -> str:
    """Self and total sample shares per function from py-spy's raw (collapsed) output."""
    self_c: collections.Counter[str] = collections.Counter()
    self_line: collections.Counter[str] = collections.Counter()
    total_c: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_s)
        samples += count
        frames = stack.split(";")
        names = []
        for f in frames:
            m = _FRAME.match(f)
            if m is None:
                names.append((f, f))
                continue
            name = f"{short(m['file'])}:{m['func']}"
            names.append((name, f"{name}:{m['line']}" if m["line"] else name))
        if frames and frames[0].startswith("process ") or frames and frames[0].startswith(
                "thread "):
            names = names[1:]
        if not names:
            continue
        self_c[names[-1][0]] += count
        self_line[names[-1][1]] += count
        for name in {n for n, _ in names}:
            total_c[name] += count
    if not samples:
        return "  (no samples)"
    out = [f"  {samples} samples"]
    for title, counter in (("self (innermost frame), by function", self_c),
                           ("self, by line", self_line),
                           ("total (anywhere on the stack), by function", total_c)):
        out.append(f"  {title}:")
        for name, n in counter.most_common(top):
            out.append(f"    {100 * n / samples:5.1f}%  {name}")
    return "\n".join(out)


def profile_phase(name: str, broker: Target, work: Callable[[], object], tmp: Path,
                  rate: int, top: int) -> str:
    raw = tmp / f"{name}.txt"
    spy = subprocess.Popen([py_spy(), "record", "--pid", str(broker.pid), "--rate", str(rate),
                            "--format", "raw", "--output", str(raw), "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # let py-spy attach
    with open(f"/proc/{broker.pid}/stat") as f:
        fields0 = f.read().rsplit(")", 1)[1].split()
    t0 = time.perf_counter()
    result = work()
    wall = time.perf_counter() - t0
    with open(f"/proc/{broker.pid}/stat") as f:
        fields1 = f.read().rsplit(")", 1)[1].split()
    spy.send_signal(signal.SIGINT)
    _, err = spy.communicate(timeout=60)
    tick = os.sysconf("SC_CLK_TCK")
    user = (int(fields1[11]) - int(fields0[11])) / tick
    sys_ = (int(fields1[12]) - int(fields0[12])) / tick
    head = (f"== {name}: {result}\n  wall {wall:.2f} s, broker CPU user {user:.2f} s + "
            f"system {sys_:.2f} s ({100 * (user + sys_) / wall:.0f}% of one core)")
    if not raw.exists():
        return f"{head}\n  py-spy wrote nothing: {err.decode(errors='replace')[-500:]}"
    return f"{head}\n{summarize(raw, top)}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--phases", default="produce-1k,produce-1k-lz4,produce-100b,consume-1k,"
                                        "consume-100b")
    args = ap.parse_args(argv)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    n = args.messages
    tmp = Path(tempfile.mkdtemp(prefix="pykbroker-profile-"))
    v1k, v100 = make_values(1024), make_values(100)
    broker = PykBroker(tmp)
    print(f"pykbroker pid {broker.pid}, {n:,} messages per phase", flush=True)
    try:
        for topic, parts in (("prof-1k", 6), ("prof-1k-lz4", 6), ("prof-100b", 1)):
            broker.create_topic(topic, parts)
        # py-spy is not attached for the untimed fill that a consume phase needs.
        filled: set[str] = set()

        def fill(topic: str, parts: int, values: list[bytes], comp: str) -> None:
            if topic not in filled:
                produce(broker, topic, parts, n, values, "1", comp, track_rss=False)
                filled.add(topic)

        work: dict[str, Callable[[], object]] = {
            "produce-1k": lambda: (filled.add("prof-1k"), produce(
                broker, "prof-1k", 6, n, v1k, "1", "none", track_rss=False))[1],
            "produce-1k-lz4": lambda: produce(broker, "prof-1k-lz4", 6, n, v1k, "1", "lz4",
                                              track_rss=False),
            "produce-100b": lambda: (filled.add("prof-100b"), produce(
                broker, "prof-100b", 1, n, v100, "1", "none", track_rss=False))[1],
            "consume-1k": lambda: (fill("prof-1k", 6, v1k, "none"),
                                   consume(broker, "prof-1k", 6, n, 1024))[1],
            "consume-100b": lambda: (fill("prof-100b", 1, v100, "none"),
                                     consume(broker, "prof-100b", 1, n, 100))[1],
        }
        for phase in phases:
            if phase.startswith("consume"):  # fill first, outside the profile
                topic = "prof-1k" if phase == "consume-1k" else "prof-100b"
                fill(topic, 6 if topic == "prof-1k" else 1, v1k if topic == "prof-1k" else v100,
                     "none")
            print(profile_phase(phase, broker, work[phase], tmp, args.rate, args.top),
                  flush=True)
        print(f"broker CPU total {proc_cpu_seconds(broker.pid):.1f} s")
    finally:
        broker.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
