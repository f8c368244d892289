"""The replica fetcher's reused response buffer (BrokerConnection._response_buffer): reused
while nothing views the last response, never overwritten under a live view."""

from __future__ import annotations

from pykbroker.cluster.broker_client import REUSED_BUFFER_MAX, BrokerConnection


def _connection() -> BrokerConnection:
    return BrokerConnection("127.0.0.1", 9, "test")


def test_the_buffer_is_reused_once_the_last_response_is_gone() -> None:
    conn = _connection()
    first = conn._response_buffer(1000, True)
    first[:3] = b"abc"
    del first
    second = conn._response_buffer(800, True)
    assert len(second) == 800 and bytes(second[:3]) == b"abc"  # the same memory
    del second
    grown = conn._response_buffer(5000, True)
    assert len(grown) == 5000


def test_a_live_view_is_never_overwritten() -> None:
    conn = _connection()
    first = conn._response_buffer(1000, True)
    first[:3] = b"abc"
    records = first[:3]  # e.g. a decoded response's records still held by someone
    del first
    second = conn._response_buffer(1000, True)
    second[:3] = b"xyz"
    assert bytes(records) == b"abc"


def test_without_reuse_or_when_huge_each_response_has_its_own() -> None:
    conn = _connection()
    a = conn._response_buffer(100, False)
    a[:1] = b"a"
    del a
    assert bytes(conn._response_buffer(100, False)[:1]) == b"\0"
    assert len(conn._reused) == 0
    huge = conn._response_buffer(REUSED_BUFFER_MAX + 1, True)
    assert len(huge) == REUSED_BUFFER_MAX + 1 and len(conn._reused) == 0
