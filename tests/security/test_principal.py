"""ssl.principal.mapping.rules as Kafka's SslPrincipalMapper, and DNs as Java writes them."""

from __future__ import annotations

import pytest

from pykbroker.security.ssl_principal import NoMatchingRule, SslPrincipalMapper, dn_from_subject

DN = "CN=alice,OU=ServiceUsers,O=Example,L=Paris,C=FR"


@pytest.mark.parametrize(("rules", "expected"), [
    ("DEFAULT", DN),
    ("RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/", "alice"),
    ("RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/U", "ALICE"),
    ("RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=.*$/$1@$3/L", "alice@example"),
    ("RULE:^CN=nobody,.*$/x/, RULE:^CN=([a-z]+),.*$/user-$1/, DEFAULT", "user-alice"),
    ("RULE:^CN=nobody,.*$/x/,DEFAULT", DN),
    ("RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L", "alice"),
    ("RULE:^CN=(.*?),.*$/\\$$1\\//", "$alice/"),
])
def test_rules(rules: str, expected: str) -> None:
    assert SslPrincipalMapper(rules).name(DN) == expected


def test_no_rule_applies() -> None:
    with pytest.raises(NoMatchingRule, match="No rules apply to CN=alice"):
        SslPrincipalMapper("RULE:^CN=bob,.*$/$1/").name(DN)


@pytest.mark.parametrize("rules", ["DEFAULTS", "RULE:abc", "RULE:a/b/X", "RULE:(/x/",
                                   "KERBEROS"])
def test_invalid_rules(rules: str) -> None:
    with pytest.raises(ValueError, match="Invalid rule"):
        SslPrincipalMapper(rules)


def test_dn_is_written_most_specific_first_with_rfc2253_escapes() -> None:
    subject = ((("countryName", "FR"),), (("organizationName", "Example, Inc."),),
               (("organizationalUnitName", "a+b"),), (("commonName", "alice"),))
    assert dn_from_subject(subject) == "CN=alice,OU=a\\+b,O=Example\\, Inc.,C=FR"
    email = ((("commonName", "x"),), (("emailAddress", "a@b.c"),))
    assert dn_from_subject(email) == "1.2.840.113549.1.9.1=#1605614062" + "2e63" + ",CN=x"
