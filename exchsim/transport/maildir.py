"""Maildir delivery: one Maildir per recipient address, readable by any mail tool.

Layout (ARCHITECTURE.md, Storage): ``<root>/<address lower-cased>/{cur,new,tmp}``. Delivery
follows the Maildir protocol: write ``tmp/<name>``, flush and fsync it, rename it into ``new/``,
fsync ``new/``. A file in ``new/`` is therefore complete and durable; ``tmp/`` may keep debris
from a crash, which readers ignore.

File names are ``<seconds>.<unique>.<hostname>``. ``unique`` comes from the caller and is stable
for one (message, recipient), so after a crash between "stored" and "acknowledged" the caller
can ask :func:`already_delivered` and not store the message twice. The seconds are taken from
the written file's modification time (this module does not read the clock).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
from pathlib import Path

__all__ = ["already_delivered", "deliver", "mailbox_path"]

_SUBDIRS = ("cur", "new", "tmp")
# No '.' (it separates the fields of a name), no '/' or ':' (Maildir), nothing exotic.
_UNIQUE = re.compile(r"[A-Za-z0-9_=+-]{1,128}")
_NAME_MAX = 255


def mailbox_path(root: Path, address: str) -> Path:
    """The Maildir of ``address`` under ``root``: ``root/<address lower-cased>``.

    Raises ValueError for anything that is not a single, ordinary directory name: empty,
    containing '/' or NUL, '.' or '..', or too long for a file name.
    """
    name = address.lower()
    if not name:
        raise ValueError("empty address")
    if "/" in name or "\0" in name:
        raise ValueError(f"address {address!r} contains '/' or NUL")
    if name in (".", ".."):
        raise ValueError(f"address {address!r} is not a mailbox name")
    if len(os.fsencode(name)) > _NAME_MAX:
        raise ValueError(f"address {address!r} is too long for a mailbox directory")
    return root / name


def _check_unique(unique: str) -> None:
    if not _UNIQUE.fullmatch(unique):
        raise ValueError(
            f"unique token {unique!r} must be 1-128 characters of A-Z a-z 0-9 _ = + -"
        )


def _hostname() -> str:
    # Maildir: '/' and ':' in the host name are written as \057 and \072.
    host = socket.gethostname() or "localhost"
    return host.replace("/", r"\057").replace(":", r"\072")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mkdir_durable(path: Path) -> None:
    """Create ``path`` (mode 0700) if missing and make the new entry durable in its parent."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        if not path.is_dir():
            raise
        return
    _fsync_dir(path.parent)


def _ensure_maildir(root: Path, mailbox: Path) -> None:
    if not root.is_dir():
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    _mkdir_durable(mailbox)
    for sub in _SUBDIRS:
        _mkdir_durable(mailbox / sub)


def _private(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_CLOEXEC, 0o600)


def deliver(root: Path, address: str, data: bytes, *, unique: str) -> Path:
    """Store ``data`` in the Maildir of ``address``; return the file's path in ``new/``.

    Returns only after the file and its directory entry are fsynced.
    """
    _check_unique(unique)
    mailbox = mailbox_path(root, address)
    _ensure_maildir(root, mailbox)
    host = _hostname()
    tmp = mailbox / "tmp" / f"{unique}.P{os.getpid()}R{secrets.token_hex(6)}.{host}"
    try:
        with open(tmp, "xb", opener=_private) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            seconds = int(os.fstat(handle.fileno()).st_mtime)
        final = mailbox / "new" / f"{seconds}.{unique}.{host}"
        os.rename(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(mailbox / "new")
    return final


def _unique_of(name: str) -> str | None:
    base = name.split(":", 1)[0]  # cur/ names carry ":2,<flags>"
    parts = base.split(".", 2)
    return parts[1] if len(parts) == 3 else None


def already_delivered(root: Path, address: str, unique: str) -> bool:
    """Whether a message with this unique token is in ``new/`` or ``cur/`` of ``address``."""
    _check_unique(unique)
    mailbox = mailbox_path(root, address)
    for sub in ("new", "cur"):
        try:
            entries = os.scandir(mailbox / sub)
        except FileNotFoundError:
            continue
        with entries:
            for entry in entries:
                if _unique_of(entry.name) == unique:
                    return True
    return False
