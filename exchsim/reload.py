"""A running lab takes a changed routing configuration from its config file (exchange.md §8.2,
exchange.md §8.5).

Exchange rebuilds its routing table when the routing configuration changes; a send connector
created while mail waits for one takes that mail, without a restart. Here the config file is
the organization's configuration, and :class:`ConfigReloader` (one per daemon) watches it:

- **When**: it looks at the file about once a second (inode, size and modification time, as
  the daemon looks at the certificate store, then a digest of the content, so that a file
  touched without a change is not loaded), at once on SIGHUP (``exchsim lab``/``serve``), and
  before ``exchsim queue retry --resubmit`` routes messages again (Retry-Queue -Resubmit routes
  with the file as it is at that moment).
- **How**: the file is loaded and validated by the loader ``exchsim check`` uses
  (``config/load.py``). A file with problems is refused with one ERROR line naming the file,
  the key, the value and what is allowed (the first problems; ``exchsim check`` lists them
  all); the lab keeps running, and delivering, with the configuration it has. A file that
  cannot be read is refused the same way. A file caught while it is being written (it changed
  again while it was read) is read again at the next look rather than used or reported; an
  editor that saves by writing a new file and renaming it over the old one never shows a
  half-written file at all.
- **What**: ``config/changes.py`` compares the running configuration with the new one. The
  parts routing reads (SendConnectors, with the implied connector of ``config/implied.py``;
  Dns; TransportConfig's TLSSendDomainSecureList) replace the running ones: each delivery
  agent gets the new configuration between attempts (``DeliveryAgent.reconfigure``: an attempt
  under way finishes with the one it started with), and so do the queue views. Every other part
  that changed (servers, listeners, receive connectors, permissions, accepted domains,
  mailboxes, the rest of TransportConfig, ``Lab``'s settings, partners) is named in a WARNING
  line saying it takes effect at the next start; certificates change live through ``exchsim
  pki`` (``tls/certstore.py``).
- **Then**: the messages of the Unreachable queue and of every queue whose send connector was
  added, changed or removed (all connectors' queues when Dns changed) are routed again at once,
  not at their next retry: each is due now with its recorded next hops forgotten, as
  Retry-Queue -Resubmit does (``QueueAdmin.due_now``). A message that still has no connector
  goes back to Unreachable; one whose connector went away is routed to another or to
  Unreachable.

Each daemon watches its own file: the partner organizations of ``Lab.Partners`` run in daemons
of their own, each reloading its partner file (a change to the list of partners itself needs a
restart). One INFO line says what was reloaded and how many messages were routed again. An
unexpected failure while applying a change is logged and the watch goes on (it never stops the
lab).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from exchsim.config.changes import RELOADED, compare
from exchsim.config.issues import ConfigError
from exchsim.config.load import load_config_text
from exchsim.config.model import Lab
from exchsim.tls.certstore import file_version
from exchsim.transport.queueadmin import UNREACHABLE, QueueAdmin, Views

if TYPE_CHECKING:
    from exchsim.daemon import LabDaemon

__all__ = ["POLL", "ConfigReloader"]

log = logging.getLogger(__name__)

POLL = 1.0  # seconds between looks at the config file
SHOWN_ISSUES = 3  # problems of a refused file written in its log line


class ConfigReloader:
    """Watches one daemon's config file and applies its routing changes (module docstring)."""

    def __init__(self, daemon: LabDaemon) -> None:
        self.daemon = daemon
        source = Path(daemon.lab.source)
        self.path: Path | None = source if source.is_file() else None  # None: built in memory
        self.reloads = 0  # routing changes applied
        self.refused = 0  # files refused
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._digest: bytes | None = None

    def request(self) -> None:
        """Look at the file now and load it even if it seems unchanged (SIGHUP)."""
        self._wake.set()

    async def watch(self) -> None:
        """Look at the file every POLL seconds (or when asked) until cancelled."""
        if self.path is None:
            return
        if self.daemon.control is not None:
            for admin in self.daemon.control.admins.values():
                admin.refresh = self.check
        # The first look compares the file with what the lab started with: an edit made while
        # the lab was starting is not missed (a load takes about 5 ms).
        while True:
            forced = self._wake.is_set()
            self._wake.clear()
            try:
                await self.check(force=forced)
            except Exception:  # never stops the lab: the next look tries again
                log.exception("%s: the configuration could not be reloaded", self.path)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL)

    async def check(self, force: bool = False) -> bool:
        """Load the file if it changed (or ``force``); whether routing took anything new."""
        if self.path is None:
            return False
        async with self._lock:
            version = await asyncio.to_thread(file_version, self.path)
            if version == self._seen and not force:
                return False
            self._seen = version
            try:
                data = await asyncio.to_thread(self.path.read_bytes)
                text = data.decode("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                self.refused += 1
                log.error("%s: not reloaded, cannot read the file (%s); the lab keeps the "
                          "configuration it runs with", self.path, exc)
                return False
            digest = _digest(data)
            if digest == self._digest and not force:
                return False
            loaded: Lab | ConfigError
            try:
                loaded = await asyncio.to_thread(load_config_text, text, self.daemon.lab.source,
                                                 hosts=self.daemon.hosts)
            except ConfigError as err:
                loaded = err
            if await asyncio.to_thread(file_version, self.path) != version:
                self._seen = None  # being written: read it again at the next look
                return False
            self._digest = digest
            if isinstance(loaded, ConfigError):
                self.refused += 1
                log.error("%s", refusal(self.path, loaded))
                return False
            return await self.apply(loaded, asked=force)

    async def apply(self, loaded: Lab, asked: bool = False) -> bool:
        """Take the routing parts of ``loaded``; route the messages they concern again.
        ``asked``: the file was read on request (SIGHUP), so say so even if nothing changed."""
        daemon = self.daemon
        change = compare(daemon.lab, loaded)
        if change.restart:
            log.warning("%s: %s changed; that takes effect when the lab is restarted (a running "
                        "lab reloads %s)", self.path, ", ".join(change.restart),
                        ", ".join(RELOADED))
        if not change.reloaded:
            if asked and not change.restart:
                log.info("%s: read again; nothing changed", self.path)
            return False
        admins = daemon.control.admins.values() if daemon.control is not None else ()
        before = {admin.server.name: await admin.views() for admin in admins}
        daemon.lab = change.routing
        for agent in daemon.agents.values():
            agent.reconfigure(change.routing)
        moved = 0
        for admin in admins:
            admin.lab = change.routing
            moved += await _reroute(admin, before[admin.server.name], change.connectors)
        self.reloads += 1
        log.info("%s reloaded: %s; %d message(s) routed again", self.path, change.summary(),
                 moved)
        return True


async def _reroute(admin: QueueAdmin, views: Views, connectors: frozenset[str]) -> int:
    """Route again, now, the messages of the Unreachable queue and of the queues of
    ``connectors`` (as ``views`` showed them before the change); how many."""
    ids: set[int] = set()
    destinations: set[str] = set()
    for key, members in views.members.items():
        hop = views.hops.get(key)
        if key == UNREACHABLE or (hop is not None and hop.connector in connectors):
            ids.update(members)
            destinations.update(views.destinations.get(key, set()))
    if ids:
        await admin.due_now(ids, destinations, resubmit=True)
    return len(ids)


def refusal(path: Path, err: ConfigError) -> str:
    """The one log line of a refused file: its first problems (file, key, value, what is
    allowed), and how to see the rest."""
    shown = "; ".join(str(issue) for issue in err.issues[:SHOWN_ISSUES])
    more = len(err.issues) - SHOWN_ISSUES
    rest = f" (and {more} more: exchsim check --config {path})" if more > 0 else ""
    return (f"{path}: not reloaded, {len(err.issues)} problem(s): {shown}{rest}; the lab "
            "keeps the configuration it runs with")


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
