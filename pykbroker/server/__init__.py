"""The network layer: listeners, connections, and the dispatch table of API handlers."""
