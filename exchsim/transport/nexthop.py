"""The hub's next hops: Mailbox Transport Delivery (475) over hop sessions it keeps open, and
the lab's internet sink over plain SMTP (exchange.md §7.5, §8.2).

Each call delivers one message to some recipients and returns the recipients refused, with the
reply; what went wrong otherwise is raised for transport/outcome.py to classify: the next hop
could not be reached or the session set up (:class:`Unreachable`), the SMTP client refuses an
address of the message (:class:`Unsendable`), or the transaction failed (HopError, aiosmtplib's
errors, OSError, TimeoutError).

Both kinds of session are written to the server's send protocol log (``send_log``, set by the
daemon; exchange.md §6.1): the hops to Mailbox Transport Delivery under the implicit
``Intra-Organization SMTP Send Connector`` when the server's IntraOrgConnectorProtocolLoggingLevel
(Set-TransportService, None by default) is Verbose, each message with its RecordId (the queue's
InternalId) and InternetMessageId; the internet sink's sessions under ``Internet``, the name the
tracking log gives that next hop. The sink stands in for a send connector the lab does not
configure, so until delivery goes through send connectors the same server setting switches it
(exchsim's choice).
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import aiosmtplib

from exchsim.config.model import Server
from exchsim.logs.sendlog import INTRA_ORG_CONNECTOR, SendLogSession, SendProtocolLog
from exchsim.policy.headers import send_firewall
from exchsim.policy.replies import Reply
from exchsim.transport.hopclient import HopClient, HopError, HopTls, parse_reply
from exchsim.transport.outcome import Unreachable, Unsendable, summary
from exchsim.transport.queue import QueuedMessage
from exchsim.transport.smtplog import watch

__all__ = ["Endpoint", "NextHops"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int


class NextHops:
    """The connections of one hub's delivery agent to its next hops."""

    def __init__(self, server: Server, tls_context: Callable[[], HopTls | None],
                 mailbox_delivery: Mapping[str, Endpoint], internet: Endpoint) -> None:
        self.server = server
        self.tls_context = tls_context
        self.mailbox_delivery = mailbox_delivery
        self.internet = internet
        self._idle: dict[str, list[HopClient]] = defaultdict(list)
        self.send_log: SendProtocolLog | None = None

    def _log(self, connector: str, endpoint: Endpoint) -> SendLogSession | None:
        if self.send_log is None:
            return None
        return self.send_log.session(connector, endpoint.host, endpoint.port,
                                     self.server.intra_org_connector_protocol_logging_level)

    def close(self) -> None:
        """Drop every idle hop session."""
        for hops in self._idle.values():
            for hop in hops:
                hop.abort()
        self._idle.clear()

    def described(self, server: str | None) -> tuple[str, str, str]:
        """(host, address, connector) of a next hop, as the tracking log's SEND names it: a
        mailbox server's Mailbox Transport Delivery through the implicit intra-organization
        connector (exchange.md §8.2), or the lab's internet sink (``server`` None)."""
        if server is None:
            return self.internet.host, self.internet.host, "Internet"
        endpoint = self.mailbox_delivery[server.lower()]
        return server, endpoint.host, INTRA_ORG_CONNECTOR

    async def to_mailbox(self, server: str, item: QueuedMessage,
                          rcpts: list[str]) -> list[tuple[str, Reply]]:
        endpoint = self.mailbox_delivery[server.lower()]
        hop = await self._take_hop(server, endpoint)
        try:
            params = f"SIZE={len(item.data)}"
            if _needs_smtputf8(item.sender, rcpts):
                params += " SMTPUTF8"
            hop.log_message(item.internal_id, item.message_id)
            result = await hop.send_message(item.sender, params, rcpts, item.data)
        except BaseException:
            hop.abort()
            raise
        self._idle[server.lower()].append(hop)
        if result.reply.code != 250:
            if result.refused and len(result.refused) == len(rcpts):
                return list(result.refused)  # every recipient refused: each with its reply
            if result.reply.code >= 500:
                return [(r, result.reply) for r in rcpts]
            raise HopError(f"mailbox delivery refused: {result.reply.render()}")
        return list(result.refused)

    async def _take_hop(self, server: str, endpoint: Endpoint) -> HopClient:
        """An idle hop session to the mailbox server, or a new one (Unreachable if not)."""
        idle = self._idle[server.lower()]
        while idle:
            hop = idle.pop()
            if hop.usable:
                return hop
            hop.abort()
        context = self.tls_context()
        if context is None:
            raise Unreachable("no internal transport certificate")
        try:
            hop = await HopClient.connect(endpoint.host, endpoint.port, helo=self.server.fqdn,
                                          tls_context=context, source=self.server.address,
                                          log=self._log(INTRA_ORG_CONNECTOR, endpoint))
        except (HopError, OSError, TimeoutError) as exc:
            raise Unreachable(f"{endpoint.host}:{endpoint.port}: {exc}") from exc
        try:
            reply = await hop.command("XSESSIONPARAMS MDBGUID=00000000-0000-0000-0000-000000000000"
                                      " TYPE=Delivery")
            if reply.code != 250:
                raise Unreachable(f"XSESSIONPARAMS refused: {reply.render()}")
        except HopError as exc:
            hop.abort()
            raise Unreachable(f"{endpoint.host}:{endpoint.port}: {exc}") from exc
        except BaseException:
            hop.abort()
            raise
        return hop

    async def to_internet(self, item: QueuedMessage,
                           rcpts: list[str]) -> list[tuple[str, Reply]]:
        # The SMTP client rather than aiosmtplib.send: an NDR's reverse path is empty.
        options = ["SMTPUTF8"] if _needs_smtputf8(item.sender, rcpts) else []
        sink = self.internet
        smtp = aiosmtplib.SMTP(hostname=sink.host, port=sink.port,
                               local_hostname=self.server.fqdn,
                               source_address=(self.server.address, 0),
                               start_tls=False, use_tls=False, timeout=30)
        log = self._log("Internet", sink)
        try:
            if log is not None:
                log.attempting()
            try:
                banner = await smtp.connect()
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                raise Unreachable(f"{sink.host}:{sink.port}: {summary(exc)}") from exc
            if log is not None:
                watch(smtp, log, banner)
            try:
                if log is not None:  # the line comes after the EHLO, before MAIL
                    await smtp.ehlo()
                    log.sending_message(item.internal_id, item.message_id)
                # Not an Exchange server of the organization (exchange.md §12.5).
                data = send_firewall(item.data, exchange_of_organization=False)
                errors, _ = await smtp.sendmail(item.sender, rcpts, data,
                                                mail_options=options)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                return [(e.recipient, parse_reply(e.code, [" ".join(e.message.split())]))
                        for e in exc.recipients]
            except ValueError as exc:  # the client refuses an address of this message
                raise Unsendable(str(exc)) from exc
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await smtp.quit()
                if log is not None:
                    log.disconnect("Remote")  # the server ends the session after QUIT
        finally:
            if log is not None:
                log.disconnect("Local")  # unless already written
            smtp.close()
        return [(r, parse_reply(code, [" ".join(text.split())]))
                for r, (code, text) in errors.items()]


def _needs_smtputf8(sender: str, recipients: Sequence[str]) -> bool:
    """RFC 6531: a non-ASCII address travels only in an SMTPUTF8 transaction."""
    return not (sender.isascii() and all(r.isascii() for r in recipients))
