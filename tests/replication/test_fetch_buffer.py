"""The replica fetcher's connection reads Fetch responses into one kept buffer
(``BrokerConnection.request(..., reuse_buffer=True)``): records arrive intact, the buffer is
reused while it is large enough and replaced (not resized under the last response's views)
when it is not. A real socket and a server answering with real Fetch response frames."""

from __future__ import annotations

import os
import uuid

import pytest
import trio

from pykbroker.cluster.broker_client import BrokerConnection
from pykbroker.protocol._generated.fetch_request import FetchRequest, ReplicaState
from pykbroker.protocol._generated.fetch_response import (
    FetchableTopicResponse,
    FetchResponse,
    PartitionData,
)
from pykbroker.protocol.api import ApiKey
from pykbroker.protocol.framing import decode_request_body, encode_response, parse_request_header

VERSION = 15


def _response(payload: bytes) -> FetchResponse:
    return FetchResponse(throttle_time_ms=0, error_code=0, session_id=0, responses=[
        FetchableTopicResponse(topic="", topic_id=uuid.uuid4(), partitions=[PartitionData(
            partition_index=0, error_code=0, high_watermark=len(payload),
            last_stable_offset=len(payload), log_start_offset=0, records=payload)])])


def _request() -> FetchRequest:
    return FetchRequest(cluster_id=None, replica_id=-1, replica_state=ReplicaState(replica_id=2, replica_epoch=1), max_wait_ms=0,
                        min_bytes=1, max_bytes=1 << 20, isolation_level=0, session_id=0,
                        session_epoch=-1, topics=[], forgotten_topics_data=[], rack_id="")


async def _serve(stream: trio.SocketStream, payloads: list[bytes]) -> None:
    """Answer one Fetch per payload, in order."""
    buf = bytearray()
    for payload in payloads:
        while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[:4], "big"):
            buf += await stream.receive_some(65536)
        size = int.from_bytes(buf[:4], "big")
        frame, buf = bytes(buf[4:4 + size]), buf[4 + size:]
        req = parse_request_header(frame)
        assert (req.api_key, req.api_version) == (ApiKey.FETCH, VERSION)
        decode_request_body(frame, req)
        await stream.send_all(encode_response(ApiKey.FETCH, VERSION,
                                              req.header.correlation_id, _response(payload)))


def _records(response: FetchResponse) -> bytes:
    return bytes(response.responses[0].partitions[0].records)


@pytest.mark.trio
async def test_fetch_responses_share_one_buffer_until_a_larger_one_comes() -> None:
    first, smaller, larger = os.urandom(300_000), os.urandom(1_000), os.urandom(900_000)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        async def accept_one() -> None:
            stream = await listeners[0].accept()
            await _serve(stream, [first, smaller, larger])

        nursery.start_soon(accept_one)
        conn = BrokerConnection("127.0.0.1", port, "test-fetcher")
        with trio.fail_after(10):
            r1 = await conn.request(ApiKey.FETCH, VERSION, _request(), reuse_buffer=True)
            assert _records(r1) == first
            kept = conn._reused
            r2 = await conn.request(ApiKey.FETCH, VERSION, _request(), reuse_buffer=True)
            assert _records(r2) == smaller
            assert conn._reused is kept  # reused: no fresh allocation for a smaller answer
            # ... which is why a caller must be done with r1's records before this request.
            assert _records(r1) != first
            r3 = await conn.request(ApiKey.FETCH, VERSION, _request(), reuse_buffer=True)
            assert _records(r3) == larger
            assert conn._reused is not kept  # replaced, and r2's views still read their bytes
            assert _records(r2) == smaller
        await conn.close()
        for listener in listeners:
            await listener.aclose()
