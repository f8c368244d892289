"""DescribeClientQuotas (48) and AlterClientQuotas (49), KIP-546, as Kafka 3.9's KafkaApis and
ZkAdminManager answer them.

DESCRIBE_CONFIGS on the cluster to describe (else CLUSTER_AUTHORIZATION_FAILED for the
request), ALTER_CONFIGS to alter (else for every entry). The quotas live in the first log
directory of a single broker (pykbroker.quotas.manager); a ZooKeeper cluster keeps them
where Kafka does, under /config/users and /config/clients (pykbroker.quotas.zk_store).
"""

from __future__ import annotations

from pykbroker.error_codes import ErrorCode
from pykbroker.errors import KafkaError
from pykbroker.handlers.authz import CLUSTER, authorize
from pykbroker.protocol._generated.alter_client_quotas_request import AlterClientQuotasRequest
from pykbroker.protocol._generated.alter_client_quotas_response import (
    AlterClientQuotasResponse,
)
from pykbroker.protocol._generated.alter_client_quotas_response import (
    EntityData as AlterEntityData,
)
from pykbroker.protocol._generated.alter_client_quotas_response import (
    EntryData as AlterEntryData,
)
from pykbroker.protocol._generated.describe_client_quotas_request import (
    DescribeClientQuotasRequest,
)
from pykbroker.protocol._generated.describe_client_quotas_response import (
    DescribeClientQuotasResponse,
    EntityData,
    EntryData,
    ValueData,
)
from pykbroker.quotas import client_quotas_for_update, load_client_quotas
from pykbroker.quotas.manager import Alteration, ClientQuotas
from pykbroker.security.acl_codes import AclOperation
from pykbroker.server.request_context import RequestContext


async def _alter_in_zookeeper(ctx: RequestContext, alterations: list[Alteration],
                              validate_only: bool) -> list[tuple[ErrorCode, str | None]]:
    """A cluster member writes each valid entry to its entity's znode (ZkAdminManager's
    alterClientQuotas) and applies it at once; the other brokers follow /config/changes."""
    from pykbroker.quotas.manager import parse_alteration
    from pykbroker.quotas.zk_store import replace_entity, write_entity

    results: list[tuple[ErrorCode, str | None]] = []
    for alteration in alterations:
        try:
            entity, ops = parse_alteration(alteration)
        except KafkaError as exc:
            results.append((exc.error_code, exc.message))
            continue
        if not validate_only:
            values = await write_entity(ctx.services.cluster.store, entity, ops)
            replace_entity(client_quotas_for_update(ctx.services), entity, values)
        results.append((ErrorCode.NONE, None))
    return results


def _current(ctx: RequestContext) -> ClientQuotas | None:
    services = ctx.services
    try:
        quotas: ClientQuotas | None = services.client_quotas
    except AttributeError:
        quotas = load_client_quotas(services)
    return quotas


async def handle_describe_client_quotas(
        ctx: RequestContext, req: DescribeClientQuotasRequest) -> DescribeClientQuotasResponse:
    if not authorize(ctx, AclOperation.DESCRIBE_CONFIGS, CLUSTER):
        code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        return DescribeClientQuotasResponse(throttle_time_ms=0, error_code=int(code),
                                            error_message=code.message, entries=None)
    quotas = _current(ctx)
    components = [(c.entity_type, c.match_type, c.match) for c in req.components]
    try:
        if quotas is None:  # validate the filter all the same
            from pykbroker.quotas.manager import ClientQuotas

            found = ClientQuotas(None).describe(components, req.strict)
        else:
            found = quotas.describe(components, req.strict)
    except KafkaError as exc:
        return DescribeClientQuotasResponse(throttle_time_ms=0, error_code=int(exc.error_code),
                                            error_message=exc.message, entries=None)
    return DescribeClientQuotasResponse(
        throttle_time_ms=0, error_code=0, error_message=None,
        entries=[EntryData(entity=[EntityData(t, n) for t, n in entity],
                           values=[ValueData(k, v) for k, v in sorted(values.items())])
                 for entity, values in found])


async def handle_alter_client_quotas(
        ctx: RequestContext, req: AlterClientQuotasRequest) -> AlterClientQuotasResponse:
    def answer(results: list[tuple[ErrorCode, str | None]]) -> AlterClientQuotasResponse:
        return AlterClientQuotasResponse(throttle_time_ms=0, entries=[
            AlterEntryData(error_code=int(code), error_message=message,
                           entity=[AlterEntityData(e.entity_type, e.entity_name)
                                   for e in entry.entity])
            for entry, (code, message) in zip(req.entries, results, strict=True)])

    if not authorize(ctx, AclOperation.ALTER_CONFIGS, CLUSTER):
        code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        return answer([(code, code.message)] * len(req.entries))
    alterations = [Alteration([(e.entity_type, e.entity_name) for e in entry.entity],
                              [(op.key, None if op.remove else op.value) for op in entry.ops])
                   for entry in req.entries]
    if ctx.services.cluster is not None:
        return answer(await _alter_in_zookeeper(ctx, alterations, req.validate_only))
    if req.validate_only:
        quotas = _current(ctx)
        if quotas is None:
            from pykbroker.quotas.manager import ClientQuotas

            quotas = ClientQuotas(None)  # validation only: no file for a broker without quotas
    else:
        quotas = client_quotas_for_update(ctx.services)
    return answer(quotas.alter(alterations, req.validate_only))
