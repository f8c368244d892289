"""Kafka's JAAS syntax for sasl.jaas.config."""

from __future__ import annotations

import pytest

from pykbroker.security.jaas import JaasError, parse_jaas_config, plain_users


def test_kafkas_plain_example() -> None:
    entries = parse_jaas_config(
        'org.apache.kafka.common.security.plain.PlainLoginModule required\n'
        '    username="admin"\n    password="admin-secret"\n'
        '    user_admin="admin-secret"\n    user_alice="alice-secret";')
    assert len(entries) == 1
    entry = entries[0]
    assert entry.login_module == "org.apache.kafka.common.security.plain.PlainLoginModule"
    assert entry.flag == "required"
    assert entry.options["username"] == "admin"
    assert plain_users(entries) == {"admin": "admin-secret", "alice": "alice-secret"}


def test_quotes_escapes_words_comments_and_several_entries() -> None:
    entries = parse_jaas_config(
        "// the users\n"
        "a.b.C REQUIRED user_x='single' user_y=\"a \\\"q\\\" ; b\" /* c */ opt=word-1_$;"
        " d.E optional;")
    assert [e.login_module for e in entries] == ["a.b.C", "d.E"]
    assert entries[0].flag == "required" and entries[1].flag == "optional"
    assert entries[0].options == {"user_x": "single", "user_y": 'a "q" ; b',
                                  "opt": "word-1_$"}


@pytest.mark.parametrize(("text", "message"), [
    ("", "does not contain any login modules"),
    ("a.B;", "control flag not specified"),
    ("a.B mandatory;", "Invalid login module control flag"),
    ("a.B required user_x;", "Value not specified for key 'user_x'"),
    ("a.B required user_x=;", "Value not specified for key 'user_x'"),
    ('a.B required user_x="y"', "Expected ';'"),
])
def test_errors_carry_kafkas_text(text: str, message: str) -> None:
    with pytest.raises(JaasError, match=message):
        parse_jaas_config(text)
