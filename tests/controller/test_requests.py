"""The controller's requests encode in the versions it sends and decode back (pure)."""

from __future__ import annotations

import uuid

import pytest

from pykbroker.cluster.metadata_cache import Endpoint, LiveBroker
from pykbroker.controller.leader_election import LeaderAndIsr
from pykbroker.controller.requests import (
    VERSIONS,
    PartitionInfo,
    leader_and_isr,
    stop_replica,
    update_metadata,
)
from pykbroker.protocol.api import ApiKey
from pykbroker.protocol.framing import decode_request_body, encode_request, parse_request_header

TOPIC_ID = uuid.uuid4()
LIVE = {b: LiveBroker(b, (Endpoint("PLAINTEXT", "127.0.0.1", 9090 + b),), None) for b in (1, 2)}
PARTS = [PartitionInfo("t", i, TOPIC_ID, (1, 2, 3), LeaderAndIsr(1 + i % 2, 4, (1, 2), 7), 3)
         for i in range(3)]


def _roundtrip(api_key: int, body: object) -> object:
    frame = encode_request(api_key, VERSIONS[api_key], 1, "c", body)  # type: ignore[arg-type]
    header = parse_request_header(frame[4:])
    return decode_request_body(frame[4:], header)


def test_leader_and_isr_roundtrip() -> None:
    req = _roundtrip(ApiKey.LEADER_AND_ISR, leader_and_isr(1, 3, 99, PARTS, {("t", 0)}, LIVE,
                                                           "PLAINTEXT"))
    [topic] = req.topic_states  # type: ignore[attr-defined]
    assert topic.topic_id == TOPIC_ID
    states = {p.partition_index: p for p in topic.partition_states}
    assert states[0].is_new and not states[1].is_new
    assert states[1].leader == 2 and states[1].leader_epoch == 4 and states[1].isr == [1, 2]
    assert states[2].replicas == [1, 2, 3] and states[2].partition_epoch == 7
    assert sorted(ll.broker_id for ll in req.live_leaders) == [1, 2]  # type: ignore[attr-defined]


def test_update_metadata_marks_offline_replicas_and_deletions() -> None:
    req = _roundtrip(ApiKey.UPDATE_METADATA,
                     update_metadata(1, 3, 99, PARTS[:1], LIVE, deleting=PARTS[1:2]))
    states = {p.partition_index: p
              for t in req.topic_states for p in t.partition_states}  # type: ignore[attr-defined]
    assert states[0].offline_replicas == [3] and states[0].zk_version == 7
    assert states[1].leader == -2
    assert [b.id for b in req.live_brokers] == [1, 2]  # type: ignore[attr-defined]


@pytest.mark.parametrize("delete", [True, False])
def test_stop_replica_roundtrip(delete: bool) -> None:
    req = _roundtrip(ApiKey.STOP_REPLICA, stop_replica(1, 3, 99, [("t", 0, 4), ("t", 1, 4)],
                                                       delete=delete))
    [topic] = req.topic_states  # type: ignore[attr-defined]
    assert [p.delete_partition for p in topic.partition_states] == [delete, delete]
    assert [p.leader_epoch for p in topic.partition_states] == ([-2, -2] if delete else [4, 4])
