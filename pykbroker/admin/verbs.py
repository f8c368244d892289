"""The admin verbs' names, summaries and examples, in one import-free table.

``pykbroker --help`` lists them without importing the admin tools (broker start-up stays
fast), and each verb's own ``--help`` shows its examples from the same table.
"""

from __future__ import annotations

from typing import NamedTuple


class Verb(NamedTuple):
    summary: str
    examples: tuple[str, ...]


VERBS: dict[str, Verb] = {
    "topics": Verb("list, create, describe, alter, delete topics", (
        "pykbroker topics create --topic orders --partitions 3 --config retention.ms=3600000",
        "pykbroker topics list",
        "pykbroker topics describe --topic orders",
        "pykbroker topics alter --topic orders --partitions 6 --config cleanup.policy=compact",
        "pykbroker topics delete --topic orders",
    )),
    "groups": Verb("list, describe, reset offsets of, delete consumer groups", (
        "pykbroker groups list",
        "pykbroker groups describe --group billing",
        "pykbroker groups reset-offsets --group billing --topic orders --to-earliest --execute",
        "pykbroker groups delete --group billing",
    )),
    "produce": Verb("send stdin lines as records (optionally KEY<sep>VALUE)", (
        "seq 10 | pykbroker produce --topic orders",
        "printf 'k1:v1\\nk2:v2\\n' | pykbroker produce --topic orders --key-separator :",
    )),
    "consume": Verb("print records to stdout", (
        "pykbroker consume --topic orders --from-beginning --count 10",
        "pykbroker consume --topic orders --from-beginning --timeout-ms 2000 --json",
    )),
    "acls": Verb("list, add, remove ACLs (as kafka-acls.sh)", (
        "pykbroker acls add --allow-principal User:alice --operation Read --topic orders",
        "pykbroker acls add --allow-principal User:app --operation Write --topic logs- "
        "--resource-pattern-type prefixed",
        "pykbroker acls list --topic orders",
        "pykbroker acls remove --topic orders --principal User:alice",
    )),
    "users": Verb("list, set, delete SCRAM credentials", (
        "pykbroker users set --user alice --mechanism SCRAM-SHA-256 --password alice-secret",
        "pykbroker users list",
        "pykbroker users delete --user alice --mechanism SCRAM-SHA-256",
    )),
    "healthcheck": Verb("exit 0 when the broker answers ApiVersions and Metadata", (
        "pykbroker healthcheck --bootstrap-server localhost:9092",
    )),
    "api-versions": Verb("the API versions the broker supports", (
        "pykbroker api-versions --json",
    )),
}


def examples_text(*lines: str) -> str:
    """An ``examples:`` block for an argparse epilog."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)
