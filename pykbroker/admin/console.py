"""``pykbroker produce`` and ``pykbroker consume``: stdin to a topic, a topic to stdout."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

from pykbroker.admin.client import AdminClient, KafkaError, check, error_name
from pykbroker.admin.output import text
from pykbroker.error_codes import ErrorCode
from pykbroker.records import NewRecord, build_batch, iter_batches, iter_records

PRODUCE = 0
FETCH = 1
LATEST, EARLIEST = -1, -2
PROGRESS_EVERY = 10_000
MAX_BATCH_BYTES = 512 * 1024
_RETRY_PRODUCE = {int(ErrorCode.NOT_LEADER_OR_FOLLOWER), int(ErrorCode.LEADER_NOT_AVAILABLE),
                  int(ErrorCode.REQUEST_TIMED_OUT), int(ErrorCode.NOT_ENOUGH_REPLICAS),
                  int(ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND),
                  int(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)}


def run(client: AdminClient, args: argparse.Namespace) -> int:
    if args.command == "produce":
        return produce(client, args, sys.stdin.buffer)
    return consume(client, args, sys.stdout)


# -- produce -------------------------------------------------------------------------------

def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (as ``Utils.murmur2``), the default partitioner's key hash."""
    length = len(data)
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length % 4
    base = length - tail
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, count: int) -> int:
    """The Java client's default partition for a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % count


def _lines(stream: BinaryIO) -> Iterator[bytes]:
    for line in stream:
        if line.endswith(b"\n"):
            line = line[:-1]
            if line.endswith(b"\r"):
                line = line[:-1]
        yield line


class _Producer:
    def __init__(self, client: AdminClient, topic: str, fixed: int | None) -> None:
        self.client, self.topic = client, topic
        self.leaders = client.leaders(topic)
        if fixed is not None and fixed not in self.leaders:
            raise KafkaError(f"topic {topic} has no partition {fixed}")
        self.fixed = fixed
        self.pending: dict[int, list[NewRecord]] = {}
        self.pending_bytes = 0
        self.sticky = 0
        self.sent = 0

    def partition(self, key: bytes | None) -> int:
        if self.fixed is not None:
            return self.fixed
        if key is not None:
            return partition_for(key, len(self.leaders))
        return self.sticky

    def add(self, record: NewRecord) -> None:
        self.pending.setdefault(self.partition(record.key), []).append(record)
        self.pending_bytes += len(record.key or b"") + len(record.value or b"") + 16

    def flush(self) -> None:
        from pykbroker.protocol._generated.produce_request import (
            PartitionProduceData,
            ProduceRequest,
            TopicProduceData,
        )

        batches = {p: build_batch(recs) for p, recs in self.pending.items() if recs}
        count = sum(len(r) for r in self.pending.values())
        self.pending, self.pending_bytes = {}, 0
        self.sticky = (self.sticky + 1) % len(self.leaders)  # unkeyed: next partition
        for attempt in range(8):
            if not batches:
                break
            by_node: dict[int, list[int]] = {}
            for p in batches:
                by_node.setdefault(self.leaders[p], []).append(p)
            retry: dict[int, bytes] = {}
            for node, parts in by_node.items():
                req = ProduceRequest(transactional_id=None, acks=-1, timeout_ms=30_000,
                                     topic_data=[TopicProduceData(self.topic, [
                                         PartitionProduceData(p, batches[p]) for p in parts])])
                resp = self.client.send(PRODUCE, req, node=node)
                for t in resp.responses:
                    for pr in t.partition_responses:
                        if pr.error_code in _RETRY_PRODUCE and attempt < 7:
                            retry[pr.index] = batches[pr.index]
                        else:
                            check(pr.error_code, f"producing to {self.topic}-{pr.index}",
                                  getattr(pr, "error_message", None))
            batches = retry
            if retry:
                time.sleep(min(0.1 * 2 ** attempt, 2.0))
                self.leaders = self.client.leaders(self.topic)
        self.sent += count


def produce(client: AdminClient, args: argparse.Namespace, stream: BinaryIO) -> int:
    producer = _Producer(client, args.topic, args.partition)
    sep = args.key_separator.encode() if args.key_separator else None
    batch_size = max(1, args.batch_size)
    started, buffered = time.monotonic(), 0
    for line in _lines(stream):
        key: bytes | None = None
        value = line
        if sep is not None:
            k, found, v = line.partition(sep)
            if found:
                key, value = k, v
        producer.add(NewRecord(key, value))
        buffered += 1
        if buffered >= batch_size or producer.pending_bytes >= MAX_BATCH_BYTES:
            before = producer.sent
            producer.flush()
            buffered = 0
            if producer.sent // PROGRESS_EVERY != before // PROGRESS_EVERY:
                print(f"{producer.sent} records sent", file=sys.stderr, flush=True)
    if buffered:
        producer.flush()
    elapsed = time.monotonic() - started
    if args.json:
        print(json.dumps({"topic": args.topic, "records": producer.sent,
                          "seconds": round(elapsed, 3)}))
    elif producer.sent >= PROGRESS_EVERY:
        print(f"{producer.sent} records sent in {elapsed:.1f} s", file=sys.stderr)
    return 0


# -- consume -------------------------------------------------------------------------------

def _format(topic: str, partition: int, record: Any, args: argparse.Namespace) -> str:
    if args.json:
        return json.dumps({
            "topic": topic, "partition": partition, "offset": record.offset,
            "timestamp": record.timestamp, "key": text(record.key), "value": text(record.value),
            "headers": [[k if isinstance(k, str) else text(k), text(v)]
                        for k, v in record.headers],
        })
    value = text(record.value) or ""
    if args.key_separator is not None:
        return f"{text(record.key) or ''}{args.key_separator}{value}"
    return value


def consume(client: AdminClient, args: argparse.Namespace, out: Any) -> int:
    from pykbroker.protocol._generated.fetch_request import (
        FetchPartition,
        FetchRequest,
        FetchTopic,
    )

    topic = args.topic
    leaders = client.leaders(topic)
    parts = sorted(leaders) if args.partition is None else [args.partition]
    if args.partition is not None and args.partition not in leaders:
        raise KafkaError(f"topic {topic} has no partition {args.partition}")
    positions = client.list_offsets(topic, parts, EARLIEST if args.from_beginning else LATEST)
    remaining = args.count
    timeout = None if args.timeout_ms is None else args.timeout_ms / 1000
    last_record = time.monotonic()
    while remaining is None or remaining > 0:
        if timeout is not None and time.monotonic() - last_record >= timeout:
            break
        wait_ms = 500 if timeout is None else max(10, min(500, int(timeout * 1000)))
        by_node: dict[int, list[int]] = {}
        for p in parts:
            by_node.setdefault(leaders[p], []).append(p)
        got = False
        refresh = False
        for node, node_parts in by_node.items():
            req = FetchRequest(replica_id=-1, max_wait_ms=wait_ms, min_bytes=1,
                               max_bytes=50 * 1024 * 1024, isolation_level=0,
                               session_id=0, session_epoch=-1,
                               topics=[FetchTopic(topic=topic, partitions=[
                                   FetchPartition(partition=p, fetch_offset=positions[p],
                                                  partition_max_bytes=1024 * 1024)
                                   for p in node_parts])],
                               forgotten_topics_data=[], rack_id="")
            resp = client.send(FETCH, req, node=node)
            if getattr(resp, "error_code", 0):
                check(resp.error_code, "Fetch")
            for t in resp.responses:
                for pd in t.partitions:
                    p = pd.partition_index
                    if pd.error_code == ErrorCode.OFFSET_OUT_OF_RANGE:
                        positions[p] = client.list_offsets(
                            topic, [p], EARLIEST if args.from_beginning else LATEST)[p]
                        continue
                    if pd.error_code in (ErrorCode.NOT_LEADER_OR_FOLLOWER,
                                         ErrorCode.LEADER_NOT_AVAILABLE,
                                         ErrorCode.UNKNOWN_LEADER_EPOCH):
                        refresh = True
                        continue
                    if pd.error_code:
                        raise KafkaError(f"fetching {topic}-{p}: {error_name(pd.error_code)}",
                                         pd.error_code)
                    data = pd.records or b""
                    for pos, header in iter_batches(data, allow_partial=True):
                        if header.is_control:
                            positions[p] = max(positions[p], header.next_offset)
                            continue
                        for record in iter_records(data, pos):
                            if record.offset < positions[p]:
                                continue
                            out.write(_format(topic, p, record, args) + "\n")
                            positions[p] = record.offset + 1
                            got = True
                            if remaining is not None:
                                remaining -= 1
                                if remaining == 0:
                                    out.flush()
                                    return 0
                        positions[p] = max(positions[p], header.next_offset)
        out.flush()
        if got:
            last_record = time.monotonic()
        if refresh:
            time.sleep(0.2)
            leaders = client.leaders(topic)
    if args.count is not None and remaining:
        print(f"timed out after {args.count - remaining} of {args.count} records",
              file=sys.stderr)
        return 1
    return 0
