"""Get-Queue, Get-Message and the admin's actions on one hub's queue (exchange.md §8.5).

What the views show is built from the queue file (the durable facts: recipients, Suspended,
LastError, attempts, next retry, the Poison queue) and, while the lab runs, from the delivery
agent's memory (transport/queuestate.py: each recipient's next hop, the destinations in Retry,
the messages being delivered). :func:`offline_views` builds the same views from the file alone
when the lab is not running (read-only; a destination's Retry is then read from its messages).

Queues: ``<Server>\\Submission`` (always shown; a message not routed yet), one delivery queue
per next hop (``<Server>\\<n>``, the integer given when the queue first appears),
``<Server>\\Unreachable`` and ``<Server>\\Poison`` (shown when they hold messages). A message
for recipients behind several next hops is in each of those queues, with the same integer
(``<Server>\\<queue>\\<InternalId>``).

Actions (:class:`QueueAdmin`, served to ``exchsim queue`` by transport/queuecontrol.py):
Suspend-Message and Resume-Message (a suspended message is never delivered until resumed; a
message in the Poison queue is resumed out of it), Remove-Message with or without an NDR
(``-WithNDR``; the recipients get ``550 4.3.2 QUEUE.Admin; message deleted by administrative
action`` and the tracking log FAIL with source ADMIN), Retry-Queue (the next hop is tried at
once; ``-Resubmit`` is needed for the Unreachable queue, as Exchange's cmdlet requires, and
routes the messages again with the config file as it is then: ``refresh``, exchsim/reload.py),
Suspend-Queue and Resume-Queue (a delivery queue; while it is suspended, its Status is
Suspended, messages still enter it and none leaves: the delivery agent holds every recipient
routed to it without trying, until Resume-Queue makes its messages due at once, or until they
expire). A message being delivered when an action comes (Exchange's PendingSuspend /
PendingRemove) is acted on when that attempt ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.errors
import email.header
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchsim.config.model import Lab, Server
from exchsim.config.syntax import format_byte_size
from exchsim.policy.nexthop import DeliveryType, NextHop
from exchsim.transport.delivery import DeliveryAgent
from exchsim.transport.hub import categorize
from exchsim.transport.queue import MessageQueue
from exchsim.transport.queuesql import MAX_MESSAGES, QueueRecords, Row, read_file
from exchsim.transport.queuestate import HopFailure, QueueState, destination_of, next_hop_of

__all__ = ["MAX_MESSAGES", "AdminError", "QueueAdmin", "Views", "offline_views",
           "parse_identity"]

_BUSY_WAIT = 30.0  # seconds an action waits for the attempt under way to end
SUBMISSION, UNREACHABLE, POISON = "Submission", "Unreachable", "Poison"
_PERSISTENT = {SUBMISSION: (DeliveryType.UNDEFINED, "Submission"),
               UNREACHABLE: (DeliveryType.UNREACHABLE, "Unreachable Domain"),
               POISON: (DeliveryType.UNDEFINED, "Poison Message")}

Record = dict[str, Any]
_SUBJECT = re.compile(rb"^subject:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


class AdminError(Exception):
    """An action or identity the queue cannot carry out (the text says why)."""


def _subject(headers: bytes) -> str:
    """The Subject, unfolded and with encoded words decoded (a view of thousands of messages
    reads only this header, not the whole header block)."""
    found = _SUBJECT.search(headers.split(b"\r\n\r\n", 1)[0])
    if found is None:
        return ""
    text = " ".join(found.group(1).decode("utf-8", "replace").split())
    if "=?" in text:
        with contextlib.suppress(ValueError, LookupError, email.errors.HeaderParseError):
            text = " ".join(str(email.header.make_header(
                email.header.decode_header(text))).split())
    return text


def parse_identity(text: str) -> tuple[str | None, str | None, int]:
    """``Server\\Queue\\MessageInteger``, ``Queue\\MessageInteger`` or ``MessageInteger``."""
    parts = text.strip().split("\\")
    if not 1 <= len(parts) <= 3 or not parts[-1].isdigit():
        raise AdminError(f"{text!r} is not a message identity: use <Server>\\<Queue>\\<n>, "
                         "<Queue>\\<n> or <n>, as Get-Message shows it")
    server = parts[0] if len(parts) == 3 else None
    queue = parts[-2] if len(parts) >= 2 else None
    return server, queue or None, int(parts[-1])


def queue_name(text: str) -> tuple[str | None, str]:
    """``Server\\Queue`` or ``Queue``: (server, queue)."""
    parts = text.strip().split("\\")
    if len(parts) > 2 or not parts[-1]:
        raise AdminError(f"{text!r} is not a queue identity: use <Server>\\<Queue> or <Queue>, "
                         "as Get-Queue shows it")
    return (parts[0] if len(parts) == 2 else None), parts[-1]


@dataclass
class Views:
    """Get-Queue and Get-Message at one moment, and what the actions need of them."""

    queues: list[Record]
    messages: list[Record]
    members: dict[str, dict[int, list[str]]]  # queue name -> InternalId -> its recipients
    destinations: dict[str, set[str]]  # queue name -> the agent's destinations
    hops: dict[str, NextHop | None]  # queue name -> its next hop (None: a persistent queue)


def _views(lab: Lab, server: Server, rows: list[Row], state: QueueState,
           busy: Callable[[int], bool], now: datetime.datetime, live: bool) -> Views:
    name = server.name
    entries: dict[str, dict[int, list[str]]] = {SUBMISSION: {}}
    hops: dict[str, NextHop | None] = {SUBMISSION: None}
    destinations: dict[str, set[str]] = {}
    for row in rows:
        if row.poisoned:
            entries.setdefault(POISON, {})[row.internal_id] = list(row.recipients)
            hops[POISON] = None
            continue
        routed = state.routed.get(row.internal_id, {})
        if row.attempts == 0 and not routed and not busy(row.internal_id):
            entries[SUBMISSION][row.internal_id] = list(row.recipients)
            continue
        for rcpt in row.recipients:
            found = routed.get(rcpt)
            if found is None:
                route = categorize(lab, rcpt)
                hop = next_hop_of(lab, route, rcpt)
                found = (hop, destination_of(route)) if hop is not None else None
            if found is None:
                key = SUBMISSION
            elif found[0].delivery_type is DeliveryType.UNREACHABLE:
                key, hops[UNREACHABLE] = UNREACHABLE, None
            else:
                key = str(state.number(found[0]))
                hops[key] = found[0]
                destinations.setdefault(key, set()).add(found[1])
            entries.setdefault(key, {}).setdefault(row.internal_id, []).append(rcpt)
    by_id = {row.internal_id: row for row in rows}
    queues: list[Record] = []
    messages: list[Record] = []
    for key in sorted(entries, key=_queue_order):
        members = entries[key]
        failure = _failure(state, destinations.get(key, set()), members, by_id, now, live)
        held = [by_id[i] for i in members if not by_id[i].suspended and not by_id[i].poisoned]
        hop = hops.get(key)
        status = ("Suspended" if hop is not None and hop in state.suspended else
                  "Retry" if failure is not None and held else
                  "Active" if any(busy(i) for i in members) else "Ready")
        delivery_type, domain = (_PERSISTENT[key] if hop is None
                                 else (hop.delivery_type, hop.domain))
        if key in (UNREACHABLE, POISON) and not members:
            continue
        queues.append({
            "Identity": f"{name}\\{key}", "DeliveryType": str(delivery_type), "Status": status,
            "MessageCount": len(members), "Velocity": 0, "RiskLevel": "Normal",
            "OutboundIPPool": 0, "NextHopDomain": domain,
            "NextHopConnector": (hop.connector if hop is not None else None) or "",
            "NextHopCategory": "External" if delivery_type in (
                DeliveryType.DNS_CONNECTOR_DELIVERY,
                DeliveryType.SMART_HOST_CONNECTOR_DELIVERY) else "Internal",
            "LastError": failure.reason if failure is not None else "",
            "RetryCount": failure.failures if failure is not None else 0,
            "LastRetryTime": _iso(failure.last) if failure is not None else "",
            "NextRetryTime": _iso(failure.next) if failure is not None else "",
        })
        for internal_id, rcpts in members.items():
            row = by_id[internal_id]
            mstatus = ("Suspended" if row.suspended or row.poisoned else
                       "Active" if busy(internal_id) else
                       "Retry" if status == "Retry" or (
                           row.attempts and row.next_attempt_at > now) else
                       "Ready")
            messages.append({
                "Identity": f"{name}\\{key}\\{internal_id}", "FromAddress": row.sender or "<>",
                "Status": mstatus, "Size": format_byte_size(row.size), "SCL": 0,
                "Queue": f"{name}\\{key}",
                "MessageSourceName": ("DSN" if "ndr_for" in row.metadata else
                                      row.metadata.get("source", "SMTP")),
                "LastError": row.last_error or "", "RetryCount": row.attempts,
                "Subject": _subject(row.headers), "InternetMessageId": row.message_id,
                "DateReceived": _iso(row.received_at),
                "ExpirationTime": _iso(row.received_at + lab.lab.message_expiration_timeout),
                "Recipients": rcpts,
            })
    return Views(queues, messages, entries, destinations, hops)


def _queue_order(key: str) -> tuple[int, int, str]:
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


def _failure(state: QueueState, destinations: set[str], members: dict[int, list[str]],
             by_id: dict[int, Row], now: datetime.datetime, live: bool) -> HopFailure | None:
    """Why the queue is in Retry (None: it is not)."""
    for destination in sorted(destinations):
        if destination in state.down:
            return state.down[destination]
    if live or not members:
        return None
    waiting = [by_id[i] for i in members
               if by_id[i].attempts and by_id[i].next_attempt_at > now and by_id[i].last_error]
    if not waiting:
        return None
    first = min(waiting, key=lambda r: r.next_attempt_at)
    return HopFailure(first.last_error or "", first.received_at, first.received_at,
                      first.next_attempt_at, max(r.attempts for r in waiting))


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def offline_views(lab: Lab, server: Server, path: Path,
                  now: datetime.datetime) -> tuple[list[Record], list[Record]]:
    """Get-Queue and Get-Message from the queue file alone (the lab is not running)."""
    rows = read_file(path)
    views = _views(lab, server, rows, QueueState(), lambda _: False, now, live=False)
    return views.queues, views.messages


class QueueAdmin:
    """One running hub's queue, as the queue cmdlets see and change it."""

    def __init__(self, lab: Lab, server: Server, queue: MessageQueue,
                 agent: DeliveryAgent) -> None:
        self.lab, self.server, self.queue, self.agent = lab, server, queue, agent
        self.records = QueueRecords(queue)  # the SQL: transport/queuesql.py
        # Run before a resubmission routes again: the daemon looks at the config file, so the
        # messages are routed with the file as it is now (exchsim/reload.py).
        self.refresh: Callable[[], Awaitable[object]] | None = None

    async def views(self) -> Views:
        rows = await self.records.rows()
        present = {row.internal_id for row in rows}
        if len(rows) < MAX_MESSAGES:  # the agent's memory of messages that left: dropped
            for gone in [i for i in self.agent.state.routed if i not in present]:
                self.agent.state.forget(gone)
        return _views(self.lab, self.server, rows, self.agent.state, self.agent.busy,
                      self.agent.clock.utc(), live=True)

    async def get_queues(self) -> list[Record]:
        return (await self.views()).queues

    async def get_messages(self, queue: str | None = None) -> list[Record]:
        found = (await self.views()).messages
        if queue is None:
            return found
        _, name = queue_name(queue)
        return [m for m in found if m["Queue"].lower() == f"{self.server.name}\\{name}".lower()]

    async def _row(self, internal_id: int) -> Row:
        rows = await self.records.rows([internal_id])
        if not rows:
            raise AdminError(f"there is no message {internal_id} in the queues of "
                             f"{self.server.name} (Get-Message lists them)")
        return rows[0]

    async def _idle(self, internal_id: int) -> None:
        """Wait for the attempt under way to end (PendingSuspend / PendingRemove)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _BUSY_WAIT
        while self.agent.busy(internal_id):
            if loop.time() > deadline:
                raise AdminError(f"message {internal_id} is still being delivered; try again")
            await asyncio.sleep(0.05)

    async def suspend(self, identity: str) -> str:
        _, _, internal_id = parse_identity(identity)
        row = await self._row(internal_id)
        if row.poisoned:
            raise AdminError(f"message {internal_id} is in the Poison queue, where it is "
                             "suspended already")
        self.agent.state.held.add(internal_id)  # from now on, no attempt takes it
        try:
            await self._idle(internal_id)
            await self.records.suspend(internal_id)
            self.agent.forget(internal_id)
        finally:
            self.agent.state.held.discard(internal_id)
        return f"message {internal_id} suspended"

    async def resume(self, identity: str) -> str:
        _, _, internal_id = parse_identity(identity)
        row = await self._row(internal_id)
        now = self.agent.clock.utc()
        if row.poisoned:
            await self.queue.resume_poisoned(internal_id, now)
            item = await self.queue.get(internal_id)
            if item is not None:  # POISONMESSAGE: also when a message leaves the Poison queue
                self.agent.tracking.poison(item, "resumed by an administrator")
        else:
            await self.records.resume(internal_id, now)
        self.agent.retry_now()
        return f"message {internal_id} resumed"

    async def remove(self, identity: str, ndr: bool) -> str:
        _, queue, internal_id = parse_identity(identity)
        await self._row(internal_id)
        self.agent.state.held.add(internal_id)
        try:
            return await self._remove(internal_id, queue, ndr)
        finally:
            self.agent.state.held.discard(internal_id)

    async def _remove(self, internal_id: int, queue: str | None, ndr: bool) -> str:
        await self._idle(internal_id)
        views = await self.views()
        if queue is None:
            rcpts = [r for members in views.members.values()
                     for r in members.get(internal_id, [])]
        else:
            key = next((k for k in views.members if k.lower() == queue.lower()), None)
            if key is None or internal_id not in views.members[key]:
                raise AdminError(f"message {internal_id} is not in queue "
                                 f"{self.server.name}\\{queue}")
            rcpts = views.members[key][internal_id]
        item = await self.queue.get(internal_id)
        if item is None:
            raise AdminError(f"message {internal_id} left the queue meanwhile")
        await self.agent.remove(item, rcpts, ndr)
        self.agent.forget(internal_id)
        return (f"message {internal_id} removed for {len(rcpts)} recipient(s)" +
                (", with an NDR to the sender" if ndr and item.sender else ", without an NDR"))

    async def _queue(self, queue: str) -> tuple[Views, str]:
        """The views now and the name of the queue ``queue`` names (AdminError if none)."""
        _, name = queue_name(queue)
        views = await self.views()
        key = next((k for k in views.members if k.lower() == name.lower()), None)
        if key is None:
            raise AdminError(f"there is no queue {self.server.name}\\{name} (Get-Queue lists "
                             "them)")
        return views, key

    async def _delivery_queue(self, queue: str, action: str) -> tuple[Views, str, NextHop]:
        views, key = await self._queue(queue)
        hop = views.hops.get(key)
        if hop is None or key == UNREACHABLE:
            raise AdminError(f"{action} acts on a delivery queue ({self.server.name}\\<n>), "
                             f"not on {self.server.name}\\{key}")
        return views, key, hop

    async def suspend_queue(self, queue: str) -> str:
        """Suspend-Queue: nothing leaves the queue until Resume-Queue (an attempt under way
        ends as it would)."""
        _, key, hop = await self._delivery_queue(queue, "Suspend-Queue")
        self.agent.state.suspended.add(hop)
        return f"queue {self.server.name}\\{key} suspended"

    async def resume_queue(self, queue: str) -> str:
        """Resume-Queue: the queue's messages are due at once."""
        views, key, hop = await self._delivery_queue(queue, "Resume-Queue")
        if hop not in self.agent.state.suspended:
            raise AdminError(f"queue {self.server.name}\\{key} is not suspended")
        self.agent.state.suspended.discard(hop)
        await self.due_now(views.members[key], views.destinations.get(key, set()),
                           resubmit=False)
        return f"queue {self.server.name}\\{key} resumed"

    async def retry(self, queue: str, resubmit: bool) -> str:
        views, key = await self._queue(queue)
        if key == UNREACHABLE and not resubmit:
            raise AdminError("the Unreachable queue is retried with --resubmit only "
                             "(Retry-Queue -Resubmit $true)")
        if key == POISON:
            raise AdminError("messages in the Poison queue are resumed one by one "
                             "(exchsim queue resume)")
        ids = list(views.members[key])
        if resubmit and self.refresh is not None:
            await self.refresh()
        await self.due_now(ids, views.destinations.get(key, set()), resubmit=resubmit)
        return f"queue {self.server.name}\\{key}: {len(ids)} message(s) retried now"

    async def due_now(self, ids: Iterable[int], destinations: Iterable[str] = (), *,
                      resubmit: bool) -> None:
        """These messages (those not suspended) are due now and ``destinations`` are tried at
        once; with ``resubmit`` their recorded next hops are forgotten, so that they are routed
        again (Retry-Queue -Resubmit; a reloaded routing configuration, exchsim/reload.py)."""
        ids = list(ids)
        await self.records.make_due(ids, self.agent.clock.utc())
        if resubmit:
            for internal_id in ids:
                self.agent.state.forget(internal_id)
        self.agent.retry_now(sorted(destinations))
