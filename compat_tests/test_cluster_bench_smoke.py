"""``benchmarks/cluster_bench.py --quick`` runs end to end, so the cluster benchmark cannot rot.

It starts its own ZooKeeper and three brokers; the figures of such a tiny run mean nothing and
are not checked, only that every section ran, the targets were judged and the exit code is 0
(a missed target is not a failure of the script).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pykbroker.metadata.zk.server import ZooKeeperNotFoundError, find_zookeeper

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "cluster_bench.py"


def test_quick_run_prints_tables_and_json() -> None:
    try:
        find_zookeeper()
    except ZooKeeperNotFoundError as exc:
        pytest.skip(str(exc))
    # 200 msg/s keeps the RF 3 latency run short however far behind the cluster falls.
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--e2e-rate", "200"],
                          capture_output=True, text=True, timeout=80)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    assert any("issue #15 target" in line for line in lines), proc.stdout
    result = json.loads(lines[-1])
    assert result["benchmark"] == "cluster"
    assert (result["brokers"], result["partitions"], result["value_bytes"]) == (3, 6, 1024)
    produce = {r["label"]: r for r in result["rows"] if r["section"] == "produce"}
    assert sorted(produce) == ["produce 1 KiB none 6p acks=all RF 1",
                               "produce 1 KiB none 6p acks=all RF 3"]
    for row in produce.values():
        (run,) = row["runs"]
        assert run["messages"] == 5000 and run["seconds"] > 0
    assert produce["produce 1 KiB none 6p acks=all RF 3"]["runs"][0]["min_isr_after"] == 3
    latency = {r["label"]: r for r in result["rows"] if r["section"] == "latency"}
    assert sorted(latency) == ["e2e RF 3, default fetch.wait.max.ms",
                               "e2e RF 3, fetch.wait.max.ms=10"]
    for row in latency.values():
        assert row["runs"][0]["samples"] == 200
        assert 0 < row["p50_ms"]["median"] <= row["p99_ms"]["median"]
    targets = result["targets"]
    assert len(targets) == 3
    assert all(isinstance(t["met"], bool) for t in targets)
