"""Front End Transport: proxy each accepted message to a hub, in-session (exchange.md §7.2, §7.3).

The Front End accepts MAIL and RCPT itself (its own connector's checks), and at the end of
data hands the message to the hub over one hop session per client session: ``XPROXYFROM`` to
the hub's ``Default <SRV>`` (2525) for everything but Client Frontend, which uses ``XPROXY`` to
``Client Proxy <SRV>`` (465). The client gets the hub's own final reply, so it sees 250 only
once the hub has committed the message. The hubs are tried in the order policy/hubselect.py
gives (the recipient's mailbox server first), each one that cannot be reached skipped for the
next (exchange.md §7.2). When no hub can be reached the client gets
``451 4.7.0 Temporary server error. Please try again later. PRX4`` and keeps the message.

exchsim opens the hop at end of data rather than at end of headers (Exchange's
OnProxyInboundMessage); the client cannot tell the difference. The replay is all or nothing:
the client already has a 250 for every recipient, so if the hub refuses one (a hub connector
with a lower MaxRecipientsPerMessage, say) the hub's refusal becomes the reply to the whole
message and nothing is delivered, rather than that recipient vanishing (exchsim's choice; the
sources do not say what Exchange does then).

At most once towards the hub: a transaction is tried again (once, on a new hop session) only
when it failed before the message data was handed to the hub: connecting, EHLO, X-ANONYMOUSTLS,
EXCHANGEAUTH, XPROXYFROM / XPROXY, or, with several recipients (whose data waits for every
RCPT reply), a connection lost at MAIL or RCPT. A kept hop session the hub has closed while
idle is noticed before it is used (``HopClient.usable``) and replaced. With one recipient,
MAIL, RCPT and BDAT go in one write (no round trip added), so a hop that dies in that very
moment counts as "after the data". Once the data is written the hub
may have committed the message whatever happens next (the connection drops, the reply never
comes within the hop's timeout, the reply cannot be read), so the client gets
``451 4.7.0 ... PRX4`` and the transaction is not replayed: a second commit would deliver the
message twice while the client was told it failed. The client's own retry after that 451 is
the only copy that can follow, and Mailbox Transport Delivery drops it if the first one did
arrive (the same Internet Message-ID, transport/mailbox.py).

Outbound Proxy Frontend (717): a hub session that said ``XPROXYTO`` (a send connector with
FrontendProxyEnabled, exchange.md §7.4) is not proxied to a hub: its messages go out through the
send connector client (transport/smtpsend.py) to the destinations XPROXYTO named, with the
connector's TLS settings, and the hub gets the remote's reply (``550 5.1.3 Invalid address``
for an address the client cannot send there, a UTF-8 one without SMTPUTF8, as transport/outcome.py
gives a direct send, so the hub sends the NDR). The hub's DSN request (RET and
ENVID on MAIL, NOTIFY and ORCPT on RCPT) goes on to a remote that offers DSN, and then the reply
ends with the line ``X-DSN-PASSED-ON`` (policy/replies.py, exchsim's own, exchange.md §7.4), so
the hub sends no relay DSN, as after a direct send.

Each hop session is written to the server's send protocol log under the implicit
``Intra-Organization SMTP Send Connector`` when the Front End's
IntraOrgConnectorProtocolLoggingLevel (Set-FrontendTransportService, Verbose by default) says
so (exchange.md §6.1). The Front End keeps no queue, so its ``sending message`` line names
RecordId 0 (exchsim's choice) and the Message-ID the client's message carries (empty if none).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiosmtplib

from exchsim.clock import Clock
from exchsim.config.model import Server
from exchsim.logs.sendlog import INTRA_ORG_CONNECTOR, SendProtocolLog
from exchsim.policy import dsn, replies
from exchsim.policy.headers import parse_message
from exchsim.policy.lasterror import (
    CONNECTION_DROPPED,
    CONNECTION_TIMED_OUT,
    NO_TRANSPORT_CERTIFICATE,
)
from exchsim.policy.outbound import ProxyTo
from exchsim.policy.permissions import Identity, IdentityKind, Rights, rights_to_mask
from exchsim.policy.replies import Reply
from exchsim.smtp import wire
from exchsim.smtp.message import AcceptedMessage, MessageContext
from exchsim.transport.hopclient import HopClient, HopError, HopTls, parse_reply
from exchsim.transport.outcome import Unreachable, Unsendable, summary
from exchsim.transport.received import received_for
from exchsim.transport.smtpsend import SmtpSender

log = logging.getLogger(__name__)

CLIENT_SUBMISSION_PORT = 587


def proxy_destinations_line(correlation_id: uuid.UUID) -> str:
    """The context of the Front End's line when it has chosen where a message goes
    (exchange.md §6.1, §12.7); the id is a new GUID per message (exchsim's choice)."""
    return ("Proxy destination(s) obtained from OnProxyInboundMessage event. "
            f"Correlation Id:{correlation_id}")


@dataclass(frozen=True, slots=True)
class HubEndpoint:
    host: str
    port: int  # the port to connect to (offset applied)


# (recipients, the submitting user or None) -> each hub's (2525, 465) endpoints, best first.
HubChooser = Callable[[Sequence[str], str | None], Sequence[tuple[HubEndpoint, HubEndpoint]]]


@dataclass(frozen=True, slots=True)
class _Hop:
    """The hub session proxying one client session, for the identity it was opened with."""

    identity: Identity
    rights: Rights
    client: HopClient


class FrontendProxy:
    """The MessageHandler of FrontendTransport connectors."""

    def __init__(
        self,
        server: Server,
        clock: Clock,
        tls_context: Callable[[], HopTls | None],
        default_hub: HubEndpoint,
        client_proxy: HubEndpoint,
        *,
        hop_timeout: float = 30.0,
        sender: SmtpSender | None = None,
        send_log: SendProtocolLog | None = None,
        hubs: HubChooser | None = None,
        source: str | None = None,
    ) -> None:
        self.server = server
        # The address its hops leave from: the FrontEnd's (config/serviceaddr.py).
        self.source = source or server.address
        self.sender = sender  # the Outbound Proxy Frontend's client (XPROXYTO)
        self.clock = clock
        self.tls_context = tls_context
        self.default_hub = default_hub
        self.client_proxy = client_proxy
        self.hop_timeout = hop_timeout  # seconds for each hub reply
        self.send_log = send_log
        self.hubs = hubs  # None: the default hub / client proxy only
        self._hops: dict[str, _Hop] = {}  # by client session id

    async def __call__(self, message: AcceptedMessage) -> Reply:
        context = message.context
        if context.proxy_to is not None:
            return await self._outbound(message, context.proxy_to)
        parsed = parse_message(message.data)
        received = received_for(self.server, self.clock, message, "Frontend Transport")
        stamped = parsed.prepend(received).to_bytes()
        context.log("", proxy_destinations_line(uuid.uuid4()))
        targets = self._targets(message)
        attempts = [0] * len(targets)
        i = 0
        while i < len(targets):
            attempts[i] += 1
            connected = False
            try:
                hop = await self._hop(context, targets[i])
                connected = True
                params = _mail_params(message)
                hop.log_message(0, (parsed.first("Message-ID") or "").strip())
                # All or none: the client already has a 250 for every recipient, so one the
                # hub refuses must fail the message visibly rather than vanish.
                result = await hop.send_message(
                    message.mail_from, params, message.recipients, stamped, partial=False,
                    rcpt_params=_rcpt_params(message),
                )
                return result.reply
            except HopError as exc:
                self.session_closed(context.session_id)
                log.info("proxy to hub failed (attempt %d): %s", sum(attempts), exc)
                context.log("", f"Failed to proxy message to {targets[i].host}:"
                                f"{targets[i].port}: {exc.what or exc}")
                if exc.data_sent:
                    # The hub may have committed it: never a second transaction.
                    context.log("", "Message data sent; outcome unknown, not retried")
                    break
                # A hub that cannot be reached: the next one (hub selection); a session lost
                # before the data: once more to the same hub, then the next.
                if not connected or attempts[i] >= 2:
                    i += 1
        return replies.proxy_failure(4)

    def _targets(self, message: AcceptedMessage) -> list[HubEndpoint]:
        """The hubs to try, best first: the proxy destinations (policy/hubselect.py)."""
        context = message.context
        submission = context.local.port == CLIENT_SUBMISSION_PORT
        if self.hubs is None:
            return [self.client_proxy if submission else self.default_hub]
        user = context.identity.name if context.identity.kind is IdentityKind.USER else None
        return [pair[1] if submission else pair[0]
                for pair in self.hubs(message.recipients, user if submission else None)]

    async def _outbound(self, message: AcceptedMessage, proxy_to: ProxyTo) -> Reply:
        """A hub's message through Outbound Proxy Frontend (XPROXYTO, exchange.md §7.4): out
        to the destinations the hub named, with its connector's settings; the hub gets the
        remote's reply (one recipient per transaction: transport/nexthop.py), or 451 with why
        no destination took it."""
        if self.sender is None:
            return replies.proxy_failure(4)
        request = dsn.requested(message.mail_params, message.rcpt_params, message.recipients)
        try:
            result = await self.sender.send_to(
                proxy_to.as_connector(), proxy_to.domain, proxy_to.destinations,
                message.mail_from, message.recipients, message.data, dsn=request)
        except Unreachable as exc:
            message.context.log("", f"Outbound proxy failed: {exc}")
            return Reply(451, "4.4.0", f"Outbound proxy failed: {exc}")
        except (aiosmtplib.SMTPResponseException) as exc:
            return parse_reply(exc.code, [" ".join(exc.message.split())])
        except Unsendable as exc:
            # An address the client cannot send to this remote (no SMTPUTF8): permanent, as
            # when the hub sends directly (transport/outcome.py), so the hub sends the NDR.
            log.info("outbound proxy cannot send: %s", exc)
            message.context.log("", "Outbound proxy failed: "
                                    + replies.UNSENDABLE_ADDRESS.render())
            return replies.UNSENDABLE_ADDRESS
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            log.info("outbound proxy failed: %s", summary(exc))
            message.context.log("", f"Outbound proxy failed: {_broken(exc)}")
            return Reply(451, "4.4.2", f"Outbound proxy failed: {_broken(exc)}")
        if result.refused:
            return result.refused[0][1]
        assert result.reply is not None
        if result.dsn_passed and result.reply.code == 250:
            return replies.with_dsn_passed_on(result.reply)
        return result.reply

    async def _hop(self, context: MessageContext, target: HubEndpoint) -> HopClient:
        cached = self._hops.get(context.session_id)
        if (cached is not None and cached.identity == context.identity
                and cached.rights == context.rights and cached.client.usable):
            return cached.client
        self.session_closed(context.session_id)
        tls = self.tls_context()
        if tls is None:
            raise HopError("no internal transport certificate", what=NO_TRANSPORT_CERTIFICATE)
        submission = context.local.port == CLIENT_SUBMISSION_PORT
        log = None
        if self.send_log is not None:
            service = self.server.frontend_transport_service
            log = self.send_log.session(INTRA_ORG_CONNECTOR, target.host, target.port,
                                        service.intra_org_connector_protocol_logging_level)
        hop = await HopClient.connect(
            target.host, target.port, helo=self.server.fqdn, tls_context=tls,
            timeout=self.hop_timeout, source=self.source, log=log,
        )
        try:
            if submission and context.identity.kind is IdentityKind.USER:
                reply = await hop.command(_xproxy(context))
            else:
                reply = await hop.command(_xproxyfrom(context))
            if reply.code != 250:
                raise HopError(f"hub refused the proxy command: {reply.render()}", reply)
        except BaseException:
            hop.abort()
            raise
        self._hops[context.session_id] = _Hop(context.identity, context.rights, hop)
        return hop

    def session_closed(self, session_id: str) -> None:
        """The client session is over (or its hop failed): drop its hub session."""
        cached = self._hops.pop(session_id, None)
        if cached is not None:
            cached.client.abort()


def _broken(exc: BaseException) -> str:
    """Why the remote's transaction broke, in Exchange's words (policy/lasterror.py): the
    connection timed out, or was dropped."""
    if isinstance(exc, TimeoutError | aiosmtplib.SMTPTimeoutError):
        return CONNECTION_TIMED_OUT
    return CONNECTION_DROPPED


def _mail_params(message: AcceptedMessage) -> str:
    params = [f"SIZE={len(message.data)}"]
    for name in ("BODY", "RET", "ENVID", "SMTPUTF8"):
        if name in message.mail_params:
            value = message.mail_params[name]
            params.append(name if value is None else f"{name}={value}")
    return " ".join(params)


def _rcpt_params(message: AcceptedMessage) -> dict[str, str]:
    """Each recipient's DSN parameters (RFC 3461 NOTIFY, ORCPT), passed on to the hub as the
    client gave them: the hub's connectors offer DSN (exchange.md §1.4)."""
    return {rcpt: " ".join(f"{k}={v}" for k, v in params.items() if v)
            for rcpt, params in message.rcpt_params.items()}


def _xproxyfrom(context: MessageContext) -> str:
    identity = context.identity
    parts = [
        f"SID={context.session_id}",
        f"IP={context.peer.ip}",
        f"PORT={context.peer.port}",
        f"DOMAIN={wire.xtext_encode(context.helo)}",
        f"SEQNUM={context.sequence}",
        f"PERMS={rights_to_mask(context.rights)}",
        f"AUTHSRC={identity.kind.value}",
    ]
    if identity.name:
        parts.append(f"AUTHNAME={wire.xtext_encode(identity.name)}")
    parts.append(f"AUTHMECH={identity.mechanism}")
    return "XPROXYFROM " + " ".join(parts)


def _xproxy(context: MessageContext) -> str:
    return (
        f"XPROXY SID={context.session_id} IP={context.peer.ip} PORT={context.peer.port} "
        f"DOMAIN={wire.xtext_encode(context.helo)} CAPABILITIES=0 "
        f"UNAME={wire.xtext_encode(context.identity.name)} AUTHMECH={context.identity.mechanism}"
    )
