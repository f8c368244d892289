"""Hypothesis strategies for every generated message and version, built from the schemas.

Fields absent from a version keep their defaults (writing anything else there is an error
unless ignorable); nullable values appear only in versions where the field is nullable;
flexible versions carry random unknown tagged fields so that their round trip is tested too.
"""

from __future__ import annotations

import importlib
import uuid
from functools import cache
from typing import Any

from hypothesis import strategies as st

from pykbroker.protocol.codegen.generate import _module_path
from pykbroker.protocol.codegen.schema import (
    INT_RANGES,
    Field,
    Message,
    Struct,
    default_specs_dir,
    load_all,
)


@cache
def messages() -> list[Message]:
    return load_all(default_specs_dir())


def message_by_name(name: str) -> Message:
    return next(m for m in messages() if m.name == name)


def module_for(msg: Message) -> Any:
    mod = _module_path(msg).removesuffix(".py").replace("/", ".")
    return importlib.import_module(f"pykbroker.protocol._generated.{mod}")


def message_class(msg: Message) -> Any:
    return getattr(module_for(msg), msg.name)


def all_versions() -> list[tuple[str, int]]:
    return [(m.name, v) for m in messages() for v in m.versions()]


def _default(cls_mod: Any, f: Field) -> Any:
    if f.is_array:
        return None if f.default_is_null() else []
    if f.struct is not None:
        return None if f.default_is_null() else getattr(cls_mod, f.struct.name)()
    d = f.python_default()
    return uuid.UUID(int=0) if d == "ZERO_UUID" else d


def _scalar(f: Field) -> st.SearchStrategy[Any]:
    t = f.type
    if t == "bool":
        return st.booleans()
    if t in INT_RANGES:
        lo, hi = INT_RANGES[t]
        return st.integers(lo, hi)
    if t == "float64":
        return st.floats(allow_nan=False)
    if t == "string":
        return st.text(max_size=12)
    if t == "bytes":
        return st.binary(max_size=16)
    if t == "records":
        return st.binary(max_size=32)
    if t == "uuid":
        return st.uuids() | st.just(uuid.UUID(int=0))
    raise AssertionError(t)


def _unknown_tags(s: Struct) -> st.SearchStrategy[list[tuple[int, bytes]] | None]:
    known = {f.tag for f in s.fields if f.tag is not None}
    tag = st.integers(0, 40).filter(lambda t: t not in known)
    return st.none() | st.lists(
        st.tuples(tag, st.binary(max_size=6)), max_size=3, unique_by=lambda kv: kv[0]
    ).map(lambda kvs: sorted(kvs) or None)


def struct_strategy(msg: Message, s: Struct, v: int) -> st.SearchStrategy[Any]:
    mod = module_for(msg)
    cls = getattr(mod, s.name)
    kwargs: dict[str, st.SearchStrategy[Any]] = {}
    for f in s.fields:
        if not f.present(v):
            kwargs[f.attr] = st.builds(lambda f=f: _default(mod, f))
            continue
        if f.struct is not None:
            elem = struct_strategy(msg, f.struct, v)
        else:
            elem = _scalar(f)
        value = st.lists(elem, max_size=3) if f.is_array else elem
        if f.is_nullable(v) and (f.is_array or f.is_struct or f.type in ("string", "bytes",
                                                                          "records")):
            value = st.none() | value
        kwargs[f.attr] = value
    if v in msg.flexible:
        kwargs["unknown_tags"] = _unknown_tags(s)
    return st.builds(cls, **kwargs)


@cache
def message_strategy(name: str, version: int) -> st.SearchStrategy[Any]:
    msg = message_by_name(name)
    return struct_strategy(msg, msg.root, version)
