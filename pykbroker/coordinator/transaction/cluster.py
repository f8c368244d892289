"""The transaction coordinator as a member of a ZooKeeper cluster (Kafka 3.x ZK mode).

* The coordinator of a transactional id is the leader of its ``__transaction_state``
  partition: LeaderAndIsr making this broker leader loads the partition's transactions,
  and losing leadership forgets them (``ClusterMember.leadership_listeners``).
* Markers go to each partition's leader through a :class:`TxnMarkerChannel` (a local leader
  is written directly).
* Transactional produces and offset commits on this broker are verified with the
  transaction's coordinator, wherever it is, through a :class:`TxnVerifier` (KIP-890).

Imported only by cluster members (the single broker's start-up imports none of this).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pykbroker.cluster.txn_markers import Connection, TxnMarkerChannel, cache_lookups
from pykbroker.cluster.txn_verification import TxnVerifier
from pykbroker.coordinator.transaction.coordinator import TransactionCoordinator
from pykbroker.coordinator.transaction.metadata import TRANSACTION_STATE_TOPIC
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError

__all__ = ["join_cluster"]

MARGIN_S = 5.0


def join_cluster(txns: TransactionCoordinator, member: Any, replicas: Any, *,
                 verification_enabled: Callable[[], bool],
                 connect: Callable[[str, int], Connection] | None = None) -> TxnVerifier:
    """Wire ``txns`` to the cluster ``member`` (a ClusterMember) and the broker's replica
    manager; returns the verifier (the group coordinator checks TxnOffsetCommit with it).
    ``connect`` opens broker-to-broker connections (tests pass fakes)."""
    cache = member.cache
    listener = member.listener

    def write_local(topic: str, index: int, producer_id: int, producer_epoch: int,
                    commit: bool, coordinator_epoch: int) -> ErrorCode:
        try:
            part = replicas.partition(topic, index)
            replicas.write_marker(part, producer_id, producer_epoch, commit, coordinator_epoch)
        except KafkaError as exc:
            return exc.error_code
        return ErrorCode.NONE

    leader_of, endpoint_of = cache_lookups(cache, listener)
    # A leader answers WriteTxnMarkers once its ISR holds them, up to request.timeout.ms:
    # wait a little longer than that before counting the request as lost.
    timeout_s = txns.config.request_timeout_ms / 1000.0 + MARGIN_S
    txns.markers = TxnMarkerChannel(member.node_id, leader_of, endpoint_of, write_local,
                                    connect=connect, changes=cache.wait_for_change,
                                    request_timeout_s=timeout_s)

    def coordinator_of(transactional_id: str) -> tuple[int, str, int] | None:
        if cache.topic(TRANSACTION_STATE_TOPIC) is None:
            return None
        return member.leader_endpoint(  # type: ignore[no-any-return]
            TRANSACTION_STATE_TOPIC, txns.partition_for(transactional_id), listener)

    verifier = txns.verifier = TxnVerifier(member.node_id, replicas, coordinator_of,
                                           txns.verify, enabled=verification_enabled,
                                           connect=connect, request_timeout_s=timeout_s)
    replicas.verify_transaction = verifier.check_produce
    replicas.marker_listeners.append(verifier.on_marker)

    def on_leadership(topic: str, index: int, leader: bool) -> None:
        verifier.forget_partition(topic, index)
        if topic == TRANSACTION_STATE_TOPIC:
            (txns.load_partition if leader else txns.unload_partition)(index)

    member.leadership_listeners.append(on_leadership)
    return verifier
