"""Front End Transport: proxy each accepted message to a hub, in-session (reference §7.2, §7.3).

The Front End accepts MAIL and RCPT itself (its own connector's checks), and at the end of
data hands the message to the hub over one hop session per client session: ``XPROXYFROM`` to
the hub's ``Default <SRV>`` (2525) for everything but Client Frontend, which uses ``XPROXY`` to
``Client Proxy <SRV>`` (465). The client gets the hub's own final reply, so it sees 250 only
once the hub has committed the message. When no hub can be reached the client gets
``451 4.7.0 Temporary server error. Please try again later. PRX4`` and keeps the message.

exchsim opens the hop at end of data rather than at end of headers (Exchange's
OnProxyInboundMessage); the client cannot tell the difference. The replay is all or nothing:
the client already has a 250 for every recipient, so if the hub refuses one (a hub connector
with a lower MaxRecipientsPerMessage, say) the hub's refusal becomes the reply to the whole
message and nothing is delivered, rather than that recipient vanishing (exchsim's choice; the
reference does not say what Exchange does then).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from exchsim.config.model import Server
from exchsim.policy import replies
from exchsim.policy.headers import parse_message
from exchsim.policy.permissions import IdentityKind, rights_to_mask
from exchsim.policy.replies import Reply
from exchsim.smtp import wire
from exchsim.smtp.session import AcceptedMessage, ExchangeSMTP, received_for
from exchsim.transport.hopclient import HopClient, HopError

log = logging.getLogger(__name__)

CLIENT_SUBMISSION_PORT = 587


@dataclass(frozen=True, slots=True)
class HubEndpoint:
    host: str
    port: int  # the port to connect to (offset applied)


class FrontendProxy:
    """The MessageHandler of FrontendTransport connectors."""

    def __init__(
        self,
        server: Server,
        tls_context: Callable[[], ssl.SSLContext | None],
        default_hub: HubEndpoint,
        client_proxy: HubEndpoint,
    ) -> None:
        self.server = server
        self.tls_context = tls_context
        self.default_hub = default_hub
        self.client_proxy = client_proxy

    async def __call__(self, session: ExchangeSMTP, message: AcceptedMessage) -> Reply:
        parsed = parse_message(message.data)
        stamped = parsed.prepend(received_for(session, message, "Frontend Transport")).to_bytes()
        for attempt in range(2):
            try:
                hop = await self._hop(session)
                params = _mail_params(message)
                # All or none: the client already has a 250 for every recipient, so one the
                # hub refuses must fail the message visibly rather than vanish.
                result = await hop.send_message(
                    message.mail_from, params, message.recipients, stamped, partial=False
                )
                session.info("", f"Proxy destination(s) obtained; hub replied {result.reply.code}")
                return result.reply
            except HopError as exc:
                self.release(session)
                log.info("proxy to hub failed (attempt %d): %s", attempt + 1, exc)
                session.info("", f"Failed to proxy message: {exc}")
        return replies.proxy_failure(4)

    async def _hop(self, session: ExchangeSMTP) -> HopClient:
        key = (session.identity, session.rights)
        cached = session.attachments.get("hop")
        if isinstance(cached, tuple) and cached[0] == key and not cached[1].broken:
            hop: HopClient = cached[1]
            return hop
        self.release(session)
        context = self.tls_context()
        if context is None:
            raise HopError("no internal transport certificate")
        submission = session.local_port == CLIENT_SUBMISSION_PORT
        target = self.client_proxy if submission else self.default_hub
        hop = await HopClient.connect(
            target.host, target.port, helo=self.server.fqdn, tls_context=context,
            source=self.server.address,
        )
        try:
            if submission and session.identity.kind is IdentityKind.USER:
                reply = await hop.command(_xproxy(session))
            else:
                reply = await hop.command(_xproxyfrom(session))
            if reply.code != 250:
                raise HopError(f"hub refused the proxy command: {reply.render()}", reply)
        except BaseException:
            hop.abort()
            raise
        session.attachments["hop"] = (key, hop)
        return hop

    def release(self, session: ExchangeSMTP) -> None:
        cached = session.attachments.pop("hop", None)
        if isinstance(cached, tuple):
            cached[1].abort()

    async def close_session(self, session: ExchangeSMTP) -> None:
        cached = session.attachments.pop("hop", None)
        if isinstance(cached, tuple):
            await cached[1].quit()


def _mail_params(message: AcceptedMessage) -> str:
    params = [f"SIZE={len(message.data)}"]
    for name in ("BODY", "RET", "ENVID", "SMTPUTF8"):
        if name in message.mail_params:
            value = message.mail_params[name]
            params.append(name if value is None else f"{name}={value}")
    return " ".join(params)


def _xproxyfrom(session: ExchangeSMTP) -> str:
    identity = session.identity
    parts = [
        f"SID={session.session_id}",
        f"IP={session.peer_ip}",
        f"PORT={session.peer_port}",
        f"DOMAIN={wire.xtext_encode(session.helo_name or '')}",
        f"SEQNUM={session.messages}",
        f"PERMS={rights_to_mask(session.rights)}",
        f"AUTHSRC={identity.kind.value}",
    ]
    if identity.name:
        parts.append(f"AUTHNAME={wire.xtext_encode(identity.name)}")
    parts.append(f"AUTHMECH={identity.mechanism}")
    return "XPROXYFROM " + " ".join(parts)


def _xproxy(session: ExchangeSMTP) -> str:
    return (
        f"XPROXY SID={session.session_id} IP={session.peer_ip} PORT={session.peer_port} "
        f"DOMAIN={wire.xtext_encode(session.helo_name or '')} CAPABILITIES=0 "
        f"UNAME={wire.xtext_encode(session.identity.name)} AUTHMECH={session.identity.mechanism}"
    )
