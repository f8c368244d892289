"""Consumer groups with stock clients: assignors, rebalances on join/leave/kill, static
membership, exactly-once consumption with commits, offsets across broker restarts, admin.

Each group member polls in its own thread (or process), as applications do: a JoinGroup
blocks until every member has rejoined, so one thread cannot drive two members.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions
from kafka import KafkaConsumer, TopicPartition
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
from kafka.structs import OffsetAndMetadata

from compat_tests import ck_helpers as ck
from compat_tests.broker_process import BrokerProcess
from compat_tests.kp_helpers import CLIENT_TIMEOUTS, admin_client, create_topic, producer, send_all

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.broker_config(**{"group.initial.rebalance.delay.ms": "0",
                                           "offsets.topic.num.partitions": "5"})]

PARTITIONS = 6

# kafka-python members poll with a long timeout: kafka-python 3.0.12's leader rejoins once
# its metadata snapshot changes after its first assignment (it always does here: the snapshot
# is empty at the first join), and if that JoinGroup + SyncGroup outlasts the poll's timeout
# the poll returns, the next one no longer sees a rejoin needed (the assignment updated the
# snapshot) and never completes the join: its heartbeats stay disabled until its session
# expires (seen under CI load with 100 ms). poll returns as soon as records arrive anyway.
KP_POLL_MS = 1000


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Member(threading.Thread):
    """One consumer polling in its own thread; records what it consumed and owns."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.records: list[tuple[int, int, bytes]] = []
        self.owned: frozenset[int] = frozenset()
        self.error: BaseException | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.poll_once()
        except BaseException as exc:  # surfaced by stop()
            self.error = exc
        finally:
            self.close()

    def poll_once(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)
        assert not self.is_alive(), f"{self.name} did not stop"
        if self.error is not None:
            raise self.error


class KpMember(Member):
    def __init__(self, name: str, bootstrap: str, group: str, topic: str,
                 commit: bool = True, **conf: Any) -> None:
        super().__init__(name)
        self.commit = commit
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
            auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=300,
            fetch_max_wait_ms=100, client_id=name, **{**CLIENT_TIMEOUTS, **conf})
        # Topic metadata first: kafka-python 3.0.12 can join (and lead) before it has any,
        # assign nothing, and go quiet.
        assert self.consumer.partitions_for_topic(topic)
        self.consumer.subscribe([topic])

    def poll_once(self) -> None:
        batches = self.consumer.poll(timeout_ms=KP_POLL_MS)
        for tp, msgs in batches.items():
            self.records.extend((tp.partition, m.offset, m.value) for m in msgs)
        if batches and self.commit:
            self.consumer.commit()  # after processing
        self.owned = frozenset(tp.partition for tp in self.consumer.assignment())

    def close(self) -> None:
        self.consumer.close(autocommit=False)


class CkMember(Member):
    def __init__(self, name: str, bootstrap: str, group: str, topic: str,
                 commit: bool = True, **conf: Any) -> None:
        super().__init__(name)
        self.commit = commit
        self.consumer = Consumer(ck.consumer_conf(
            bootstrap, **{"group.id": group, "session.timeout.ms": 6000,
                          "heartbeat.interval.ms": 300, "client.id": name,
                          "fetch.wait.max.ms": 100, **conf}))
        self.consumer.subscribe([topic])

    def poll_once(self) -> None:
        msgs = self.consumer.consume(num_messages=500, timeout=0.1)
        for m in msgs:
            if m.error() is None:
                self.records.append((m.partition(), m.offset(), m.value()))
                self.consumer.store_offsets(message=m)
        if msgs and self.commit:
            self.consumer.commit(asynchronous=False)
        self.owned = frozenset(tp.partition for tp in self.consumer.assignment())

    def close(self) -> None:
        self.consumer.close()


def settled(members: list[Member]) -> bool:
    """Each member owns a share, the shares are disjoint and cover the topic."""
    for m in members:
        if m.error is not None:
            raise AssertionError(f"{m.name} failed") from m.error
    shares = [m.owned for m in members]
    return all(shares) and sum(len(s) for s in shares) == PARTITIONS and \
        frozenset().union(*shares) == frozenset(range(PARTITIONS))


def wait_settled(members: list[Member], timeout: float = 30.0) -> list[frozenset[int]]:
    wait_for(lambda: settled(members), timeout,
             f"disjoint shares: {[sorted(m.owned) for m in members]}")
    time.sleep(0.5)  # and they stay so
    assert settled(members), [sorted(m.owned) for m in members]
    return [m.owned for m in members]


def start(member: Member) -> Member:
    member.start()
    return member


def start_staggered(make: Callable[[int], Member], count: int) -> list[Member]:
    """Start members one after the other, each once the group has settled with the ones
    before (as applications scale out; also avoids a kafka-python 3.0.12 race where a
    leader that joins before it has topic metadata assigns nothing)."""
    members: list[Member] = []
    for i in range(count):
        members.append(start(make(i)))
        wait_settled(members)
    return members


def produce(bootstrap: str, topic: str, values: list[bytes], first: int = 0) -> None:
    """Round-robin over the partitions, counting from message number ``first``."""
    with producer(bootstrap) as p:
        send_all(p, [{"value": v, "partition": (first + i) % PARTITIONS}
                     for i, v in enumerate(values)], topic)


def consumed(members: list[Member]) -> list[bytes]:
    return [v for m in members for _, _, v in m.records]


def make_topic(bootstrap: str, topic: str) -> None:
    with admin_client(bootstrap) as a:
        create_topic(a, topic, PARTITIONS)


def describe_kp(bootstrap: str, group: str) -> dict[str, Any]:
    with admin_client(bootstrap) as a:
        result: dict[str, Any] = a.describe_groups([group])[group]
        return result


@pytest.mark.parametrize("assignor", [RangePartitionAssignor, RoundRobinPartitionAssignor,
                                      StickyPartitionAssignor])
def test_kafka_python_assignors_share_the_topic(broker: BrokerProcess, topic_name: str,
                                                group_name: str, assignor: Any) -> None:
    make_topic(broker.bootstrap, topic_name)
    conf = {"partition_assignment_strategy": [assignor]}
    members = start_staggered(
        lambda i: KpMember(f"kp{i}", broker.bootstrap, group_name, topic_name, **conf), 2)
    try:
        members.append(start(KpMember("kp2", broker.bootstrap, group_name, topic_name,
                                      **conf)))
        shares = wait_settled(members)
        assert sorted(len(s) for s in shares) == [2, 2, 2]
        desc = describe_kp(broker.bootstrap, group_name)
        assert desc["group_state"] == "Stable" and desc["protocol_data"] == assignor.name
        assert len(desc["members"]) == 3
        # A leaving member (LeaveGroup on close) hands its partitions over.
        members.pop().stop()
        wait_settled(members)
    finally:
        for m in members:
            m.stop()


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_confluent_assignors_share_the_topic(broker: BrokerProcess, topic_name: str,
                                             group_name: str, strategy: str) -> None:
    make_topic(broker.bootstrap, topic_name)
    conf = {"partition.assignment.strategy": strategy}
    members = start_staggered(
        lambda i: CkMember(f"ck{i}", broker.bootstrap, group_name, topic_name, **conf), 2)
    try:
        members.append(start(CkMember("ck2", broker.bootstrap, group_name, topic_name,
                                      **conf)))
        shares = wait_settled(members)
        assert sorted(len(s) for s in shares) == [2, 2, 2]
        members.pop(0).stop()
        wait_settled(members)
    finally:
        for m in members:
            m.stop()


def test_confluent_static_membership(broker: BrokerProcess, topic_name: str,
                                     group_name: str) -> None:
    make_topic(broker.bootstrap, topic_name)

    def member(i: int) -> CkMember:
        return CkMember(f"static{i}", broker.bootstrap, group_name, topic_name,
                        **{"group.instance.id": f"instance-{i}"})

    members = start_staggered(member, 3)
    try:
        shares = wait_settled(members)
        a = ck.admin(broker.bootstrap)
        desc = a.describe_consumer_groups([group_name])[group_name].result(15)
        assert sorted(m.group_instance_id for m in desc.members) == \
            ["instance-0", "instance-1", "instance-2"]
        # A static member that restarts (no LeaveGroup) takes its old place back, and the
        # others keep their partitions.
        members[2].stop()
        members[2] = start(member(2))
        assert wait_settled(members) == shares
        desc = a.describe_consumer_groups([group_name])[group_name].result(15)
        assert len(desc.members) == 3
    finally:
        for m in members:
            m.stop()


CHILD = textwrap.dedent(f"""
    import sys, time
    from kafka import KafkaConsumer
    c = KafkaConsumer(sys.argv[2], bootstrap_servers=sys.argv[1], group_id=sys.argv[3],
                      session_timeout_ms=6000, heartbeat_interval_ms=300,
                      client_id="child", auto_offset_reset="earliest")
    while True:
        c.poll(timeout_ms={KP_POLL_MS})
        print(sorted(tp.partition for tp in c.assignment()), flush=True)
""")


def test_killed_member_is_removed_after_its_session_timeout(
        broker: BrokerProcess, topic_name: str, group_name: str) -> None:
    make_topic(broker.bootstrap, topic_name)
    survivor = start(KpMember("survivor", broker.bootstrap, group_name, topic_name))
    child = subprocess.Popen([sys.executable, "-c", CHILD, broker.bootstrap, topic_name,
                              group_name], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(survivor.owned) == PARTITIONS // 2, 30, "a two-way split")
        desc = describe_kp(broker.bootstrap, group_name)
        assert len(desc["members"]) == 2
        child.kill()  # SIGKILL: no LeaveGroup, heartbeats just stop
        child.wait(10)
        killed_at = time.monotonic()
        wait_for(lambda: len(survivor.owned) == PARTITIONS, 25, "the survivor to own all")
        # Within session timeout (6 s) plus the rebalance.
        assert time.monotonic() - killed_at < 6 + 8
        assert len(describe_kp(broker.bootstrap, group_name)["members"]) == 1
    finally:
        if child.poll() is None:
            child.kill()
        survivor.stop()


@pytest.mark.parametrize("kind", ["kafka-python", "confluent"])
def test_every_message_consumed_once_across_rebalances(
        broker: BrokerProcess, topic_name: str, group_name: str, kind: str) -> None:
    make_topic(broker.bootstrap, topic_name)
    cls: type[KpMember] | type[CkMember] = KpMember if kind == "kafka-python" else CkMember
    everyone: list[Member] = []

    def add(name: str) -> Member:
        member = start(cls(name, broker.bootstrap, group_name, topic_name))
        everyone.append(member)
        return member

    values = [f"m-{i}".encode() for i in range(300)]
    members = [add("c0")]
    try:
        wait_settled(members)
        members.append(add("c1"))
        wait_settled(members)
        produce(broker.bootstrap, topic_name, values[:100])
        wait_for(lambda: len(consumed(everyone)) >= 100, 30, "the first 100")
        members.append(add("c2"))  # joining member
        wait_settled(members)
        produce(broker.bootstrap, topic_name, values[100:200], 100)
        wait_for(lambda: len(consumed(everyone)) >= 200, 30, "the next 100")
        members.pop(0).stop()  # leaving member
        wait_settled(members)
        produce(broker.bootstrap, topic_name, values[200:], 200)
        wait_for(lambda: len(consumed(everyone)) >= 300, 30, "all 300")
        time.sleep(0.5)
        got = consumed(everyone)
        assert sorted(got) == sorted(values), "duplicates or losses"
        # Committed offsets reach the end of every partition: no lag.
        with admin_client(broker.bootstrap) as a:
            offsets = a.list_group_offsets({group_name: None})[group_name]
        assert {tp.partition: om.offset for tp, om in offsets.items()} == \
            dict.fromkeys(range(PARTITIONS), 50)
    finally:
        for m in members:
            m.stop()


def test_committed_offsets_survive_restarts(broker: BrokerProcess, topic_name: str,
                                            group_name: str) -> None:
    make_topic(broker.bootstrap, topic_name)
    produce(broker.bootstrap, topic_name, [f"v{i}".encode() for i in range(60)])
    tps = [TopicPartition(topic_name, p) for p in range(PARTITIONS)]
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group_name,
                      enable_auto_commit=False, **CLIENT_TIMEOUTS)
    c.assign(tps)
    c.commit({tp: OffsetAndMetadata(tp.partition + 1, f"meta-{tp.partition}-é", -1)
              for tp in tps})
    c.close(autocommit=False)
    expected = {p: (p + 1, f"meta-{p}-é") for p in range(PARTITIONS)}

    def committed() -> dict[int, tuple[int, str]]:
        with admin_client(broker.bootstrap) as a:
            got = a.list_group_offsets({group_name: None})[group_name]
        return {tp.partition: (om.offset, om.metadata) for tp, om in got.items()}

    for restart in ("SIGTERM", "SIGKILL"):
        if restart == "SIGTERM":
            broker.restart()
        else:
            broker.kill()
            broker.start()
        assert committed() == expected, restart
    # A group member resumes from the committed offsets (10 per partition, minus p + 1).
    member = start(KpMember("resumer", broker.bootstrap, group_name, topic_name,
                            commit=False))
    try:
        wait_for(lambda: len(member.records) >= 60 - 21, 30, "the rest")
        time.sleep(0.3)
        firsts = {p: min(o for q, o, _ in member.records if q == p) for p in range(PARTITIONS)}
        assert firsts == {p: p + 1 for p in range(PARTITIONS)}
        assert len(member.records) == 60 - 21
    finally:
        member.stop()
    # (confluent-kafka-python is not asked: it reads committed metadata as a C string, past
    # its length, and may fail to decode what follows.)


def test_admin_list_describe_lag_delete(broker: BrokerProcess, topic_name: str,
                                        group_name: str) -> None:
    make_topic(broker.bootstrap, topic_name)
    produce(broker.bootstrap, topic_name, [b"x"] * 60)
    member = start(KpMember("admin-member", broker.bootstrap, group_name, topic_name,
                            commit=False))
    try:
        wait_for(lambda: len(member.owned) == PARTITIONS, 30, "the assignment")
        with admin_client(broker.bootstrap) as a:
            listed = a.list_groups()
            assert any(g["group_id"] == group_name for g in map(dict, listed)) or \
                group_name in str(listed)
            desc = a.describe_groups([group_name])[group_name]
            assert desc["group_state"] == "Stable" and desc["protocol_type"] == "consumer"
            assert desc["protocol_data"] == "range"
            (m,) = desc["members"]
            assert m["client_id"] == "admin-member"
            assigned = m["member_assignment"]["assigned_partitions"]
            assert assigned[0]["topic"] == topic_name
            assert sorted(assigned[0]["partitions"]) == list(range(PARTITIONS))
        # confluent's view of the same group.
        ca = ck.admin(broker.bootstrap)
        listing = ca.list_consumer_groups().result(15)
        states = {g.group_id: str(g.state) for g in listing.valid}
        assert "STABLE" in states[group_name].upper()
        cdesc = ca.describe_consumer_groups([group_name])[group_name].result(15)
        assert cdesc.partition_assignor == "range" and len(cdesc.members) == 1
        assert sorted(tp.partition for tp in cdesc.members[0].assignment.topic_partitions) \
            == list(range(PARTITIONS))
    finally:
        member.stop()
    # Commit part of the way, then compute lag from committed and end offsets.
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group_name,
                      enable_auto_commit=False, **CLIENT_TIMEOUTS)
    tps = [TopicPartition(topic_name, p) for p in range(PARTITIONS)]
    c.commit({tp: OffsetAndMetadata(tp.partition, "", -1) for tp in tps})
    ends = c.end_offsets(tps)
    c.close(autocommit=False)
    with admin_client(broker.bootstrap) as a:
        committed = a.list_group_offsets({group_name: None})[group_name]
        lag = {tp.partition: ends[tp] - committed[tp].offset for tp in tps}
        assert lag == {p: 10 - p for p in range(PARTITIONS)}
        # Deleting offsets of an empty group, then the group.
        errors = a.delete_group_offsets(group_name, [tps[0]])
        assert all(getattr(e, "errno", 0) == 0 for e in errors.values()), errors
        left = a.list_group_offsets({group_name: None})[group_name]
        assert sorted(tp.partition for tp in left) == list(range(1, PARTITIONS))
    ca = ck.admin(broker.bootstrap)  # kept referenced until its futures complete
    cgo = ca.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group_name)])[group_name].result(15)
    assert sorted(tp.partition for tp in cgo.topic_partitions) == list(range(1, PARTITIONS))
    ca.delete_consumer_groups([group_name], request_timeout=15)[group_name].result(15)
    with admin_client(broker.bootstrap) as a:
        assert a.describe_groups([group_name])[group_name]["group_state"] == "Dead"
