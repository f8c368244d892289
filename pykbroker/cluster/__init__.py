"""Topology and partitions: topic metadata, partition state, the replica manager."""
