"""Where a broker keeps its client quotas: one file beside its other metadata, in the first log
directory (its presence tells a broker at start-up that quotas were ever set)."""

from __future__ import annotations

FILE_NAME = "pykbroker-client-quotas.json"
