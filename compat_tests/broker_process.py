"""A real pykbroker started as a subprocess (``python -m pykbroker``) on a free port.

Each compat test gets its own broker and data directory; restarts keep both, so tests can
check durability across SIGTERM and SIGKILL.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

READY_MARK = "ready in"
_LISTENER = re.compile(r"listener\s+PLAINTEXT \S+:(\d+) ->")


class BrokerProcess:
    def __init__(self, data_dir: Path, overrides: dict[str, str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        # 0 until the first start: the broker binds a free port itself (no race with other
        # processes) and the banner tells which; restarts reuse that port.
        self.port = 0
        self.overrides = dict(overrides or {})
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-broker.log"
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        args = [sys.executable, "-m", "pykbroker",
                "--override", f"listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "--override", f"log.dirs={self.data_dir}"]
        for key, value in self.overrides.items():
            args += ["--override", f"{key}={value}"]
        return args

    def start(self, timeout: float = 30.0) -> BrokerProcess:
        assert self.proc is None, "already running"
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n===== start #{self.starts} =====\n".encode())
        log.flush()
        env = {**os.environ, **self.env}
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}:\n{self.log()}")
            current = self.log().rsplit("===== start", 1)[-1]
            if READY_MARK in current and (self.port or _LISTENER.search(current)):
                if not self.port:
                    match = _LISTENER.search(current)
                    assert match is not None
                    self.port = int(match.group(1))
                return self
            time.sleep(0.05)
        raise TimeoutError(f"broker not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send ``sig`` and wait; returns the exit code (negative for a killing signal)."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        return code

    def kill(self) -> int:
        return self.stop(signal.SIGKILL)

    def restart(self, sig: int = signal.SIGTERM) -> BrokerProcess:
        self.stop(sig)
        return self.start()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
