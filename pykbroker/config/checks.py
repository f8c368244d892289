"""Rules across keys (KafkaConfig's ``require`` checks) and key lookup with helpful misses.

A single key's type and range are checked by its definition; the rules here relate several
keys, so they run once every value is known. Each failed rule names the key to blame.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable

from pykbroker.config.defs import BROKER_DEFS
from pykbroker.config.topic import TOPIC_SERVER_SYNONYMS
from pykbroker.config.types import INT_MAX, ConfigDef

OVERRIDES_KEY = "max.connections.per.ip.overrides"
_CSV_SPLIT = re.compile(r"\s*,\s*")
_JAVA_INT = re.compile(r"[+-]?[0-9]+")
_LISTENER_PREFIX = re.compile(r"listener\.name\.([^.]+)\.(.+)")
_CONSUMER_GROUP_ORDER = (
    # (lower, upper, strictly less): GroupCoordinatorConfig's requirements
    ("min.heartbeat.interval.ms", "max.heartbeat.interval.ms", False),
    ("min.heartbeat.interval.ms", "heartbeat.interval.ms", False),
    ("heartbeat.interval.ms", "max.heartbeat.interval.ms", False),
    ("min.session.timeout.ms", "max.session.timeout.ms", False),
    ("min.session.timeout.ms", "session.timeout.ms", False),
    ("session.timeout.ms", "max.session.timeout.ms", False),
    ("heartbeat.interval.ms", "session.timeout.ms", True),
)


def find_def(key: str) -> ConfigDef | None:
    """The definition of ``key``, including ``listener.name.<l>[.<mechanism>].<key>`` forms."""
    defn = BROKER_DEFS.get(key)
    if defn is not None:
        return defn
    match = _LISTENER_PREFIX.fullmatch(key)
    if match is None:
        return None
    rest = match[2]
    if rest in BROKER_DEFS:
        return BROKER_DEFS[rest]
    _, _, after_mechanism = rest.partition(".")
    return BROKER_DEFS.get(after_mechanism)


class OverridesError(ValueError):
    """``max.connections.per.ip.overrides`` cannot be parsed (Kafka fails the same way)."""


def parse_overrides(text: str) -> dict[str, int]:
    """``max.connections.per.ip.overrides`` as KafkaConfig reads it: Kafka's
    ``Csv.parseCsvMap`` (entries split on commas with the blanks around them, each at its
    *last* colon, so an IPv6 address needs no brackets: ``::1:5``) and ``toInt`` of each
    count. A later entry for the same host wins. Raises OverridesError where Kafka throws."""
    out: dict[str, int] = {}
    if not text:
        return out
    entries = _CSV_SPLIT.split(text)
    while entries and entries[-1] == "":  # Java's String.split drops trailing empty strings
        entries.pop()
    for entry in entries:
        host, sep, count = entry.rpartition(":")
        if not sep:
            raise OverridesError(f"Error parsing configuration property '{OVERRIDES_KEY}': "
                                 f"entry '{entry}' is not host:count")
        count = count.strip()
        if not _JAVA_INT.fullmatch(count) or not -2**31 <= int(count) <= INT_MAX:
            raise OverridesError(f"Error parsing configuration property '{OVERRIDES_KEY}': "
                                 f"For input string: \"{count}\"")
        out[host.strip()] = int(count)
    return out


def unknown_key_warning(key: str, origin: str) -> str:
    """The warning for a key nobody defines, with the closest known key as a suggestion."""
    text = f"Unknown configuration '{key}' (from {origin}) is ignored"
    if key == "cluster.id":
        return text + "; the cluster id is kept in meta.properties, not in the configuration"
    if key in TOPIC_SERVER_SYNONYMS:
        return text + f"; '{key}' is a topic config, did you mean '{TOPIC_SERVER_SYNONYMS[key]}'?"
    close = difflib.get_close_matches(key, BROKER_DEFS.keys(), n=1, cutoff=0.6)
    return text + (f"; did you mean '{close[0]}'?" if close else "")


def first_failed_rule(
    get: Callable[[str], object], inter_broker_protocol: str
) -> tuple[str, str] | None:
    """``(key, reason)`` of the first broken cross-key rule, or None; ``get`` resolves keys."""

    def n(key: str) -> int:
        value = get(key)
        assert isinstance(value, int), (key, value)
        return value

    rules: list[tuple[bool, str, str]] = [
        (n("replica.fetch.wait.max.ms") > n("replica.socket.timeout.ms"),
         "replica.socket.timeout.ms", "replica.socket.timeout.ms should always be at least "
         "replica.fetch.wait.max.ms to prevent unnecessary socket timeouts"),
        (n("replica.fetch.wait.max.ms") > n("replica.lag.time.max.ms"),
         "replica.fetch.wait.max.ms", "replica.fetch.wait.max.ms should always be less than or "
         "equal to replica.lag.time.max.ms to prevent frequent changes in ISR"),
        (not -1 <= n("offsets.commit.required.acks") <= n("offsets.topic.replication.factor"),
         "offsets.commit.required.acks", "offsets.commit.required.acks must be greater or "
         "equal -1 and less or equal to offsets.topic.replication.factor"),
        (n("log.roll.ms") < 1, "log.roll.ms", "log.roll.ms must be greater than or equal to 1"),
        (n("log.retention.ms") == 0, "log.retention.ms",
         "log.retention.ms must be unlimited (-1) or, greater than or equal to 1"),
        (n("log.cleaner.threads") > 0
         and n("log.cleaner.dedupe.buffer.size") // n("log.cleaner.threads") <= 1024 * 1024,
         "log.cleaner.dedupe.buffer.size",
         "log.cleaner.dedupe.buffer.size must be at least 1MB per cleaner thread."),
        (0 < n("queued.max.request.bytes") < n("socket.request.max.bytes"),
         "queued.max.request.bytes",
         "queued.max.request.bytes must be larger or equal to socket.request.max.bytes"),
        (n("max.connections.per.ip") == 0 and not get("max.connections.per.ip.overrides"),
         "max.connections.per.ip", "max.connections.per.ip can be set to zero only if "
         "max.connections.per.ip.overrides property is set."),
    ]
    g = "group.consumer."
    for low, high, strict in _CONSUMER_GROUP_ORDER:
        a, b = n(g + low), n(g + high)
        relation = "less than" if strict else "less than or equals to"
        rules.append((a >= b if strict else a > b, g + low, f"{g + low} must be {relation} "
                                                            f"{g + high}"))
    if inter_broker_protocol.startswith("SASL_"):
        mechanisms = get("sasl.enabled.mechanisms")
        assert isinstance(mechanisms, list)
        rules.append((get("sasl.mechanism.inter.broker.protocol") not in mechanisms,
                      "sasl.mechanism.inter.broker.protocol",
                      "sasl.mechanism.inter.broker.protocol must be included in "
                      "sasl.enabled.mechanisms when SASL is used for inter-broker "
                      "communication"))
    for failed, key, reason in rules:
        if failed:
            return key, reason
    try:
        parse_overrides(str(get(OVERRIDES_KEY) or ""))
    except OverridesError as exc:
        return OVERRIDES_KEY, str(exc)
    return None
