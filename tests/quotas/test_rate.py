"""The windowed rate and throttle time of Kafka's metrics library, and the entity precedence,
checked as properties over varying inputs."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from pykbroker.quotas.manager import DEFAULT, ClientQuotaManager, Entity, Name
from pykbroker.quotas.rate import QuotaSensor, WindowedRate, throttle_time_ms

records = st.lists(st.tuples(st.integers(0, 3000), st.floats(0, 1e7)), max_size=60)
configs = st.tuples(st.integers(1, 12), st.integers(1, 3))


def test_a_new_client_is_measured_over_samples_minus_one_windows() -> None:
    rate = WindowedRate(11, 1000)
    rate.record(10_000, 0)
    assert rate.window_size_ms(0) == 10_000
    assert rate.measure(0) == 1000.0
    assert rate.window_size_ms(400) == 10_400  # the partial window counts as well
    rate.record(0, 10_500)
    assert rate.window_size_ms(10_500) == 10_500  # ten full windows elapsed: no padding


def test_samples_expire_samples_times_window_after_their_last_event() -> None:
    rate = WindowedRate(11, 1000)
    rate.record(5000, 0)
    assert rate.total(10_999) == 5000
    assert rate.total(11_000) == 0


@given(records, configs)
def test_window_is_never_shorter_than_samples_minus_one_windows(
        events: list[tuple[int, float]], config: tuple[int, int]) -> None:
    samples, window_s = config
    rate = WindowedRate(samples, window_s * 1000)
    now = 0
    for dt, value in events:
        now += dt
        rate.record(value, now)
        window = rate.window_size_ms(now)
        assert window >= max((samples - 1) * window_s * 1000, 1)
        assert math.isclose(rate.measure(now), rate.total(now) / (window / 1000),
                            rel_tol=1e-9, abs_tol=1e-9)


@given(records, configs)
def test_total_counts_exactly_the_samples_still_in_the_window(
        events: list[tuple[int, float]], config: tuple[int, int]) -> None:
    """Whatever was recorded within the last window is counted in full; nothing recorded
    more than samples x window ago (and no sample after it) is counted."""
    samples, window_s = config
    window_ms = window_s * 1000
    rate = WindowedRate(samples, window_ms)
    now = 0
    history: list[tuple[int, float]] = []
    for dt, value in events:
        now += dt
        rate.record(value, now)
        history.append((now, value))
    total = rate.total(now)
    recent = sum(v for t, v in history if now - t < window_ms)
    assert total >= recent - 1e-6 * max(1.0, recent)
    assert total <= sum(v for _, v in history) * (1 + 1e-9) + 1e-9
    later = now + samples * window_ms
    assert rate.total(later) == 0


@given(st.floats(1, 1e9), st.floats(1, 1e9), st.integers(1, 120_000))
def test_throttle_time_brings_the_rate_back_to_the_quota(
        observed: float, bound: float, window_ms: int) -> None:
    """O * W / (W + X) = T; zero when within the quota."""
    delay = throttle_time_ms(observed, bound, window_ms)
    if observed <= bound:
        assert delay == 0
        return
    exact = (observed - bound) / bound * window_ms
    if exact >= 2**31 - 1:
        assert delay == 2**31 - 1
        return
    assert abs(delay - exact) <= 0.5
    assert math.isclose(observed * window_ms / (window_ms + exact), bound, rel_tol=1e-9)


def test_a_zero_or_negative_quota_does_not_throttle_as_in_java() -> None:
    assert throttle_time_ms(100.0, 0.0, 10_000) == 0
    assert throttle_time_ms(100.0, -5.0, 10_000) == 0


@given(st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 200_000)), min_size=1,
                max_size=80), st.integers(1000, 1_000_000))
def test_sensor_throttles_exactly_when_the_rate_exceeds_the_quota(
        events: list[tuple[int, int]], bound: int) -> None:
    sensor = QuotaSensor(11, 1000, float(bound))
    mirror = WindowedRate(11, 1000)
    now = 0
    for dt, value in events:
        now += dt
        delay = sensor.record(value, now)
        mirror.record(value, now)
        observed = mirror.measure(now)
        if observed <= bound:
            assert delay == 0
        else:
            assert delay == throttle_time_ms(observed, bound, mirror.window_size_ms(now))


# The precedence Kafka documents (ClientQuotaManager's scaladoc), most specific first.
def documented_order(user: str, client: str) -> list[Entity]:
    return [(user, client), (user, DEFAULT), (user, None), (DEFAULT, client),
            (DEFAULT, DEFAULT), (DEFAULT, None), (None, client), (None, DEFAULT)]


names = st.sampled_from(["alice", "bob"])
components: st.SearchStrategy[Name] = st.one_of(st.none(), st.just(DEFAULT), names)
entities = st.tuples(components, st.sampled_from([None, DEFAULT, "c1", "c2"])).filter(
    lambda e: e != (None, None))


@given(st.dictionaries(entities, st.integers(1, 10**9), max_size=12), names,
       st.sampled_from(["c1", "c2"]))
def test_the_most_specific_configured_entity_gives_the_quota(
        configured: dict[Entity, int], user: str, client: str) -> None:
    m = ClientQuotaManager("producer_byte_rate")
    for entity, value in configured.items():
        m.update(entity, value)
    expected = next((configured[e] for e in documented_order(user, client) if e in configured),
                    None)
    assert m.quota(user, client) == expected


@given(st.dictionaries(entities, st.integers(1, 10**9), min_size=1, max_size=12))
def test_clients_share_a_rate_exactly_when_their_quota_comes_from_one_shared_entity(
        configured: dict[Entity, int]) -> None:
    """Two clients are measured together iff the entity their quota comes from names neither
    of the components in which they differ (a user quota is shared by the user's clients, a
    <default> user quota is not shared between users)."""
    m = ClientQuotaManager("producer_byte_rate")
    for entity, value in configured.items():
        m.update(entity, value)
    pairs = [("alice", "c1"), ("alice", "c2"), ("bob", "c1")]
    for a in pairs:
        for b in pairs:
            if a >= b:
                continue
            shared = m.sensor(*a, 0) is m.sensor(*b, 0)
            ea = next((e for e in documented_order(*a) if e in configured), None)
            eb = next((e for e in documented_order(*b) if e in configured), None)
            if ea is None or eb is None:
                continue  # unlimited clients: measured by client id alone (Kafka's tags)
            same_user, same_client = a[0] == b[0], a[1] == b[1]
            user_part_shared = same_user or ea[0] is None
            client_part_shared = same_client or ea[1] is None
            if ea == eb and user_part_shared and client_part_shared:
                assert shared, (configured, a, b)
            else:
                assert not shared, (configured, a, b)
