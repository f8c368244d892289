"""Helpers for the replication acceptance tests (issue #15), Jepsen style: every message a
producer sends is numbered, every acknowledgement is recorded, and the final logs are read
back (through a client and from the brokers' segment files) to account for each one.

* :class:`Writer` - a confluent-kafka producer thread sending ``b"<name>:<partition>:<seq>"``
  to each partition in turn, recording which were acknowledged (partition, offset) and which
  failed; :class:`PinnedProducer` - raw Produce requests to one broker only.
* :class:`GroupReader` - a consumer-group thread recording every message it sees and every
  offset commit that succeeded.
* :func:`read_partitions` - every record below the high watermark, through a client.
* :func:`log_batches` / :func:`assert_replicas_identical` - the batches of a partition as a
  broker's segment files hold them (offset, leader epoch, CRC), compared across replicas.
* :func:`pause` / :func:`resume` (SIGSTOP / SIGCONT), :class:`Restart` (start a killed
  broker again, retrying while ZooKeeper still holds its previous session's registration),
  :func:`zk_state` (a partition's state znode).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kazoo.exceptions import NoNodeError

from compat_tests.broker_process import READY_MARK
from compat_tests.cluster import Cluster, ClusterBroker
from pykbroker.protocol._generated.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from pykbroker.protocol.framing import decode_response, encode_request
from pykbroker.records import build_batch, iter_batches

LOG = logging.getLogger("compat.replication")
RDKAFKA_LOG = logging.getLogger("compat.rdkafka")
# reconnect.backoff.max.ms: librdkafka doubles its reconnect back-off up to 10 s by default, so
# a client that tried a killed broker a moment before its restart may wait ~10 s more before
# trying again. When that broker still leads on its return (the controller died with it and
# the new controller found it registered again, as in Kafka), the tests would measure the
# client's back-off, not the cluster: capped at 1 s, "led again" is exact to within a second.
COMMON: dict[str, Any] = {"socket.timeout.ms": 10000, "api.version.request.timeout.ms": 5000,
                          "reconnect.backoff.max.ms": 1000, "logger": RDKAFKA_LOG}


def value_of(tag: str, partition: int, seq: int) -> bytes:
    """``b"<writer>:<partition>:<seq>"``: unique per message across writers."""
    return b"%s:%d:%08d" % (tag.encode(), partition, seq)


# -- topics -----------------------------------------------------------------------------------


def admin(cluster: Cluster, ids: Iterable[int] | None = None) -> AdminClient:
    return AdminClient({"bootstrap.servers": cluster.bootstrap_all(ids),
                        "allow.auto.create.topics": False, **COMMON})


def create_topic(cluster: Cluster, name: str, partitions: int = 1, replication_factor: int = 3,
                 config: dict[str, str] | None = None,
                 assignment: list[list[int]] | None = None) -> None:
    """CreateTopics (explicit replica ``assignment`` if given) and wait until every running
    broker reports every partition led."""
    if assignment is not None:
        new = NewTopic(name, num_partitions=len(assignment), replication_factor=-1,
                       replica_assignment=assignment, config=dict(config or {}))
        partitions = len(assignment)
    else:
        new = NewTopic(name, partitions, replication_factor, config=dict(config or {}))
    client = admin(cluster)  # kept referenced until the future is done
    future = client.create_topics([new], operation_timeout=15, request_timeout=20)[name]
    future.result(timeout=30)
    cluster.wait_topic(name, partitions, timeout=30)


def leaders(cluster: Cluster, topic: str, via: int) -> dict[int, int]:
    return cluster.metadata(via).leaders(topic)


def zk_state(cluster: Cluster, topic: str, partition: int) -> dict[str, Any] | None:
    """The partition state znode's JSON (leader, leader_epoch, isr, controller_epoch...)."""
    try:
        data, _ = cluster.zk.get(f"/brokers/topics/{topic}/partitions/{partition}/state")
    except NoNodeError:
        return None
    state: dict[str, Any] = json.loads(data)
    return state


def full_isr(cluster: Cluster, topic: str, partitions: int, ids: Iterable[int],
             size: int = 3) -> bool:
    """Every broker in ``ids`` reports every partition with ``size`` ISR members."""
    for i in ids:
        parts = cluster.metadata(i).topics.get(topic, {})
        if len(parts) != partitions or any(len(v.isr) != size or v.leader < 0
                                           for v in parts.values()):
            return False
    return True


# -- processes --------------------------------------------------------------------------------


def pause(broker: ClusterBroker) -> None:
    assert broker.proc is not None
    os.kill(broker.proc.pid, signal.SIGSTOP)


def resume(broker: ClusterBroker) -> None:
    assert broker.proc is not None
    os.kill(broker.proc.pid, signal.SIGCONT)


@dataclass
class Restart:
    """A broker being started again: :meth:`poll` respawns it when it exits during start-up
    (its previous session's ``/brokers/ids`` znode still there) until it prints ready."""

    broker: ClusterBroker
    attempts: int = 0
    ready: bool = False
    failures: list[str] = field(default_factory=list)

    def poll(self) -> bool:
        if self.ready:
            return True
        if self.attempts == 0 or not self.broker.running:
            if self.attempts:
                self.failures.append(self.broker.current_log()[-600:])
                time.sleep(0.2)
            self.broker.spawn()
            self.attempts += 1
            return False
        if READY_MARK in self.broker.current_log():
            self.ready = True
            self.broker.ever_ready = True
        return self.ready

    def wait(self, timeout: float = 40.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.poll():
            if time.monotonic() > deadline:
                raise AssertionError(f"broker {self.broker.broker_id} not ready after "
                                     f"{timeout} s ({self.attempts} starts): "
                                     f"{self.broker.log_tail()}")
            time.sleep(0.1)


def restart(cluster: Cluster, i: int, timeout: float = 40.0) -> Restart:
    r = Restart(cluster.brokers[i])
    r.wait(timeout)
    return r


# -- producing --------------------------------------------------------------------------------


class Writer(threading.Thread):
    """Send numbered messages to partitions ``0..partitions-1`` in turn at about ``rate``
    messages/s, recording what was acknowledged and what failed."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, *, rate: float = 200.0,
                 name: str = "writer", first_seq: int = 0, **config: Any) -> None:
        super().__init__(name=name, daemon=True)
        self.topic = topic
        self.partitions = partitions
        self.rate = rate
        self.conf = {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                     "linger.ms": 5, "message.timeout.ms": 60000, **COMMON,
                     "error_cb": self._on_error, **config}
        self.lock = threading.Lock()
        self.next_seq = {p: first_seq for p in range(partitions)}
        self.sent: dict[bytes, int] = {}            # value -> partition
        self.acked: dict[bytes, tuple[int, int]] = {}  # value -> (partition, offset)
        self.ack_times: list[float] = []  # time.monotonic() of each acknowledgement
        self.failed: dict[bytes, str] = {}           # value -> error name
        self.client_errors: list[KafkaError] = []
        self._stopping = threading.Event()
        self._pause = threading.Event()
        self.exception: BaseException | None = None
        self.producer: Producer | None = None

    def _on_error(self, err: KafkaError) -> None:
        with self.lock:
            self.client_errors.append(err)

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        value = msg.value()
        with self.lock:
            if err is None:
                self.acked[value] = (msg.partition(), msg.offset())
                self.ack_times.append(time.monotonic())
            else:
                self.failed[value] = err.name()

    def send_one(self, partition: int) -> bytes:
        assert self.producer is not None
        seq = self.next_seq[partition]
        self.next_seq[partition] = seq + 1
        value = value_of(self.name, partition, seq)
        with self.lock:
            self.sent[value] = partition
        while True:
            try:
                self.producer.produce(self.topic, value=value, partition=partition,
                                      on_delivery=self._on_delivery)
                return value
            except BufferError:
                self.producer.poll(0.05)

    def run(self) -> None:
        try:
            self.producer = Producer(self.conf)
            interval = 1.0 / self.rate
            next_at = time.monotonic()
            p = 0
            while not self._stopping.is_set():
                if not self._pause.is_set():
                    self.send_one(p)
                    p = (p + 1) % self.partitions
                next_at += interval
                delay = next_at - time.monotonic()
                self.producer.poll(max(delay, 0))
                if delay < -1.0:  # fell behind (a slow poll): do not burst
                    next_at = time.monotonic()
            self.producer.flush(90)
        except BaseException as exc:  # reported by stop()
            self.exception = exc

    def acked_between(self, start: float, end: float) -> int:
        with self.lock:
            return sum(1 for t in self.ack_times if start <= t < end)

    def pause_sending(self) -> None:
        self._pause.set()

    def resume_sending(self) -> None:
        self._pause.clear()

    def stop(self, timeout: float = 100.0) -> None:
        self._stopping.set()
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} still flushing after {timeout} s"
        if self.exception is not None:
            raise self.exception

    def summary(self) -> str:
        with self.lock:
            errors = sorted(set(self.failed.values()))
            return (f"{self.name}: sent {len(self.sent)}, acked {len(self.acked)}, failed "
                    f"{len(self.failed)} {errors}, client errors "
                    f"{sorted({e.name() for e in self.client_errors})}")


class Prober:
    """One idempotent acks=all message to every partition per round: when each is
    acknowledged tells when the partition takes writes again (a leader that serves)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.topic = topic
        self.partitions = partitions
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                  "acks": "all", "linger.ms": 0, "message.timeout.ms": 120000,
                                  **COMMON})
        self.acked: dict[bytes, tuple[int, int]] = {}
        self.ack_times: dict[bytes, float] = {}
        self.failed: dict[bytes, str] = {}

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            self.acked[msg.value()] = (msg.partition(), msg.offset())
            self.ack_times[msg.value()] = time.monotonic()
        else:
            self.failed[msg.value()] = err.name()

    def send_round(self, n: int) -> list[bytes]:
        values = [value_of("probe", p, n) for p in range(self.partitions)]
        for p, value in enumerate(values):
            self.producer.produce(self.topic, value=value, partition=p,
                                  on_delivery=self._on_delivery)
        self.producer.poll(0)
        return values

    def poll(self) -> None:
        self.producer.poll(0)

    def acked_after(self, values: list[bytes], start: float) -> float | None:
        """Seconds from ``start`` until every one of ``values`` was acknowledged."""
        times = [self.ack_times.get(v) for v in values]
        done = [t for t in times if t is not None]
        return max(done) - start if len(done) == len(values) else None

    def close(self) -> None:
        remaining = self.producer.flush(60)
        assert remaining == 0, f"{remaining} probes unanswered"


class PinnedProducer:
    """Produce requests over one connection to one broker, which it never leaves (a client
    that keeps writing to whoever it thinks leads): one record per request, answers read in
    order. Produce v9."""

    VERSION = 9

    def __init__(self, broker: ClusterBroker, timeout: float = 60.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", broker.port), timeout=timeout)
        self.sent: dict[int, bytes] = {}  # correlation id -> value
        self.answers: dict[bytes, tuple[str, int]] = {}  # value -> (error name, base offset)
        self._next = 1
        self._buf = bytearray()

    def send(self, topic: str, partition: int, value: bytes, *, acks: int = -1,
             timeout_ms: int = 10000) -> None:
        batch = build_batch([(None, value, (), None)])
        request = ProduceRequest(None, acks, timeout_ms, [TopicProduceData(topic, [
            PartitionProduceData(partition, batch)])])
        corr = self._next
        self._next += 1
        self.sock.sendall(encode_request(0, self.VERSION, corr, "pinned", request))
        self.sent[corr] = value

    def _recv(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def receive_all(self) -> dict[bytes, tuple[str, int]]:
        """Read every outstanding answer (up to the socket timeout each); a closed
        connection leaves the rest unanswered."""
        from pykbroker.error_codes import ErrorCode

        try:
            while len(self.answers) < len(self.sent):
                (size,) = struct.unpack(">i", self._recv(4))
                corr, response = decode_response(self._recv(size), 0, self.VERSION)
                part = response.responses[0].partition_responses[0]
                self.answers[self.sent[corr]] = (ErrorCode(part.error_code).name,
                                                 part.base_offset)
        except OSError as exc:
            LOG.info("pinned producer: %r after %d answers", exc, len(self.answers))
        return self.answers

    def close(self) -> None:
        self.sock.close()


# -- consuming --------------------------------------------------------------------------------


class GroupReader(threading.Thread):
    """A consumer-group member subscribed to ``topic``: records every message it sees and
    commits what it consumed every ``commit_interval`` s (synchronously)."""

    def __init__(self, bootstrap: str, topic: str, group: str, *,
                 commit_interval: float = 0.5, name: str = "reader", **config: Any) -> None:
        super().__init__(name=name, daemon=True)
        self.topic = topic
        self.conf = {"bootstrap.servers": bootstrap, "group.id": group,
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "session.timeout.ms": 30000, "heartbeat.interval.ms": 1000,
                     "check.crcs": True, **COMMON, "error_cb": self._on_error, **config}
        self.commit_interval = commit_interval
        self.lock = threading.Lock()
        self.seen: dict[int, list[tuple[int, bytes]]] = {}
        self.positions: dict[int, int] = {}
        self.commits: list[tuple[float, dict[int, int]]] = []  # (time done, offsets)
        self.commit_errors: list[str] = []
        self.poll_errors: list[KafkaError] = []
        self.client_errors: list[KafkaError] = []
        self.assignments = 0  # rebalances that gave this member partitions
        self._stopping = threading.Event()
        self.exception: BaseException | None = None

    def _on_error(self, err: KafkaError) -> None:
        with self.lock:
            self.client_errors.append(err)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        with self.lock:
            self.assignments += 1

    def seen_values(self) -> set[bytes]:
        with self.lock:
            return {v for msgs in self.seen.values() for _, v in msgs}

    def last_commit(self) -> dict[int, int]:
        """What the group had committed, by our successful commits, up to now."""
        with self.lock:
            merged: dict[int, int] = {}
            for _, offsets in self.commits:
                merged.update(offsets)
            return merged

    def _commit(self, consumer: Consumer) -> None:
        with self.lock:
            positions = dict(self.positions)
        committed = self.last_commit()
        todo = {p: o for p, o in positions.items() if committed.get(p) != o}
        if not todo:
            return
        try:
            result = consumer.commit(offsets=[TopicPartition(self.topic, p, o)
                                              for p, o in todo.items()], asynchronous=False)
        except Exception as exc:  # KafkaException: recorded, retried at the next interval
            with self.lock:
                self.commit_errors.append(repr(exc))
            return
        done = {}
        for tp in result or []:
            if tp.error is None:
                done[tp.partition] = tp.offset
            else:
                with self.lock:
                    self.commit_errors.append(tp.error.name())
        with self.lock:
            self.commits.append((time.monotonic(), done))

    def run(self) -> None:
        try:
            consumer = Consumer(self.conf)
            consumer.subscribe([self.topic], on_assign=self._on_assign)
            next_commit = time.monotonic() + self.commit_interval
            while not self._stopping.is_set():
                for msg in consumer.consume(num_messages=500, timeout=0.2):
                    err = msg.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            with self.lock:
                                self.poll_errors.append(err)
                        continue
                    with self.lock:
                        self.seen.setdefault(msg.partition(), []).append(
                            (msg.offset(), msg.value()))
                        self.positions[msg.partition()] = msg.offset() + 1
                if time.monotonic() >= next_commit:
                    self._commit(consumer)
                    next_commit = time.monotonic() + self.commit_interval
            self._commit(consumer)
            consumer.close()
        except BaseException as exc:
            self.exception = exc

    def stop(self, timeout: float = 60.0) -> None:
        self._stopping.set()
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} did not stop in {timeout} s"
        if self.exception is not None:
            raise self.exception

    def summary(self) -> str:
        with self.lock:
            return (f"{self.name}: seen {sum(len(v) for v in self.seen.values())}, "
                    f"assignments {self.assignments}, commits {len(self.commits)}, commit errors "
                    f"{sorted(set(self.commit_errors))}, poll errors "
                    f"{sorted({e.name() for e in self.poll_errors})}, client errors "
                    f"{sorted({e.name() for e in self.client_errors})}")


def committed_offsets(cluster: Cluster, group: str, topic: str, partitions: int,
                      ids: Iterable[int] | None = None, timeout: float = 20.0
                      ) -> dict[int, int]:
    """The group's committed offsets (OffsetFetch through a client that does not join)."""
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap_all(ids), "group.id": group,
                         "enable.auto.commit": False, **COMMON})
    try:
        result = consumer.committed([TopicPartition(topic, p) for p in range(partitions)],
                                    timeout=timeout)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in result}


# -- reading back -----------------------------------------------------------------------------


def read_partitions(bootstrap: str, topic: str, partitions: int, timeout: float = 60.0
                    ) -> dict[int, list[tuple[int, bytes]]]:
    """Every record of each partition from its log start to its high watermark."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "replication-check",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "enable.partition.eof": True, "check.crcs": True, **COMMON})
    out: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(partitions)}
    try:
        ends = {}
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                       timeout=timeout)
            ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)
                         if ends[p] > 0])
        pending = {p for p in range(partitions) if ends[p] > 0}
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise AssertionError(f"reading {topic} back: partitions {sorted(pending)} "
                                     f"not read to {ends} in {timeout} s")
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        LOG.info("reading back: %s", err)
                    continue
                p = msg.partition()
                out[p].append((msg.offset(), msg.value()))
                if msg.offset() + 1 >= ends[p]:
                    pending.discard(p)
    finally:
        consumer.close()
    return out


def high_watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "replication-check",
                         **COMMON})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=20)[1]
                for p in range(partitions)}
    finally:
        consumer.close()


@dataclass(frozen=True)
class Batch:
    base_offset: int
    last_offset: int
    leader_epoch: int
    crc: int


def log_batches(broker: ClusterBroker, topic: str, partition: int) -> list[Batch]:
    """The batches of ``topic-partition`` as ``broker``'s segment files hold them (CRC
    checked), in offset order; a torn batch at the very end (a SIGKILL mid-write) is left
    out."""
    directory = Path(broker.data_dir) / f"{topic}-{partition}"
    batches: list[Batch] = []
    for path in sorted(directory.glob("*.log")):
        data = path.read_bytes()
        for _, h in iter_batches(data, validate=True, allow_partial=True):
            batches.append(Batch(h.base_offset, h.last_offset, h.partition_leader_epoch,
                                 h.crc))
    return batches


def assert_replicas_identical(cluster: Cluster, topic: str, partitions: int,
                              hws: dict[int, int], replicas: Iterable[int] | None = None
                              ) -> dict[int, int]:
    """Every replica holds the same batches (offset, leader epoch, CRC) below each
    partition's high watermark, and they cover it without gaps. Returns batches per
    partition."""
    ids = list(cluster.broker_ids if replicas is None else replicas)
    counts = {}
    for p in range(partitions):
        hw = hws[p]
        per_broker = {i: [b for b in log_batches(cluster.brokers[i], topic, p)
                          if b.base_offset < hw] for i in ids}
        reference = per_broker[ids[0]]
        for i in ids[1:]:
            if per_broker[i] != reference:
                diff = next((n for n, (a, b) in enumerate(zip(reference, per_broker[i],
                                                               strict=False)) if a != b),
                            min(len(reference), len(per_broker[i])))
                raise AssertionError(
                    f"{topic}-{p}: broker {i}'s log differs from broker {ids[0]}'s below the "
                    f"high watermark {hw} at batch #{diff}: "
                    f"{reference[diff:diff + 2]} vs {per_broker[i][diff:diff + 2]}")
        assert reference, f"{topic}-{p}: no batches below the high watermark {hw}"
        assert reference[-1].last_offset == hw - 1, (
            f"{topic}-{p}: batches end at {reference[-1].last_offset}, high watermark {hw}")
        for a, b in zip(reference, reference[1:], strict=False):
            assert b.base_offset == a.last_offset + 1, f"{topic}-{p}: gap/overlap {a} {b}"
            assert b.leader_epoch >= a.leader_epoch, f"{topic}-{p}: epochs go back {a} {b}"
        counts[p] = len(reference)
    return counts


def check_acknowledged(writers: Iterable[Writer], logs: dict[int, list[tuple[int, bytes]]],
                       extra: Iterable[tuple[bytes, tuple[int, int]]] = ()
                       ) -> dict[str, int]:
    """The Jepsen accounting: every acknowledged message is in the final log once, at the
    offset its acknowledgement gave; no value appears twice; per partition each writer's
    sequence numbers only increase (order kept). Returns counts for the report."""
    where: dict[bytes, list[tuple[int, int]]] = {}
    for p, records in logs.items():
        for offset, value in records:
            where.setdefault(value, []).append((p, offset))
    duplicates = {v: locs for v, locs in where.items() if len(locs) > 1}
    missing: list[tuple[bytes, tuple[int, int]]] = []
    moved: list[tuple[bytes, tuple[int, int], list[tuple[int, int]]]] = []
    items: list[tuple[bytes, tuple[int, int]]] = list(extra)
    for w in writers:
        with w.lock:
            items += list(w.acked.items())
    acked = len(items)
    for value, loc in items:
        found = where.get(value)
        if found is None:
            missing.append((value, loc))
        elif loc not in found:
            moved.append((value, loc, found))
    unordered = []
    for p, records in logs.items():
        last: dict[bytes, int] = {}
        for offset, value in records:
            prefix, _, seq = value.rpartition(b":")
            if int(seq) <= last.get(prefix, -1):
                unordered.append((p, offset, value))
            last[prefix] = int(seq)
    assert not missing, f"{len(missing)} acknowledged messages missing: {missing[:10]}"
    assert not moved, f"{len(moved)} acknowledged messages at other offsets: {moved[:10]}"
    assert not duplicates, f"{len(duplicates)} duplicated: {list(duplicates.items())[:10]}"
    assert not unordered, f"{len(unordered)} out of order: {unordered[:10]}"
    return {"acked": acked, "in_log": len(where)}
