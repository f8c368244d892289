"""Bad bytes on one connection close that connection only.

Raw sockets send garbage, truncated or oversized frames, unknown APIs and malformed bodies;
each time the broker must close that connection (the peer sees EOF or a reset), log the peer,
and keep serving everyone else: a stock client (confluent-kafka producer and consumer, whose
connections stay open all along) and a raw connection speaking valid ApiVersions keep working.
"""

from __future__ import annotations

import socket
import struct
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as TP
from confluent_kafka.admin import AdminClient, NewTopic

from compat_tests.broker_process import BrokerProcess
from pykbroker.protocol._generated.api_versions_response import ApiVersionsResponse

pytestmark = pytest.mark.timeout(180)

IO_TIMEOUT = 10.0
CLOSE_WITHIN_S = 3.0
API_VERSIONS = 18
METADATA = 3
UNSUPPORTED_VERSION = 35


# -- raw protocol ---------------------------------------------------------------------------


def _i16(v: int) -> bytes:
    return struct.pack(">h", v)


def _i32(v: int) -> bytes:
    return struct.pack(">i", v)


def _string(s: str) -> bytes:
    raw = s.encode()
    return _i16(len(raw)) + raw


def frame(payload: bytes) -> bytes:
    return _i32(len(payload)) + payload


def header_v1(api_key: int, version: int, correlation_id: int,
              client_id: str = "bad-input-test") -> bytes:
    return _i16(api_key) + _i16(version) + _i32(correlation_id) + _string(client_id)


def header_v2(api_key: int, version: int, correlation_id: int,
              client_id: str = "bad-input-test") -> bytes:
    return header_v1(api_key, version, correlation_id, client_id) + b"\x00"  # no tags


def connect(broker: BrokerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", broker.port), timeout=IO_TIMEOUT)
    sock.settimeout(IO_TIMEOUT)
    return sock


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket) -> bytes:
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    assert 0 <= size < 10_000_000, size
    return recv_exact(sock, size)


def api_versions(sock: socket.socket, correlation_id: int, version: int = 0,
                 flexible: bool = False) -> tuple[int, ApiVersionsResponse]:
    """Send ApiVersions (v0 unless told) and decode the answer as the broker's v0 response
    when ``flexible`` is False, which is what an unsupported version gets back."""
    if flexible:  # v3+: header v2; body client_software_name, client_software_version, tags
        body = b"\x05kcat" + b"\x061.0.0" + b"\x00"
        sock.sendall(frame(header_v2(API_VERSIONS, version, correlation_id) + body))
    else:
        sock.sendall(frame(header_v1(API_VERSIONS, version, correlation_id)))
    buf = recv_frame(sock)
    (corr,) = struct.unpack_from(">i", buf, 0)
    resp, end = ApiVersionsResponse.decode(buf, 4, 0)
    assert end == len(buf), f"{len(buf) - end} trailing bytes in the ApiVersions response"
    assert corr == correlation_id
    return corr, resp


def ranges(resp: ApiVersionsResponse) -> dict[int, tuple[int, int]]:
    return {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}


def assert_closed_by_broker(sock: socket.socket, within: float = CLOSE_WITHIN_S) -> bytes:
    """The broker closes ``sock``: EOF or a reset arrives within ``within`` seconds.
    Returns whatever bytes came before (normally none)."""
    got = bytearray()
    deadline = time.monotonic() + within
    sock.settimeout(0.2)
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"connection still open after {within} s (got {bytes(got)[:80]!r})"
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return bytes(got)
        if not chunk:
            return bytes(got)
        got += chunk


def assert_still_open(sock: socket.socket, seconds: float = 0.5) -> None:
    sock.settimeout(seconds)
    try:
        data = sock.recv(1)
    except TimeoutError:
        return
    finally:
        sock.settimeout(IO_TIMEOUT)
    raise AssertionError(f"connection closed or answered unexpectedly: {data!r}")


def peer_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


def wait_for_log(broker: BrokerProcess, text: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [line for line in broker.log().splitlines() if text in line]
        if lines:
            return lines[-1]
        time.sleep(0.05)
    raise AssertionError(f"no log line mentions {text!r}:\n{broker.log()[-3000:]}")


# -- a normal client alongside --------------------------------------------------------------


@dataclass
class HealthyClient:
    """A confluent-kafka producer and consumer whose connections stay open all test long."""

    broker: BrokerProcess
    topic: str
    producer: Producer
    consumer: Consumer
    rounds: int = 0

    def roundtrip(self) -> None:
        assert self.broker.proc is not None and self.broker.proc.poll() is None
        self.rounds += 1
        value = f"still working {self.rounds}".encode()
        reports: list[tuple[object, int]] = []
        self.producer.produce(self.topic, value=value, partition=0,
                              on_delivery=lambda err, msg: reports.append((err, msg.offset())))
        assert self.producer.flush(IO_TIMEOUT) == 0, "produce not acknowledged"
        ((err, offset),) = reports
        assert err is None, err
        assert offset == self.rounds - 1
        self.consumer.assign([TP(self.topic, 0, offset)])
        deadline = time.monotonic() + IO_TIMEOUT
        while True:
            assert time.monotonic() < deadline, "consume timed out"
            msg = self.consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            assert (msg.offset(), msg.value()) == (offset, value)
            return


@pytest.fixture
def healthy(broker: BrokerProcess) -> Iterator[HealthyClient]:
    topic = f"healthy-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=10)[topic].result(IO_TIMEOUT)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all",
                         "linger.ms": 0, "message.timeout.ms": 10000})
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "healthy",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 100})
    client = HealthyClient(broker, topic, producer, consumer)
    try:
        client.roundtrip()
        yield client
    finally:
        consumer.close()
        producer.flush(IO_TIMEOUT)
        producer.close()


def assert_broker_alive(broker: BrokerProcess) -> None:
    assert broker.proc is not None and broker.proc.poll() is None, broker.log()[-3000:]


# -- each bad input closes its own connection -----------------------------------------------


BAD_INPUTS = {
    "http-request": b"GET / HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n",
    "2GiB-frame": _i32(0x7FFFFFFF),
    "2GiB-frame-with-bytes": _i32(0x7FFFFFFF) + header_v1(METADATA, 1, 1) + b"\x00" * 1000,
    "negative-size": _i32(-5) + b"\x00" * 16,
    "frame-shorter-than-header": frame(b"\x00\x03"),
    "unknown-api-key": frame(header_v1(999, 0, 7) + b"\x00" * 8),
    "negative-api-key": frame(header_v1(-2, 0, 7)),
    "unsupported-metadata-version": frame(header_v1(METADATA, 99, 7) + b"\x00" * 8),
    # Metadata v1: topics array of 3 names, but the first name claims 30000 bytes.
    "malformed-body": frame(header_v1(METADATA, 1, 7) + _i32(3) + _i16(30000) + b"abc"),
    # ApiVersions v3 with a compact string whose varint length runs past the frame.
    "malformed-flexible-body": frame(header_v2(API_VERSIONS, 3, 7) + b"\xff\xff\xff"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_frame_closes_only_its_connection(
        broker: BrokerProcess, healthy: HealthyClient, name: str) -> None:
    bystander = connect(broker)  # a raw connection that behaves
    try:
        _, before = api_versions(bystander, 1)
        with connect(broker) as bad:
            peer = peer_of(bad)
            started = time.monotonic()
            bad.sendall(BAD_INPUTS[name])
            leftover = assert_closed_by_broker(bad)
            closed_after = time.monotonic() - started
        assert leftover == b"", f"broker answered garbage with {leftover[:80]!r}"
        assert closed_after < CLOSE_WITHIN_S
        assert_broker_alive(broker)
        wait_for_log(broker, peer)
        healthy.roundtrip()
        _, after = api_versions(bystander, 2)
        assert after.error_code == 0 and ranges(after) == ranges(before)
    finally:
        bystander.close()


@pytest.mark.parametrize("then", ["half-close", "close", "reset"])
def test_truncated_frame(broker: BrokerProcess, healthy: HealthyClient, then: str) -> None:
    """Size prefix says 100, 10 bytes follow. While the sender waits, the broker waits too
    and serves everyone else; when the sender gives up, only that connection goes."""
    bad = connect(broker)
    peer = peer_of(bad)
    try:
        bad.sendall(_i32(100) + header_v1(METADATA, 1, 5)[:10])
        healthy.roundtrip()
        assert_still_open(bad)
        healthy.roundtrip()
        if then == "half-close":
            bad.shutdown(socket.SHUT_WR)
            assert assert_closed_by_broker(bad) == b""
        elif then == "reset":
            bad.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        bad.close()
    if then != "reset":  # a reset is the peer's doing, logged at DEBUG only (as Kafka does)
        assert "inside a frame" in wait_for_log(broker, peer)
    assert_broker_alive(broker)
    healthy.roundtrip()


@pytest.mark.slow
@pytest.mark.broker_config(**{"connections.max.idle.ms": "1500"})
def test_truncated_frame_held_open_is_closed_when_idle(
        broker: BrokerProcess, healthy: HealthyClient) -> None:
    with connect(broker) as bad:
        bad.sendall(_i32(100) + b"\x00" * 10)
        healthy.roundtrip()
        assert assert_closed_by_broker(bad, within=10.0) == b""
    assert_broker_alive(broker)
    healthy.roundtrip()


def test_oversized_frame_refused_before_body(broker: BrokerProcess,
                                             healthy: HealthyClient) -> None:
    """A 2 GiB frame is refused on its size prefix alone: the broker neither waits for nor
    buffers the body; the socket is closed while the sender is still writing."""
    with connect(broker) as bad:
        peer = peer_of(bad)
        bad.sendall(_i32(0x7FFFFFFF))
        started = time.monotonic()
        chunk = b"\x00" * 65536
        refused = False
        bad.settimeout(0.2)
        while time.monotonic() - started < CLOSE_WITHIN_S:  # keep streaming the "body"
            try:
                bad.send(chunk)
                if bad.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b"":
                    refused = True
                    break
            except BlockingIOError:
                continue
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                refused = True
                break
        assert refused, "broker kept reading the body of a 2 GiB frame"
    line = wait_for_log(broker, peer)
    assert "2147483647" in line, line
    assert_broker_alive(broker)
    healthy.roundtrip()


@pytest.mark.broker_config(**{"socket.request.max.bytes": "2048"})
def test_lowered_socket_request_max_bytes(broker: BrokerProcess,
                                          healthy: HealthyClient) -> None:
    # Just under the limit: a valid Metadata v1 request (all topics) padded by a long client id.
    with connect(broker) as ok:
        payload = header_v1(METADATA, 1, 3, "c" * 1900) + _i32(-1)
        assert len(payload) <= 2048
        ok.sendall(frame(payload))
        (corr,) = struct.unpack_from(">i", recv_frame(ok), 0)
        assert corr == 3
    with connect(broker) as big:
        peer = peer_of(big)
        payload = header_v1(METADATA, 1, 4, "c" * 2100) + _i32(-1)
        big.sendall(frame(payload))
        assert assert_closed_by_broker(big) == b""
    line = wait_for_log(broker, peer)
    assert "2048" in line, line
    assert_broker_alive(broker)
    healthy.roundtrip()


# -- ApiVersions with a version from the future (KIP-511) -----------------------------------


def test_api_versions_unsupported_version_gets_v0_error(broker: BrokerProcess,
                                                         healthy: HealthyClient) -> None:
    """ApiVersions v9 (flexible header and body) from a client newer than the broker: a v0
    response (v0 header, no tags) with UNSUPPORTED_VERSION and the ApiVersions range, so the
    client can retry on the same connection with a version both sides know."""
    with connect(broker) as sock:
        _, supported = api_versions(sock, 10)
        assert supported.error_code == 0
        assert ranges(supported)[API_VERSIONS] == (0, 4)  # Kafka 3.9
        for api in (0, 1, 2, 3, 19):  # Produce, Fetch, ListOffsets, Metadata, CreateTopics
            assert api in ranges(supported), f"API {api} missing"
        _, resp = api_versions(sock, 11, version=9, flexible=True)
        assert resp.error_code == UNSUPPORTED_VERSION
        assert ranges(resp)[API_VERSIONS] == (0, 4)
        assert_still_open(sock, 0.2)
        # The client retries with the highest version both know, on the same connection.
        _, v3 = _api_versions_v3(sock, 12)
        assert v3 == ranges(supported)
        _, again = api_versions(sock, 13, version=0)
        assert again.error_code == 0
    assert_broker_alive(broker)
    healthy.roundtrip()


def test_api_versions_unsupported_version_lists_only_api_versions(broker: BrokerProcess) -> None:
    """Kafka 3.9 ``ApiVersionsRequest.getErrorResponse``: on UNSUPPORTED_VERSION the ApiKeys
    field holds the ApiVersions range alone."""
    with connect(broker) as sock:
        _, resp = api_versions(sock, 1, version=9, flexible=True)
    assert resp.error_code == UNSUPPORTED_VERSION
    assert [(k.api_key, k.min_version, k.max_version) for k in resp.api_keys] == [
        (API_VERSIONS, 0, 4)]


def test_api_versions_invalid_software_name(broker: BrokerProcess) -> None:
    """ApiVersions v3 whose client_software_name breaks KIP-511's pattern: INVALID_REQUEST
    (42) with no ApiKeys (Kafka's getErrorResponse), and the connection stays open."""
    with connect(broker) as sock:
        sock.sendall(frame(header_v2(API_VERSIONS, 3, 5) + b"\x06-bad-\x061.0.0\x00"))
        buf = recv_frame(sock)
        resp, end = ApiVersionsResponse.decode(buf, 4, 3)
        assert end == len(buf)
        assert resp.error_code == 42
        assert_still_open(sock, 0.2)
        assert resp.api_keys == []


def _api_versions_v3(sock: socket.socket, correlation_id: int
                     ) -> tuple[int, dict[int, tuple[int, int]]]:
    sock.sendall(frame(header_v2(API_VERSIONS, 3, correlation_id) + b"\x05kcat\x061.0.0\x00"))
    buf = recv_frame(sock)
    (corr,) = struct.unpack_from(">i", buf, 0)
    resp, end = ApiVersionsResponse.decode(buf, 4, 3)
    assert end == len(buf)
    assert corr == correlation_id and resp.error_code == 0
    return corr, ranges(resp)


def test_bytes_after_a_whole_body_are_ignored(broker: BrokerProcess) -> None:
    """Kafka ignores bytes after a request body, and librdkafka relies on it: its Metadata
    request for all topics carries 3 stray bytes (librdkafka#5049)."""
    from pykbroker.protocol._generated.metadata_response import MetadataResponse

    with connect(broker) as sock:
        sock.sendall(frame(header_v1(METADATA, 1, 7) + _i32(-1) + b"junk"))
        buf = recv_frame(sock)
        assert struct.unpack_from(">i", buf, 0)[0] == 7
        resp, _ = MetadataResponse.decode(buf, 4, 1)
        assert resp.brokers[0].node_id == 1
        _, after = api_versions(sock, 8)
        assert after.error_code == 0
