"""``pykbroker topics list|create|describe|delete|alter``, as ``kafka-topics.sh``."""

from __future__ import annotations

import argparse
import uuid
from typing import Any

from pykbroker.admin.client import AdminClient, KafkaError, check, error_name
from pykbroker.admin.output import emit_json, error
from pykbroker.error_codes import ErrorCode

CREATE_TOPICS = 19
DELETE_TOPICS = 20
DESCRIBE_CONFIGS = 32
CREATE_PARTITIONS = 37
INCREMENTAL_ALTER_CONFIGS = 44
TOPIC_RESOURCE = 2
DYNAMIC_TOPIC_CONFIG = 1
OP_SET, OP_DELETE = 0, 1
ZERO_UUID = uuid.UUID(int=0)


def run(client: AdminClient, args: argparse.Namespace) -> int:
    handler = {"list": list_topics, "create": create, "describe": describe,
               "delete": delete, "alter": alter}[args.verb]
    return handler(client, args)


def list_topics(client: AdminClient, args: argparse.Namespace) -> int:
    resp = client.metadata(None)
    names = sorted(t.name for t in resp.topics
                   if not (args.exclude_internal and t.is_internal))
    if args.json:
        emit_json(names)
    else:
        for name in names:
            print(name)
    return 0


def create(client: AdminClient, args: argparse.Namespace) -> int:
    from pykbroker.protocol._generated.create_topics_request import (
        CreatableTopic,
        CreatableTopicConfig,
        CreateTopicsRequest,
    )

    version = client.version(CREATE_TOPICS)
    partitions, rf = args.partitions, args.replication_factor
    if version < 4:  # broker defaults (-1) arrived with v4 (KIP-464)
        partitions = 1 if partitions < 0 else partitions
        rf = 1 if rf < 0 else rf
    topic = CreatableTopic(args.topic, partitions, rf, [], [
        CreatableTopicConfig(k, v) for k, v in args.config])
    resp = client.send(CREATE_TOPICS, CreateTopicsRequest([topic], timeout_ms=30_000))
    result = resp.topics[0]
    if result.error_code == ErrorCode.TOPIC_ALREADY_EXISTS and args.if_not_exists:
        created = False
    else:
        check(result.error_code, f"creating topic {args.topic}", result.error_message)
        created = True
    if args.json:
        emit_json({"topic": args.topic, "created": created,
                   "topic_id": _uuid(getattr(result, "topic_id", ZERO_UUID)),
                   "partitions": getattr(result, "num_partitions", partitions),
                   "replication_factor": getattr(result, "replication_factor", rf)})
    elif created:
        print(f"Created topic {args.topic}.")
    else:
        print(f"Topic {args.topic} already exists.")
    return 0


def _uuid(value: uuid.UUID | None) -> str | None:
    return None if value is None or value == ZERO_UUID else str(value)


def topic_configs(client: AdminClient, names: list[str]) -> dict[str, dict[str, str | None]]:
    """Topic -> its overridden (dynamic topic) configs, sensitive values hidden."""
    from pykbroker.protocol._generated.describe_configs_request import (
        DescribeConfigsRequest,
        DescribeConfigsResource,
    )

    if not names:
        return {}
    version = client.version(DESCRIBE_CONFIGS)
    req = DescribeConfigsRequest([DescribeConfigsResource(TOPIC_RESOURCE, n, None)
                                  for n in names])
    resp = client.send(DESCRIBE_CONFIGS, req)
    out: dict[str, dict[str, str | None]] = {}
    for result in resp.results:
        check(result.error_code, f"describing configs of {result.resource_name}",
              result.error_message)
        configs: dict[str, str | None] = {}
        for c in result.configs:
            overridden = (c.config_source == DYNAMIC_TOPIC_CONFIG if version >= 1
                          else not c.is_default)
            if overridden:
                configs[c.name] = None if c.is_sensitive else c.value
        out[result.resource_name] = dict(sorted(configs.items()))
    return out


def describe(client: AdminClient, args: argparse.Namespace) -> int:
    """``kafka-topics.sh --describe``: one line per topic, one per partition (leader, replicas,
    ISR), after a line naming the cluster, its controller and its live brokers. A partition
    also shows its offline replicas and whether it is under-replicated (ISR smaller than the
    replicas) or unavailable (no leader, or a leader that is not a live broker)."""
    resp = client.metadata(args.topic or None)
    live = {b.node_id for b in resp.brokers}
    topics = []
    for t in resp.topics:
        if t.error_code:
            raise KafkaError(f"topic {t.name}: {error_name(t.error_code)}", t.error_code)
        if not args.topic and args.exclude_internal and t.is_internal:
            continue
        topics.append(t)
    topics.sort(key=lambda t: t.name)
    configs = topic_configs(client, [t.name for t in topics])
    data: list[dict[str, Any]] = []
    for t in topics:
        parts = sorted(t.partitions, key=lambda p: p.partition_index)
        data.append({
            "topic": t.name,
            "topic_id": _uuid(getattr(t, "topic_id", None)),
            "internal": t.is_internal,
            "partition_count": len(parts),
            "replication_factor": len(parts[0].replica_nodes) if parts else 0,
            "configs": configs.get(t.name, {}),
            "partitions": [{"partition": p.partition_index, "leader": p.leader_id,
                            "replicas": list(p.replica_nodes), "isr": list(p.isr_nodes),
                            "offline": list(p.offline_replicas or []),
                            "under_replicated": len(p.isr_nodes) < len(p.replica_nodes),
                            "unavailable": p.leader_id < 0 or p.leader_id not in live,
                            "error": error_name(p.error_code) if p.error_code else None}
                           for p in parts],
        })
    if args.json:
        emit_json(data)
        return 0
    brokers = ",".join(f"{b.node_id}@{b.host}:{b.port}"
                       for b in sorted(resp.brokers, key=lambda b: b.node_id))
    controller = getattr(resp, "controller_id", -1)
    print(f"Cluster: {getattr(resp, 'cluster_id', None) or '-'}\t"
          f"Controller: {controller if controller >= 0 else 'none'}\tBrokers: {brokers}")
    for d in data:
        conf = ",".join(f"{k}={v}" for k, v in d["configs"].items())
        print(f"Topic: {d['topic']}\tTopicId: {d['topic_id'] or '-'}\t"
              f"PartitionCount: {d['partition_count']}\t"
              f"ReplicationFactor: {d['replication_factor']}\tConfigs: {conf}")
        for p in d["partitions"]:
            line = (f"\tTopic: {d['topic']}\tPartition: {p['partition']}\tLeader: "
                    f"{p['leader'] if p['leader'] >= 0 else 'none'}\t"
                    f"Replicas: {','.join(map(str, p['replicas']))}\t"
                    f"Isr: {','.join(map(str, p['isr']))}")
            if p["offline"]:
                line += f"\tOffline: {','.join(map(str, p['offline']))}"
            if p["under_replicated"]:
                line += "\tUnderReplicated: true"
            if p["unavailable"]:
                line += "\tUnavailable: true"
            print(line)
    return 0


def delete(client: AdminClient, args: argparse.Namespace) -> int:
    from pykbroker.protocol._generated.delete_topics_request import (
        DeleteTopicsRequest,
        DeleteTopicState,
    )

    version = client.version(DELETE_TOPICS)
    names: list[str] = args.topic
    if version >= 6:
        req = DeleteTopicsRequest(topics=[DeleteTopicState(name=n) for n in names],
                                  timeout_ms=30_000)
    else:
        req = DeleteTopicsRequest(topic_names=list(names), timeout_ms=30_000)
    resp = client.send(DELETE_TOPICS, req)
    results = []
    failed = False
    for r in resp.responses:
        code = r.error_code
        if code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION and args.if_exists:
            code = 0
        elif code:
            failed = True
            error(f"deleting topic {r.name} failed: {error_name(code)}"
                  + (f": {r.error_message}" if getattr(r, "error_message", None) else ""))
        results.append({"topic": r.name, "deleted": r.error_code == 0,
                        "error": error_name(r.error_code) if r.error_code else None})
    if args.json:
        emit_json(results)
    else:
        for r in results:
            if r["deleted"]:
                print(f"Deleted topic {r['topic']}.")
    return 1 if failed else 0


def alter(client: AdminClient, args: argparse.Namespace) -> int:
    if args.partitions is None and not args.config and not args.delete_config:
        raise KafkaError("alter needs --partitions, --config or --delete-config")
    done: dict[str, Any] = {"topic": args.topic}
    if args.partitions is not None:
        from pykbroker.protocol._generated.create_partitions_request import (
            CreatePartitionsRequest,
            CreatePartitionsTopic,
        )

        req = CreatePartitionsRequest([CreatePartitionsTopic(args.topic, args.partitions, None)],
                                      timeout_ms=30_000)
        resp = client.send(CREATE_PARTITIONS, req)
        r = resp.results[0]
        check(r.error_code, f"increasing the partitions of {args.topic}", r.error_message)
        done["partitions"] = args.partitions
        if not args.json:
            print(f"Topic {args.topic} now has {args.partitions} partitions.")
    if args.config or args.delete_config:
        from pykbroker.protocol._generated.incremental_alter_configs_request import (
            AlterableConfig,
            AlterConfigsResource,
            IncrementalAlterConfigsRequest,
        )

        ops = ([AlterableConfig(k, OP_SET, v) for k, v in args.config]
               + [AlterableConfig(k, OP_DELETE, None) for k in args.delete_config])
        req2 = IncrementalAlterConfigsRequest([AlterConfigsResource(TOPIC_RESOURCE, args.topic,
                                                                    ops)])
        resp2 = client.send(INCREMENTAL_ALTER_CONFIGS, req2)
        r2 = resp2.responses[0]
        check(r2.error_code, f"altering the configs of {args.topic}", r2.error_message)
        done["set"] = dict(args.config)
        done["deleted"] = list(args.delete_config)
        if not args.json:
            print(f"Updated config of topic {args.topic}.")
    if args.json:
        emit_json(done)
    return 0
