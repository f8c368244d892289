"""Adapters between our generated codecs and kafka-python's two codecs, for the differential
tests in ``test_differential_kafka_python.py``.

kafka-python 3.0.12 ships two independent implementations of the Kafka wire format:

* the classic hand-written one under ``kafka.protocol.old`` (one class per version, each with a
  ``SCHEMA`` built from ``Int16``, ``String``, ``Array(...)`` ...), written from the protocol
  guide and never generated from Kafka's JSON specs: the main reference;
* a newer codec under ``kafka.protocol.schemas`` that interprets its own copy of Kafka's JSON
  specs (those of Kafka 4.x) at run time; classes such as
  ``kafka.protocol.producer.ProduceRequest`` derive from ``ApiMessage``.

Values of both are turned into one neutral form, so that one comparison serves both:

* a struct becomes a :class:`GStruct` (its untagged fields in wire order, plus its tagged
  fields by tag number);
* an array becomes a list (``None`` for a null array);
* scalars become plain Python values: ``bytes`` for bytes and records, a ``uuid.UUID`` for
  uuids (kafka-python reads the zero UUID as ``None``), and the signed int32 for kafka-python's
  ``BitField`` (its set-of-bits rendering of an ``authorizedOperations`` int32).

The module also builds hypothesis strategies of *kafka-python* values, shaped by kafka-python's
own description of each message, for the direction "kafka-python writes, we read".
"""

from __future__ import annotations

import importlib
import io
import pkgutil
import uuid
import warnings
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from hypothesis import strategies as st

from pykbroker.protocol.codegen.schema import INT_RANGES, Field, Struct

with warnings.catch_warnings():
    # kafka-python reads its JSON specs with importlib.resources.read_text, now deprecated.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.protocol.api_message import ApiMessage
    from kafka.protocol.metadata.api_versions import (
        ApiVersionsResponse as NewApiVersionsResponse,
    )
    from kafka.protocol.old import types as old_types
    from kafka.protocol.old.api_versions import BaseApiVersionsResponse
    from kafka.protocol.old.struct import Struct as OldStruct
    from kafka.protocol.schemas.fields.array import ArrayField
    from kafka.protocol.schemas.fields.codecs import types as new_types
    from kafka.protocol.schemas.fields.simple import SimpleField
    from kafka.protocol.schemas.fields.struct import StructField
    from kafka.protocol.schemas.fields.struct_array import StructArrayField

ZERO_UUID = uuid.UUID(int=0)
TEXT = st.text(max_size=12)
BYTES = st.binary(max_size=16)


# --------------------------------------------------------------------------------------------
# Finding kafka-python's classes
# --------------------------------------------------------------------------------------------


@cache
def old_classes(name: str) -> dict[int, type]:
    """``{version: class}`` of the hand-written codec for e.g. "ProduceRequest".

    Each ``kafka.protocol.old`` module ends with a list per message, index = version.
    """
    import kafka.protocol.old as pkg

    found: dict[int, type] = {}
    for mod_info in pkgutil.iter_modules(pkg.__path__):
        mod = importlib.import_module(f"{pkg.__name__}.{mod_info.name}")
        versions = getattr(mod, name, None)
        if isinstance(versions, list):
            assert not found, f"{name} defined twice in kafka.protocol.old"
            for v, cls in enumerate(versions):
                assert cls.API_VERSION == v, (name, v, cls)
                found[v] = cls
    return found


@cache
def new_class(name: str) -> Any:
    """The schema-driven codec's class for e.g. "ProduceRequest" (``None`` if it has none)."""
    import kafka.protocol as pkg

    for mod_info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if ".old" in mod_info.name or ".schemas" in mod_info.name:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # as for the imports above
            mod = importlib.import_module(mod_info.name)
        cls = getattr(mod, name, None)
        if isinstance(cls, type) and issubclass(cls, ApiMessage) and cls is not ApiMessage:
            return cls
    return None


def new_versions(name: str) -> range:
    """Versions the schema-driven codec's JSON declares valid (not its patched min of 0)."""
    cls = new_class(name)
    if cls is None:
        return range(0)
    lo, hi = cls.valid_versions
    return range(lo, hi + 1)


# --------------------------------------------------------------------------------------------
# The neutral form
# --------------------------------------------------------------------------------------------


@dataclass
class GStruct:
    fields: list[Any]
    # Tagged fields by tag. With raw_tags (the classic codec) every value is the raw payload
    # bytes, as kafka-python's ``TaggedFields`` keeps them; otherwise known tags hold neutral
    # values and unknown ones raw bytes.
    tags: dict[int, Any] = field(default_factory=dict)
    raw_tags: bool = False


def bitfield_to_int32(vals: set[int] | None) -> int:
    """kafka-python's ``BitField`` value as the int32 on the wire (None is bit 31 alone)."""
    if vals is None:
        vals = {31}
    n = 0
    for b in vals:
        n |= 1 << b
    return n - (1 << 32) if n >= 1 << 31 else n


def int32_to_bitfield(n: int) -> set[int] | None:
    bits = {b for b in range(32) if (n >> b) & 1}
    return None if bits == {31} else bits


def _old_scalar_view(t: Any, val: Any) -> Any:
    if t is old_types.BitField:
        return bitfield_to_int32(val)
    if t is old_types.UUID:
        return ZERO_UUID if val is None else val
    if t in (old_types.Bytes, old_types.CompactBytes):
        return None if val is None else bytes(val)
    return val


def old_view(t: Any, val: Any) -> Any:
    """A value of the classic codec (type ``t``) in neutral form."""
    if isinstance(t, old_types.Schema):
        if isinstance(val, OldStruct):
            val = [getattr(val, n) for n in t.names]
        vals = list(val)
        has_tags = bool(t.has_tagged_fields())
        n = len(t.fields) - has_tags
        fields = [old_view(ft, vals[i]) for i, ft in enumerate(t.fields[:n])]
        tags = (vals[n] if has_tags and len(vals) > n else None) or {}
        assert all(isinstance(v, bytes) for v in tags.values())
        return GStruct(fields, dict(tags), raw_tags=True)
    if isinstance(t, old_types.Array):  # CompactArray too
        return None if val is None else [old_view(t.array_of, x) for x in val]
    return _old_scalar_view(t, val)


def _new_scalar_view(f: SimpleField, val: Any) -> Any:
    t = f._type
    if t is new_types.BitField:
        return bitfield_to_int32(val)
    if t is new_types.UUID:
        return ZERO_UUID if val is None else val
    if t is new_types.Bytes:
        return None if val is None else bytes(val)
    return val


def new_view(f: Any, val: Any, version: int, flexible: bool) -> Any:
    """A value of the schema-driven codec (field or struct ``f``) in neutral form."""
    if isinstance(f, StructArrayField):
        if val is None:
            return None
        return [new_view(f.array_of, x, version, flexible) for x in val]
    if isinstance(f, ArrayField):
        return None if val is None else [_new_scalar_view(f.array_of, x) for x in val]
    if isinstance(f, StructField):
        if val is None:
            return None
        fields = [new_view(sub, getattr(val, sub.name), version, flexible)
                  for sub in f.untagged_fields(version)]
        tags: dict[int, Any] = {}
        if flexible:
            present = val.tags or set()
            for sub in f.tagged_fields(version)._fields:
                if sub.name in present:
                    tags[sub.tag] = new_view(sub, getattr(val, sub.name), version, flexible)
            for key, raw in (val.unknown_tags or {}).items():
                tags[int(key.lstrip("_"))] = bytes(raw)
        return GStruct(fields, tags)
    assert isinstance(f, SimpleField), f
    return _new_scalar_view(f, val)


# --------------------------------------------------------------------------------------------
# Comparing one of our objects with a neutral value
# --------------------------------------------------------------------------------------------


def untagged(s: Struct, v: int) -> list[Field]:
    return [f for f in s.fields if f.present(v) and not f.is_tagged(v)]


def our_default(obj_module: Any, f: Field) -> Any:
    """The value our generated classes give a field that is absent (its schema default)."""
    if f.is_array:
        return None if f.default_is_null() else []
    if f.struct is not None:
        return None if f.default_is_null() else getattr(obj_module, f.struct.name)()
    d = f.python_default()
    return ZERO_UUID if d == "ZERO_UUID" else d


def _our_scalar(f: Field, val: Any) -> Any:
    if f.type in ("bytes", "records") and val is not None:
        return bytes(val)
    return val


def compare_struct(obj: Any, s: Struct, g: Any, v: int, flexible: bool, path: str) -> None:
    """Assert our struct ``obj`` (schema ``s``) holds the same values as neutral ``g``."""
    assert isinstance(g, GStruct), f"{path}: kafka-python has {g!r} where we have a struct"
    fields = untagged(s, v)
    assert len(fields) == len(g.fields), (
        f"{path}: {len(fields)} fields in our v{v} layout {[f.attr for f in fields]}, "
        f"{len(g.fields)} in kafka-python's")
    for f, gv in zip(fields, g.fields, strict=True):
        compare_field(obj, f, getattr(obj, f.attr), gv, v, flexible, f"{path}.{f.attr}")
    if not flexible:
        assert not g.tags, f"{path}: tagged fields in a non-flexible version"
        return
    mod = importlib.import_module(type(obj).__module__)
    known = {f.tag: f for f in s.fields
             if f.present(v) and f.is_tagged(v) and getattr(obj, f.attr) != our_default(mod, f)}
    unknown = dict(obj.unknown_tags or [])
    assert set(g.tags) == set(known) | set(unknown), (
        f"{path}: tags {sorted(g.tags)} in kafka-python, {sorted(known)} known + "
        f"{sorted(unknown)} unknown in ours")
    for tag, raw in unknown.items():
        assert g.tags[tag] == bytes(raw), f"{path}: unknown tag {tag}"
    if not g.raw_tags:
        for tag, f in known.items():
            compare_field(obj, f, getattr(obj, f.attr), g.tags[tag], v, flexible,
                          f"{path}.{f.attr}[tag {tag}]")


def compare_field(parent: Any, f: Field, val: Any, g: Any, v: int, flexible: bool,
                  path: str) -> None:
    if f.is_array:
        if val is None:
            assert g is None, f"{path}: null in ours, {g!r} in kafka-python"
            return
        assert isinstance(g, list), f"{path}: {len(val)} elements in ours, {g!r} in kafka-python"
        assert len(val) == len(g), f"{path}: {len(val)} elements in ours, {len(g)} in kafka-python"
        for i, (x, gx) in enumerate(zip(val, g, strict=True)):
            _compare_element(f, x, gx, v, flexible, f"{path}[{i}]")
    elif f.struct is not None:
        if g is None:  # a null struct, or a tagged struct kafka-python left at None (absent)
            mod = importlib.import_module(type(parent).__module__)
            assert val is None or val == our_default(mod, f), f"{path}: {val!r} vs absent"
            return
        assert val is not None, f"{path}: null in ours"
        compare_struct(val, f.struct, g, v, flexible, path)
    else:
        assert _our_scalar(f, val) == g, f"{path}: {val!r} in ours, {g!r} in kafka-python"


def _compare_element(f: Field, x: Any, g: Any, v: int, flexible: bool, path: str) -> None:
    if f.struct is None:
        assert _our_scalar(f, x) == g, f"{path}: {x!r} in ours, {g!r} in kafka-python"
    elif isinstance(g, GStruct):
        compare_struct(x, f.struct, g, v, flexible, path)
    else:
        # The classic codec writes a struct of one field as that field, e.g. MetadataRequest
        # v0-v8 ``Array(String)`` for our ``[]MetadataRequestTopic{Name}``: same bytes on the
        # wire as long as the struct has no tag section.
        (only,) = untagged(f.struct, v)
        assert not flexible, path
        assert _our_scalar(only, getattr(x, only.attr)) == g, f"{path}.{only.attr}"


# --------------------------------------------------------------------------------------------
# Strategies of kafka-python values
# --------------------------------------------------------------------------------------------

_OLD_INTS = {
    old_types.Int8: "int8", old_types.Int16: "int16", old_types.Int32: "int32",
    old_types.Int64: "int64",
}
_NEW_INTS = {
    new_types.Int8: "int8", new_types.Int16: "int16", new_types.UnsignedInt16: "uint16",
    new_types.Int32: "int32", new_types.Int64: "int64",
}


def _ints(kind: str) -> st.SearchStrategy[int]:
    lo, hi = INT_RANGES[kind]
    return st.integers(lo, hi)


def _bitfield() -> st.SearchStrategy[set[int] | None]:
    return st.none() | st.sets(st.integers(0, 31)).filter(lambda s: s != {31})


def _maybe_null(strat: st.SearchStrategy[Any], nullable: bool) -> st.SearchStrategy[Any]:
    return st.none() | strat if nullable else strat


def _old_scalar(t: Any, nullable: bool) -> st.SearchStrategy[Any]:
    if t in _OLD_INTS:
        return _ints(_OLD_INTS[t])
    if t is old_types.Boolean:
        return st.booleans()
    if t is old_types.Float64:
        return st.floats(allow_nan=False)
    if t is old_types.UUID:
        return st.none() | st.uuids()
    if t is old_types.BitField:
        return _bitfield()
    if isinstance(t, old_types.String):  # CompactString too
        return _maybe_null(TEXT, nullable)
    if t in (old_types.Bytes, old_types.CompactBytes):
        return _maybe_null(BYTES, nullable)
    raise AssertionError(f"no strategy for {t!r}")


def old_strategy(t: Any, s: Struct, v: int) -> st.SearchStrategy[tuple[Any, ...]]:
    """Values of classic-codec schema ``t``, as tuples in its field order.

    The layout and the types come from kafka-python; only where a null may go (the classic
    codec writes null for any string, bytes or array) and which tags are unknown to the
    schema come from our schema ``s``.
    """
    has_tags = bool(t.has_tagged_fields())
    n = len(t.fields) - has_tags
    ours = untagged(s, v)
    assert n == len(ours), (t.names, [f.attr for f in ours])
    parts = [_old_field(t.fields[i], ours[i], v) for i in range(n)]
    if has_tags:
        known = {f.tag for f in s.fields if f.tag is not None}
        tag = st.integers(0, 40).filter(lambda x: x not in known)
        parts.append(st.lists(st.tuples(tag, st.binary(max_size=6)), max_size=3,
                              unique_by=lambda kv: kv[0]).map(lambda kvs: dict(sorted(kvs))))
    return st.tuples(*parts)


def _old_field(t: Any, f: Field, v: int) -> st.SearchStrategy[Any]:
    if isinstance(t, old_types.Array):
        elem: st.SearchStrategy[Any]
        if isinstance(t.array_of, old_types.Schema):
            assert f.struct is not None
            elem = old_strategy(t.array_of, f.struct, v)
        elif f.struct is not None:  # a struct of one field, written as that field
            (only,) = untagged(f.struct, v)
            elem = _old_scalar(t.array_of, only.is_nullable(v))
        else:
            elem = _old_scalar(t.array_of, False)
        return _maybe_null(st.lists(elem, max_size=3), f.is_nullable(v))
    if isinstance(t, old_types.Schema):
        assert f.struct is not None
        return _maybe_null(old_strategy(t, f.struct, v), f.is_nullable(v))
    return _old_scalar(t, f.is_nullable(v))


def _new_scalar(f: SimpleField, v: int) -> st.SearchStrategy[Any]:
    t = f._type
    nullable = f.nullable_for_version_q(v)
    if t in _NEW_INTS:
        return _ints(_NEW_INTS[t])
    if t is new_types.Boolean:
        return st.booleans()
    if t is new_types.Float64:
        return st.floats(allow_nan=False)
    if t is new_types.UUID:
        return st.none() | st.uuids()  # None is how this codec holds the zero UUID
    if t is new_types.BitField:
        return _bitfield()
    if isinstance(t, new_types.String):
        return _maybe_null(TEXT, nullable)
    if t is new_types.Bytes:
        return _maybe_null(BYTES, nullable)
    raise AssertionError(f"no strategy for {f!r}")


def _is_struct_default(s: StructField, val: Any, v: int) -> bool:
    return all(getattr(val, sub.name) == sub.default for sub in s.untagged_fields(v))


def new_strategy(f: Any, v: int, flexible: bool, data_class: Any = None) -> st.SearchStrategy[Any]:
    """Values of the schema-driven codec's field or struct ``f`` in version ``v``, entirely
    from kafka-python's own copy of the schema (nullability included).

    Tagged fields are either left out or given a value other than their default; unknown tags
    are never set (this codec does not write them back).
    """
    if isinstance(f, StructArrayField):
        return _maybe_null(st.lists(new_strategy(f.array_of, v, flexible), max_size=3),
                           f.nullable_for_version_q(v))
    if isinstance(f, ArrayField):
        return _maybe_null(st.lists(_new_scalar(f.array_of, v), max_size=3),
                           f.nullable_for_version_q(v))
    if isinstance(f, StructField):
        cls = data_class if data_class is not None else f.data_class
        required = {sub.name: new_strategy(sub, v, flexible) for sub in f.untagged_fields(v)}
        optional: dict[str, st.SearchStrategy[Any]] = {}
        if flexible:
            for sub in f.tagged_fields(v)._fields:
                val = new_strategy(sub, v, flexible)
                if isinstance(sub, StructField):
                    val = val.filter(lambda x, sub=sub: x is not None
                                     and not _is_struct_default(sub, x, v))
                else:
                    val = val.filter(lambda x, sub=sub: x != sub.default)
                optional[sub.name] = val
        built = st.fixed_dictionaries(required, optional=optional).map(
            lambda kw: cls(version=v, **kw))
        # A nested nullable struct (KIP-893); top-level structs are never nullable.
        return _maybe_null(built, data_class is None and f.nullable_for_version_q(v))
    assert isinstance(f, SimpleField), f
    return _new_scalar(f, v)


# --------------------------------------------------------------------------------------------
# Encoding and decoding with kafka-python
# --------------------------------------------------------------------------------------------


def old_decode(cls: type, data: bytes) -> Any:
    """Decode a message body with the classic codec, checking that it uses every byte.

    ``ApiVersionsResponse`` v1+ classes re-decode as v0 when the error code is not 0 (a broker
    answers an unsupported ApiVersions request in v0); that is client policy, not codec, so it
    is bypassed here.
    """
    bio = io.BytesIO(data)
    if issubclass(cls, BaseApiVersionsResponse):
        obj = super(BaseApiVersionsResponse, cls).decode(bio)  # type: ignore[misc]
    else:
        obj = cls.decode(bio)  # type: ignore[attr-defined]
    assert bio.tell() == len(data), f"kafka-python read {bio.tell()} of {len(data)} bytes"
    return obj


def old_encode(obj: Any) -> bytes:
    return bytes(obj.encode())


def new_decode(cls: Any, data: bytes, version: int) -> Any:
    """Decode with the schema-driven codec (bypassing ApiVersionsResponse's v0 fallback, as
    :func:`old_decode` does)."""
    if cls is NewApiVersionsResponse:
        return ApiMessage.decode.__func__(cls, data, version=version)  # type: ignore[attr-defined]
    return cls.decode(data, version=version)


def new_encode(obj: Any, version: int) -> bytes:
    # Objects fresh from ``decode`` lack ``_header``, which ``encode(version=...)`` touches;
    # they (like those built with ``version=``) already carry their version.
    assert obj.version == version
    return bytes(obj.encode())
