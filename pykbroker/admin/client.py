"""A small synchronous Kafka client: bootstrap, ApiVersions negotiation, routing, retries."""

from __future__ import annotations

import itertools
import socket
import struct
import time
from typing import Any

from pykbroker import __version__
from pykbroker.admin.client_security import CommandConfig
from pykbroker.error_codes import ErrorCode
from pykbroker.errors import DecodeError
from pykbroker.protocol._generated.api_versions_request import ApiVersionsRequest
from pykbroker.protocol.api import request_class
from pykbroker.protocol.framing import decode_response, encode_request

API_VERSIONS = 18
METADATA = 3
FIND_COORDINATOR = 10
SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36
CLIENT_ID = "pykbroker-admin"

# Highest versions this client speaks per API: those whose request shape it builds
# (e.g. Fetch v13+ names topics by id, OffsetFetch v8+ batches groups).
CAPS: dict[int, int] = {
    0: 11,  # Produce
    1: 12,  # Fetch
    2: 8,  # ListOffsets
    3: 12,  # Metadata
    8: 9,  # OffsetCommit
    9: 7,  # OffsetFetch
    10: 3,  # FindCoordinator
    15: 5,  # DescribeGroups
    16: 4,  # ListGroups
    17: 1,  # SaslHandshake (v1: the tokens then go in SaslAuthenticate requests)
    18: 3,  # ApiVersions
    19: 7,  # CreateTopics
    20: 6,  # DeleteTopics
    32: 4,  # DescribeConfigs
    36: 2,  # SaslAuthenticate
    37: 3,  # CreatePartitions
    42: 2,  # DeleteGroups
    44: 1,  # IncrementalAlterConfigs
    29: 3,  # DescribeAcls
    30: 3,  # CreateAcls
    31: 3,  # DeleteAcls
    50: 0,  # DescribeUserScramCredentials
    51: 0,  # AlterUserScramCredentials
}


class KafkaError(Exception):
    """A Kafka error code (or a connection failure) the command reports and exits on."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


def error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error {code}"


def check(code: int, what: str, message: str | None = None) -> None:
    """Raise ``KafkaError`` for a non-zero error code."""
    if code:
        detail = f": {message}" if message else ""
        raise KafkaError(f"{what} failed: {error_name(code)}{detail}", code)


class Connection:
    """One broker connection (over TLS when ``config`` says so), with the API versions it
    supports."""

    def __init__(self, host: str, port: int, timeout: float,
                 config: CommandConfig | None = None) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.config = config or CommandConfig()
        self.client_id = self.config.client_id or CLIENT_ID
        self.sock = self._connect()
        self._corr = itertools.count(1)
        self.versions: dict[int, tuple[int, int]] = {}

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            return self.config.wrap(sock, self.host)
        except BaseException:
            sock.close()
            raise

    def reconnect(self) -> None:
        """A fresh connection (TLS handshake included) in place of this one."""
        self.close()
        self.sock = self._connect()

    def _read(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                raise ConnectionError(f"{self.host}:{self.port} closed the connection")
            buf += chunk
        return bytes(buf)

    def request(self, api_key: int, version: int, body: Any) -> Any:
        corr = next(self._corr)
        self.sock.sendall(encode_request(api_key, version, corr, self.client_id, body))
        (size,) = struct.unpack(">i", self._read(4))
        header, resp = decode_response(self._read(size), api_key, version)
        return resp

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _common_version(api_key: int, versions: dict[int, tuple[int, int]], low: int = 0) -> int:
    """The highest version of ``api_key`` both the broker (``versions``, from ApiVersions)
    and this client speak, at least ``low``."""
    broker = versions.get(api_key)
    if broker is None:
        raise KafkaError(f"the broker does not support API {api_key}",
                         ErrorCode.UNSUPPORTED_VERSION)
    cls = request_class(api_key)
    high = min(broker[1], cls.MAX_VERSION, CAPS.get(api_key, cls.MAX_VERSION))
    low = max(broker[0], cls.MIN_VERSION, low)
    if high < low:
        raise KafkaError(f"no common version for API {api_key}: broker {broker[0]}-"
                         f"{broker[1]}, client {low}-{high}", ErrorCode.UNSUPPORTED_VERSION)
    return high


def _parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit():
        raise KafkaError(f"bad bootstrap server {text!r}: expected HOST:PORT")
    return host.strip("[]") or "localhost", int(port)


class AdminClient:
    """Synchronous client for the admin commands.

    ``bootstrap`` is a comma-separated ``HOST:PORT`` list; the first that answers
    ApiVersions is used. Requests go to a given node (partition leaders, group
    coordinators) or to the bootstrap connection; connection failures are retried.
    """

    def __init__(self, bootstrap: str, timeout: float = 30.0, retries: int = 3,
                 config: CommandConfig | None = None) -> None:
        self.bootstrap = [_parse_hostport(b) for b in bootstrap.split(",") if b.strip()]
        if not self.bootstrap:
            raise KafkaError("no bootstrap server given")
        self.timeout = timeout
        self.config = config or CommandConfig()
        self.retries = retries
        self._conns: dict[int | None, Connection] = {}
        self._nodes: dict[int, tuple[str, int]] = {}

    # -- connections -------------------------------------------------------------------

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    def _open(self, host: str, port: int) -> Connection:
        conn = Connection(host, port, self.timeout, self.config)
        try:
            conn.versions = self._api_versions(conn)
            if self.config.mechanism is not None:
                self._authenticate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _api_versions(self, conn: Connection) -> dict[int, tuple[int, int]]:
        body = ApiVersionsRequest("pykbroker-admin", __version__)
        try:
            resp = conn.request(API_VERSIONS, CAPS[API_VERSIONS], body)
        except DecodeError:
            resp = None
        if resp is None or resp.error_code == ErrorCode.UNSUPPORTED_VERSION:
            # The broker answered in v0 (KIP-511): ask again in v0 on a fresh connection.
            conn.reconnect()
            resp = conn.request(API_VERSIONS, 0, ApiVersionsRequest())
        check(resp.error_code, "ApiVersions")
        return {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}

    def _authenticate(self, conn: Connection) -> None:
        """SaslHandshake v1, then SaslAuthenticate rounds carrying the mechanism's tokens (as
        Kafka's clients, after ApiVersions); KafkaError with the broker's message on failure.
        """
        from pykbroker.protocol._generated.sasl_authenticate_request import (
            SaslAuthenticateRequest,
        )
        from pykbroker.protocol._generated.sasl_handshake_request import SaslHandshakeRequest
        from pykbroker.security.scram import SaslError

        mechanism, user = str(self.config.mechanism), self.config.username
        where = f"{conn.host}:{conn.port}"
        hs = conn.request(SASL_HANDSHAKE, _common_version(SASL_HANDSHAKE, conn.versions, 1),
                          SaslHandshakeRequest(mechanism=mechanism))
        if hs.error_code:
            offered = ", ".join(hs.mechanisms) or "none"
            raise KafkaError(f"SASL handshake with {where} for {mechanism} failed: "
                             f"{error_name(hs.error_code)} (the broker enables {offered})",
                             hs.error_code)
        version = _common_version(SASL_AUTHENTICATE, conn.versions)
        sasl = self.config.sasl_client()
        token: bytes | None = sasl.first()
        while token is not None:
            resp = conn.request(SASL_AUTHENTICATE, version,
                                SaslAuthenticateRequest(auth_bytes=token))
            if resp.error_code:
                raise KafkaError(f"SASL {mechanism} authentication as {user} to {where} "
                                 f"failed: {resp.error_message or error_name(resp.error_code)}",
                                 resp.error_code)
            try:
                token = sasl.respond(bytes(resp.auth_bytes))
            except (SaslError, KeyError, ValueError) as exc:
                raise KafkaError(f"SASL {mechanism} authentication as {user} to {where} "
                                 f"failed: {exc}") from exc

    def _conn(self, node: int | None) -> Connection:
        conn = self._conns.get(node)
        if conn is not None:
            return conn
        if node is None:
            errors = []
            for host, port in self.bootstrap:
                try:
                    conn = self._open(host, port)
                    break
                except (OSError, DecodeError) as exc:
                    errors.append(f"{host}:{port}: {exc}")
            else:
                raise KafkaError("cannot reach any bootstrap server (" + "; ".join(errors) + ")")
        else:
            if node not in self._nodes:
                self.metadata([])
            if node not in self._nodes:
                raise KafkaError(f"unknown broker node {node}")
            conn = self._open(*self._nodes[node])
        self._conns[node] = conn
        return conn

    def _drop(self, node: int | None) -> None:
        conn = self._conns.pop(node, None)
        if conn is not None:
            conn.close()

    # -- versions ----------------------------------------------------------------------

    def broker_versions(self) -> dict[int, tuple[int, int]]:
        return dict(self._conn(None).versions)

    def supports(self, api_key: int, node: int | None = None) -> bool:
        try:
            self.version(api_key, node)
        except KafkaError:
            return False
        return True

    def version(self, api_key: int, node: int | None = None) -> int:
        """The highest version both the broker and this client support."""
        return _common_version(api_key, self._conn(node).versions)

    # -- requests ----------------------------------------------------------------------

    def send(self, api_key: int, body: Any, node: int | None = None,
             version: int | None = None) -> Any:
        """Send ``body`` (built for ``version``, default the negotiated one) and answer."""
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                conn = self._conn(node)
                v = self.version(api_key, node) if version is None else version
                return conn.request(api_key, v, body)
            except (OSError, ConnectionError) as exc:
                last = exc
                self._drop(node)
                time.sleep(min(0.1 * 2 ** attempt, 1.0))
        raise KafkaError(f"request failed after {self.retries + 1} attempts: {last}")

    def metadata(self, topics: list[str] | None) -> Any:
        """Metadata for ``topics`` (None: all topics); also learns the broker addresses."""
        from pykbroker.protocol._generated.metadata_request import (
            MetadataRequest,
            MetadataRequestTopic,
        )

        req = MetadataRequest(
            topics=None if topics is None else [MetadataRequestTopic(name=t) for t in topics],
            allow_auto_topic_creation=False)
        resp = self.send(METADATA, req)
        self._nodes = {b.node_id: (b.host, b.port) for b in resp.brokers}
        return resp

    def leaders(self, topic: str) -> dict[int, int]:
        """Partition -> leader node for ``topic``; raises when the topic is unknown."""
        for _attempt in range(10):
            resp = self.metadata([topic])
            t = resp.topics[0]
            if t.error_code == ErrorCode.LEADER_NOT_AVAILABLE or (
                    not t.error_code and any(p.leader_id < 0 for p in t.partitions)):
                time.sleep(0.2)
                continue
            check(t.error_code, f"metadata for topic {topic}")
            return {p.partition_index: p.leader_id for p in t.partitions}
        raise KafkaError(f"topic {topic} has partitions without a leader")

    def coordinator(self, group: str) -> int:
        """The node id of ``group``'s coordinator."""
        from pykbroker.protocol._generated.find_coordinator_request import (
            FindCoordinatorRequest,
        )

        for _attempt in range(20):
            resp = self.send(FIND_COORDINATOR, FindCoordinatorRequest(key=group, key_type=0))
            if resp.error_code == ErrorCode.COORDINATOR_NOT_AVAILABLE:
                time.sleep(0.25)
                continue
            check(resp.error_code, f"finding the coordinator of group {group}",
                  resp.error_message)
            self._nodes[resp.node_id] = (resp.host, resp.port)
            return int(resp.node_id)
        raise KafkaError(f"no coordinator for group {group}", ErrorCode.COORDINATOR_NOT_AVAILABLE)

    def list_offsets(self, topic: str, partitions: list[int], timestamp: int) -> dict[int, int]:
        """Partition -> offset for ``timestamp`` (-2 earliest, -1 latest), per leader."""
        from pykbroker.protocol._generated.list_offsets_request import (
            ListOffsetsPartition,
            ListOffsetsRequest,
            ListOffsetsTopic,
        )

        leaders = self.leaders(topic)
        by_node: dict[int, list[int]] = {}
        for p in partitions:
            if p not in leaders:
                raise KafkaError(f"topic {topic} has no partition {p}")
            by_node.setdefault(leaders[p], []).append(p)
        out: dict[int, int] = {}
        for node, parts in by_node.items():
            req = ListOffsetsRequest(replica_id=-1, isolation_level=0, topics=[ListOffsetsTopic(
                topic, [ListOffsetsPartition(partition_index=p, timestamp=timestamp,
                                             max_num_offsets=1) for p in parts])])
            v = self.version(2, node)
            resp = self.send(2, req, node=node, version=v)
            for t in resp.topics:
                for p in t.partitions:
                    check(p.error_code, f"ListOffsets for {topic}-{p.partition_index}")
                    out[p.partition_index] = (p.offset if v >= 1 else
                                              (p.old_style_offsets or [-1])[0])
        return out
