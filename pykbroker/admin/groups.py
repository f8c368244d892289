"""``pykbroker groups list|describe|reset-offsets|delete``, as ``kafka-consumer-groups.sh``."""

from __future__ import annotations

import argparse
import struct
import time
from typing import Any

from pykbroker.admin.client import AdminClient, KafkaError, check, error_name
from pykbroker.admin.output import emit_json, error, table
from pykbroker.error_codes import ErrorCode

OFFSET_COMMIT = 8
OFFSET_FETCH = 9
DESCRIBE_GROUPS = 15
LIST_GROUPS = 16
DELETE_GROUPS = 42
LATEST, EARLIEST = -1, -2
_LOADING = (ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, ErrorCode.COORDINATOR_NOT_AVAILABLE,
            ErrorCode.NOT_COORDINATOR)


def run(client: AdminClient, args: argparse.Namespace) -> int:
    handler = {"list": list_groups, "describe": describe, "reset-offsets": reset_offsets,
               "delete": delete}[args.verb]
    return handler(client, args)


def _retrying(call: Any, attempts: int = 20) -> Any:
    """Run ``call`` again while the coordinator is loading or moving."""
    for _ in range(attempts - 1):
        try:
            return call()
        except KafkaError as exc:
            if exc.code not in _LOADING:
                raise
            time.sleep(0.25)
    return call()


def all_groups(client: AdminClient) -> list[dict[str, Any]]:
    """Every group on every broker (each broker lists the groups it coordinates)."""
    from pykbroker.protocol._generated.list_groups_request import ListGroupsRequest

    nodes = [b.node_id for b in client.metadata([]).brokers]
    seen: dict[str, dict[str, Any]] = {}
    for node in nodes:
        resp = client.send(LIST_GROUPS, ListGroupsRequest(states_filter=[], types_filter=[]),
                           node=node)
        check(resp.error_code, "ListGroups")
        for g in resp.groups:
            seen[g.group_id] = {"group": g.group_id, "protocol_type": g.protocol_type,
                                "state": getattr(g, "group_state", None) or None}
    return [seen[k] for k in sorted(seen)]


def list_groups(client: AdminClient, args: argparse.Namespace) -> int:
    groups = all_groups(client)
    if args.json:
        emit_json(groups)
    else:
        for g in groups:
            print(g["group"])
    return 0


def _describe_group(client: AdminClient, group: str) -> Any:
    from pykbroker.protocol._generated.describe_groups_request import DescribeGroupsRequest

    def call() -> Any:
        node = client.coordinator(group)
        resp = client.send(DESCRIBE_GROUPS, DescribeGroupsRequest([group]), node=node)
        g = resp.groups[0]
        check(g.error_code, f"describing group {group}")
        return g

    return _retrying(call)


def committed(client: AdminClient, group: str, topics: list[str] | None = None
              ) -> dict[tuple[str, int], int]:
    """(topic, partition) -> committed offset of ``group`` (all its topics when None)."""
    from pykbroker.protocol._generated.offset_fetch_request import (
        OffsetFetchRequest,
        OffsetFetchRequestTopic,
    )

    def call() -> Any:
        node = client.coordinator(group)
        version = client.version(OFFSET_FETCH, node)
        req_topics: list[OffsetFetchRequestTopic] | None
        if topics is None and version >= 2:
            req_topics = None
        else:
            names = topics if topics is not None else []
            req_topics = []
            for name in names:
                parts = sorted(client.leaders(name))
                req_topics.append(OffsetFetchRequestTopic(name, parts))
        resp = client.send(OFFSET_FETCH, OffsetFetchRequest(group_id=group, topics=req_topics),
                           node=node)
        if version >= 2:
            check(resp.error_code, f"fetching the offsets of group {group}")
        return resp

    resp = _retrying(call)
    out: dict[tuple[str, int], int] = {}
    for t in resp.topics:
        for p in t.partitions:
            check(p.error_code, f"offsets of {group} on {t.name}-{p.partition_index}")
            if p.committed_offset >= 0:
                out[(t.name, p.partition_index)] = p.committed_offset
    return out


def _assignment(data: bytes | None) -> list[tuple[str, int]]:
    from pykbroker.protocol._generated.consumer_protocol_assignment import (
        ConsumerProtocolAssignment,
    )

    if not data or len(data) < 2:
        return []
    (version,) = struct.unpack_from(">h", data, 0)
    try:
        msg, _ = ConsumerProtocolAssignment.decode(data, 2, min(max(version, 0), 3))
    except Exception:  # not the consumer protocol: nothing to show
        return []
    return [(tp.topic, p) for tp in msg.assigned_partitions for p in tp.partitions]


def describe_one(client: AdminClient, group: str) -> dict[str, Any]:
    g = _describe_group(client, group)
    owners: dict[tuple[str, int], Any] = {}
    members = []
    for m in g.members:
        assigned = _assignment(m.member_assignment) if g.protocol_type == "consumer" else []
        for tp in assigned:
            owners[tp] = m
        members.append({"member_id": m.member_id, "group_instance_id": m.group_instance_id,
                        "client_id": m.client_id, "host": m.client_host,
                        "assignment": [{"topic": t, "partition": p} for t, p in assigned]})
    offsets = committed(client, group)
    keys = sorted(set(offsets) | set(owners))
    by_topic: dict[str, list[int]] = {}
    for topic, part in keys:
        by_topic.setdefault(topic, []).append(part)
    ends: dict[tuple[str, int], int] = {}
    for topic, parts in by_topic.items():
        try:
            for part, off in client.list_offsets(topic, parts, LATEST).items():
                ends[(topic, part)] = off
        except KafkaError as exc:
            error(f"log end offsets of {topic}: {exc}")
    partitions = []
    for key in keys:
        cur, end, owner = offsets.get(key), ends.get(key), owners.get(key)
        partitions.append({
            "topic": key[0], "partition": key[1], "current_offset": cur,
            "log_end_offset": end,
            "lag": (end - cur) if cur is not None and end is not None else None,
            "consumer_id": owner.member_id if owner else None,
            "host": owner.client_host if owner else None,
            "client_id": owner.client_id if owner else None,
        })
    return {"group": group, "state": g.group_state, "protocol_type": g.protocol_type,
            "protocol": g.protocol_data, "members": members, "partitions": partitions}


def describe(client: AdminClient, args: argparse.Namespace) -> int:
    names = list(args.group)
    if args.all_groups:
        names += [g["group"] for g in all_groups(client) if g["group"] not in names]
    if not names:
        raise KafkaError("describe needs --group or --all-groups")
    data = [describe_one(client, n) for n in names]
    missing = [d["group"] for d in data if d["state"] == "Dead" and not d["partitions"]]
    if args.json:
        emit_json(data)
        return 1 if missing else 0
    for i, d in enumerate(data):
        if d["group"] in missing:
            error(f"Consumer group '{d['group']}' does not exist.")
            continue
        if i:
            print()
        print(f"Group: {d['group']}\tState: {d['state']}\tProtocolType: "
              f"{d['protocol_type'] or '-'}\tProtocol: {d['protocol'] or '-'}\t"
              f"Members: {len(d['members'])}")
        if d["partitions"]:
            table(["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
                   "CONSUMER-ID", "HOST", "CLIENT-ID"],
                  [(d["group"], p["topic"], p["partition"], p["current_offset"],
                    p["log_end_offset"], p["lag"], p["consumer_id"], p["host"],
                    p["client_id"]) for p in d["partitions"]])
        elif d["members"]:
            table(["CONSUMER-ID", "HOST", "CLIENT-ID"],
                  [(m["member_id"], m["host"], m["client_id"]) for m in d["members"]])
        else:
            print(f"Consumer group '{d['group']}' has no active members and no offsets.")
    return 1 if missing else 0


def _topic_spec(client: AdminClient, spec: str) -> tuple[str, list[int]]:
    """``topic`` (all partitions) or ``topic:0,2`` as ``kafka-consumer-groups.sh``."""
    topic, sep, parts = spec.rpartition(":") if ":" in spec else (spec, "", "")
    known = sorted(client.leaders(topic))
    if not sep:
        return topic, known
    try:
        wanted = sorted({int(p) for p in parts.split(",") if p.strip()})
    except ValueError:
        raise KafkaError(f"bad partition list in {spec!r}") from None
    unknown = [p for p in wanted if p not in known]
    if unknown:
        raise KafkaError(f"topic {topic} has no partition(s) {unknown}")
    return topic, wanted


def reset_offsets(client: AdminClient, args: argparse.Namespace) -> int:
    from pykbroker.protocol._generated.offset_commit_request import (
        OffsetCommitRequest,
        OffsetCommitRequestPartition,
        OffsetCommitRequestTopic,
    )

    group: str = args.group
    if args.execute:
        g = _describe_group(client, group)
        if g.group_state not in ("Empty", "Dead", ""):
            raise KafkaError(f"assignments can only be reset if the group '{group}' is "
                             f"inactive, but the current state is {g.group_state}.")
    plan: dict[str, dict[int, int]] = {}
    current = committed(client, group) if args.shift_by is not None else {}
    for spec in args.topic:
        topic, parts = _topic_spec(client, spec)
        if args.to_earliest:
            plan[topic] = client.list_offsets(topic, parts, EARLIEST)
        elif args.to_latest:
            plan[topic] = client.list_offsets(topic, parts, LATEST)
        else:
            low = client.list_offsets(topic, parts, EARLIEST)
            high = client.list_offsets(topic, parts, LATEST)
            if args.shift_by is not None:
                # Kafka shifts from the committed offset, or the log end without one
                wanted = {p: current.get((topic, p), high[p]) + args.shift_by for p in parts}
            else:
                wanted = {p: args.to_offset for p in parts}
            # out of range: clamped, as kafka-consumer-groups.sh does
            plan[topic] = {p: min(max(wanted[p], low[p]), high[p]) for p in parts}
    if args.execute:
        req = OffsetCommitRequest(
            group_id=group, generation_id_or_member_epoch=-1, member_id="",
            retention_time_ms=-1,
            topics=[OffsetCommitRequestTopic(topic, [
                OffsetCommitRequestPartition(partition_index=p, committed_offset=off,
                                             committed_leader_epoch=-1,
                                             committed_metadata="")
                for p, off in sorted(parts.items())]) for topic, parts in plan.items()])

        def call() -> Any:
            resp = client.send(OFFSET_COMMIT, req, node=client.coordinator(group))
            for t in resp.topics:
                for p in t.partitions:
                    check(p.error_code, f"committing {group} offsets for "
                          f"{t.name}-{p.partition_index}")
            return resp

        _retrying(call)
    rows = [(group, topic, p, off) for topic, parts in plan.items()
            for p, off in sorted(parts.items())]
    if args.json:
        emit_json({"group": group, "executed": bool(args.execute), "offsets": [
            {"topic": t, "partition": p, "new_offset": o} for _, t, p, o in rows]})
    else:
        table(["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"], rows)
        if not args.execute:
            print("(dry run: add --execute to commit these offsets)")
    return 0


def delete(client: AdminClient, args: argparse.Namespace) -> int:
    from pykbroker.protocol._generated.delete_groups_request import DeleteGroupsRequest

    results = []
    failed = False
    for group in args.group:
        def call(group: str = group) -> Any:
            resp = client.send(DELETE_GROUPS, DeleteGroupsRequest([group]),
                               node=client.coordinator(group))
            r = resp.results[0]
            if r.error_code in _LOADING:
                check(r.error_code, f"deleting group {group}")
            return r

        r = _retrying(call)
        if r.error_code:
            failed = True
            error(f"deleting group {group} failed: {error_name(r.error_code)}")
        results.append({"group": group, "deleted": r.error_code == 0,
                        "error": error_name(r.error_code) if r.error_code else None})
    if args.json:
        emit_json(results)
    else:
        for r in results:
            if r["deleted"]:
                print(f"Deleted consumer group '{r['group']}'.")
    return 1 if failed else 0
