"""Client quotas (issue #17) against a real broker subprocess with stock clients.

Quotas are set and described with kafka-python's own AlterClientQuotas / DescribeClientQuotas
messages (neither kafka-python nor confluent-kafka's AdminClient has a high-level API for
them), then librdkafka producers and consumers run against them.

The acceptance criterion: a produce quota of 1 MB/s holds a client near 1 MB/s over 10 s
(within 20 %), with throttle_time_ms reported and librdkafka's throttle callback called.

How Kafka 3.9 measures (and so pykbroker): the rate is the bytes of the last 11 one-second
samples divided by the time they span, but never by less than 10 s. A client's first request
therefore finds 10 quiet seconds behind it and may send about 10 s worth of its quota at once;
after that each request over the quota is answered with throttle_time_ms and the connection is
muted for that long. Measured from the first produce request over 10 s, a client going as fast
as it can gets that first window's worth plus what the throttled requests add: about 1.1 x the
quota, within the 20 % of the criterion. No second is excluded: with Kafka's sampling the
first second is the burst, not a ramp-up.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from confluent_kafka import Consumer, KafkaError, Message, Producer, ThrottleEvent, TopicPartition
from kafka.protocol.admin import AlterClientQuotasRequest, DescribeClientQuotasRequest

from compat_tests.broker_process import BrokerProcess
from compat_tests.ck_helpers import admin, consumer_conf, create_topic, producer_conf
from compat_tests.kp_helpers import admin_client, producer, send_raw

QUOTA = 1048576  # bytes per second
MEASURE_S = 10.0
VALUE = b"q" * 1000
INVALID_REQUEST = 42

Entity = dict[str, str | None]


def _alter(bootstrap: str, entity: Entity, ops: dict[str, float | None],
           validate_only: bool = False) -> tuple[int, str | None]:
    E = AlterClientQuotasRequest.EntryData
    with admin_client(bootstrap) as kp:
        resp = send_raw(kp, AlterClientQuotasRequest(entries=[E(
            entity=[E.EntityData(entity_type=t, entity_name=n) for t, n in entity.items()],
            ops=[E.OpData(key=k, value=0.0 if v is None else v, remove=v is None)
                 for k, v in ops.items()])], validate_only=validate_only))
    (entry,) = resp.entries
    return entry.error_code, entry.error_message


def _describe(bootstrap: str, components: list[tuple[str, int, str | None]],
              strict: bool = False) -> dict[frozenset[tuple[str, str | None]], dict[str, float]]:
    C = DescribeClientQuotasRequest.ComponentData
    with admin_client(bootstrap) as kp:
        resp = send_raw(kp, DescribeClientQuotasRequest(components=[
            C(entity_type=t, match_type=m, match=n) for t, m, n in components], strict=strict))
    assert resp.error_code == 0, resp.error_message
    return {frozenset((e.entity_type, e.entity_name) for e in entry.entity):
            {v.key: v.value for v in entry.values} for entry in resp.entries}


class Throttles:
    def __init__(self) -> None:
        self.events: list[ThrottleEvent] = []

    def cb(self, event: ThrottleEvent) -> None:
        self.events.append(event)

    def positive(self) -> list[float]:
        return [e.throttle_time for e in self.events if e.throttle_time > 0]


@contextmanager
def _producer(bootstrap: str, client_id: str, throttles: Throttles) -> Iterator[Producer]:
    # batch.size 32 KB: many requests, so that the throttled ones add little to the burst of
    # the first window (librdkafka's 1 MB batches each add a second's worth when throttled)
    p = Producer(producer_conf(bootstrap, **{"client.id": client_id, "batch.size": 32768,
                                             "throttle_cb": throttles.cb}))
    try:
        yield p
    finally:
        p.purge()
        p.flush(5)


def _produce_for(p: Producer, topic: str, seconds: float) -> tuple[int, float]:
    """Produce as fast as the client can for ``seconds``; (bytes acknowledged within them,
    the seconds from the first produce to the end of the measurement)."""
    acked: list[tuple[float, int]] = []
    failed: list[tuple[float, KafkaError]] = []

    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is None:
            acked.append((time.monotonic(), len(msg.value() or b"")))
        else:  # the messages still queued at the end are purged
            failed.append((time.monotonic(), err))

    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        try:
            p.produce(topic, VALUE, on_delivery=delivered)
        except BufferError:
            p.poll(0.005)
            continue
        p.poll(0)
    p.poll(0)
    assert not [e for t, e in failed if t <= end], failed[:3]
    return sum(n for t, n in acked if t <= end), seconds


def _produce_n(p: Producer, topic: str, n: int, timeout: float = 60.0) -> None:
    failed: list[KafkaError] = []

    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            failed.append(err)

    for _ in range(n):
        while True:
            try:
                p.produce(topic, VALUE, on_delivery=delivered)
                break
            except BufferError:
                p.poll(0.01)
    assert p.flush(timeout) == 0
    assert not failed, failed[:3]


def test_alter_and_describe_client_quotas_with_kafka_python(broker: BrokerProcess) -> None:
    b = broker.bootstrap
    assert _alter(b, {"client-id": "c1"}, {"producer_byte_rate": 1024.0}) == (0, None)
    assert _alter(b, {"user": "alice", "client-id": None},
                  {"consumer_byte_rate": 2048.0}) == (0, None)
    assert _alter(b, {"user": None}, {"producer_byte_rate": 4096.0,
                                      "consumer_byte_rate": 8192.0}) == (0, None)
    everything = {
        frozenset({("client-id", "c1")}): {"producer_byte_rate": 1024.0},
        frozenset({("user", "alice"), ("client-id", None)}): {"consumer_byte_rate": 2048.0},
        frozenset({("user", None)}): {"producer_byte_rate": 4096.0,
                                      "consumer_byte_rate": 8192.0},
    }
    assert _describe(b, []) == everything
    # match types: 0 exact name, 1 the default, 2 any; strict: no other entity type
    assert _describe(b, [("user", 0, "alice")]) == {
        frozenset({("user", "alice"), ("client-id", None)}): {"consumer_byte_rate": 2048.0}}
    assert _describe(b, [("user", 0, "alice")], strict=True) == {}
    assert _describe(b, [("user", 1, None)], strict=True) == {
        frozenset({("user", None)}): {"producer_byte_rate": 4096.0,
                                      "consumer_byte_rate": 8192.0}}
    assert set(_describe(b, [("user", 2, None)])) == {
        frozenset({("user", "alice"), ("client-id", None)}), frozenset({("user", None)})}
    assert set(_describe(b, [("client-id", 2, None)], strict=True)) == {
        frozenset({("client-id", "c1")})}

    # validate_only changes nothing; bad values and keys are refused per entry
    assert _alter(b, {"client-id": "c2"}, {"producer_byte_rate": 10.0},
                  validate_only=True) == (0, None)
    assert _alter(b, {"client-id": "c2"}, {"producer_byte_rate": 1.5}) == (
        INVALID_REQUEST, "Configuration producer_byte_rate must be a LONG value")
    assert _alter(b, {"client-id": "c2"}, {"nonsense": 1.0}) == (
        INVALID_REQUEST, "Invalid configuration key nonsense")
    code, message = _alter(b, {"client-id": "c2"}, {"controller_mutation_rate": 50.0})
    assert code == INVALID_REQUEST and "controller_mutation_rate" in (message or "")
    assert _describe(b, []) == everything

    # removing the last value removes the entity; the rest survives a restart
    assert _alter(b, {"user": None}, {"producer_byte_rate": None,
                                      "consumer_byte_rate": None}) == (0, None)
    del everything[frozenset({("user", None)})]
    broker.restart()
    assert _describe(b, []) == everything


def test_produce_quota_holds_a_client_near_one_megabyte_per_second(
        broker: BrokerProcess, topic_name: str) -> None:
    b = broker.bootstrap
    create_topic(admin(b), topic_name)
    assert _alter(b, {"client-id": "quota-producer"},
                  {"producer_byte_rate": float(QUOTA)}) == (0, None)

    throttled = Throttles()
    with _producer(b, "quota-producer", throttled) as p:
        acked, seconds = _produce_for(p, topic_name, MEASURE_S)
    rate = acked / seconds
    print(f"quota-producer: {acked} bytes acknowledged in {seconds:.0f} s = "
          f"{rate / QUOTA:.3f} x the quota; throttled {len(throttled.positive())} times, "
          f"max {max(throttled.positive(), default=0):.3f} s")
    assert 0.8 * QUOTA <= rate <= 1.2 * QUOTA, rate / QUOTA
    assert throttled.positive(), "librdkafka's throttle_cb was never called"

    # another client id has no quota: 24 MB, which the quota would spread over 13 s and more
    free = Throttles()
    with _producer(b, "free-producer", free) as p:
        started = time.monotonic()
        _produce_n(p, topic_name, 24_000)
        elapsed = time.monotonic() - started
    print(f"free-producer: 24 MB in {elapsed:.2f} s")
    assert not free.positive()
    assert elapsed < 10.0


def test_fetch_quota_holds_a_consumer_near_one_megabyte_per_second(
        broker: BrokerProcess, topic_name: str) -> None:
    b = broker.bootstrap
    create_topic(admin(b), topic_name)
    with _producer(b, "filler", Throttles()) as p:
        _produce_n(p, topic_name, 30_000)  # 30 MB: more than 10 s of the quota can take
    assert _alter(b, {"client-id": "quota-consumer"},
                  {"consumer_byte_rate": float(QUOTA)}) == (0, None)

    def consume(client_id: str, throttles: Throttles, seconds: float,
                want: int | None = None) -> tuple[int, float]:
        c = Consumer(consumer_conf(b, **{"client.id": client_id,
                                         "group.id": f"g-{client_id}",
                                         "throttle_cb": throttles.cb}))
        try:
            c.assign([TopicPartition(topic_name, 0, 0)])
            assigned = time.monotonic()
            got = 0
            start: float | None = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                msgs = c.consume(1000, 0.05)
                now = time.monotonic()
                if start is None and msgs:
                    start = now  # the first fetch response: the quota's sensor starts there
                if start is not None and now - start >= seconds:
                    break
                for m in msgs:
                    assert m.error() is None, m.error()
                    got += len(m.value() or b"")
                if want is not None and got >= want:
                    return got, time.monotonic() - assigned
            assert start is not None, "nothing consumed"
            return got, time.monotonic() - start
        finally:
            c.close()

    throttled = Throttles()
    got, seconds = consume("quota-consumer", throttled, MEASURE_S)
    rate = got / seconds
    print(f"quota-consumer: {got} bytes in {seconds:.2f} s = {rate / QUOTA:.3f} x the quota; "
          f"throttled {len(throttled.positive())} times")
    assert 0.8 * QUOTA <= rate <= 1.2 * QUOTA, rate / QUOTA
    assert throttled.positive(), "librdkafka's throttle_cb was never called"

    free = Throttles()
    got, seconds = consume("free-consumer", free, 20.0, want=30_000 * len(VALUE))
    print(f"free-consumer: {got} bytes in {seconds:.2f} s")
    assert got == 30_000 * len(VALUE)
    assert not free.positive()
    assert seconds < 10.0  # the quota would take 20 s and more for these 30 MB


def test_kafka_python_producer_sees_throttle_time(broker: BrokerProcess, topic_name: str) -> None:
    """kafka-python reads throttle_time_ms from each response (its throttle-time metrics) and
    holds back its next request to the broker for that long, as KIP-219 asks of clients."""
    b = broker.bootstrap
    create_topic(admin(b), topic_name)
    assert _alter(b, {"client-id": "kp-producer"}, {"producer_byte_rate": 10240.0}) == (0, None)
    with producer(b, client_id="kp-producer", linger_ms=5) as p:
        started = time.monotonic()
        for _ in range(130):  # 130 KB: 30 KB beyond the first window's 100 KB
            p.send(topic_name, VALUE)
        p.flush(timeout=60)
        elapsed = time.monotonic() - started
        metrics = p.metrics()
    throttle_max = max(v for group in metrics.values() for k, v in group.items()
                       if k == "produce-throttle-time-max" or k == "throttle-time-max")
    print(f"kp-producer: 130 KB in {elapsed:.2f} s, throttle-time-max {throttle_max} ms")
    assert throttle_max > 0
    assert elapsed >= 1.0  # the throttled requests waited
