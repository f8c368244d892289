"""Compression bombs sent on raw sockets to a broker process: each is refused with a clear
error within a bounded time, nothing of it is stored, and a stock client (confluent-kafka) on
its own connections keeps producing and consuming meanwhile (issue #18).

The bombs are valid-looking batches: records of 10,000 zero bytes with offset deltas in order,
96 MiB once inflated, under max.message.bytes once compressed (gzip ~150 KB, zstd ~45 KB,
lz4 ~490 KB); each is walked on the event loop for its first MiB, then in a worker thread.
The broker's cap for a default topic is 64x max.message.bytes (64 MiB), so each is refused
with MESSAGE_TOO_LARGE about when that much went through the decompressor. Bounds are generous: nothing here
is a timing benchmark (benchmarks/hostile_bench.py and perf.py measure).
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
import zlib
from collections.abc import Iterator

import lz4.frame
import pytest
import zstandard
from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as TP
from confluent_kafka.admin import AdminClient, NewTopic

from compat_tests.broker_process import BrokerProcess
from compat_tests.test_bad_input import (
    IO_TIMEOUT,
    HealthyClient,
    assert_broker_alive,
    connect,
    healthy,  # noqa: F401 - the fixture, by its name
    recv_frame,
)
from pykbroker.protocol._generated.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from pykbroker.protocol.framing import decode_response, encode_request
from pykbroker.records import GZIP, LZ4, ZSTD
from tests.records.helpers import raw_batch, raw_record

pytestmark = pytest.mark.timeout(300)

MESSAGE_TOO_LARGE = 10
INFLATED = 96 * 1024 * 1024
VALUE = 10_000
ANSWER_WITHIN_S = 60.0  # generous: the check itself takes well under a second here

CODECS = {"gzip": GZIP, "zstd": ZSTD, "lz4": LZ4}


def _records(n: int) -> Iterator[bytes]:
    value = bytes(VALUE)
    for start in range(0, n, 500):
        yield b"".join(raw_record(None, value, offset_delta=i)
                       for i in range(start, min(n, start + 500)))


def _compress(codec: int, pieces: Iterator[bytes]) -> bytes:
    """Streaming, so the test never holds the 96 MiB either."""
    out: list[bytes] = []
    if codec == GZIP:
        gz = zlib.compressobj(9, zlib.DEFLATED, 31)
        out += [gz.compress(p) for p in pieces]
        out.append(gz.flush())
    elif codec == ZSTD:
        zc = zstandard.ZstdCompressor().compressobj()
        out += [zc.compress(p) for p in pieces]
        out.append(zc.flush())
    else:
        lc = lz4.frame.LZ4FrameCompressor(block_size=lz4.frame.BLOCKSIZE_MAX64KB,
                                          block_linked=False, content_checksum=False)
        out.append(lc.begin())
        out += [lc.compress(p) for p in pieces]
        out.append(lc.flush())
    return b"".join(out)


_BOMBS: dict[int, bytes] = {}


def bomb(codec: int) -> bytes:
    if codec not in _BOMBS:
        n = INFLATED // (VALUE + 10)
        _BOMBS[codec] = raw_batch(_compress(codec, _records(n)), n, attributes=codec)
        assert len(_BOMBS[codec]) < 1_000_000, "fits the default max.message.bytes"
    return _BOMBS[codec]


def create_topic(broker: BrokerProcess, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(name, 1, 1)], operation_timeout=10)[name].result(IO_TIMEOUT)


def produce_raw(sock: socket.socket, topic: str, batch: bytes, corr: int) -> tuple[int, str]:
    """Produce v9, acks=1, one batch on partition 0: (error code, error message)."""
    req = ProduceRequest(None, 1, 30000, [TopicProduceData(topic, [
        PartitionProduceData(0, batch)])])
    sock.sendall(encode_request(0, 9, corr, "bomb-test", req))
    got, resp = decode_response(recv_frame(sock), 0, 9)
    assert got == corr
    part = resp.responses[0].partition_responses[0]
    return part.error_code, part.error_message or ""


def assert_nothing_stored(broker: BrokerProcess, topic: str) -> None:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"g-{topic}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        assert consumer.get_watermark_offsets(TP(topic, 0), timeout=IO_TIMEOUT) == (0, 0)
        consumer.assign([TP(topic, 0, 0)])
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            assert msg is None or msg.error() is not None, "a record of the bomb was stored"
    finally:
        consumer.close()


@pytest.mark.parametrize("codec", list(CODECS))
def test_bomb_is_refused_and_not_stored(broker: BrokerProcess,
                                        healthy: HealthyClient,  # noqa: F811 - fixture
                                        codec: str) -> None:
    topic = f"bomb-{codec}-{uuid.uuid4().hex[:6]}"
    create_topic(broker, topic)
    batch = bomb(CODECS[codec])
    with connect(broker) as sock:
        sock.settimeout(ANSWER_WITHIN_S)
        started = time.monotonic()
        code, message = produce_raw(sock, topic, batch, 1)
        took = time.monotonic() - started
    assert code == MESSAGE_TOO_LARGE, (code, message)
    assert "limit on decompressed batches" in message
    assert took < ANSWER_WITHIN_S
    print(f"{codec} bomb ({len(batch)} bytes, {INFLATED >> 20} MiB inflated) refused in "
          f"{took * 1000:.0f} ms: {message}")
    healthy.roundtrip()
    assert_nothing_stored(broker, topic)
    assert_broker_alive(broker)


def test_stock_client_is_served_during_a_stream_of_bombs(
        broker: BrokerProcess, healthy: HealthyClient) -> None:  # noqa: F811 - fixture
    """Three raw connections send bombs back to back (each codec, several times) while the
    confluent-kafka producer and consumer of ``healthy`` keep making round trips; every bomb
    gets its error, every round trip succeeds (each within IO_TIMEOUT)."""
    topic = f"bombs-{uuid.uuid4().hex[:6]}"
    create_topic(broker, topic)
    batches = {name: bomb(codec) for name, codec in CODECS.items()}
    results: list[tuple[str, int]] = []
    errors: list[BaseException] = []

    def send(name: str) -> None:
        try:
            with connect(broker) as sock:
                sock.settimeout(ANSWER_WITHIN_S)
                for i in range(4):
                    code, _ = produce_raw(sock, topic, batches[name], i + 1)
                    results.append((name, code))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    senders = [threading.Thread(target=send, args=(name,)) for name in CODECS]
    for t in senders:
        t.start()
    latencies = []
    while any(t.is_alive() for t in senders) or not latencies:
        started = time.monotonic()
        healthy.roundtrip()
        latencies.append(time.monotonic() - started)
    for t in senders:
        t.join(ANSWER_WITHIN_S)
    assert not errors, errors
    assert sorted(results) == sorted((n, MESSAGE_TOO_LARGE) for n in CODECS for _ in range(4))
    print(f"{len(latencies)} healthy round trips during {len(results)} bombs, "
          f"max {max(latencies) * 1000:.0f} ms")
    assert_nothing_stored(broker, topic)
    assert_broker_alive(broker)
