"""Where configuration strings come from: properties files, ``KAFKA_*`` variables, overrides.

Each reader returns plain ``key -> string`` pairs plus a note of where each came from; typing
and validation happen in ``broker_config``. The parsers copy Java's ``Properties.load`` and the
apache/kafka Docker image exactly, so a ``server.properties`` or a ``docker run -e`` line that
works with Kafka works here unchanged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from pykbroker.config.types import ConfigError

_WS = " \t\f"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}

# Variables the apache/kafka image (KafkaDockerWrapper's exclusions, kafka-run-class.sh) reads
# itself and never turns into server.properties lines; KAFKA_HEAP_OPT is the wrapper's own
# spelling, KAFKA_HEAP_OPTS the scripts'.
IGNORED_ENV_VARS = frozenset(
    {
        "KAFKA_VERSION",
        "KAFKA_HOME",
        "KAFKA_HEAP_OPT",
        "KAFKA_HEAP_OPTS",
        "KAFKA_OPTS",
        "KAFKA_JMX_OPTS",
        "KAFKA_JMX_PORT",
        "KAFKA_JMX_HOSTNAME",
        "KAFKA_LOG4J_OPTS",
        "KAFKA_LOG4J_ROOT_LOGLEVEL",
        "KAFKA_LOG4J_LOGGERS",
        "KAFKA_TOOLS_LOG4J_LOGLEVEL",
        "KAFKA_JVM_PERFORMANCE_OPTS",
        "KAFKA_GC_LOG_OPTS",
        "KAFKA_DEBUG",
    }
)


def parse_properties(text: str, origin: str = "<properties>") -> dict[str, str]:
    """Parse Java ``.properties`` text: the last of duplicate keys wins, as in Java.

    Supports ``#``/``!`` comments, ``=``, ``:`` or whitespace separators, backslash line
    continuations (leading whitespace of the next line dropped) and the escapes
    ``\\t \\n \\r \\f \\uXXXX``; any other escaped character stands for itself.
    """
    out: dict[str, str] = {}
    lines = _LINE_BREAK.split(text)
    i = 0
    while i < len(lines):
        lineno = i + 1
        line = lines[i].lstrip(_WS)
        i += 1
        if not line or line[0] in "#!":
            continue  # comment lines never continue, even when they end in a backslash
        while _odd_trailing_backslashes(line):
            line = line[:-1]
            if i == len(lines):
                break  # a backslash at the very end of the input is dropped, as in Java
            line += lines[i].lstrip(_WS)
            i += 1
        key, value = _split_entry(line)
        where = f"{origin}:{lineno}"
        out[_unescape(key, where)] = _unescape(value, where)
    return out


def load_properties_file(path: Path) -> dict[str, str]:
    """Read a properties file; UTF-8, falling back to ISO-8859-1 (Java's own encoding)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError("config file", str(path), f"cannot read: {exc.strerror}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("iso-8859-1")
    return parse_properties(text, str(path))


def _odd_trailing_backslashes(line: str) -> bool:
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1


def _split_entry(line: str) -> tuple[str, str]:
    """Java's key/value split: the key ends at an unescaped ``=``, ``:`` or whitespace."""
    n = len(line)
    j = 0
    has_separator = False
    value_start = n
    while j < n:
        c = line[j]
        if c == "\\":
            j += 2
            continue
        if c in "=:":
            has_separator = True
            value_start = j + 1
            break
        if c in _WS:
            value_start = j + 1
            break
        j += 1
    key = line[: min(j, n)]
    k = value_start
    while k < n:
        c = line[k]
        if c not in _WS:
            if not has_separator and c in "=:":
                has_separator = True
            else:
                break
        k += 1
    return key, line[k:]


def _unescape(text: str, where: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        i += 1
        if c != "\\" or i == n:
            out.append(c)
            continue
        c = text[i]
        i += 1
        if c == "u":
            digits = text[i : i + 4]
            if len(digits) != 4 or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise ConfigError("properties", text, "Malformed \\uxxxx encoding.", where)
            out.append(chr(int(digits, 16)))
            i += 4
        else:
            out.append(_ESCAPES.get(c, c))
    return "".join(out)


def env_config_key(var: str) -> str | None:
    """The config key a ``KAFKA_*`` variable sets, or None when it is not a config variable.

    As the apache/kafka image: drop ``KAFKA_``, lowercase, then ``_`` -> ``.`` after
    ``___`` -> ``-`` and ``__`` -> ``_`` (so KAFKA_LISTENER_NAME_A___B__C -> listener.name.a-b_c).
    The image removes every ``KAFKA_`` in the name; pykbroker removes only the prefix.
    """
    if not var.startswith("KAFKA_") or var in IGNORED_ENV_VARS:
        return None
    rest = var[len("KAFKA_") :]
    if not rest:
        return None
    return rest.lower().replace("_", ".").replace("...", "-").replace("..", "_")


def env_configs(env: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """``(variable, key, value)`` for every config variable, in variable-name order."""
    out: list[tuple[str, str, str]] = []
    for var in sorted(env):
        key = env_config_key(var)
        if key is not None:
            out.append((var, key, env[var]))
    return out


def parse_overrides(items: Iterable[str]) -> list[tuple[str, str]]:
    """``key=value`` strings, as ``kafka-server-start.sh --override`` takes them."""
    out: list[tuple[str, str]] = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                item, None, "Invalid command line properties: expected key=value", "override"
            )
        out.append((key.strip(), value))
    return out


_HOST_IN_LISTENER = re.compile(r"://(\[[^\]]*\]|[^:/,]*):")


def listeners_from_advertised(advertised: str) -> str:
    """The image's rule: bind where advertised, but on 0.0.0.0 (``configure`` script)."""
    return _HOST_IN_LISTENER.sub("://0.0.0.0:", advertised)


def default_data_dir(env: Mapping[str, str]) -> Path:
    """pykbroker's per-user data directory (XDG base directory rules)."""
    xdg = env.get("XDG_DATA_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "pykbroker" / "data"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "share" / "pykbroker" / "data"
