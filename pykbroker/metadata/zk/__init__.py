"""ZooKeeper as Kafka 3.9 in ZK mode uses it: one module per znode family, with Kafka's paths
and JSON forms (``kafka.zk.ZkData``), and a helper that runs a real ZooKeeper for tests.

Importing this package never imports kazoo: the codecs need none, and ``server`` only starts
a ``java`` process.
"""
