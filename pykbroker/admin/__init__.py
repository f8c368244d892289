"""``pykbroker topics|groups|produce|consume|healthcheck|api-versions``: admin tools.

They mirror ``kafka-topics.sh``, ``kafka-consumer-groups.sh`` and ``kcat`` and speak the
Kafka protocol through pykbroker's own codecs, so they work against any Kafka broker.
"""

from pykbroker.admin.client import AdminClient, KafkaError
from pykbroker.admin.main import main

__all__ = ["AdminClient", "KafkaError", "main"]
