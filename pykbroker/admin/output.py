"""Output: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO


def table(headers: Sequence[str], rows: Sequence[Sequence[object]],
          out: TextIO | None = None) -> None:
    """Print ``rows`` under ``headers`` in left-aligned columns."""
    out = out or sys.stdout
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r]
                                            for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")


def emit_json(data: Any, out: TextIO | None = None, indent: int | None = 2) -> None:
    out = out or sys.stdout
    out.write(json.dumps(data, indent=indent, default=str) + "\n")


def text(data: bytes | None) -> str | None:
    """Bytes as text for display (invalid UTF-8 kept as escapes)."""
    return None if data is None else data.decode("utf-8", errors="backslashreplace")


def error(message: str) -> None:
    print(f"pykbroker: {message}", file=sys.stderr)
