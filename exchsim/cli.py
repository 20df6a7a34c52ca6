"""``exchsim lab | serve | check``: the command line.

Exit status 2 means the config is wrong (every problem is printed, nothing starts); 1 means
the lab could not start (for example a port is taken); 0 a clean stop on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from exchsim.config.load import ConfigError, load_config
from exchsim.config.model import Lab
from exchsim.config.report import format_connectors, format_issues
from exchsim.daemon import LabDaemon

DEFAULT_CONFIG = "configs/lab.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="exchsim", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("lab", "run every server of the config and the internet sink"),
                       ("serve", "run one server of the config")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", default=DEFAULT_CONFIG)
        p.add_argument("--data", default="data", help="data directory (default ./data)")
        p.add_argument("--port-offset", type=int, default=0,
                       help="add N to every port so the lab runs without root")
        p.add_argument("--log-level", default="WARNING")
        if name == "serve":
            p.add_argument("--server", required=True, help="the Name of the server to run")
    check = sub.add_parser("check", help="validate a config and print its connectors")
    check.add_argument("--config", default=DEFAULT_CONFIG)
    return parser


def _load(path: str) -> Lab | None:
    try:
        return load_config(Path(path))
    except ConfigError as err:
        print(format_issues(err), file=sys.stderr)
        return None


async def _run(lab: Lab, args: argparse.Namespace) -> int:
    daemon = LabDaemon(
        lab,
        Path(args.data),
        port_offset=args.port_offset,
        only=getattr(args, "server", None),
        run_sink=args.command == "lab",
    )
    try:
        await daemon.start()
    except OSError as exc:
        print(f"exchsim: cannot start: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    for listener in daemon.listeners:
        print(f"exchsim: {listener.server} listening on {listener.host}:{listener.port}")
    print("exchsim: ready", flush=True)
    await stop.wait()
    await daemon.stop()
    print("exchsim: stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    lab = _load(args.config)
    if lab is None:
        return 2
    if args.command == "check":
        print(format_connectors(lab))
        return 0
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_run(lab, args))


if __name__ == "__main__":
    sys.exit(main())
