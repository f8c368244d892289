"""Kafka message-schema model: parses the JSON specs in ``protocol_specs/``.

The generator and the tests (strategies for every message and version) share this model, so
the rules of the schema language live in one place. Never imported by the running broker.
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PRIMITIVES = frozenset(
    ["bool", "int8", "int16", "uint16", "int32", "uint32", "int64", "float64", "string",
     "bytes", "uuid", "records"]
)
FIXED_FORMAT = {
    "bool": "?", "int8": "b", "int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
    "int64": "q", "float64": "d",
}
INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1), "int16": (-(2**15), 2**15 - 1), "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1), "int64": (-(2**63), 2**63 - 1),
}
_HIGHEST = 32767


class SchemaError(Exception):
    """A spec file that the generator does not understand."""


@dataclass(frozen=True)
class Versions:
    """An inclusive version range; ``lo > hi`` is the empty range ("none")."""

    lo: int
    hi: int

    @classmethod
    def parse(cls, text: str | None) -> Versions:
        if text is None or text == "none":
            return NONE
        text = text.strip()
        if text.endswith("+"):
            return cls(int(text[:-1]), _HIGHEST)
        if "-" in text:
            a, b = text.split("-", 1)
            return cls(int(a), int(b))
        v = int(text)
        return cls(v, v)

    def __contains__(self, v: object) -> bool:
        return isinstance(v, int) and self.lo <= v <= self.hi

    @property
    def empty(self) -> bool:
        return self.lo > self.hi

    def intersect(self, other: Versions) -> Versions:
        return Versions(max(self.lo, other.lo), min(self.hi, other.hi))


NONE = Versions(0, -1)


def strip_json_comments(text: str) -> str:
    """Remove ``//`` comments outside string literals (the specs are JSON with comments)."""
    out: list[str] = []
    i, n, in_str = 0, len(text), False
    while i < n:
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_str = False
        elif c == '"':
            in_str = True
            out.append(c)
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def snake(name: str) -> str:
    """PascalCase or camelCase schema name -> snake_case Python name."""
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()
    return s + "_" if keyword.iskeyword(s) or s in _RESERVED else s


_RESERVED = frozenset(["encode", "decode", "unknown_tags"])


@dataclass
class Field:
    name: str  # schema name
    attr: str  # python attribute name
    type: str  # element type for arrays
    is_array: bool
    versions: Versions
    nullable: Versions
    tagged: Versions
    tag: int | None
    flexible_override: Versions | None
    ignorable: bool
    default_text: str | None
    struct: Struct | None = None  # for struct / struct-array fields

    @property
    def is_struct(self) -> bool:
        return self.struct is not None

    def present(self, v: int) -> bool:
        return v in self.versions

    def is_tagged(self, v: int) -> bool:
        return self.tag is not None and v in self.tagged

    def is_nullable(self, v: int) -> bool:
        return v in self.nullable

    def compact(self, v: int, msg_flexible: Versions) -> bool:
        flex = self.flexible_override if self.flexible_override is not None else msg_flexible
        return v in flex

    def default_is_null(self) -> bool:
        return self.default_text is not None and self.default_text.lower() in ("null", "none")

    def python_default(self) -> object:
        """The default value as a Python literal object (lists and structs are handled apart)."""
        d = self.default_text
        t = self.type
        if self.is_array or self.is_struct:
            return None if self.default_is_null() else ...
        if d is not None and d.lower() in ("null", "none"):
            return None
        if t == "bool":
            return d is not None and d.lower() == "true"
        if t in INT_RANGES:
            if d is None or d == "":
                return 0
            return int(d, 16) if d.lower().startswith(("0x", "-0x")) else int(d)
        if t == "float64":
            return float(d) if d else 0.0
        if t == "string":
            return d if d is not None else ""
        if t == "bytes":
            return b""
        if t == "uuid":
            return "ZERO_UUID"
        if t == "records":
            return None
        raise SchemaError(f"no default for type {t}")


@dataclass
class Struct:
    name: str
    fields: list[Field]
    versions: Versions  # versions in which the struct can appear at all

    def walk(self) -> Iterator[Struct]:
        """This struct, then every struct beneath it, each once, children first."""
        seen: set[str] = set()

        def rec(s: Struct) -> Iterator[Struct]:
            for f in s.fields:
                if f.struct is not None and f.struct.name not in seen:
                    yield from rec(f.struct)
            if s.name not in seen:
                seen.add(s.name)
                yield s

        return rec(self)


@dataclass
class Message:
    path: Path
    rel: str  # path relative to the specs root
    name: str
    type: str  # request, response, header, data
    api_key: int | None
    valid: Versions
    flexible: Versions
    deprecated: Versions
    listeners: list[str]
    latest_version_unstable: bool
    root: Struct
    structs: dict[str, Struct] = field(default_factory=dict)

    @property
    def module(self) -> str:
        return snake(self.name)

    def versions(self) -> range:
        return range(self.valid.lo, self.valid.hi + 1)


def _parse_struct(
    name: str, raw_fields: list[dict[str, object]], versions: Versions,
    registry: dict[str, Struct], common: dict[str, list[dict[str, object]]], msg: str,
) -> Struct:
    fields: list[Field] = []
    for rf in raw_fields:
        fname = str(rf["name"])
        rtype = str(rf["type"])
        is_array = rtype.startswith("[]")
        elem = rtype[2:] if is_array else rtype
        # As Kafka's FieldSpec: a tagged field may give only taggedVersions.
        ver_text = rf.get("versions", rf.get("taggedVersions"))
        if ver_text is None:
            raise SchemaError(f"{msg}: field {fname} has no versions")
        fver = Versions.parse(str(ver_text))
        tag = rf.get("tag")
        flex_override = rf.get("flexibleVersions")
        f = Field(
            name=fname,
            attr=snake(fname),
            type=elem,
            is_array=is_array,
            versions=fver,
            nullable=Versions.parse(rf.get("nullableVersions")),  # type: ignore[arg-type]
            tagged=Versions.parse(rf.get("taggedVersions")),  # type: ignore[arg-type]
            tag=int(tag) if tag is not None else None,  # type: ignore[call-overload]
            flexible_override=Versions.parse(flex_override) if flex_override is not None else None,  # type: ignore[arg-type]
            ignorable=bool(rf.get("ignorable", False)),
            default_text=None if rf.get("default") is None else str(rf.get("default")),
        )
        if f.tag is not None and f.tagged.empty:
            raise SchemaError(f"{msg}: field {fname} has a tag but no taggedVersions")
        if elem not in PRIMITIVES:
            sub_fields = rf.get("fields")
            if sub_fields is not None:
                if elem in registry:
                    raise SchemaError(f"{msg}: struct {elem} defined twice")
                registry[elem] = Struct(elem, [], fver)
                registry[elem] = _parse_struct(
                    elem, sub_fields, fver, registry, common, msg  # type: ignore[arg-type]
                )
            elif elem in common and elem not in registry:
                registry[elem] = Struct(elem, [], fver)
                registry[elem] = _parse_struct(elem, common[elem], fver, registry, common, msg)
            if elem not in registry:
                raise SchemaError(f"{msg}: unknown type {elem}")
            f.struct = registry[elem]
        fields.append(f)
    names = [f.attr for f in fields]
    if len(set(names)) != len(names):
        raise SchemaError(f"{msg}: duplicate attribute names in {name}: {names}")
    return Struct(name, fields, versions)


def load_message(path: Path, root: Path) -> Message:
    raw = json.loads(strip_json_comments(path.read_text(encoding="utf-8")))
    name = raw["name"]
    common: dict[str, list[dict[str, object]]] = {
        c["name"]: c["fields"] for c in raw.get("commonStructs", [])
    }
    registry: dict[str, Struct] = {}
    valid = Versions.parse(raw["validVersions"])
    root_struct = _parse_struct(name, raw["fields"], valid, registry, common, name)
    if name in registry:
        raise SchemaError(f"{name}: a struct shares the message's name")
    registry[name] = root_struct
    return Message(
        path=path,
        rel=path.relative_to(root).as_posix(),
        name=name,
        type=raw["type"],
        api_key=raw.get("apiKey"),
        valid=valid,
        flexible=Versions.parse(raw.get("flexibleVersions")),
        deprecated=Versions.parse(raw.get("deprecatedVersions")),
        listeners=list(raw.get("listeners", [])),
        latest_version_unstable=bool(raw.get("latestVersionUnstable", False)),
        root=root_struct,
        structs=registry,
    )


def load_all(root: Path) -> list[Message]:
    """Every spec under ``root``, sorted by relative path (stable generator output)."""
    paths = sorted(root.rglob("*.json"), key=lambda p: p.relative_to(root).as_posix())
    return [load_message(p, root) for p in paths]


def default_specs_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "protocol_specs"
