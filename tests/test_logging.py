"""Logging: Kafka's line format and levels, per-logger levels from flags and environment."""

from __future__ import annotations

import logging

import pytest

from pykbroker.cli import KafkaFormatter, setup_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    names = ["pykbroker", "pykbroker.request.logger", "pykbroker.broker", "custom"]
    levels = {n: logging.getLogger(n).level for n in names}
    yield None
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    for n, lvl in levels.items():
        logging.getLogger(n).setLevel(lvl)


def test_line_format() -> None:
    record = logging.LogRecord("pykbroker.broker", logging.WARNING, __file__, 1, "disk %s",
                               ("full",), None)
    line = KafkaFormatter().format(record)
    assert line.startswith("[") and line.endswith("] WARN disk full (pykbroker.broker)"[-33:])
    assert " WARN disk full (pykbroker.broker)" in line


def test_flag_sets_root_and_per_logger_levels() -> None:
    setup_logging("WARN,pykbroker.request.logger=DEBUG,custom=ERROR", env={})
    assert logging.getLogger().level == logging.WARNING
    assert logging.getLogger("pykbroker.request.logger").level == logging.DEBUG
    assert logging.getLogger("custom").level == logging.ERROR


def test_apache_kafka_image_environment() -> None:
    setup_logging("", env={"KAFKA_LOG4J_ROOT_LOGLEVEL": "ERROR",
                           "KAFKA_LOG4J_LOGGERS": "kafka.request.logger=TRACE,kafka=WARN"})
    assert logging.getLogger().level == logging.ERROR
    assert logging.getLogger("pykbroker.request.logger").level == logging.DEBUG
    assert logging.getLogger("pykbroker").level == logging.WARNING


def test_unknown_level_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        setup_logging("LOUD", env={})
