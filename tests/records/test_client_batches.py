"""Record batches written by real producers validate and iterate back to what was sent.

kafka-python and confluent-kafka (librdkafka) produce to a capture broker (tests/capture_broker.py,
a fake single-node broker built on our own framing); every captured batch must pass
``validate_batch`` and ``iter_records`` must give back exactly the records sent, in order, with
the compression codec the producer was configured for. Then single flipped bits anywhere in the
CRC span (and in the stored CRC) of a captured batch must be reported as corrupt.

kafka-python's snappy needs python-snappy, which is not a dependency here; when it is missing the
module is stood in for by cramjam's raw snappy (which is what python-snappy >= 0.7 wraps), so
kafka-python's own xerial framing code still writes the batch.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import confluent_kafka
import cramjam
import kafka.codec
import pytest
from kafka import KafkaProducer

from pykbroker.errors import CorruptRecordError
from pykbroker.protocol._generated.fetch_request import FetchPartition, FetchRequest, FetchTopic
from pykbroker.protocol._generated.find_coordinator_request import FindCoordinatorRequest
from pykbroker.protocol._generated.metadata_request import MetadataRequest, MetadataRequestTopic
from pykbroker.protocol._generated.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from pykbroker.protocol.api import request_class
from pykbroker.protocol.framing import decode_response, encode_request
from pykbroker.records import (
    GZIP,
    LZ4,
    NONE,
    SNAPPY,
    ZSTD,
    BatchHeader,
    iter_records,
    validate_batch,
)
from tests.capture_broker import SUPPORTED, CaptureBroker, CapturedBatch
from tests.records.helpers import raw_batch, raw_record

pytestmark = pytest.mark.timeout(120)

CODECS = {"none": NONE, "gzip": GZIP, "snappy": SNAPPY, "lz4": LZ4, "zstd": ZSTD}
CLIENTS = ["kafka-python", "confluent-kafka"]
CRC_OFFSET = 17
CRC_SPAN_START = 21
XERIAL_MAGIC = b"\x82SNAPPY\x00"
FULL_SPAN = 32 * 1024  # CRC spans up to this size get every bit flipped, one at a time

#: Snappy framing each client writes into the batch's records section, as observed with
#: kafka-python 3.0.12 and librdkafka 2.16: kafka-python writes xerial blocks (as the Java client
#: does), librdkafka one raw snappy block. Both must decode; this pins that both are exercised.
SNAPPY_FRAMING = {"kafka-python": "xerial", "confluent-kafka": "raw"}

Header = tuple[str, bytes | None]
Sent = tuple[bytes | None, bytes | None, list[Header], int]  # key, value, headers, timestamp

BASE_TS = 1_700_000_000_000
N_RECORDS = 50


class _SnappyShim:
    """python-snappy's block API (compress/decompress raw snappy) on top of cramjam."""

    @staticmethod
    def compress(data: bytes) -> bytes:
        return bytes(cramjam.snappy.compress_raw(data))

    @staticmethod
    def decompress(data: bytes) -> bytes:
        return bytes(cramjam.snappy.decompress_raw(data))


@pytest.fixture(autouse=True)
def kafka_python_snappy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if kafka.codec.snappy is None:
        monkeypatch.setattr(kafka.codec, "snappy", _SnappyShim)
    yield


def make_records(allow_null_header_value: bool) -> list[Sent]:
    """~50 varied records: null/empty keys and values, headers, odd timestamps, sizes."""
    out: list[Sent] = []
    for i in range(N_RECORDS):
        key: bytes | None = f"key-{i:03d}".encode()
        if i % 7 == 3:
            key = None
        elif i == 10:
            key = b""
        value: bytes | None
        if i % 11 == 5:
            value = None  # a tombstone, always with a key
            key = key if key is not None else f"tomb-{i}".encode()
        elif i == 12:
            value = b""
        elif i % 9 == 0:
            # Large, compressible values: several batches per client, multi-byte varints.
            value = (f"value {i} ".encode() * 400)[: 1500 + 97 * i]
        else:
            value = bytes((i * 31 + j) % 256 for j in range(i * 3 + 1))
        headers: list[Header] = []
        if i % 3 == 0:
            headers.append(("trace-id", f"{i:08x}".encode()))
        if i % 4 == 1:
            headers += [("dup", b"first"), ("dup", b"second"), ("empty", b"")]
        if i % 5 == 2:
            headers.append(("ключ-😀", "значение".encode()))
        if i % 6 == 4 and allow_null_header_value:
            headers.append(("null-value", None))
        if i == 20:
            headers.append(("big", bytes(range(256)) * 3))
        # Mostly rising timestamps, with some going backwards (negative deltas) and gaps.
        timestamp = BASE_TS + i * 37
        if i % 10 == 7:
            timestamp -= 5_000
        if i == 30:
            timestamp += 86_400_000
        out.append((key, value, headers, timestamp))
    return out


def produce_kafka_python(
    broker: CaptureBroker, topic: str, codec: str, records: list[Sent], acks: int | str = "all"
) -> None:
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        compression_type=None if codec == "none" else codec,
        linger_ms=20,
        batch_size=16384,
        acks=acks,
        request_timeout_ms=10_000,
        max_block_ms=10_000,
    )
    try:
        futures = [
            producer.send(topic, key=k, value=v, headers=h, timestamp_ms=ts, partition=0)
            for k, v, h, ts in records
        ]
        producer.flush(timeout=20)
        for f in futures:
            f.get(timeout=1)
    finally:
        producer.close(timeout=5)


def produce_confluent(
    broker: CaptureBroker, topic: str, codec: str, records: list[Sent], acks: int | str = "all"
) -> None:
    errors: list[Any] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "compression.type": codec,
            "enable.idempotence": False,
            "linger.ms": 5,
            "batch.size": 16384,
            "acks": str(acks),
            "message.timeout.ms": 20_000,
            "log.connection.close": False,
        }
    )
    try:
        for k, v, h, ts in records:
            producer.produce(
                topic, key=k, value=v, headers=h, timestamp=ts, partition=0, on_delivery=on_delivery
            )
            producer.poll(0)
        remaining = producer.flush(20)
    finally:
        producer.close()
    assert remaining == 0, f"{remaining} messages not delivered"
    assert errors == []


PRODUCERS = {"kafka-python": produce_kafka_python, "confluent-kafka": produce_confluent}


def capture(
    client: str, codec: str, acks: int | str = "all"
) -> tuple[list[Sent], list[CapturedBatch]]:
    """Send the sample records with one client and codec; the batches the broker got."""
    records = make_records(allow_null_header_value=client != "kafka-python")
    topic = f"t-{client}-{codec}-{acks}-{time.monotonic_ns()}"
    with CaptureBroker(partitions=1) as broker:
        PRODUCERS[client](broker, topic, codec, records, acks)
        if acks == 0:
            # Nothing acknowledges acks=0 requests: wait until every record has arrived.
            deadline = time.monotonic() + 10
            while _count(broker.batches_for(topic)) < len(records):
                assert time.monotonic() < deadline, "acks=0 batches did not all arrive"
                time.sleep(0.02)
        batches = broker.batches_for(topic)
        assert broker.unhandled == [], broker.unhandled
    assert batches, "no batch captured"
    assert {(b.topic, b.partition) for b in batches} == {(topic, 0)}
    return records, batches


def _count(batches: list[CapturedBatch]) -> int:
    return sum(int.from_bytes(b.records[57:61], "big", signed=True) for b in batches)


def split_batches(captured: list[CapturedBatch]) -> list[tuple[bytes, BatchHeader]]:
    """Every v2 batch in the captured ``records`` fields, validated, in arrival order."""
    out = []
    for cap in captured:
        buf = cap.records
        pos = 0
        while pos < len(buf):
            header = validate_batch(buf, pos, strict=True)
            out.append((buf[pos : pos + header.size], header))
            pos += header.size
    return out


def check_round_trip(
    client: str, codec: str, records: list[Sent], captured: list[CapturedBatch]
) -> list[tuple[bytes, BatchHeader]]:
    batches = split_batches(captured)
    got: list[Sent] = []
    sequence = None
    for batch, header in batches:
        assert header.magic == 2
        assert header.compression == CODECS[codec], (
            f"{client} wrote codec {header.compression}, expected {CODECS[codec]} ({codec})"
        )
        assert header.timestamp_type == 0  # CreateTime
        assert not header.is_transactional and not header.is_control
        recs = list(iter_records(batch))
        assert len(recs) == header.records_count
        assert [r.offset for r in recs] == [header.base_offset + i for i in range(len(recs))]
        assert header.last_offset_delta == len(recs) - 1
        assert header.max_timestamp == max(r.timestamp for r in recs)
        assert all(r.attributes == 0 for r in recs)
        if header.producer_id >= 0:
            # kafka-python is idempotent by default: sequences continue across batches.
            if sequence is not None:
                assert header.base_sequence == sequence
            sequence = header.base_sequence + header.records_count
        got += [(r.key, r.value, r.headers, r.timestamp) for r in recs]
    assert len(got) == len(records)
    for i, (want, have) in enumerate(zip(records, got, strict=True)):
        assert have == want, f"record {i}: sent {want!r}, got back {have!r}"
    if codec == "snappy":
        framing = {"xerial" if batch[61:69] == XERIAL_MAGIC else "raw" for batch, _ in batches}
        assert framing == {SNAPPY_FRAMING[client]}, f"{client} snappy framing {framing}"
    return batches


def flip_positions(size: int) -> list[tuple[int, int]]:
    """(byte, bit) pairs to flip in a batch of ``size`` bytes: every bit of the stored CRC and
    of the CRC span when the span is at most FULL_SPAN bytes; for longer spans every bit of
    the stored CRC and the first 64 bytes, then one bit of 2000 bytes spread evenly over the
    rest, always including the last byte."""
    span = size - CRC_SPAN_START
    if span <= FULL_SPAN:
        return [(pos, bit) for pos in range(CRC_OFFSET, size) for bit in range(8)]
    head = CRC_SPAN_START + 64
    out = [(pos, bit) for pos in range(CRC_OFFSET, head) for bit in range(8)]
    rest = sorted({head + (k * (size - 1 - head)) // 1999 for k in range(2000)})
    out += [(pos, (pos * 5) % 8) for pos in rest]
    return out


def check_bit_flips(batch: bytes) -> int:
    buf = bytearray(batch)
    validate_batch(buf)
    missed = []
    positions = flip_positions(len(buf))
    for pos, bit in positions:
        buf[pos] ^= 1 << bit
        try:
            validate_batch(buf)
        except CorruptRecordError:
            pass
        else:
            missed.append((pos, bit))
        buf[pos] ^= 1 << bit
    assert bytes(buf) == batch
    assert missed == [], f"flipped bits not detected at (byte, bit) {missed[:20]}"
    return len(positions)


@pytest.mark.parametrize("codec", list(CODECS))
@pytest.mark.parametrize("client", CLIENTS)
def test_client_batches_round_trip(client: str, codec: str) -> None:
    records, captured = capture(client, codec)
    batches = check_round_trip(client, codec, records, captured)
    # The test data is meant to span several batches (large values, 16 KiB batch size).
    assert len(batches) >= 2, f"{client} sent everything in {len(batches)} batch"
    if client == "kafka-python":
        assert {h.producer_id for _, h in batches} != {-1}  # idempotent by default
        assert batches[0][1].base_sequence == 0
    else:
        assert {h.producer_id for _, h in batches} == {-1}
        assert {h.base_sequence for _, h in batches} == {-1}
    # Corrupt the largest batch (most compressed bytes) one bit at a time.
    largest = max((b for b, _ in batches), key=len)
    assert check_bit_flips(largest) == 8 * (len(largest) - CRC_OFFSET)  # every bit, here


@pytest.mark.parametrize("client", CLIENTS)
def test_acks_zero_batches_round_trip(client: str) -> None:
    """acks=0 requests get no response; the batches are written the same way."""
    records, captured = capture(client, "gzip", acks=0)
    assert {c.acks for c in captured} == {0}
    batches = check_round_trip(client, "gzip", records, captured)
    assert {h.producer_id for _, h in batches} == {-1}  # acks=0 turns idempotence off


def test_flip_positions_cover_the_crc_span() -> None:
    small = flip_positions(300)
    assert set(small) == {(pos, bit) for pos in range(CRC_OFFSET, 300) for bit in range(8)}
    size = CRC_SPAN_START + FULL_SPAN + 5000
    big = flip_positions(size)
    positions = {pos for pos, _ in big}
    assert len(positions) == 4 + 64 + 2000
    assert min(positions) == CRC_OFFSET and max(positions) == size - 1
    assert {(pos, bit) for pos in range(CRC_OFFSET, 85) for bit in range(8)} <= set(big)


def _roundtrip(sock: socket.socket, key: int, version: int, body: Any, cid: int) -> Any:
    sock.sendall(encode_request(key, version, cid, "capture-check", body))
    frame = _read_frame(sock)
    answered_as = 0 if key == 18 and version > SUPPORTED[18][1] else version
    got_cid, response = decode_response(frame, key, answered_as)
    assert got_cid == cid
    return response


def _read_frame(sock: socket.socket) -> bytes:
    buf = b""
    while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[:4], "big"):
        chunk = sock.recv(65536)
        assert chunk, "capture broker closed the connection"
        buf += chunk
    return buf[4:]


def test_capture_broker_answers_every_version_it_offers() -> None:
    """The harness itself: each advertised (api, version) decodes, and round-trips."""
    batch = raw_batch(raw_record(b"k", b"v"), 1)
    bodies: dict[int, Any] = {
        0: ProduceRequest(
            acks=-1,
            timeout_ms=1000,
            topic_data=[TopicProduceData("t", [PartitionProduceData(0, batch)])],
        ),
        1: FetchRequest(topics=[FetchTopic(topic="t", partitions=[FetchPartition(0)])]),
        3: MetadataRequest(topics=[MetadataRequestTopic(name="t")]),
    }
    with (
        CaptureBroker(partitions=3) as broker,
        socket.create_connection(("127.0.0.1", broker.port), timeout=5) as sock,
    ):
        cid = 0
        for key, (low, high) in sorted(SUPPORTED.items()):
            for version in range(low, high + 1):
                cid += 1
                body = bodies.get(key) or request_class(key)()
                if key == 10:
                    body = (
                        FindCoordinatorRequest(key="g")
                        if version < 4
                        else FindCoordinatorRequest(coordinator_keys=["g"])
                    )
                response = _roundtrip(sock, key, version, body, cid)
                if key == 3:
                    assert [len(t.partitions) for t in response.topics] == [3]
                    assert [b.port for b in response.brokers] == [broker.port]
                elif key == 0:
                    parts = response.responses[0].partition_responses
                    assert [(p.error_code, p.base_offset) for p in parts] == [(0, version - 3)]
                elif key == 10 and version >= 4:
                    assert [(c.key, c.port) for c in response.coordinators] == [("g", broker.port)]
                elif hasattr(response, "error_code"):
                    assert response.error_code == 0
        # KIP-511: a newer ApiVersions gets UNSUPPORTED_VERSION, in v0, with our range.
        response = _roundtrip(sock, 18, 4, request_class(18)(), cid + 1)
        assert response.error_code == 35
        assert [(a.api_key, a.min_version, a.max_version) for a in response.api_keys] == [
            (18, *SUPPORTED[18])
        ]
        assert len(broker.batches) == SUPPORTED[0][1] - SUPPORTED[0][0] + 1
        assert {b.records for b in broker.batches} == {batch}
        assert broker.unhandled == []
        # An API it does not offer: the connection is closed.
        sock.sendall(encode_request(19, 0, 99, None, request_class(19)()))
        assert sock.recv(1) == b""
        assert broker.unhandled == ["api key 19 v0 not offered"]
