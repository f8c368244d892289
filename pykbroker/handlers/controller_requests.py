"""The controller's requests to brokers (LeaderAndIsr, UpdateMetadata, StopReplica) and a
broker's ControlledShutdown to the controller; served only by a broker in a cluster.

Versions are those that carry topic ids and grouped topic states (what a Kafka 3.9 ZK-mode
controller sends); the cluster member checks controller and broker epochs.
"""

from __future__ import annotations

from pykbroker.controller.controller import AlterPartition
from pykbroker.error_codes import ErrorCode
from pykbroker.handlers.authz import CLUSTER, Op, authorize, authorize_cluster
from pykbroker.protocol._generated.alter_partition_reassignments_request import (
    AlterPartitionReassignmentsRequest,
)
from pykbroker.protocol._generated.alter_partition_reassignments_response import (
    AlterPartitionReassignmentsResponse,
    ReassignablePartitionResponse,
    ReassignableTopicResponse,
)
from pykbroker.protocol._generated.alter_partition_request import AlterPartitionRequest
from pykbroker.protocol._generated.alter_partition_response import (
    AlterPartitionResponse,
)
from pykbroker.protocol._generated.alter_partition_response import (
    PartitionData as AlterPartitionPartitionData,
)
from pykbroker.protocol._generated.alter_partition_response import (
    TopicData as AlterPartitionTopicData,
)
from pykbroker.protocol._generated.controlled_shutdown_request import ControlledShutdownRequest
from pykbroker.protocol._generated.controlled_shutdown_response import (
    ControlledShutdownResponse,
    RemainingPartition,
)
from pykbroker.protocol._generated.elect_leaders_request import ElectLeadersRequest
from pykbroker.protocol._generated.elect_leaders_response import (
    ElectLeadersResponse,
    PartitionResult,
    ReplicaElectionResult,
)
from pykbroker.protocol._generated.leader_and_isr_request import LeaderAndIsrRequest
from pykbroker.protocol._generated.leader_and_isr_response import LeaderAndIsrResponse
from pykbroker.protocol._generated.list_partition_reassignments_request import (
    ListPartitionReassignmentsRequest,
)
from pykbroker.protocol._generated.list_partition_reassignments_response import (
    ListPartitionReassignmentsResponse,
    OngoingPartitionReassignment,
    OngoingTopicReassignment,
)
from pykbroker.protocol._generated.stop_replica_request import StopReplicaRequest
from pykbroker.protocol._generated.stop_replica_response import StopReplicaResponse
from pykbroker.protocol._generated.update_metadata_request import UpdateMetadataRequest
from pykbroker.protocol._generated.update_metadata_response import UpdateMetadataResponse
from pykbroker.protocol.api import ApiKey
from pykbroker.protocol.primitives import ZERO_UUID
from pykbroker.server.dispatch import HandlerSpec
from pykbroker.server.request_context import RequestContext


async def handle_leader_and_isr(ctx: RequestContext,
                                req: LeaderAndIsrRequest) -> LeaderAndIsrResponse:
    authorize_cluster(ctx, Op.CLUSTER_ACTION)
    response: LeaderAndIsrResponse = await ctx.services.cluster.on_leader_and_isr(req)
    return response


async def handle_update_metadata(ctx: RequestContext,
                                 req: UpdateMetadataRequest) -> UpdateMetadataResponse:
    authorize_cluster(ctx, Op.CLUSTER_ACTION)
    response: UpdateMetadataResponse = await ctx.services.cluster.on_update_metadata(req)
    return response


async def handle_stop_replica(ctx: RequestContext,
                              req: StopReplicaRequest) -> StopReplicaResponse:
    authorize_cluster(ctx, Op.CLUSTER_ACTION)
    response: StopReplicaResponse = await ctx.services.cluster.on_stop_replica(req)
    return response


async def handle_controlled_shutdown(ctx: RequestContext, req: ControlledShutdownRequest
                                     ) -> ControlledShutdownResponse:
    authorize_cluster(ctx, Op.CLUSTER_ACTION)
    code, remaining = await ctx.services.cluster.controller.controlled_shutdown(
        req.broker_id, req.broker_epoch if ctx.api_version >= 2 else -1)
    return ControlledShutdownResponse(
        error_code=int(code),
        remaining_partitions=[RemainingPartition(t, p) for t, p in remaining]
        if code == ErrorCode.NONE else [])


async def handle_elect_leaders(ctx: RequestContext,
                               req: ElectLeadersRequest) -> ElectLeadersResponse:
    """Served by the controller, as in ZooKeeper mode (admin clients send it there)."""
    election_type = req.election_type if ctx.api_version >= 1 else 0
    if not authorize(ctx, Op.ALTER, CLUSTER):  # the request's error, and each partition's
        code = int(ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
        return ElectLeadersResponse(throttle_time_ms=0, error_code=code,
                                    replica_election_results=[ReplicaElectionResult(
                                        t.topic, [PartitionResult(p, code, None)
                                                  for p in t.partitions])
                                        for t in req.topic_partitions or ()])
    if election_type not in (0, 1):
        return ElectLeadersResponse(throttle_time_ms=0,
                                    error_code=int(ErrorCode.INVALID_REQUEST),
                                    replica_election_results=[])
    wanted = None if req.topic_partitions is None else [
        (t.topic, p) for t in req.topic_partitions for p in t.partitions]
    results = await ctx.services.cluster.controller.elect_leaders(election_type, wanted)
    if results is None:
        return ElectLeadersResponse(throttle_time_ms=0, error_code=int(ErrorCode.NOT_CONTROLLER),
                                    replica_election_results=[])
    by_topic: dict[str, list[PartitionResult]] = {}
    for (topic, index), (code, message) in sorted(results.items()):
        by_topic.setdefault(topic, []).append(PartitionResult(index, int(code), message))
    return ElectLeadersResponse(
        throttle_time_ms=0, error_code=0,
        replica_election_results=[ReplicaElectionResult(t, r) for t, r in by_topic.items()])


async def handle_alter_partition(ctx: RequestContext,
                                 req: AlterPartitionRequest) -> AlterPartitionResponse:
    """A leader's ISR change, decided by the controller (v2+ name topics by id)."""
    authorize_cluster(ctx, Op.CLUSTER_ACTION)
    by_id = ctx.api_version >= 2
    changes = []
    for t in req.topics:
        for p in t.partitions:
            isr = ([b.broker_id for b in p.new_isr_with_epochs] if ctx.api_version >= 3
                   else list(p.new_isr))
            changes.append((t.topic_id if by_id else ZERO_UUID, None if by_id else t.topic_name,
                            p.partition_index, p.leader_epoch, isr,
                            p.leader_recovery_state if ctx.api_version >= 1 else 0,
                            p.partition_epoch))
    event = await ctx.services.cluster.controller.alter_partition(
        AlterPartition(req.broker_id, req.broker_epoch, changes))
    if event.error != ErrorCode.NONE:
        return AlterPartitionResponse(throttle_time_ms=0, error_code=int(event.error), topics=[])
    topics: dict[tuple[object, object], AlterPartitionTopicData] = {}
    for (topic_id, name, index), (code, state) in event.results.items():
        topic = topics.get((topic_id, name))
        if topic is None:
            topic = topics[(topic_id, name)] = AlterPartitionTopicData(
                topic_name=name or "", topic_id=topic_id, partitions=[])
        result = AlterPartitionPartitionData(partition_index=index, error_code=int(code))
        if state is not None:
            result.leader_id, result.leader_epoch = state.leader, state.leader_epoch
            result.isr = list(state.isr)
            result.leader_recovery_state = state.leader_recovery_state
            result.partition_epoch = state.partition_epoch
        topic.partitions.append(result)
    return AlterPartitionResponse(throttle_time_ms=0, error_code=0,
                                  topics=list(topics.values()))


async def handle_alter_partition_reassignments(
    ctx: RequestContext, req: AlterPartitionReassignmentsRequest
) -> AlterPartitionReassignmentsResponse:
    """Served by the controller (admin clients send it there), as in ZooKeeper mode."""
    authorize_cluster(ctx, Op.ALTER)
    wanted = {(t.name, p.partition_index): (list(p.replicas) if p.replicas is not None
                                            else None)
              for t in req.topics for p in t.partitions}
    results = await ctx.services.cluster.controller.reassign(wanted)
    if results is None:
        return AlterPartitionReassignmentsResponse(
            throttle_time_ms=0, error_code=int(ErrorCode.NOT_CONTROLLER),
            error_message="This is not the correct controller for this cluster.", responses=[])
    by_topic: dict[str, list[ReassignablePartitionResponse]] = {}
    for (topic, index), (code, message) in sorted(results.items()):
        by_topic.setdefault(topic, []).append(
            ReassignablePartitionResponse(index, int(code), message))
    return AlterPartitionReassignmentsResponse(
        throttle_time_ms=0, error_code=0, error_message=None,
        responses=[ReassignableTopicResponse(t, r) for t, r in by_topic.items()])


async def handle_list_partition_reassignments(
    ctx: RequestContext, req: ListPartitionReassignmentsRequest
) -> ListPartitionReassignmentsResponse:
    authorize_cluster(ctx, Op.DESCRIBE)
    ongoing = ctx.services.cluster.controller.ongoing_reassignments()
    if ongoing is None:
        return ListPartitionReassignmentsResponse(
            throttle_time_ms=0, error_code=int(ErrorCode.NOT_CONTROLLER),
            error_message="This is not the correct controller for this cluster.", topics=[])
    if req.topics is not None:
        asked = {(t.name, p) for t in req.topics for p in t.partition_indexes}
        ongoing = {tp: v for tp, v in ongoing.items() if tp in asked}
    by_topic: dict[str, list[OngoingPartitionReassignment]] = {}
    for (topic, index), (replicas, adding, removing) in sorted(ongoing.items()):
        by_topic.setdefault(topic, []).append(OngoingPartitionReassignment(
            index, list(replicas), list(adding), list(removing)))
    return ListPartitionReassignmentsResponse(
        throttle_time_ms=0, error_code=0, error_message=None,
        topics=[OngoingTopicReassignment(t, p) for t, p in by_topic.items()])


HANDLERS = [
    HandlerSpec(ApiKey.LEADER_AND_ISR, 5, 7, handle_leader_and_isr),
    HandlerSpec(ApiKey.STOP_REPLICA, 3, 4, handle_stop_replica),
    HandlerSpec(ApiKey.UPDATE_METADATA, 7, 8, handle_update_metadata),
    HandlerSpec(ApiKey.CONTROLLED_SHUTDOWN, 1, 3, handle_controlled_shutdown),
    HandlerSpec(ApiKey.ELECT_LEADERS, 0, 2, handle_elect_leaders),
    HandlerSpec(ApiKey.ALTER_PARTITION, 0, 3, handle_alter_partition),
    HandlerSpec(ApiKey.ALTER_PARTITION_REASSIGNMENTS, 0, 0,
                handle_alter_partition_reassignments),
    HandlerSpec(ApiKey.LIST_PARTITION_REASSIGNMENTS, 0, 0,
                handle_list_partition_reassignments),
]
