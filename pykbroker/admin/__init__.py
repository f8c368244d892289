"""``pykbroker topics|groups|produce|consume|healthcheck|api-versions``: admin tools.

They mirror ``kafka-topics.sh``, ``kafka-consumer-groups.sh`` and ``kcat`` and speak the
Kafka protocol through pykbroker's own codecs, so they work against any Kafka broker.
The names below load on first use, so ``pykbroker --help`` can read :mod:`.verbs` alone.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AdminClient", "KafkaError", "main"]


def __getattr__(name: str) -> Any:
    if name in ("AdminClient", "KafkaError"):
        from pykbroker.admin import client

        return getattr(client, name)
    if name == "main":
        from pykbroker.admin.main import main

        return main
    raise AttributeError(name)
