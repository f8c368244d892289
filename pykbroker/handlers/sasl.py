"""SaslHandshake, SaslAuthenticate, and SCRAM credential management.

The exchange itself lives in the connection's SaslSession (pykbroker.security.authenticator);
the connection admits only these requests until the session completes and closes it after a
failure is answered. A failure is answered after ``connection.failed.authentication.delay.ms``
(Kafka's KIP-306 delay, which slows password guessing). On listeners without SASL both APIs
answer ILLEGAL_SASL_STATE, as Kafka's KafkaApis does.

Describe/AlterUserScramCredentials keep credentials in the broker's credential store (the
first log directory, or in ZooKeeper's /config/users in a cluster: see security/credentials.py).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import trio

from pykbroker.error_codes import ErrorCode
from pykbroker.handlers.authz import CLUSTER, Op, authorize
from pykbroker.protocol._generated.alter_user_scram_credentials_request import (
    AlterUserScramCredentialsRequest,
)
from pykbroker.protocol._generated.alter_user_scram_credentials_response import (
    AlterUserScramCredentialsResponse,
    AlterUserScramCredentialsResult,
)
from pykbroker.protocol._generated.describe_user_scram_credentials_request import (
    DescribeUserScramCredentialsRequest,
)
from pykbroker.protocol._generated.describe_user_scram_credentials_response import (
    CredentialInfo,
    DescribeUserScramCredentialsResponse,
    DescribeUserScramCredentialsResult,
)
from pykbroker.protocol._generated.sasl_authenticate_request import SaslAuthenticateRequest
from pykbroker.protocol._generated.sasl_authenticate_response import SaslAuthenticateResponse
from pykbroker.protocol._generated.sasl_handshake_request import SaslHandshakeRequest
from pykbroker.protocol._generated.sasl_handshake_response import SaslHandshakeResponse
from pykbroker.security.authenticator import SaslFailed
from pykbroker.security.scram import (
    MAX_ITERATIONS,
    MIN_ITERATIONS,
    ScramCredential,
    ScramMechanism,
    credential_from_salted,
)
from pykbroker.server.request_context import RequestContext

AFTER_AUTHENTICATION = "SaslAuthenticate request received after successful authentication"


async def handle_sasl_handshake(ctx: RequestContext, req: SaslHandshakeRequest) -> Any:
    session = ctx.session
    if session is None:
        return SaslHandshakeResponse(error_code=int(ErrorCode.ILLEGAL_SASL_STATE),
                                     mechanisms=[])
    code = session.handshake(req.mechanism, ctx.api_version)
    if code != ErrorCode.NONE:
        await trio.sleep(session.listener.failed_auth_delay_s)
    return SaslHandshakeResponse(error_code=int(code),
                                 mechanisms=list(session.listener.mechanisms))


async def handle_sasl_authenticate(ctx: RequestContext, req: SaslAuthenticateRequest) -> Any:
    session = ctx.session
    if session is None or session.authenticated:
        return SaslAuthenticateResponse(error_code=int(ErrorCode.ILLEGAL_SASL_STATE),
                                        error_message=AFTER_AUTHENTICATION, auth_bytes=b"")
    try:
        answer = session.authenticate(bytes(req.auth_bytes))
    except SaslFailed as exc:
        await trio.sleep(session.listener.failed_auth_delay_s)
        return SaslAuthenticateResponse(error_code=int(ErrorCode.SASL_AUTHENTICATION_FAILED),
                                        error_message=str(exc), auth_bytes=b"")
    return SaslAuthenticateResponse(error_code=0, error_message=None, auth_bytes=answer,
                                    session_lifetime_ms=session.session_lifetime_ms)


def _store(ctx: RequestContext) -> Any:
    if ctx.security is None:
        raise RuntimeError("no credential store on this connection")
    return ctx.security.credentials


async def handle_describe_user_scram_credentials(
        ctx: RequestContext, req: DescribeUserScramCredentialsRequest) -> Any:
    if not authorize(ctx, Op.DESCRIBE, CLUSTER):  # Kafka's getErrorResponse: one per user
        code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        return DescribeUserScramCredentialsResponse(
            throttle_time_ms=0, error_code=int(code), error_message=code.message,
            results=[DescribeUserScramCredentialsResult(
                user="", error_code=int(code), error_message=code.message, credential_infos=[])
                for _ in req.users or ()])
    store = _store(ctx)
    names = [u.name for u in req.users] if req.users else sorted(store.users)
    results = []
    duplicates = {n for n, count in Counter(names).items() if count > 1}
    for name in dict.fromkeys(names):
        if name in duplicates:
            results.append(DescribeUserScramCredentialsResult(
                user=name, error_code=int(ErrorCode.DUPLICATE_RESOURCE),
                error_message="Cannot describe SCRAM credentials for the same user twice in a "
                              f"single request: {name}", credential_infos=[]))
            continue
        creds = store.mechanisms(name)
        if not creds:
            results.append(DescribeUserScramCredentialsResult(
                user=name, error_code=int(ErrorCode.RESOURCE_NOT_FOUND),
                error_message=f"Attempt to describe a user credential that does not exist: "
                              f"{name}", credential_infos=[]))
            continue
        results.append(DescribeUserScramCredentialsResult(
            user=name, error_code=0, error_message=None,
            credential_infos=[CredentialInfo(m.type_id, i) for m, i in creds.items()]))
    return DescribeUserScramCredentialsResponse(throttle_time_ms=0, error_code=0,
                                                error_message=None, results=results)


async def handle_alter_user_scram_credentials(
        ctx: RequestContext, req: AlterUserScramCredentialsRequest) -> Any:
    """Kafka's checks, per user: a name, a known mechanism, each (user, mechanism) once,
    4096..16384 iterations, deletions of existing credentials only; then all valid changes
    are written at once. Without ALTER on the cluster every user named answers
    CLUSTER_AUTHORIZATION_FAILED (in name order, as Kafka's getErrorResponse)."""
    if not authorize(ctx, Op.ALTER, CLUSTER):
        code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        users = sorted({d.name for d in req.deletions} | {u.name for u in req.upsertions})
        return AlterUserScramCredentialsResponse(throttle_time_ms=0, results=[
            AlterUserScramCredentialsResult(user=u, error_code=int(code),
                                            error_message=code.message) for u in users])
    store = _store(ctx)
    errors: dict[str, tuple[ErrorCode, str]] = {}
    order: list[str] = []
    pairs: dict[tuple[str, int], int] = {}
    for name, mechanism_id in [*((d.name, d.mechanism) for d in req.deletions),
                               *((u.name, u.mechanism) for u in req.upsertions)]:
        order.append(name)
        pairs[(name, mechanism_id)] = pairs.get((name, mechanism_id), 0) + 1

    def fail(name: str, code: ErrorCode, message: str) -> None:
        errors.setdefault(name, (code, message))

    for (name, _), count in pairs.items():
        if count > 1:
            fail(name, ErrorCode.DUPLICATE_RESOURCE,
                 "A user credential cannot be altered twice in the same request")
    deletes: list[tuple[str, ScramMechanism]] = []
    upserts: list[tuple[str, ScramMechanism, ScramCredential]] = []
    for d in req.deletions:
        mechanism = ScramMechanism.by_id(d.mechanism)
        if not d.name:
            fail(d.name, ErrorCode.UNACCEPTABLE_CREDENTIAL, "Username must not be empty")
        elif mechanism is None:
            fail(d.name, ErrorCode.UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism")
        elif store.get(d.name, mechanism) is None:
            fail(d.name, ErrorCode.RESOURCE_NOT_FOUND,
                 "Attempt to delete a user credential that does not exist")
        else:
            deletes.append((d.name, mechanism))
    for u in req.upsertions:
        mechanism = ScramMechanism.by_id(u.mechanism)
        if not u.name:
            fail(u.name, ErrorCode.UNACCEPTABLE_CREDENTIAL, "Username must not be empty")
        elif mechanism is None:
            fail(u.name, ErrorCode.UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism")
        elif u.iterations < MIN_ITERATIONS:
            fail(u.name, ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too few iterations")
        elif u.iterations > MAX_ITERATIONS:
            fail(u.name, ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too many iterations")
        elif not u.salt or not u.salted_password:
            fail(u.name, ErrorCode.UNACCEPTABLE_CREDENTIAL, "Salt and salted password must "
                                                            "not be empty")
        else:
            upserts.append((u.name, mechanism, credential_from_salted(
                mechanism, bytes(u.salted_password), bytes(u.salt), u.iterations)))
    await store.alter_stored([x for x in upserts if x[0] not in errors],
                             [x for x in deletes if x[0] not in errors])
    results = []
    for name in dict.fromkeys(order):
        code, message = errors.get(name, (ErrorCode.NONE, None))
        results.append(AlterUserScramCredentialsResult(user=name, error_code=int(code),
                                                       error_message=message))
    return AlterUserScramCredentialsResponse(throttle_time_ms=0, results=results)
