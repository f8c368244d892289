"""SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka's ScramSaslServer runs them.

The server keeps, per user and mechanism, a salt, an iteration count, StoredKey = H(ClientKey)
and ServerKey, never the password. An exchange is two round trips:

    client-first  n,,n=<user>,r=<client nonce>
    server-first  r=<client nonce><server nonce>,s=<salt>,i=<iterations>
    client-final  c=biws,r=<the whole nonce>,p=<ClientProof>
    server-final  v=<ServerSignature>

The client-final nonce must be exactly the nonce the server sent (a nonce that merely starts
with the client's part is the CVE-2024-56128 class of bug); the channel binding must repeat the
client-first GS2 header; the proof is checked in constant time against StoredKey.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


class ScramMechanism(Enum):
    """Kafka's ScramMechanism: name, hash, minimum iterations, and its id in the admin API."""

    SCRAM_SHA_256 = ("SCRAM-SHA-256", "sha256", 1)
    SCRAM_SHA_512 = ("SCRAM-SHA-512", "sha512", 2)

    @property
    def mechanism_name(self) -> str:
        return self.value[0]

    @property
    def hash_name(self) -> str:
        return self.value[1]

    @property
    def type_id(self) -> int:
        return self.value[2]

    @classmethod
    def by_name(cls, name: str) -> ScramMechanism | None:
        return next((m for m in cls if m.mechanism_name == name), None)

    @classmethod
    def by_id(cls, type_id: int) -> ScramMechanism | None:
        return next((m for m in cls if m.type_id == type_id), None)


MIN_ITERATIONS = 4096
MAX_ITERATIONS = 16384


class SaslError(Exception):
    """A failed exchange; Kafka answers it with its generic invalid-credentials message."""


class SaslAuthenticationError(SaslError):
    """A failed exchange whose message Kafka passes to the client as it is."""


@dataclass(frozen=True, slots=True)
class ScramCredential:
    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int

    def to_kafka(self) -> str:
        """Kafka's ScramCredentialUtils form, as kept under /config/users/<user>."""
        b64 = base64.b64encode
        return (f"salt={b64(self.salt).decode()},stored_key={b64(self.stored_key).decode()},"
                f"server_key={b64(self.server_key).decode()},iterations={self.iterations}")

    @classmethod
    def from_kafka(cls, text: str) -> ScramCredential:
        fields = dict(part.split("=", 1) for part in text.split(","))
        b64 = base64.b64decode
        return cls(b64(fields["salt"]), b64(fields["stored_key"]), b64(fields["server_key"]),
                   int(fields["iterations"]))


def _hmac(mechanism: ScramMechanism, key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, mechanism.hash_name).digest()


def _hash(mechanism: ScramMechanism, data: bytes) -> bytes:
    return hashlib.new(mechanism.hash_name, data).digest()


def salted_password(mechanism: ScramMechanism, password: str, salt: bytes,
                    iterations: int) -> bytes:
    """Hi(Normalize(password), salt, i): PBKDF2 with the mechanism's HMAC (no SASLprep, as
    Kafka's ScramFormatter)."""
    return hashlib.pbkdf2_hmac(mechanism.hash_name, password.encode(), salt, iterations)


def credential_from_salted(mechanism: ScramMechanism, salted: bytes, salt: bytes,
                           iterations: int) -> ScramCredential:
    client_key = _hmac(mechanism, salted, b"Client Key")
    server_key = _hmac(mechanism, salted, b"Server Key")
    return ScramCredential(salt, _hash(mechanism, client_key), server_key, iterations)


def make_credential(mechanism: ScramMechanism, password: str, iterations: int = MIN_ITERATIONS,
                    salt: bytes | None = None) -> ScramCredential:
    salt = secrets.token_bytes(32) if salt is None else salt
    return credential_from_salted(mechanism, salted_password(mechanism, password, salt,
                                                             iterations), salt, iterations)


def client_proof(mechanism: ScramMechanism, salted: bytes, auth_message: bytes) -> bytes:
    """The client's side of the proof (used by tests and by a client of our own)."""
    client_key = _hmac(mechanism, salted, b"Client Key")
    signature = _hmac(mechanism, _hash(mechanism, client_key), auth_message)
    return bytes(a ^ b for a, b in zip(client_key, signature, strict=True))


def server_signature(mechanism: ScramMechanism, server_key: bytes, auth_message: bytes) -> bytes:
    return _hmac(mechanism, server_key, auth_message)


def decode_saslname(name: str) -> str:
    """RFC 5802's saslname: ``=2C`` is ``,``, ``=3D`` is ``=``, any other ``=`` is invalid."""
    if re.search(r"=(?!2C|3D)", name):
        raise SaslError(f"Invalid username: {name}")
    return name.replace("=2C", ",").replace("=3D", "=")


_CLIENT_FIRST = re.compile(
    r"(?P<gs2>n,(?:a=(?P<authzid>[^,]*))?,)n=(?P<saslname>[^,]*),r=(?P<nonce>[^,]*)"
    r"(?P<extensions>(?:,[^,]*)*)", re.DOTALL)
_CLIENT_FINAL = re.compile(
    r"(?P<without_proof>c=(?P<channel>[^,]*),r=(?P<nonce>[^,]*)(?:,[^,]*)*?),p=(?P<proof>[^,]*)",
    re.DOTALL)


@dataclass(slots=True)
class ClientFirst:
    gs2_header: str
    authzid: str
    username: str
    nonce: str
    bare: str
    extensions: dict[str, str]


def parse_client_first(message: str) -> ClientFirst:
    match = _CLIENT_FIRST.fullmatch(message)
    if match is None:
        raise SaslError(f"Invalid SCRAM client first message {message!r}")
    extensions = {}
    for item in match["extensions"].split(",")[1:]:
        key, _, value = item.partition("=")
        extensions[key] = value
    gs2 = match["gs2"]
    return ClientFirst(gs2, decode_saslname(match["authzid"] or ""),
                       decode_saslname(match["saslname"]), match["nonce"],
                       message[len(gs2):], extensions)


class ScramServer:
    """One exchange on the server. ``evaluate`` takes each client message and returns the
    server's answer; ``complete`` and ``username`` once the proof checked out."""

    def __init__(self, mechanism: ScramMechanism,
                 lookup: Callable[[str], ScramCredential | None], *, server_nonce: str | None = None) -> None:
        self.mechanism = mechanism
        self._lookup = lookup
        self._server_nonce = server_nonce
        self._first: ClientFirst | None = None
        self._server_first = ""
        self._nonce = ""
        self._credential: ScramCredential | None = None
        self.complete = False
        self.username: str | None = None

    def evaluate(self, data: bytes) -> bytes:
        if self.complete:
            raise SaslError("Unexpected SCRAM message after the exchange completed")
        try:
            message = data.decode()
        except UnicodeDecodeError:
            raise SaslError("Invalid SCRAM message: not UTF-8") from None
        if self._first is None:
            return self._on_client_first(message)
        return self._on_client_final(message)

    def _on_client_first(self, message: str) -> bytes:
        first = parse_client_first(message)
        if first.extensions.get("tokenauth", "false").lower() == "true":
            raise SaslError("Delegation token authentication is not supported")
        if first.authzid and first.authzid != first.username:
            raise SaslAuthenticationError(
                "Authentication failed: Client requested an authorization id that is "
                "different from username")
        if not first.nonce:
            raise SaslError("Invalid SCRAM client first message: empty nonce")
        credential = self._lookup(first.username)
        if credential is None:
            raise SaslError("Authentication failed: Invalid user credentials")
        self._first, self._credential = first, credential
        server_nonce = self._server_nonce or secrets.token_urlsafe(24)
        self._nonce = first.nonce + server_nonce
        salt = base64.b64encode(credential.salt).decode()
        self._server_first = f"r={self._nonce},s={salt},i={credential.iterations}"
        return self._server_first.encode()

    def _on_client_final(self, message: str) -> bytes:
        first, credential = self._first, self._credential
        assert first is not None and credential is not None
        match = _CLIENT_FINAL.fullmatch(message)
        if match is None:
            raise SaslError("Invalid SCRAM client final message")
        if not hmac.compare_digest(match["nonce"].encode(), self._nonce.encode()):
            raise SaslError("Invalid client nonce in the final client message.")
        try:
            channel = base64.b64decode(match["channel"], validate=True)
            proof = base64.b64decode(match["proof"], validate=True)
        except ValueError:
            raise SaslError("Invalid base64 in the SCRAM client final message") from None
        if channel != first.gs2_header.encode():
            raise SaslError("Invalid channel binding in the SCRAM client final message")
        auth_message = f"{first.bare},{self._server_first},{match['without_proof']}".encode()
        signature = _hmac(self.mechanism, credential.stored_key, auth_message)
        if len(proof) != len(signature):
            raise SaslError("Invalid client credentials")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(_hash(self.mechanism, client_key), credential.stored_key):
            raise SaslError("Invalid client credentials")
        self.complete = True
        self.username = first.username
        verifier = server_signature(self.mechanism, credential.server_key, auth_message)
        return b"v=" + base64.b64encode(verifier)
