from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from pykbroker.log.checkpoints import (
    CheckpointError,
    InconsistentBrokerIdError,
    new_cluster_id,
    read_offset_checkpoint,
    read_or_create_meta,
    read_partition_metadata,
    topic_id_from_str,
    topic_id_to_str,
    write_offset_checkpoint,
    write_partition_metadata,
)


def test_offset_checkpoint_round_trip_and_format(tmp_path: Path) -> None:
    path = tmp_path / "recovery-point-offset-checkpoint"
    assert read_offset_checkpoint(path) == {}
    offsets = {("a.b-c", 0): 10, ("a.b-c", 1): 0, ("z", 3): 2**40}
    write_offset_checkpoint(path, offsets)
    assert path.read_text() == "0\n3\na.b-c 0 10\na.b-c 1 0\nz 3 1099511627776\n"
    assert read_offset_checkpoint(path) == offsets
    assert not (tmp_path / "recovery-point-offset-checkpoint.tmp").exists()
    for bad in ("1\n0\n", "0\n2\nt 0 1\n", "0\nx\n", "0\n1\nt zero 1\n", ""):
        path.write_text(bad)
        with pytest.raises(CheckpointError):
            read_offset_checkpoint(path)


def test_topic_id_encoding_matches_kafka() -> None:
    # Kafka's Uuid.toString of new Uuid(0x0123456789abcdefL, 0xfedcba9876543210L)
    tid = uuid.UUID("0123456789abcdeffedcba9876543210")
    assert topic_id_to_str(tid) == "ASNFZ4mrze_-3LqYdlQyEA"
    assert topic_id_from_str("ASNFZ4mrze_-3LqYdlQyEA") == tid
    assert len(new_cluster_id()) == 22
    with pytest.raises(CheckpointError):
        topic_id_from_str("not*base64")


def test_partition_metadata(tmp_path: Path) -> None:
    assert read_partition_metadata(tmp_path) is None
    tid = uuid.uuid4()
    write_partition_metadata(tmp_path, tid)
    text = (tmp_path / "partition.metadata").read_text()
    assert text == f"version: 0\ntopic_id: {topic_id_to_str(tid)}"
    assert read_partition_metadata(tmp_path) == tid
    (tmp_path / "partition.metadata").write_text("version: 1\ntopic_id: x\n")
    with pytest.raises(CheckpointError):
        read_partition_metadata(tmp_path)


def test_meta_properties(tmp_path: Path) -> None:
    made = []

    def factory() -> str:
        made.append(1)
        return "MkU3OEVBNTcwNTJENDM2Qg"

    assert read_or_create_meta(tmp_path, 1, factory) == "MkU3OEVBNTcwNTJENDM2Qg"
    lines = (tmp_path / "meta.properties").read_text().splitlines()
    assert lines[0] == "#" and lines[1].startswith("#")
    assert lines[2:] == ["version=0", "broker.id=1", "cluster.id=MkU3OEVBNTcwNTJENDM2Qg"]
    assert read_or_create_meta(tmp_path, 1, factory) == "MkU3OEVBNTcwNTJENDM2Qg"
    assert made == [1]
    with pytest.raises(InconsistentBrokerIdError, match="doesn't match stored broker.id 1"):
        read_or_create_meta(tmp_path, 2, factory)
    # a KRaft-style file written by Kafka itself
    (tmp_path / "meta.properties").write_text(
        "#\n#Tue Jan 02 12:00:00 UTC 2024\nnode.id=4\ndirectory.id=x\nversion=1\ncluster.id=abc\n"
    )
    assert read_or_create_meta(tmp_path, 4, factory) == "abc"
