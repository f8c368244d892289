"""A tiny fake Kafka broker for tests: it records the record batches real producers send.

It speaks just enough of the protocol, through pykbroker's own framing and generated codecs,
for a stock producer to bootstrap and produce: ApiVersions, Metadata (a single broker, node 0,
leading every partition of every topic asked for), InitProducerId (for idempotent producers)
and Produce, whose ``records`` bytes it keeps untouched. Any other request closes the
connection (and is noted in ``unhandled``), as a broker does with an API it does not offer.

Fetch (every partition empty) and FindCoordinator (always this node) are offered too, although
no producer calls them: librdkafka derives its features from the advertised ranges and writes
message format v2 only when Fetch v4 is offered, zstd only with Fetch v10 and Produce v7, and
lz4 only when FindCoordinator v0 is offered (see librdkafka's rdkafka_feature.c).

The batches are read back with a few ``struct`` calls of its own, not with
``pykbroker.records``, so that the code under test is never part of the harness.

Usage::

    with CaptureBroker(partitions=1) as broker:
        producer = SomeProducer(bootstrap=broker.bootstrap)
        ...
        broker.batches  # [CapturedBatch(topic, partition, records, acks, api_version), ...]
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
import uuid
from typing import Any, NamedTuple

from pykbroker.error_codes import ErrorCode
from pykbroker.protocol._generated.api_versions_response import ApiVersion, ApiVersionsResponse
from pykbroker.protocol._generated.fetch_response import (
    FetchableTopicResponse,
    FetchResponse,
    PartitionData,
)
from pykbroker.protocol._generated.find_coordinator_response import (
    Coordinator,
    FindCoordinatorResponse,
)
from pykbroker.protocol._generated.init_producer_id_response import InitProducerIdResponse
from pykbroker.protocol._generated.metadata_response import (
    MetadataResponse,
    MetadataResponseBroker,
    MetadataResponsePartition,
    MetadataResponseTopic,
)
from pykbroker.protocol._generated.produce_response import (
    PartitionProduceResponse,
    ProduceResponse,
    TopicProduceResponse,
)
from pykbroker.protocol.framing import (
    decode_request_body,
    encode_response,
    frame_size,
    parse_request_header,
)

__all__ = ["SUPPORTED", "CaptureBroker", "CapturedBatch"]

PRODUCE = 0
FETCH = 1
METADATA = 3
FIND_COORDINATOR = 10
API_VERSIONS = 18
INIT_PRODUCER_ID = 22

#: api key -> (min, max): honest, small ranges this fake actually implements.
SUPPORTED: dict[int, tuple[int, int]] = {
    PRODUCE: (3, 9),
    FETCH: (4, 12),
    METADATA: (0, 12),
    FIND_COORDINATOR: (0, 4),
    API_VERSIONS: (0, 3),
    INIT_PRODUCER_ID: (0, 4),
}

NODE_ID = 0
CLUSTER_ID = "capture-broker-cluster"
MAX_FRAME = 64 * 1024 * 1024

_BATCH_LENGTH = struct.Struct(">i")  # at offset 8 of a batch
_RECORDS_COUNT = struct.Struct(">i")  # at offset 57 of a v2 batch


class _Close(Exception):
    """Raised by a request handler to make the fake drop the connection."""


class CapturedBatch(NamedTuple):
    """The ``records`` bytes of one partition of one Produce request, as the client sent them."""

    topic: str
    partition: int
    records: bytes
    acks: int
    api_version: int


def _count_records(records: bytes) -> int:
    """Records in a run of v2 batches (for base offsets); tolerant of anything odd."""
    pos = 0
    total = 0
    while len(records) - pos >= 61:
        (length,) = _BATCH_LENGTH.unpack_from(records, pos + 8)
        if length < 49:
            break
        (count,) = _RECORDS_COUNT.unpack_from(records, pos + 57)
        total += max(count, 0)
        pos += 12 + length
    return total


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        broker = self.server.owner
        broker._track(sock)
        try:
            while True:
                prefix = _recv_exact(sock, 4)
                if prefix is None:
                    return
                size = frame_size(prefix)
                if size > MAX_FRAME:
                    broker._note(f"frame of {size} bytes")
                    return
                frame = _recv_exact(sock, size)
                if frame is None:
                    return
                reply = broker._dispatch(frame)
                if reply is not None:
                    sock.sendall(reply)
        except (_Close, OSError):
            return  # closed on purpose, or by the client (reset, shutdown)
        except Exception as exc:  # a malformed request, or a bug in the fake: make it visible
            broker._note(f"closed after {exc!r}")
        finally:
            broker._untrack(sock)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: CaptureBroker


class CaptureBroker:
    """Fake single-node broker on 127.0.0.1 (free port) in a background thread.

    ``partitions`` is how many partitions each topic has (topics exist as soon as they are
    asked for). ``batches`` is a list of :class:`CapturedBatch`, appended under a lock in the
    order the Produce requests arrived. ``requests`` logs ``(api_key, api_version)`` of every
    request; ``unhandled`` notes what made the fake close a connection.
    """

    def __init__(self, partitions: int = 1) -> None:
        self.partitions = partitions
        self.batches: list[CapturedBatch] = []
        self.requests: list[tuple[int, int]] = []
        self.unhandled: list[str] = []
        self._lock = threading.Lock()
        self._topic_ids: dict[str, uuid.UUID] = {}
        self._next_offset: dict[tuple[str, int], int] = {}
        self._next_producer_id = 1000
        self._socks: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> CaptureBroker:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.owner = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"capture-broker-{self.port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server = self._server
        if server is None:
            return
        self._server = None
        server.shutdown()
        server.server_close()
        with self._lock:
            socks = list(self._socks)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> CaptureBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- bookkeeping -------------------------------------------------------------------------

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.discard(sock)

    def _note(self, what: str) -> None:
        with self._lock:
            self.unhandled.append(what)

    def _topic_id(self, name: str) -> uuid.UUID:
        with self._lock:
            tid = self._topic_ids.get(name)
            if tid is None:
                tid = self._topic_ids[name] = uuid.uuid4()
            return tid

    def batches_for(self, topic: str) -> list[CapturedBatch]:
        with self._lock:
            return [b for b in self.batches if b.topic == topic]

    # -- requests ----------------------------------------------------------------------------

    def _dispatch(self, frame: bytes) -> bytearray | None:
        """The response frame, or None for no response (acks=0); raises _Close to close."""
        req = parse_request_header(frame)
        key, version = req.api_key, req.api_version
        with self._lock:
            self.requests.append((key, version))
        if key == API_VERSIONS:
            return self._api_versions(frame, req)
        supported = SUPPORTED.get(key)
        if supported is None or not supported[0] <= version <= supported[1]:
            self._note(f"api key {key} v{version} not offered")
            raise _Close
        body = decode_request_body(frame, req)
        if key == METADATA:
            response: Any = self._metadata(body, version)
        elif key == INIT_PRODUCER_ID:
            response = self._init_producer_id()
        elif key == FETCH:
            response = self._fetch(body)
        elif key == FIND_COORDINATOR:
            response = self._find_coordinator(body, version)
        else:
            response = self._produce(body, version)
            if response is None:
                return None
        return encode_response(key, version, req.correlation_id, response)

    def _api_versions(self, frame: bytes, req: Any) -> bytearray:
        low, high = SUPPORTED[API_VERSIONS]
        if req.api_version > high:
            # KIP-511: answer in v0 with UNSUPPORTED_VERSION and our ApiVersions range.
            body = ApiVersionsResponse(
                error_code=ErrorCode.UNSUPPORTED_VERSION,
                api_keys=[ApiVersion(API_VERSIONS, low, high)],
            )
            return encode_response(API_VERSIONS, 0, req.correlation_id, body)
        decode_request_body(frame, req)  # must be well-formed
        body = ApiVersionsResponse(
            error_code=0,
            api_keys=[ApiVersion(k, lo, hi) for k, (lo, hi) in sorted(SUPPORTED.items())],
        )
        return encode_response(API_VERSIONS, req.api_version, req.correlation_id, body)

    def _metadata(self, body: Any, version: int) -> MetadataResponse:
        requested = body.topics
        if requested is None or (version == 0 and not requested):
            with self._lock:
                names: list[str] = sorted(self._topic_ids)
        else:
            names = []
            with self._lock:
                by_id = {tid: name for name, tid in self._topic_ids.items()}
            for t in requested:
                name = t.name if t.name is not None else by_id.get(t.topic_id)
                if name is not None:
                    names.append(name)
        topics = []
        for name in names:
            partitions = [
                MetadataResponsePartition(
                    error_code=0,
                    partition_index=p,
                    leader_id=NODE_ID,
                    leader_epoch=0,
                    replica_nodes=[NODE_ID],
                    isr_nodes=[NODE_ID],
                    offline_replicas=[],
                )
                for p in range(self.partitions)
            ]
            topics.append(
                MetadataResponseTopic(
                    error_code=0,
                    name=name,
                    topic_id=self._topic_id(name),
                    is_internal=False,
                    partitions=partitions,
                )
            )
        return MetadataResponse(
            throttle_time_ms=0,
            brokers=[MetadataResponseBroker(NODE_ID, "127.0.0.1", self.port, None)],
            cluster_id=CLUSTER_ID,
            controller_id=NODE_ID,
            topics=topics,
        )

    def _init_producer_id(self) -> InitProducerIdResponse:
        with self._lock:
            pid = self._next_producer_id
            self._next_producer_id += 1
        return InitProducerIdResponse(error_code=0, producer_id=pid, producer_epoch=0)

    def _find_coordinator(self, body: Any, version: int) -> FindCoordinatorResponse:
        if version < 4:
            return FindCoordinatorResponse(
                error_code=0,
                error_message=None,
                node_id=NODE_ID,
                host="127.0.0.1",
                port=self.port,
            )
        return FindCoordinatorResponse(
            coordinators=[
                Coordinator(key, NODE_ID, "127.0.0.1", self.port, 0, None)
                for key in body.coordinator_keys
            ]
        )

    def _fetch(self, body: Any) -> FetchResponse:
        """Every partition asked for, without records (the fake keeps no log)."""
        topics = []
        for topic in body.topics:
            partitions = []
            for part in topic.partitions:
                with self._lock:
                    end = self._next_offset.get((topic.topic, part.partition), 0)
                partitions.append(
                    PartitionData(
                        partition_index=part.partition,
                        error_code=0,
                        high_watermark=end,
                        last_stable_offset=end,
                        log_start_offset=0,
                        aborted_transactions=[],
                        preferred_read_replica=-1,
                        records=b"",
                    )
                )
            topics.append(FetchableTopicResponse(topic=topic.topic, partitions=partitions))
        return FetchResponse(throttle_time_ms=0, error_code=0, session_id=0, responses=topics)

    def _produce(self, body: Any, version: int) -> ProduceResponse | None:
        responses = []
        for topic in body.topic_data:
            partition_responses = []
            for part in topic.partition_data:
                records = b"" if part.records is None else bytes(part.records)
                with self._lock:
                    self.batches.append(
                        CapturedBatch(topic.name, part.index, records, body.acks, version)
                    )
                    tp = (topic.name, part.index)
                    base = self._next_offset.get(tp, 0)
                    self._next_offset[tp] = base + _count_records(records)
                partition_responses.append(
                    PartitionProduceResponse(
                        index=part.index,
                        error_code=0,
                        base_offset=base,
                        log_append_time_ms=-1,
                        log_start_offset=0,
                    )
                )
            responses.append(
                TopicProduceResponse(name=topic.name, partition_responses=partition_responses)
            )
        if body.acks == 0:
            return None
        return ProduceResponse(responses=responses, throttle_time_ms=0)
