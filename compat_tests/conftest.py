"""Fixtures for compat tests: a fresh real broker (subprocess) and fresh names per test.

Broker configs for one test: ``@pytest.mark.broker_config(**{"auto.create.topics.enable":
"false"})``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from compat_tests.broker_process import BrokerProcess


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "broker_config(**overrides): broker --override values")
    # The multi-broker `cluster` fixture, with the session's ZooKeeper of tests/zk_fixtures.py
    # (one server for tests/ and compat_tests/). Imported here rather than by `pytest_plugins`,
    # which a conftest below the root may not set when pytest is run as `pytest .`.
    config.pluginmanager.import_plugin("compat_tests.cluster")


@pytest.fixture
def broker(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[BrokerProcess]:
    marker = request.node.get_closest_marker("broker_config")
    overrides = {k: str(v) for k, v in (marker.kwargs if marker else {}).items()}
    proc = BrokerProcess(tmp_path / "data", overrides)
    proc.start()
    try:
        yield proc
    finally:
        proc.close()
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            print(proc.log()[-5000:])


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    rep = yield
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep


@pytest.fixture
def topic_name() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def group_name() -> str:
    return f"g-{uuid.uuid4().hex[:12]}"
