"""TLS and SASL on the connection, over loopback sockets: who the principal is, what is
served before authentication, how failures are answered and closed (issue #17)."""

from __future__ import annotations

import base64
import ssl
import struct
from pathlib import Path
from typing import Any

import pytest
import trio

from pykbroker.config.broker_config import BrokerConfig
from pykbroker.error_codes import ErrorCode
from pykbroker.handlers.api_versions import HANDLERS as API_VERSIONS_HANDLERS
from pykbroker.handlers.security_apis import HANDLERS as SASL_HANDLERS
from pykbroker.protocol._generated.alter_user_scram_credentials_request import (
    AlterUserScramCredentialsRequest,
    ScramCredentialDeletion,
    ScramCredentialUpsertion,
)
from pykbroker.protocol._generated.api_versions_request import ApiVersionsRequest
from pykbroker.protocol._generated.describe_user_scram_credentials_request import (
    DescribeUserScramCredentialsRequest,
    UserName,
)
from pykbroker.protocol._generated.heartbeat_request import HeartbeatRequest
from pykbroker.protocol._generated.heartbeat_response import HeartbeatResponse
from pykbroker.protocol._generated.sasl_authenticate_request import SaslAuthenticateRequest
from pykbroker.protocol._generated.sasl_handshake_request import SaslHandshakeRequest
from pykbroker.protocol.api import ApiKey
from pykbroker.protocol.framing import decode_response, encode_request
from pykbroker.security.configure import security_from_config
from pykbroker.security.scram import ScramMechanism, client_proof, salted_password
from pykbroker.server.connection import ConnectionSettings
from pykbroker.server.dispatch import DispatchTable, HandlerSpec
from pykbroker.server.listener import BindAddress, NetworkServer
from tests.security.pki import Pki, make_pki, secure_listeners

HB = ApiKey.HEARTBEAT


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


class Harness:
    def __init__(self, tmp_path: Path, pki: Pki, **extra: str) -> None:
        self.principals: list[str] = []

        async def heartbeat(ctx: Any, req: Any) -> Any:
            self.principals.append(ctx.principal)
            return HeartbeatResponse(error_code=0)

        config = BrokerConfig({"log.dirs": str(tmp_path), **secure_listeners(pki),
                               "listener.name.ssl.ssl.principal.mapping.rules":
                               "RULE:^CN=([a-z]+),OU=clients,.*$/$1/,DEFAULT",
                               "connection.failed.authentication.delay.ms": "200", **extra})
        self.security = security_from_config(config, tmp_path)
        dispatch = DispatchTable([*API_VERSIONS_HANDLERS, *SASL_HANDLERS,
                                  HandlerSpec(HB, 0, 4, heartbeat)])
        services = type("S", (), {"dispatch": dispatch})()
        self.server = NetworkServer(
            [BindAddress(lst.name, lst.host, lst.port, lst.security_protocol)
             for lst in config.listeners], dispatch=dispatch, services=services,
            settings=ConnectionSettings(1 << 20, 30.0), max_connections=100,
            security=self.security)
        self.pki = pki

    async def connect(self, listener: str, cert: tuple[Path, Path] | None = None) -> Client:
        stream: trio.abc.Stream = await trio.open_tcp_stream(
            "127.0.0.1", self.server.bound_ports[listener])
        if listener in ("SSL", "SASL_SSL"):
            ctx = ssl.create_default_context(cafile=str(self.pki.ca))
            if cert is not None:
                ctx.load_cert_chain(str(cert[0]), str(cert[1]))
            tls = trio.SSLStream(stream, ctx, server_hostname="localhost")
            await tls.do_handshake()
            stream = tls
        return Client(stream)


class Client:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.corr = 0

    async def _exactly(self, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            try:
                chunk = await self.stream.receive_some(n - len(buf))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            if not chunk:
                return None
            buf += chunk
        return buf

    async def _frame(self) -> bytes | None:
        """The next response frame without its size, or None once the broker closed."""
        size = await self._exactly(4)
        if size is None:
            return None
        (n,) = struct.unpack(">i", size)
        return b"" if n == 0 else await self._exactly(n)

    async def call(self, api_key: int, version: int, body: Any) -> Any:
        self.corr += 1
        await self.stream.send_all(encode_request(api_key, version, self.corr, "t", body))
        frame = await self._frame()
        if frame is None:
            return None
        corr, resp = decode_response(frame, api_key, version)
        assert corr == self.corr
        return resp

    async def raw(self, token: bytes) -> bytes | None:
        await self.stream.send_all(struct.pack(">i", len(token)) + token)
        return await self._frame()

    async def closed(self) -> bool:
        with trio.fail_after(5):
            try:
                return await self.stream.receive_some(100) == b""
            except trio.BrokenResourceError:
                return True

    async def heartbeat(self) -> Any:
        return await self.call(HB, 4, HeartbeatRequest("g", 1, "m"))

    async def plain(self, user: str, password: str, version: int = 1) -> Any:
        resp = await self.call(ApiKey.SASL_HANDSHAKE, version, SaslHandshakeRequest("PLAIN"))
        assert resp.error_code == 0
        return await self.call(ApiKey.SASL_AUTHENTICATE, 2,
                               SaslAuthenticateRequest(f"\0{user}\0{password}".encode()))

    async def scram(self, mechanism: ScramMechanism, user: str, password: str,
                    tamper_nonce: bool = False) -> Any:
        resp = await self.call(ApiKey.SASL_HANDSHAKE, 1,
                               SaslHandshakeRequest(mechanism.mechanism_name))
        assert resp.error_code == 0
        bare = f"n={user},r=fyko+d2lbbFgONRv9qkxdawL"
        first = await self.call(ApiKey.SASL_AUTHENTICATE, 2,
                                SaslAuthenticateRequest(f"n,,{bare}".encode()))
        if first.error_code:
            return first
        server_first = bytes(first.auth_bytes).decode()
        fields = dict(item.split("=", 1) for item in server_first.split(","))
        nonce = fields["r"] if not tamper_nonce else "fyko+d2lbbFgONRv9qkxdawL"
        salted = salted_password(mechanism, password, base64.b64decode(fields["s"]),
                                 int(fields["i"]))
        without_proof = f"c=biws,r={nonce}"
        proof = client_proof(mechanism, salted, f"{bare},{server_first},{without_proof}".encode())
        final = f"{without_proof},p={base64.b64encode(proof).decode()}"
        return await self.call(ApiKey.SASL_AUTHENTICATE, 2, SaslAuthenticateRequest(final.encode()))


async def _rejected(h: Harness, listener: str, cert: tuple[Path, Path] | None) -> bool:
    """The TLS handshake fails, or (TLS 1.3: the server checks the client's certificate
    after the client finished) the first request is never answered."""
    try:
        client = await h.connect(listener, cert)
        return await client.heartbeat() is None
    except trio.BrokenResourceError:
        return True


@pytest.fixture
async def harness(tmp_path: Path, pki: Pki, nursery: trio.Nursery) -> Harness:
    h = Harness(tmp_path, pki)
    await nursery.start(h.server.run)
    return h


async def _add_scram_user(h: Harness, user: str, password: str) -> None:
    client = await h.connect("PLAINTEXT")
    ups = []
    for mechanism in ScramMechanism:
        salt = f"salt-{user}".encode()
        ups.append(ScramCredentialUpsertion(user, mechanism.type_id, 4096, salt,
                                            salted_password(mechanism, password, salt, 4096)))
    resp = await client.call(ApiKey.ALTER_USER_SCRAM_CREDENTIALS, 0,
                             AlterUserScramCredentialsRequest([], ups))
    assert [(r.user, r.error_code) for r in resp.results] == [(user, 0)]


@pytest.mark.trio
@pytest.mark.parametrize("listener", ["SASL_PLAINTEXT", "SASL_SSL"])
async def test_plain_authenticates_and_the_principal_reaches_the_handler(
        harness: Harness, listener: str) -> None:
    client = await harness.connect(listener)
    resp = await client.call(ApiKey.API_VERSIONS, 3, ApiVersionsRequest("pytest", "1.0"))
    assert resp.error_code == 0
    auth = await client.plain("alice", "alice-secret")
    assert auth.error_code == 0 and auth.session_lifetime_ms == 0
    assert (await client.heartbeat()).error_code == 0
    assert harness.principals == ["User:alice"]
    # A second SaslAuthenticate is Kafka's ILLEGAL_SASL_STATE, and the connection stays.
    again = await client.call(ApiKey.SASL_AUTHENTICATE, 2, SaslAuthenticateRequest(b"x"))
    assert again.error_code == ErrorCode.ILLEGAL_SASL_STATE
    assert "after successful authentication" in again.error_message


@pytest.mark.trio
@pytest.mark.parametrize(("user", "password"), [("alice", "wrong"), ("nobody", "x")])
async def test_a_failed_plain_login_is_answered_after_the_delay_then_closed(
        harness: Harness, user: str, password: str) -> None:
    client = await harness.connect("SASL_PLAINTEXT")
    started = trio.current_time()
    auth = await client.plain(user, password)
    assert trio.current_time() - started >= 0.2
    assert auth.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
    assert auth.error_message == "Authentication failed: Invalid username or password"
    assert await client.closed()
    other = await harness.connect("SASL_PLAINTEXT")  # the broker keeps serving
    assert (await other.plain("alice", "alice-secret")).error_code == 0


@pytest.mark.trio
@pytest.mark.parametrize("mechanism", list(ScramMechanism))
@pytest.mark.parametrize("listener", ["SASL_PLAINTEXT", "SASL_SSL"])
async def test_scram_authenticates_and_checks_the_server_signature(
        harness: Harness, mechanism: ScramMechanism, listener: str) -> None:
    await _add_scram_user(harness, "carol", "carol-secret")
    client = await harness.connect(listener)
    final = await client.scram(mechanism, "carol", "carol-secret")
    assert final.error_code == 0 and bytes(final.auth_bytes).startswith(b"v=")
    assert (await client.heartbeat()).error_code == 0
    assert harness.principals == ["User:carol"]


@pytest.mark.trio
@pytest.mark.parametrize(("user", "password", "tamper"), [
    ("carol", "wrong", False), ("nobody", "x", False), ("carol", "carol-secret", True)])
async def test_failed_scram_logins_get_kafkas_message(harness: Harness, user: str,
                                                      password: str, tamper: bool) -> None:
    await _add_scram_user(harness, "carol", "carol-secret")
    client = await harness.connect("SASL_PLAINTEXT")
    resp = await client.scram(ScramMechanism.SCRAM_SHA_512, user, password, tamper)
    assert resp.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
    assert resp.error_message == ("Authentication failed during authentication due to invalid "
                                  "credentials with SASL mechanism SCRAM-SHA-512")
    assert await client.closed()


@pytest.mark.trio
async def test_before_authentication_only_the_sasl_exchange_is_served(harness: Harness) -> None:
    client = await harness.connect("SASL_PLAINTEXT")
    assert await client.heartbeat() is None  # closed, not answered
    assert harness.principals == []
    # Frames are bounded by sasl.server.max.receive.size (512 KiB) before authentication.
    client = await harness.connect("SASL_PLAINTEXT")
    await client.stream.send_all(struct.pack(">i", 600_000) + b"\0" * 100)
    assert await client.closed()
    # SaslAuthenticate before SaslHandshake is out of order too.
    client = await harness.connect("SASL_PLAINTEXT")
    assert await client.call(ApiKey.SASL_AUTHENTICATE, 2, SaslAuthenticateRequest(b"")) is None
    # An unknown mechanism: Kafka's error with the enabled ones, then closed.
    client = await harness.connect("SASL_PLAINTEXT")
    resp = await client.call(ApiKey.SASL_HANDSHAKE, 1, SaslHandshakeRequest("GSSAPI"))
    assert resp.error_code == ErrorCode.UNSUPPORTED_SASL_MECHANISM
    assert resp.mechanisms == ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
    assert await client.closed()


@pytest.mark.trio
async def test_sasl_apis_on_a_listener_without_sasl_answer_illegal_state(
        harness: Harness) -> None:
    client = await harness.connect("PLAINTEXT")
    resp = await client.call(ApiKey.SASL_HANDSHAKE, 1, SaslHandshakeRequest("PLAIN"))
    assert resp.error_code == ErrorCode.ILLEGAL_SASL_STATE
    assert (await client.heartbeat()).error_code == 0
    assert harness.principals == ["User:ANONYMOUS"]


@pytest.mark.trio
async def test_handshake_v0_then_raw_tokens(harness: Harness) -> None:
    client = await harness.connect("SASL_PLAINTEXT")
    resp = await client.call(ApiKey.SASL_HANDSHAKE, 0, SaslHandshakeRequest("PLAIN"))
    assert resp.error_code == 0
    assert await client.raw(b"\0alice\0alice-secret") == b""
    assert (await client.heartbeat()).error_code == 0
    assert harness.principals == ["User:alice"]
    bad = await harness.connect("SASL_PLAINTEXT")
    await bad.call(ApiKey.SASL_HANDSHAKE, 0, SaslHandshakeRequest("PLAIN"))
    assert await bad.raw(b"\0alice\0nope") is None  # closed without an answer


@pytest.mark.trio
async def test_client_certificates_map_to_principals(harness: Harness) -> None:
    pki = harness.pki
    with_cert = await harness.connect("SSL", (pki.client_cert, pki.client_key))
    assert (await with_cert.heartbeat()).error_code == 0
    without = await harness.connect("SSL")
    assert (await without.heartbeat()).error_code == 0
    assert harness.principals == ["User:alice", "User:ANONYMOUS"]
    for cert in ((pki.expired_cert, pki.expired_key), (pki.rogue_cert, pki.rogue_key)):
        assert await _rejected(harness, "SSL", cert)
    assert (await with_cert.heartbeat()).error_code == 0  # still serving


@pytest.mark.trio
async def test_plaintext_on_the_tls_listener_is_closed(harness: Harness) -> None:
    client = Client(await trio.open_tcp_stream("127.0.0.1", harness.server.bound_ports["SSL"]))
    assert await client.heartbeat() is None


@pytest.mark.trio
async def test_required_client_certificates(tmp_path: Path, pki: Pki,
                                            nursery: trio.Nursery) -> None:
    h = Harness(tmp_path, pki, **{"listener.name.ssl.ssl.client.auth": "required"})
    await nursery.start(h.server.run)
    assert await _rejected(h, "SSL", None)
    client = await h.connect("SSL", (pki.client_cert, pki.client_key))
    assert (await client.heartbeat()).error_code == 0
    assert h.principals == ["User:alice"]


@pytest.mark.trio
async def test_reauthentication_kip368(tmp_path: Path, pki: Pki, nursery: trio.Nursery) -> None:
    h = Harness(tmp_path, pki, **{"connections.max.reauth.ms": "400"})
    await nursery.start(h.server.run)
    client = await h.connect("SASL_PLAINTEXT")
    auth = await client.plain("alice", "alice-secret")
    assert auth.session_lifetime_ms == 400
    await trio.sleep(0.2)
    assert (await client.plain("alice", "alice-secret")).error_code == 0  # re-authenticated
    await trio.sleep(0.3)
    assert (await client.heartbeat()).error_code == 0  # within the renewed session
    await trio.sleep(0.5)
    assert await client.heartbeat() is None  # expired: closed
    other = await h.connect("SASL_PLAINTEXT")
    await other.plain("alice", "alice-secret")
    await other.call(ApiKey.SASL_HANDSHAKE, 1, SaslHandshakeRequest("PLAIN"))
    resp = await other.call(ApiKey.SASL_AUTHENTICATE, 2,
                            SaslAuthenticateRequest(b"\0admin\0admin-secret"))
    assert resp.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
    assert "Cannot change principals" in resp.error_message


@pytest.mark.trio
async def test_describe_and_alter_scram_credentials(harness: Harness) -> None:
    client = await harness.connect("PLAINTEXT")
    sha256, sha512 = ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512
    ups = [ScramCredentialUpsertion("alice", 1, 8192, b"s", b"x" * 32),
           ScramCredentialUpsertion("bob", 2, 4096, b"s", b"x" * 64),
           ScramCredentialUpsertion("low", 1, 100, b"s", b"x"),
           ScramCredentialUpsertion("high", 1, 20000, b"s", b"x"),
           ScramCredentialUpsertion("", 1, 4096, b"s", b"x"),
           ScramCredentialUpsertion("what", 9, 4096, b"s", b"x"),
           ScramCredentialUpsertion("twice", 1, 4096, b"s", b"x"),
           ScramCredentialUpsertion("twice", 1, 4096, b"s", b"y")]
    dels = [ScramCredentialDeletion("ghost", 1)]
    resp = await client.call(ApiKey.ALTER_USER_SCRAM_CREDENTIALS, 0,
                             AlterUserScramCredentialsRequest(dels, ups))
    got = {r.user: (r.error_code, r.error_message) for r in resp.results}
    assert got == {
        "ghost": (ErrorCode.RESOURCE_NOT_FOUND,
                  "Attempt to delete a user credential that does not exist"),
        "alice": (0, None), "bob": (0, None),
        "low": (ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too few iterations"),
        "high": (ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too many iterations"),
        "": (ErrorCode.UNACCEPTABLE_CREDENTIAL, "Username must not be empty"),
        "what": (ErrorCode.UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism"),
        "twice": (ErrorCode.DUPLICATE_RESOURCE,
                  "A user credential cannot be altered twice in the same request"),
    }
    resp = await client.call(ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, 0,
                             DescribeUserScramCredentialsRequest(None))
    described = {r.user: [(c.mechanism, c.iterations) for c in r.credential_infos]
                 for r in resp.results}
    assert described == {"alice": [(sha256.type_id, 8192)], "bob": [(sha512.type_id, 4096)]}
    resp = await client.call(ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, 0,
                             DescribeUserScramCredentialsRequest([UserName("nobody")]))
    assert resp.results[0].error_code == ErrorCode.RESOURCE_NOT_FOUND
    resp = await client.call(ApiKey.ALTER_USER_SCRAM_CREDENTIALS, 0,
                             AlterUserScramCredentialsRequest(
                                 [ScramCredentialDeletion("alice", 1)], []))
    assert resp.results[0].error_code == 0
    assert harness.security.credentials.mechanisms("alice") == {}
    assert harness.security.credentials.get("bob", sha512) is not None
