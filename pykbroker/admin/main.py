"""Argument parsing and dispatch for the admin subcommands."""

from __future__ import annotations

import argparse
import os
import sys

from pykbroker.admin.client import AdminClient, KafkaError
from pykbroker.admin.output import error
from pykbroker.errors import DecodeError

COMMANDS = ("topics", "groups", "produce", "consume", "healthcheck", "api-versions")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap-server", default="localhost:9092", metavar="HOST:PORT",
                   help="broker(s) to connect to, comma separated (default localhost:9092)")
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")
    p.add_argument("--request-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="socket timeout per request (default 30)")


def _config_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pykbroker", description="Kafka admin tools.")
    sub = p.add_subparsers(dest="command", required=True)

    topics = sub.add_parser("topics", help="list, create, describe, alter, delete topics")
    tsub = topics.add_subparsers(dest="verb", required=True)
    t = tsub.add_parser("list", help="topic names")
    _common(t)
    t.add_argument("--exclude-internal", action="store_true")
    t = tsub.add_parser("create", help="create a topic")
    _common(t)
    t.add_argument("--topic", required=True)
    t.add_argument("--partitions", type=int, default=-1)
    t.add_argument("--replication-factor", type=int, default=-1)
    t.add_argument("--config", action="append", type=_config_pair, default=[],
                   metavar="KEY=VALUE")
    t.add_argument("--if-not-exists", action="store_true")
    t = tsub.add_parser("describe", help="partitions, leaders, replicas, ISR, config overrides")
    _common(t)
    t.add_argument("--topic", action="append", default=[])
    t.add_argument("--exclude-internal", action="store_true")
    t = tsub.add_parser("delete", help="delete topics")
    _common(t)
    t.add_argument("--topic", action="append", required=True)
    t.add_argument("--if-exists", action="store_true")
    t = tsub.add_parser("alter", help="add partitions, set or delete configs")
    _common(t)
    t.add_argument("--topic", required=True)
    t.add_argument("--partitions", type=int)
    t.add_argument("--config", action="append", type=_config_pair, default=[],
                   metavar="KEY=VALUE")
    t.add_argument("--delete-config", action="append", default=[], metavar="KEY")

    groups = sub.add_parser("groups", help="list, describe, reset offsets of, delete groups")
    gsub = groups.add_subparsers(dest="verb", required=True)
    g = gsub.add_parser("list", help="group ids")
    _common(g)
    g = gsub.add_parser("describe", help="state, members, lag per partition")
    _common(g)
    g.add_argument("--group", action="append", default=[])
    g.add_argument("--all-groups", action="store_true")
    g = gsub.add_parser("reset-offsets", help="move committed offsets (dry run by default)")
    _common(g)
    g.add_argument("--group", required=True)
    g.add_argument("--topic", action="append", required=True, metavar="TOPIC[:P,P...]",
                   help="topic, optionally with partitions (repeatable)")
    how = g.add_mutually_exclusive_group(required=True)
    how.add_argument("--to-earliest", action="store_true")
    how.add_argument("--to-latest", action="store_true")
    how.add_argument("--to-offset", type=int)
    how.add_argument("--shift-by", type=int, help="move committed offsets by N (+/-)")
    g.add_argument("--execute", action="store_true", help="commit (without: dry run)")
    g.add_argument("--dry-run", action="store_true", help="the default; for compatibility")
    g = gsub.add_parser("delete", help="delete groups")
    _common(g)
    g.add_argument("--group", action="append", required=True)

    c = sub.add_parser("produce", help="stdin lines become records")
    _common(c)
    c.add_argument("--topic", required=True)
    c.add_argument("--key-separator", default=None)
    c.add_argument("--partition", type=int, default=None)
    c.add_argument("--batch-size", type=int, default=500, help="records per batch")
    c = sub.add_parser("consume", help="records to stdout")
    _common(c)
    c.add_argument("--topic", required=True)
    c.add_argument("--from-beginning", action="store_true")
    c.add_argument("--count", type=int, default=None, help="exit after N records")
    c.add_argument("--partition", type=int, default=None)
    c.add_argument("--key-separator", default=None)
    c.add_argument("--timeout-ms", type=int, default=None,
                   help="exit when no record arrives for this long")

    h = sub.add_parser("healthcheck", help="exit 0 when ApiVersions and Metadata answer")
    _common(h)
    a = sub.add_parser("api-versions", help="the broker's supported API versions")
    _common(a)
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        with AdminClient(args.bootstrap_server, timeout=args.request_timeout) as client:
            if args.command == "topics":
                from pykbroker.admin import topics
                return topics.run(client, args)
            if args.command == "groups":
                from pykbroker.admin import groups
                return groups.run(client, args)
            if args.command in ("produce", "consume"):
                from pykbroker.admin import console
                return console.run(client, args)
            from pykbroker.admin import misc
            return misc.run(client, args)
    except KafkaError as exc:
        error(str(exc))
        return 1
    except BrokenPipeError:  # stdout closed early (``| head``): not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except DecodeError as exc:
        error(f"malformed response from the broker: {exc}")
        return 1
    except OSError as exc:
        error(f"network error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
