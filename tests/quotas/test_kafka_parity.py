"""Kafka 3.9's own ClientQuotaManagerTest cases (core/src/test/scala/unit/kafka/server/
ClientQuotaManagerTest.scala), ported: quota precedence with the same entities and values, the
sharing of a quota by the clients of its entity, getMaxValueInQuotaWindow, and the exact
throttle time of testQuotaViolation. Time stands still within a checkQuota, as with MockTime."""

from __future__ import annotations

import math

import pytest

from pykbroker.quotas.manager import DEFAULT, ClientQuotaManager, Entity

SAMPLES = 11  # ClientQuotaManagerConfig's default numQuotaSamples


class Clock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000  # MockTime starts at an arbitrary wall-clock time

    def sleep(self, ms: int) -> None:
        self.ms += ms


def check_quota(m: ClientQuotaManager, clock: Clock, user: str, client: str,
                expected_bound: float, value: int, expect_throttle: bool) -> None:
    """ClientQuotaManagerTest.checkQuota."""
    bound = m.quota(user, client)
    assert (math.inf if bound is None else bound) == expected_bound
    expected_window = math.inf if expected_bound == math.inf else \
        1 * (SAMPLES - 1) * expected_bound
    assert m.max_value_in_window(user, client) == expected_window
    throttle = m.record(user, client, value * SAMPLES, clock.ms)
    if expect_throttle:
        assert throttle > 0
    else:
        assert throttle == 0


def test_quota_config_precedence() -> None:
    m, clock = ClientQuotaManager("producer_byte_rate"), Clock()
    updates: list[tuple[Entity, float]] = [
        ((DEFAULT, None), 1000), ((None, DEFAULT), 2000), ((DEFAULT, DEFAULT), 3000),
        (("userA", None), 4000), (("userA", "client1"), 5000), (("userB", None), 6000),
        (("userB", "client1"), 7000), (("userB", DEFAULT), 8000), (("userC", None), 10000),
        ((None, "client1"), 9000)]
    for entity, value in updates:
        m.update(entity, value)

    def check(user: str, client: str, bound: float, value: int, throttle: bool) -> None:
        check_quota(m, clock, user, client, bound, value, throttle)

    check("userA", "client1", 5000, 4500, False)  # <user, client> over <user>
    check("userA", "client2", 4000, 4500, True)  # <user> over <client> and the defaults
    check("userA", "client3", 4000, 0, True)  # <user> is shared by the user's clients
    check("userA", "client1", 5000, 0, False)  # <user, client> is for that client alone

    check("userB", "client1", 7000, 8000, True)
    check("userB", "client2", 8000, 7000, False)  # default per-client quota, exclusive use
    check("userB", "client3", 8000, 7000, False)

    check("userD", "client1", 3000, 3500, True)  # default <user, client>
    check("userD", "client2", 3000, 2500, False)
    check("userE", "client1", 3000, 2500, False)

    m.update((DEFAULT, DEFAULT), None)  # back to the <user> default
    check("userD", "client1", 1000, 0, False)  # metric tags changed: a new sensor
    check("userE", "client4", 1000, 1500, True)
    check("userF", "client4", 1000, 800, False)  # default <user> shared by the user's clients
    check("userF", "client5", 1000, 800, True)

    m.update((DEFAULT, None), None)  # back to the <client-id> default
    check("userF", "client4", 2000, 0, False)  # default <client-id>: shared across users
    check("userF", "client5", 2000, 0, False)
    check("userF", "client5", 2000, 2500, True)
    check("userG", "client5", 2000, 0, True)

    m.update(("userA", None), 8000)
    m.update(("userA", "client1"), 10000)
    check("userA", "client2", 8000, 0, False)
    check("userA", "client2", 8000, 4500, True)  # the sum of new and earlier values
    check("userA", "client1", 10000, 0, False)
    check("userA", "client1", 10000, 6000, True)
    m.update(("userA", "client1"), None)
    check("userA", "client6", 8000, 0, True)  # the shared user quota
    m.update(("userA", "client6"), 11000)
    check("userA", "client6", 11000, 8500, False)
    m.update(("userA", DEFAULT), 12000)
    m.update(("userA", "client6"), None)
    check("userA", "client6", 12000, 4000, True)


@pytest.mark.parametrize(("configured", "user", "client"), [
    ((None, "p1"), "ANONYMOUS", "p1"),  # testClientIdQuotaParsing
    (("User1", None), "User1", "p1"),  # testUserQuotaParsing
    (("User1", "p1"), "User1", "p1"),  # testUserClientIdQuotaParsing
])
def test_quota_parsing(configured: Entity, user: str, client: str) -> None:
    """ClientQuotaManagerTest.testQuotaParsing for each entity level."""
    m, clock = ClientQuotaManager("producer_byte_rate"), Clock()
    other: Entity = tuple("2" if isinstance(x, str) else x for x in configured)  # type: ignore[assignment]
    m.update(configured, 2000)
    m.update(other, 4000)
    assert m.quota("RandomUser", "random-client-id") is None
    assert m.quota(user, client) == 2000
    assert m.record(user, client, 2500 * SAMPLES, clock.ms) > 0
    m.update(configured, 3000)  # the sensor's quota changes with the configuration
    assert m.quota(user, client) == 3000
    assert m.record(user, client, 0, clock.ms) == 0
    m.update(configured, 500)
    assert m.record(user, client, 0, clock.ms) > 0
    m.update(configured, None)
    default: Entity = tuple(None if x is None else DEFAULT for x in configured)  # type: ignore[assignment]
    m.update(default, 4000)
    assert m.quota(user, client) == 4000
    assert m.record(user, client, 1000 * SAMPLES, clock.ms) == 0


def test_max_value_in_quota_window_with_non_default_window() -> None:
    m = ClientQuotaManager("consumer_byte_rate", samples=4)
    assert m.max_value_in_window("userA", "client1") == math.inf
    m.update((DEFAULT, None), 10)
    assert m.max_value_in_window("userA", "client1") == 10 * 3


def test_quota_violation_throttle_time() -> None:
    """testQuotaViolation: 400 B/s for 10 s under a 500 B/s quota, then a spike of 2300 B half
    way into the next window: 6300 B over 10.5 s is 600 B/s, (600 - 500) / 500 * 10.5 s."""
    m, clock = ClientQuotaManager("producer_byte_rate"), Clock()
    m.update((None, DEFAULT), 500)
    for _ in range(10):
        assert m.record("ANONYMOUS", "unknown", 400, clock.ms) == 0
        clock.sleep(1000)
    clock.sleep(500)
    throttle = m.record("ANONYMOUS", "unknown", 2300, clock.ms)
    assert throttle == 2100
    clock.sleep(throttle)
    for _ in range(10):  # delays may continue until the bursty sample has rolled over
        m.record("ANONYMOUS", "unknown", 400, clock.ms)
        clock.sleep(1000)
    assert m.record("ANONYMOUS", "unknown", 0, clock.ms) == 0


def test_no_quota_means_no_measuring() -> None:
    """quotasEnabled: nothing was ever configured, so nothing is recorded at all."""
    m = ClientQuotaManager("producer_byte_rate")
    assert not m.enabled
    m.update((None, "c"), 10)
    m.update((None, "c"), None)
    assert m.enabled  # stays on until restart, as in Kafka
