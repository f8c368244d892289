"""Free TCP ports for servers that a test, benchmark or cluster harness starts in another process.

Binding port 0 and closing the socket hands out a port from the kernel's ephemeral range, the
range every outgoing connection on the machine takes its source port from: between that close
and the server's own bind (a broker's start, a JVM's: up to seconds) any ``connect()`` may take
the port, and the server dies with "Address already in use". Ports here are drawn at random
below that range, where only an explicit bind can land, and each is handed out once per
process while it is among the recent ones.
"""

from __future__ import annotations

import random
import socket
import threading

EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
LOWEST_PORT = 10_000
_RECENT = 4_096  # ports remembered as handed out (a run's servers are long gone after that)
_ATTEMPTS = 256

_lock = threading.Lock()
_recent: dict[int, None] = {}  # insertion-ordered: the oldest is forgotten first
_random = random.SystemRandom()  # untouched by a test's random.seed()


def ephemeral_range_start(path: str = EPHEMERAL_RANGE_FILE) -> int:
    """The kernel's first ephemeral port (Linux); IANA's 49152 where it cannot be read."""
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 49_152


def _bindable(host: str, port: int) -> bool:
    # No SO_REUSEADDR: a port with a connection in TIME_WAIT counts as taken too.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _remember(port: int) -> None:
    _recent[port] = None
    if len(_recent) > _RECENT:
        del _recent[next(iter(_recent))]


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that nothing is bound to now and no outgoing connection will take."""
    top = ephemeral_range_start()
    with _lock:
        if top - LOWEST_PORT >= 1_000:
            for _ in range(_ATTEMPTS):
                port = _random.randrange(LOWEST_PORT, top)
                if port not in _recent and _bindable(host, port):
                    _remember(port)
                    return port
        # A kernel whose ephemeral range starts low, or a crowded machine: the kernel's pick.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        _remember(port)
        return port
