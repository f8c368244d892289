"""Prometheus metrics for one broker, named as JMX-exporter Kafka dashboards query them.

Counters on the hot path (requests, appends, fetched bytes) are plain dict increments; every
family is produced at scrape time by one custom collector, which also reads broker state
(partitions, log sizes, connections, consumer lag). Scrapes run in the broker's trio loop,
so reading that state needs no locking.

Names follow the JMX exporter's ``kafka-2_0_0.yml`` rules (``lowercaseOutputName``) where
Kafka has a counterpart, and kafka-exporter's for consumer lag and partition offsets.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import trio
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.samples import Sample

from pykbroker import __version__
from pykbroker.metrics_observed import ObservedBroker, ObservedCluster, ObservedLogCleaner
from pykbroker.protocol.api import APIS, ApiKey
from pykbroker.server.dispatch import DispatchTable, HandlerSpec
from pykbroker.server.request_context import RequestContext

if TYPE_CHECKING:
    from pykbroker.cluster.replica_manager import Partition
    from pykbroker.records import BatchHeader

log = logging.getLogger("pykbroker.metrics")

# Request latency buckets, in milliseconds (the unit of Kafka's TotalTimeMs).
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)


def request_name(api_key: int) -> str:
    """Kafka's name for an API, as the ``request`` label of RequestMetrics carries it."""
    spec = APIS.get(api_key)
    return spec.name if spec is not None else str(api_key)


class _Histogram:
    __slots__ = ("buckets", "total", "count")

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BUCKETS_MS) + 1)  # the last one is +Inf
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS_MS, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*LATENCY_BUCKETS_MS, float("inf")), self.buckets, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return out


class BrokerMetrics:
    """The broker's counters, its scrape-time collector, and the HTTP endpoint's routes."""

    def __init__(self, broker: ObservedBroker) -> None:
        self.broker = broker
        self.requests: dict[tuple[int, int], int] = defaultdict(int)
        self.latency: dict[tuple[int, int], _Histogram] = {}
        self.messages_in: dict[str, int] = defaultdict(int)
        self.bytes_in: dict[str, int] = defaultdict(int)
        self.bytes_out: dict[str, int] = defaultdict(int)
        self.response_bytes: dict[str, int] = defaultdict(int)  # by listener
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_BrokerCollector(self))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    @classmethod
    def for_broker(cls, broker: ObservedBroker) -> BrokerMetrics | None:
        """The broker's metrics, or None when ``metrics.port`` is -1 (off)."""
        if broker.config.metrics_port < 0:
            return None
        return cls(broker)

    # -- hooks on the broker ------------------------------------------------------------------

    def observe_request(self, ctx: RequestContext, seconds: float, response_bytes: int) -> None:
        """NetworkServer's RequestObserver: rate and latency per API and version."""
        key = (ctx.api_key, ctx.api_version)
        self.requests[key] += 1
        hist = self.latency.get(key)
        if hist is None:
            hist = self.latency[key] = _Histogram()
        hist.observe(seconds * 1000.0)
        if response_bytes:
            self.response_bytes[ctx.listener] += response_bytes

    def on_append(self, part: Partition, header: BatchHeader, size: int) -> None:
        """ReplicaManager append listener: messages and bytes in per topic."""
        self.messages_in[part.topic] += header.records_count
        self.bytes_in[part.topic] += size

    def instrument(self, dispatch: DispatchTable) -> DispatchTable:
        """A dispatch table whose Fetch handler also counts record bytes out per topic."""
        specs = [self._count_fetch_bytes(s) if s.api_key == ApiKey.FETCH else s
                 for s in dispatch.supported()]
        return DispatchTable(specs)

    def _count_fetch_bytes(self, spec: HandlerSpec) -> HandlerSpec:
        inner = spec.handler
        bytes_out = self.bytes_out

        async def handler(ctx: RequestContext, req: Any) -> Any:
            resp = await inner(ctx, req)
            for topic in getattr(resp, "responses", None) or ():
                for p in topic.partitions:
                    if p.records:
                        bytes_out[topic.topic] += len(p.records)
            return resp

        return replace(spec, handler=handler)

    # -- HTTP ---------------------------------------------------------------------------------

    def is_ready(self) -> bool:
        """Listeners accept, shutdown has not begun and, in a cluster, the controller's
        first UpdateMetadata has come: until then Metadata answers come from what the
        broker read in ZooKeeper at start-up (no topics yet, perhaps a dead broker)."""
        broker = self.broker
        services = broker.services
        if not (broker.ready.is_set() and not broker.stopped.is_set()
                and services is not None and not services.replicas.shutting_down):
            return False
        return services.cluster is None or services.cluster.cache.controller_epoch >= 0

    def route(self, method: str, path: str, headers: dict[str, str]
              ) -> tuple[int, str, bytes]:
        """(status, content type, body) for one HTTP request."""
        if method not in ("GET", "HEAD"):
            return 405, "text/plain; charset=utf-8", b"method not allowed\n"
        if path == "/metrics":
            encoder, content_type = choose_encoder(headers.get("accept", ""))
            return 200, content_type, encoder(self.registry)
        if path == "/healthz":
            return 200, "text/plain; charset=utf-8", b"ok\n"
        if path == "/readyz":
            if self.is_ready():
                return 200, "text/plain; charset=utf-8", b"ready\n"
            return 503, "text/plain; charset=utf-8", b"not ready\n"
        return 404, "text/plain; charset=utf-8", b"not found: try /metrics\n"

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        """Serve on ``metrics.port`` (0 picks a free one); reports the bound port."""
        from pykbroker.metrics_http import serve_http

        cfg = self.broker.config
        host = cfg.listeners[0].host if cfg.listeners else ""
        await serve_http(host, cfg.metrics_port, self.route, task_status=task_status)


class _BrokerCollector:
    """Every pykbroker family, computed at scrape time."""

    def __init__(self, metrics: BrokerMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._collect()
        except Exception:  # a scrape must never take the broker down
            log.exception("collecting metrics failed")

    def _collect(self) -> Iterator[Metric]:
        m = self.m
        broker = m.broker
        services = broker.services
        info = GaugeMetricFamily("pykbroker_info", "pykbroker build and node",
                                 labels=["version", "node_id"])
        info.add_metric([__version__, str(broker.config.node_id)], 1)
        yield info
        up = GaugeMetricFamily("pykbroker_uptime_seconds", "Seconds since the broker started")
        up.add_metric([], time.monotonic() - broker.started_at)
        yield up

        yield from self._requests()
        if services is None:
            return
        topics = services.topics.store.topics
        yield from self._topic_counters(set(topics))
        partitions = list(services.replicas.partitions.values())
        yield from self._replica_manager(partitions, topics)
        yield from self._controller(services.cluster, topics)
        yield from self._logs(partitions)
        yield from self._log_cleaner()
        yield from self._connections()
        yield from self._consumer_lag()
        yield from self._quotas()

    def _requests(self) -> Iterator[Metric]:
        m = self.m
        reqs = CounterMetricFamily(
            "kafka_network_requestmetrics_requests",
            "Requests handled, by API and version (Kafka's RequestsPerSec)",
            labels=["request", "version"])
        for (key, version), n in sorted(m.requests.items()):
            reqs.add_metric([request_name(key), str(version)], n)
        yield reqs
        lat = HistogramMetricFamily(
            "kafka_network_requestmetrics_totaltimems",
            "Request time from the whole frame read to the response written, in ms",
            labels=["request", "version"])
        for (key, version), hist in sorted(m.latency.items()):
            lat.add_metric([request_name(key), str(version)], hist.cumulative(), hist.total)
        yield lat
        out = CounterMetricFamily(
            "kafka_server_socket_server_metrics_outgoing_byte",
            "Response bytes written, by listener", labels=["listener"])
        for listener, n in sorted(m.response_bytes.items()):
            out.add_metric([listener], n)
        yield out

    def _topic_counters(self, live: set[str]) -> Iterator[Metric]:
        m = self.m
        for counts in (m.messages_in, m.bytes_in, m.bytes_out):
            for gone in [t for t in counts if t not in live]:  # deleted topics, as Kafka does
                del counts[gone]
        for name, help_, counts in (
            ("messagesin", "Messages appended (MessagesInPerSec)", m.messages_in),
            ("bytesin", "Record bytes appended (BytesInPerSec)", m.bytes_in),
            ("bytesout", "Record bytes returned by Fetch (BytesOutPerSec)", m.bytes_out),
        ):
            # Like the JMX exporter: one series for all topics (no label), one per topic.
            fam = CounterMetricFamily(f"kafka_server_brokertopicmetrics_{name}", help_,
                                      labels=["topic"])
            fam.samples.append(Sample(f"kafka_server_brokertopicmetrics_{name}_total", {},
                                      sum(counts.values()), None, None))
            for topic, n in sorted(counts.items()):
                fam.add_metric([topic], n)
            yield fam

    def _replica_manager(self, partitions: list[Partition], topics: dict[str, Any]
                         ) -> Iterator[Metric]:
        """Kafka's ReplicaManager gauges: ``partitioncount`` counts the replicas this broker
        hosts (leader or follower), the others only the partitions it leads, as Kafka's do
        (a lone broker leads all it hosts). In a cluster the leader counts of the brokers
        add up to the cluster's led partitions."""
        under = under_min_isr = at_min_isr = leaders = 0
        for part in partitions:
            if not part.is_leader:
                continue
            leaders += 1
            if len(part.isr) < len(part.replicas):
                under += 1
            if len(part.isr) < part.min_insync_replicas:
                under_min_isr += 1
            elif len(part.isr) == part.min_insync_replicas:
                at_min_isr += 1
        for name, help_, value in (
            ("partitioncount", "Partitions hosted on this broker (leader or follower)",
             len(partitions)),
            ("leadercount", "Partitions this broker leads", leaders),
            ("underreplicatedpartitions",
             "Partitions led here whose ISR is smaller than the replicas", under),
            ("underminisrpartitioncount",
             "Partitions led here whose ISR is below min.insync.replicas", under_min_isr),
            ("atminisrpartitioncount",
             "Partitions led here whose ISR is exactly min.insync.replicas", at_min_isr),
            ("offlinereplicacount", "Replicas that are offline", 0),
        ):
            fam = GaugeMetricFamily(f"kafka_server_replicamanager_{name}", help_)
            fam.add_metric([], value)
            yield fam
        counts: dict[str, int] = {name: info.partition_count for name, info in topics.items()}
        fam = GaugeMetricFamily("kafka_topic_partitions", "Partitions per topic",
                                labels=["topic"])
        for name, n in sorted(counts.items()):
            fam.add_metric([name], n)
        yield fam

    def _controller(self, cluster: ObservedCluster | None, topics: dict[str, Any]
                    ) -> Iterator[Metric]:
        """Kafka's KafkaController gauges: the active controller reports them from its
        context, every other broker 0 (so a sum over the cluster is the cluster's value).
        A lone broker is its own controller and every partition it has is online."""
        if cluster is None:
            active = 1
            offline = imbalance = 0
            topic_count = len(topics)
            partition_count = sum(info.partition_count for info in topics.values())
        elif cluster.controller.active:
            active = 1
            ctx = cluster.controller.ctx
            offline = len(ctx.offline_partitions())
            topic_count = len(ctx.topics)
            partition_count = imbalance = 0
            online = ctx.online()
            for _name, _index, _topic, record in ctx.partitions():
                partition_count += 1
                state = record.state
                # Kafka counts a partition without a (live) leader as not preferred-led.
                if record.replicas and (state is None or state.leader != record.replicas[0]
                                        or state.leader not in online):
                    imbalance += 1
        else:
            active = offline = imbalance = topic_count = partition_count = 0
        for name, help_, value in (
            ("activecontrollercount", "1 on the active controller, else 0", active),
            ("offlinepartitionscount",
             "Partitions without a live leader (on the active controller)", offline),
            ("preferredreplicaimbalancecount",
             "Partitions not led by their preferred replica (on the active controller)",
             imbalance),
            ("globaltopiccount", "Topics in the cluster (on the active controller)",
             topic_count),
            ("globalpartitioncount", "Partitions in the cluster (on the active controller)",
             partition_count),
        ):
            fam = GaugeMetricFamily(f"kafka_controller_kafkacontroller_{name}", help_)
            fam.add_metric([], value)
            yield fam

    def _logs(self, partitions: list[Partition]) -> Iterator[Metric]:
        """``kafka_log_log_*`` for every replica hosted here; the kafka-exporter style
        ``kafka_topic_partition_*`` only from a partition's leader, so that in a cluster each
        partition has one series (a follower's log says nothing of the partition)."""
        labels = ["topic", "partition"]
        size = GaugeMetricFamily("kafka_log_log_size", "Log size in bytes", labels=labels)
        segments = GaugeMetricFamily("kafka_log_log_numlogsegments", "Log segments",
                                     labels=labels)
        start = GaugeMetricFamily("kafka_log_log_logstartoffset", "Log start offset",
                                  labels=labels)
        end = GaugeMetricFamily("kafka_log_log_logendoffset", "Log end offset", labels=labels)
        current = GaugeMetricFamily("kafka_topic_partition_current_offset",
                                    "High watermark of each partition", labels=labels)
        oldest = GaugeMetricFamily("kafka_topic_partition_oldest_offset",
                                   "Oldest offset of each partition", labels=labels)
        isr = GaugeMetricFamily("kafka_topic_partition_in_sync_replica",
                                "In-sync replicas of each partition", labels=labels)
        for part in sorted(partitions, key=lambda p: (p.topic, p.index)):
            lv = [part.topic, str(part.index)]
            size.add_metric(lv, part.log.size_in_bytes)
            segments.add_metric(lv, len(part.log.segments))
            start.add_metric(lv, part.log_start_offset)
            end.add_metric(lv, part.log_end_offset)
            if not part.is_leader:
                continue
            current.add_metric(lv, part.high_watermark)
            oldest.add_metric(lv, part.log_start_offset)
            isr.add_metric(lv, len(part.isr))
        yield from (size, segments, start, end, current, oldest, isr)

    def _log_cleaner(self) -> Iterator[Metric]:
        """Kafka's LogCleaner and LogCleanerManager gauges; 0 until the cleaner runs (or
        with log.cleaner.enable=false), as Kafka reports them before a first cleaning."""
        # Not part of ObservedBroker: the broker sets it in serve(), after the metrics exist.
        cleaner: ObservedLogCleaner | None = getattr(self.m.broker, "log_cleaner", None)
        for name, help_, value in (
            ("kafka_log_logcleaner_max_clean_time_secs",
             "Seconds of the longest last cleaning among the cleaner threads",
             cleaner.max_clean_time_secs if cleaner is not None else 0.0),
            ("kafka_log_logcleaner_cleaner_recopy_percent",
             "Bytes written per byte read by the cleaner threads' last cleanings, in percent",
             cleaner.cleaner_recopy_percent if cleaner is not None else 0.0),
            ("kafka_log_logcleanermanager_max_dirty_percent",
             "Cleanable share of the dirtiest compacted log's bytes at the last check, "
             "in percent", cleaner.max_dirty_percent if cleaner is not None else 0.0),
        ):
            fam = GaugeMetricFamily(name, help_)
            fam.add_metric([], value)
            yield fam

    def _connections(self) -> Iterator[Metric]:
        server = self.m.broker.server
        by_listener: dict[str, int] = {name: 0 for name in (server.bound_ports if server else {})}
        for conn in list(server.connections) if server is not None else []:
            by_listener[conn.listener.name] = by_listener.get(conn.listener.name, 0) + 1
        fam = GaugeMetricFamily("kafka_server_socket_server_metrics_connection_count",
                                "Open client connections, by listener", labels=["listener"])
        for name, n in sorted(by_listener.items()):
            fam.add_metric([name], n)
        yield fam

    def _quotas(self) -> Iterator[Metric]:
        """Kafka's per-client quota metrics (``kafka.server:type=Produce|Fetch,user=..,
        client-id=..``: byte-rate, throttle-time), one series per quota sensor; none until a
        quota was set (the quota code is not even loaded before)."""
        services = self.m.broker.services
        quotas = getattr(services, "client_quotas", None) if services is not None else None
        if quotas is None:
            return
        now_ms = int(time.monotonic() * 1000)  # the quota sensors' clock
        for kind, manager in (("produce", quotas.produce), ("fetch", quotas.fetch),
                              ("request", quotas.request)):
            labels = ["user", "client_id"]
            rate = GaugeMetricFamily(
                "kafka_server_request_request_time" if kind == "request"
                else f"kafka_server_{kind}_byte_rate",
                "Request handling time as a percentage of one thread (request_percentage)"
                if kind == "request" else f"{kind.capitalize()} bytes per second measured "
                "against the client's quota, over the quota window", labels=labels)
            throttle = CounterMetricFamily(f"kafka_server_{kind}_throttle_time_ms",
                                           "Milliseconds of throttle time imposed", labels=labels)
            throttled = CounterMetricFamily(f"kafka_server_{kind}_throttled_requests",
                                            "Responses that carried a throttle time",
                                            labels=labels)
            for (user, client), sensor in sorted(manager.sensors.items()):
                tags = [user, client]
                rate.add_metric(tags, sensor.rate.measure(now_ms))
                throttle.add_metric(tags, sensor.throttle_ms_total)
                throttled.add_metric(tags, sensor.throttled)
            yield rate
            yield throttle
            yield throttled

    def _consumer_lag(self) -> Iterator[Metric]:
        services = self.m.broker.services
        assert services is not None
        labels = ["consumergroup", "topic", "partition"]
        lag = GaugeMetricFamily("kafka_consumergroup_lag",
                                "High watermark minus the committed offset", labels=labels)
        offset = GaugeMetricFamily("kafka_consumergroup_current_offset",
                                   "Committed offset of each group and partition",
                                   labels=labels)
        members = GaugeMetricFamily("kafka_consumergroup_members", "Members of each group",
                                    labels=["consumergroup"])
        groups = services.groups
        replicas = services.replicas.partitions
        _, listings = groups.list_groups()
        for listing in sorted(listings, key=lambda g: g.group_id):
            group = groups.groups.get(listing.group_id)
            if group is not None:
                members.add_metric([listing.group_id], len(group.members))
            error, committed = groups.fetch_offsets(listing.group_id, None)
            if error:
                continue
            for (topic, index), om in committed:
                if om is None or om.offset < 0:
                    continue
                lv = [listing.group_id, topic, str(index)]
                offset.add_metric(lv, om.offset)
                part = replicas.get((topic, index))
                if part is not None and part.is_leader:  # a follower's end is not the HW
                    lag.add_metric(lv, max(part.high_watermark - om.offset, 0))
        yield from (lag, offset, members)
