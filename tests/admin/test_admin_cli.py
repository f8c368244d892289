"""The admin commands (``pykbroker topics|groups|produce|consume|...``) against a real broker,
run as subprocesses the way people and scripts run them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from typing import Any

import pytest

from pykbroker.admin.client import AdminClient
from pykbroker.admin.console import murmur2, partition_for
from pykbroker.free_ports import free_port

OFFSET_COMMIT, OFFSET_FETCH, DESCRIBE_GROUPS, LIST_GROUPS, DELETE_GROUPS = 8, 9, 15, 16, 42


def cli(bootstrap: str, *args: str, stdin: str | None = None, ok: bool = True
        ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "pykbroker", *args,
                           "--bootstrap-server", bootstrap],
                          input=stdin, capture_output=True, text=True, timeout=60)
    if ok:
        assert proc.returncode == 0, f"{args}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def cli_json(bootstrap: str, *args: str, stdin: str | None = None) -> Any:
    return json.loads(cli(bootstrap, *args, "--json", stdin=stdin).stdout)


def needs_apis(bootstrap: str, *keys: int) -> None:
    """The broker must serve every API the test uses (a regression fails, never skips)."""
    with AdminClient(bootstrap) as client:
        missing = [k for k in keys if not client.supports(k)]
    assert not missing, f"broker does not serve API key(s) {missing} (ApiVersions)"


def new_name(prefix: str = "admin") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# -- misc --------------------------------------------------------------------------------

def test_healthcheck(kafka_bootstrap_servers: str) -> None:
    assert cli(kafka_bootstrap_servers, "healthcheck").stdout.startswith("ok")
    data = cli_json(kafka_bootstrap_servers, "healthcheck")
    assert data["healthy"] is True and data["brokers"] >= 1
    down = cli(f"127.0.0.1:{free_port()}", "healthcheck", ok=False)
    assert down.returncode == 1 and "unhealthy" in down.stderr


def test_api_versions(kafka_bootstrap_servers: str) -> None:
    data = cli_json(kafka_bootstrap_servers, "api-versions")
    by_name = {d["api"]: d for d in data}
    assert by_name["API_VERSIONS"]["min"] == 0 and by_name["API_VERSIONS"]["max"] >= 3
    assert by_name["METADATA"]["key"] == 3
    table = cli(kafka_bootstrap_servers, "api-versions").stdout.splitlines()
    assert table[0].split() == ["API", "KEY", "MIN", "MAX"]
    assert any(line.split()[0] == "PRODUCE" for line in table[1:])


def test_broker_mode_unchanged() -> None:
    out = subprocess.run([sys.executable, "-m", "pykbroker", "--version"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.startswith("pykbroker ")


def test_bad_bootstrap_is_a_clean_error() -> None:
    proc = cli(f"127.0.0.1:{free_port()}", "topics", "list", ok=False)
    assert proc.returncode == 1
    assert "cannot reach any bootstrap server" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- topics ------------------------------------------------------------------------------

def test_topics_create_list_describe(kafka_bootstrap_servers: str) -> None:
    bs = kafka_bootstrap_servers
    name = new_name()
    out = cli(bs, "topics", "create", "--topic", name, "--partitions", "3",
              "--replication-factor", "1", "--config", "retention.ms=123456",
              "--config", "cleanup.policy=compact")
    assert f"Created topic {name}." in out.stdout
    assert name in cli(bs, "topics", "list").stdout.split()
    assert name in cli_json(bs, "topics", "list")

    [desc] = cli_json(bs, "topics", "describe", "--topic", name)
    assert desc["topic"] == name and desc["partition_count"] == 3
    assert desc["replication_factor"] == 1
    uuid.UUID(desc["topic_id"])
    assert desc["configs"] == {"cleanup.policy": "compact", "retention.ms": "123456"}
    assert [p["partition"] for p in desc["partitions"]] == [0, 1, 2]
    for p in desc["partitions"]:
        assert p["leader"] >= 0 and p["replicas"] == [p["leader"]] and p["isr"] == p["replicas"]
        assert p["offline"] == [] and not p["under_replicated"] and not p["unavailable"]

    text = cli(bs, "topics", "describe", "--topic", name).stdout
    # First the cluster: a lone broker is its own controller and the only broker.
    health = cli_json(bs, "healthcheck")
    node = health["controller_id"]
    first = text.splitlines()[0]
    assert first.startswith(f"Cluster: {health['cluster_id']}\tController: {node}\t"
                            f"Brokers: {node}@"), first
    assert "Offline:" not in text and "UnderReplicated" not in text
    assert "Unavailable" not in text
    assert f"Topic: {name}\tTopicId: {desc['topic_id']}\tPartitionCount: 3" in text
    assert "Configs: cleanup.policy=compact,retention.ms=123456" in text
    assert text.count("\tPartition: ") == 3


def test_topics_create_twice(kafka_bootstrap_servers: str) -> None:
    bs = kafka_bootstrap_servers
    name = new_name()
    created = cli_json(bs, "topics", "create", "--topic", name)
    assert created["created"] is True and created["partitions"] >= 1
    again = cli(bs, "topics", "create", "--topic", name, ok=False)
    assert again.returncode == 1 and "TOPIC_ALREADY_EXISTS" in again.stderr
    assert cli_json(bs, "topics", "create", "--topic", name, "--if-not-exists")["created"] is False
    bad = cli(bs, "topics", "create", "--topic", new_name(), "--config", "no.such.config=1",
              ok=False)
    assert bad.returncode == 1 and "failed" in bad.stderr


def test_topics_alter(kafka_bootstrap_servers: str, kafka_topic: str) -> None:
    bs = kafka_bootstrap_servers
    cli(bs, "topics", "alter", "--topic", kafka_topic, "--partitions", "4",
        "--config", "retention.ms=5000", "--config", "max.message.bytes=20000")
    [desc] = cli_json(bs, "topics", "describe", "--topic", kafka_topic)
    assert desc["partition_count"] == 4
    assert desc["configs"] == {"max.message.bytes": "20000", "retention.ms": "5000"}

    done = cli_json(bs, "topics", "alter", "--topic", kafka_topic,
                    "--delete-config", "retention.ms")
    assert done["deleted"] == ["retention.ms"]
    [desc] = cli_json(bs, "topics", "describe", "--topic", kafka_topic)
    assert desc["configs"] == {"max.message.bytes": "20000"}

    shrink = cli(bs, "topics", "alter", "--topic", kafka_topic, "--partitions", "2", ok=False)
    assert shrink.returncode == 1 and "INVALID_PARTITIONS" in shrink.stderr


def test_topics_delete(kafka_bootstrap_servers: str) -> None:
    bs = kafka_bootstrap_servers
    name = new_name()
    cli(bs, "topics", "create", "--topic", name)
    assert f"Deleted topic {name}." in cli(bs, "topics", "delete", "--topic", name).stdout
    assert name not in cli_json(bs, "topics", "list")
    gone = cli(bs, "topics", "delete", "--topic", name, ok=False)
    assert gone.returncode == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in gone.stderr
    cli(bs, "topics", "delete", "--topic", name, "--if-exists")
    missing = cli(bs, "topics", "describe", "--topic", name, ok=False)
    assert missing.returncode == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in missing.stderr


# -- produce / consume -------------------------------------------------------------------

@pytest.mark.kafka_topic(partitions=3)
def test_produce_consume_round_trip(kafka_bootstrap_servers: str, kafka_topic: str) -> None:
    bs = kafka_bootstrap_servers
    lines = [f"key{i}|value {i} ü" for i in range(50)] + ["no separator here", "|empty key"]
    cli(bs, "produce", "--topic", kafka_topic, "--key-separator", "|", "--batch-size", "7",
        stdin="\n".join(lines) + "\n")
    out = cli(bs, "consume", "--topic", kafka_topic, "--from-beginning", "--key-separator",
              "|", "--count", str(len(lines)), "--timeout-ms", "5000").stdout
    got = out.splitlines()
    assert sorted(got) == sorted(lines[:50] + ["|no separator here", "|empty key"])

    records = [json.loads(line) for line in cli(
        bs, "consume", "--topic", kafka_topic, "--from-beginning", "--json",
        "--timeout-ms", "1500").stdout.splitlines()]
    assert len(records) == len(lines)
    assert set(records[0]) == {"topic", "partition", "offset", "timestamp", "key", "value",
                               "headers"}
    for r in records:
        assert r["topic"] == kafka_topic and r["headers"] == []
        if r["key"] and r["key"].startswith("key"):
            assert r["partition"] == partition_for(r["key"].encode(), 3)
            assert r["value"] == f"value {r['key'][3:]} ü"
    unkeyed = [r for r in records if r["value"] == "no separator here"]
    assert unkeyed and unkeyed[0]["key"] is None
    per_partition: dict[int, list[int]] = {}
    for r in records:
        per_partition.setdefault(r["partition"], []).append(r["offset"])
    for offsets in per_partition.values():
        assert offsets == list(range(len(offsets)))


@pytest.mark.kafka_topic(partitions=2)
def test_produce_consume_one_partition(kafka_bootstrap_servers: str, kafka_topic: str) -> None:
    bs = kafka_bootstrap_servers
    summary = json.loads(cli(bs, "produce", "--topic", kafka_topic, "--partition", "1",
                             "--json", stdin="a\nb\nc\n").stdout)
    assert summary["records"] == 3
    empty = cli(bs, "consume", "--topic", kafka_topic, "--partition", "0", "--from-beginning",
                "--timeout-ms", "300")
    assert empty.stdout == ""
    got = cli(bs, "consume", "--topic", kafka_topic, "--partition", "1", "--from-beginning",
              "--count", "2", "--timeout-ms", "5000").stdout
    assert got == "a\nb\n"
    short = cli(bs, "consume", "--topic", kafka_topic, "--from-beginning", "--count", "5",
                "--timeout-ms", "500", ok=False)
    assert short.returncode == 1 and short.stdout == "a\nb\nc\n"


def test_produce_long_input_progress(kafka_bootstrap_servers: str, kafka_topic: str) -> None:
    bs = kafka_bootstrap_servers
    n = 12_000
    proc = cli(bs, "produce", "--topic", kafka_topic,
               stdin="".join(f"message-{i}\n" for i in range(n)))
    assert "10000 records sent" in proc.stderr
    out = cli(bs, "consume", "--topic", kafka_topic, "--from-beginning", "--count", str(n),
              "--timeout-ms", "10000").stdout.splitlines()
    assert out == [f"message-{i}" for i in range(n)]


def test_consume_interoperates_with_stock_clients(kafka_bootstrap_servers: str,
                                                  kafka_topic: str) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    bs = kafka_bootstrap_servers
    producer = confluent_kafka.Producer({"bootstrap.servers": bs})
    producer.produce(kafka_topic, key=b"k", value=b"from librdkafka",
                     headers=[("h", b"v")])
    producer.flush(10)
    [rec] = [json.loads(line) for line in cli(
        bs, "consume", "--topic", kafka_topic, "--from-beginning", "--json", "--count", "1",
        "--timeout-ms", "5000").stdout.splitlines()]
    assert (rec["key"], rec["value"], rec["headers"]) == ("k", "from librdkafka", [["h", "v"]])

    cli(bs, "produce", "--topic", kafka_topic, "--key-separator", "=", stdin="x=from cli\n")
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bs, "group.id": new_name("g"),
                                         "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([kafka_topic])
        seen = []
        for _ in range(50):
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                seen.append((msg.key(), msg.value()))
            if len(seen) == 2:
                break
        assert seen == [(b"k", b"from librdkafka"), (b"x", b"from cli")]
    finally:
        consumer.close()


def test_murmur2_matches_the_java_partitioner() -> None:
    # Values from Kafka's UtilsTest.testMurmur2.
    cases = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
             b"a-little-bit-longer-string": -1486304829,
             b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
             b"abc": 479470107}
    for data, expected in cases.items():
        assert murmur2(data) == expected, data


# -- groups ------------------------------------------------------------------------------

@pytest.mark.kafka_topic(partitions=2)
def test_groups_describe_live_consumer(kafka_bootstrap_servers: str, kafka_topic: str) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    bs = kafka_bootstrap_servers
    needs_apis(bs, DESCRIBE_GROUPS, LIST_GROUPS, OFFSET_FETCH)
    cli(bs, "produce", "--topic", kafka_topic, "--partition", "0", stdin="1\n2\n3\n4\n")
    cli(bs, "produce", "--topic", kafka_topic, "--partition", "1", stdin="5\n")
    group = new_name("g")
    consumer = confluent_kafka.Consumer({
        "bootstrap.servers": bs, "group.id": group, "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "client.id": "lag-test"})
    try:
        consumer.subscribe([kafka_topic])
        got = 0
        for _ in range(60):
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got += 1
                if msg.partition() == 0 and msg.offset() == 0:
                    consumer.commit(message=msg, asynchronous=False)  # committed offset 1
            if got == 5:
                break
        assert got == 5
        assert group in cli(bs, "groups", "list").stdout.split()
        listed = {g["group"]: g for g in cli_json(bs, "groups", "list")}
        assert listed[group]["protocol_type"] == "consumer"

        [desc] = cli_json(bs, "groups", "describe", "--group", group)
        assert desc["state"] == "Stable" and desc["protocol_type"] == "consumer"
        assert desc["protocol"] in ("range", "roundrobin", "cooperative-sticky")
        [member] = desc["members"]
        assert member["client_id"] == "lag-test"
        assert sorted(a["partition"] for a in member["assignment"]) == [0, 1]
        parts = {p["partition"]: p for p in desc["partitions"]}
        assert parts[0]["current_offset"] == 1 and parts[0]["log_end_offset"] == 4
        assert parts[0]["lag"] == 3 and parts[0]["consumer_id"] == member["member_id"]
        assert parts[1]["current_offset"] is None and parts[1]["lag"] is None
        assert parts[1]["log_end_offset"] == 1

        text = cli(bs, "groups", "describe", "--group", group).stdout
        assert "State: Stable" in text and "LOG-END-OFFSET" in text and "lag-test" in text

        busy = cli(bs, "groups", "reset-offsets", "--group", group, "--topic", kafka_topic,
                   "--to-earliest", "--execute", ok=False)
        assert busy.returncode == 1 and "inactive" in busy.stderr
    finally:
        consumer.close()


@pytest.mark.kafka_topic(partitions=2)
def test_groups_reset_offsets(kafka_bootstrap_servers: str, kafka_topic: str) -> None:
    bs = kafka_bootstrap_servers
    needs_apis(bs, OFFSET_COMMIT, OFFSET_FETCH, DESCRIBE_GROUPS)
    cli(bs, "produce", "--topic", kafka_topic, "--partition", "0", stdin="a\nb\nc\n")
    cli(bs, "produce", "--topic", kafka_topic, "--partition", "1", stdin="d\n")
    group = new_name("g")

    dry = cli_json(bs, "groups", "reset-offsets", "--group", group, "--topic", kafka_topic,
                   "--to-latest")
    assert dry["executed"] is False
    assert {o["partition"]: o["new_offset"] for o in dry["offsets"]} == {0: 3, 1: 1}
    assert "dry run" in cli(bs, "groups", "reset-offsets", "--group", group, "--topic",
                            kafka_topic, "--to-latest").stdout
    dead = cli(bs, "groups", "describe", "--group", group, "--json", ok=False)
    assert dead.returncode == 1  # nothing committed by a dry run: the group does not exist
    [desc] = json.loads(dead.stdout)
    assert desc["state"] == "Dead" and desc["partitions"] == []

    cli(bs, "groups", "reset-offsets", "--group", group, "--topic", kafka_topic,
        "--to-latest", "--execute")
    [desc] = cli_json(bs, "groups", "describe", "--group", group)
    assert {p["partition"]: (p["current_offset"], p["lag"]) for p in desc["partitions"]} == {
        0: (3, 0), 1: (1, 0)}

    cli(bs, "groups", "reset-offsets", "--group", group, "--topic", kafka_topic,
        "--to-offset", "2", "--execute")  # clamped to each partition's range
    [desc] = cli_json(bs, "groups", "describe", "--group", group)
    assert {p["partition"]: (p["current_offset"], p["lag"]) for p in desc["partitions"]} == {
        0: (2, 1), 1: (1, 0)}

    cli(bs, "groups", "reset-offsets", "--group", group, "--topic", kafka_topic,
        "--to-earliest", "--execute")
    [desc] = cli_json(bs, "groups", "describe", "--group", group)
    assert {p["partition"]: p["lag"] for p in desc["partitions"]} == {0: 3, 1: 1}
    assert desc["state"] == "Empty" and desc["members"] == []

    # a consumer of the group now starts where the reset put it
    out = subprocess.run([sys.executable, "-c", (
        "import confluent_kafka, sys\n"
        f"c = confluent_kafka.Consumer({{'bootstrap.servers': '{bs}', 'group.id': '{group}',"
        " 'auto.offset.reset': 'latest'})\n"
        f"c.subscribe(['{kafka_topic}'])\n"
        "seen = []\n"
        "for _ in range(40):\n"
        "    m = c.poll(0.5)\n"
        "    if m is not None and not m.error(): seen.append(m.value().decode())\n"
        "    if len(seen) == 4: break\n"
        "c.close(); print(','.join(sorted(seen)))\n")],
        capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "a,b,c,d", out.stderr


def test_groups_delete(kafka_bootstrap_servers: str, kafka_topic: str) -> None:
    bs = kafka_bootstrap_servers
    needs_apis(bs, OFFSET_COMMIT, LIST_GROUPS, DELETE_GROUPS)
    group = new_name("g")
    cli(bs, "groups", "reset-offsets", "--group", group, "--topic", kafka_topic,
        "--to-earliest", "--execute")
    assert group in [g["group"] for g in cli_json(bs, "groups", "list")]
    assert cli_json(bs, "groups", "delete", "--group", group) == [
        {"group": group, "deleted": True, "error": None}]
    assert group not in [g["group"] for g in cli_json(bs, "groups", "list")]
    again = cli(bs, "groups", "delete", "--group", group, ok=False)
    assert again.returncode == 1 and "GROUP_ID_NOT_FOUND" in again.stderr


@pytest.mark.kafka_topic(partitions=2)
def test_groups_reset_partitions_and_shift(kafka_bootstrap_servers: str,
                                            kafka_topic: str) -> None:
    bs = kafka_bootstrap_servers
    needs_apis(bs, OFFSET_COMMIT, OFFSET_FETCH, DESCRIBE_GROUPS)
    for p in ("0", "1"):
        cli(bs, "produce", "--topic", kafka_topic, "--partition", p, stdin="a\nb\nc\nd\n")
    group = new_name("g")
    cli(bs, "groups", "reset-offsets", "--group", group, "--topic", f"{kafka_topic}:1",
        "--to-latest", "--execute")
    [desc] = cli_json(bs, "groups", "describe", "--group", group)
    assert {p["partition"]: p["current_offset"] for p in desc["partitions"]} == {1: 4}
    cli(bs, "groups", "reset-offsets", "--group", group, "--topic", f"{kafka_topic}:1",
        "--shift-by", "-3", "--execute")
    cli(bs, "groups", "reset-offsets", "--group", group, "--topic", f"{kafka_topic}:1",
        "--shift-by", "-9", "--execute")  # clamped at the log start
    [desc] = cli_json(bs, "groups", "describe", "--group", group)
    assert {p["partition"]: p["current_offset"] for p in desc["partitions"]} == {1: 0}
    bad = cli(bs, "groups", "reset-offsets", "--group", group, "--topic", f"{kafka_topic}:7",
              "--to-latest", ok=False)
    assert bad.returncode == 1 and "no partition" in bad.stderr


def test_groups_describe_unknown_group(kafka_bootstrap_servers: str) -> None:
    bs = kafka_bootstrap_servers
    needs_apis(bs, DESCRIBE_GROUPS, OFFSET_FETCH)
    group = new_name("nobody")
    proc = cli(bs, "groups", "describe", "--group", group, ok=False)
    assert proc.returncode == 1 and f"Consumer group '{group}' does not exist." in proc.stderr


def test_consume_into_a_closed_pipe(kafka_bootstrap_servers: str, kafka_topic: str) -> None:
    bs = kafka_bootstrap_servers
    cli(bs, "produce", "--topic", kafka_topic, stdin="".join(f"{i}\n" for i in range(3000)))
    consumer = subprocess.Popen(
        [sys.executable, "-m", "pykbroker", "consume", "--topic", kafka_topic,
         "--from-beginning", "--timeout-ms", "3000", "--bootstrap-server", bs],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert consumer.stdout is not None and consumer.stderr is not None
    assert consumer.stdout.readline() == b"0\n"
    consumer.stdout.close()  # as `| head -1` does
    assert consumer.wait(30) == 0
    assert b"Traceback" not in consumer.stderr.read()


def test_api_versions_v0_fallback() -> None:
    """A broker without ApiVersions v3 answers in v0 (KIP-511): the client asks again in v0."""
    import struct
    import threading

    from pykbroker.protocol._generated.api_versions_response import (
        ApiVersion,
        ApiVersionsResponse,
    )
    from pykbroker.protocol.framing import encode_response

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    seen: list[int] = []

    def serve() -> None:
        for _ in range(2):
            conn, _ = server.accept()
            with conn:
                size = struct.unpack(">i", conn.recv(4, socket.MSG_WAITALL))[0]
                frame = conn.recv(size, socket.MSG_WAITALL)
                _, version, corr = struct.unpack_from(">hhi", frame)
                seen.append(version)
                resp = ApiVersionsResponse(error_code=0 if version == 0 else 35,
                                           api_keys=[ApiVersion(18, 0, 0), ApiVersion(3, 0, 1)])
                conn.sendall(encode_response(18, 0, corr, resp))
                if version == 0:
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with AdminClient(f"127.0.0.1:{port}", timeout=5) as client:
            assert client.broker_versions() == {18: (0, 0), 3: (0, 1)}
            assert client.version(3) == 1
            assert not client.supports(19)
    finally:
        thread.join(5)
        server.close()
    assert seen == [3, 0]


def test_missing_topic_errors(kafka_bootstrap_servers: str) -> None:
    bs = kafka_bootstrap_servers
    name = new_name("missing")
    for args in (("produce", "--topic", name), ("consume", "--topic", name, "--timeout-ms", "100"),
                 ("topics", "alter", "--topic", name, "--partitions", "3")):
        proc = cli(bs, *args, stdin="x\n", ok=False)
        assert proc.returncode == 1, args
        assert "UNKNOWN_TOPIC_OR_PARTITION" in proc.stderr and "Traceback" not in proc.stderr
    assert name not in cli_json(bs, "topics", "list")  # no auto-creation by the tools
    internal = cli_json(bs, "topics", "list", "--exclude-internal")
    assert not any(t.startswith("__") for t in internal)
