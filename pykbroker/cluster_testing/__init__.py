"""A real multi-broker cluster for tests, with fault controls: see :mod:`.cluster`.

``from pykbroker.cluster_testing import open_cluster, KafkaCluster`` (also exported by
:mod:`pykbroker.testing`); the pytest fixture is ``kafka_cluster`` (pykbroker's plugin).
"""

from pykbroker.cluster_testing.cluster import (
    ClusterError,
    KafkaCluster,
    open_cluster,
    open_cluster_async,
)
from pykbroker.cluster_testing.proxy import FaultLink

__all__ = ["ClusterError", "FaultLink", "KafkaCluster", "open_cluster", "open_cluster_async"]
