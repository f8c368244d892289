"""free_port: ports a server started later can bind, outside the range outgoing connections use."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pykbroker import free_ports
from pykbroker.free_ports import ephemeral_range_start, free_port


def test_ports_are_below_the_ephemeral_range_distinct_and_bindable() -> None:
    top = ephemeral_range_start()
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(free_ports.LOWEST_PORT <= p < top for p in ports)
    for port in ports[:20]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


class _Draws:
    """Stands in for the random source: yields the given ports in order."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports

    def randrange(self, low: int, high: int) -> int:
        port = self.ports.pop(0)
        assert low <= port < high
        return port


def test_a_taken_port_and_a_recent_one_are_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = taken.getsockname()[1]
        recent = free_port()
        fresh = free_port()  # bindable now, and forgotten again below
        del free_ports._recent[fresh]
        monkeypatch.setattr(free_ports, "LOWEST_PORT", 1_024)
        monkeypatch.setattr(free_ports, "ephemeral_range_start", lambda: 65_536)
        monkeypatch.setattr(free_ports, "_random", _Draws([busy, recent, fresh]))
        assert free_port() == fresh


def test_a_narrow_range_falls_back_to_the_kernels_pick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(free_ports, "ephemeral_range_start", lambda: free_ports.LOWEST_PORT + 10)
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_the_ephemeral_range_is_read_from_the_kernel_file(tmp_path: Path) -> None:
    f = tmp_path / "range"
    f.write_text("40000\t60999\n")
    assert ephemeral_range_start(str(f)) == 40000
    assert ephemeral_range_start(str(tmp_path / "missing")) == 49152
    f.write_text("garbage")
    assert ephemeral_range_start(str(f)) == 49152
