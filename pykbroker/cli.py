"""The ``pykbroker`` command.

The network broker is built on top of the protocol layer (issue 4); until then the command
reports what this build contains instead of pretending to serve.
"""

from __future__ import annotations

import argparse
import sys

from pykbroker import __version__
from pykbroker.protocol.api import APIS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pykbroker", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pykbroker {__version__}")
    parser.parse_args(argv)
    print(
        f"pykbroker {__version__}: protocol codecs for {len(APIS)} Kafka APIs are built; "
        "the network broker is not implemented yet, so nothing is listening.",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
