"""The container files in ``docker/``, checked without a Docker engine.

* The compose files parse (PyYAML) and have the expected shape; ``docker compose config`` also
  validates them, but only where ``docker compose version`` works (the compose plugin is not
  installed everywhere: without it that test is skipped and says so).
* ``docker/entrypoint.sh`` is run directly with the environment of ``compose.yml``'s broker
  (hosts and ports rewritten to 127.0.0.1 and free ports, data in tmp_path): the broker it
  starts must answer Metadata on each listener with that listener's advertised address, and
  produce/consume must work through each; SIGTERM then stops it with exit code 0.
* The three brokers of ``compose-cluster.yml`` are each run by ``docker/entrypoint.sh`` with
  their service's environment (listeners on free 127.0.0.1 ports, the test session's real
  ZooKeeper with a fresh chroot in place of ``zookeeper:2181``): they must form one cluster.
* The entrypoint's own translations (container defaults, CLUSTER_ID) are checked with a fake
  ``python`` that records what it was started with.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from pykbroker.free_ports import free_port as _free_port

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read docker/*.yml")

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yml"
COMPOSE_CLUSTER = DOCKER / "compose-cluster.yml"
ENTRYPOINT = DOCKER / "entrypoint.sh"
VENV_BIN = Path(sys.executable).parent

_ENDPOINT = re.compile(r"^([A-Z_]+)://([^:]*):(\d+)$")


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def _env(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as strings (compose accepts a mapping or ``K=V`` items)."""
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in env.items()}


def _endpoints(text: str) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}
    for item in text.split(","):
        match = _ENDPOINT.match(item.strip())
        assert match, f"bad listener {item!r}"
        out[match[1]] = (match[2], int(match[3]))
    return out


def _published(service: dict[str, Any]) -> dict[int, int]:
    """``container port -> host port`` of a service's short-syntax ``ports``."""
    out: dict[int, int] = {}
    for item in service.get("ports", []):
        host, _, container = str(item).rpartition(":")
        out[int(container)] = int(host.rpartition(":")[2])
    return out


def _check_broker_service(service: dict[str, Any]) -> dict[str, str]:
    assert service["build"]["dockerfile"] == "docker/Dockerfile"
    assert (DOCKER / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    assert service["image"].startswith("pykbroker")
    health = service["healthcheck"]
    assert "pykbroker healthcheck --bootstrap-server" in " ".join(health["test"])
    assert {"interval", "timeout", "retries"} <= health.keys()
    assert any(v.endswith(":/var/lib/pykbroker") for v in service["volumes"])
    env = _env(service)
    listeners = _endpoints(env["KAFKA_LISTENERS"])
    advertised = _endpoints(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) <= set(protocols)
    assert set(advertised) <= set(listeners)
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    assert all(host in ("", "0.0.0.0") for host, _ in listeners.values()), "bind all interfaces"
    assert env["KAFKA_LOG_DIRS"].startswith("/var/lib/pykbroker/")
    # The host listener is published on the port it advertises; the internal one is not.
    host, port = advertised["EXTERNAL"]
    assert host == "localhost"
    assert _published(service).get(listeners["EXTERNAL"][1]) == port
    assert advertised["INTERNAL"][0] == service["hostname"]
    assert listeners["INTERNAL"][1] not in _published(service)
    return env


def test_compose_single_broker_structure() -> None:
    compose = _load(COMPOSE)
    services = compose["services"]
    assert set(services) == {"pykbroker", "schema-registry", "kafka-ui"}
    broker = services["pykbroker"]
    env = _check_broker_service(broker)
    assert env["KAFKA_NODE_ID"] == "1"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])
    internal = "{}:{}".format(*_endpoints(env["KAFKA_ADVERTISED_LISTENERS"])["INTERNAL"])
    assert internal == "pykbroker:29092"

    registry = services["schema-registry"]
    assert registry["image"].startswith("confluentinc/cp-schema-registry:")
    reg_env = _env(registry)
    assert reg_env["SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS"] == f"PLAINTEXT://{internal}"
    assert registry["depends_on"]["pykbroker"]["condition"] == "service_healthy"
    assert _published(registry) == {8081: 8081}
    assert "healthcheck" in registry

    ui = services["kafka-ui"]
    assert ui["image"].startswith("provectuslabs/kafka-ui:")
    ui_env = _env(ui)
    assert ui_env["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == internal
    assert ui_env["KAFKA_CLUSTERS_0_SCHEMAREGISTRY"] == "http://schema-registry:8081"
    assert _published(ui) == {8080: 8080}
    assert set(compose["volumes"]) == {"pykbroker-data"}


def test_compose_cluster_structure() -> None:
    text = COMPOSE_CLUSTER.read_text()
    assert "NOT WORKING YET" not in text and "ignoring the others" not in text
    compose = _load(COMPOSE_CLUSTER)
    services = compose["services"]
    assert set(services) == {"zookeeper", "pykbroker-1", "pykbroker-2", "pykbroker-3"}
    assert services["zookeeper"]["image"].startswith("zookeeper:")
    assert "healthcheck" in services["zookeeper"]
    # ZooKeeper's state lives as long as the brokers' (its /cluster/id is in their data).
    zk_volumes = {v.split(":")[1]: v.split(":")[0] for v in services["zookeeper"]["volumes"]}
    assert {"/data", "/datalog"} <= set(zk_volumes)
    assert set(zk_volumes.values()) <= set(compose["volumes"])
    ids, host_ports = set(), set()
    for name in ("pykbroker-1", "pykbroker-2", "pykbroker-3"):
        service = services[name]
        env = _check_broker_service(service)
        assert env["KAFKA_ZOOKEEPER_CONNECT"] == "zookeeper:2181"
        assert service["depends_on"]["zookeeper"]["condition"] == "service_healthy"
        assert service["stop_grace_period"] == "30s"  # room for a controlled shutdown's retries
        ids.add(env["KAFKA_BROKER_ID"])
        host_ports.add(_endpoints(env["KAFKA_ADVERTISED_LISTENERS"])["EXTERNAL"][1])
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        # A ZooKeeper cluster's id is ZooKeeper's /cluster/id: a CLUSTER_ID would format the
        # log directory with another one, and the broker would refuse to join.
        assert "CLUSTER_ID" not in env
        assert not any(k.startswith("KAFKA_PROCESS_ROLES") for k in env)
    assert ids == {"1", "2", "3"} and len(host_ports) == 3


def test_dockerfile() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert re.search(r"^USER (?!root)\S+$", text, re.M)
    assert "pip install ." in text
    assert re.search(r"^VOLUME /var/lib/pykbroker$", text, re.M)
    assert re.search(r"^EXPOSE 9092$", text, re.M)
    assert "CMD pykbroker healthcheck --bootstrap-server localhost:9092 || exit 1" in text
    entry = re.search(r'^ENTRYPOINT \["([^"]+)"\]$', text, re.M)
    assert entry and entry[1].endswith("docker/entrypoint.sh")
    assert "COPY docker/entrypoint.sh " + entry[1] in text
    assert os.access(ENTRYPOINT, os.X_OK)


def _docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_CLUSTER], ids=lambda p: p.name)
def test_docker_compose_config(path: Path) -> None:
    """``docker compose config`` only parses, so it needs the compose plugin but no engine."""
    if not _docker_compose_available():
        pytest.skip("`docker compose version` fails here (no docker CLI or no compose plugin); "
                    "the compose files are checked with PyYAML only")
    done = subprocess.run(["docker", "compose", "-f", str(path), "config", "--quiet"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------------- the entrypoint


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"broker exited early with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listening on 127.0.0.1:{port}")


def _container_env_for_host(env: dict[str, str], data: Path) -> tuple[dict[str, str],
                                                                       dict[str, str]]:
    """The compose broker's environment made runnable here; also listener -> advertised."""
    ports = {p: _free_port() for _, p in _endpoints(env["KAFKA_LISTENERS"]).values()}
    hosts = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "pykbroker": "127.0.0.1",
             "localhost": "localhost"}

    def rewrite(text: str) -> str:
        parts = []
        for name, (host, port) in _endpoints(text).items():
            parts.append(f"{name}://{hosts[host]}:{ports[port]}")
        return ",".join(parts)

    out = dict(env)
    out["KAFKA_LISTENERS"] = rewrite(env["KAFKA_LISTENERS"])
    out["KAFKA_ADVERTISED_LISTENERS"] = rewrite(env["KAFKA_ADVERTISED_LISTENERS"])
    voters = []
    for voter in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","):
        node, _, address = voter.partition("@")
        host, _, port = address.rpartition(":")
        voters.append(f"{node}@{hosts[host]}:{ports[int(port)]}")
    out["KAFKA_CONTROLLER_QUORUM_VOTERS"] = ",".join(voters)
    out["KAFKA_LOG_DIRS"] = str(data)
    advertised = {name: f"{host}:{port}"
                  for name, (host, port) in _endpoints(out["KAFKA_ADVERTISED_LISTENERS"]).items()}
    return out, advertised


def _base_env(tmp_path: Path) -> dict[str, str]:
    keep = {"HOME", "LANG", "LC_ALL", "SYSTEMROOT", "TZ"}
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PATH"] = os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "/usr/bin:/bin")])
    env["TMPDIR"] = str(tmp_path)
    return env


def _produce_consume(bootstrap: str, topic: str) -> None:
    from confluent_kafka import Consumer, Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    value = f"via {bootstrap}".encode()
    errors: list[object] = []
    producer.produce(topic, value, key=b"k", on_delivery=lambda err, _msg: err and errors.append(err))
    assert producer.flush(15) == 0 and not errors, errors
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            assert msg.value() == value
            consumer.commit(msg, asynchronous=False)
            return
        raise AssertionError(f"nothing consumed from {topic} via {bootstrap}")
    finally:
        consumer.close()


@pytest.mark.timeout(90)
def test_entrypoint_serves_both_listeners_of_compose_broker(tmp_path: Path) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    compose_env = _env(_load(COMPOSE)["services"]["pykbroker"])
    data = tmp_path / "data"
    broker_env, advertised = _container_env_for_host(compose_env, data)
    env = {**_base_env(tmp_path), **broker_env}
    stderr_lines: list[str] = []
    proc = subprocess.Popen(["sh", str(ENTRYPOINT)], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            stderr_lines.append(line.decode(errors="replace"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        for address in advertised.values():
            _wait_for_port(int(address.rpartition(":")[2]), proc, deadline)
        # `exec`: the process started is the broker itself, so signals reach it directly.
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert b"pykbroker" in cmdline and b"-m" in cmdline, cmdline

        assert advertised["INTERNAL"].startswith("127.0.0.1:")
        assert advertised["EXTERNAL"].startswith("localhost:")
        for name, address in advertised.items():
            admin = AdminClient({"bootstrap.servers": address})
            md = admin.list_topics(timeout=15)
            shown = {f"{b.host}:{b.port}" for b in md.brokers.values()}
            assert shown == {address}, (name, shown)
            assert set(md.brokers) == {int(compose_env["KAFKA_NODE_ID"])}
            assert md.cluster_id == compose_env["CLUSTER_ID"]
            topic = f"docker-{name.lower()}-{uuid.uuid4().hex[:8]}"
            for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
                future.result(15)
            _produce_consume(address, topic)
            del admin  # no client left to reconnect (and log) while the broker stops

        meta = (data / "meta.properties").read_text()
        assert f"cluster.id={compose_env['CLUSTER_ID']}" in meta
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        reader.join(5)
        print("".join(stderr_lines), file=sys.stderr)
    assert "shut down completed" in "".join(stderr_lines)


def _cluster_env_for_host(env: dict[str, str], zookeeper: str, data: Path
                          ) -> tuple[dict[str, str], dict[str, str]]:
    """A compose-cluster broker's environment made runnable here: every listener on a free
    127.0.0.1 port (containers share port numbers, processes here cannot), advertised under
    the same names (the container's hostname becomes 127.0.0.1), ZooKeeper the test's."""
    ports = {name: _free_port() for name in _endpoints(env["KAFKA_LISTENERS"])}
    hosts = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "localhost": "localhost"}

    def rewrite(text: str) -> str:
        return ",".join(f"{name}://{hosts.get(host, '127.0.0.1')}:{ports[name]}"
                        for name, (host, _) in _endpoints(text).items())

    out = dict(env)
    out["KAFKA_LISTENERS"] = rewrite(env["KAFKA_LISTENERS"])
    out["KAFKA_ADVERTISED_LISTENERS"] = rewrite(env["KAFKA_ADVERTISED_LISTENERS"])
    out["KAFKA_ZOOKEEPER_CONNECT"] = zookeeper
    out["KAFKA_LOG_DIRS"] = str(data)
    advertised = {name: f"{host}:{port}"
                  for name, (host, port) in _endpoints(out["KAFKA_ADVERTISED_LISTENERS"]).items()}
    return out, advertised


@pytest.mark.cluster
@pytest.mark.timeout(120)
def test_entrypoint_brokers_of_compose_cluster_form_one_cluster(
        tmp_path: Path, zookeeper: Any) -> None:
    """compose-cluster.yml's three brokers, each run by ``entrypoint.sh`` with its service's
    environment (the test's ZooKeeper in place of ``zookeeper:2181``), form one cluster: each
    answers Metadata on each listener with all three brokers at that listener's advertised
    addresses and the same controller; a topic gets the compose file's replication factor 3,
    and records round-trip through a consumer group. All three stop with exit code 0 on SIGTERM
    (the last one has nowhere to move its leaders and retries its controlled shutdown: the
    test shortens the retry backoff, which is all it changes besides addresses and paths)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    services = _load(COMPOSE_CLUSTER)["services"]
    procs: dict[int, subprocess.Popen[bytes]] = {}
    advertised: dict[int, dict[str, str]] = {}
    logs: dict[int, Path] = {}
    try:
        for name in ("pykbroker-1", "pykbroker-2", "pykbroker-3"):
            compose_env = _env(services[name])
            broker_id = int(compose_env["KAFKA_BROKER_ID"])
            env, advertised[broker_id] = _cluster_env_for_host(
                compose_env, zookeeper.hosts, tmp_path / f"data-{broker_id}")
            env["KAFKA_CONTROLLED_SHUTDOWN_RETRY_BACKOFF_MS"] = "200"
            logs[broker_id] = tmp_path / f"{name}.log"
            with open(logs[broker_id], "wb") as log:
                procs[broker_id] = subprocess.Popen(
                    ["sh", str(ENTRYPOINT)], env={**_base_env(tmp_path), **env}, cwd=tmp_path,
                    stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 30
        for broker_id, proc in procs.items():
            for address in advertised[broker_id].values():
                _wait_for_port(int(address.rpartition(":")[2]), proc, deadline)

        def views(listener: str) -> set[tuple[int, tuple[tuple[int, str], ...]]] | None:
            """Each broker's (controller, brokers) on ``listener``; None until all agree."""
            seen = set()
            for addresses in advertised.values():
                md = AdminClient({"bootstrap.servers": addresses[listener]}).list_topics(
                    timeout=10)
                seen.add((md.controller_id, tuple(sorted(
                    (b.id, f"{b.host}:{b.port}") for b in md.brokers.values()))))
            return seen if len(seen) == 1 else None

        for listener in ("EXTERNAL", "INTERNAL"):
            want = tuple(sorted((i, a[listener]) for i, a in advertised.items()))
            while True:
                agreed = views(listener)
                if agreed is not None and next(iter(agreed))[1] == want:
                    break
                assert time.monotonic() < deadline, (listener, agreed, want)
                time.sleep(0.2)
            [(controller, _)] = agreed
            assert controller in procs

        external = ",".join(a["EXTERNAL"] for a in advertised.values())
        admin = AdminClient({"bootstrap.servers": external})
        topic = f"docker-cluster-{uuid.uuid4().hex[:8]}"
        for future in admin.create_topics([NewTopic(topic, 3)]).values():  # broker defaults
            future.result(20)
        while True:
            partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
            if len(partitions) == 3 and all(p.leader in procs for p in partitions.values()):
                break
            assert time.monotonic() < deadline + 30, partitions
            time.sleep(0.2)
        assert all(sorted(p.replicas) == [1, 2, 3] for p in partitions.values()), partitions
        assert {p.leader for p in partitions.values()} == {1, 2, 3}
        del admin
        _produce_consume(advertised[2]["EXTERNAL"], topic)

        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        assert {i: proc.wait(60) for i, proc in procs.items()} == {1: 0, 2: 0, 3: 0}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for broker_id, path in logs.items():
            print(f"----- pykbroker-{broker_id} -----\n{path.read_text(errors='replace')[-3000:]}",
                  file=sys.stderr)


# ---------------------------------------------------------- entrypoint translations, faked


def _fake_python(tmp_path: Path) -> Path:
    """A ``python`` that writes its arguments, KAFKA_* variables and config file to a record."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    fake = bin_dir / "python"
    fake.write_text(
        "#!/bin/sh\n"
        'out="$RECORD"\n'
        'for a in "$@"; do printf "arg %s\\n" "$a"; done >"$out"\n'
        'env | grep "^KAFKA_" | sed "s/^/env /" | sort >>"$out"\n'
        'if [ -f "$3" ]; then sed "s/^/file /" "$3" >>"$out"; fi\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def _run_faked(tmp_path: Path, extra_env: dict[str, str],
               args: list[str] = ()) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    record = tmp_path / "record.txt"
    record.unlink(missing_ok=True)
    env = _base_env(tmp_path)
    env["PATH"] = os.pathsep.join([str(tmp_path / "fakebin"), "/usr/bin", "/bin"])
    env["RECORD"] = str(record)
    env.update(extra_env)
    done = subprocess.run(["sh", str(ENTRYPOINT), *args], env=env, capture_output=True,
                          text=True, timeout=20)
    lines = record.read_text().splitlines() if record.exists() else []
    return done, lines


def test_entrypoint_container_defaults(tmp_path: Path) -> None:
    _fake_python(tmp_path)
    done, lines = _run_faked(tmp_path, {})
    assert done.returncode == 0, done.stderr
    assert lines[:3] == ["arg -m", "arg pykbroker", lines[2]]
    assert lines[2].startswith(f"arg {tmp_path}/pykbroker-defaults.")
    assert "file listeners=PLAINTEXT://0.0.0.0:9092" in lines
    assert "file log.dirs=/var/lib/pykbroker/data" in lines
    assert not [line for line in lines if line.startswith("env ")]

    # KAFKA_* variables and --override beat the defaults file: pass them through untouched.
    done, lines = _run_faked(tmp_path, {"KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://h:19092"},
                             ["--override", "num.partitions=3"])
    assert done.returncode == 0, done.stderr
    assert lines[3:5] == ["arg --override", "arg num.partitions=3"]
    assert "env KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://h:19092" in lines

    # A config file given on the command line gets no defaults.
    props = tmp_path / "server.properties"
    props.write_text("log.dirs=/x\n")
    done, lines = _run_faked(tmp_path, {}, [str(props)])
    assert done.returncode == 0, done.stderr
    assert lines[:3] == ["arg -m", "arg pykbroker", f"arg {props}"]


def test_entrypoint_cluster_id(tmp_path: Path) -> None:
    _fake_python(tmp_path)
    cluster_id = "4L6g3nShT-eMCtK--X86sw"
    dirs = [tmp_path / "a", tmp_path / "b"]
    done, _ = _run_faked(tmp_path, {"CLUSTER_ID": cluster_id, "KAFKA_NODE_ID": "7",
                                    "KAFKA_LOG_DIRS": ",".join(map(str, dirs))})
    assert done.returncode == 0, done.stderr
    for d in dirs:
        meta = (d / "meta.properties").read_text().splitlines()
        assert {"version=0", "broker.id=7", f"cluster.id={cluster_id}"} <= set(meta)

    # Already formatted: kept as it is, with a warning when the ids differ.
    done, _ = _run_faked(tmp_path, {"CLUSTER_ID": "AAAAAAAAAAAAAAAAAAAAAA",
                                    "KAFKA_LOG_DIRS": str(dirs[0])})
    assert done.returncode == 0, done.stderr
    assert "already formatted" in done.stderr
    assert f"cluster.id={cluster_id}" in (dirs[0] / "meta.properties").read_text()

    # The log dir of a config file given on the command line, or of an --override.
    props = tmp_path / "server.properties"
    props.write_text(f"log.dirs = {tmp_path / 'c'}\n")
    done, _ = _run_faked(tmp_path, {"CLUSTER_ID": cluster_id}, [str(props)])
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "c" / "meta.properties").exists()
    done, _ = _run_faked(tmp_path, {"CLUSTER_ID": cluster_id},
                         ["--override", f"log.dirs={tmp_path / 'd'}"])
    assert done.returncode == 0, done.stderr
    meta = (tmp_path / "d" / "meta.properties").read_text()
    assert "broker.id" not in meta, "no node id known: left for the broker to accept"

    # Not a Kafka cluster id: refuse to start, as kafka-storage format does.
    done, lines = _run_faked(tmp_path, {"CLUSTER_ID": "not-an-id"})
    assert done.returncode == 2 and "CLUSTER_ID" in done.stderr and not lines
