"""Build hook: compile the records walk's hot loop with mypyc when a C compiler is there.

Everything else is in pyproject.toml. ``pykbroker/records/record_walk.py`` is plain typed
Python; compiled, the produce path's check of compressed batches costs ~30 times less per
record (issue #18). The extension is optional: without a compiler (the slim Docker image),
or with ``PYKBROKER_PURE_PYTHON=1``, the package installs as pure Python and imports the
source module instead.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup

COMPILED = ["pykbroker/records/record_walk.py"]


def _extensions() -> list[object]:
    if os.environ.get("PYKBROKER_PURE_PYTHON") == "1":
        return []
    try:
        from mypyc.build import mypycify

        extensions = mypycify(COMPILED, opt_level="3")
    except Exception as exc:  # no mypyc in the build environment, or it failed
        print(f"pykbroker: installing without compiled modules ({exc})", file=sys.stderr)
        return []
    for ext in extensions:
        ext.optional = True  # a failed compile (no gcc) leaves the pure Python module
    return list(extensions)


setup(ext_modules=_extensions())
