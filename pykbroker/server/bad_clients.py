"""Rate-limited WARN lines about misbehaving clients (bad frames, refused connections)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class BadClientLog:
    """WARN lines about misbehaving clients, at most one per client address (host) per
    ``interval_s``: the events in between are logged at DEBUG only and counted, and the next
    WARN line for that address says how many were suppressed. A flood of bad frames from one
    host costs a line per interval, not one per connection."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0, *,
                 clock: Callable[[], float] = time.monotonic,
                 max_addresses: int = 10_000, level: int = logging.WARNING) -> None:
        """``level``: the level of the lines that are not suppressed (WARN by default; INFO
        for refusals Kafka logs at INFO, such as a connection over max.connections.per.ip)."""
        self.logger = logger
        self.level = level
        self.interval_s = interval_s
        self.clock = clock
        self.max_addresses = max_addresses
        self._seen: dict[str, list[float]] = {}  # host -> [time of its last WARN, suppressed]

    def warn(self, peer: str, msg: str, *args: object) -> bool:
        """Log ``msg % args`` at WARN unless ``peer``'s host had a WARN line less than
        ``interval_s`` ago; True when it was logged at WARN."""
        host = _host_of(peer)
        now = self.clock()
        entry = self._seen.get(host)
        if entry is not None and now - entry[0] < self.interval_s:
            entry[1] += 1
            self.logger.debug(msg, *args)
            return False
        suppressed = int(entry[1]) if entry is not None else 0
        if entry is None and len(self._seen) >= self.max_addresses:
            self._forget(now)
        self._seen[host] = [now, 0]
        if suppressed:
            self.logger.log(self.level,
                            msg + " (%d more from %s in the last %.0f s not logged)",
                            *args, suppressed, host, now - entry[0] if entry else 0.0)
        else:
            self.logger.log(self.level, msg, *args)
        return True

    def _forget(self, now: float) -> None:
        """Drop the addresses quiet for an interval (all of them if none is), with one line
        for the events of theirs never reported."""
        stale = [h for h, (t, _) in self._seen.items() if now - t >= self.interval_s]
        dropped = stale or list(self._seen)
        lost = sum(int(self._seen.pop(h)[1]) for h in dropped)
        if lost:
            self.logger.log(self.level, "%d more events from %d client addresses not logged",
                            lost, len(dropped))


def _host_of(peer: str) -> str:
    host, sep, port = peer.rpartition(":")
    return host if sep and port.isdigit() else peer


# For connections made without a server's own; the connection module's logger, whose
# name operators filter on.
BAD_CLIENTS = BadClientLog(logging.getLogger("pykbroker.server.connection"))
