"""A replica fetcher whose leader stops answering gives up after replica.fetch.wait.max.ms +
FETCH_TIMEOUT_S (one cancel scope's deadline, moved at each fetch: the connection's request
has no time limit of its own), closes that connection and, on a new one, starts over with a
full fetch (session 0, epoch 0): the leader may have lost the session, and a fetcher stuck on
a dead leader would never catch up. A real ReplicaFetcherManager and partition log, and a
fake leader on a loopback socket that opens a session, then ignores the next fetch."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

import pykbroker.replication.fetcher as fetcher_module
from pykbroker.cluster.metadata_cache import Endpoint, LiveBroker
from pykbroker.cluster.replica_manager import ReplicaManager
from pykbroker.cluster.topics import TopicInfo
from pykbroker.log import LogConfig, LogManager
from pykbroker.protocol._generated.fetch_request import FetchRequest
from pykbroker.protocol._generated.fetch_response import FetchResponse
from pykbroker.protocol.api import ApiKey
from pykbroker.protocol.framing import decode_request_body, encode_response, parse_request_header
from pykbroker.replication.fetcher import FETCH_VERSION, FetcherSettings, ReplicaFetcherManager

LEADER, FOLLOWER, SESSION = 1, 2, 77
LISTENER = "PLAINTEXT"
TOPIC = TopicInfo("t", uuid.uuid4(), {0: [LEADER, FOLLOWER]})
FETCH_TIMEOUT_S, WAIT_MAX_MS, BACKOFF_MS = 0.2, 50, 20
LIMIT_S = WAIT_MAX_MS / 1000 + FETCH_TIMEOUT_S  # when the fetcher gives up on a fetch


class _Cache:
    """The metadata cache, as far as the fetcher manager uses it: the leader's endpoint."""

    def __init__(self, port: int) -> None:
        self.leader = LiveBroker(LEADER, (Endpoint(LISTENER, "127.0.0.1", port),))

    def broker(self, broker_id: int) -> LiveBroker | None:
        return self.leader if broker_id == LEADER else None


@dataclass
class _Leader:
    """What the fake leader saw: the Fetch requests on each connection, when each came in
    and when (if) the follower closed the connection."""

    requests: list[list[tuple[float, FetchRequest]]] = field(default_factory=list)
    closed_at: dict[int, float] = field(default_factory=dict)
    second_connection_fetched: trio.Event = field(default_factory=trio.Event)


async def _next_frame(stream: trio.SocketStream, buf: bytearray) -> bytes | None:
    """The next request frame (without its size), or None at EOF."""
    while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[:4], "big"):
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        buf += chunk
    size = int.from_bytes(buf[:4], "big")
    frame = bytes(buf[4:4 + size])
    del buf[:4 + size]
    return frame


async def _serve(stream: trio.SocketStream, index: int, seen: _Leader) -> None:
    """Connection 0 answers its first Fetch by opening session SESSION, then goes silent;
    later connections are silent from the start."""
    requests: list[tuple[float, FetchRequest]] = []
    seen.requests.append(requests)
    buf = bytearray()
    async with stream:
        while (frame := await _next_frame(stream, buf)) is not None:
            req = parse_request_header(frame)
            assert (req.api_key, req.api_version) == (ApiKey.FETCH, FETCH_VERSION)
            requests.append((trio.current_time(), decode_request_body(frame, req)))
            if index == 0 and len(requests) == 1:
                await stream.send_all(encode_response(
                    ApiKey.FETCH, FETCH_VERSION, req.header.correlation_id,
                    FetchResponse(throttle_time_ms=0, error_code=0, session_id=SESSION,
                                  responses=[])))
            if index == 1:
                seen.second_connection_fetched.set()
        seen.closed_at[index] = trio.current_time()


def _named(req: FetchRequest) -> list[tuple[uuid.UUID, int, int]]:
    return [(t.topic_id, p.partition, p.fetch_offset) for t in req.topics for p in t.partitions]


@pytest.mark.trio
async def test_a_fetch_without_an_answer_drops_the_connection_and_starts_a_new_session(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(fetcher_module, "FETCH_TIMEOUT_S", FETCH_TIMEOUT_S)
    caplog.set_level(logging.INFO, logger="pykbroker.replication.fetcher")
    replicas = ReplicaManager(LogManager([tmp_path], LogConfig.from_mapping({})),
                              lambda topic: LogConfig.from_mapping({}))
    part = replicas.make_leader_or_follower(TOPIC, 0, LEADER, 3, [LEADER, FOLLOWER],
                                            [LEADER, FOLLOWER], 0, FOLLOWER)
    assert not part.is_leader
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    settings = FetcherSettings(wait_max_ms=WAIT_MAX_MS, backoff_ms=BACKOFF_MS)
    manager = ReplicaFetcherManager(FOLLOWER, lambda: 1, replicas, _Cache(port), LISTENER,
                                    lambda: settings)
    seen = _Leader()

    async def leader(nursery: trio.Nursery) -> None:
        for index in range(3):  # the test needs two; a spare for a slow run
            nursery.start_soon(_serve, await listeners[0].accept(), index, seen)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(leader, nursery)
        await nursery.start(manager.run)
        start = trio.current_time()
        manager.follow(part)
        with trio.fail_after(LIMIT_S + 3):
            await seen.second_connection_fetched.wait()
        nursery.cancel_scope.cancel()
    connection = manager.fetchers[LEADER]._connection  # cancelled mid-fetch: still open
    if connection is not None:
        await connection.close()
    for listener in listeners:
        await listener.aclose()

    first, second = seen.requests[0], seen.requests[1]
    # Connection 0: a full fetch opened the session, the next (incremental) one went
    # unanswered, and nothing more was sent on it: the follower closed it instead.
    assert [(r.session_id, r.session_epoch) for _, r in first] == [(0, 0), (SESSION, 1)]
    assert _named(first[0][1]) == [(TOPIC.topic_id, 0, 0)]
    assert 0 in seen.closed_at, "the follower never closed the connection it gave up on"
    waited = seen.closed_at[0] - first[1][0]
    assert FETCH_TIMEOUT_S * 0.75 <= waited < LIMIT_S + 1.0, waited  # the deadline, not sooner
    # Connection 1: a new session, its first fetch a full one naming the partition.
    fetch = second[0][1]
    assert (fetch.session_id, fetch.session_epoch) == (0, 0)
    assert _named(fetch) == [(TOPIC.topic_id, 0, 0)]
    assert fetch.replica_state.replica_id == FOLLOWER
    assert second[0][0] - start < LIMIT_S + 1.0
    assert "no answer within" in caplog.text  # the time limit's path, not a connection error
