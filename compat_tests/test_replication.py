"""ISR replication (issue #15): the acceptance tests, Jepsen style.

Each test starts its own cluster (a real ZooKeeper, three pykbroker processes on loopback,
zookeeper.session.timeout.ms=6000) and counts every acknowledged message:

1. leader crash loop: the leader of a partition SIGKILLed every 10 s for 2 minutes and
   restarted 5 s later, under an idempotent acks=all producer and a consumer group; nothing
   acknowledged is missing, duplicated or reordered, every replica's log is identical (offset,
   leader epoch and CRC of every batch below the high watermark), each partition is led again
   within the session timeout + 5 s, the group's commits survive and it sees everything;
2. zombie leader: a leader SIGSTOPped longer than its session is fenced on SIGCONT, truncates
   and rejoins the ISR; nothing it accepted while fenced is acknowledged;
3. unclean refusal: with only an out-of-sync replica alive the partition stays offline until
   an ISR member returns; unclean.leader.election.enable=true brings it back (loss logged);
4. SIGTERM of a leader: controlled shutdown moves its partitions (and the group's coordinator)
   before it exits; producer and group see only retriable errors and lose nothing;
5. min.insync.replicas=2 with two of three brokers down: acks=all NOT_ENOUGH_REPLICAS, acks=1
   succeeds;
6. under-replicated partitions show in Metadata and return to a full ISR.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer

from compat_tests import replication_helpers as rh
from compat_tests.cluster import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

BASE = {"offsets.topic.replication.factor": "3", "offsets.topic.num.partitions": "6",
        "replica.lag.time.max.ms": "3000"}


def produce_one(bootstrap: str, topic: str, value: bytes, partition: int = 0,
                **config: object) -> tuple[KafkaError | None, int]:
    """One message, no retries: (error or None, offset)."""
    result: list[tuple[KafkaError | None, int]] = []
    p = Producer({"bootstrap.servers": bootstrap, "retries": 0, "linger.ms": 0,
                  "message.timeout.ms": 15000, **rh.COMMON, **config})
    p.produce(topic, value=value, partition=partition,
              on_delivery=lambda err, msg: result.append((err, msg.offset())))
    p.flush(30)
    assert len(result) == 1, "no delivery report"
    return result[0]


# -- 5. min.insync.replicas -------------------------------------------------------------------


@pytest.mark.cluster_config(**BASE)
def test_min_insync_replicas_with_two_brokers_down(cluster: Cluster, topic_name: str) -> None:
    cluster.wait_formed()
    rh.create_topic(cluster, topic_name, 1, 3, {"min.insync.replicas": "2"})
    leader = rh.leaders(cluster, topic_name, 1)[0]
    bootstrap = cluster.bootstrap(leader)
    err, offset = produce_one(bootstrap, topic_name, b"all-up", acks="all")
    assert err is None and offset == 0, err

    followers = [i for i in cluster.broker_ids if i != leader]
    for i in followers:
        cluster.kill(i)
    cluster.wait_until(lambda: cluster.metadata(leader).topics[topic_name][0].isr == (leader,),
                       cluster.session_timeout_ms / 1000 + 10, what="ISR shrunk to the leader")

    err, _ = produce_one(bootstrap, topic_name, b"acks-all-refused", acks="all")
    assert err is not None and err.code() == KafkaError.NOT_ENOUGH_REPLICAS, err
    err, offset = produce_one(bootstrap, topic_name, b"acks-1", acks=1)
    assert err is None and offset == 1, err
    assert rh.read_partitions(bootstrap, topic_name, 1)[0] == [(0, b"all-up"), (1, b"acks-1")]

    # One follower back in the ISR: acks=all is served again.
    rh.restart(cluster, followers[0])
    cluster.wait_until(
        lambda: sorted(cluster.metadata(leader).topics[topic_name][0].isr)
        == sorted([leader, followers[0]]), 30, what=f"broker {followers[0]} back in the ISR")
    err, offset = produce_one(bootstrap, topic_name, b"acks-all-again", acks="all")
    assert err is None and offset == 2, err


# -- 6. under-replicated partitions ------------------------------------------------------------


@pytest.mark.cluster_config(**BASE)
def test_under_replicated_partitions_in_metadata(cluster: Cluster, topic_name: str) -> None:
    cluster.wait_formed()
    rh.create_topic(cluster, topic_name, 3, 3, {"min.insync.replicas": "2"})
    assert rh.full_isr(cluster, topic_name, 3, cluster.broker_ids)
    writer = rh.Writer(cluster.bootstrap_all(), topic_name, 3, rate=60, name="w")
    writer.start()
    try:
        time.sleep(2)
        victim = 3
        survivors = [1, 2]
        began = time.monotonic()
        cluster.kill(victim)

        def shrunk() -> bool:
            for i in survivors:
                view = cluster.metadata(i).topics[topic_name]
                if any(victim in v.isr or v.leader not in survivors or len(v.isr) != 2
                       or len(v.replicas) != 3 for v in view.values()):
                    return False
            return True

        cluster.wait_until(shrunk, cluster.session_timeout_ms / 1000 + 10,
                           what=f"every ISR without broker {victim} on {survivors}")
        print(f"ISR without broker {victim} after {time.monotonic() - began:.1f} s: "
              f"{cluster.metadata(1).topics[topic_name]}")

        rh.restart(cluster, victim)
        began = time.monotonic()
        cluster.wait_until(lambda: rh.full_isr(cluster, topic_name, 3, cluster.broker_ids),
                           30, what="full ISR again on every broker")
        print(f"full ISR {time.monotonic() - began:.1f} s after the restart: "
              f"{cluster.metadata(victim).topics[topic_name]}")
    finally:
        writer.stop()
    print(writer.summary())
    logs = rh.read_partitions(cluster.bootstrap_all(), topic_name, 3)
    print(rh.check_acknowledged([writer], logs))
    assert not writer.failed, writer.summary()


# -- 1. leader crash loop ---------------------------------------------------------------------

LOOP_S = 120.0
KILL_EVERY_S = 10.0
RESTART_AFTER_S = 5.0


@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.cluster_config(**BASE)
def test_leader_crash_loop_loses_no_acknowledged_message(cluster: Cluster, topic_name: str,
                                                        group_name: str) -> None:
    try:
        crash_loop(cluster, topic_name, group_name)
    except BaseException:  # whole logs for the report (the harness prints tails only)
        keep = Path(tempfile.mkdtemp(prefix="pykbroker-crash-loop-logs-"))
        for i, broker in cluster.brokers.items():
            shutil.copy(broker.log_path, keep / f"broker-{i}.log")
        print(f"broker logs kept in {keep}")
        raise


def crash_loop(cluster: Cluster, topic_name: str, group_name: str) -> None:
    partitions = 3
    cluster.wait_formed()
    rh.create_topic(cluster, topic_name, partitions, 3, {"min.insync.replicas": "2"})
    writer = rh.Writer(cluster.bootstrap_all(), topic_name, partitions, rate=150, name="w")
    reader = rh.GroupReader(cluster.bootstrap_all(), topic_name, group_name)
    prober = rh.Prober(cluster.bootstrap_all(), topic_name, partitions)
    writer.start()
    reader.start()
    cluster.wait_until(lambda: reader.last_commit(), 30, what="the group's first commit")
    elect_limit = cluster.session_timeout_ms / 1000 + 5
    kills: list[str] = []
    slow_elections: list[str] = []
    lost_commits: list[str] = []
    fetch_errors: list[str] = []
    restart: rh.Restart | None = None
    began = time.monotonic()
    try:
        for k in range(int(LOOP_S / KILL_EVERY_S)):
            wait = began + k * KILL_EVERY_S - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if restart is not None:
                restart.wait()
            running = cluster.running_ids()
            partition = k % partitions
            victim = cluster.wait_until(
                lambda r=running[0], p=partition: (  # type: ignore[misc]
                    v := rh.leaders(cluster, topic_name, r)[p]) > 0 and v,
                10, what=f"a leader of partition {partition}")
            committed_before = reader.last_commit()
            cluster.kill(victim)
            killed_at = time.monotonic()
            # Led again = takes an acks=all write again (whoever leads: when the controller
            # dies too and the victim is back before a new controller loads the cluster, it
            # still leads at the same epoch, as in Kafka).
            probes = prober.send_round(k)
            survivor = next(i for i in running if i != victim)
            restart = rh.Restart(cluster.brokers[victim])
            led_after: float | None = None
            checked_commits = False
            while time.monotonic() < killed_at + KILL_EVERY_S - 0.3:
                now = time.monotonic()
                if now >= killed_at + RESTART_AFTER_S:
                    restart.poll()
                prober.poll()
                if led_after is None:
                    led_after = prober.acked_after(probes, killed_at)
                elif not checked_commits:
                    try:
                        committed = rh.committed_offsets(
                            cluster, group_name, topic_name, partitions,
                            [i for i in running if i != victim], timeout=5)
                    except Exception as exc:  # the coordinator moving: try again
                        fetch_errors.append(f"kill #{k}: {exc!r}")
                    else:
                        behind = {p: (o, committed.get(p)) for p, o in committed_before.items()
                                  if committed.get(p, -1) < o}
                        if behind:
                            lost_commits.append(f"kill #{k} (broker {victim}): {behind}")
                        checked_commits = True
                time.sleep(0.1)
            if not checked_commits:
                lost_commits.append(f"kill #{k}: no OffsetFetch answered in the cycle")
            detail = ""
            if led_after is None:  # what each side says now
                states = [rh.zk_state(cluster, topic_name, p) for p in range(partitions)]
                detail = f"; probes unanswered; ZooKeeper {states}"
                for i in cluster.running_ids():
                    try:
                        detail += f"; broker {i}: {cluster.metadata(i).topics[topic_name]}"
                    except Exception as exc:
                        detail += f"; broker {i}: {exc!r}"
            leaders_now = rh.leaders(cluster, topic_name, survivor)
            kills.append(f"#{k} p{partition} broker {victim} at {time.time():.1f}: every "
                         f"partition took a write after "
                         f"{'never' if led_after is None else f'{led_after:.1f} s'}, leaders "
                         f"{leaders_now}, restarted in {restart.attempts} start(s){detail}")
            print(kills[-1])
            if led_after is None or led_after > elect_limit:
                slow_elections.append(kills[-1])
        assert restart is not None
        restart.wait()
        cluster.wait_until(lambda: rh.full_isr(cluster, topic_name, partitions,
                                               cluster.broker_ids), 60,
                           what="every partition back to a full ISR")
    finally:
        writer.stop()
        prober.close()
    print(writer.summary())
    print(f"OffsetFetch errors during the loop: {fetch_errors}")
    acked = set(writer.acked)
    try:
        cluster.wait_until(lambda: acked <= reader.seen_values(), 60,
                           what="the group having seen every acknowledged message")
    finally:
        reader.stop()
    print(reader.summary())

    logs = rh.read_partitions(cluster.bootstrap_all(), topic_name, partitions)
    assert not prober.failed, prober.failed
    print(rh.check_acknowledged([writer], logs, prober.acked.items()))
    assert not slow_elections, f"not led again within {elect_limit} s: {slow_elections}"
    assert not lost_commits, f"committed offsets went back: {lost_commits}"
    committed = rh.committed_offsets(cluster, group_name, topic_name, partitions)
    assert committed == reader.last_commit(), (committed, reader.last_commit())
    hws = rh.high_watermarks(cluster.bootstrap_all(), topic_name, partitions)
    assert committed == hws, (committed, hws)  # it ended having consumed everything

    for i in cluster.broker_ids:  # quiet: no produce in flight, every replica caught up
        cluster.kill(i)
    counts = rh.assert_replicas_identical(cluster, topic_name, partitions, hws)
    print(f"high watermarks {hws}, identical batches per partition {counts}")


# -- 2. zombie leader -------------------------------------------------------------------------


def _topic_led_by(cluster: Cluster, topic: str, controller_leads: bool) -> int:
    """Create ``topic`` (1 partition, RF 3) whose preferred leader is the controller or
    another broker; returns that leader."""
    controller = cluster.wait_until(cluster.controller_id, 20, what="a controller")
    others = [i for i in cluster.broker_ids if i != controller]
    order = [controller, *others] if controller_leads else [*others, controller]
    rh.create_topic(cluster, topic, config={"min.insync.replicas": "2"}, assignment=[order])
    leader = rh.leaders(cluster, topic, order[0])[0]
    assert leader == order[0] and cluster.controller_id() == controller
    return leader


@pytest.mark.parametrize("controller_leads", [False, True], ids=["leader", "controller"])
@pytest.mark.cluster_config(**BASE)
def test_zombie_leader_is_fenced_truncates_and_rejoins(cluster: Cluster, topic_name: str,
                                                       controller_leads: bool) -> None:
    cluster.wait_formed()
    zombie = _topic_led_by(cluster, topic_name, controller_leads)
    others = [i for i in cluster.broker_ids if i != zombie]
    epoch_before = rh.zk_state(cluster, topic_name, 0)["leader_epoch"]  # type: ignore[index]
    writer = rh.Writer(cluster.bootstrap_all(others), topic_name, 1, rate=50, name="w")
    # A librdkafka producer that knows only the zombie, and a raw one that never leaves it.
    zwriter = rh.Writer(cluster.bootstrap(zombie), topic_name, 1, rate=20, name="z",
                        **{"message.timeout.ms": 40000})
    pinned = rh.PinnedProducer(cluster.brokers[zombie])
    pinned.send(topic_name, 0, b"before:0:0")
    assert pinned.receive_all()[b"before:0:0"][0] == "NONE"
    writer.start()
    zwriter.start()
    try:
        time.sleep(2)
        rh.pause(cluster.brokers[zombie])
        paused_at = time.monotonic()
        for n in range(10):  # queued in the socket: the zombie reads them when it wakes
            pinned.send(topic_name, 0, rh.value_of("pinned", 0, n), timeout_ms=8000)
        state = cluster.wait_until(
            lambda: (s := rh.zk_state(cluster, topic_name, 0)) and s["leader"] in others and s,
            cluster.session_timeout_ms / 1000 + 5, what="a new leader while the old one sleeps")
        elected_at = time.monotonic()
        elected = elected_at - paused_at
        # The new leader takes writes while the zombie sleeps: a fresh client's, at once.
        probe_at = time.monotonic()
        err, probe_offset = produce_one(cluster.bootstrap_all(others), topic_name, b"probe:0:0",
                                        acks="all", **{"message.timeout.ms": 5000})
        probe = f"{err.name() if err else 'acked'} after {time.monotonic() - probe_at:.1f} s"
        # Stay paused well past the session (the new leader keeps taking writes).
        time.sleep(max(0.0, paused_at + cluster.session_timeout_ms / 1000 * 2 - time.monotonic()))
        resumed_at = time.monotonic()
        rh.resume(cluster.brokers[zombie])
        for n in range(10, 20):  # while it may still believe it leads
            pinned.send(topic_name, 0, rh.value_of("pinned", 0, n), timeout_ms=8000)
        answers = pinned.receive_all()
        timeline = {f"{t:.0f}-{t + 1:.0f}s": writer.acked_between(paused_at + t, paused_at + t + 1)
                    for t in range(int(resumed_at - paused_at) + 1)}
        print(f"new leader {state['leader']} (epoch {state['leader_epoch']}, was "
              f"{epoch_before}) {elected:.1f} s after the pause; probe produce {probe}; writer "
              f"acks per second after the pause {timeline}; pinned answers "
              f"{Counter(err for err, _ in answers.values())}")
        assert state["leader_epoch"] > epoch_before
        assert err is None, f"the new leader refused a write while the zombie slept: {probe}"

        # Fenced: the zombie itself says another broker leads, then it rejoins the ISR.
        cluster.wait_until(lambda: cluster.metadata(zombie).topics[topic_name][0].leader
                           in others, 30, what="the zombie knowing it no longer leads")
        cluster.wait_until(lambda: rh.full_isr(cluster, topic_name, 1, cluster.broker_ids),
                           30, what="the zombie back in the ISR")
    finally:
        writer.stop()
        zwriter.stop()
        pinned.close()
    print(writer.summary())
    print(zwriter.summary())
    logs = rh.read_partitions(cluster.bootstrap_all(), topic_name, 1)
    acked_pinned = [(v, (0, off)) for v, (e, off) in answers.items() if e == "NONE"]
    acked_pinned.append((b"probe:0:0", (0, probe_offset)))
    print(rh.check_acknowledged([writer, zwriter], logs, acked_pinned))
    in_log = {v for _, v in logs[0]}
    assert all(v in in_log for v, _ in acked_pinned)
    zombie_log = cluster.brokers[zombie].log().splitlines()
    print("zombie's log after the pause:\n" + "\n".join(
        line for line in zombie_log if "pykbroker.server" not in line)[-3000:])
    # It wrote what it took while fenced (the queued requests at least) in the old epoch,
    # and dropped it to follow the new leader.
    assert any("truncating" in line for line in zombie_log), "the zombie never truncated"

    hws = rh.high_watermarks(cluster.bootstrap_all(), topic_name, 1)
    for i in cluster.broker_ids:
        cluster.kill(i)
    rh.assert_replicas_identical(cluster, topic_name, 1, hws)


# -- 3. unclean leader election -----------------------------------------------------------------

OFFLINE_ERRORS = {"NOT_LEADER_OR_FOLLOWER", "LEADER_NOT_AVAILABLE"}


@pytest.mark.cluster_config(**BASE)
def test_out_of_sync_replica_never_leads_unless_unclean_enabled(cluster: Cluster,
                                                                 topic_name: str) -> None:
    cluster.wait_formed()
    a, b, c = cluster.broker_ids  # a leads; c drops out first, b second, a last
    clean, unclean = f"{topic_name}-clean", f"{topic_name}-unclean"
    topics = (clean, unclean)
    for t in topics:
        rh.create_topic(cluster, t, assignment=[[a, b, c]])
    acked: dict[str, list[bytes]] = {t: [] for t in topics}

    def produce_round(n: int, isr: list[int]) -> None:
        for t in topics:
            cluster.wait_until(
                lambda t=t: (s := rh.zk_state(cluster, t, 0)) and  # type: ignore[misc]
                sorted(s["isr"]) == isr, cluster.session_timeout_ms / 1000 + 10,
                what=f"ISR of {t} = {isr}")
            for k in range(5):
                value = b"round:%d:%d" % (n, k)
                err, _ = produce_one(cluster.bootstrap(a), t, value, acks="all")
                assert err is None, (t, value, err)
                acked[t].append(value)

    produce_round(1, [a, b, c])
    cluster.kill(c)
    produce_round(2, [a, b])      # c misses these
    cluster.kill(b)
    produce_round(3, [a])         # b misses these
    cluster.kill(a)
    rh.restart(cluster, c)        # only the out-of-sync replica is alive (and controller)

    def offline(t: str) -> None:
        # c is the controller once ZooKeeper says so; its own Metadata lists the topics once
        # its failover has sent UpdateMetadata (to itself too), a moment later.
        view = cluster.wait_until(lambda: (v := cluster.metadata(c)) and t in v.topics and v,
                                  10, what=f"{t} in broker {c}'s Metadata")
        assert view.topics[t][0].leader == -1, view.topics[t]
        state = rh.zk_state(cluster, t, 0)
        assert state is not None and state["leader"] != c, state

    cluster.wait_until(lambda: cluster.controller_id() == c, 20, what="c the controller")
    deadline = time.monotonic() + 8
    pinned = rh.PinnedProducer(cluster.brokers[c], timeout=20)
    n = 0
    while time.monotonic() < deadline:  # stays offline; writes are refused, not taken
        for t in topics:
            offline(t)
            pinned.send(t, 0, b"offline:%d:%d" % (n, n), acks=-1, timeout_ms=2000)
            n += 1
        time.sleep(1)
    answers = pinned.receive_all()
    pinned.close()
    assert len(answers) == n and {err for err, _ in answers.values()} <= OFFLINE_ERRORS, answers
    err, _ = produce_one(cluster.bootstrap(c), clean, b"client", acks="all",
                         **{"message.timeout.ms": 4000})
    assert err is not None, "a produce succeeded with no leader"
    print(f"offline with only broker {c}: pinned produce answered "
          f"{Counter(e for e, _ in answers.values())}, confluent-kafka {err.name()}")

    # Unclean election enabled for one topic: its out-of-sync replica leads, the loss is logged.
    from confluent_kafka.admin import (
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )
    client = rh.admin(cluster, [c])
    resource = ConfigResource(ResourceType.TOPIC, unclean, incremental_configs=[ConfigEntry(
        "unclean.leader.election.enable", "true",
        incremental_operation=AlterConfigOpType.SET)])
    client.incremental_alter_configs([resource])[resource].result(20)
    began = time.monotonic()
    cluster.wait_until(lambda: (s := rh.zk_state(cluster, unclean, 0)) and s["leader"] == c,
                       20, what=f"{unclean}'s state naming {c} leader (unclean election)")
    # What clients see: the Metadata answer (UpdateMetadata), not only the broker's role.
    cluster.wait_until(lambda: cluster.metadata(c).topics[unclean][0].leader == c, 10,
                       what=f"Metadata showing {unclean} led by {c} after the unclean election")
    print(f"{unclean} led by the out-of-sync broker {c} "
          f"{time.monotonic() - began:.1f} s after enabling unclean election")
    warnings = [line for line in cluster.brokers[c].current_log().splitlines()
                if "unclean" in line.lower() and unclean in line]
    assert warnings and any("lost" in line for line in warnings), warnings
    print("\n".join(warnings))
    offline(clean)
    err, offset = produce_one(cluster.bootstrap(c), unclean, b"after:0:0", acks="all")
    assert err is None, err
    got = [v for _, v in rh.read_partitions(cluster.bootstrap(c), unclean, 1)[0]]
    assert got == acked[unclean][:5] + [b"after:0:0"], got  # rounds 2 and 3 lost, as logged

    # The last ISR member returns: the clean topic comes back with everything acknowledged.
    rh.restart(cluster, a)
    cluster.wait_until(lambda: cluster.metadata(c).topics[clean][0].leader == a, 30,
                       what=f"{clean} led by {a}, its last ISR member")
    got = [v for _, v in rh.read_partitions(cluster.bootstrap(a), clean, 1)[0]]
    assert got == acked[clean], got
    rh.restart(cluster, b)
    for t in topics:
        cluster.wait_until(
            lambda t=t: rh.full_isr(cluster, t, 1, cluster.broker_ids),  # type: ignore[misc]
            30, what=f"full ISR of {t}")
    hws = {t: rh.high_watermarks(cluster.bootstrap_all(), t, 1) for t in topics}
    for i in cluster.broker_ids:
        cluster.kill(i)
    for t in topics:
        rh.assert_replicas_identical(cluster, t, 1, hws[t])


# -- 4. controlled shutdown ---------------------------------------------------------------------


def java_hash(s: str) -> int:
    h = 0
    for ch in s.encode("utf-16-be").decode("utf-16-be"):
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def offsets_partition(group: str, partitions: int) -> int:
    """The __consumer_offsets partition of a group (Kafka's Utils.abs(hashCode) % n)."""
    h = java_hash(group)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


RETRIABLE_CLIENT = {"_TRANSPORT", "_ALL_BROKERS_DOWN", "NOT_COORDINATOR",
                    "COORDINATOR_NOT_AVAILABLE", "COORDINATOR_LOAD_IN_PROGRESS",
                    "REQUEST_TIMED_OUT", "NOT_LEADER_OR_FOLLOWER", "LEADER_NOT_AVAILABLE",
                    "_TIMED_OUT", "NETWORK_EXCEPTION"}


@pytest.mark.cluster_config(**BASE)
def test_sigterm_moves_leadership_before_exit(cluster: Cluster, topic_name: str,
                                              group_name: str) -> None:
    partitions = 3
    cluster.wait_formed()
    rh.create_topic(cluster, topic_name, partitions, 3, {"min.insync.replicas": "2"})
    writer = rh.Writer(cluster.bootstrap_all(), topic_name, partitions, rate=100, name="w")
    reader = rh.GroupReader(cluster.bootstrap_all(), topic_name, group_name)
    writer.start()
    reader.start()
    try:
        cluster.wait_until(lambda: reader.last_commit(), 30, what="the group's first commit")
        offsets_p = offsets_partition(group_name, int(BASE["offsets.topic.num.partitions"]))
        offsets_state = rh.zk_state(cluster, "__consumer_offsets", offsets_p)
        assert offsets_state is not None
        coordinator = offsets_state["leader"]
        led: dict[tuple[str, int], list[int]] = {}  # partition -> ISR before
        for t, n in ((topic_name, partitions),
                     ("__consumer_offsets", int(BASE["offsets.topic.num.partitions"]))):
            for p in range(n):
                state = rh.zk_state(cluster, t, p)
                assert state is not None
                if state["leader"] == coordinator:
                    led[(t, p)] = state["isr"]
        assert any(t == topic_name for t, _ in led), (coordinator, led)
        victim = coordinator  # leads partitions of the topic and the group's offsets
        time.sleep(2)
        committed_before = reader.last_commit()
        proc = cluster.brokers[victim].proc
        assert proc is not None
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        moved_while_alive = None
        new_leaders: dict[tuple[str, int], int] = {}
        while True:
            states = {tp: rh.zk_state(cluster, *tp) for tp in led}
            alive = proc.poll() is None  # read after the states: they were current while alive
            if all(s is not None and s["leader"] != victim for s in states.values()):
                new_leaders = {tp: s["leader"] for tp, s in states.items()}  # type: ignore[index]
                if alive and moved_while_alive is None:
                    moved_while_alive = time.monotonic() - signalled
                break
            if not alive:
                break
            assert time.monotonic() - signalled < 60, "no exit in 60 s"
            time.sleep(0.02)
        code = proc.wait(60)  # (no second SIGTERM: it may land after the handler is gone)
        exited = time.monotonic() - signalled
        cluster.terminate(victim)  # reaped: the harness forgets the process
        print(f"broker {victim} (coordinator of {group_name}) led {sorted(led)}; all moved "
              f"{moved_while_alive} s after SIGTERM, exit {code} after {exited:.1f} s; "
              f"new leaders {new_leaders}")
        assert moved_while_alive is not None, f"partitions of {victim} not moved before exit"
        assert code == 0
        for tp, leader in new_leaders.items():
            assert leader in led[tp] and leader != victim, (tp, leader, led[tp])
        shutdown_log = cluster.brokers[victim].current_log()
        assert "did not move every partition" not in shutdown_log

        # The group's coordinator moved with its partition; its commits are still there.
        survivors = cluster.running_ids()
        cluster.wait_until(lambda: rh.committed_offsets(cluster, group_name, topic_name,
                                                        partitions, survivors), 20,
                           what="the group's offsets from the new coordinator")
        committed = rh.committed_offsets(cluster, group_name, topic_name, partitions, survivors)
        assert all(committed[p] >= o for p, o in committed_before.items()), (
            committed, committed_before)
        client = rh.admin(cluster, survivors)
        description = client.describe_consumer_groups([group_name])[group_name].result(20)
        assert description.coordinator.id == new_leaders[("__consumer_offsets", offsets_p)], (
            description.coordinator, new_leaders)
        time.sleep(5)  # producer and group keep going on two brokers
    finally:
        writer.stop()
    print(writer.summary())
    acked = set(writer.acked)
    try:
        cluster.wait_until(lambda: acked <= reader.seen_values(), 60,
                           what="the group having seen every acknowledged message")
    finally:
        reader.stop()
    print(reader.summary())
    assert not writer.failed, writer.summary()
    bad = [e.name() for e in writer.client_errors + reader.client_errors + reader.poll_errors
           if e.name() not in RETRIABLE_CLIENT and not e.retriable()]
    bad += [e for e in reader.commit_errors if not any(r in e for r in RETRIABLE_CLIENT)]
    assert not bad, f"non-retriable errors: {bad}"
    logs = rh.read_partitions(cluster.bootstrap_all(survivors), topic_name, partitions)
    print(rh.check_acknowledged([writer], logs))
    committed = rh.committed_offsets(cluster, group_name, topic_name, partitions, survivors)
    assert committed == reader.last_commit()
    assert committed == rh.high_watermarks(cluster.bootstrap_all(survivors), topic_name,
                                           partitions)
