"""Maildir delivery: one Maildir per recipient address, readable by any mail tool.

Layout (README.md, Data directory): ``<root>/<address lower-cased>/{cur,new,tmp}``. Delivery
follows the Maildir protocol: write ``tmp/<name>``, flush and fsync it, rename it into ``new/``,
fsync ``new/``. A file in ``new/`` is therefore complete and durable; ``tmp/`` may keep debris
from a crash, which readers ignore.

File names are ``<seconds>.<unique>.<hostname>``. ``unique`` comes from the caller and is stable
for one (message, recipient), so after a crash between "stored" and "acknowledged" a message
delivered again is recognised and not stored twice. Mailbox Transport Delivery derives it from
the Internet Message-ID and the recipient (:func:`unique_token`), so the same check also drops a
message the mailbox already holds under the same Message-ID (Exchange's DUPLICATEDELIVER,
transport/mailbox.py); the lab's internet sink does the same (smtp/sink.py).
The seconds are taken from the written file's modification time (this module does not read
the clock).

:class:`MaildirStore` is the writer of one root: it keeps the de-duplication index of each
mailbox in memory (read from ``new/`` and ``cur/`` once, on first use, so the check costs no
directory scan per message) and stores a batch of messages with one fsync of each touched
``new/`` directory instead of one per message. :func:`deliver` stores one message, without
the de-duplication.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import socket
from collections.abc import Sequence
from pathlib import Path

__all__ = ["MaildirStore", "MessageFiles", "deliver", "mailbox_path", "unique_token"]

MessageFiles = tuple[tuple[str, bytes, str], ...]  # (address, data, unique) per recipient

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


def unique_token(key: str, recipient: str) -> str:
    """The unique token of one message for one recipient, from a key that names the message
    (``message-id:<id>``): the same message to the same address always gets the same token,
    so a second copy is recognised (:meth:`MaildirStore.store` returns None for it)."""
    digest = hashlib.sha1(f"{key}|{recipient.lower()}".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:20]


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
    final = _write_new(mailbox, data, unique, _hostname())
    _fsync_dir(mailbox / "new")
    return final


def _write_new(mailbox: Path, data: bytes, unique: str, host: str) -> Path:
    """Write ``tmp/<name>`` (fsynced) and rename it into ``new/``; the caller fsyncs ``new/``."""
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
    return final


def _unique_of(name: str) -> str | None:
    base = name.split(":", 1)[0]  # cur/ names carry ":2,<flags>"
    parts = base.split(".", 2)
    return parts[1] if len(parts) == 3 else None


def _uniques_in(mailbox: Path) -> set[str]:
    found: set[str] = set()
    for sub in ("new", "cur"):
        try:
            entries = os.scandir(mailbox / sub)
        except FileNotFoundError:
            continue
        with entries:
            for entry in entries:
                unique = _unique_of(entry.name)
                if unique is not None:
                    found.add(unique)
    return found


class MaildirStore:
    """The Maildirs under one root, written by this process only.

    Not thread-safe: call it from one thread at a time (the receivers run it on one worker).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._host = _hostname()
        self._index: dict[Path, set[str]] = {}  # mailbox -> unique tokens in new/ and cur/
        self._ready: set[Path] = set()  # mailboxes whose cur/, new/ and tmp/ exist

    def contains(self, address: str, unique: str) -> bool:
        _check_unique(unique)
        return unique in self._uniques(mailbox_path(self.root, address))

    def _uniques(self, mailbox: Path) -> set[str]:
        known = self._index.get(mailbox)
        if known is None:
            known = self._index[mailbox] = _uniques_in(mailbox)
        return known

    def store_messages(self, messages: Sequence[MessageFiles]) -> list[list[str]]:
        """Store the files of several messages at once (one batch, one sync); for each message,
        the recipients whose copy was a duplicate and was not stored."""
        stored = self.store([file for files in messages for file in files])
        out: list[list[str]] = []
        start = 0
        for files in messages:
            paths = stored[start:start + len(files)]
            start += len(files)
            out.append([address for (address, _, _), path in zip(files, paths, strict=True)
                        if path is None])
        return out

    def store(self, items: Sequence[tuple[str, bytes, str]]) -> list[Path | None]:
        """Store each ``(address, data, unique)``; None for one already there (same unique).

        Every file is fsynced and renamed into ``new/``; each touched ``new/`` is then fsynced
        once. Returns only when all of it is durable. Raises on the first failure; what was
        renamed before it is made durable too and counted in the index.
        """
        results: list[Path | None] = []
        touched: dict[Path, list[str]] = {}
        try:
            for address, data, unique in items:
                _check_unique(unique)
                mailbox = mailbox_path(self.root, address)
                known = self._uniques(mailbox)
                if unique in known or unique in touched.get(mailbox, ()):
                    results.append(None)
                    continue
                if mailbox not in self._ready:
                    _ensure_maildir(self.root, mailbox)
                    self._ready.add(mailbox)
                try:
                    path = _write_new(mailbox, data, unique, self._host)
                except FileNotFoundError:  # the Maildir was removed while the lab ran
                    _ensure_maildir(self.root, mailbox)
                    path = _write_new(mailbox, data, unique, self._host)
                results.append(path)
                touched.setdefault(mailbox, []).append(unique)
        finally:
            for mailbox, uniques in touched.items():
                _fsync_dir(mailbox / "new")
                self._uniques(mailbox).update(uniques)
        return results
