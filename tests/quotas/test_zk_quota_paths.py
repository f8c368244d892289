"""Where a cluster keeps each client-quota entity (Kafka's /config/users and /config/clients)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pykbroker.quotas.manager import DEFAULT, Entity
from pykbroker.quotas.zk_store import entity_of, entity_path, quota_values

names = st.one_of(st.just(DEFAULT), st.text(min_size=1, max_size=20))


def test_entity_paths_are_kafkas() -> None:
    assert entity_path(("alice", None)) == ("users", "alice")
    assert entity_path((DEFAULT, None)) == ("users", "<default>")
    assert entity_path((None, "app 1")) == ("clients", "app%201")
    assert entity_path(("alice", DEFAULT)) == ("users", "alice/clients/<default>")
    assert entity_path((DEFAULT, "a/b")) == ("users", "<default>/clients/a%2Fb")
    assert entity_of("topics", "t") is None
    assert quota_values({"producer_byte_rate": "1024", "SCRAM-SHA-256": "salt=...",
                         "consumer_byte_rate": "x"}) == {"producer_byte_rate": 1024.0}


@given(st.one_of(st.tuples(names, st.none()), st.tuples(st.none(), names),
                 st.tuples(names, names)))
def test_entity_paths_round_trip(entity: Entity) -> None:
    assert entity_of(*entity_path(entity)) == entity
