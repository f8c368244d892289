"""Only ``pykbroker.metadata.zk`` may import kazoo (ARCHITECTURE.md), and its codecs and test
server need none: importing them must not load kazoo's threads and handlers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pykbroker

PACKAGE = Path(pykbroker.__file__).resolve().parent
ZK_PACKAGE = PACKAGE / "metadata" / "zk"


def _imports_kazoo(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        if any(name == "kazoo" or name.startswith("kazoo.") for name in names):
            return True
    return False


def test_only_metadata_zk_imports_kazoo() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if _imports_kazoo(path) and ZK_PACKAGE not in path.parents
    ]
    assert offenders == []


# Modules built on the kazoo client: they load kazoo by design.
_CLIENT_LAYER = {"client", "kafka_zk", "cluster_store"}


def test_codecs_and_server_load_without_kazoo() -> None:
    """Every module of ``metadata/zk`` below the client (the codecs, the test server) must not
    pull kazoo in through another."""
    modules = sorted(
        f"pykbroker.metadata.zk.{p.stem}"
        for p in ZK_PACKAGE.glob("*.py")
        if p.stem != "__init__" and p.stem not in _CLIENT_LAYER and not _imports_kazoo(p)
    )
    assert "pykbroker.metadata.zk.server" in modules
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "assert not [m for m in sys.modules if m.split('.')[0] == 'kazoo'], 'kazoo loaded'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
