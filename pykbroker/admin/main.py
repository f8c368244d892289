"""Argument parsing and dispatch for the admin subcommands."""

from __future__ import annotations

import argparse
import os
import sys

from pykbroker.admin.client import AdminClient, KafkaError
from pykbroker.admin.client_security import CommandConfig, load_command_config
from pykbroker.admin.output import error
from pykbroker.admin.verbs import VERBS, examples_text
from pykbroker.config.types import ConfigError
from pykbroker.errors import DecodeError

COMMANDS = tuple(VERBS)
Subparsers = argparse._SubParsersAction  # what add_subparsers() returns


def _verb(sub: Subparsers[argparse.ArgumentParser], name: str) -> argparse.ArgumentParser:
    """A verb's parser: its summary as help and description, its examples as epilog."""
    verb = VERBS[name]
    return sub.add_parser(name, help=verb.summary, description=verb.summary,
                          epilog=examples_text(*verb.examples),
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _sub_verb(
    sub: Subparsers[argparse.ArgumentParser], verb: str, name: str, summary: str
) -> argparse.ArgumentParser:
    """``topics create`` and the like: the verb's examples for this sub-verb as epilog."""
    lines = [e for e in VERBS[verb].examples if f"pykbroker {verb} {name}" in e]
    return sub.add_parser(name, help=summary, description=summary,
                          epilog=examples_text(*lines) if lines else None,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap-server", default="localhost:9092", metavar="HOST:PORT",
                   help="broker(s) to connect to, comma separated (default localhost:9092)")
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")
    p.add_argument("--request-timeout", type=float, default=None, metavar="SECONDS",
                   help="socket timeout per request (default request.timeout.ms of "
                        "--command-config, else 30)")
    p.add_argument("--command-config", metavar="FILE",
                   help="client settings (Java properties, as Kafka's tools): "
                        "security.protocol, ssl.* PEM stores, sasl.mechanism, "
                        "sasl.jaas.config, client.id, request.timeout.ms")


def _config_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pykbroker", description="Kafka admin tools.")
    sub = p.add_subparsers(dest="command", required=True)

    topics = _verb(sub, "topics")
    tsub = topics.add_subparsers(dest="verb", required=True)
    t = _sub_verb(tsub, "topics", "list", "topic names")
    _common(t)
    t.add_argument("--exclude-internal", action="store_true")
    t = _sub_verb(tsub, "topics", "create", "create a topic")
    _common(t)
    t.add_argument("--topic", required=True)
    t.add_argument("--partitions", type=int, default=-1)
    t.add_argument("--replication-factor", type=int, default=-1)
    t.add_argument("--config", action="append", type=_config_pair, default=[],
                   metavar="KEY=VALUE")
    t.add_argument("--if-not-exists", action="store_true")
    t = _sub_verb(tsub, "topics", "describe",
                  "partitions, leaders, replicas, ISR, config overrides")
    _common(t)
    t.add_argument("--topic", action="append", default=[])
    t.add_argument("--exclude-internal", action="store_true")
    t = _sub_verb(tsub, "topics", "delete", "delete topics")
    _common(t)
    t.add_argument("--topic", action="append", required=True)
    t.add_argument("--if-exists", action="store_true")
    t = _sub_verb(tsub, "topics", "alter", "add partitions, set or delete configs")
    _common(t)
    t.add_argument("--topic", required=True)
    t.add_argument("--partitions", type=int)
    t.add_argument("--config", action="append", type=_config_pair, default=[],
                   metavar="KEY=VALUE")
    t.add_argument("--delete-config", action="append", default=[], metavar="KEY")

    groups = _verb(sub, "groups")
    gsub = groups.add_subparsers(dest="verb", required=True)
    g = _sub_verb(gsub, "groups", "list", "group ids")
    _common(g)
    g = _sub_verb(gsub, "groups", "describe", "state, members, lag per partition")
    _common(g)
    g.add_argument("--group", action="append", default=[])
    g.add_argument("--all-groups", action="store_true")
    g = _sub_verb(gsub, "groups", "reset-offsets",
                  "move committed offsets (dry run by default)")
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
    g = _sub_verb(gsub, "groups", "delete", "delete groups")
    _common(g)
    g.add_argument("--group", action="append", required=True)

    c = _verb(sub, "produce")
    _common(c)
    c.add_argument("--topic", required=True)
    c.add_argument("--key-separator", default=None)
    c.add_argument("--partition", type=int, default=None)
    c.add_argument("--batch-size", type=int, default=500, help="records per batch")
    c = _verb(sub, "consume")
    _common(c)
    c.add_argument("--topic", required=True)
    c.add_argument("--from-beginning", action="store_true")
    c.add_argument("--count", type=int, default=None, help="exit after N records")
    c.add_argument("--partition", type=int, default=None)
    c.add_argument("--key-separator", default=None)
    c.add_argument("--timeout-ms", type=int, default=None,
                   help="exit when no record arrives for this long")

    from pykbroker.admin.security import MECHANISMS, add_arguments

    acls = _verb(sub, "acls")
    asub = acls.add_subparsers(dest="verb", required=True)
    for name, summary in (("list", "ACLs matching the options (all without any)"),
                          ("add", "add ALLOW or DENY entries on one resource"),
                          ("remove", "remove the ACLs matching the options")):
        a = _sub_verb(asub, "acls", name, summary)
        _common(a)
        add_arguments(a, name)
    users = _verb(sub, "users")
    usub = users.add_subparsers(dest="verb", required=True)
    u = _sub_verb(usub, "users", "list", "users with SCRAM credentials and their mechanisms")
    _common(u)
    u.add_argument("--user", action="append", default=[])
    u = _sub_verb(usub, "users", "set", "create or replace a user's SCRAM credential")
    _common(u)
    u.add_argument("--user", required=True)
    u.add_argument("--mechanism", choices=sorted(MECHANISMS), default="SCRAM-SHA-256")
    u.add_argument("--password", help="(or the PYKBROKER_SCRAM_PASSWORD environment variable)")
    u.add_argument("--iterations", type=int, default=4096)
    u = _sub_verb(usub, "users", "delete", "delete a user's SCRAM credential")
    _common(u)
    u.add_argument("--user", required=True)
    u.add_argument("--mechanism", choices=sorted(MECHANISMS), required=True)

    h = _verb(sub, "healthcheck")
    _common(h)
    a = _verb(sub, "api-versions")
    _common(a)
    return p


def _command_config(path: str | None) -> CommandConfig:
    """The checked ``--command-config`` (PLAINTEXT without one); its warnings on stderr."""
    if path is None:
        return CommandConfig()
    config = load_command_config(path)
    for warning in config.warnings:
        error(f"warning: {warning}")
    return config


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        config = _command_config(args.command_config)
    except ConfigError as exc:
        error(f"--command-config: {exc}")
        return 2
    timeout = args.request_timeout
    if timeout is None:
        timeout = config.request_timeout or 30.0
    try:
        with AdminClient(args.bootstrap_server, timeout=timeout, config=config) as client:
            if args.command == "topics":
                from pykbroker.admin import topics
                return topics.run(client, args)
            if args.command == "groups":
                from pykbroker.admin import groups
                return groups.run(client, args)
            if args.command in ("acls", "users"):
                from pykbroker.admin import security
                return security.run_acls(client, args) if args.command == "acls" \
                    else security.run_users(client, args)
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
