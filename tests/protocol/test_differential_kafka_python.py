"""Differential check of our generated codecs against kafka-python 3.0.12, an independent
implementation of the Kafka wire format.

For Produce, Fetch, Metadata, ApiVersions, ListOffsets, FindCoordinator, JoinGroup, SyncGroup,
Heartbeat, OffsetCommit, OffsetFetch, CreateTopics and InitProducerId, requests and responses,
in every version kafka-python implements:

* ours -> kafka-python: a random object of ours is encoded; kafka-python decodes those bytes
  (using all of them), its values equal ours field by field (positionally, in wire order,
  through arrays and structs), and kafka-python re-encodes them to exactly our bytes;
* kafka-python -> ours: random values shaped by kafka-python's own description of the message
  are encoded by kafka-python; we decode those bytes (using all of them) to the same values and
  re-encode them to exactly kafka-python's bytes.

The main reference is kafka-python's classic hand-written codec (``kafka.protocol.old``), which
stops before each API's first flexible version (ApiVersions aside, which it has through v4).
Every version it lacks that Kafka 3.9 has is covered by
kafka-python's newer codec (``kafka.protocol.schemas``, driven by its own copy of Kafka 4.x's
JSON specs); that codec is run on every version both it and Kafka 3.9 define, including those
the classic codec also covers.

Restrictions, each a limitation of kafka-python rather than of the protocol:

* classic codec: it only has flexible versions for ApiVersions (v3, v4). It keeps tagged
  fields as raw ``{tag: bytes}``, so ours are drawn with random unknown tags and random known
  tagged fields; for known tags the values are compared only through the bytes (the key sets
  and unknown payloads are compared too). Its ``String``, ``Bytes`` and ``Array`` accept null
  in every version, so in the kafka-python -> ours direction nulls are drawn only where our
  schema allows them.
* newer codec: it does not write back unknown tagged fields it has read (it keeps them in
  ``unknown_tags`` but its encoder only emits known ones), so ours are drawn without unknown
  tags. It writes a tagged field whenever its value differs from *its* default, which for a
  struct is None; so it is never given a tagged struct equal to the schema default, which
  Kafka (and we) leave out.
* ``ApiVersionsResponse``: both codecs decode a v1+ body as v0 when its error code is not 0 (a
  broker answers an unsupported ApiVersions request in v0). That is client policy on top of
  the codec and is bypassed (see ``kafka_python_compat.old_decode`` / ``new_decode``).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.protocol import kafka_python_compat as kp
from tests.protocol.strategies import message_by_name, message_class, message_strategy

APIS = [
    "Produce", "Fetch", "Metadata", "ApiVersions", "ListOffsets", "FindCoordinator",
    "JoinGroup", "SyncGroup", "Heartbeat", "OffsetCommit", "OffsetFetch", "CreateTopics",
    "InitProducerId",
]
NAMES = [api + kind for api in APIS for kind in ("Request", "Response")]


def _ours(name: str) -> range:
    return message_by_name(name).versions()


OLD_CASES = [(n, v) for n in NAMES for v in kp.old_classes(n)]
NEW_CASES = [(n, v) for n in NAMES for v in kp.new_versions(n) if v in _ours(n)]

# The classic codec is the main reference and gets more examples; the whole file runs in about
# 30 s.
OLD_SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
NEW_SETTINGS = settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))


def _ids(cases: list[tuple[str, int]]) -> list[str]:
    return [f"{n}-v{v}" for n, v in cases]


def _flexible(name: str, version: int) -> bool:
    return version in message_by_name(name).flexible


def _without_unknown_tags(obj: Any, s: Any) -> Any:
    """Clear ``unknown_tags`` in ``obj`` (schema struct ``s``) and every struct beneath it."""
    obj.unknown_tags = None
    for f in s.fields:
        if f.struct is None:
            continue
        val = getattr(obj, f.attr)
        for x in (val or []) if f.is_array else [val]:
            if x is not None:
                _without_unknown_tags(x, f.struct)
    return obj


def _decode_ours(name: str, data: bytes, version: int) -> Any:
    obj, end = message_class(message_by_name(name)).decode(data, 0, version)
    assert end == len(data), f"we read {end} of {len(data)} bytes"
    return obj


# --------------------------------------------------------------------------------------------
# Inventory
# --------------------------------------------------------------------------------------------


def test_every_api_and_version_is_covered() -> None:
    for name in NAMES:
        old = set(kp.old_classes(name))
        assert old, f"kafka-python's classic codec has no {name}"
        # Every version kafka-python's classic codec has exists in Kafka 3.9 (and so in ours).
        assert old <= set(_ours(name)), (name, sorted(old - set(_ours(name))))
        for v in old:
            assert kp.old_classes(name)[v].API_KEY == message_class(message_by_name(name)).API_KEY
        # Together the two codecs cover every version of ours that kafka-python knows at all.
        known = old | set(kp.new_versions(name))
        covered = old | {v for n, v in NEW_CASES if n == name}
        assert known & set(_ours(name)) == covered
    assert len(OLD_CASES) == 156
    assert len(NEW_CASES) == 216


# --------------------------------------------------------------------------------------------
# The classic hand-written codec (kafka.protocol.old)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "version"), OLD_CASES, ids=_ids(OLD_CASES))
@OLD_SETTINGS
@given(data=st.data())
def test_classic_reads_and_rewrites_our_bytes(name: str, version: int,
                                              data: st.DataObject) -> None:
    cls = kp.old_classes(name)[version]
    ours = data.draw(message_strategy(name, version))
    wire = ours.to_bytes(version)
    theirs = kp.old_decode(cls, wire)
    assert kp.old_encode(theirs) == wire
    kp.compare_struct(ours, message_by_name(name).root, kp.old_view(cls.SCHEMA, theirs),
                      version, _flexible(name, version), name)


@pytest.mark.parametrize(("name", "version"), OLD_CASES, ids=_ids(OLD_CASES))
@OLD_SETTINGS
@given(data=st.data())
def test_we_read_and_rewrite_classic_bytes(name: str, version: int,
                                           data: st.DataObject) -> None:
    cls = kp.old_classes(name)[version]
    msg = message_by_name(name)
    values = data.draw(kp.old_strategy(cls.SCHEMA, msg.root, version))
    wire = kp.old_encode(cls(*values))
    ours = _decode_ours(name, wire, version)
    kp.compare_struct(ours, msg.root, kp.old_view(cls.SCHEMA, values), version,
                      _flexible(name, version), name)
    assert ours.to_bytes(version) == wire


# --------------------------------------------------------------------------------------------
# The newer schema-driven codec (kafka.protocol.schemas)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "version"), NEW_CASES, ids=_ids(NEW_CASES))
@NEW_SETTINGS
@given(data=st.data())
def test_schema_codec_reads_and_rewrites_our_bytes(name: str, version: int,
                                                   data: st.DataObject) -> None:
    cls = kp.new_class(name)
    msg = message_by_name(name)
    flexible = _flexible(name, version)
    assert flexible == cls.flexible_version_q(version)
    ours = data.draw(message_strategy(name, version))
    _without_unknown_tags(ours, msg.root)
    wire = ours.to_bytes(version)
    theirs = kp.new_decode(cls, wire, version)
    assert kp.new_encode(theirs, version) == wire
    kp.compare_struct(ours, msg.root, kp.new_view(cls._struct, theirs, version, flexible),
                      version, flexible, name)


@pytest.mark.parametrize(("name", "version"), NEW_CASES, ids=_ids(NEW_CASES))
@NEW_SETTINGS
@given(data=st.data())
def test_we_read_and_rewrite_schema_codec_bytes(name: str, version: int,
                                                data: st.DataObject) -> None:
    cls = kp.new_class(name)
    msg = message_by_name(name)
    flexible = cls.flexible_version_q(version)
    theirs = data.draw(kp.new_strategy(cls._struct, version, flexible, data_class=cls))
    wire = kp.new_encode(theirs, version)
    ours = _decode_ours(name, wire, version)
    kp.compare_struct(ours, msg.root, kp.new_view(cls._struct, theirs, version, flexible),
                      version, flexible, name)
    assert ours.to_bytes(version) == wire


# --------------------------------------------------------------------------------------------
# The comparison itself notices differences
# --------------------------------------------------------------------------------------------


def test_value_comparison_detects_a_difference() -> None:
    from pykbroker.protocol._generated.produce_request import (
        PartitionProduceData,
        ProduceRequest,
        TopicProduceData,
    )

    ours = ProduceRequest("tx", 1, 1000, [TopicProduceData("t", [PartitionProduceData(3, b"r")])])
    cls = kp.old_classes("ProduceRequest")[3]
    root = message_by_name("ProduceRequest").root
    theirs = kp.old_decode(cls, ours.to_bytes(3))
    assert theirs.topic_data == [("t", [(3, b"r")])]
    kp.compare_struct(ours, root, kp.old_view(cls.SCHEMA, theirs), 3, False, "p")
    for change in ({"acks": 2}, {"transactional_id": None},
                   {"topic_data": [("t", [(3, b"x")])]}, {"topic_data": []}):
        other = cls(**{n: getattr(theirs, n) for n in cls.SCHEMA.names} | change)
        with pytest.raises(AssertionError):
            kp.compare_struct(ours, root, kp.old_view(cls.SCHEMA, other), 3, False, "p")
    # A layout with a field fewer is reported, not silently zipped.
    with pytest.raises(AssertionError, match="fields"):
        v2 = kp.old_classes("ProduceRequest")[2].SCHEMA
        kp.compare_struct(ours, root, kp.old_view(v2, (1, 1000, [])), 3, False, "p")
