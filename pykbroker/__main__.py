"""``python -m pykbroker``."""

import sys

from pykbroker.cli import main

sys.exit(main())
