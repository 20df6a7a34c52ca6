"""The hub's next hops: Mailbox Transport Delivery (475) over hop sessions it keeps open, send
connectors of this server (transport/smtpsend.py: smart hosts, MX hosts, the lab's internet
sink), and the Transport service (2525) of a send connector's source server (exchange.md §7.5,
exchange.md §8.2).

Each call delivers one message to some recipients and returns the recipients refused, with the
reply (and, for the hops outside the mailbox server, who took it and whether the DSN request
went on with it: the next hop advertised DSN and got RET, ENVID, NOTIFY and ORCPT as the queue
kept them, policy/dsn.passed_on, so the hub sends no relay DSN); what went wrong otherwise is
raised for transport/outcome.py to classify: the next hop could not be reached or the session
set up (:class:`Unreachable`), the SMTP client refuses an address of the message
(:class:`Unsendable`), or the transaction failed (HopError, aiosmtplib's errors, OSError,
TimeoutError).

The intra-organization hops (to Mailbox Transport Delivery, and to another server's Transport
service) are written to the server's send protocol log (``send_log``, set by the daemon;
exchange.md §6.1) under the implicit ``Intra-Organization SMTP Send Connector`` when the server's
IntraOrgConnectorProtocolLoggingLevel (Set-TransportService, None by default) is Verbose, each
message with its RecordId (the queue's InternalId) and InternetMessageId. A send connector's
sessions are logged by transport/smtpsend.py under the connector's name, by its
ProtocolLoggingLevel.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from exchsim.config.model import Server
from exchsim.config.sendconnector import SendConnector
from exchsim.logs.sendlog import INTRA_ORG_CONNECTOR, SendLogSession, SendProtocolLog
from exchsim.policy import dsn, replies
from exchsim.policy.lasterror import hop_failed, hop_unreachable
from exchsim.policy.outbound import destinations, dns_failure, xproxyto_command
from exchsim.policy.replies import Reply
from exchsim.transport.hopclient import HopClient, HopError, HopTls
from exchsim.transport.outcome import Unreachable, socket_error
from exchsim.transport.queue import QueuedMessage
from exchsim.transport.smtpsend import SmtpSender

__all__ = ["Endpoint", "NextHops"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int


class NextHops:
    """The connections of one hub's delivery agent to its next hops."""

    def __init__(self, server: Server, tls_context: Callable[[], HopTls | None],
                 mailbox_delivery: Mapping[str, Endpoint], internet: Endpoint, *,
                 sender: SmtpSender | None = None,
                 hub_transport: Mapping[str, Endpoint] | None = None,
                 frontend: Endpoint | None = None,
                 fqdns: Mapping[str, str] | None = None,
                 default_frontend: Mapping[str, Endpoint] | None = None,
                 edges: frozenset[str] = frozenset(), timeout: float = 30.0,
                 trusted: frozenset[bytes] = frozenset()) -> None:
        self.server = server
        self.timeout = timeout  # seconds for the connection, the handshake, each reply
        self.source = server.address  # the Transport service's address (services.py)
        self.tls_context = tls_context
        self.mailbox_delivery = mailbox_delivery
        self.internet = internet
        self.sender = sender  # send connectors (transport/smtpsend.py)
        self.hub_transport = hub_transport or {}  # each server's Transport service (2525)
        self.frontend = frontend  # this server's Outbound Proxy Frontend (717)
        self.fqdns = fqdns or {}  # each server's FQDN by lower-case name (LastError texts)
        # Each Mailbox server's Default Frontend (25): an Edge's EdgeSync - Inbound hop.
        self.default_frontend = default_frontend or {}
        # The Edge servers (lower-case names) this server reaches over Direct Trust: their
        # entry in hub_transport is their port 25 (exchange.md §7.6).
        self.edges = edges
        # The certificates (DER) a Direct Trust hop's server must present (hopclient.py).
        self.trusted = trusted
        self._idle: dict[str, list[HopClient]] = defaultdict(list)
        self.send_log: SendProtocolLog | None = None

    def _log(self, connector: str, endpoint: Endpoint) -> SendLogSession | None:
        if self.send_log is None:
            return None
        return self.send_log.session(connector, endpoint.host, endpoint.port,
                                     self.server.intra_org_connector_protocol_logging_level)

    def _failure(self, exc: BaseException, server: str, endpoint: Endpoint) -> str:
        """The LastError of a hop that failed: Exchange 2016's form (policy/lasterror.py,
        exchange.md §8.5) with what the hop client says went wrong."""
        fqdn = self.fqdns.get(server.lower(), server)
        if isinstance(exc, HopError) and exc.connect:
            return hop_unreachable(socket_error(exc), fqdn, endpoint.host)
        if isinstance(exc, HopError) and exc.what:
            return hop_failed(exc.what, fqdn, endpoint.host)
        return f"{endpoint.host}:{endpoint.port}: {exc}"

    def _broke(self, exc: HopError, server: str, endpoint: Endpoint) -> HopError:
        """A hop that broke during its transaction, with its LastError (the failure stays
        transient: transport/outcome.py)."""
        exc.last_error = self._failure(exc, server, endpoint)
        return exc

    def close(self) -> None:
        """Drop every idle hop session."""
        for hops in self._idle.values():
            for hop in hops:
                hop.abort()
        self._idle.clear()

    def described(self, server: str) -> tuple[str, str, str]:
        """(host, address, connector) of a mailbox server's Mailbox Transport Delivery, as the
        tracking log's SEND names it: the implicit intra-organization connector
        (exchange.md §8.2)."""
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
        except HopError as exc:
            hop.abort()
            self._broke(exc, server, endpoint)
            raise
        except BaseException:
            hop.abort()
            raise
        self._idle[server.lower()].append(hop)
        if result.reply.code != 250:
            if result.refused and len(result.refused) == len(rcpts):
                return list(result.refused)  # every recipient refused: each with its reply
            if result.reply.code >= 500:
                return [(r, result.reply) for r in rcpts]
            raise self._broke(HopError(f"mailbox delivery refused: {result.reply.render()}",
                                       result.reply), server, endpoint)
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
                                          tls_context=context, timeout=self.timeout,
                                          source=self.source,
                                          log=self._log(INTRA_ORG_CONNECTOR, endpoint))
        except (HopError, OSError, TimeoutError) as exc:
            raise Unreachable(self._failure(exc, server, endpoint)) from exc
        try:
            reply = await hop.command("XSESSIONPARAMS MDBGUID=00000000-0000-0000-0000-000000000000"
                                      " TYPE=Delivery")
            if reply.code != 250:
                raise Unreachable(self._failure(HopError("XSESSIONPARAMS refused", reply),
                                                server, endpoint))
        except HopError as exc:
            hop.abort()
            raise Unreachable(self._failure(exc, server, endpoint)) from exc
        except BaseException:
            hop.abort()
            raise
        return hop

    async def to_connector(self, connector: SendConnector, domain: str, item: QueuedMessage,
                           rcpts: list[str], *, domain_secure: bool = False
                           ) -> tuple[list[tuple[str, Reply]], str, str, bool]:
        """Through a send connector of this server (transport/smtpsend.py): the recipients
        refused, the host name and address that took the message, and whether the DSN
        request went on. ``domain_secure``: Domain Security applies (policy/sendsecure.py)."""
        if self.sender is None:
            raise Unreachable("no send connector client")
        result = await self.sender.send(connector, domain, item.sender, rcpts, item.data,
                                        domain_secure=domain_secure,
                                        message=(item.internal_id, item.message_id),
                                        dsn=dsn.passed_on(item.metadata, rcpts))
        return result.refused, result.host, result.address, result.dsn_passed

    async def via_frontend(self, connector: SendConnector, domain: str, item: QueuedMessage,
                           rcpts: list[str]) -> tuple[list[tuple[str, Reply]], str, str, bool]:
        """Through the Front End of this server (FrontendProxyEnabled, exchange.md §7.4): a hop
        session to Outbound Proxy Frontend (717), ``XPROXYTO`` with the destinations resolved
        here and the connector's settings, then one transaction per recipient (the Front End
        answers each with the remote's reply, so every recipient gets its own outcome; the
        remote gets one copy per recipient, exchsim's simplification). The DSN request goes to
        the Front End when its 717 advertises DSN, and on to the remote when the remote does:
        the Front End's reply then ends with ``X-DSN-PASSED-ON`` (policy/replies.py), and only
        when every recipient's did is the request passed on (no relay DSN)."""
        assert self.sender is not None
        hosts, missing = destinations(connector, domain, self.sender.context.dns)
        if not hosts:
            raise Unreachable(dns_failure(missing or domain))
        context = self.tls_context()
        if self.frontend is None or context is None:
            raise Unreachable("no Front End to proxy through")
        fe = self.frontend
        try:
            hop = await HopClient.connect(fe.host, fe.port, helo=self.server.fqdn,
                                          tls_context=context, timeout=self.timeout,
                                          source=self.source)
        except (HopError, OSError, TimeoutError) as exc:
            raise Unreachable(self._failure(exc, self.server.name, fe)) from exc
        refused: list[tuple[str, Reply]] = []
        offered = "DSN" in hop.extensions
        request = dsn.passed_on(item.metadata, rcpts) if offered else dsn.DsnParameters()
        passed = offered
        try:
            try:
                reply = await hop.command(xproxyto_command(connector, domain, hosts,
                                                           uuid.uuid4().hex))
            except HopError as exc:  # the session's set-up failed: the destination's trouble
                raise Unreachable(self._failure(exc, self.server.name, fe)) from exc
            if reply.code != 250:
                raise Unreachable(self._failure(HopError("XPROXYTO refused", reply),
                                                self.server.name, fe))
            for index, rcpt in enumerate(rcpts):
                params = " ".join([f"SIZE={len(item.data)}", *request.mail])
                if _needs_smtputf8(item.sender, [rcpt]):
                    params += " SMTPUTF8"
                extra = {rcpt: " ".join(request.of(rcpt))} if request.of(rcpt) else None
                try:
                    result = await hop.send_message(item.sender, params, [rcpt], item.data,
                                                    rcpt_params=extra)
                except HopError as exc:
                    self._broke(exc, self.server.name, fe)
                    raise
                final, took = replies.dsn_passed_on(result.reply)
                if final.code == 250:
                    passed = passed and took
                    continue
                if result.reply.code < 500 and index == 0:
                    # Nothing went: the Front End's destinations are the ones in trouble.
                    raise Unreachable(" ".join(result.reply.render().split()))
                refused.append((rcpt, result.reply))
        except BaseException:
            hop.abort()
            raise
        await hop.quit()
        return refused, self.server.fqdn, fe.host, passed

    async def to_frontend(self, servers: Sequence[str], item: QueuedMessage,
                          rcpts: list[str]) -> tuple[list[tuple[str, Reply]], str, str, bool]:
        """An Edge server's ``EdgeSync - Inbound to <Site>``: to the Default Frontend (25) of
        the first of the Mailbox ``servers`` that can be reached, over the Direct Trust hop
        (X-ANONYMOUSTLS with the Edge's certificate, exchange.md §7.6); that Front End proxies
        it to a hub as it does any message, the organization's headers kept."""
        return await self.to_hub(servers, item, rcpts, endpoints=self.default_frontend,
                                 direct_trust=True)

    async def to_hub(self, servers: Sequence[str], item: QueuedMessage,
                     rcpts: list[str], *, endpoints: Mapping[str, Endpoint] | None = None,
                     direct_trust: bool = False
                     ) -> tuple[list[tuple[str, Reply]], str, str, bool]:
        """To the Transport service (2525) of the first of ``servers`` that can be reached,
        over the intra-organization hop (X-ANONYMOUSTLS, EXCHANGEAUTH), where the message is
        routed again: a send connector whose source servers are other servers
        (SmtpRelayToConnectorSourceServers, exchange.md §8.2). The organization's headers
        stay (an Exchange server of the organization); the DSN request goes on when that
        server's Transport service advertises DSN (as its Default receive connector does)."""
        context = self.tls_context()
        if context is None:
            raise Unreachable("no internal transport certificate")
        failures: list[str] = []
        for server in servers:
            endpoint = (self.hub_transport if endpoints is None else endpoints).get(
                server.lower())
            if endpoint is None:
                failures.append(f"{server}: not a server of this lab")
                continue
            try:
                hop = await HopClient.connect(
                    endpoint.host, endpoint.port, helo=self.server.fqdn, tls_context=context,
                    timeout=self.timeout, source=self.source,
                    log=self._log(INTRA_ORG_CONNECTOR, endpoint),
                    direct_trust=direct_trust or server.lower() in self.edges,
                    trusted=self.trusted)
            except (HopError, OSError, TimeoutError) as exc:
                failures.append(self._failure(exc, server, endpoint))
                continue
            passed = "DSN" in hop.extensions
            request = dsn.passed_on(item.metadata, rcpts) if passed else dsn.DsnParameters()
            try:
                params = " ".join([f"SIZE={len(item.data)}", *request.mail])
                if _needs_smtputf8(item.sender, rcpts):
                    params += " SMTPUTF8"
                hop.log_message(item.internal_id, item.message_id)
                result = await hop.send_message(
                    item.sender, params, rcpts, item.data,
                    rcpt_params={r: " ".join(request.of(r)) for r in rcpts if request.of(r)})
            except HopError as exc:
                hop.abort()
                self._broke(exc, server, endpoint)
                raise
            except BaseException:
                hop.abort()
                raise
            await hop.quit()
            if result.reply.code != 250:
                if result.refused and len(result.refused) == len(rcpts):
                    return list(result.refused), server, endpoint.host, passed
                if result.reply.code >= 500:
                    return [(r, result.reply) for r in rcpts], server, endpoint.host, passed
                raise self._broke(HopError(f"relay to {server} refused: "
                                           f"{result.reply.render()}", result.reply),
                                  server, endpoint)
            return list(result.refused), server, endpoint.host, passed
        raise Unreachable("; ".join(failures) or "no source server to relay to")


def _needs_smtputf8(sender: str, recipients: Sequence[str]) -> bool:
    """RFC 6531: a non-ASCII address travels only in an SMTPUTF8 transaction."""
    return not (sender.isascii() and all(r.isascii() for r in recipients))
