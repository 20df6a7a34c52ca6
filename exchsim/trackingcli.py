"""``exchsim tracking``: search the message tracking logs like Get-MessageTrackingLog.

Reads ``DATA/logs/<server>/MessageTracking/`` of every server of the config (or the one
``--server`` names) and prints what matches as the cmdlet's default table (Timestamp, EventId,
Source, Sender, Recipients, MessageSubject; times in UTC, as the log holds them) or, with
``--format list``, every field under the cmdlet's property names (exchange.md §6.2). Works on a
running lab: it only reads the files. Exit status: 0 (also when nothing matched), 2 for a wrong
command line, config or time.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from exchsim.config.load import ConfigError, load_config
from exchsim.config.report import format_issues
from exchsim.logs.trackingsearch import Query, format_list, format_table, parse_time, search

DEFAULT_CONFIG = "configs/lab.yaml"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "search the message tracking logs, like Get-MessageTrackingLog"
    p = sub.add_parser("tracking", help=text, description=text[0].upper() + text[1:] + ".",
                       epilog="Exit status: 0 done (also when nothing matched); 2 a wrong "
                              "command line, config or time.")
    p.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE",
                   help="the lab's YAML config (default: %(default)s)")
    p.add_argument("--data", default="data", metavar="DIR",
                   help="the lab's data directory (default: ./%(default)s)")
    p.add_argument("--server", metavar="NAME", help="only this server's logs (default: all)")
    p.add_argument("--sender", metavar="ADDRESS", help="the sender-address, as -Sender")
    p.add_argument("--recipients", metavar="ADDRESS", nargs="+", default=[],
                   help="one of the recipient addresses, as -Recipients")
    p.add_argument("--message-id", metavar="ID", help="the Message-ID, as -MessageId")
    p.add_argument("--event-id", metavar="EVENT", help="RECEIVE, SEND, DELIVER, ... as -EventId")
    p.add_argument("--start", metavar="TIME", help="from this time on (ISO 8601; UTC if naive)")
    p.add_argument("--end", metavar="TIME", help="before this time (ISO 8601; UTC if naive)")
    p.add_argument("--format", choices=("table", "list"), default="table",
                   help="the default table, or every field (Format-List) (default: %(default)s)")


def _time(text: str | None, option: str) -> datetime.datetime | None:
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError:
        raise SystemExit(f"exchsim tracking: {option} {text!r} is not an ISO 8601 time "
                         "(for example 2026-11-29T07:00:00Z)") from None


def run(args: argparse.Namespace) -> int:
    try:
        lab = load_config(Path(args.config))
    except ConfigError as err:
        print(format_issues(err), file=sys.stderr)
        return 2
    servers = [s.name for s in lab.servers]
    if args.server is not None:
        chosen = [n for n in servers if n.lower() == args.server.lower()]
        if not chosen:
            print(f"exchsim tracking: {args.config} has no server named {args.server!r}; "
                  f"its servers are {', '.join(servers)}", file=sys.stderr)
            return 2
        servers = chosen
    try:
        start, end = _time(args.start, "--start"), _time(args.end, "--end")
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    query = Query(sender=args.sender, recipients=tuple(args.recipients),
                  message_id=args.message_id, event_id=args.event_id, start=start, end=end)
    found = search(Path(args.data) / "logs", servers, query)
    if found:
        print(format_list(found) if args.format == "list" else format_table(found))
    return 0
