"""The vocabulary of configuration: types, validators, definitions, parsing and rendering.

Kafka's ``ConfigDef`` semantics are copied on purpose (trimmed strings, Java integer widths,
``\\s*,\\s*`` list splitting, validator wording, ``Double.toString`` rendering) because
DescribeConfigs answers and error messages are visible to clients and operators, who compare
them with Apache Kafka's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum, IntEnum
from typing import NamedTuple

from pykbroker.errors import PykbrokerError


class ConfigError(PykbrokerError, ValueError):
    """A configuration value that Kafka would reject; names the key, the value and why."""

    key: str
    value: str | None
    reason: str
    origin: str | None

    def __init__(
        self, key: str, value: object, reason: str, origin: str | None = None
    ) -> None:
        self.key = key
        self.value = None if value is None else str(value)
        self.reason = reason
        self.origin = origin
        where = f" (set by {origin})" if origin else ""
        super().__init__(f"Invalid value {self.value} for configuration {key}: {reason}{where}")


class InvalidConfigurationError(ConfigError):
    """A rule across or about keys (unknown name, conflicting values): Kafka reports these
    with the reason alone, without ConfigException's "Invalid value ..." prefix."""

    def __str__(self) -> str:
        return self.reason


class ConfigType(Enum):
    """Kafka's ``ConfigDef.Type``; ``code`` is the DescribeConfigs v3+ ConfigType byte."""

    BOOLEAN = "boolean"
    STRING = "string"
    INT = "int"
    SHORT = "short"
    LONG = "long"
    DOUBLE = "double"
    LIST = "list"
    CLASS = "class"
    PASSWORD = "password"

    @property
    def code(self) -> int:
        return _TYPE_CODES[self]


_TYPE_CODES = {t: i for i, t in enumerate(ConfigType, start=1)}
UNKNOWN_TYPE_CODE = 0  # DescribeConfigs ConfigType.UNKNOWN, for keys without a definition


class Importance(Enum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class UpdateMode(Enum):
    """Kafka's "Dynamic Update Mode" column: which configs AlterConfigs may change at run time."""

    READ_ONLY = "read-only"
    PER_BROKER = "per-broker"
    CLUSTER_WIDE = "cluster-wide"


class ConfigSource(IntEnum):
    """DescribeConfigs ``ConfigSource`` codes (KIP-226)."""

    UNKNOWN = 0
    TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5
    DYNAMIC_BROKER_LOGGER_CONFIG = 6
    CLIENT_METRICS_CONFIG = 7
    GROUP_CONFIG = 8


class Password:
    """A secret that never shows itself in ``repr``/``str``, as Kafka's ``Password`` type."""

    __slots__ = ("value",)
    HIDDEN = "[hidden]"

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return self.HIDDEN

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Password) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


INT_MAX = 2**31 - 1
LONG_MAX = 2**63 - 1
DOUBLE_MAX = 1.7976931348623157e308
_WIDTH = {ConfigType.SHORT: 16, ConfigType.INT: 32, ConfigType.LONG: 64}
_INT_RE = re.compile(r"[+-]?[0-9]+")
_DOUBLE_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fFdD]?")
_LIST_SPLIT = re.compile(r"\s*,\s*")


# ---------------------------------------------------------------------------------------------
# Validators: ``check`` returns Kafka's reason text or None; ``str`` is the "Valid Values" text.


class Validator:
    """Base class so the definition table can hold any of Kafka's validators."""

    def check(self, value: object) -> str | None:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Range(Validator):
    """``Range.atLeast`` / ``Range.between``, optionally with extra allowed values (``or -1``)."""

    min: float | None = None
    max: float | None = None
    also: tuple[int, ...] = ()

    def check(self, value: object) -> str | None:
        if not isinstance(value, int | float) or isinstance(value, bool) or value in self.also:
            return None
        if self.min is not None and value < self.min:
            return f"Value must be at least {_num(self.min)}"
        if self.max is not None and value > self.max:
            return f"Value must be no more than {_num(self.max)}"
        return None

    def __str__(self) -> str:
        if self.max is None:
            text = f"[{_num(self.min)},...]"
        elif self.min is None:
            text = f"[...,{_num(self.max)}]"
        else:
            text = f"[{_num(self.min)},...,{_num(self.max)}]"
        return text + "".join(f" or {v}" for v in self.also)


@dataclass(frozen=True, slots=True)
class ValidString(Validator):
    """``ValidString.in`` (case sensitive unless ``ignore_case``, like CaseInsensitiveValidString)."""

    values: tuple[str, ...]
    ignore_case: bool = False

    def check(self, value: object) -> str | None:
        if value is None:
            return None
        ok = (
            str(value).lower() in (v.lower() for v in self.values)
            if self.ignore_case
            else value in self.values
        )
        if ok:
            return None
        qualifier = " (case insensitive)" if self.ignore_case else ""
        return f"String must be one of{qualifier}: {', '.join(self.values)}"

    def __str__(self) -> str:
        return f"[{', '.join(self.values)}]"


@dataclass(frozen=True, slots=True)
class ValidList(Validator):
    """``ValidList.in``: every element of a list value must be one of ``values``."""

    values: tuple[str, ...]

    def check(self, value: object) -> str | None:
        if not isinstance(value, list):
            return None
        for item in value:
            if item not in self.values:
                return f"String must be one of: {', '.join(self.values)}"
        return None

    def __str__(self) -> str:
        return f"[{', '.join(self.values)}]"


@dataclass(frozen=True, slots=True)
class NonEmptyString(Validator):
    """``ConfigDef.NonEmptyString``: null passes, an empty string does not."""

    def check(self, value: object) -> str | None:
        if isinstance(value, str) and not value:
            return "String must be non-empty"
        return None

    def __str__(self) -> str:
        return "non-empty string"


@dataclass(frozen=True, slots=True)
class Described(Validator):
    """A validator that only contributes Kafka's free-text "Valid Values" description."""

    text: str

    def check(self, value: object) -> str | None:
        return None

    def __str__(self) -> str:
        return self.text


def _num(x: float | None) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigDef:
    """One configuration key as Kafka defines it (type, default, documentation, validator...)."""

    name: str
    type: ConfigType
    default: object
    documentation: str
    importance: Importance = Importance.MEDIUM
    validator: Validator | None = None
    update_mode: UpdateMode = UpdateMode.READ_ONLY

    @property
    def sensitive(self) -> bool:
        return self.type is ConfigType.PASSWORD

    @property
    def read_only(self) -> bool:
        return self.update_mode is UpdateMode.READ_ONLY

    @property
    def valid_values(self) -> str:
        return "" if self.validator is None else str(self.validator)

    def parse(self, raw: str, origin: str | None = None) -> object:
        """Parse and validate a string value; raises ConfigError with Kafka's reason."""
        value = parse_value(self.name, self.type, raw, origin)
        self.validate(value, origin)
        return value

    def validate(self, value: object, origin: str | None = None) -> None:
        if self.validator is not None and value is not None:
            reason = self.validator.check(value)
            if reason is not None:
                shown = Password.HIDDEN if self.sensitive else render_value(self.type, value)
                raise ConfigError(self.name, shown, reason, origin)


class ConfigSynonym(NamedTuple):
    """One DescribeConfigs synonym: a key that sets (or would set) the described value."""

    name: str
    value: str | None
    source: int


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One DescribeConfigs result entry, values rendered as Kafka renders them."""

    name: str
    value: str | None
    source: int
    is_default: bool
    read_only: bool
    is_sensitive: bool
    config_type: int
    documentation: str | None
    synonyms: list[ConfigSynonym] = field(default_factory=list)


def parse_value(name: str, type_: ConfigType, raw: str, origin: str | None = None) -> object:
    """Kafka's ``ConfigDef.parseType`` for a string input (the value is trimmed first)."""
    text = raw.strip()
    shown = Password.HIDDEN if type_ is ConfigType.PASSWORD else text
    if type_ is ConfigType.BOOLEAN:
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        raise ConfigError(name, shown, "Expected value to be either true or false", origin)
    if type_ in _WIDTH:
        bits = _WIDTH[type_]
        if _INT_RE.fullmatch(text) and -(2 ** (bits - 1)) <= int(text) < 2 ** (bits - 1):
            return int(text)
        raise ConfigError(name, shown, f"Not a number of type {type_.name}", origin)
    if type_ is ConfigType.DOUBLE:
        if _DOUBLE_RE.fullmatch(text):
            return float(text.rstrip("fFdD"))
        if text in ("NaN", "Infinity", "+Infinity", "-Infinity"):
            return float(text.lower().replace("infinity", "inf"))
        raise ConfigError(name, shown, "Not a number of type DOUBLE", origin)
    if type_ is ConfigType.LIST:
        return [] if not text else _LIST_SPLIT.split(text)
    if type_ is ConfigType.PASSWORD:
        return Password(text)
    return text  # STRING, CLASS


def render_value(type_: ConfigType | None, value: object) -> str | None:
    """Kafka's ``ConfigDef.convertToString``: how DescribeConfigs shows a typed value."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Password):
        return Password.HIDDEN
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, float) or type_ is ConfigType.DOUBLE:
        return java_double(float(value))  # type: ignore[arg-type]
    return str(value)


def java_double(x: float) -> str:
    """``Double.toString``: plain from 1e-3 up to 1e7, else ``d.dddE±n``; shortest digits."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    if 1e-3 <= abs(x) < 1e7:
        text = repr(x)
        return text if "." in text else text + ".0"
    sign, digits, exponent = Decimal(repr(x)).as_tuple()
    assert isinstance(exponent, int)
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    exp10 = len(digits) - 1 + exponent
    return f"{'-' if sign else ''}{ds[0]}.{ds[1:] or '0'}E{exp10}"


def define(
    name: str,
    type_: ConfigType,
    default: object,
    doc: str,
    importance: Importance = Importance.MEDIUM,
    validator: Validator | None = None,
    mode: UpdateMode = UpdateMode.READ_ONLY,
) -> ConfigDef:
    """Compact constructor so the definition tables read like Kafka's ``ConfigDef.define``."""
    return ConfigDef(name, type_, default, doc, importance, validator, mode)


def table(*defs: ConfigDef) -> dict[str, ConfigDef]:
    """Index definitions by name; a duplicate name is a bug in the table, caught at import."""
    out: dict[str, ConfigDef] = {}
    for d in defs:
        if d.name in out:
            raise AssertionError(f"duplicate config definition {d.name}")
        out[d.name] = d
    return out


def at_least(n: int) -> Range:
    return Range(min=n)


def between(lo: float, hi: float, also: Sequence[int] = ()) -> Range:
    return Range(min=lo, max=hi, also=tuple(also))


def one_of(*values: str) -> ValidString:
    return ValidString(tuple(values))
