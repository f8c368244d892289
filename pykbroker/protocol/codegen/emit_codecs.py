"""Emits the straight-line decoder and encoder of one struct at one wire layout.

Adjacent fixed-width fields share one precompiled ``struct.Struct``; one-byte lengths and
empty tag sections are read inline; everything else calls ``protocol/primitives.py``.
"""

from __future__ import annotations

import struct

from pykbroker.protocol.codegen.layout import (
    Ctx,
    Writer,
    default_expr,
    fmt_id,
    fn_name,
    is_fixed,
    non_default_test,
    python_type,
    reader_name,
    struct_name,
    writer_name,
)
from pykbroker.protocol.codegen.schema import FIXED_FORMAT, Field, Struct

# -- decoders --------------------------------------------------------------------------------

_SIZES = {"?": 1, "b": 1, "h": 2, "H": 2, "i": 4, "I": 4, "q": 8, "d": 8}


def _emit_len_decode(w: Writer, compact: bool, nullable: bool, what: str) -> None:
    """Array length into ``n`` (-1 for null), checked against the bytes left."""
    if compact:
        # One-byte lengths are the common case: read them inline.
        w("n = buf[pos]")
        w("if n < 0x80:")
        w.indent()("pos += 1")
        w.dedent()
        w("else:")
        w.indent()("n, pos = read_uvarint(buf, pos)")
        w.dedent()
        w("n -= 1")
        if not nullable:
            w("if n < 0:")
            w.indent()(f'raise DecodeError("{what} is null but not nullable")')
            w.dedent()
    else:
        w("(n,) = _I32.unpack_from(buf, pos)")
        w("pos += 4")
        w("if n < -1:" if nullable else "if n < 0:")
        w.indent()(f'raise DecodeError(f"{what} has invalid length {{n}}")')
        w.dedent()
    w("if n > len(buf) - pos:")
    w.indent()(f'raise DecodeError(f"{what} length {{n}} exceeds the {{len(buf) - pos}} bytes left")')
    w.dedent()


def _emit_field_decode(w: Writer, ctx: Ctx, f: Field, v: int, target: str) -> None:
    """Decode field ``f`` at ``pos`` into ``target`` (an attribute of ``o``)."""
    compact = f.compact(v, ctx.msg.flexible)
    nullable = f.is_nullable(v)
    if f.is_array:
        _emit_len_decode(w, compact, nullable, f"{ctx.msg.name}.{f.name}")
        if nullable:
            w("if n < 0:")
            w.indent()(f"{target} = None")
            w.dedent()
            w("else:")
            w.indent()
        if f.type in FIXED_FORMAT:
            fmt = FIXED_FORMAT[f.type]
            size = _SIZES[fmt]
            w(f'{target} = list((_AR_{fmt_id(fmt)}[n] if n < ARRAY_STRUCTS_MAX '
              f'else Struct(">%d{fmt}" % n)).unpack_from(buf, pos))')
            w(f"pos += {size} * n" if size > 1 else "pos += n")
        else:
            a = f"a_{f.attr}"
            e = f"e_{f.attr}"
            if f.struct is not None:
                elem_type, call = f.struct.name, f"{fn_name(ctx, 'd', f.struct, v)}(buf, pos)"
            else:
                elem_type = python_type(f).removeprefix("list[").split("]")[0]
                call = f"{reader_name(f, v, compact, True)}(buf, pos)"
            w(f"{a}: list[{elem_type}] = []")
            w("for _ in range(n):")
            w.indent()(f"{e}, pos = {call}")
            w(f"{a}.append({e})")
            w.dedent()
            w(f"{target} = {a}")
        if nullable:
            w.dedent()
        return
    if f.struct is not None:
        fn = fn_name(ctx, "d", f.struct, v)
        if nullable:
            w("if buf[pos] >= 0x80:")
            w.indent()(f"{target} = None")
            w("pos += 1")
            w.dedent()
            w("else:")
            w.indent()(f"{target}, pos = {fn}(buf, pos + 1)")
            w.dedent()
        else:
            w(f"{target}, pos = {fn}(buf, pos)")
        return
    w(f"{target}, pos = {reader_name(f, v, compact)}(buf, pos)")


def emit_decoder(w: Writer, ctx: Ctx, s: Struct, v: int) -> None:
    flexible = v in ctx.msg.flexible
    w(f"def {fn_name(ctx, 'd', s, v)}(buf: memoryview, pos: int) -> tuple[{s.name}, int]:")
    w.indent()
    w(f"o = _new({s.name})")
    run: list[Field] = []

    def flush() -> None:
        if not run:
            return
        fmt = ">" + "".join(FIXED_FORMAT[f.type] for f in run)
        name = struct_name(ctx, fmt)
        targets = ", ".join(f"o.{f.attr}" for f in run)
        if len(run) == 1:
            targets = f"({targets},)"
        w(f"{targets} = {name}.unpack_from(buf, pos)")
        w(f"pos += {struct.calcsize(fmt)}")
        run.clear()

    tagged: list[Field] = []
    for f in s.fields:
        if not f.present(v) or f.is_tagged(v):
            w(f"o.{f.attr} = {default_expr(f)}")
            if f.present(v):
                tagged.append(f)
            continue
        if is_fixed(f):
            run.append(f)
            continue
        flush()
        _emit_field_decode(w, ctx, f, v, f"o.{f.attr}")
    flush()
    if not flexible:
        w("o.unknown_tags = None")
    elif not tagged:
        w("if buf[pos] == 0:")
        w.indent()("pos += 1")
        w("o.unknown_tags = None")
        w.dedent()
        w("else:")
        w.indent()("o.unknown_tags, pos = skip_tags(buf, pos)")
        w.dedent()
    else:
        w("o.unknown_tags = None")
        w("n, pos = read_uvarint(buf, pos)")
        w("if n > len(buf) - pos:")
        w.indent()('raise DecodeError(f"tagged field count {n} exceeds the bytes left")')
        w.dedent()
        w("for _ in range(n):")
        w.indent()
        w("tag, pos, end = read_tag_header(buf, pos)")
        for i, f in enumerate(sorted(tagged, key=lambda f: f.tag or 0)):
            w(f"{'if' if i == 0 else 'elif'} tag == {f.tag}:")
            w.indent()
            if is_fixed(f):
                name = struct_name(ctx, ">" + FIXED_FORMAT[f.type])
                w(f"(o.{f.attr},) = {name}.unpack_from(buf, pos)")
            else:
                _emit_field_decode(w, ctx, f, v, f"o.{f.attr}")
            w.dedent()
        w("else:")
        w.indent()
        w("if o.unknown_tags is None:")
        w.indent()("o.unknown_tags = []")
        w.dedent()
        w("o.unknown_tags.append((tag, bytes(buf[pos:end])))")
        w.dedent()
        w("pos = end")
        w.dedent()
    w("return o, pos")
    w.dedent()
    w()
    w()


# -- encoders --------------------------------------------------------------------------------

def _emit_field_encode(w: Writer, ctx: Ctx, f: Field, v: int, value: str, out: str) -> None:
    compact = f.compact(v, ctx.msg.flexible)
    nullable = f.is_nullable(v)
    if f.is_array:
        x = f"x_{f.attr}"
        w(f"{x} = {value}")
        if nullable:
            w(f"if {x} is None:")
            w.indent()(f"{out}.append(0)" if compact else f'{out} += b"\\xff\\xff\\xff\\xff"')
            w.dedent()
            w("else:")
            w.indent()
        else:
            w(f"if {x} is None:")
            w.indent()(
                f'raise EncodeError("{ctx.msg.name}: {f.name} is not nullable in version {v}")'
            )
            w.dedent()
        if compact:
            w(f"n = len({x}) + 1")
            w("if n < 0x80:")
            w.indent()(f"{out}.append(n)")
            w.dedent()
            w("else:")
            w.indent()(f"write_uvarint({out}, n)")
            w.dedent()
        else:
            w(f"{out} += pack_i32(len({x}))")
        if f.struct is not None:
            w(f"for e_{f.attr} in {x}:")
            w.indent()(f"{fn_name(ctx, 'e', f.struct, v)}(e_{f.attr}, {out})")
            w.dedent()
        elif f.type in FIXED_FORMAT:
            fmt = FIXED_FORMAT[f.type]
            w(f"n = len({x})")
            w(f'{out} += (_AR_{fmt_id(fmt)}[n] if n < ARRAY_STRUCTS_MAX '
              f'else Struct(">%d{fmt}" % n)).pack(*{x})')
        elif f.type == "uuid":
            w(f"for e_{f.attr} in {x}:")
            w.indent()(f"{out} += e_{f.attr}.bytes")
            w.dedent()
        else:
            w(f"for e_{f.attr} in {x}:")
            w.indent()(f"{writer_name(f, v, compact, True)}({out}, e_{f.attr})")
            w.dedent()
        if nullable:
            w.dedent()
        return
    if f.struct is not None:
        fn = fn_name(ctx, "e", f.struct, v)
        if nullable:
            w(f"if {value} is None:")
            w.indent()(f"{out}.append(0xFF)")
            w.dedent()
            w("else:")
            w.indent()(f"{out}.append(1)")
            w(f"{fn}({value}, {out})")
            w.dedent()
        else:
            w(f"{fn}({value}, {out})")
        return
    if f.type == "uuid":
        w(f"{out} += {value}.bytes")
        return
    if is_fixed(f):
        name = struct_name(ctx, ">" + FIXED_FORMAT[f.type])
        w(f"{out} += {name}.pack({value})")
        return
    w(f"{writer_name(f, v, compact)}({out}, {value})")


def emit_encoder(w: Writer, ctx: Ctx, s: Struct, v: int) -> None:
    flexible = v in ctx.msg.flexible
    w(f"def {fn_name(ctx, 'e', s, v)}(o: {s.name}, out: bytearray) -> None:")
    w.indent()
    run: list[Field] = []
    body_start = len(w.lines)

    def flush() -> None:
        if not run:
            return
        fmt = ">" + "".join(FIXED_FORMAT[f.type] for f in run)
        name = struct_name(ctx, fmt)
        w(f"out += {name}.pack({', '.join(f'o.{f.attr}' for f in run)})")
        run.clear()

    tagged: list[Field] = []
    for f in s.fields:
        if not f.present(v):
            if not f.ignorable:
                flush()
                w(f"if {non_default_test(f, 'o.' + f.attr)}:")
                w.indent()(
                    f'raise EncodeError("{s.name}.{f.attr} can not be written in '
                    f'{ctx.msg.name} version {v}")'
                )
                w.dedent()
            continue
        if f.is_tagged(v):
            tagged.append(f)
            continue
        if is_fixed(f):
            run.append(f)
            continue
        flush()
        _emit_field_encode(w, ctx, f, v, f"o.{f.attr}", "out")
    flush()
    if flexible:
        if not tagged:
            w("if o.unknown_tags:")
            w.indent()("write_tags(out, [], o.unknown_tags)")
            w.dedent()
            w("else:")
            w.indent()("out.append(0)")
            w.dedent()
        else:
            w("tags: list[tuple[int, bytes | bytearray]] = []")
            for f in sorted(tagged, key=lambda f: f.tag or 0):
                w(f"if {non_default_test(f, 'o.' + f.attr)}:")
                w.indent()("b = bytearray()")
                _emit_field_encode(w, ctx, f, v, f"o.{f.attr}", "b")
                w(f"tags.append(({f.tag}, b))")
                w.dedent()
            w("write_tags(out, tags, o.unknown_tags)")
    if len(w.lines) == body_start:
        w("pass")
    w.dedent()
    w()
    w()
