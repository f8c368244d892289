"""Small text files Kafka keeps beside the logs, in Kafka's exact formats.

* offset checkpoints (``recovery-point-offset-checkpoint``, ``log-start-offset-checkpoint``,
  ``replication-offset-checkpoint``): ``0`` / count / ``topic partition offset`` lines;
* ``partition.metadata`` in each partition directory: ``version: 0`` / ``topic_id: <id>``;
* ``meta.properties`` in each log directory: Java properties with ``broker.id``/``cluster.id``.

Every write goes to ``<name>.tmp``, is fsynced, then renamed over the old file (and the
directory fsynced), as Kafka's ``CheckpointFile`` does, so a crash leaves old or new, never
half. A checkpoint that cannot be parsed is reported as :class:`CheckpointError`.
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Final

from pykbroker.errors import PykbrokerError

__all__ = [
    "CLEAN_SHUTDOWN_FILE",
    "LOG_START_OFFSET_CHECKPOINT",
    "META_PROPERTIES",
    "PARTITION_METADATA",
    "RECOVERY_POINT_CHECKPOINT",
    "CheckpointError",
    "InconsistentBrokerIdError",
    "new_cluster_id",
    "read_lines_checkpoint",
    "read_offset_checkpoint",
    "read_or_create_meta",
    "read_partition_metadata",
    "topic_id_from_str",
    "topic_id_to_str",
    "write_atomically",
    "write_lines_checkpoint",
    "write_offset_checkpoint",
    "write_partition_metadata",
]

RECOVERY_POINT_CHECKPOINT: Final = "recovery-point-offset-checkpoint"
LOG_START_OFFSET_CHECKPOINT: Final = "log-start-offset-checkpoint"
PARTITION_METADATA: Final = "partition.metadata"
META_PROPERTIES: Final = "meta.properties"
CLEAN_SHUTDOWN_FILE: Final = ".kafka_cleanshutdown"

TopicPartition = tuple[str, int]


class CheckpointError(PykbrokerError):
    """A checkpoint or metadata file that exists but cannot be parsed."""


class InconsistentBrokerIdError(PykbrokerError):
    """The log directory belongs to another broker id (Kafka's InconsistentBrokerIdException)."""


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text``: write a temp file, fsync, rename, fsync the directory."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        data = memoryview(text.encode("utf-8"))
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make renames and new files in ``directory`` durable (a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_lines_checkpoint(path: Path, fields: int) -> list[list[str]] | None:
    """Entries of a ``version 0 / count / lines`` file, split on whitespace; None if absent."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    lines = text.splitlines()
    if len(lines) < 2 or lines[0].strip() != "0":
        raise CheckpointError(f"{path}: unrecognised version line {lines[:1]!r}")
    try:
        count = int(lines[1].strip())
    except ValueError:
        raise CheckpointError(f"{path}: malformed count line {lines[1]!r}") from None
    entries = [line.split() for line in lines[2:] if line.strip()]
    if count != len(entries) or any(len(e) != fields for e in entries):
        raise CheckpointError(f"{path}: expected {count} lines of {fields} fields")
    return entries


def write_lines_checkpoint(path: Path, entries: Iterable[Iterable[object]]) -> None:
    rows = [" ".join(str(v) for v in entry) for entry in entries]
    write_atomically(path, "".join(f"{line}\n" for line in ["0", str(len(rows)), *rows]))


def read_offset_checkpoint(path: Path) -> dict[TopicPartition, int]:
    """``{(topic, partition): offset}``; empty when the file does not exist."""
    entries = read_lines_checkpoint(path, 3)
    if entries is None:
        return {}
    try:
        return {(topic, int(part)): int(offset) for topic, part, offset in entries}
    except ValueError:
        raise CheckpointError(f"{path}: malformed offset line") from None


def write_offset_checkpoint(path: Path, offsets: Mapping[TopicPartition, int]) -> None:
    write_lines_checkpoint(path, ((t, p, o) for (t, p), o in sorted(offsets.items())))


def topic_id_to_str(topic_id: uuid.UUID) -> str:
    """Kafka's ``Uuid.toString``: URL-safe base64 of the 16 bytes, no padding (22 chars)."""
    return base64.urlsafe_b64encode(topic_id.bytes).rstrip(b"=").decode("ascii")


def topic_id_from_str(text: str) -> uuid.UUID:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return uuid.UUID(bytes=raw)
    except ValueError:
        raise CheckpointError(f"malformed Kafka uuid {text!r}") from None


def new_cluster_id() -> str:
    """A random cluster id in Kafka's form (``kafka-storage random-uuid``)."""
    return topic_id_to_str(uuid.uuid4())


def read_partition_metadata(directory: Path) -> uuid.UUID | None:
    path = directory / PARTITION_METADATA
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    values = _parse_properties(text, ":")
    if values.get("version") != "0" or "topic_id" not in values:
        raise CheckpointError(f"{path}: unrecognised partition metadata {text!r}")
    return topic_id_from_str(values["topic_id"])


def write_partition_metadata(directory: Path, topic_id: uuid.UUID) -> None:
    text = f"version: 0\ntopic_id: {topic_id_to_str(topic_id)}"
    write_atomically(directory / PARTITION_METADATA, text)


def _parse_properties(text: str, separator: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")) or separator not in line:
            continue
        key, _, value = line.partition(separator)
        values[key.strip()] = value.strip()
    return values


def stored_broker_id(log_dirs: list[Path]) -> int | None:
    """The ``broker.id`` a log directory's meta.properties holds (a generated id is kept
    there, so the broker keeps it across restarts), or None."""
    for log_dir in log_dirs:
        try:
            values = _parse_properties((log_dir / META_PROPERTIES).read_text("utf-8"), "=")
        except FileNotFoundError:
            continue
        stored = values.get("broker.id", values.get("node.id"))
        if stored is not None and stored.lstrip("-").isdigit() and int(stored) >= 0:
            return int(stored)
    return None


def read_or_create_meta(log_dir: Path, node_id: int, cluster_id_factory: Callable[[], str]) -> str:
    """The cluster id stored in ``log_dir/meta.properties``, creating the file if absent.

    Raises :class:`InconsistentBrokerIdError` when the stored ``broker.id`` (or KRaft's
    ``node.id``) differs from ``node_id``, as Kafka refuses to start on another broker's data.
    """
    path = log_dir / META_PROPERTIES
    try:
        values = _parse_properties(path.read_text("utf-8"), "=")
    except FileNotFoundError:
        values = {}
    if values:
        stored = values.get("broker.id", values.get("node.id"))
        if stored is not None and stored != str(node_id):
            raise InconsistentBrokerIdError(
                f"Configured broker.id {node_id} doesn't match stored broker.id {stored} in "
                f"{path}. If you moved your data, make sure your configured broker.id matches. "
                "If you intend to create a new broker, you should remove all data in your "
                "data directories (log.dirs)."
            )
        cluster_id = values.get("cluster.id")
        if cluster_id:
            return cluster_id
    cluster_id = cluster_id_factory()
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime())
    write_atomically(
        path, f"#\n#{stamp}\nversion=0\nbroker.id={node_id}\ncluster.id={cluster_id}\n"
    )
    return cluster_id
