"""The hub's delivery agent: take due messages from the queue, route and deliver them
(exchange.md §7, §8).

Delivering: the receiver hands each committed message to the delivery agent in memory (the
queue is the truth: the agent also scans it at start, every half RetryInterval, when the next
deferred message falls due and when more than it keeps in memory are waiting), which delivers
up to 8 messages at once over idle hop sessions it keeps open, and sorts each recipient:
- a mailbox of the organization -> Mailbox Transport Delivery (475) of the mailbox's server,
  over a hop session (X-ANONYMOUSTLS, EXCHANGEAUTH, XSESSIONPARAMS, BDAT);
- another address in an Authoritative accepted domain -> an NDR as Exchange writes it
  (exchange.md §12.6) from postmaster of the default domain:
  ``550 5.1.1 RESOLVER.ADR.RecipNotFound; not found`` (exchange.md §8.1), whose attached
  original has no organization header when it goes outside (exchange.md §12.5), and
  whose Message-ID is derived from the original and the recipients (transport/ndr.py),
  so an NDR made twice across a crash is recognised downstream as one message;
- anything else (InternalRelay / ExternalRelay domains, relayed mail) -> the send connector
  policy/outbound.py routes it to (exchange.md §8.2): one of this server's through
  transport/smtpsend.py (smart hosts or MX hosts, the lab's internet sink among them, without
  organization and forest headers, exchange.md §12.5), or one of other servers through a hop to
  one of its source servers' Transport service (2525), which routes it again; no connector ->
  held with ``A matching connector cannot be found to route the external recipient`` and tried
  again every RetryInterval (Get-Queue's Unreachable queue); a connector added to the config
  takes it when the running lab reloads the file (exchsim/reload.py calls :meth:`reconfigure`;
  each attempt routes with the configuration it started with).
Every failure is classified (transport/outcome.py, exchange.md §8.4) per group of recipients,
so one bad recipient never holds up the others:
- permanent (5xx, an address that cannot be sent) -> an NDR to the sender, none for ``<>``
  or a recipient that said NOTIFY=NEVER (transport/notify.py sends every report: NDRs, the
  delay DSN after the server's DelayNotificationTimeout, success and relay DSNs);
- transient (4xx, a broken transaction) -> retried after MessageRetryInterval; unreachable
  (connect, TLS, EXCHANGEAUTH) -> the destination is retried after TransientFailureRetryInterval
  TransientFailureRetryCount times, then every OutboundConnectionFailureRetryInterval
  (policy/retry.py, exchange.md §8.5), and messages for a destination known to be down wait for
  that retry;
- either, past MessageExpirationTimeout (the server's, else the lab's: 2 days) -> an NDR
  ``550 4.4.7 QUEUE.Expired``;
- a crash (an unexpected exception in exchsim's own code for this message) -> retried once,
  then the Poison queue (transport/queue.py), never retried automatically.
Logging: one INFO line per attempt that did not deliver everything; a WARNING when a
destination becomes unreachable and when it is back; a crash is an ERROR line, with its
traceback the first time that code location fails (not on every retry or message).
A failure to write the queue itself stops the agent, which restart.py restarts with a backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import re
import traceback
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from exchsim.clock import Clock
from exchsim.config.model import Lab, Server
from exchsim.config.sendconnector import SendConnector
from exchsim.logs.tracking import MessageTracking
from exchsim.policy import replies, rules
from exchsim.policy.outbound import UNREACHABLE_REASON
from exchsim.policy.replies import Reply
from exchsim.policy.retry import RetrySchedule
from exchsim.policy.sendsecure import domain_secure
from exchsim.transport.hopclient import HopTls
from exchsim.transport.hub import Route, categorize
from exchsim.transport.nexthop import Endpoint, NextHops
from exchsim.transport.notify import Notifier
from exchsim.transport.outcome import Kind, classify, summary
from exchsim.transport.queue import MessageQueue, QueuedMessage
from exchsim.transport.queuestate import QueueState, destination_of, next_hop_of
from exchsim.transport.smtpsend import SendContext, SmtpSender

__all__ = ["DeliveryAgent", "Endpoint"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

_MAX_READY = 1000  # messages handed over in memory, waiting for a delivery slot
_MIN_SCAN_GAP = 0.1  # seconds: scans woken by a deferral falling due are at least this apart


@dataclass
class _Attempt:
    """What one attempt at one group of recipients came to."""

    done: list[str] = field(default_factory=list)
    failed: dict[str, Reply] = field(default_factory=dict)  # permanent: NDR or drop
    deferred: dict[str, str] = field(default_factory=dict)  # recipient -> reason
    retry_at: datetime.datetime | None = None
    held: bool = False  # deferred without trying: the destination is known to be down
    passed_on: bool = False  # the next hop took the DSN request on (transport/nexthop.py)


class _QueueFailure(Exception):
    """A write to the queue failed: not the message's fault; the agent stops (restart.py)."""


class DeliveryAgent:
    """Takes due messages from one hub's queue and delivers them."""

    def __init__(
        self,
        lab: Lab,
        server: Server,
        clock: Clock,
        queue: MessageQueue,
        tls_context: Callable[[], HopTls | None],
        mailbox_delivery: Mapping[str, Endpoint],
        internet: Endpoint,
        retry: datetime.timedelta,
        concurrency: int = 8,
        expiration: datetime.timedelta | None = None,
        tracking: MessageTracking | None = None,
        schedule: RetrySchedule | None = None,
        sender: SmtpSender | None = None,
        hub_transport: Mapping[str, Endpoint] | None = None,
        frontend: Endpoint | None = None,
        default_frontend: Mapping[str, Endpoint] | None = None,
        edges: frozenset[str] = frozenset(),
        trusted: frozenset[bytes] = frozenset(),
    ) -> None:
        self.lab = lab
        self.tracking = tracking or MessageTracking.disabled(server)
        self.server = server
        self.clock = clock
        self.queue = queue
        # Without a sender from the daemon: send connectors without client certificates or
        # trust stores, and without the lab's port offset.
        sender = sender or SmtpSender(SendContext(server=server, dns=lab.dns, port_offset=0))
        self.hops = NextHops(server, tls_context, mailbox_delivery, internet, sender=sender,
                             hub_transport=hub_transport, frontend=frontend,
                             fqdns={s.name.lower(): s.fqdn for s in lab.servers},
                             default_frontend=default_frontend, edges=edges,
                             timeout=lab.lab.hop_timeout.total_seconds(), trusted=trusted)
        self.retry = retry
        self.schedule = schedule or RetrySchedule.fixed(retry)
        self.state = QueueState()  # what Get-Queue / Get-Message read (transport/queueadmin.py)
        self.expiration = (expiration or server.message_expiration_timeout
                           or lab.lab.message_expiration_timeout)
        self.notify = Notifier(lab.organization, server, clock, queue, self.tracking,
                               self.submit, expiration=self.expiration, write=self._write)
        self.concurrency = concurrency
        self._wake = asyncio.Event()
        self._ready: deque[QueuedMessage] = deque()
        self._scan_requested = True
        self._inflight: set[int] = set()
        self._earliest: datetime.datetime | None = None  # the soonest deferral made in memory
        self._traced: set[tuple[str, str, int]] = set()  # crash sites logged with a traceback
        self._fatal: BaseException | None = None
        self._started = False

    def submit(self, item: QueuedMessage) -> None:
        """A message just committed to the queue: deliver it without reading it back.

        The queue stays the truth: a message not handed over here (the list is full, or the
        process restarted) is found by the next scan of the queue.
        """
        if len(self._ready) < _MAX_READY:
            self._ready.append(item)
        else:
            self._scan_requested = True
        self._wake.set()

    # --- the admin's actions (transport/queueadmin.py) ---------------------------------------

    def reconfigure(self, lab: Lab) -> None:
        """A reloaded routing configuration (exchsim/reload.py): attempts that start from now
        on route with ``lab`` and resolve with its Dns; one under way keeps what it started with."""
        self.lab = lab
        if self.hops.sender is not None:
            self.hops.sender.context = dataclasses.replace(self.hops.sender.context, dns=lab.dns)

    def busy(self, internal_id: int) -> bool:
        """Whether the message is being delivered now (Get-Message's Active)."""
        return internal_id in self._inflight

    def forget(self, internal_id: int) -> None:
        """The message was suspended or removed: drop it if it waits in memory."""
        if any(i.internal_id == internal_id for i in self._ready):
            self._ready = deque(i for i in self._ready if i.internal_id != internal_id)

    def retry_now(self, destinations: Sequence[str] = ()) -> None:
        """Retry-Queue: try these destinations at once, and look at the queue now."""
        now = self.clock.utc()
        for destination in destinations:
            held = self.state.down.get(destination)
            if held is not None:
                held.next = now
        self._earliest = None
        self._scan_requested = True
        self._wake.set()

    async def remove(self, item: QueuedMessage, rcpts: Sequence[str], ndr: bool) -> None:
        """Remove-Message: these recipients are done, with an NDR to the sender or without
        (``-WithNDR``); the tracking log says FAIL with source ADMIN."""
        failed = dict.fromkeys(rcpts, replies.QUEUE_ADMIN_REMOVED)
        self.tracking.fail(item, failed, source="ADMIN")
        if ndr:
            await self.notify.failed(item, failed)
        await self.queue.complete(item.internal_id, list(rcpts))
        self.state.settled(item.internal_id, list(rcpts))

    async def run(self) -> None:
        """Deliver what is handed over, and scan the queue at start, after a full list, every
        half of the schedule's shortest wait and when a deferral it made falls due (the
        earliest next attempt first, at most a page of _MAX_READY messages a scan:
        transport/queue.py)."""
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        period = self.schedule.shortest.total_seconds() / 2 or 1.0
        next_scan = loop.time()
        self._fatal = None
        if not self._started:
            self._started = True
            poisoned = await self.queue.poison_count()
            if poisoned:
                log.warning("%s: %d message(s) in the Poison queue, not retried until resumed",
                            self.server.name, poisoned)
        try:
            while True:
                self._wake.clear()
                if self._fatal is not None:
                    raise self._fatal
                now = self.clock.utc()
                if self._earliest is not None and self._earliest <= now:
                    self._earliest = None
                    next_scan = loop.time()
                if (self._scan_requested and not self._ready) or loop.time() >= next_scan:
                    self._scan_requested = False
                    next_scan = loop.time() + period
                    queued = {item.internal_id for item in self._ready}
                    found = await self.queue.due(now, limit=_MAX_READY,
                                                 exclude=frozenset(self._inflight | queued))
                    if len(found) >= _MAX_READY:
                        self._scan_requested = True  # a full page: more may be due
                    # Handed over while the scan ran: keep one copy.
                    queued = {item.internal_id for item in self._ready}
                    self._ready.extend(i for i in found if i.internal_id not in queued)
                    # The next deferred message falls due then (also after a restart), but
                    # scans that wake for it come at most every _MIN_SCAN_GAP seconds.
                    due = await self.queue.next_due(now)
                    if due is not None:
                        due = max(due, now + datetime.timedelta(seconds=_MIN_SCAN_GAP))
                        self._earliest = due if self._earliest is None else min(
                            self._earliest, due)
                while self._ready and self._fatal is None:
                    item = self._ready.popleft()
                    if item.internal_id in self._inflight or item.internal_id in self.state.held:
                        continue
                    self._inflight.add(item.internal_id)
                    await sem.acquire()
                    task = loop.create_task(self._deliver(item, sem))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if not self._scan_requested and self._fatal is None:
                    wait = next_scan - loop.time()
                    if self._earliest is not None:
                        wait = min(wait, (self._earliest - self.clock.utc()).total_seconds())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), max(wait, 0.0))
        finally:
            for task in tasks:
                task.cancel()
            self.hops.close()

    async def _deliver(self, item: QueuedMessage, sem: asyncio.Semaphore) -> None:
        try:
            try:
                await self._attempt(item)
            except _QueueFailure:
                raise
            except Exception as exc:  # a crash in exchsim's own code for this message
                await self._crashed(item, exc)
        except _QueueFailure as failure:
            self._fatal = failure.__cause__ or failure
            self._wake.set()
        finally:
            self._inflight.discard(item.internal_id)
            sem.release()

    async def _write(self, operation: Awaitable[T]) -> T:
        try:
            return await operation
        except Exception as exc:
            raise _QueueFailure(summary(exc)) from exc

    def _later(self, when: datetime.datetime) -> None:
        """A deferral made here: scan again when it falls due."""
        when = max(when, self.clock.utc() + datetime.timedelta(seconds=_MIN_SCAN_GAP))
        if self._earliest is None or when < self._earliest:
            self._earliest = when
            self._wake.set()

    async def _attempt(self, item: QueuedMessage) -> None:
        """One attempt at every pending recipient; each group settles on its own."""
        groups: dict[Route, list[str]] = defaultdict(list)
        lab = self.lab  # one configuration for the whole attempt (reconfigure)
        for rcpt in item.recipients:
            groups[categorize(lab, rcpt, self.server.name, len(item.data))].append(rcpt)
        deferred: dict[str, str] = {}
        retry_at: datetime.datetime | None = None
        failed: dict[str, Reply] = {}
        delivered = 0
        tried = False
        ndr_sent = False
        for route, rcpts in groups.items():
            result = await self._attempt_group(item, route, rcpts, lab)
            tried = tried or not result.held
            if result.done:  # settled at once: a later group's crash cannot deliver them twice
                await self._write(self.queue.complete(item.internal_id, result.done))
                self.state.settled(item.internal_id, result.done)
                await self.notify.delivered(item, result.done, relayed=route.kind != "mailbox",
                                            passed_on=result.passed_on)
            delivered += len(result.done)
            failed.update(result.failed)
            deferred.update(result.deferred)
            if result.retry_at is not None and (retry_at is None or result.retry_at < retry_at):
                retry_at = result.retry_at
        if failed:  # one NDR for every recipient that failed in this attempt
            self.tracking.fail(item, failed)
            ndr_sent = await self._bounce(item, failed)
            await self._write(self.queue.complete(item.internal_id, list(failed)))
            self.state.settled(item.internal_id, list(failed))
        first = next(iter(deferred.values()), "")
        if deferred:
            assert retry_at is not None
            await self._write(self.queue.defer(item.internal_id, list(deferred),
                                               next_attempt_at=retry_at, reason=first,
                                               reasons=deferred))
            self.tracking.defer(item, deferred)
            self._later(retry_at)
            await self.notify.delayed(item, list(deferred))
        if failed or deferred:
            # One line per attempt; a message that only waited for a destination known to be
            # down (its WARNING said so once) is not an attempt.
            log.log(logging.INFO if tried else logging.DEBUG,
                    "delivery of %s %s: %d delivered, %d failed%s%s, %d deferred%s",
                    item.internal_id, _printable(item.message_id), delivered, len(failed),
                    _first_reply(failed),
                    "" if not failed else " (NDR sent)" if ndr_sent else
                    " (null sender: no NDR, dropped)" if not item.sender else
                    " (no NDR: NOTIFY)", len(deferred),
                    f" until {retry_at:%H:%M:%S} ({_printable(first, 300)})"
                    if deferred and retry_at is not None else "")

    async def _attempt_group(self, item: QueuedMessage, route: Route, rcpts: list[str],
                             lab: Lab) -> _Attempt:
        if route.kind == "ndr":
            return _Attempt(failed=dict.fromkeys(rcpts, replies.RECIPIENT_NOT_FOUND))
        if route.kind == "toobig":
            return _Attempt(failed=dict.fromkeys(rcpts, replies.ROUTING_SIZE_LIMIT))
        now = self.clock.utc()
        result = _Attempt()
        if item.sender and not rules.valid_address(item.sender):
            result.failed = dict.fromkeys(rcpts, replies.UNSENDABLE_ADDRESS)
            return result
        result.failed = {r: replies.UNSENDABLE_ADDRESS for r in rcpts
                         if not rules.valid_address(r)}
        sendable = [r for r in rcpts if r not in result.failed]
        if not sendable:
            return result
        destination = destination_of(route)
        self.state.route(item.internal_id, {
            r: (hop, destination) for r in sendable
            if (hop := next_hop_of(lab, route, r)) is not None})
        if route.kind == "unreachable":  # no send connector: held, tried again later
            return self._settle_deferred(item, result, sendable, Kind.UNREACHABLE,
                                         UNREACHABLE_REASON, now + self.retry)
        if route.next_hop in self.state.suspended:  # Suspend-Queue: held until resumed
            result.held = not result.failed  # (Resume-Queue makes it due; else it expires)
            return self._settle_deferred(item, result, sendable, Kind.TRANSIENT,
                                         item.last_error or "", item.received_at + self.expiration)
        held = self.state.down.get(destination)
        if held is not None and held.next > now:  # known to be down: wait for its retry
            result.held = not result.failed
            return self._settle_deferred(item, result, sendable, Kind.UNREACHABLE,
                                         held.reason, held.next)
        try:
            if route.kind == "mailbox":
                assert route.server is not None
                refused = await self.hops.to_mailbox(route.server, item, sendable)
                described = self.hops.described(route.server)
            elif route.kind == "relay":
                refused, host, address, result.passed_on = await self.hops.to_hub(
                    route.relay_servers, item, sendable)
                described = (host, address, "Intra-Organization SMTP Send Connector")
            elif route.kind == "inbound":  # an Edge's EdgeSync - Inbound (exchange.md §7.6)
                refused, host, address, result.passed_on = await self.hops.to_frontend(
                    route.relay_servers, item, sendable)
                described = (host, address, route.connector or "")
            else:
                connector = self._connector(lab, route.connector)
                domain = rules.domain_of(sendable[0].lower())
                secure = domain_secure(connector, lab.organization.transport_config
                                       .tls_send_domain_secure_list, domain)
                if connector.frontend_proxy_enabled and not secure:
                    refused, host, address, result.passed_on = await self.hops.via_frontend(
                        connector, domain, item, sendable)
                else:
                    # Domain Security is judged by the hub's own client: XPROXYTO does not
                    # carry it, so such mail leaves from the hub (exchange.md §4.3).
                    refused, host, address, result.passed_on = await self.hops.to_connector(
                        connector, domain, item, sendable, domain_secure=secure)
                described = (host, address, connector.name)
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            if failure.kind is Kind.UNREACHABLE:
                return self._unreachable(item, result, sendable, destination, failure.reason)
            self._reachable(destination)
            if failure.kind is Kind.PERMANENT:
                assert failure.reply is not None
                result.failed.update((r, failure.reply) for r in sendable)
                return result
            return self._settle_deferred(item, result, sendable, Kind.TRANSIENT,
                                         failure.reason)
        self._reachable(destination)
        temporary: list[str] = []
        for rcpt, reply in refused:
            if reply.code >= 500:
                result.failed[rcpt] = reply
            else:
                temporary.append(rcpt)
        result.done = [r for r in sendable if r not in result.failed and r not in temporary]
        self.tracking.send(item, result.done, *described)
        if temporary:
            reasons = dict(refused)
            self._settle_deferred(item, result, temporary, Kind.TRANSIENT,
                                  reasons[temporary[0]].render().split("\r\n")[0])
        return result

    def _connector(self, lab: Lab, name: str | None) -> SendConnector:
        for connector in lab.send_connectors:
            if connector.name == name:
                return connector
        raise KeyError(f"send connector {name!r}")

    def _settle_deferred(self, item: QueuedMessage, result: _Attempt, rcpts: list[str],
                         kind: Kind, reason: str,
                         when: datetime.datetime | None = None) -> _Attempt:
        """Defer ``rcpts`` to their next attempt, or fail them once the message expired."""
        now = self.clock.utc()
        if now - item.received_at >= self.expiration:
            result.failed.update((r, replies.MESSAGE_EXPIRED) for r in rcpts)
            log.warning("message %s %s expired after %s in the queue (the last failure: %s)",
                        item.internal_id, _printable(item.message_id),
                        now - item.received_at, _printable(reason, 300))
            return result
        when = when or now + self.schedule.message_retry()
        result.deferred.update((r, reason) for r in rcpts)
        result.retry_at = when if result.retry_at is None else min(result.retry_at, when)
        return result

    def _unreachable(self, item: QueuedMessage, result: _Attempt, rcpts: list[str],
                     destination: str, reason: str) -> _Attempt:
        now = self.clock.utc()
        failures = self.state.failures(destination) + 1
        when = now + self.schedule.connection_retry(failures)
        if failures == 1:
            log.warning("%s cannot reach %s (%s); retrying at %s", self.server.name,
                        destination, reason, f"{when:%H:%M:%S}")
        self.state.failed(destination, reason, now, when)
        return self._settle_deferred(item, result, rcpts, Kind.UNREACHABLE, reason, when)

    def _reachable(self, destination: str) -> None:
        if self.state.reached(destination):
            log.warning("%s reaches %s again", self.server.name, destination)

    async def _crashed(self, item: QueuedMessage, exc: Exception) -> None:
        """An unexpected exception for this message: retry once, then the Poison queue."""
        now = self.clock.utc()
        frames = traceback.extract_tb(exc.__traceback__)
        site = (type(exc).__name__, frames[-1].filename if frames else "",
                (frames[-1].lineno or 0) if frames else 0)
        trace = site not in self._traced and len(self._traced) < 100
        if trace:
            self._traced.add(site)
        retry_at = now + self.schedule.message_retry()
        try:
            poisoned = await self.queue.record_crash(item.internal_id, reason=summary(exc),
                                                     now=now, retry_at=retry_at)
        except KeyError:  # it crashed after its last recipient was settled: nothing to retry
            log.error("delivery of %s %s crashed after it was done (%s)", item.internal_id,
                      _printable(item.message_id), summary(exc), exc_info=exc if trace else None)
            return
        except Exception as failure:
            raise _QueueFailure(summary(failure)) from failure
        if poisoned:
            self.tracking.poison(item, summary(exc))
            log.error("delivery of %s %s crashed again (%s); moved to the Poison queue, it is "
                      "not retried until resumed", item.internal_id, _printable(item.message_id),
                      summary(exc), exc_info=exc if trace else None)
        else:
            log.error("delivery of %s %s crashed (%s); retrying once at %s", item.internal_id,
                      _printable(item.message_id), summary(exc), f"{retry_at:%H:%M:%S}",
                      exc_info=exc if trace else None)
            self._later(retry_at)

    async def _bounce(self, item: QueuedMessage, failed: Mapping[str, Reply]) -> bool:
        """NDR the failed recipients to the sender as they asked (transport/notify.py); for
        the null sender, drop them. Whether an NDR was queued."""
        return await self.notify.failed(item, failed) is not None


def _first_reply(failed: Mapping[str, Reply]) -> str:
    if not failed:
        return ""
    return f" ({_printable(next(iter(failed.values())).render(), 200)})"


def _printable(text: str, limit: int = 100) -> str:
    """One log line's worth of ``text``: control characters (CR, LF, NUL ...) shown as '?'."""
    return _CONTROL.sub("?", text[:limit])
