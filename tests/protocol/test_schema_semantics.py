"""The schema language's rules, checked with hand-computed bytes: compact and classic forms,
tagged fields (known, unknown, defaults), nullable structs, ignorable fields, defaults."""

from __future__ import annotations

import struct
import uuid

import pytest

from pykbroker.errors import DecodeError, EncodeError
from pykbroker.protocol._generated.api_versions_request import ApiVersionsRequest
from pykbroker.protocol._generated.api_versions_response import ApiVersion, ApiVersionsResponse
from pykbroker.protocol._generated.describe_topic_partitions_request import (
    Cursor,
    DescribeTopicPartitionsRequest,
)
from pykbroker.protocol._generated.fetch_request import FetchRequest
from pykbroker.protocol._generated.fetch_response import (
    EpochEndOffset,
    FetchableTopicResponse,
    FetchResponse,
    PartitionData,
)
from pykbroker.protocol._generated.metadata_request import MetadataRequest
from pykbroker.protocol._generated.produce_request import ProduceRequest
from pykbroker.protocol._generated.request_header import RequestHeader

API_VERSIONS_V3 = b"\x00\x00" + b"\x02" + b"\x00\x12\x00\x00\x00\x04\x00" + b"\x00" * 4 + b"\x00"


def test_request_header_v2_client_id_is_never_compact() -> None:
    # ClientId has flexibleVersions "none": an int16 length even in header v2.
    h = RequestHeader(18, 3, 1, "ab")
    assert h.to_bytes(2) == b"\x00\x12\x00\x03\x00\x00\x00\x01\x00\x02ab\x00"
    assert h.to_bytes(1) == b"\x00\x12\x00\x03\x00\x00\x00\x01\x00\x02ab"
    assert RequestHeader(18, 0, 1, None).to_bytes(1)[-2:] == b"\xff\xff"
    assert RequestHeader(18, 0, 7, "x").to_bytes(0) == b"\x00\x12\x00\x00\x00\x00\x00\x07"


def test_compact_strings_and_empty_tag_section() -> None:
    assert ApiVersionsRequest("x", "1").to_bytes(3) == b"\x02x\x021\x00"


def test_tagged_fields_with_default_values_are_not_written() -> None:
    resp = ApiVersionsResponse(0, [ApiVersion(18, 0, 4)], 0)
    assert resp.finalized_features_epoch == -1
    assert resp.to_bytes(3) == API_VERSIONS_V3


def test_known_tagged_fields_in_tag_order() -> None:
    resp = ApiVersionsResponse(0, [ApiVersion(18, 0, 4)], 0, finalized_features_epoch=5,
                               zk_migration_ready=True)
    body = resp.to_bytes(3)
    tags = b"\x02" + b"\x01\x08" + struct.pack(">q", 5) + b"\x03\x01\x01"
    assert body == API_VERSIONS_V3[:-1] + tags
    assert ApiVersionsResponse.decode(body, 0, 3)[0] == resp


def test_unknown_tags_are_kept_and_merged_in_order() -> None:
    tags = b"\x03" + b"\x00\x00" + b"\x01\x08" + struct.pack(">q", 9) + b"\x07\x02hi"
    body = API_VERSIONS_V3[:-1] + tags
    resp, end = ApiVersionsResponse.decode(body, 0, 3)
    assert end == len(body)
    assert resp.finalized_features_epoch == 9
    assert resp.supported_features == []
    # Tag 0 (SupportedFeatures) is known: an empty compact array, kept as its value.
    assert resp.unknown_tags == [(7, b"hi")]
    assert resp.to_bytes(3) == API_VERSIONS_V3[:-1] + b"\x02" + tags[3:]


def test_tagged_struct_in_fetch_response() -> None:
    part = PartitionData(partition_index=1, high_watermark=10, records=b"",
                         diverging_epoch=EpochEndOffset(epoch=3, end_offset=77))
    resp = FetchResponse(responses=[FetchableTopicResponse(topic="t", partitions=[part])])
    body = resp.to_bytes(12)
    decoded, _ = FetchResponse.decode(body, 0, 12)
    assert decoded.responses[0].partitions[0].diverging_epoch == EpochEndOffset(3, 77)
    assert decoded == resp
    # Version 11 has no DivergingEpoch: a non-default value cannot be written there.
    with pytest.raises(EncodeError):
        resp.to_bytes(11)


def test_nullable_struct_marker() -> None:
    req = DescribeTopicPartitionsRequest([], 100, None)
    assert req.to_bytes(0).endswith(b"\xff\x00")
    req.cursor = Cursor("t", 2)
    body = req.to_bytes(0)
    assert body.endswith(b"\x01" + b"\x02t" + struct.pack(">i", 2) + b"\x00\x00")
    assert DescribeTopicPartitionsRequest.decode(body, 0, 0)[0] == req


def test_ignorable_and_non_ignorable_fields() -> None:
    # IsolationLevel is ignorable (v4+): silently dropped in v3.
    req = FetchRequest(max_wait_ms=5, isolation_level=1)
    assert FetchRequest.decode(req.to_bytes(3), 0, 3)[0].isolation_level == 0
    # TransactionalId (v3+) is not ignorable: writing it in v2 is an error.
    with pytest.raises(EncodeError, match="transactional_id"):
        ProduceRequest(transactional_id="tx").to_bytes(2)
    # AllowAutoTopicCreation defaults to true and is not ignorable before v4.
    with pytest.raises(EncodeError):
        MetadataRequest(allow_auto_topic_creation=False).to_bytes(3)
    assert MetadataRequest().to_bytes(3) == b"\x00\x00\x00\x00"


def test_defaults_from_the_schema() -> None:
    assert FetchRequest().max_bytes == 0x7FFFFFFF
    assert FetchRequest().replica_id == -1
    assert MetadataRequest().allow_auto_topic_creation is True
    assert MetadataRequest().topics == []
    assert ProduceRequest().transactional_id is None
    a, b = ProduceRequest(), ProduceRequest()
    assert a.topic_data is not b.topic_data  # no shared mutable defaults


def test_nullable_array_with_non_null_default() -> None:
    # MetadataRequest.Topics: nullable from v1, default empty; null means "all topics".
    assert MetadataRequest(topics=None).to_bytes(1) == b"\xff\xff\xff\xff"
    assert MetadataRequest(topics=[]).to_bytes(1) == b"\x00\x00\x00\x00"
    with pytest.raises(EncodeError):
        MetadataRequest(topics=None).to_bytes(0)
    assert MetadataRequest.decode(b"\xff\xff\xff\xff", 0, 1)[0].topics is None


def test_uuid_fields() -> None:
    tid = uuid.uuid4()
    req = MetadataRequest(topics=[])
    from pykbroker.protocol._generated.metadata_request import MetadataRequestTopic

    req.topics = [MetadataRequestTopic(topic_id=tid, name=None)]
    body = req.to_bytes(12)
    assert tid.bytes in body
    assert MetadataRequest.decode(body, 0, 12)[0].topics[0].topic_id == tid


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\x00\x06",  # compact array of 5 with nothing after it
        b"\x00\x00\x02\x00\x12\x00\x00\x00\x04\x00\x00\x00\x00\x00\x05",  # 5 tags, none present
        b"\x00\x00\x02\x00\x12\x00\x00\x00\x04\x00\x00\x00\x00\x00\x01\x01\x7f",  # tag size 127
        b"\x00\x00\x02\x00\x12\x00\x00\x00\x04\x80\x80\x80\x80\x80\x01",  # 6-byte varint
    ],
)
def test_malformed_bodies_raise_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError):
        ApiVersionsResponse.decode(body, 0, 3)


def test_invalid_utf8_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        ApiVersionsRequest.decode(b"\x03\xff\xfe\x021\x00", 0, 3)


def test_version_out_of_range() -> None:
    with pytest.raises(DecodeError):
        ApiVersionsRequest.decode(b"", 0, 5)
    with pytest.raises(EncodeError):
        ApiVersionsRequest().to_bytes(5)
