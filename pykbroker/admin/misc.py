"""``healthcheck`` and ``api-versions``."""

from __future__ import annotations

import argparse

from pykbroker.admin.client import AdminClient, KafkaError
from pykbroker.admin.output import emit_json, error, table
from pykbroker.protocol._generated.api_index import ApiKey


def _name(key: int) -> str:
    try:
        return ApiKey(key).name
    except ValueError:
        return f"UNKNOWN_{key}"


def run(client: AdminClient, args: argparse.Namespace) -> int:
    if args.command == "api-versions":
        versions = client.broker_versions()
        rows = [(_name(k), k, lo, hi) for k, (lo, hi) in sorted(versions.items())]
        if args.json:
            emit_json([{"api": n, "key": k, "min": lo, "max": hi} for n, k, lo, hi in rows])
        else:
            table(["API", "KEY", "MIN", "MAX"], rows)
        return 0
    # healthcheck: one quick attempt, no retries (Docker runs it again)
    client.retries = 0
    try:
        client.broker_versions()
        resp = client.metadata([])
    except (KafkaError, OSError) as exc:
        if args.json:
            emit_json({"healthy": False, "error": str(exc)})
        else:
            error(f"unhealthy: {exc}")
        return 1
    if args.json:
        emit_json({"healthy": True, "cluster_id": resp.cluster_id,
                   "controller_id": resp.controller_id, "brokers": len(resp.brokers)})
    else:
        print(f"ok: cluster {resp.cluster_id}, {len(resp.brokers)} broker(s)")
    return 0
