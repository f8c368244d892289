"""A real, throwaway standalone ZooKeeper for tests and the multi-broker test cluster.

Tests of the ZooKeeper layer never mock ZooKeeper: session expiry, ephemeral nodes and
conditional versions are exactly what a mock gets wrong. This module finds an installed
ZooKeeper (``$ZOOKEEPER_HOME``, then Debian's ``zookeeper`` package), runs
``QuorumPeerMain`` with ``java`` on a free loopback port with its own ``zoo.cfg`` and data
directory, waits until it serves, and removes every trace on stop. It imports neither kazoo
nor pytest, so the pytest fixtures and the ``kafka_cluster`` fixture can share it.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

from pykbroker.errors import PykbrokerError
from pykbroker.free_ports import free_port

__all__ = [
    "INSTALL_HINT",
    "ZooKeeperInstallation",
    "ZooKeeperNotFoundError",
    "ZooKeeperServer",
    "ZooKeeperStartError",
    "find_zookeeper",
    "four_letter_word",
]

INSTALL_HINT: Final = (
    "ZooKeeper is not installed: `make sysdeps` (or `apt-get install zookeeper`) installs "
    "Debian's package, or set ZOOKEEPER_HOME to an unpacked Apache ZooKeeper release"
)

DEBIAN_HOME: Final = Path("/usr/share/zookeeper")
DEBIAN_JAR: Final = Path("/usr/share/java/zookeeper.jar")
# Debian's zookeeper.jar lists its dependencies in its manifest but no SLF4J binding, so the
# server would log nothing; slf4j-simple (same package as slf4j-api) logs to stderr, which
# goes to the log file.
DEBIAN_LOG_BINDING: Final = Path("/usr/share/java/slf4j-simple.jar")
MAIN_CLASS: Final = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
FOUR_LETTER_WORDS: Final = "ruok,srvr,stat,mntr,cons,dump,wchs,conf,envi"
# Flags for a small, fast-starting JVM; ZooKeeper with a few test sessions needs little.
JVM_FLAGS: Final = (
    "-Xms32m",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
    "-Dzookeeper.admin.enableServer=false",
    "-Dzookeeper.jmx.log4j.disable=true",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS",
)
_LOG_TAIL_BYTES: Final = 4000
_PORT_ATTEMPTS: Final = 3


class ZooKeeperNotFoundError(PykbrokerError):
    """No ZooKeeper installation (or no ``java``) was found; the message says how to fix it."""


class ZooKeeperStartError(PykbrokerError):
    """The ZooKeeper process exited or did not serve in time; the message has its log tail."""


@dataclass(frozen=True)
class ZooKeeperInstallation:
    """What it takes to run one: the ``java`` binary and the class path."""

    java: str
    classpath: tuple[str, ...]
    source: str  # where it was found, for messages


def _jars_from_debian_env(env_file: Path) -> list[str]:
    """The jars of ``CLASSPATH="..."`` in Debian's ``zkEnv.sh`` (its conf/environment).

    Only jars are kept: the conf directory there holds a log4j.properties that logs to
    /var/log/zookeeper, which a test server must not touch.
    """
    try:
        text = env_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    match = re.search(r'^\s*CLASSPATH="?([^"\n]*)"?\s*$', text, re.MULTILINE)
    if match is None:
        return []
    return [p for p in match.group(1).split(":") if p.endswith(".jar") and Path(p).is_file()]


def _installation_at(home: Path, java: str) -> ZooKeeperInstallation | None:
    """An upstream release (``lib/*.jar`` plus ``conf/`` for its logback.xml) or Debian's layout."""
    lib_jars = sorted(str(p) for p in (home / "lib").glob("*.jar"))
    root_jars = sorted(str(p) for p in home.glob("zookeeper-*.jar"))  # 3.4-style releases
    jars = root_jars + lib_jars
    if any(Path(j).name.startswith("zookeeper-") for j in jars):
        conf = [str(home / "conf")] if (home / "conf").is_dir() else []
        return ZooKeeperInstallation(java, tuple(jars + conf), str(home))
    debian_jars = _jars_from_debian_env(home / "bin" / "zkEnv.sh")
    if not debian_jars and DEBIAN_JAR.is_file() and (home / "bin" / "zkServer.sh").exists():
        debian_jars = [str(DEBIAN_JAR)]
    if debian_jars:
        if DEBIAN_LOG_BINDING.is_file():
            debian_jars.append(str(DEBIAN_LOG_BINDING))
        return ZooKeeperInstallation(java, tuple(debian_jars), str(home))
    return None


def _find_java(env: Mapping[str, str]) -> str | None:
    java_home = env.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    return shutil.which("java", path=env.get("PATH", os.defpath))


def find_zookeeper(
    env: Mapping[str, str] | None = None, *, fallback_homes: tuple[Path, ...] = (DEBIAN_HOME,)
) -> ZooKeeperInstallation:
    """``$ZOOKEEPER_HOME`` first, then Debian's ``/usr/share/zookeeper``; raises with a hint."""
    env = os.environ if env is None else env
    java = _find_java(env)
    if java is None:
        raise ZooKeeperNotFoundError("no `java` on PATH (or in $JAVA_HOME); ZooKeeper needs one")
    candidates = [Path(env["ZOOKEEPER_HOME"])] if env.get("ZOOKEEPER_HOME") else []
    candidates += fallback_homes
    for home in candidates:
        found = _installation_at(home, java)
        if found is not None:
            return found
    raise ZooKeeperNotFoundError(f"{INSTALL_HINT} (looked in {', '.join(map(str, candidates))})")


def four_letter_word(host: str, port: int, word: str, timeout: float = 2.0) -> str:
    """Send one of ZooKeeper's four-letter commands and return its whole answer."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(word.encode("ascii"))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


_live_servers: weakref.WeakSet[ZooKeeperServer] = weakref.WeakSet()


@atexit.register
def _stop_live_servers() -> None:
    """A test run that dies between start and stop still leaves no ZooKeeper behind."""
    for server in list(_live_servers):
        server.stop()


class ZooKeeperServer:
    """One standalone ZooKeeper process; a context manager (``with ZooKeeperServer() as zk``).

    Sessions may last from two ticks (1 s at the default ``tick_time_ms``) to
    ``max_session_timeout_ms``, so Kafka's default 18 s is granted and a test can still ask
    for a short one to see a broker's session expire quickly.
    """

    def __init__(
        self,
        *,
        installation: ZooKeeperInstallation | None = None,
        host: str = "127.0.0.1",
        tick_time_ms: int = 500,
        max_session_timeout_ms: int = 60_000,
        startup_timeout: float = 30.0,
    ) -> None:
        self.installation = installation
        self.host = host
        self.tick_time_ms = tick_time_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.startup_timeout = startup_timeout
        self.port = 0
        self.directory: Path | None = None
        self.startup_seconds = 0.0
        self.version = ""
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def hosts(self) -> str:
        """The connect string, ``127.0.0.1:<port>`` (append ``/chroot`` for a chroot)."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def log_path(self) -> Path | None:
        return None if self.directory is None else self.directory / "zookeeper.log"

    def __enter__(self) -> ZooKeeperServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start and wait until the server answers ``srvr`` as a standalone server."""
        if self._process is not None:
            raise RuntimeError("ZooKeeper server already started")
        installation = self.installation or find_zookeeper()
        self.directory = Path(tempfile.mkdtemp(prefix="pykbroker-zk-"))
        _live_servers.add(self)
        began = time.monotonic()
        try:
            for attempt in range(_PORT_ATTEMPTS):
                self.port = free_port(self.host)
                self._spawn(installation)
                if self._wait_until_serving(began, last_attempt=attempt == _PORT_ATTEMPTS - 1):
                    break
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def _write_config(self) -> Path:
        assert self.directory is not None
        data_dir = self.directory / "data"
        data_dir.mkdir(exist_ok=True)
        config = self.directory / "zoo.cfg"
        config.write_text(
            "\n".join(
                [
                    f"tickTime={self.tick_time_ms}",
                    "initLimit=10",
                    "syncLimit=5",
                    f"dataDir={data_dir}",
                    f"clientPort={self.port}",
                    f"clientPortAddress={self.host}",
                    "maxClientCnxns=0",
                    f"maxSessionTimeout={self.max_session_timeout_ms}",
                    "admin.enableServer=false",
                    f"4lw.commands.whitelist={FOUR_LETTER_WORDS}",
                    # Throwaway data: no fsync per write, small preallocated logs.
                    "forceSync=no",
                    "preAllocSize=4096",
                    "autopurge.purgeInterval=0",
                    "",
                ]
            ),
            encoding="utf-8",
        )
        return config

    def _spawn(self, installation: ZooKeeperInstallation) -> None:
        assert self.directory is not None and self.log_path is not None
        config = self._write_config()
        argv = [
            installation.java,
            *JVM_FLAGS,
            f"-Dzookeeper.log.dir={self.directory}",
            "-cp",
            os.pathsep.join(installation.classpath),
            MAIN_CLASS,
            str(config),
        ]
        with open(self.log_path, "wb") as log:  # each attempt starts a fresh log
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,  # its own process group, killed whole on stop
            )

    def _wait_until_serving(self, began: float, *, last_attempt: bool) -> bool:
        """True once serving; False if it lost the port race and may retry on another port."""
        assert self._process is not None
        deadline = began + self.startup_timeout
        while True:
            if self._process.poll() is not None:
                tail = self._log_tail()
                self._kill()
                if "Address already in use" in tail and not last_attempt:
                    return False
                raise ZooKeeperStartError(
                    f"ZooKeeper exited with status {self._process.returncode}; log:\n{tail}"
                )
            try:
                answer = four_letter_word(self.host, self.port, "srvr", timeout=1.0)
            except OSError:
                answer = ""
            if "Mode: standalone" in answer:
                match = re.search(r"Zookeeper version: ([0-9][0-9.]*)", answer)
                self.version = match.group(1) if match else ""
                return True
            if time.monotonic() > deadline:
                raise ZooKeeperStartError(
                    f"ZooKeeper did not serve on {self.hosts} within {self.startup_timeout} s; "
                    f"log:\n{self._log_tail()}"
                )
            time.sleep(0.02)

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()[-_LOG_TAIL_BYTES:]
        return data.decode("utf-8", errors="replace")

    def _kill(self, graceful: bool = True) -> None:
        """SIGTERM the process group (unless not ``graceful``), SIGKILL it after 10 s, and
        reap the JVM."""
        process = self._process
        if process is None:
            return
        # Until it is reaped the JVM's pid (= its group id) cannot be reused, so killpg
        # reaches only the group we started.
        for sig in (signal.SIGTERM, signal.SIGKILL) if graceful else (signal.SIGKILL,):
            if process.poll() is not None:
                return
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=10.0)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop(self, graceful: bool = True) -> None:
        """Kill the server's process group and remove its directory; safe to call twice.
        Not ``graceful``: SIGKILL at once (the data is thrown away anyway; a loaded
        machine's JVM may take seconds over its SIGTERM)."""
        self._kill(graceful)
        self._process = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
        _live_servers.discard(self)
