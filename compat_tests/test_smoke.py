"""The fixture itself: a broker subprocess answers, restarts keep data."""

from __future__ import annotations

from kafka import KafkaAdminClient

from compat_tests.broker_process import BrokerProcess


def test_broker_starts_and_lists_topics(broker: BrokerProcess) -> None:
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        assert admin.list_topics() == []
    finally:
        admin.close()
    assert broker.stop() == 0
    assert "shut down completed" in broker.log()
