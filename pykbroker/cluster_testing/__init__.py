"""A real multi-broker cluster for tests, with fault controls: see :mod:`.cluster`.

``from pykbroker.cluster_testing import open_cluster, KafkaCluster`` (also exported by
:mod:`pykbroker.testing`); the pytest fixture is ``kafka_cluster`` (pykbroker's plugin).
The names are imported on first use: :mod:`pykbroker.testing` imports
:mod:`.faults` from this package without loading the cluster harness.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pykbroker.cluster_testing.cluster import (
        ClusterError,
        KafkaCluster,
        open_cluster,
        open_cluster_async,
    )
    from pykbroker.cluster_testing.proxy import FaultLink

__all__ = ["ClusterError", "FaultLink", "KafkaCluster", "open_cluster", "open_cluster_async"]


def __getattr__(name: str) -> Any:
    if name == "FaultLink":
        from pykbroker.cluster_testing import proxy

        return proxy.FaultLink
    if name in __all__:
        from pykbroker.cluster_testing import cluster

        return getattr(cluster, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
