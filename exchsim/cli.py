"""``exchsim lab | serve | check | sink | pki | tracking | queue | health``: the command line
(``pki``: exchsim/pkicli.py; ``tracking``: exchsim/trackingcli.py; ``queue``:
exchsim/queuecli.py; ``sink``: exchsim/sinkcli.py; ``--hosts``: exchsim/config/hosts.py;
``health``: exchsim/healthcli.py).

Exit status 2 means the command line or the config is wrong (every config problem is printed,
nothing starts; an unknown ``--server``; a port the process may not listen on, which
``--port-offset`` avoids); 1 means the lab could not start for another reason (for example a
port is taken, the queue file is locked or was written by a newer exchsim) or a server's
delivery kept failing after it started (exchsim/transport/restart.py); 0 a clean stop on
SIGINT/SIGTERM. A damaged queue file is not a reason to refuse: it is moved aside and what can
be read is salvaged (exchsim/transport/queuefile.py).

Diagnostics go to stderr through one handler with a repeat filter (exchsim/logs/repeats.py): a
message that repeats is written once, then counted, with one summary line per minute, so a
failure that repeats cannot fill the disk with the same traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import signal
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from exchsim import healthcli, pkicli, queuecli, sinkcli, trackingcli
from exchsim.clock import SYSTEM_CLOCK
from exchsim.config.hosts import Hosts, format_addresses, load_hosts, unused_in_files
from exchsim.config.load import ConfigError, load_config
from exchsim.config.model import Lab
from exchsim.config.report import format_connectors, format_issues, format_send_connectors
from exchsim.daemon import LabDaemon
from exchsim.logs.repeats import RepeatFilter, install
from exchsim.services import Service, missing_service_message, parse_service
from exchsim.transport.queue import QueueUnavailableError

DEFAULT_CONFIG = "configs/lab.yaml"
# An offset that puts Exchange's ports (25 to 2525) above 1024; the README uses the same.
SUGGESTED_PORT_OFFSET = 10000

# --help texts are plain prose: argparse prints them as they are.
DESCRIPTION = (
    "A lab SMTP server that answers like the transport services of Microsoft Exchange "
    "2016/2019/SE, from one YAML config."
)
EPILOG = (
    "Exit status: 0 after a clean stop (SIGINT or SIGTERM); 2 when the command line or the "
    "config is wrong (every config problem is printed and nothing starts) or a port may not be "
    "listened on; 1 when the lab cannot start for another reason, for example a port is taken, "
    "or stops because a server's delivery kept failing."
)
CHECK_EPILOG = "Exit status: 0 when the config is valid, 2 when it is not."
COMMANDS = (
    ("lab", "run every server of the config and the internet sink",
     "Run every server of the config, each on its own loopback address, and the internet sink."),
    ("serve", "run one server of the config",
     "Run one server of the config (no internet sink)."),
    ("check", "validate a config and print its connectors",
     "Validate a config, print every problem found, or print its receive connectors."),
)


def package_version() -> str:
    try:
        return version("exchsim")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="exchsim", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text, description in COMMANDS:
        p = sub.add_parser(name, help=text, description=description,
                           epilog=CHECK_EPILOG if name == "check" else EPILOG)
        _common_options(p, name)
        if name == "serve":
            p.add_argument("--server", required=True, metavar="NAME",
                           help="the Name of the server to run, as in the config's Servers")
            p.add_argument("--service", type=_service, metavar="SERVICE",
                           help="run one transport service of the server on its own: "
                                "FrontEnd (25, 587, 717 and the proxy to a hub), Transport "
                                "(2525, 465, the queue and the send connectors) or "
                                "MailboxDelivery (475 and the mailboxes); default: all of them")
    _common_options(sinkcli.add_parser(sub, EPILOG), "sink")
    pkicli.add_parser(sub)
    trackingcli.add_parser(sub)
    queuecli.add_parser(sub)
    healthcli.add_parser(sub)
    return parser


def _common_options(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE",
                   help="the lab's YAML config (default: %(default)s)")
    p.add_argument("--hosts", metavar="FILE",
                   help="a hosts file (configs/compose-hosts.yaml): the config's addresses "
                        "moved to the addresses of their own hosts, and servers whose services "
                        "run on hosts of their own")
    if name == "check":
        return
    p.add_argument("--data", default="data", metavar="DIR",
                   help="data directory: queues, mailboxes, logs, certificates "
                        "(default: ./%(default)s)")
    p.add_argument("--port-offset", type=int, default=0, metavar="N",
                   help="add N to every port, so that the lab runs without root "
                        f"(default: %(default)s; for example {SUGGESTED_PORT_OFFSET} "
                        "listens on 10025 instead of 25)")
    p.add_argument("--log-level", default="WARNING", metavar="LEVEL",
                   help="DEBUG, INFO, WARNING or ERROR (default: %(default)s)")


def _service(value: str) -> Service:
    try:
        return parse_service(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _load(path: str, hosts_file: str | None = None) -> tuple[Lab | None, Hosts | None]:
    try:
        hosts = load_hosts(hosts_file) if hosts_file is not None else None
        return load_config(Path(path), hosts), hosts
    except ConfigError as err:
        print(format_issues(err), file=sys.stderr)
        return None, None


def unknown_server_message(lab: Lab, name: str, config: str) -> str | None:
    """The error for ``serve --server NAME`` when NAME is not a server of the config, else None."""
    names = [server.name for server in lab.servers]
    if name.lower() in {n.lower() for n in names}:
        return None
    for partner in lab.partners:  # Lab.Partners: a server of another organization's file
        if name.lower() in {s.name.lower() for s in partner.servers}:
            return (f"exchsim: {name} is a server of the partner organization in "
                    f"{partner.source}; run it with --config {partner.source}")
    return (f"exchsim: {config} has no server named {name!r}; "
            f"its servers are: {', '.join(names)}")


def bind_refused_message(exc: OSError, port_offset: int) -> str | None:
    """The error for a listener the process may not open (EACCES/EPERM), else None.

    Binding a port below 1024 needs root or CAP_NET_BIND_SERVICE on Linux; ``--port-offset``
    moves every port of the lab out of that range.
    """
    if exc.errno not in (errno.EACCES, errno.EPERM):
        return None
    hint = (f"ports below 1024 need root (or CAP_NET_BIND_SERVICE); --port-offset N adds N to "
            f"every port, for example --port-offset {SUGGESTED_PORT_OFFSET} listens on "
            f"{25 + SUGGESTED_PORT_OFFSET} instead of 25")
    if port_offset:
        hint += f" (this run used --port-offset {port_offset})"
    # asyncio's text names the address: "error while attempting to bind on address (...)"
    return f"exchsim: cannot start: {exc.strerror or exc}\nexchsim: {hint}"


def configure_logging(level: str) -> list[RepeatFilter]:
    """stderr at ``level``, every handler of the root logger behind a repeat filter."""
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return [install(handler, SYSTEM_CLOCK.monotonic) for handler in logging.getLogger().handlers]


async def _flush_repeats(filters: list[RepeatFilter]) -> None:
    """Write the summaries of ended intervals even when nothing else is logged."""
    while True:
        await asyncio.sleep(1)
        for repeat_filter in filters:
            repeat_filter.flush_due()


async def _run(lab: Lab, args: argparse.Namespace, filters: list[RepeatFilter],
               hosts: Hosts | None = None) -> int:
    flusher = asyncio.ensure_future(_flush_repeats(filters))
    try:
        return await _serve(lab, args, hosts)
    finally:
        flusher.cancel()


async def _serve(lab: Lab, args: argparse.Namespace, hosts: Hosts | None = None) -> int:
    daemon = LabDaemon(
        lab,
        Path(args.data),
        port_offset=args.port_offset,
        only=getattr(args, "server", None),
        run_sink=args.command == "lab",
        service=getattr(args, "service", None),
        hosts=hosts,
    )
    try:
        await daemon.start()
    except QueueUnavailableError as exc:
        print(f"exchsim: cannot start: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        refused = bind_refused_message(exc, args.port_offset)
        if refused is not None:
            print(refused, file=sys.stderr)
            return 2
        print(f"exchsim: cannot start: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, daemon.reloader.request)  # read the config again
    for listener in daemon.listeners:
        print(f"exchsim: {listener.server} listening on {listener.host}:{listener.port}")
    print("exchsim: ready", flush=True)
    waiters = [asyncio.ensure_future(event.wait()) for event in (stop, daemon.failed)]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()
    await daemon.stop()
    if daemon.failure is not None:
        print(f"exchsim: stopped: {daemon.failure}", file=sys.stderr, flush=True)
        return 1
    print("exchsim: stopped", flush=True)
    return 0


def _sink(lab: Lab, args: argparse.Namespace) -> int:
    """``exchsim sink``: the internet sink and the CRL server alone (sinkcli.py)."""
    try:
        return asyncio.run(sinkcli.serve(lab, Path(args.data), args.port_offset))
    except OSError as exc:
        refused = bind_refused_message(exc, args.port_offset)
        print(refused or f"exchsim: cannot start: {exc}", file=sys.stderr)
        return 2 if refused else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "pki":
        return pkicli.run(args)
    if args.command == "tracking":
        return trackingcli.run(args)
    if args.command == "queue":
        return queuecli.run(args)
    if args.command == "health":  # the container's HEALTHCHECK (healthcli.py)
        return healthcli.run(args, lambda argv: _parser().parse_args(argv))
    lab, hosts = _load(args.config, args.hosts)
    if lab is None:
        return 2
    if args.command == "check":
        if args.hosts is not None:
            print(format_addresses(lab))
            for note in unused_in_files(hosts or Hosts(), lab):
                print(f"  note: {args.hosts}: {note}")
            print()
        print(format_connectors(lab))
        if lab.send_connectors:
            print()
            print(format_send_connectors(lab))
        return 0
    if args.command == "serve":
        unknown = unknown_server_message(lab, args.server, args.config)
        if unknown is None and args.service is not None:
            unknown = missing_service_message(lab.server(args.server), args.service)
        if unknown is not None:
            print(unknown, file=sys.stderr)
            return 2
    filters = configure_logging(args.log_level)
    try:
        if args.command == "sink":
            return _sink(lab, args)
        return asyncio.run(_run(lab, args, filters, hosts))
    finally:
        for repeat_filter in filters:
            repeat_filter.flush()


if __name__ == "__main__":
    sys.exit(main())
