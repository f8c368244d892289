"""JSON as Kafka reads and writes it in znodes (``kafka.utils.Json`` and ``json.DecodeJson``).

Kafka writes compact JSON with Jackson (no spaces, UTF-8, non-ASCII unescaped) and reads it
strictly by type: an ``Int`` field must be a JSON integer within 32 bits (never a string or
``1.0``), a ``String`` field a JSON string, and an optional field may be absent or ``null``.
The znode codecs read through :class:`JsonObject` so they keep those rules in one place, and
every malformed znode raises :class:`ZNodeDecodeError` naming the znode and its bytes.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Final

from pykbroker.errors import DecodeError

__all__ = [
    "INT32_MAX",
    "INT32_MIN",
    "JsonObject",
    "ZNodeDecodeError",
    "dump_json",
    "kafka_uuid_from_str",
    "kafka_uuid_to_str",
    "parse_java_int",
    "parse_java_long",
]

INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
_JAVA_INTEGER = re.compile(r"[+-]?[0-9]+")
_SHOWN_BYTES: Final = 300
# Kafka's Uuid.toString is 22 URL-safe base64 characters; Java's decoder also takes padding.
_KAFKA_UUID = re.compile(r"[A-Za-z0-9_-]{22}(==)?")


class ZNodeDecodeError(DecodeError):
    """A znode's bytes are not the form Kafka writes there."""


def _shown(data: bytes) -> str:
    text = data[:_SHOWN_BYTES].decode("utf-8", errors="replace")
    return repr(text) + ("..." if len(data) > _SHOWN_BYTES else "")


def dump_json(pairs: Iterable[tuple[str, object]]) -> bytes:
    """Compact UTF-8 JSON with keys in the given order, as Jackson writes it."""
    return json.dumps(
        dict(pairs), separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def parse_java_int(text: str, what: str) -> int:
    """``Integer.parseInt``: optional sign and ASCII digits only, within 32 bits."""
    if _JAVA_INTEGER.fullmatch(text) is None or not INT32_MIN <= int(text) <= INT32_MAX:
        raise ZNodeDecodeError(f"{what}: {text!r} is not a 32-bit integer")
    return int(text)


def parse_java_long(text: str, what: str) -> int:
    """``Long.parseLong``: optional sign and ASCII digits only, within 64 bits."""
    if _JAVA_INTEGER.fullmatch(text) is None or not INT64_MIN <= int(text) <= INT64_MAX:
        raise ZNodeDecodeError(f"{what}: {text!r} is not a 64-bit integer")
    return int(text)


def kafka_uuid_to_str(value: uuid.UUID) -> str:
    """``Uuid.toString``: URL-safe base64 of the 16 bytes without padding (22 characters)."""
    return base64.urlsafe_b64encode(value.bytes).rstrip(b"=").decode("ascii")


def kafka_uuid_from_str(text: str, what: str) -> uuid.UUID:
    """``Uuid.fromString``, rejecting anything that is not 16 bytes of URL-safe base64."""
    if _KAFKA_UUID.fullmatch(text) is None:
        raise ZNodeDecodeError(f"{what}: {text!r} is not a Kafka uuid")
    return uuid.UUID(bytes=base64.urlsafe_b64decode(text[:22] + "=="))


def _is_int(value: object, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


class JsonObject:
    """A parsed JSON object with Kafka's typed accessors; errors name the znode kind."""

    __slots__ = ("data", "values", "what")

    def __init__(self, values: Mapping[str, object], what: str, data: bytes) -> None:
        self.values = values
        self.what = what
        self.data = data

    @classmethod
    def parse(cls, data: bytes, what: str) -> JsonObject:
        """Parse ``data`` as one JSON object (Kafka's ``Json.parseBytes(...).asJsonObject``)."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ZNodeDecodeError(f"{what}: expected bytes, got {type(data).__name__}")
        raw = bytes(data)
        try:
            value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ZNodeDecodeError(f"{what}: not JSON ({exc}): {_shown(raw)}") from None
        if not isinstance(value, dict):
            raise ZNodeDecodeError(f"{what}: expected a JSON object: {_shown(raw)}")
        return cls(value, what, raw)

    def error(self, problem: str) -> ZNodeDecodeError:
        return ZNodeDecodeError(f"{self.what}: {problem}: {_shown(self.data)}")

    def child(self, key: str, value: Mapping[str, object]) -> JsonObject:
        return JsonObject(value, f"{self.what} {key!r}", self.data)

    def has(self, key: str) -> bool:
        return key in self.values

    def _required(self, key: str) -> object:
        if key not in self.values:
            raise self.error(f"missing {key!r}")
        return self.values[key]

    def get_int(self, key: str) -> int:
        value = self._required(key)
        if not _is_int(value, INT32_MIN, INT32_MAX):
            raise self.error(f"{key!r} must be a 32-bit integer, not {value!r}")
        assert isinstance(value, int)
        return value

    def opt_int(self, key: str) -> int | None:
        """An ``Option[Int]``: absent or ``null`` is ``None``."""
        return None if self.values.get(key) is None else self.get_int(key)

    def get_long(self, key: str) -> int:
        value = self._required(key)
        if not _is_int(value, INT64_MIN, INT64_MAX):
            raise self.error(f"{key!r} must be a 64-bit integer, not {value!r}")
        assert isinstance(value, int)
        return value

    def get_str(self, key: str) -> str:
        value = self._required(key)
        if not isinstance(value, str):
            raise self.error(f"{key!r} must be a string, not {value!r}")
        return value

    def opt_str(self, key: str) -> str | None:
        """An ``Option[String]``: absent or ``null`` is ``None``."""
        return None if self.values.get(key) is None else self.get_str(key)

    def lenient_millis(self, key: str) -> int:
        """A timestamp Kafka writes as decimal text but never reads: anything odd is ``-1``."""
        value = self.values.get(key)
        if isinstance(value, str) and _JAVA_INTEGER.fullmatch(value):
            value = int(value)
        return value if _is_int(value, INT64_MIN, INT64_MAX) and isinstance(value, int) else -1

    def get_object(self, key: str) -> JsonObject:
        value = self._required(key)
        if not isinstance(value, dict):
            raise self.error(f"{key!r} must be a JSON object, not {value!r}")
        return self.child(key, value)

    def opt_object(self, key: str) -> JsonObject | None:
        return None if key not in self.values else self.get_object(key)

    def get_list(self, key: str) -> list[object]:
        value = self._required(key)
        if not isinstance(value, list):
            raise self.error(f"{key!r} must be a JSON array, not {value!r}")
        return value

    def int_list(self, key: str) -> tuple[int, ...]:
        values = self.get_list(key)
        if not all(_is_int(v, INT32_MIN, INT32_MAX) for v in values):
            raise self.error(f"{key!r} must be an array of 32-bit integers, not {values!r}")
        return tuple(v for v in values if isinstance(v, int))

    def str_list(self, key: str) -> tuple[str, ...]:
        values = self.get_list(key)
        if not all(isinstance(v, str) for v in values):
            raise self.error(f"{key!r} must be an array of strings, not {values!r}")
        return tuple(v for v in values if isinstance(v, str))

    def objects(self, key: str) -> tuple[JsonObject, ...]:
        """An array of JSON objects (``partitions`` lists of ``{"topic":..,"partition":..}``)."""
        values = self.get_list(key)
        if not all(isinstance(v, dict) for v in values):
            raise self.error(f"{key!r} must be an array of JSON objects, not {values!r}")
        return tuple(self.child(key, v) for v in values if isinstance(v, dict))

    def items(self) -> Iterable[tuple[str, object]]:
        return self.values.items()
