"""The pykbroker command: config sources, bad values stop start-up, unknown keys warn."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from compat_tests.broker_process import BrokerProcess


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pykbroker", *args], capture_output=True,
                          text=True, timeout=30, env={**os.environ, **(env or {})})


def test_bad_value_is_an_error_naming_key_and_value(tmp_path: Path) -> None:
    result = _run("--override", "num.partitions=abc", "--override", f"log.dirs={tmp_path}")
    assert result.returncode == 2
    assert "num.partitions" in result.stderr and "abc" in result.stderr


def test_bad_value_from_the_environment(tmp_path: Path) -> None:
    result = _run("--override", f"log.dirs={tmp_path}", env={"KAFKA_NUM_PARTITIONS": "0"})
    assert result.returncode == 2
    assert "num.partitions" in result.stderr and "KAFKA_NUM_PARTITIONS" in result.stderr


@pytest.mark.timeout(60)
def test_file_env_and_overrides_with_banner(tmp_path: Path) -> None:
    props = tmp_path / "server.properties"
    props.write_text("num.partitions=2\nlog.retention.hour=5\n")
    broker = BrokerProcess(tmp_path / "data", {"default.replication.factor": "1"},
                           env={"KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false"})
    broker.command = lambda: [  # type: ignore[method-assign]
        sys.executable, "-m", "pykbroker", str(props),
        "--override", "listeners=PLAINTEXT://127.0.0.1:0",
        "--override", f"log.dirs={broker.data_dir}"]
    broker.start()
    try:
        log = broker.log()
        # Unknown key: a warning that names it and the closest known key.
        assert "log.retention.hour" in log and "log.retention.hours" in log
        assert "cluster id" in log and str(broker.data_dir) in log
        assert str(props) in log and "KAFKA_AUTO_CREATE_TOPICS_ENABLE" in log
        from confluent_kafka.admin import AdminClient, ConfigResource

        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        res = admin.describe_configs([ConfigResource("broker", "1")])
        configs = next(iter(res.values())).result(10)
        assert configs["num.partitions"].value == "2"
        assert configs["auto.create.topics.enable"].value == "false"
        assert broker.stop() == 0
    finally:
        broker.close()


def test_signals_during_shutdown_do_not_cut_it_short(tmp_path: Path) -> None:
    """SIGTERM after SIGTERM (an impatient supervisor, Ctrl-C twice): the first starts the
    shutdown, the others are logged and ignored, the broker still exits 0 after completing it."""
    import signal
    import time

    broker = BrokerProcess(tmp_path / "data").start()
    try:
        assert broker.proc is not None
        proc = broker.proc
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        while proc.poll() is None and time.monotonic() < deadline:
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.002)
        assert proc.wait(5) == 0, broker.log()[-3000:]
        # (The signals that arrive during the shutdown are logged as "already shutting
        # down"; an empty broker's shutdown may be over before the second one.)
        assert "shut down completed" in broker.log()
    finally:
        broker.close()
