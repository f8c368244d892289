"""Durable cluster metadata for one broker: topics and dynamic broker configs in a file.

A cluster keeps the same facts in ZooKeeper (a later backend behind the same methods); one
broker needs nothing but itself. Every change is written to a temporary file, fsynced and
renamed over the old one, so a crash leaves either the old or the new state.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from pykbroker.cluster.topics import TopicInfo

FILE_NAME = "pykbroker-metadata.json"
FORMAT_VERSION = 1


class LocalMetadataStore:
    def __init__(self, log_dir: Path) -> None:
        self.path = log_dir / FILE_NAME
        self.topics: dict[str, TopicInfo] = {}
        self.broker_configs: dict[str, str] = {}
        self.producer_id_block_end = 0
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = json.loads(self.path.read_text(encoding="utf-8"))
        if data.get("version") != FORMAT_VERSION:
            raise RuntimeError(f"{self.path}: unsupported metadata version {data.get('version')}")
        self.topics = {n: TopicInfo.from_json(n, t) for n, t in data.get("topics", {}).items()}
        self.broker_configs = {str(k): str(v) for k, v in data.get("broker_configs", {}).items()}
        self.producer_id_block_end = int(data.get("producer_id_block_end", 0))

    def _save(self) -> None:
        data = {
            "version": FORMAT_VERSION,
            "topics": {n: t.to_json() for n, t in sorted(self.topics.items())},
            "broker_configs": dict(sorted(self.broker_configs.items())),
            "producer_id_block_end": self.producer_id_block_end,
        }
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        for t in self.topics.values():
            if t.topic_id == topic_id:
                return t
        return None

    def topic_id_of(self, name: str) -> uuid.UUID | None:
        """The fetch path's existence check: no TopicInfo to build."""
        topic = self.topics.get(name)
        return None if topic is None else topic.topic_id

    def name_of(self, topic_id: uuid.UUID) -> str | None:
        topic = self.topic_by_id(topic_id)
        return None if topic is None else topic.name

    def put_topic(self, topic: TopicInfo) -> None:
        self.topics[topic.name] = topic
        self._save()

    def delete_topic(self, name: str) -> None:
        if self.topics.pop(name, None) is not None:
            self._save()

    def set_producer_id_block_end(self, end: int) -> None:
        self.producer_id_block_end = end
        self._save()

    def set_broker_configs(self, configs: dict[str, str]) -> None:
        self.broker_configs = dict(configs)
        self._save()
