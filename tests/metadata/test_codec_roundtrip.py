"""Every znode codec: value -> JSON -> value is the identity, and any bytes either decode or
raise ZNodeDecodeError (never a KeyError, TypeError or the like)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pykbroker.metadata.zk.codec import ZNodeDecodeError
from tests.metadata.strategies import ALL_CODECS

CODECS = list(ALL_CODECS)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
# Objects that use the znodes' own key names, so decoding gets past the first missing key.
KEYS = [
    "version", "id", "brokerid", "timestamp", "kraftControllerEpoch", "host", "port",
    "endpoints", "jmx_port", "rack", "listener_security_protocol_map", "features",
    "partitions", "topic_id", "adding_replicas", "removing_replicas", "leader",
    "leader_epoch", "isr", "controller_epoch", "leader_recovery_state", "config",
    "entity_path", "entity_type", "entity_name", "topic", "partition", "replicas", "broker",
    "block_start", "block_end", "status", "min_version", "max_version", "max_version_level",
]  # fmt: skip
znode_like = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=10)


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.__name__)
@given(data=st.data())
def test_round_trip(codec: Any, data: st.DataObject) -> None:
    value = data.draw(ALL_CODECS[codec])
    encoded = value.to_json()
    assert isinstance(encoded, bytes)
    assert codec.from_json(encoded) == value


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.__name__)
@given(raw=st.binary(max_size=64) | znode_like.map(lambda v: json.dumps(v).encode()))
def test_garbage_decodes_or_raises_decode_error(codec: Any, raw: bytes) -> None:
    try:
        codec.from_json(raw)
    except ZNodeDecodeError:
        pass


# -- user and client id names in /config paths (Kafka's Sanitizer) ----------------------------

def test_sanitize_matches_kafkas_sanitizer() -> None:
    from pykbroker.metadata.zk.configs import desanitize, sanitize

    assert sanitize("alice") == "alice"
    assert sanitize("ops user*1") == "ops%20user%2A1"
    assert sanitize("User:x/y~z") == "User%3Ax%2Fy%7Ez"
    assert sanitize("a-b_c.d") == "a-b_c.d"
    assert sanitize("é") == "%C3%A9"
    assert desanitize("ops+user%2A1") == "ops user*1"  # URLDecoder reads + as a space


@given(st.text(max_size=40))
def test_sanitize_round_trips(name: str) -> None:
    from pykbroker.metadata.zk.configs import desanitize, sanitize

    assert desanitize(sanitize(name)) == name
    assert "/" not in sanitize(name)
