"""The running lab's queue control channel: ``exchsim queue`` talks to the daemon through it.

The daemon owns each queue file (one thread, leases in memory), so the command line never
writes a queue file itself: it asks the daemon. The channel is a Unix domain socket,
``DATA/queue/control.sock`` for ``exchsim lab`` (``DATA/queue/<server>.sock`` for ``exchsim
serve --server <server>``, so that servers run as separate processes on one data directory
each have theirs), never a TCP port: made with owner-only permissions (0600, in the
daemon's private umask), it is reachable by the lab's own user only. One connection carries
one request and one response, each one line of JSON:

    {"command": "get-queue", "server": "EX01"}
    {"ok": true, "result": [...]}            or   {"ok": false, "error": "why"}

Commands: ``get-queue``, ``get-message`` (``queue``), ``suspend-message``, ``resume-message``
(``identity``), ``remove-message`` (``identity``, ``ndr``), ``retry-queue`` (``queue``,
``resubmit``), ``suspend-queue``, ``resume-queue`` (``queue``). A request larger than
:data:`MAX_REQUEST` bytes, one that is not JSON, an unknown command or server, a client that
sends nothing for :data:`READ_TIMEOUT` seconds: each gets an error answer (when it can still be
sent) and the connection is closed; nothing a client sends stops the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from exchsim.transport.queueadmin import AdminError, QueueAdmin

__all__ = ["MAX_REQUEST", "READ_TIMEOUT", "ControlServer", "control_path", "control_paths",
           "request"]

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024
READ_TIMEOUT = 10.0
MAX_RESPONSE = 64 * 1024 * 1024  # what a client reads at most
SOCKET_NAME = "control.sock"


def control_path(data_dir: Path, only: str | None = None) -> Path:
    """The socket of a daemon running every server (``only`` None) or one of them."""
    return data_dir / "queue" / (SOCKET_NAME if only is None else f"{only.upper()}.sock")


def control_paths(data_dir: Path, server: str) -> list[Path]:
    """Where a running daemon serving ``server`` listens, in the order to try."""
    return [control_path(data_dir, server), control_path(data_dir)]


class ControlServer:
    """Serves the queue commands of one daemon's hubs on the control socket."""

    def __init__(self, path: Path, admins: Mapping[str, QueueAdmin]) -> None:
        self.path = path
        self.admins = {name.lower(): admin for name, admin in admins.items()}
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):  # a stale socket of a lab that died
            if self.path.is_socket():
                self.path.unlink()
        if len(os.fsencode(self.path)) >= 100:
            log.warning("the queue control socket path %s is too long for a Unix socket; "
                        "exchsim queue reads the queue files only", self.path)
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            previous = os.umask(0o177)
            try:
                sock.bind(os.fspath(self.path))
            finally:
                os.umask(previous)
            os.chmod(self.path, 0o600)
        except BaseException:
            sock.close()
            raise
        self._server = await asyncio.start_unix_server(self._serve, sock=sock,
                                                       limit=MAX_REQUEST + 2)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                line = await asyncio.wait_for(reader.readuntil(b"\n"), READ_TIMEOUT)
                answer = await self.answer(line)
            except asyncio.LimitOverrunError:
                answer = _error(f"the request is larger than {MAX_REQUEST} bytes")
            except asyncio.IncompleteReadError:
                answer = _error("the request must be one line of JSON ending in a newline")
            except TimeoutError:
                answer = _error(f"no request within {READ_TIMEOUT:g} seconds")
            writer.write(json.dumps(answer, ensure_ascii=False).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        except Exception:  # never the daemon's end: log it, close this connection
            log.exception("queue control request failed")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def answer(self, line: bytes) -> dict[str, Any]:
        """The response to one request line."""
        try:
            req = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            return _error("the request is not JSON")
        if not isinstance(req, dict):
            return _error("the request must be a JSON object")
        command, name = req.get("command"), req.get("server")
        handler = _COMMANDS.get(command) if isinstance(command, str) else None
        if handler is None:
            return _error(f"unknown command {command!r}; known: {', '.join(sorted(_COMMANDS))}")
        admin = self.admins.get(name.lower()) if isinstance(name, str) else None
        if admin is None:
            return _error(f"no server {name!r} runs here; these do: "
                          f"{', '.join(a.server.name for a in self.admins.values())}")
        try:
            return {"ok": True, "result": await handler(admin, req)}
        except AdminError as exc:
            return _error(str(exc))
        except (TypeError, ValueError) as exc:
            return _error(f"bad arguments: {exc}")
        except Exception as exc:  # the daemon goes on; the admin learns what failed
            log.exception("queue control command %s failed", command)
            return _error(f"{command} failed: {type(exc).__name__}: {exc}")


def _error(text: str) -> dict[str, Any]:
    return {"ok": False, "error": text}


def _text(req: Mapping[str, Any], key: str, optional: bool = False) -> Any:
    value = req.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > 1000:
        raise ValueError(f"{key!r} must be a string")
    return value


_Handler = Callable[[QueueAdmin, Mapping[str, Any]], Awaitable[Any]]
_COMMANDS: dict[str, _Handler] = {
    "get-queue": lambda a, r: a.get_queues(),
    "get-message": lambda a, r: a.get_messages(_text(r, "queue", optional=True)),
    "suspend-message": lambda a, r: a.suspend(_text(r, "identity")),
    "resume-message": lambda a, r: a.resume(_text(r, "identity")),
    "remove-message": lambda a, r: a.remove(_text(r, "identity"), bool(r.get("ndr", True))),
    "retry-queue": lambda a, r: a.retry(_text(r, "queue"), bool(r.get("resubmit", False))),
    "suspend-queue": lambda a, r: a.suspend_queue(_text(r, "queue")),
    "resume-queue": lambda a, r: a.resume_queue(_text(r, "queue")),
}


def request(path: Path, req: Mapping[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """Send one request to a running lab (blocking; the command line's side). Raises
    OSError when no lab answers at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(os.fspath(path))
        sock.sendall(json.dumps(req).encode() + b"\n")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_RESPONSE:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    answer = json.loads(b"".join(chunks) or b"null")
    if not isinstance(answer, dict):
        raise OSError(f"the lab's control socket {path} gave no answer")
    return answer
