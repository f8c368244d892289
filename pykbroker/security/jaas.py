"""Kafka's JAAS configuration syntax (``sasl.jaas.config``), as its JaasConfig parses it.

``<LoginModuleClass> <flag> [key=value ...];`` repeated: the flag is required, requisite,
sufficient or optional; a value is a word or a quoted string (``"..."`` or ``'...'``, with
backslash escapes); ``//`` and ``/* */`` comments are skipped. Errors carry Kafka's text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FLAGS = ("required", "requisite", "sufficient", "optional")
PLAIN_LOGIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
SCRAM_LOGIN_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"

_WORD_EXTRA = set("-_$.")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "a": "\a", "v": "\v"}


class JaasError(ValueError):
    """A JAAS configuration Kafka would refuse; the message is Kafka's."""


@dataclass(frozen=True, slots=True)
class JaasEntry:
    login_module: str
    flag: str
    options: dict[str, str] = field(default_factory=dict)


class _Tokens:
    """A java.io.StreamTokenizer configured as JaasConfig does: words, quotes, comments."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def _skip(self) -> None:
        text = self.text
        while self.pos < len(text):
            if text[self.pos].isspace():
                self.pos += 1
            elif text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end + 1
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                self.pos = len(text) if end < 0 else end + 2
            else:
                return

    def next(self) -> tuple[str, str] | None:
        """``("word", text)``, ``("quoted", text)``, ``("char", c)`` or None at the end."""
        self._skip()
        text = self.text
        if self.pos >= len(text):
            return None
        ch = text[self.pos]
        if ch.isalnum() or ch in _WORD_EXTRA or ord(ch) > 127:
            start = self.pos
            while self.pos < len(text) and (text[self.pos].isalnum()
                                            or text[self.pos] in _WORD_EXTRA
                                            or ord(text[self.pos]) > 127):
                self.pos += 1
            return "word", text[start:self.pos]
        if ch in "\"'":
            self.pos += 1
            out = []
            while self.pos < len(text) and text[self.pos] != ch:
                c = text[self.pos]
                if c == "\\" and self.pos + 1 < len(text):
                    self.pos += 1
                    c = _ESCAPES.get(text[self.pos], text[self.pos])
                out.append(c)
                self.pos += 1
            self.pos += 1  # the closing quote (StreamTokenizer also ends a quote at the end)
            return "quoted", "".join(out)
        self.pos += 1
        return "char", ch


def parse_jaas_config(text: str) -> list[JaasEntry]:
    """The login module entries of ``text``; JaasError when Kafka would refuse it."""
    tokens = _Tokens(text)
    entries: list[JaasEntry] = []
    while (tok := tokens.next()) is not None:
        kind, module = tok
        if kind != "word":
            raise JaasError(f"Unexpected token {module!r} in JAAS config: expected a login "
                            "module class name")
        flag_tok = tokens.next()
        if flag_tok is None or flag_tok[0] != "word":
            raise JaasError("Login module control flag not specified in JAAS config")
        flag = flag_tok[1].lower()
        if flag not in FLAGS:
            raise JaasError(f"Invalid login module control flag '{flag_tok[1]}' in JAAS config")
        options: dict[str, str] = {}
        while True:
            tok = tokens.next()
            if tok is None:
                raise JaasError("Expected ';' at the end of the JAAS entry for " + module)
            if tok == ("char", ";"):
                break
            if tok[0] != "word":
                raise JaasError(f"Unexpected token {tok[1]!r} in JAAS config")
            key = tok[1]
            if tokens.next() != ("char", "="):
                raise JaasError(f"Value not specified for key '{key}' in JAAS config")
            value = tokens.next()
            if value is None or value[0] == "char":
                raise JaasError(f"Value not specified for key '{key}' in JAAS config")
            options[key] = value[1]
        entries.append(JaasEntry(module, flag, options))
    if not entries:
        raise JaasError("JAAS config property does not contain any login modules")
    return entries


def plain_users(entries: list[JaasEntry]) -> dict[str, str]:
    """PLAIN's users: the ``user_<name>="<password>"`` options (PlainServerCallbackHandler)."""
    return {key[len("user_"):]: value for entry in entries
            for key, value in entry.options.items() if key.startswith("user_")}
