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
  stopped and ``make test`` is this suite, so their targets are only dry-run).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)


def readme_blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text()) if lang == language]


def test_readme_has_the_examples_this_file_runs() -> None:
    assert len(readme_blocks("python")) >= 3
    assert len(readme_blocks("sh")) >= 3
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_PYKBROKER_SHIM = '''\
import os, signal, subprocess, sys, threading
from pykbroker.admin.verbs import VERBS

args = sys.argv[1:]
real = [sys.executable, "-m", "pykbroker"]
if args and args[0] in VERBS:
    sys.exit(subprocess.call([*real, *args, "--bootstrap-server", os.environ["README_BOOTSTRAP"]]))
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


@pytest.mark.parametrize("index", range(len(readme_blocks("sh"))))
def test_shell_block_runs_against_a_broker(index: int, tmp_path: Path, admin_broker: str) -> None:
    _shims(tmp_path / "bin")
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ,
           "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
           "README_BOOTSTRAP": admin_broker,
           "KAFKA_LISTENERS": f"PLAINTEXT://127.0.0.1:{_free_port()}",
           "KAFKA_LOG_DIRS": str(tmp_path / "data")}
    script = "set -euo pipefail\n" + readme_blocks("sh")[index]
    out = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, textwrap.indent(script, "  ") + out.stdout + out.stderr
