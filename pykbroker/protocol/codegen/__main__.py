"""``python -m pykbroker.protocol.codegen [--check]``: regenerate or verify the codecs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pykbroker.protocol.codegen.generate import check, write
from pykbroker.protocol.codegen.schema import default_specs_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pykbroker.protocol.codegen")
    parser.add_argument("--specs", type=Path, default=default_specs_dir())
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "_generated"
    )
    parser.add_argument("--check", action="store_true", help="fail if the output is stale")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.specs, args.out)
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print("generated code is stale: run `make gen`", file=sys.stderr)
            return 1
        return 0
    write(args.specs, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
