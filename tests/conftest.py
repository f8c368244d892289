"""Fixtures shared by every test directory under ``tests/``."""

pytest_plugins = ["tests.zk_fixtures"]
