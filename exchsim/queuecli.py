"""``exchsim queue``: the queues of a hub, like Get-Queue, Get-Message, Retry-Queue,
Suspend-Queue, Resume-Queue, Suspend-Message, Resume-Message and Remove-Message
(exchange.md §8.5).

On a running lab every subcommand goes to the daemon over its control socket
(``DATA/queue/control.sock``, or ``DATA/queue/<server>.sock`` for ``exchsim serve``;
transport/queuecontrol.py): the daemon owns the queue file and
acts at once, without a restart. When no lab answers there, ``get`` and ``messages`` read the
queue file itself, read-only, and say so; the actions need the running lab.

Output: the cmdlets' default tables (Get-Queue: Identity, DeliveryType, Status, MessageCount,
Velocity, RiskLevel, OutboundIPPool, NextHopDomain; Get-Message: Identity, FromAddress, Status,
Queue, Subject), ``--format list`` for every property (Format-List), ``--format json`` for
scripts. Exit status: 0 done; 1 the action was refused or needs a running lab; 2 a wrong
command line, config or server.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from exchsim.clock import SYSTEM_CLOCK
from exchsim.config.load import ConfigError, load_config
from exchsim.config.model import Lab, Server
from exchsim.config.report import format_issues
from exchsim.transport.queueadmin import offline_views
from exchsim.transport.queuecontrol import control_paths, request
from exchsim.transport.queuefile import QueueUnavailableError

DEFAULT_CONFIG = "configs/lab.yaml"
QUEUE_TABLE = ("Identity", "DeliveryType", "Status", "MessageCount", "Velocity", "RiskLevel",
               "OutboundIPPool", "NextHopDomain")
MESSAGE_TABLE = ("Identity", "FromAddress", "Status", "Queue", "Subject")
EPILOG = ("Exit status: 0 done; 1 the action was refused or needs a running lab; 2 a wrong "
          "command line, config or server.")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "list and act on a hub's queues, like Get-Queue and Get-Message"
    p = sub.add_parser("queue", help=text, description=text[0].upper() + text[1:] + ".",
                       epilog=EPILOG)
    p.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE",
                   help="the lab's YAML config (default: %(default)s)")
    p.add_argument("--data", default="data", metavar="DIR",
                   help="the lab's data directory (default: ./%(default)s)")
    p.add_argument("--server", metavar="NAME",
                   help="the hub whose queues to show (default: the config's first Mailbox "
                        "server)")
    p.add_argument("--format", choices=("table", "list", "json"), default="table",
                   help="the default table, every property (Format-List), or JSON "
                        "(default: %(default)s)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("get", help="the queues (Get-Queue)")
    messages = actions.add_parser("messages", help="the queued messages (Get-Message)")
    messages.add_argument("--queue", metavar="ID", help="only this queue, e.g. EX01\\3")
    retry = actions.add_parser("retry", help="try a queue's next hop now (Retry-Queue)")
    retry.add_argument("queue", metavar="QUEUE", help="the queue, e.g. EX01\\3")
    retry.add_argument("--resubmit", action="store_true",
                       help="route the messages again (needed for the Unreachable queue)")
    for name, what in (("suspend-queue", "Suspend-Queue"), ("resume-queue", "Resume-Queue")):
        action = actions.add_parser(name, help=f"a delivery queue ({what})")
        action.add_argument("queue", metavar="QUEUE", help="the queue, e.g. EX01\\3")
    for name, what in (("suspend", "Suspend-Message"), ("resume", "Resume-Message"),
                       ("remove", "Remove-Message")):
        action = actions.add_parser(name, help=f"a message ({what})")
        action.add_argument("identity", metavar="MESSAGE",
                            help="the message, e.g. EX01\\3\\1234 or 1234")
        if name == "remove":
            action.add_argument("--ndr", action="store_true",
                                help="send the sender an NDR (Remove-Message -WithNDR $true)")


def _server(lab: Lab, name: str | None) -> Server | None:
    if name is None:
        return next((s for s in lab.servers if str(s.role).lower() == "mailbox"),
                    lab.servers[0])
    return next((s for s in lab.servers if s.name.lower() == name.lower()), None)


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return "{" + ", ".join(str(v) for v in value) + "}"
    return "" if value is None else str(value)


def format_table(records: list[dict[str, Any]], columns: tuple[str, ...],
                 width: int = 60) -> str:
    rows = [list(columns), ["-" * len(c) for c in columns]]
    for record in records:
        cells = [_cell(record.get(c)) for c in columns]
        rows.append([c if len(c) <= width else c[:width - 3] + "..." for c in cells])
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    return "\n".join(" ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def format_list(records: list[dict[str, Any]]) -> str:
    blocks = []
    for record in records:
        width = max((len(k) for k in record), default=0)
        blocks.append("\n".join(f"{k.ljust(width)} : {_cell(v)}" for k, v in record.items()))
    return "\n\n".join(blocks)


def _print(records: list[dict[str, Any]], columns: tuple[str, ...], form: str) -> None:
    if form == "json":
        print(json.dumps(records, indent=2, ensure_ascii=False))
    elif records:
        print(format_list(records) if form == "list" else format_table(records, columns))


def run(args: argparse.Namespace) -> int:
    try:
        lab = load_config(Path(args.config))
    except ConfigError as err:
        print(format_issues(err), file=sys.stderr)
        return 2
    server = _server(lab, args.server)
    if server is None:
        print(f"exchsim queue: {args.config} has no server named {args.server!r}; its "
              f"servers are {', '.join(s.name for s in lab.servers)}", file=sys.stderr)
        return 2
    data = Path(args.data)
    req: dict[str, Any] = {"server": server.name}
    if args.action == "get":
        req["command"] = "get-queue"
    elif args.action == "messages":
        req.update(command="get-message", queue=args.queue)
    elif args.action == "retry":
        req.update(command="retry-queue", queue=args.queue, resubmit=args.resubmit)
    elif args.action in ("suspend-queue", "resume-queue"):
        req.update(command=args.action, queue=args.queue)
    elif args.action == "remove":
        req.update(command="remove-message", identity=args.identity, ndr=args.ndr)
    else:
        req.update(command=f"{args.action}-message", identity=args.identity)
    answer: dict[str, Any] | None = None
    problem = ""
    paths = control_paths(data, server.name)
    for path in paths:
        try:
            answer = request(path, req)
        except (OSError, ValueError) as exc:
            problem = f"no answer on {path}: {exc}"
            continue
        if answer.get("ok") or not str(answer.get("error", "")).startswith("no server"):
            break
    if answer is None:
        if args.action not in ("get", "messages"):
            print(f"exchsim queue: the lab is not running ({problem}); '{args.action}' "
                  "needs the running lab", file=sys.stderr)
            return 1
        return _offline(lab, server, data, args)
    if not answer.get("ok"):
        print(f"exchsim queue: {answer.get('error')}", file=sys.stderr)
        return 1
    result = answer.get("result")
    if args.action == "get":
        _print(list(result or []), QUEUE_TABLE, args.format)
    elif args.action == "messages":
        _print(list(result or []), MESSAGE_TABLE, args.format)
    elif args.format == "json":
        print(json.dumps({"result": result}))
    else:
        print(result)
    return 0


def _offline(lab: Lab, server: Server, data: Path, args: argparse.Namespace) -> int:
    path = data / "queue" / f"{server.name}.sqlite"
    try:
        queues, messages = offline_views(lab, server, path, SYSTEM_CLOCK.utc())
    except QueueUnavailableError as exc:
        print(f"exchsim queue: the lab is not running and {exc}", file=sys.stderr)
        return 1
    note = (f"exchsim queue: the lab is not running; read from {path} (read-only; no "
            "message is Active, Retry is read from the messages)")
    print(note, file=sys.stderr if args.format == "json" else sys.stdout)
    if args.action == "messages" and args.queue:
        wanted = args.queue if "\\" in args.queue else f"{server.name}\\{args.queue}"
        messages = [m for m in messages if m["Queue"].lower() == wanted.lower()]
    if args.action == "get":
        _print(queues, QUEUE_TABLE, args.format)
    else:
        _print(messages, MESSAGE_TABLE, args.format)
    return 0
