"""The ``pykbroker`` command: ``pykbroker [server.properties] [--override key=value ...]``.

``pykbroker topics|groups|produce|consume|healthcheck|api-versions ...`` run the admin tools
(:mod:`pykbroker.admin`) instead of the broker.

As ``kafka-server-start.sh``: a properties file, overrides on top, and the apache/kafka
image's ``KAFKA_*`` environment variables in between. SIGTERM or SIGINT shut down cleanly.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
from pathlib import Path

import trio

from pykbroker import __version__
from pykbroker.admin.verbs import VERBS, examples_text
from pykbroker.config import BrokerConfig, ConfigError
from pykbroker.config.security import ignored_warnings, refuse_unsupported_security

log = logging.getLogger("pykbroker")


class KafkaFormatter(logging.Formatter):
    """One line per event, as Kafka's log4j pattern: ``[time] LEVEL message (logger)``."""

    LEVELS = {"WARNING": "WARN", "CRITICAL": "FATAL"}

    def format(self, record: logging.LogRecord) -> str:
        stamp = self.formatTime(record, "%Y-%m-%d %H:%M:%S")
        level = self.LEVELS.get(record.levelname, record.levelname)
        text = f"[{stamp},{int(record.msecs):03d}] {level} {record.getMessage()} ({record.name})"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


_LEVELS = {"TRACE": "DEBUG", "DEBUG": "DEBUG", "INFO": "INFO", "WARN": "WARNING",
           "WARNING": "WARNING", "ERROR": "ERROR", "FATAL": "CRITICAL", "OFF": "CRITICAL"}
# Kafka's logger names that have a pykbroker counterpart.
_LOGGER_ALIASES = {"kafka": "pykbroker", "kafka.request.logger": "pykbroker.request.logger",
                   "kafka.network.RequestChannel$": "pykbroker.request.logger",
                   "kafka.server.KafkaServer": "pykbroker.broker"}


def _level(text: str) -> str:
    level = _LEVELS.get(text.strip().upper())
    if level is None:
        raise ValueError(f"unknown log level {text!r} (use one of {', '.join(_LEVELS)})")
    return level


def setup_logging(spec: str, env: dict[str, str] | None = None) -> None:
    """Kafka's levels, one line per event. ``spec`` is a root level, optionally followed by
    ``logger=LEVEL`` pairs (``INFO,pykbroker.request.logger=DEBUG``); the apache/kafka image's
    ``KAFKA_LOG4J_ROOT_LOGLEVEL`` and ``KAFKA_LOG4J_LOGGERS`` are honoured too, with Kafka's
    logger names mapped to ours where one exists."""
    env = dict(os.environ) if env is None else env
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KafkaFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    parts = [p for p in spec.split(",") if p.strip()]
    root_level = env.get("KAFKA_LOG4J_ROOT_LOGLEVEL", "")
    pairs = [p for p in env.get("KAFKA_LOG4J_LOGGERS", "").split(",") if "=" in p]
    if parts and "=" not in parts[0]:
        root_level = parts.pop(0)
    root.setLevel(_level(root_level or "INFO"))
    for pair in [*pairs, *parts]:
        name, _, level = pair.partition("=")
        name = _LOGGER_ALIASES.get(name.strip(), name.strip())
        logging.getLogger(name).setLevel(_level(level))


_USAGE = """pykbroker [server.properties] [--override KEY=VALUE ...] [--log-level LEVELS]
       pykbroker COMMAND [--bootstrap-server HOST:PORT] ...  (COMMAND --help for each)"""


def _epilog() -> str:
    width = max(len(name) for name in VERBS)
    commands = [f"  {name:<{width}}  {verb.summary}" for name, verb in VERBS.items()]
    return "\n".join([
        "admin commands (they talk to any Kafka broker; the broker runs when none is given):",
        *commands,
        "",
        examples_text(
            "pykbroker                           # a broker on localhost:9092",
            "pykbroker config/server.properties --override log.retention.hours=1",
            "KAFKA_NUM_PARTITIONS=3 pykbroker    # the apache/kafka image's variables",
            "pykbroker topics create --topic orders --partitions 3",
            "pykbroker topics --help",
        ),
    ])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pykbroker",
        usage=_USAGE,
        description="A Kafka broker in Python. With no arguments: PLAINTEXT on "
        "localhost:9092, durable data in a per-user data directory.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", nargs="?", type=Path, help="server.properties file")
    p.add_argument("--config", dest="config_opt", type=Path, help="server.properties file")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="set a config, over the file and the environment (repeatable)")
    p.add_argument("--log-level", default="",
                   help="root level and optional logger=LEVEL pairs, comma-separated "
                        "(default INFO; e.g. INFO,pykbroker.request.logger=DEBUG)")
    p.add_argument("--version", action="version", version=f"pykbroker {__version__}")
    return p


def _banner(broker: object, config: BrokerConfig) -> str:
    from pykbroker.broker import Broker

    assert isinstance(broker, Broker) and broker.services is not None
    services = broker.services
    lines = [f"pykbroker {__version__} (Kafka 3.9 protocol)",
             f"  node id     {services.node_id}",
             f"  cluster id  {services.cluster_id}"]
    for lst in config.listeners:
        port = broker.bound_ports.get(lst.name, lst.port)
        adv = services.advertised.get(lst.name)
        adv_text = f"{adv[0]}:{adv[1]}" if adv else "(not advertised)"
        lines.append(f"  listener    {lst.name} {lst.host or '0.0.0.0'}:{port} -> {adv_text}")
    lines.append(f"  data        {', '.join(str(d) for d in services.log_dirs)}")
    sources = sorted({o for o in config.origins().values() if o != "default"})
    lines.append(f"  config from {', '.join(sources) if sources else 'defaults only'}")
    return "\n".join(lines)


async def _serve(config: BrokerConfig) -> None:
    from pykbroker.broker import Broker

    broker = Broker(config)
    # Leaving the receiver restores the handlers it found: ignoring, so that a signal between
    # the end of the shutdown and the process's exit does not kill it with -15.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(broker.serve)
            print(_banner(broker, broker.config), file=sys.stderr, flush=True)
            # What start-up built (modules, codecs, configuration, loaded logs) lives as long
            # as the process: frozen, it is left out of every later garbage collection, whose
            # full passes otherwise stall the event loop for 10-30 ms each.
            gc.freeze()

            async def watch() -> None:
                stopping = False
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if stopping:  # Kafka ignores signals once its shutdown hook runs
                        log.info("received %s, already shutting down", name)
                        continue
                    log.info("received %s, shutting down", name)
                    stopping = True
                    broker.shutdown()

            nursery.start_soon(watch)
            await broker.stopped.wait()
            nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] in VERBS:
        from pykbroker.admin.main import main as admin_main  # lazy: broker start-up stays fast

        return admin_main(argv)
    args = _parser().parse_args(argv)
    try:
        setup_logging(args.log_level)
    except ValueError as exc:
        print(f"pykbroker: {exc}", file=sys.stderr)
        return 2
    config_file = args.config_opt or args.config
    try:
        config = BrokerConfig.load(config_file, overrides=args.override)
        refuse_unsupported_security(config)
    except ConfigError as exc:
        print(f"pykbroker: configuration error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"pykbroker: cannot read {config_file}: {exc}", file=sys.stderr)
        return 2
    for warning in [*config.warnings, *ignored_warnings(config)]:
        log.warning(warning)
    try:
        trio.run(_serve, config)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        log.error("broker failed: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
