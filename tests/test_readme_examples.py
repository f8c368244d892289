"""Every Python and shell example in README.md runs, so the README cannot drift from the code.

* Python blocks are copied, as written, into a test file of their own and run by a separate
  ``pytest`` against the installed plugin (which provides ``kafka_broker`` and friends).
* Shell blocks run in bash (``-e``, ``pipefail``) with a real broker subprocess on a free
  port. Three shims on ``PATH`` stand in for what only a user's machine has: ``pykbroker``
  adds ``--bootstrap-server`` to admin verbs (the README's commands use the default
  ``localhost:9092``, which tests never take); a broker start is run for real, with
  ``KAFKA_LISTENERS`` / ``KAFKA_LOG_DIRS`` from the environment, until it serves Metadata, then
  stopped with SIGTERM and its exit code returned; ``python -m pykbroker`` goes to the same
  shim; ``make`` runs ``make -n`` in the repository (``make run`` is a broker that runs until
  stopped and ``make test`` is this suite, so their targets are only dry-run). An admin
  command that names its own ``--bootstrap-server`` keeps it.
* A shell block that sets ``zookeeper.connect`` is the README's cluster: it runs for real, with
  Debian's ZooKeeper (``/usr/share/zookeeper/bin/zkServer.sh``; skipped with the install hint
  when absent) and three brokers that it starts in the background itself. For it the
  ``pykbroker`` shim execs a broker start that sets ``zookeeper.connect`` (the broker
  runs until stopped, as in a user's terminal), and the test gives the block's well-known ports
  (2181 for ZooKeeper, 9092-9094 for the brokers) free ones instead, replacing them in the
  block's text. Every block runs with an EXIT trap that SIGKILLs the background jobs it
  leaves, and in a session of its own that is killed after a timeout, so nothing outlives it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pykbroker.free_ports import free_port as _free_port
from pykbroker.metadata.zk.server import INSTALL_HINT

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)
CLUSTER_MARK = "zookeeper.connect="
ZK_SERVER_SH = Path("/usr/share/zookeeper/bin/zkServer.sh")
WELL_KNOWN_PORTS = re.compile(r"\b(2181|9092|9093|9094)\b")
# Kills what a block left running in the background when it ends, however it ends.
EXIT_TRAP = "trap 'kill -9 $(jobs -p) 2>/dev/null || true; wait || true' EXIT\n"


def readme_blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text()) if lang == language]


def broker_blocks() -> list[str]:
    """Shell blocks run against the shared single broker."""
    return [b for b in readme_blocks("sh") if CLUSTER_MARK not in b]


def cluster_blocks() -> list[str]:
    """Shell blocks that start a ZooKeeper cluster of their own."""
    return [b for b in readme_blocks("sh") if CLUSTER_MARK in b]


def test_readme_has_the_examples_this_file_runs() -> None:
    assert len(readme_blocks("python")) >= 3
    assert len(broker_blocks()) >= 3
    assert len(cluster_blocks()) >= 1
    assert {lang for lang, _ in FENCE.findall(README.read_text())} <= {"python", "sh"}, (
        "a README block in another language would not be run: add it here")


@pytest.mark.parametrize("index", range(len(readme_blocks("python"))))
def test_python_block_passes_in_a_users_test_file(index: int, tmp_path: Path) -> None:
    code = readme_blocks("python")[index]
    (tmp_path / f"test_readme_{index}.py").write_text(code)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    tests = len(re.findall(r"^def test_", code, re.M))
    assert tests >= 1
    assert re.search(rf"\b{tests} passed\b", out.stdout), out.stdout
    assert "skipped" not in out.stdout


_PYKBROKER_SHIM = '''\
import os, signal, subprocess, sys, threading
from pykbroker.admin.verbs import VERBS

args = sys.argv[1:]
real = [sys.executable, "-m", "pykbroker"]
if args and args[0] in VERBS:
    if "--bootstrap-server" in args:
        sys.exit(subprocess.call([*real, *args]))
    sys.exit(subprocess.call([*real, *args, "--bootstrap-server", os.environ["README_BOOTSTRAP"]]))
if any("zookeeper.connect=" in a for a in args):  # a cluster member: runs until stopped
    os.execv(sys.executable, [*real, *args])
proc = subprocess.Popen([*real, *args], stderr=subprocess.PIPE, text=True)
served = threading.Event()

def relay():
    for line in proc.stderr:
        sys.stderr.write(line)
        if line.startswith("  config from "):  # the banner's last line: listeners are up
            served.set()
    served.set()

threading.Thread(target=relay, daemon=True).start()
if not served.wait(60) or proc.poll() is not None:
    proc.kill()
    sys.exit(f"shim: the broker did not start (exit code {proc.wait()})")
port = os.environ["KAFKA_LISTENERS"].rsplit(":", 1)[1]
check = subprocess.call([*real, "healthcheck", "--bootstrap-server", f"127.0.0.1:{port}"])
proc.send_signal(signal.SIGTERM)
code = proc.wait(60)
sys.exit(check or code)
'''

_PYTHON_SHIM = '''\
import os, sys
args = sys.argv[1:]
if args[:2] == ["-m", "pykbroker"]:
    os.execv(sys.executable, [sys.executable, os.path.join(os.path.dirname(__file__),
                                                           "pykbroker"), *args[2:]])
os.execv(sys.executable, [sys.executable, *args])
'''


def _shims(bin_dir: Path) -> None:
    bin_dir.mkdir()
    for name, body in (("pykbroker", _PYKBROKER_SHIM), ("python", _PYTHON_SHIM)):
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n{body}")
        path.chmod(0o755)
    make = bin_dir / "make"
    make.write_text(f"#!/bin/sh\nexec /usr/bin/make -n -C {ROOT} \"$@\"\n")
    make.chmod(0o755)


@pytest.fixture(scope="module")
def admin_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The broker the README's admin commands talk to: a real subprocess on a free port."""
    data = tmp_path_factory.mktemp("readme-broker")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pykbroker", "--override", f"listeners=PLAINTEXT://127.0.0.1:{port}",
         "--override", f"log.dirs={data}", "--override", "group.initial.rebalance.delay.ms=0"],
        stderr=subprocess.DEVNULL,
    )
    bootstrap = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while subprocess.call([sys.executable, "-m", "pykbroker", "healthcheck",
                               "--bootstrap-server", bootstrap, "--request-timeout", "2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
            assert proc.poll() is None and time.monotonic() < deadline, "broker did not start"
            time.sleep(0.2)
        yield bootstrap
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def _run_block(script: str, cwd: Path, env: dict[str, str], timeout: float
               ) -> tuple[int, str]:
    """Run ``script`` in bash (-e, pipefail, the EXIT trap) in a session of its own; the exit
    code and the output. After ``timeout`` the whole session is killed and the test fails."""
    full = "set -euo pipefail\n" + EXIT_TRAP + script
    proc = subprocess.Popen(["bash", "-c", full], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"timed out after {timeout} s:\n{textwrap.indent(full, '  ')}{out}"
                    f"{_log_tails(cwd)}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, textwrap.indent(full, "  ") + out + _log_tails(cwd)


def _log_tails(cwd: Path, lines: int = 30) -> str:
    """The last lines of each log a block left in ``cwd`` (a broker's or ZooKeeper's stderr):
    what a failure message needs to say why a server never came up."""
    parts = []
    for log in sorted(cwd.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {log.name} (last {len(tail)} lines)\n" + "\n".join(tail))
    return "\n" + "\n".join(parts) if parts else ""


@pytest.mark.parametrize("index", range(len(broker_blocks())))
def test_shell_block_runs_against_a_broker(index: int, tmp_path: Path, admin_broker: str) -> None:
    _shims(tmp_path / "bin")
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ,
           "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
           "README_BOOTSTRAP": admin_broker,
           "KAFKA_LISTENERS": f"PLAINTEXT://127.0.0.1:{_free_port()}",
           "KAFKA_LOG_DIRS": str(tmp_path / "data")}
    code, out = _run_block(broker_blocks()[index], work, env, 240)
    assert code == 0, out


@pytest.mark.cluster
@pytest.mark.parametrize("index", range(len(cluster_blocks())))
def test_cluster_block_runs(index: int, tmp_path: Path) -> None:
    if not ZK_SERVER_SH.exists():
        pytest.skip(INSTALL_HINT)
    _shims(tmp_path / "bin")
    work = tmp_path / "work"
    work.mkdir()
    ports: dict[str, int] = {}

    def free_port_for(well_known: str) -> int:
        while well_known not in ports:
            port = _free_port()
            if port not in ports.values():
                ports[well_known] = port
        return ports[well_known]

    script = WELL_KNOWN_PORTS.sub(lambda m: str(free_port_for(m[1])), cluster_blocks()[index])
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    env.update({"PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                # An admin command without --bootstrap-server must not find some other broker.
                "README_BOOTSTRAP": f"127.0.0.1:{_free_port()}"})
    code, out = _run_block(script, work, env, 120)
    assert code == 0, out
    assert set(ports) == {"2181", "9092", "9093", "9094"}, "the block's ports changed: update "\
        "WELL_KNOWN_PORTS"
