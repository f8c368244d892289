"""Writes one Python module per message schema: slotted classes plus straight-line codecs.

Every version branch is settled here, at generation time. Versions whose wire layout is the
same share one decoder and one encoder (``layout.py``, ``emit_codecs.py``). The output depends
only on the schema files, so ``make gen`` is byte-for-byte reproducible.
"""

from __future__ import annotations

from pykbroker.protocol.codegen.emit_codecs import emit_decoder, emit_encoder
from pykbroker.protocol.codegen.layout import (
    HEADER,
    Ctx,
    Writer,
    assign_functions,
    default_expr,
    fn_name,
    python_type,
)
from pykbroker.protocol.codegen.schema import Message, Struct

# -- classes ---------------------------------------------------------------------------------

def _emit_class(w: Writer, ctx: Ctx, s: Struct, root: bool) -> None:
    msg = ctx.msg
    w(f"class {s.name}:")
    w.indent()
    if root:
        about = f"{msg.name}: " + (
            f"API key {msg.api_key}, " if msg.api_key is not None else f"{msg.type}, "
        ) + f"versions {msg.valid.lo}-{msg.valid.hi}"
        about += f", flexible from {msg.flexible.lo}." if not msg.flexible.empty else "."
        w(f'"""{about}"""')
    else:
        w(f'"""Part of {msg.name}."""')
    w()
    slots = [f.attr for f in s.fields] + ["unknown_tags"]
    w("__slots__ = (" + "".join(f'"{a}", ' for a in slots).rstrip() + ")")
    w()
    if root:
        w(f"NAME: ClassVar[str] = {msg.name!r}")
        w(f"API_KEY: ClassVar[int | None] = {msg.api_key!r}")
        w(f"MIN_VERSION: ClassVar[int] = {msg.valid.lo}")
        w(f"MAX_VERSION: ClassVar[int] = {msg.valid.hi}")
        first_flex = None if msg.flexible.empty else msg.flexible.lo
        w(f"FIRST_FLEXIBLE_VERSION: ClassVar[int | None] = {first_flex!r}")
        w()
    for f in s.fields:
        w(f"{f.attr}: {python_type(f)}")
    w("unknown_tags: list[tuple[int, bytes]] | None")
    w()
    params = []
    for f in s.fields:
        if f.is_array or f.struct is not None:
            params.append(f"{f.attr}: {python_type(f)} = NOARG")
        else:
            params.append(f"{f.attr}: {python_type(f)} = {default_expr(f)}")
    params.append("unknown_tags: list[tuple[int, bytes]] | None = None")
    w("def __init__(")
    w.indent()("self,")
    for p in params:
        w(p + ",")
    w.dedent()
    w(") -> None:")
    w.indent()
    for f in s.fields:
        if f.is_array or f.struct is not None:
            w(f"self.{f.attr} = {default_expr(f)} if {f.attr} is NOARG else {f.attr}")
        else:
            w(f"self.{f.attr} = {f.attr}")
    w("self.unknown_tags = unknown_tags")
    w.dedent()
    w()
    w("def __eq__(self, other: object) -> bool:")
    w.indent()
    w(f"if type(other) is not {s.name}:")
    w.indent()("return NotImplemented")
    w.dedent()
    w("return (")
    w.indent()
    for f in s.fields:
        w(f"self.{f.attr} == other.{f.attr} and")
    w("self.unknown_tags == other.unknown_tags")
    w.dedent()
    w(")")
    w.dedent()
    w()
    w("__hash__ = None  # type: ignore[assignment]")
    w()
    w("def __repr__(self) -> str:")
    w.indent()
    parts = ", ".join(f"{f.attr}={{self.{f.attr}!r}}" for f in s.fields)
    w(f'return f"{s.name}({parts})"')
    w.dedent()
    if root:
        w()
        w("def encode(self, out: bytearray, version: int) -> None:")
        w.indent()
        w('"""Append this message, as ``version`` lays it out, to ``out``."""')
        w(f"if not {msg.valid.lo} <= version <= {msg.valid.hi}:")
        w.indent()(f"raise unsupported_version({msg.name!r}, version, {msg.valid.lo}, "
                   f"{msg.valid.hi})")
        w.dedent()
        w("try:")
        w.indent()(f"_ENCODERS[version - {msg.valid.lo}](self, out)")
        w.dedent()
        w("except EncodeError:")
        w.indent()("raise")
        w.dedent()
        w("except (struct.error, TypeError, AttributeError, ValueError, OverflowError) as exc:")
        w.indent()(f'raise EncodeError(f"{msg.name} v{{version}}: {{exc}}") from exc')
        w.dedent()
        w.dedent()
        w()
        w("def to_bytes(self, version: int) -> bytes:")
        w.indent()
        w("out = ChunkedOut()")
        w("self.encode(out, version)")
        w("return out.joined()")
        w.dedent()
        w()
        w("@classmethod")
        w("def decode(")
        w.indent()("cls, buf: bytes | bytearray | memoryview, pos: int, version: int")
        w.dedent()
        w(f") -> tuple[{s.name}, int]:")
        w.indent()
        w('"""Decode one message at ``pos``; returns it and the position after it."""')
        w(f"if not {msg.valid.lo} <= version <= {msg.valid.hi}:")
        w.indent()(f'raise DecodeError(f"{msg.name} has no version {{version}}")')
        w.dedent()
        w("view = buf if type(buf) is memoryview else memoryview(buf)")
        w("try:")
        w.indent()(f"return _DECODERS[version - {msg.valid.lo}](view, pos)")
        w.dedent()
        w("except DecodeError:")
        w.indent()("raise")
        w.dedent()
        w("except (struct.error, IndexError, ValueError, OverflowError) as exc:")
        w.indent()(f'raise DecodeError(f"{msg.name} v{{version}}: {{exc}}") from exc')
        w.dedent()
        w.dedent()
    w.dedent()
    w()
    w()


def emit_module(msg: Message) -> str:
    ctx = Ctx(msg=msg, structs_fmt={}, layouts={}, version_fn={})
    versions = list(msg.versions())
    assign_functions(ctx, msg.root, versions)
    body = Writer()
    structs = list(msg.root.walk())
    for s in structs:
        _emit_class(body, ctx, s, root=s is msg.root)
    for s in structs:
        done: set[int] = set()
        for v in versions:
            idx = ctx.version_fn.get((s.name, v))
            if idx is None or idx in done:
                continue
            done.add(idx)
            emit_decoder(body, ctx, s, v)
            emit_encoder(body, ctx, s, v)
    for st in structs:
        if st is not msg.root:
            # Compared against (never handed out), to test "is this field at its default?".
            body(f"_DEF_{st.name} = {st.name}()")
    root = msg.root
    dec = ", ".join(fn_name(ctx, "d", root, v) for v in versions)
    enc = ", ".join(fn_name(ctx, "e", root, v) for v in versions)
    body(f"_DECODERS = ({dec},)")
    body(f"_ENCODERS = ({enc},)")

    head = Writer()
    head(HEADER.format(rel=msg.rel).rstrip("\n"))
    head(f'"""Codec for {msg.name} ({msg.rel})."""')
    head()
    head("from __future__ import annotations")
    head()
    head("import struct")
    head("import uuid")
    head("from struct import Struct")
    head("from typing import ClassVar")
    head()
    head("from pykbroker.protocol.primitives import (")
    head.indent()
    for name in _PRIMITIVE_IMPORTS:
        head(f"{name},")
    head.dedent()
    head(")")
    head()
    head("pack_i32 = struct.Struct(\">i\").pack")
    head("_I32 = struct.Struct(\">i\")")
    head("_new = object.__new__")
    for fmt, fid in (("?", "bool"), ("b", "b"), ("h", "h"), ("H", "H"), ("i", "i"),
                     ("I", "I"), ("q", "q"), ("d", "d")):
        head(f"_AR_{fid} = ARRAY_STRUCTS[{fmt!r}]")
    for fmt, name in ctx.structs_fmt.items():
        head(f"{name} = struct.Struct({fmt!r})")
    head()
    head()
    return head.text() + body.text()


_PRIMITIVE_IMPORTS = [
    "ARRAY_STRUCTS", "ARRAY_STRUCTS_MAX", "ChunkedOut", "NOARG", "ZERO_UUID", "DecodeError", "EncodeError",
    "Records",
    "read_array_len", "read_bytes", "read_compact_array_len", "read_compact_bytes",
    "read_compact_nullable_array_len", "read_compact_nullable_bytes",
    "read_compact_nullable_string", "read_compact_records", "read_compact_string",
    "read_nullable_array_len", "read_nullable_bytes", "read_nullable_string", "read_records",
    "read_string", "read_tag_header", "read_uuid", "read_uvarint", "skip_tags",
    "unsupported_version", "write_bytes", "write_compact_bytes", "write_compact_nullable_bytes",
    "write_compact_nullable_string", "write_compact_records", "write_compact_string",
    "write_nullable_bytes", "write_nullable_string", "write_records", "write_string",
    "write_tags", "write_uvarint",
]
