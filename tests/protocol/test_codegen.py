"""The generator: its output is committed and reproducible, and its schema parsing is right."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pykbroker.errors import DecodeError, EncodeError
from pykbroker.protocol import primitives
from pykbroker.protocol.codegen.generate import check, render
from pykbroker.protocol.codegen.schema import (
    Versions,
    default_specs_dir,
    snake,
    strip_json_comments,
)

GENERATED = Path(__file__).resolve().parents[2] / "pykbroker" / "protocol" / "_generated"


def test_committed_code_matches_the_generator() -> None:
    assert check(default_specs_dir(), GENERATED) == []


def test_every_generated_file_starts_with_the_conventional_marker() -> None:
    """Tools recognise generated code by this first line (``^# Code generated .* DO NOT EDIT.``)."""
    marker = re.compile(r"^# Code generated .* DO NOT EDIT\.$")
    files = sorted(GENERATED.rglob("*.py"))
    assert len(files) > 100
    for path in files:
        first = path.read_text(encoding="utf-8").split("\n", 1)[0]
        assert marker.match(first), f"{path}: {first!r}"


def test_gitattributes_marks_the_generated_package() -> None:
    root = GENERATED.parents[2]
    out = subprocess.run(
        ["git", "check-attr", "linguist-generated", "--",
         "pykbroker/protocol/_generated/produce_request.py", "pykbroker/protocol/api.py"],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    assert out == [
        "pykbroker/protocol/_generated/produce_request.py: linguist-generated: true",
        "pykbroker/protocol/api.py: linguist-generated: unspecified",
    ]


def test_generator_is_deterministic() -> None:
    assert render(default_specs_dir()) == render(default_specs_dir())


def test_check_reports_drift(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    for rel, text in render(default_specs_dir()).items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    assert check(default_specs_dir(), out) == []
    (out / "produce_request.py").write_text("# edited\n")
    (out / "stray.py").write_text("")
    assert check(default_specs_dir(), out) == [
        "differs: produce_request.py", "not generated: stray.py"]


def test_specs_are_a_verbatim_copy_with_licence_headers() -> None:
    specs = default_specs_dir()
    files = sorted(specs.rglob("*.json"))
    assert len(files) == 218
    assert all("Licensed to the Apache Software Foundation" in f.read_text() for f in files)


def test_strip_comments_keeps_slashes_in_strings() -> None:
    text = '{"a": "http://x//y", // note\n "b": "q\\"//"} // end'
    assert strip_json_comments(text) == '{"a": "http://x//y", \n "b": "q\\"//"} '


@pytest.mark.parametrize(
    ("text", "lo", "hi"),
    [("0+", 0, 32767), ("3-5", 3, 5), ("7", 7, 7), ("none", 0, -1), (None, 0, -1)],
)
def test_versions(text: str | None, lo: int, hi: int) -> None:
    v = Versions.parse(text)
    assert (v.lo, v.hi) == (lo, hi)


@pytest.mark.parametrize(
    ("name", "attr"),
    [("ThrottleTimeMs", "throttle_time_ms"), ("ISRChangeAt", "isr_change_at"),
     ("groupInstanceId", "group_instance_id"), ("TopicId", "topic_id"), ("Type", "type")],
)
def test_snake(name: str, attr: str) -> None:
    assert snake(name) == attr


@given(st.integers(0, 2**32 - 1))
def test_uvarint_roundtrip(n: int) -> None:
    out = bytearray()
    primitives.write_uvarint(out, n)
    assert len(out) == max(1, (n.bit_length() + 6) // 7)
    assert primitives.read_uvarint(memoryview(bytes(out) + b"\x01"), 0) == (n, len(out))


def test_uvarint_limits() -> None:
    with pytest.raises(DecodeError):
        primitives.read_uvarint(memoryview(b"\xff\xff\xff\xff\x7f"), 0)  # > 32 bits
    with pytest.raises(DecodeError):
        primitives.read_uvarint(memoryview(b"\x80\x80\x80\x80\x80\x00"), 0)
    with pytest.raises(EncodeError):
        primitives.write_uvarint(bytearray(), -1)
    with pytest.raises(IndexError):  # the message decoders turn this into DecodeError
        primitives.read_uvarint(memoryview(b"\x80"), 0)


@given(st.uuids(), st.binary(max_size=3))
def test_uuid_roundtrip(value: uuid.UUID, before: bytes) -> None:
    out = bytearray(before)
    out += value.bytes  # (as the generated encoders write one)
    got, end = primitives.read_uuid(memoryview(bytes(out) + b"\x00"), len(before))
    assert (got, end) == (value, len(before) + 16)


def test_decoded_uuids_are_shared_and_their_cache_bounded() -> None:
    """read_uuid reuses the UUID it built for the same 16 bytes (topic ids come again in
    every request) and never holds more than _UUIDS_MAX of them (hostile ids)."""
    a, _ = primitives.read_uuid(memoryview(bytes(range(16))), 0)
    b, _ = primitives.read_uuid(memoryview(b"\x00" + bytes(range(16))), 1)
    assert a is b and a == uuid.UUID(bytes=bytes(range(16)))
    for i in range(primitives._UUIDS_MAX + 10):
        primitives.read_uuid(memoryview(i.to_bytes(16, "big")), 0)
        assert len(primitives._UUIDS) <= primitives._UUIDS_MAX
    with pytest.raises(DecodeError):
        primitives.read_uuid(memoryview(bytes(15)), 0)
