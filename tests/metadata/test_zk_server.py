"""The ZooKeeper test-server helper: finds the installation, serves, and leaves nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pykbroker.metadata.zk.server import (
    INSTALL_HINT,
    ZooKeeperInstallation,
    ZooKeeperNotFoundError,
    ZooKeeperServer,
    ZooKeeperStartError,
    find_zookeeper,
    four_letter_word,
)


def _installation() -> ZooKeeperInstallation:
    try:
        return find_zookeeper()
    except ZooKeeperNotFoundError as exc:
        pytest.skip(str(exc))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_starts_answers_and_stops_without_leftovers() -> None:
    server = ZooKeeperServer(installation=_installation())
    with server:
        assert server.pid is not None and server.directory is not None
        pid, directory = server.pid, server.directory
        assert os.getpgid(pid) == pid  # its own process group, killed whole
        assert four_letter_word(server.host, server.port, "ruok") == "imok"
        assert "Mode: standalone" in four_letter_word(server.host, server.port, "srvr")
        assert server.version.startswith("3.")
        assert 0 < server.startup_seconds < server.startup_timeout
        assert server.log_path is not None and server.log_path.stat().st_size > 0
        assert "tickTime=500" in (directory / "zoo.cfg").read_text()
    assert not _process_exists(pid)
    assert not directory.exists()
    assert server.pid is None and server.directory is None
    with pytest.raises(OSError):
        four_letter_word(server.host, server.port, "ruok", timeout=0.5)
    server.stop()  # stopping twice is harmless


def test_a_server_that_cannot_start_reports_its_log(tmp_path: Path) -> None:
    installation = _installation()
    broken = ZooKeeperInstallation(installation.java, (str(tmp_path / "missing.jar"),), "nowhere")
    server = ZooKeeperServer(installation=broken, startup_timeout=20)
    with pytest.raises(ZooKeeperStartError, match="QuorumPeerMain"):
        server.start()
    assert server.directory is None and server.pid is None


def test_not_installed_says_how_to_install(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "ZOOKEEPER_HOME": str(tmp_path)}
    with pytest.raises(ZooKeeperNotFoundError) as info:
        find_zookeeper(env, fallback_homes=())
    assert INSTALL_HINT in str(info.value) and "make sysdeps" in str(info.value)
    with pytest.raises(ZooKeeperNotFoundError, match="java"):
        find_zookeeper({"PATH": str(tmp_path)})


def test_zookeeper_home_with_an_upstream_layout(tmp_path: Path) -> None:
    installation = _installation()
    (tmp_path / "lib").mkdir()
    (tmp_path / "conf").mkdir()
    for jar in ("zookeeper-3.8.4.jar", "zookeeper-jute-3.8.4.jar", "logback-classic-1.2.13.jar"):
        (tmp_path / "lib" / jar).touch()
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "JAVA_HOME")}
    found = find_zookeeper({**env, "ZOOKEEPER_HOME": str(tmp_path)})
    assert found.java == installation.java
    assert found.source == str(tmp_path)
    assert found.classpath[-1] == str(tmp_path / "conf")
    assert str(tmp_path / "lib" / "zookeeper-3.8.4.jar") in found.classpath


def test_session_fixture_server_is_shared(zookeeper_server: ZooKeeperServer) -> None:
    assert four_letter_word(zookeeper_server.host, zookeeper_server.port, "ruok") == "imok"
