"""``exchsim health``: are the listeners of a running exchsim up and answering?

The container image's HEALTHCHECK (Dockerfile). Every container of docker-compose.yml runs
another command (``exchsim sink``, ``exchsim serve --server EX01 --service FrontEnd``, ...), so
the check takes the command line of the running process itself (``/proc/<pid>/cmdline``, PID 1
by default: the container's main process; relative paths from its ``/proc/<pid>/cwd``), parses
it with exchsim's own parser and loads the config (and ``--hosts`` file) it names. From that it
works out every listener the command opens (services.listen_endpoints: the receive connectors
of the server's services on their addresses, plus the port offset; for ``lab`` and ``sink`` the
internet sink and the CRL server too) and connects to each, all at once, each within
``--timeout``:

- an SMTP listener must send a ``220`` banner; the check then sends ``QUIT`` and closes, so the
  session ends as a client's does (Exchange's own health probes also use SMTP, see
  exchange.md §7.8; a connector with protocol logging Verbose logs the probe's session);
- the CRL server must answer an HTTP request with a status line;
- a port of ``ExchsimProxyProtocol`` is only checked for a listening socket in the process's
  network namespace (``/proc/<pid>/net/tcp``): its connections must come from a trusted proxy
  with a PROXY header, and the check, which is neither, would be refused and logged.

It prints one line per listener and exits 0 when all answered, 1 when one did not, 2 when the
process is not an exchsim ``lab``, ``serve`` or ``sink`` command or its config cannot be read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from exchsim.config.hosts import load_hosts
from exchsim.config.load import ConfigError, load_config
from exchsim.config.model import Lab
from exchsim.config.report import format_issues
from exchsim.services import Service, listen_endpoints

RUNNING_COMMANDS = ("lab", "serve", "sink")
DEFAULT_TIMEOUT = 10.0
LISTEN_STATE = "0A"  # TCP_LISTEN in /proc/net/tcp


@dataclass(frozen=True, slots=True)
class Probe:
    name: str  # the server (or InternetSink / CrlServer) the listener belongs to
    host: str
    port: int
    kind: str  # "smtp", "http" or "proxy"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "check that the listeners of a running exchsim answer (a container's HEALTHCHECK)"
    p = sub.add_parser(
        "health", help=text, description=text[0].upper() + text[1:] + ".",
        epilog="Exit status: 0 every listener answered; 1 one did not; 2 the process is not "
               "an exchsim lab, serve or sink command, or its config cannot be read.")
    p.add_argument("--pid", type=int, default=1, metavar="PID",
                   help="the exchsim process to check (default: %(default)s, a container's "
                        "main process)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help="how long each listener has to answer (default: %(default)s)")


def running_command(pid: int) -> tuple[list[str], Path]:
    """The exchsim arguments of process ``pid`` (from ``lab``/``serve``/``sink`` on) and its
    working directory; ValueError when it runs no such command."""
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    argv = [part.decode("utf-8", "surrogateescape") for part in raw.split(b"\0") if part]
    for index, word in enumerate(argv):
        if word in RUNNING_COMMANDS:
            return argv[index:], Path(os.readlink(f"/proc/{pid}/cwd"))
    raise ValueError(f"process {pid} runs no exchsim {', '.join(RUNNING_COMMANDS)} command: "
                     f"{' '.join(argv) or '(no command line)'}")


def _in(cwd: Path, path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else cwd / path


def probes(lab: Lab, args: argparse.Namespace) -> list[Probe]:
    """Every listener the command ``args`` opens, with how to check it."""
    offset: int = args.port_offset
    out: list[Probe] = []
    if args.command in ("lab", "sink"):
        sink, crl = lab.lab.internet_sink, lab.lab.crl_server
        out.append(Probe("InternetSink", str(sink.address), sink.port + offset, "smtp"))
        out.append(Probe("CrlServer", str(crl.address), crl.port + offset, "http"))
    if args.command == "sink":
        return out
    service: Service | None = getattr(args, "service", None)
    labs = [lab] if args.command == "serve" else [lab, *lab.partners]
    for each in labs:
        servers = ([each.server(args.server)] if args.command == "serve" else each.servers)
        for server in servers:
            proxied = set(server.exchsim_proxy_protocol.ports
                          if server.exchsim_proxy_protocol is not None else ())
            for host, port in listen_endpoints(each, server, service, offset):
                kind = "proxy" if port - offset in proxied else "smtp"
                out.append(Probe(server.name, host, port, kind))
    return out


async def _smtp(probe: Probe) -> str | None:
    reader, writer = await asyncio.open_connection(probe.host, probe.port)
    try:
        banner = await reader.readline()
        if not banner.startswith(b"220"):
            return f"no 220 banner: {banner[:80]!r}"
        writer.write(b"QUIT\r\n")
        await writer.drain()
        await reader.readline()
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _http(probe: Probe) -> str | None:
    reader, writer = await asyncio.open_connection(probe.host, probe.port)
    try:
        writer.write(f"HEAD / HTTP/1.0\r\nHost: {probe.host}\r\n\r\n".encode())
        await writer.drain()
        status = await reader.readline()
        return None if status.startswith(b"HTTP/1.") else f"no HTTP reply: {status[:80]!r}"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def listening(pid: int) -> set[tuple[str, int]]:
    """The TCP sockets in LISTEN state in the network namespace of process ``pid``."""
    out: set[tuple[str, int]] = set()
    for name, width in (("tcp", 4), ("tcp6", 16)):
        try:
            lines = Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != LISTEN_STATE:
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            # /proc prints each 32-bit word in host (little-endian) order.
            ordered = b"".join(raw[i:i + 4][::-1] for i in range(0, width, 4))
            out.add((str(ipaddress.ip_address(ordered)), int(port, 16)))
    return out


async def check(pid: int, found: Sequence[Probe], seconds: float) -> list[tuple[Probe, str]]:
    """Each probe with "ok" or what went wrong; each has ``seconds`` to answer."""
    sockets = listening(pid) if any(p.kind == "proxy" for p in found) else set()

    async def one(probe: Probe) -> str:
        if probe.kind == "proxy":
            host = str(ipaddress.ip_address(probe.host))
            return "ok (listening; PROXY protocol port)" if (host, probe.port) in sockets \
                else "not listening"
        try:
            async with asyncio.timeout(seconds):
                problem = await (_smtp if probe.kind == "smtp" else _http)(probe)
        except TimeoutError:
            return f"no answer within {seconds:g} s"
        except OSError as exc:
            return f"cannot connect: {exc.strerror or exc}"
        except ValueError:  # StreamReader.readline: a line over its limit (64 KiB)
            return "no 220 banner: a line of more than 64 KiB" if probe.kind == "smtp" \
                else "no HTTP reply: a line of more than 64 KiB"
        return problem or "ok"

    results = await asyncio.gather(*(one(probe) for probe in found))
    return list(zip(found, results, strict=True))


def run(args: argparse.Namespace,
        parse: Callable[[list[str]], argparse.Namespace]) -> int:
    """``parse``: exchsim's own command-line parser (cli.py)."""
    try:
        argv, cwd = running_command(args.pid)
    except (OSError, ValueError) as exc:
        print(f"exchsim health: {exc}", file=sys.stderr)
        return 2
    try:
        target = parse(argv)
    except SystemExit:
        print(f"exchsim health: process {args.pid}'s command line is not one exchsim "
              f"accepts: {' '.join(argv)}", file=sys.stderr)
        return 2
    try:
        hosts = None if target.hosts is None else load_hosts(_in(cwd, target.hosts))
        lab = load_config(_in(cwd, target.config), hosts)
    except ConfigError as err:
        print(format_issues(err), file=sys.stderr)
        return 2
    found = probes(lab, target)
    results = asyncio.run(check(args.pid, found, args.timeout))
    for probe, result in results:
        print(f"exchsim health: {probe.name} {probe.host}:{probe.port} {result}")
    return 0 if all(r.startswith("ok") for _, r in results) else 1
