"""SCRAM math and the server's checks: RFC 7677's test vector, and every way a client-final
message can be wrong (the nonce check is the CVE-2024-56128 class)."""

from __future__ import annotations

import base64

import pytest

from pykbroker.security.credentials import ScramCredentialStore
from pykbroker.security.scram import (
    SaslAuthenticationError,
    SaslError,
    ScramCredential,
    ScramMechanism,
    ScramServer,
    client_proof,
    make_credential,
    salted_password,
)

SHA256 = ScramMechanism.SCRAM_SHA_256
SHA512 = ScramMechanism.SCRAM_SHA_512
# RFC 7677, section 3.
SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
SERVER_FIRST = (b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
CLIENT_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def _server(mechanism: ScramMechanism = SHA256, password: str = "pencil",
            user: str = "user") -> ScramServer:
    credential = make_credential(mechanism, password, 4096, SALT)
    return ScramServer(mechanism, {user: credential}.get, server_nonce=SERVER_NONCE)


def test_rfc7677_test_vector() -> None:
    server = _server()
    assert server.evaluate(CLIENT_FIRST) == SERVER_FIRST
    assert server.evaluate(CLIENT_FINAL) == SERVER_FINAL
    assert server.complete and server.username == "user"


def test_credential_keeps_kafkas_string_form_and_no_password() -> None:
    credential = make_credential(SHA512, "pencil", 8192)
    text = credential.to_kafka()
    assert text.startswith("salt=") and text.endswith(",iterations=8192")
    assert "pencil" not in text
    assert ScramCredential.from_kafka(text) == credential


def _final(mechanism: ScramMechanism, password: str, nonce: str, channel: str = "biws",
           salt: bytes = SALT) -> bytes:
    without_proof = f"c={channel},r={nonce}"
    salt64 = base64.b64encode(salt).decode()
    auth = f"n=user,r={CLIENT_NONCE},r={CLIENT_NONCE}{SERVER_NONCE},s={salt64},i=4096," \
           f"{without_proof}"
    proof = client_proof(mechanism, salted_password(mechanism, password, salt, 4096),
                         auth.encode())
    return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


@pytest.mark.parametrize("mechanism", [SHA256, SHA512])
def test_a_correct_client_completes_with_either_mechanism(mechanism: ScramMechanism) -> None:
    server = _server(mechanism)
    server.evaluate(CLIENT_FIRST)
    answer = server.evaluate(_final(mechanism, "pencil", CLIENT_NONCE + SERVER_NONCE))
    assert answer.startswith(b"v=") and server.complete


@pytest.mark.parametrize("nonce", [
    CLIENT_NONCE,  # does not extend the client nonce by the server's part
    CLIENT_NONCE + SERVER_NONCE[:-1],  # a prefix of the server's nonce
    CLIENT_NONCE + SERVER_NONCE + "x",  # extends it further
    "x" + SERVER_NONCE,  # the server part with another client part
    "",
])
def test_a_client_final_nonce_other_than_the_servers_is_rejected(nonce: str) -> None:
    server = _server()
    server.evaluate(CLIENT_FIRST)
    # The proof is right for this auth message: only the nonce is wrong.
    with pytest.raises(SaslError, match="nonce"):
        server.evaluate(_final(SHA256, "pencil", nonce))
    assert not server.complete


def test_a_wrong_password_wrong_channel_binding_and_garbage_are_rejected() -> None:
    whole = CLIENT_NONCE + SERVER_NONCE
    for final, match in ((_final(SHA256, "wrong", whole), "Invalid client credentials"),
                         (_final(SHA256, "pencil", whole, channel="eSws"), "channel binding"),
                         (b"c=biws,r=" + whole.encode() + b",p=!!!", "base64"),
                         (b"p=abc", "final message")):
        server = _server()
        server.evaluate(CLIENT_FIRST)
        with pytest.raises(SaslError, match=match):
            server.evaluate(final)
        assert not server.complete


def test_unknown_user_authzid_channel_binding_and_tokens_fail_at_client_first() -> None:
    with pytest.raises(SaslError, match="Invalid user credentials"):
        _server().evaluate(b"n,,n=nobody,r=abc")
    with pytest.raises(SaslAuthenticationError, match="authorization id"):
        _server().evaluate(b"n,a=admin,n=user,r=abc")
    with pytest.raises(SaslError):
        _server().evaluate(b"p=tls-unique,,n=user,r=abc")  # channel binding: not supported
    with pytest.raises(SaslError, match="Delegation token"):
        _server().evaluate(b"n,,n=user,r=abc,tokenauth=true")
    with pytest.raises(SaslError, match="username"):
        _server().evaluate(b"n,,n=us=er,r=abc")


def test_saslname_escapes_are_decoded() -> None:
    server = _server(user="a,b=c")
    server.evaluate(b"n,,n=a=2Cb=3Dc,r=abc")


def test_the_store_persists_credentials_with_mode_0600(tmp_path: object) -> None:
    from pathlib import Path

    directory = Path(str(tmp_path))
    store = ScramCredentialStore(directory)
    credential = make_credential(SHA256, "pencil")
    store.alter([("alice", SHA256, credential)], [])
    again = ScramCredentialStore(directory)
    assert again.get("alice", SHA256) == credential
    assert again.get("alice", SHA512) is None
    assert again.mechanisms("alice") == {SHA256: 4096}
    assert (store.path is not None) and store.path.stat().st_mode & 0o777 == 0o600
    again.alter([], [("alice", SHA256)])
    assert ScramCredentialStore(directory).users == {}
