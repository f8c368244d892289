"""Kafka's mapping of client certificate DNs to principals (``User:alice``).

``ssl.principal.mapping.rules`` follows Kafka's SslPrincipalMapper: a comma-separated list of
``DEFAULT`` and ``RULE:pattern/replacement/[LU]`` rules, tried in order; the first whose
pattern matches the whole distinguished name gives the name (``$1`` refers to a group, ``L``
and ``U`` change its case); no matching rule fails the authentication. The DN is written as
Java's ``X500Principal.getName()`` writes it (RFC 2253: most specific attribute first).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# Kafka's SslPrincipalMapper.RULE_PATTERN, RULE_SPLITTER and RULE_PARSER, verbatim.
_RULE_PATTERN = r"(DEFAULT)|RULE:((\\.|[^\\/])*)/((\\.|[^\\/])*)/([LU]?).*?|(.*?)"
_RULE_SPLITTER = re.compile(r"\s*(" + _RULE_PATTERN + r")\s*(,\s*|$)")
_RULE_PARSER = re.compile(_RULE_PATTERN)

# RFC 2253 keywords Java writes by name; other attributes are written as OID=#hex.
_RFC2253_NAMES = {
    "commonName": "CN", "countryName": "C", "localityName": "L",
    "stateOrProvinceName": "ST", "organizationName": "O", "organizationalUnitName": "OU",
    "streetAddress": "STREET", "domainComponent": "DC", "userId": "UID",
}
_IA5_OIDS = {"emailAddress": "1.2.840.113549.1.9.1"}


class NoMatchingRule(Exception):
    """No ``ssl.principal.mapping.rules`` rule applies to a DN."""


def _java_replacement(text: str) -> str:
    """A java.util.regex replacement (``$1``, ``${name}``, ``\\x``) as Python's ``re.sub``'s."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1].replace("\\", "\\\\"))
            i += 2
        elif ch == "$" and i + 1 < len(text) and text[i + 1] == "{":
            end = text.index("}", i)
            out.append(f"\\g<{text[i + 2:end]}>")
            i = end + 1
        elif ch == "$" and i + 1 < len(text) and text[i + 1].isdigit():
            j = i + 1
            while j < len(text) and text[j].isdigit():
                j += 1
            out.append(f"\\g<{text[i + 1:j]}>")
            i = j
        else:
            out.append("\\\\" if ch == "\\" else ch)
            i += 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class _Rule:
    pattern: re.Pattern[str] | None  # None: DEFAULT
    replacement: str
    case: str  # "", "L" or "U"
    text: str

    def apply(self, dn: str) -> str | None:
        if self.pattern is None:
            return dn
        if self.pattern.fullmatch(dn) is None:
            return None
        result = self.pattern.sub(self.replacement, dn)
        return result.lower() if self.case == "L" else result.upper() if self.case == "U" \
            else result


class SslPrincipalMapper:
    """``ssl.principal.mapping.rules``; ValueError (Kafka's message) for a rule it can't parse."""

    def __init__(self, rules: str) -> None:
        self.text = rules
        self.rules = [self._parse(r) for r in self._split(rules)]

    @staticmethod
    def _split(rules: str) -> Iterable[str]:
        for match in _RULE_SPLITTER.finditer(rules.strip()):
            if match.start() == match.end():  # the final empty match at the end
                continue
            yield match[1]

    @staticmethod
    def _parse(rule: str) -> _Rule | None:
        match = _RULE_PARSER.match(rule)
        if match is None:
            raise ValueError(f"Invalid rule: {rule}")
        if match.end() != len(rule):
            raise ValueError(f"Invalid rule: `{rule}`, unmatched substring: "
                             f"`{rule[match.end():]}`")
        if match[1] is not None:
            return _Rule(None, "", "", rule)
        if match[2] is not None:
            try:
                pattern = re.compile(match[2])
            except re.error as exc:
                raise ValueError(f"Invalid rule: {rule} ({exc})") from None
            return _Rule(pattern, _java_replacement(match[4]), match[6] or "", rule)
        if rule:
            raise ValueError(f"Invalid rule: {rule}")
        return None  # empty rules are ignored

    def name(self, dn: str) -> str:
        for rule in self.rules:
            if rule is None:
                continue
            result = rule.apply(dn)
            if result is not None:
                return result
        shown = "[" + ", ".join(r.text for r in self.rules if r is not None) + "]"
        raise NoMatchingRule(f"No rules apply to {dn}, rules {shown}")


def _escape(value: str) -> str:
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;' or (ch == "#" and i == 0) or (ch == " " and i in (0, len(value) - 1)):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _ia5_hex(value: str) -> str:
    data = value.encode("ascii", "replace")
    if len(data) < 128:
        header = bytes([0x16, len(data)])
    else:
        size = len(data).to_bytes((len(data).bit_length() + 7) // 8, "big")
        header = bytes([0x16, 0x80 | len(size)]) + size
    return "#" + (header + data).hex()


def dn_from_subject(subject: object) -> str:
    """The RFC 2253 DN of a subject as ``ssl.SSLSocket.getpeercert()`` gives it."""
    rdns = []
    for rdn in reversed(list(subject)):  # type: ignore[call-overload]
        parts = []
        for name, value in rdn:
            if name in _RFC2253_NAMES:
                parts.append(f"{_RFC2253_NAMES[name]}={_escape(str(value))}")
            elif name in _IA5_OIDS:
                parts.append(f"{_IA5_OIDS[name]}={_ia5_hex(str(value))}")
            else:
                parts.append(f"{name}={_escape(str(value))}")
        rdns.append("+".join(parts))
    return ",".join(rdns)
