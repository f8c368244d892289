"""KIP-848 consumer groups with librdkafka (``group.protocol=consumer``): server-side
assignment shared by two then three members, reassignment when one leaves, and every
message consumed exactly once with commits after processing."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import Consumer

from compat_tests import ck_helpers as ck
from compat_tests.broker_process import BrokerProcess
from compat_tests.test_groups import (
    PARTITIONS,
    Member,
    consumed,
    make_topic,
    produce,
    start,
    wait_for,
    wait_settled,
)

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.broker_config(**{
                  "offsets.topic.num.partitions": "5",
                  "group.consumer.min.session.timeout.ms": "6000",
                  "group.consumer.session.timeout.ms": "6000",
                  "group.consumer.min.heartbeat.interval.ms": "200",
                  "group.consumer.heartbeat.interval.ms": "200"})]


class Kip848Member(Member):
    def __init__(self, name: str, bootstrap: str, group: str, topic: str,
                 **conf: Any) -> None:
        super().__init__(name)
        self.consumer = Consumer(ck.consumer_conf(
            bootstrap, **{"group.id": group, "group.protocol": "consumer",
                          "client.id": name, "fetch.wait.max.ms": 100, **conf}))
        self.consumer.subscribe([topic])

    def poll_once(self) -> None:
        msgs = self.consumer.consume(num_messages=500, timeout=0.1)
        for m in msgs:
            if m.error() is None:
                self.records.append((m.partition(), m.offset(), m.value()))
                self.consumer.store_offsets(message=m)
        if any(m.error() is None for m in msgs):
            self.consumer.commit(asynchronous=False)  # after processing
        self.owned = frozenset(tp.partition for tp in self.consumer.assignment())

    def close(self) -> None:
        self.consumer.close()


def test_consumer_protocol_shares_and_reassigns(broker: BrokerProcess, topic_name: str,
                                                group_name: str) -> None:
    make_topic(broker.bootstrap, topic_name)
    values = [f"m{i}".encode() for i in range(300)]
    produce(broker.bootstrap, topic_name, values[:100])

    def member(i: int) -> Member:
        return start(Kip848Member(f"c{i}", broker.bootstrap, group_name, topic_name))

    members = [member(0), member(1)]
    stopped: list[Member] = []
    try:
        shares = wait_settled(members, 30)
        assert sorted(len(s) for s in shares) == [3, 3]
        members.append(member(2))
        shares = wait_settled(members, 30)
        assert sorted(len(s) for s in shares) == [2, 2, 2]
        produce(broker.bootstrap, topic_name, values[100:200], first=100)
        wait_for(lambda: len(consumed(members)) >= 200, 30, "200 messages")

        # one member leaves: the other two take its partitions over
        leaving = members.pop(0)
        leaving.stop()
        stopped.append(leaving)
        shares = wait_settled(members, 30)
        assert sorted(len(s) for s in shares) == [3, 3]
        produce(broker.bootstrap, topic_name, values[200:], first=200)
        wait_for(lambda: len(consumed(members + stopped)) >= 300, 30, "300 messages")
        time.sleep(0.5)
    finally:
        for m in members:
            m.stop()
    got = consumed(members + stopped)
    assert sorted(got) == sorted(values), (len(got), len(set(got)))

    admin = ck.admin(broker.bootstrap)  # kept referenced until its futures complete
    result = admin.describe_consumer_groups([group_name])[group_name].result(15)
    assert result.group_id == group_name
    assert str(result.type) in ("ConsumerGroupType.CONSUMER", "CONSUMER") or \
        getattr(result.type, "name", "") == "CONSUMER", result.type
    assert len(result.members) == 0  # everyone has left
    assert PARTITIONS == 6


def test_consumer_protocol_regex_subscription(broker: BrokerProcess, group_name: str) -> None:
    prefix = group_name.replace("g-", "rx-")
    for suffix in ("a", "b"):
        make_topic(broker.bootstrap, f"{prefix}-{suffix}")
    make_topic(broker.bootstrap, f"other-{prefix}")
    produce(broker.bootstrap, f"{prefix}-a", [b"a"])
    produce(broker.bootstrap, f"{prefix}-b", [b"b"])
    produce(broker.bootstrap, f"other-{prefix}", [b"x"])
    c = Consumer(ck.consumer_conf(broker.bootstrap, **{
        "group.id": group_name, "group.protocol": "consumer"}))
    try:
        c.subscribe([f"^{prefix}-.*"])
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(got) < 2 and time.monotonic() < deadline:
            got += [m.value() for m in c.consume(10, timeout=0.2) if m.error() is None]
        assert sorted(got) == [b"a", b"b"]
        topics = {tp.topic for tp in c.assignment()}
        assert topics == {f"{prefix}-a", f"{prefix}-b"}
        assert len(c.assignment()) == 2 * PARTITIONS
    finally:
        c.close()
