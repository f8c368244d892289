"""Cluster metadata behind one seam: ZooKeeper's znodes in ``zk/`` (Kafka's ZK-mode layout).

Only ``pykbroker.metadata.zk`` may import kazoo, and within it only the modules that talk to a
ZooKeeper ensemble; the znode codecs are pure functions over bytes.
"""
