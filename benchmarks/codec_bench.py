"""Codec throughput: pykbroker's generated codecs beside kafka-python 3.0.12's, in one run.

Cases (the wire bytes are built once and shared by both sides):

* Produce v9 request   - 1 topic x 16 partitions, each a real 64 KiB v2 record batch
* Fetch v12 response   - 1 topic x 16 partitions, each a real 64 KiB v2 record batch
* Metadata v12 response - 3 brokers, 10 topics x 100 partitions, 3 replicas, 3 in-sync

For each case we time

* ``decode``   - bytes -> message object.  Ours: ``Cls.decode(buf, 0, version)``;
  kafka-python: ``Cls.decode(buf, version=version)``.
* ``encode``   - already-built object -> bytearray.  Ours: ``obj.encode(bytearray(), v)``;
  kafka-python: ``obj.encode(version=v)`` (which returns a bytearray).
* ``to_bytes`` - already-built object -> bytes.  Ours: ``obj.to_bytes(v)``;
  kafka-python: ``bytes(obj.encode(version=v))``.

kafka-python ships two codecs.  Its schema-driven one (``kafka.protocol.producer`` etc.,
built from the JSON schemas and compiled to flat functions at first use) implements all three
versions above.  Its classic hand-written one (``kafka.protocol.old``) stops at Produce v8,
Fetch v11 and Metadata v8 (no flexible versions for these APIs), so it cannot take part in the
main cases; the script says so and adds a reference section that compares ours with the
classic codec at those older versions instead.

Before timing, every case checks that ours and kafka-python produce byte-identical encodings
of the same message and that each side decodes those bytes back into an object that re-encodes
to the same bytes (and agrees with the other side on sample values).

Method: ``time.perf_counter``; per row, after calibration and one warm-up run per side,
``--reps`` timed runs of at least ``--min-time`` seconds each, ours and kafka-python
interleaved run by run; the median run gives ops/s.  MB/s is ops/s x wire size / 10**6.
GC stays enabled (as in a broker); ``gc.collect()`` runs before every timed run.  Each row is
timed in a fresh worker process (``--in-process`` turns that off): with megabyte messages the
cost of growing and copying buffers depends on the allocator's history, so every row starts
from the same state rather than from whatever the previous rows left behind.  The
``faults/op`` column (minor page faults per operation) shows when a row paid for fresh pages.

Usage::

    .venv/bin/python benchmarks/codec_bench.py            # ~75 s on 2 cores
    .venv/bin/python benchmarks/codec_bench.py --quick    # ~30 s, noisier
    .venv/bin/python benchmarks/codec_bench.py --json     # only the JSON object
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kafka
from kafka.protocol.consumer import FetchResponse as KpFetchResponse
from kafka.protocol.metadata import MetadataResponse as KpMetadataResponse
from kafka.protocol.old import fetch as kp_old_fetch
from kafka.protocol.old import metadata as kp_old_metadata
from kafka.protocol.old import produce as kp_old_produce
from kafka.protocol.producer import ProduceRequest as KpProduceRequest
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from pykbroker.protocol._generated import fetch_response as our_fetch
from pykbroker.protocol._generated import metadata_response as our_metadata
from pykbroker.protocol._generated import produce_request as our_produce

BATCH_SIZE = 64 * 1024
N_PARTITIONS = 16
META_TOPICS = 10
META_PARTITIONS_PER_TOPIC = 100
META_BROKERS = 3
NO_AUTH_OPS = -2147483648  # INT32_MIN: "authorized operations not requested"

Op = Callable[[], object]


class VerifyError(AssertionError):
    pass


def check(cond: bool, what: str) -> None:
    if not cond:
        raise VerifyError(what)


# -- inputs ------------------------------------------------------------------------------------

def make_record_batch(seed: int, size: int = BATCH_SIZE) -> bytes:
    """A real, uncompressed v2 record batch of exactly ``size`` bytes (1 KiB values)."""
    rnd = random.Random(seed)
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=False,
        producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=size)
    ts = 1_700_000_000_000 + seed * 1000
    offset = 0
    while True:
        value = rnd.randbytes(1024)
        key = b"key-%08d" % offset
        needed = DefaultRecordBatchBuilder.size_in_bytes(offset, 0, key, value, [])
        if builder.size() + needed > size:
            break
        builder.append(offset, ts, key, value, [])
        offset += 1
    # Fill the rest exactly with one last record whose value is sized to fit.
    room = size - builder.size()
    for vlen in range(room, -1, -1):
        value = rnd.randbytes(vlen)
        if builder.size() + DefaultRecordBatchBuilder.size_in_bytes(
                offset, 0, b"last", value, []) == size:
            builder.append(offset, ts, b"last", value, [])
            break
    batch = bytes(builder.build())
    check(DefaultRecordBatch(batch).validate_crc(), "record batch CRC")
    return batch


def make_batches() -> list[bytes]:
    return [make_record_batch(seed) for seed in range(N_PARTITIONS)]


def topic_uuid(i: int) -> uuid.UUID:
    return uuid.UUID(int=random.Random(1000 + i).getrandbits(128), version=4)


# -- messages: (ours, kafka-python schema codec, kafka-python classic codec) --------------------

def produce_ours(batches: list[bytes]) -> Any:
    return our_produce.ProduceRequest(
        transactional_id=None, acks=-1, timeout_ms=30000,
        topic_data=[our_produce.TopicProduceData(
            name="bench-topic",
            partition_data=[our_produce.PartitionProduceData(index=i, records=b)
                            for i, b in enumerate(batches)])])


def produce_kp(batches: list[bytes], version: int) -> Any:
    topic_cls = KpProduceRequest.TopicProduceData
    part_cls = topic_cls.PartitionProduceData
    return KpProduceRequest(
        version=version, transactional_id=None, acks=-1, timeout_ms=30000,
        topic_data=[topic_cls(
            name="bench-topic",
            partition_data=[part_cls(index=i, records=b) for i, b in enumerate(batches)])])


def produce_classic(batches: list[bytes]) -> Any:
    return kp_old_produce.ProduceRequest_v8(
        None, -1, 30000, [("bench-topic", [(i, b) for i, b in enumerate(batches)])])


def _hw(i: int) -> int:
    return 1_000_000 + 1000 * i


def fetch_ours(batches: list[bytes]) -> Any:
    return our_fetch.FetchResponse(
        throttle_time_ms=0, error_code=0, session_id=123456,
        responses=[our_fetch.FetchableTopicResponse(
            topic="bench-topic",
            partitions=[our_fetch.PartitionData(
                partition_index=i, error_code=0, high_watermark=_hw(i),
                last_stable_offset=_hw(i), log_start_offset=0,
                aborted_transactions=None, preferred_read_replica=-1, records=b)
                for i, b in enumerate(batches)])])


def fetch_kp(batches: list[bytes], version: int) -> Any:
    topic_cls = KpFetchResponse.FetchableTopicResponse
    part_cls = topic_cls.PartitionData
    return KpFetchResponse(
        version=version, throttle_time_ms=0, error_code=0, session_id=123456,
        responses=[topic_cls(
            topic="bench-topic",
            partitions=[part_cls(
                partition_index=i, error_code=0, high_watermark=_hw(i),
                last_stable_offset=_hw(i), log_start_offset=0,
                aborted_transactions=None, preferred_read_replica=-1, records=b)
                for i, b in enumerate(batches)])])


def fetch_classic(batches: list[bytes]) -> Any:
    return kp_old_fetch.FetchResponse_v11(
        0, 0, 123456,
        [("bench-topic", [(i, 0, _hw(i), _hw(i), 0, None, -1, b)
                          for i, b in enumerate(batches)])])


def _replicas(t: int, p: int) -> list[int]:
    first = (t + p) % META_BROKERS
    return [(first + k) % META_BROKERS + 1 for k in range(3)]


def _meta_topics() -> list[tuple[str, uuid.UUID, list[tuple[int, int, list[int]]]]]:
    """(name, id, [(partition, leader_epoch, replicas)]) for every topic."""
    return [(f"topic-{t:02d}", topic_uuid(t),
             [(p, 5 + p % 7, _replicas(t, p)) for p in range(META_PARTITIONS_PER_TOPIC)])
            for t in range(META_TOPICS)]


BROKERS = [(n, f"broker-{n}.kafka.internal.example.com", 9092, f"rack-{n}")
           for n in range(1, META_BROKERS + 1)]
CLUSTER_ID = "q2ZyvQ9tRnaVzTyrVF3mVw"


def metadata_ours() -> Any:
    m = our_metadata
    return m.MetadataResponse(
        throttle_time_ms=0,
        brokers=[m.MetadataResponseBroker(node_id=n, host=h, port=port, rack=r)
                 for n, h, port, r in BROKERS],
        cluster_id=CLUSTER_ID, controller_id=1,
        topics=[m.MetadataResponseTopic(
            error_code=0, name=name, topic_id=tid, is_internal=False,
            partitions=[m.MetadataResponsePartition(
                error_code=0, partition_index=p, leader_id=reps[0], leader_epoch=epoch,
                replica_nodes=list(reps), isr_nodes=list(reps), offline_replicas=[])
                for p, epoch, reps in parts],
            topic_authorized_operations=NO_AUTH_OPS)
            for name, tid, parts in _meta_topics()])


def metadata_kp(version: int) -> Any:
    broker_cls = KpMetadataResponse.MetadataResponseBroker
    topic_cls = KpMetadataResponse.MetadataResponseTopic
    part_cls = topic_cls.MetadataResponsePartition
    return KpMetadataResponse(
        version=version, throttle_time_ms=0,
        brokers=[broker_cls(node_id=n, host=h, port=port, rack=r) for n, h, port, r in BROKERS],
        cluster_id=CLUSTER_ID, controller_id=1,
        topics=[topic_cls(
            error_code=0, name=name, topic_id=tid, is_internal=False,
            partitions=[part_cls(
                error_code=0, partition_index=p, leader_id=reps[0], leader_epoch=epoch,
                replica_nodes=list(reps), isr_nodes=list(reps), offline_replicas=[])
                for p, epoch, reps in parts],
            # kafka-python patches this INT32 into a bit set; None is "not requested".
            authorized_operations=None)
            for name, tid, parts in _meta_topics()],
        authorized_operations=None)


def metadata_classic() -> Any:
    return kp_old_metadata.MetadataResponse_v8(
        0, list(BROKERS), CLUSTER_ID, 1,
        [(0, name, False,
          [(0, p, reps[0], epoch, list(reps), list(reps), []) for p, epoch, reps in parts],
          {31})  # classic BitField: {31} is INT32_MIN, "not requested"
         for name, _tid, parts in _meta_topics()],
        {31})


# -- cases ---------------------------------------------------------------------------------------

@dataclass
class Case:
    message: str        # "Produce v9 request"
    version: int
    kp_codec: str       # "schema" or "classic"
    wire: bytes         # the shared input for decode
    ops: dict[str, tuple[Op, Op]]  # op name -> (ours, kafka-python)
    note: str = ""


@dataclass
class Result:
    message: str
    op: str
    kp_codec: str
    size: int
    ours_ops: float
    kp_ops: float
    ours_runs: list[float] = field(default_factory=list)
    kp_runs: list[float] = field(default_factory=list)
    ours_faults: float = 0.0
    kp_faults: float = 0.0

    @property
    def ratio(self) -> float:
        return self.ours_ops / self.kp_ops


def _walk_records_ours(msg: Any, kind: str) -> list[bytes]:
    if kind == "produce":
        return [bytes(p.records) for t in msg.topic_data for p in t.partition_data]
    return [bytes(p.records) for t in msg.responses for p in t.partitions]


_walk_records_kp = _walk_records_ours  # same attribute names


def _walk_records_classic(msg: Any, kind: str) -> list[bytes]:
    if kind == "produce":
        return [bytes(p[1]) for t in msg.topics for p in t[1]]
    return [bytes(p[-1]) for t in msg.responses for p in t[1]]


def _meta_summary_ours(msg: Any) -> list[tuple[Any, ...]]:
    return [(t.name, p.partition_index, p.leader_id, p.leader_epoch,
             list(p.replica_nodes), list(p.isr_nodes), list(p.offline_replicas))
            for t in msg.topics for p in t.partitions]


_meta_summary_kp = _meta_summary_ours  # same attribute names


def _meta_summary_classic(msg: Any) -> list[tuple[Any, ...]]:
    return [(t[1], p[1], p[2], p[3], list(p[4]), list(p[5]), list(p[6]))
            for t in msg.topics for p in t[3]]


def _bytes_ours(obj: Any, version: int) -> bytes:
    return bytes(obj.to_bytes(version))


def build_cases() -> tuple[list[Case], list[str]]:
    """The main cases (vs kafka-python's schema codec) and the classic-codec reference cases."""
    notes: list[str] = []
    batches = make_batches()
    for b in batches:
        check(len(b) == BATCH_SIZE, f"record batch is {len(b)} bytes, wanted {BATCH_SIZE}")

    classic_max = {
        "Produce": max(c.API_VERSION for c in kp_old_produce.ProduceRequest),
        "Fetch": max(c.API_VERSION for c in kp_old_fetch.FetchResponse),
        "Metadata": max(c.API_VERSION for c in kp_old_metadata.MetadataResponse),
    }
    for api, want in (("Produce", 9), ("Fetch", 12), ("Metadata", 12)):
        if classic_max[api] < want:
            notes.append(
                f"kafka-python classic codec (kafka.protocol.old) has no {api} v{want} "
                f"(newest: v{classic_max[api]}); the {api} v{want} rows use its schema codec "
                f"only, and a reference row compares ours with the classic codec at "
                f"v{classic_max[api]}.")

    cases: list[Case] = []
    ours_cls: Any
    kp_cls: Any

    # Main cases: ours vs kafka-python's schema-driven codec.
    specs: list[tuple[str, str, int, Any, Any, Any, Any, str]] = [
        ("Produce v9 request", "produce", 9, our_produce.ProduceRequest, KpProduceRequest,
         lambda v: produce_ours(batches), lambda v: produce_kp(batches, v),
         f"1 topic x {N_PARTITIONS} partitions x {BATCH_SIZE // 1024} KiB v2 batches"),
        ("Fetch v12 response", "fetch", 12, our_fetch.FetchResponse, KpFetchResponse,
         lambda v: fetch_ours(batches), lambda v: fetch_kp(batches, v),
         f"1 topic x {N_PARTITIONS} partitions x {BATCH_SIZE // 1024} KiB v2 batches"),
        ("Metadata v12 response", "metadata", 12, our_metadata.MetadataResponse,
         KpMetadataResponse, lambda v: metadata_ours(), lambda v: metadata_kp(v),
         f"{META_BROKERS} brokers, {META_TOPICS} topics x {META_PARTITIONS_PER_TOPIC} "
         f"partitions, RF 3"),
    ]
    for message, kind, version, ours_cls, kp_cls, mk_ours, mk_kp, note in specs:
        ours_obj = mk_ours(version)
        kp_obj = mk_kp(version)
        wire = _bytes_ours(ours_obj, version)
        kp_wire = bytes(kp_obj.encode(version=version))
        check(wire == kp_wire, f"{message}: ours and kafka-python encode different bytes "
                               f"({len(wire)} vs {len(kp_wire)})")
        ours_dec, end = ours_cls.decode(wire, 0, version)
        check(end == len(wire), f"{message}: ours decoded {end} of {len(wire)} bytes")
        kp_dec = kp_cls.decode(wire, version=version)
        check(_bytes_ours(ours_dec, version) == wire, f"{message}: ours decode->encode differs")
        # (a decoded kafka-python message carries its version but lacks `_header`, so
        # encode(version=...) raises AttributeError in 3.0.12; encode() uses the version.)
        check(kp_dec.version == version and bytes(kp_dec.encode()) == wire,
              f"{message}: kafka-python decode->encode differs")
        if kind == "metadata":
            check(_meta_summary_ours(ours_dec) == _meta_summary_kp(kp_dec),
                  f"{message}: decoded partitions differ")
            check([t.topic_id for t in ours_dec.topics] == [t.topic_id for t in kp_dec.topics],
                  f"{message}: decoded topic ids differ")
        else:
            check(_walk_records_ours(ours_dec, kind) == _walk_records_kp(kp_dec, kind)
                  == batches, f"{message}: decoded records differ")
        cases.append(Case(message, version, "schema", wire,
                          _ops(ours_cls, kp_cls, ours_obj, kp_obj, wire, version, False), note))

    # Reference cases: ours vs the classic codec at the classic codec's newest version.
    ref_specs: list[tuple[str, str, int, Any, Any, Any, Any]] = [
        (f"Produce v{classic_max['Produce']} request", "produce", classic_max["Produce"],
         our_produce.ProduceRequest, kp_old_produce.ProduceRequest[classic_max["Produce"]],
         produce_ours(batches), produce_classic(batches)),
        (f"Fetch v{classic_max['Fetch']} response", "fetch", classic_max["Fetch"],
         our_fetch.FetchResponse, kp_old_fetch.FetchResponse[classic_max["Fetch"]],
         fetch_ours(batches), fetch_classic(batches)),
        (f"Metadata v{classic_max['Metadata']} response", "metadata", classic_max["Metadata"],
         our_metadata.MetadataResponse,
         kp_old_metadata.MetadataResponse[classic_max["Metadata"]],
         metadata_ours(), metadata_classic()),
    ]
    for message, kind, version, ours_cls, kp_cls, ours_obj, kp_obj in ref_specs:
        check(kp_cls.API_VERSION == version, f"{message}: classic class has wrong version")
        wire = _bytes_ours(ours_obj, version)
        kp_wire = bytes(kp_obj.encode())
        check(wire == kp_wire, f"{message}: ours and classic encode different bytes "
                               f"({len(wire)} vs {len(kp_wire)})")
        ours_dec, end = ours_cls.decode(wire, 0, version)
        check(end == len(wire), f"{message}: ours decoded {end} of {len(wire)} bytes")
        kp_dec = kp_cls.decode(wire)
        check(_bytes_ours(ours_dec, version) == wire, f"{message}: ours decode->encode differs")
        check(bytes(kp_dec.encode()) == wire, f"{message}: classic decode->encode differs")
        if kind == "metadata":
            check(_meta_summary_ours(ours_dec) == _meta_summary_classic(kp_dec),
                  f"{message}: decoded partitions differ")
        else:
            check(_walk_records_ours(ours_dec, kind) == _walk_records_classic(kp_dec, kind)
                  == batches, f"{message}: decoded records differ")
        cases.append(Case(message, version, "classic", wire,
                          _ops(ours_cls, kp_cls, ours_obj, kp_obj, wire, version, True)))
    return cases, notes


def _ops(ours_cls: Any, kp_cls: Any, ours_obj: Any, kp_obj: Any, wire: bytes, version: int,
         classic: bool) -> dict[str, tuple[Op, Op]]:
    ours_decode = ours_cls.decode
    ours_encode = ours_obj.encode
    ours_to_bytes = ours_obj.to_bytes
    kp_decode = kp_cls.decode
    kp_encode = kp_obj.encode

    def o_decode() -> object:
        return ours_decode(wire, 0, version)

    def o_encode() -> object:
        out = bytearray()
        ours_encode(out, version)
        return out

    def o_to_bytes() -> object:
        return ours_to_bytes(version)

    if classic:
        # Classic API: version lives in the class; decode wraps bytes in BytesIO itself;
        # encode returns bytes already.
        def k_decode() -> object:
            return kp_decode(wire)

        def k_encode() -> object:
            return kp_encode()

        return {"decode": (o_decode, k_decode), "to_bytes": (o_to_bytes, k_encode)}

    def s_decode() -> object:
        return kp_decode(wire, version=version)

    def s_encode() -> object:
        return kp_encode(version=version)

    def s_to_bytes() -> object:
        return bytes(kp_encode(version=version))

    return {"decode": (o_decode, s_decode), "encode": (o_encode, s_encode),
            "to_bytes": (o_to_bytes, s_to_bytes)}


# -- timing --------------------------------------------------------------------------------------

def _minflt() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _run(fn: Op, n: int) -> tuple[float, int]:
    """Seconds for ``n`` calls, and the minor page faults they caused."""
    gc.collect()
    f0 = _minflt()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    dt = time.perf_counter() - t0
    return dt, _minflt() - f0


def _calibrate(fn: Op, min_time: float) -> int:
    """Iterations for one run of about ``min_time`` seconds (also serves as warm-up)."""
    n = 1
    while True:
        dt, _ = _run(fn, n)
        if dt >= min_time / 4:
            return max(1, int(n * min_time / dt * 1.1) + 1)
        n = n * 4 if dt < min_time / 40 else n * 2


@dataclass
class Timing:
    rates: list[float]   # ops/s of each timed run
    faults: float        # minor page faults per op over all timed runs


def measure(ours: Op, kp: Op, reps: int, min_time: float) -> tuple[Timing, Timing]:
    n_ours = _calibrate(ours, min_time)
    n_kp = _calibrate(kp, min_time)
    _run(ours, n_ours)  # warm-up at full length
    _run(kp, n_kp)
    side: dict[str, Timing] = {"ours": Timing([], 0.0), "kp": Timing([], 0.0)}
    for _ in range(reps):  # interleave so that noise from neighbours hits both sides alike
        for name, fn, n in (("ours", ours, n_ours), ("kp", kp, n_kp)):
            dt, faults = _run(fn, n)
            side[name].rates.append(n / dt)
            side[name].faults += faults / (n * reps)
    return side["ours"], side["kp"]


# -- output --------------------------------------------------------------------------------------

def _fmt_rate(ops: float) -> str:
    return f"{ops:,.0f}" if ops >= 100 else f"{ops:,.1f}"


def render_table(results: list[Result]) -> str:
    header = ("message", "op", "kafka-python codec", "size", "ours ops/s", "ours MB/s",
              "kp ops/s", "kp MB/s", "ours/kp", "faults/op ours|kp")
    rows = [header]
    for r in results:
        rows.append((r.message, r.op, r.kp_codec, f"{r.size / 1024:,.0f} KiB",
                     _fmt_rate(r.ours_ops), f"{r.ours_ops * r.size / 1e6:,.0f}",
                     _fmt_rate(r.kp_ops), f"{r.kp_ops * r.size / 1e6:,.0f}",
                     f"{r.ratio:.2f}x", f"{r.ours_faults:.0f} | {r.kp_faults:.0f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    left = {0, 1, 2}
    lines = []
    for k, row in enumerate(rows):
        cells = [c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in
                 enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true",
                    help="3 runs of >=0.1 s each instead of 5 of >=0.3 s (noisier)")
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    ap.add_argument("--reps", type=int, default=None, help="timed runs per measurement")
    ap.add_argument("--min-time", type=float, default=None,
                    help="minimum seconds per timed run")
    ap.add_argument("--no-classic", action="store_true",
                    help="skip the reference rows against kafka-python's classic codec")
    ap.add_argument("--in-process", action="store_true",
                    help="time everything in this process instead of one fresh worker "
                         "process per (message, op)")
    ap.add_argument("--worker", metavar="CASE:OP", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    reps = args.reps or (3 if args.quick else 5)
    min_time = args.min_time or (0.1 if args.quick else 0.3)

    if args.worker:
        return _worker(args.worker, reps, min_time)

    def say(msg: str = "") -> None:
        if not args.json:
            print(msg, flush=True)

    progress = not args.json and sys.stderr.isatty()
    started = time.perf_counter()
    say(f"pykbroker codec benchmark - Python {platform.python_version()} "
        f"({platform.python_implementation()}), kafka-python {kafka.__version__}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs; {reps} runs of >= {min_time:g} s "
        f"per side, median; {'one process' if args.in_process else 'one worker process per row'}")
    cases, notes = build_cases()
    say("startup check: ours and kafka-python encode byte-identical messages, and each "
        "decodes them back losslessly - OK")
    for note in notes:
        say(f"note: {note}")
    say("note: ours decodes `records` as zero-copy memoryviews; kafka-python copies them "
        "into bytes.")
    say()

    results: list[Result] = []
    for ci, case in enumerate(cases):
        if case.kp_codec == "classic" and args.no_classic:
            continue
        for op, (ours, kp) in case.ops.items():
            if progress:
                print(f"  timing {case.message} {op} vs {case.kp_codec} ...".ljust(72),
                      end="\r", file=sys.stderr, flush=True)
            if args.in_process:
                o, k = measure(ours, kp, reps, min_time)
            else:
                o, k = _spawn_worker(ci, op, reps, min_time)
            results.append(Result(case.message, op, case.kp_codec, len(case.wire),
                                  statistics.median(o.rates), statistics.median(k.rates),
                                  o.rates, k.rates, o.faults, k.faults))
    if progress:
        print(" " * 72, end="\r", file=sys.stderr, flush=True)

    say(render_table([r for r in results if r.kp_codec == "schema"]))
    classic_rows = [r for r in results if r.kp_codec == "classic"]
    if classic_rows:
        say()
        say("reference: kafka-python's classic codec, at the newest version it has")
        say(render_table(classic_rows))
    say()
    for case in cases:
        if case.note:
            say(f"{case.message}: {len(case.wire):,} bytes on the wire ({case.note})")
    say("MB/s = wire bytes x ops/s / 10**6. faults/op = minor page faults per operation "
        "(fresh pages from the kernel); >0 means part of the row's time is page faults.")
    elapsed = time.perf_counter() - started
    say(f"elapsed {elapsed:.1f} s")

    summary = {
        "python": platform.python_version(),
        "kafka_python": kafka.__version__,
        "cpus": os.cpu_count(),
        "reps": reps,
        "min_time_s": min_time,
        "isolation": "in-process" if args.in_process else "worker-per-row",
        "elapsed_s": round(elapsed, 1),
        "notes": notes,
        "results": [
            {"message": r.message, "op": r.op, "kp_codec": r.kp_codec, "bytes": r.size,
             "ours_ops_s": round(r.ours_ops, 2), "kp_ops_s": round(r.kp_ops, 2),
             "ours_mb_s": round(r.ours_ops * r.size / 1e6, 1),
             "kp_mb_s": round(r.kp_ops * r.size / 1e6, 1),
             "ratio": round(r.ratio, 3),
             "ours_runs_ops_s": [round(x, 2) for x in r.ours_runs],
             "kp_runs_ops_s": [round(x, 2) for x in r.kp_runs],
             "ours_minflt_per_op": round(r.ours_faults, 1),
             "kp_minflt_per_op": round(r.kp_faults, 1)}
            for r in results],
    }
    print(json.dumps(summary, separators=(",", ":")))
    return 0


def _spawn_worker(case_index: int, op: str, reps: int, min_time: float) -> tuple[Timing, Timing]:
    """Time one (message, op) row in a fresh interpreter.

    Large messages make the timings depend on the allocator's history (whether glibc
    trims or reuses freed megabyte buffers, whether bytearray growth can be done in place),
    so every row starts from the same clean state instead of inheriting the previous rows'.
    """
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", f"{case_index}:{op}",
           "--reps", str(reps), "--min-time", str(min_time)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {case_index}:{op} failed:\n{proc.stderr}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return Timing(**data["ours"]), Timing(**data["kp"])


def _worker(spec: str, reps: int, min_time: float) -> int:
    case_index, op = spec.split(":")
    cases, _ = build_cases()
    ours, kp = cases[int(case_index)].ops[op]
    o, k = measure(ours, kp, reps, min_time)
    print(json.dumps({"ours": o.__dict__, "kp": k.__dict__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
