"""Wire a lab together: PKI, listeners, queues, delivery workers, the internet sink.

One process runs every server of the config (``exchsim lab``) or one of them
(``exchsim serve``). Each server listens on its own loopback Address; ``port_offset`` is added
to every port so the lab runs without root. Every task the daemon starts is kept and cancelled
on :meth:`LabDaemon.stop`; listeners are closed first so nothing new arrives while it stops.
Starting a daemon sets the process's umask to 077: every file it writes is private.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchsim import allocator
from exchsim.clock import SYSTEM_CLOCK, Clock
from exchsim.config.hosts import Hosts
from exchsim.config.model import (
    Lab,
    Mailbox,
    ProtocolLoggingLevel,
    ReceiveConnector,
    Server,
    TransportRole as Role,
)
from exchsim.config.sendconnector import SendConnector
from exchsim.config.vocabulary import logon_table
from exchsim.labpieces import LabPieces, start_crl_server, start_sink
from exchsim.logs.protocol import ProtocolLog, ProtocolLogSession, new_session_id
from exchsim.logs.sendlog import SendProtocolLog
from exchsim.logs.tracking import MessageTracking
from exchsim.policy.connectors import ConnectorIndex
from exchsim.policy.edgetrust import direct_trust_peers, known_servers
from exchsim.policy.ntlm import identity_of
from exchsim.policy.permissions import ConnectorAcl, connector_acl
from exchsim.policy.rates import MessageRateWindow
from exchsim.reload import ConfigReloader
from exchsim.services import (
    Service,
    listen_endpoints,
    log_dir,
    ntlm_users_path,
    start_services,
)
from exchsim.smtp.adapter import ExchangeSession
from exchsim.smtp.message import LocalCertificate, MessageHandler
from exchsim.smtp.ntlm import WindowsNtlmAcceptor, write_ntlm_users
from exchsim.smtp.proxyread import ProxyGate
from exchsim.smtp.sink import SinkHandler
from exchsim.tls.certstore import file_version, smtp_certificates, store_path
from exchsim.tls.contexts import (
    client_context_anonymous_tls,
    server_context_starttls,
)
from exchsim.tls.crlhttp import CrlServer
from exchsim.tls.judged import JudgedServerContext
from exchsim.tls.labca import LabCa, PkiError
from exchsim.tls.labcerts import ensure_lab_certificates
from exchsim.tls.pki import CertificateFiles, ensure_server_certificate, select_certificate
from exchsim.tls.resumption import ClientSessionCache
from exchsim.tls.revocation import CertificateJudge
from exchsim.tls.schannel import LegacyProtocols
from exchsim.tls.validation import ChainVerdict
from exchsim.transport.delivery import DeliveryAgent
from exchsim.transport.frontend import FrontendProxy
from exchsim.transport.hopclient import HopTls
from exchsim.transport.mailbox import MailboxDeliveryReceiver
from exchsim.transport.queue import MessageQueue
from exchsim.transport.queueadmin import QueueAdmin
from exchsim.transport.queuecontrol import ControlServer, control_path
from exchsim.transport.restart import GaveUp, RestartPolicy
from exchsim.transport.smtplog import ConnectorLog

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077
TRIM_INTERVAL = 5.0  # seconds between returns of freed memory to the system
STORE_POLL = 1.0  # seconds between looks at DATA/pki/store.json (certificates enabled live)
DEFAULT_BACKLOG = 5000  # MaxInboundConnection's default (exchange.md §3.1)


@dataclass(frozen=True, slots=True)
class Listener:
    server: str
    host: str
    port: int  # the port actually listened on (offset applied)


class ServerNode:
    """One server's runtime: what its sessions need (the ServerRuntime of smtp/adapter.py)."""

    def __init__(
        self,
        lab: Lab,
        server: Server,
        *,
        clock: Clock,
        data_dir: Path,
        port_offset: int,
        certificates: Mapping[str, CertificateFiles],
        smtp_certificates: Sequence[CertificateFiles] | None = None,
        service: Service | None = None,
    ) -> None:
        self.lab = lab
        self.service = service  # None: every service of the server (services.py)
        logs = log_dir(data_dir, server.name, service) / "ProtocolLog"
        self.server = server
        self.clock = clock
        self.port_offset = port_offset
        self.index = ConnectorIndex.build(lab.connectors_of(server.name))
        self.local_fqdns = frozenset(s.fqdn.lower() for s in lab.servers)
        self.certificate = certificates[server.name]
        # What STARTTLS selects among (exchange.md §4.5): every certificate of the server's
        # store enabled for SMTP, the setup certificate included (tls/certstore.py).
        self.smtp_certificates = tuple(smtp_certificates or (self.certificate,))
        # The certificates of the servers this one takes for Exchange servers of the
        # organization, and of those it trusts directly (policy/edgetrust.py, exchange.md §7.6).
        self.published_certs: Mapping[str, bytes] = {
            lab.server(s).fqdn.lower(): certificates[lab.server(s).name].load_der()
            for s in known_servers(lab, server.name)}
        self.direct_trust_certs: Mapping[str, bytes] = {
            lab.server(s).fqdn.lower(): certificates[lab.server(s).name].load_der()
            for s in direct_trust_peers(lab, server.name)}
        self._acls: dict[str, ConnectorAcl] = {}
        self._starttls: dict[str, tuple[JudgedServerContext | None,
                                        datetime.datetime | None]] = {}
        self._contexts: dict[str, JudgedServerContext] = {}  # by thumbprint
        self._legacy_tls = LegacyProtocols(server.tls10_server_enabled,
                                           server.tls11_server_enabled)
        self._anon_server = JudgedServerContext(self.certificate, self._legacy_tls)
        self.judge = CertificateJudge(
            data_dir / "pki", clock,
            timeout=lab.lab.crl_retrieval_timeout.total_seconds(),
            offline=lab.lab.when_revocation_offline, hosts=(lab.lab.crl_server.address,))
        # Hops resume TLS sessions per next hop, as Schannel's client cache (tls/resumption.py).
        self._anon_client = ClientSessionCache(
            client_context_anonymous_tls(self.certificate), clock.monotonic)
        self.receive_log = ProtocolLog(
            logs / "SmtpReceive",
            "SmtpReceive",
            clock.utc,
            max_file_size=server.receive_protocol_log_max_file_size,
            max_directory_size=server.receive_protocol_log_max_directory_size,
            max_age=server.receive_protocol_log_max_age,
        )
        # The client side of every hop this server makes (logs/sendlog.py, exchange.md §6.1).
        cert = self.certificate
        self.send_log = SendProtocolLog(
            ProtocolLog(logs / "SmtpSend", "SmtpSend",
                        clock.utc, max_file_size=server.send_protocol_log_max_file_size,
                        max_directory_size=server.send_protocol_log_max_directory_size,
                        max_age=server.send_protocol_log_max_age),
            self.next_session_id,
            LocalCertificate(cert.subject, cert.issuer, cert.serial, cert.thumbprint,
                             cert.not_before, cert.not_after, cert.dns_names, cert.key_bits))
        self.tracking = (MessageTracking.open(
            server, data_dir / "logs" / server.name / "MessageTracking", clock.utc,
            max_file_size=server.message_tracking_log_max_file_size,
            max_directory_size=server.message_tracking_log_max_directory_size,
            max_age=server.message_tracking_log_max_age,
            subjects=server.message_tracking_log_subject_logging_enabled,
        ) if server.message_tracking_log_enabled else MessageTracking.disabled(server))
        self.handlers: dict[Role, MessageHandler] = {}
        self.frontend: FrontendProxy | None = None
        self.sessions: set[ExchangeSession] = set()
        self._admitted: Counter[str] = Counter()  # admitted sessions per connector
        self._admitted_from: Counter[tuple[str, str]] = Counter()  # ... per connector and source
        self._message_rates: dict[str, MessageRateWindow] = {}  # MessageRateLimit, per connector
        self._session_counter = 0
        self._started = clock.utc()
        self._logins = logon_table(lab.organization)
        self._ntlm_identity = identity_of(server, lab.organization)
        self.proxy = ProxyGate(server, lab.lab, clock)  # PROXY protocol ports, gateway warning

    # --- ServerRuntime ---------------------------------------------------------------------

    def acl(self, connector: ReceiveConnector) -> ConnectorAcl:
        acl = self._acls.get(connector.identity)
        if acl is None:
            acl = connector_acl(
                connector, self.lab.ad_permissions, self.lab.organization.netbios
            )
            self._acls[connector.identity] = acl
        return acl

    def set_smtp_certificates(self, certificates: Sequence[CertificateFiles]) -> None:
        """The server's SMTP certificates changed (``exchsim pki enable`` while the lab runs):
        every connector chooses again at its next EHLO."""
        self.smtp_certificates = tuple(certificates) or (self.certificate,)
        self._starttls.clear()

    def starttls_certificate(self, connector: ReceiveConnector,
                             now: datetime.datetime) -> CertificateFiles | None:
        """The certificate STARTTLS presents on ``connector`` at ``now`` (None: no STARTTLS)."""
        return select_certificate(self.smtp_certificates, connector.fqdn or self.server.fqdn,
                                  connector.tls_certificate_name, now=now)

    def starttls_context(self, connector: ReceiveConnector) -> JudgedServerContext | None:
        now = self.clock.utc()
        cached = self._starttls.get(connector.identity)
        if cached is not None and (cached[1] is None or now < cached[1]):
            return cached[0]
        cert = self.starttls_certificate(connector, now)
        context = None
        if cert is not None:
            context = self._contexts.get(cert.thumbprint)
            if context is None:
                context = server_context_starttls(cert, self._legacy_tls)
                self._contexts[cert.thumbprint] = context
        # The choice holds until a candidate expires or becomes valid.
        changes = [t for c in self.smtp_certificates for t in (c.not_before, c.not_after)
                   if t > now]
        self._starttls[connector.identity] = (context, min(changes, default=None))
        return context

    def send_certificate(self, connector: SendConnector) -> CertificateFiles | None:
        """The client certificate of a send connector's STARTTLS (transport/smtpsend.py): the
        one its TlsCertificateName names (None if there is none), else an SMTP certificate for
        its FQDN (the server's), else the server's own."""
        chosen = select_certificate(self.smtp_certificates, connector.fqdn or self.server.fqdn,
                                    connector.tls_certificate_name, now=self.clock.utc())
        if chosen is None and not connector.tls_certificate_name:
            return self.certificate
        return chosen

    def connector_log(self, connector: SendConnector, where: str) -> ConnectorLog | None:
        """A send connector session's protocol log (transport/smtpsend.py): under the
        connector's name, when its ProtocolLoggingLevel is Verbose. ``where`` ends with the
        ``[address:port]`` connected to."""
        address, _, port = where.rpartition("[")[2].rstrip("]").rpartition(":")
        session = self.send_log.session(connector.name, address.strip("[]"), int(port or 0),
                                        connector.protocol_logging_level)
        return ConnectorLog(session) if session is not None else None

    def anonymous_tls_context(self) -> JudgedServerContext | None:
        return self._anon_server

    def has_starttls_certificate(self, connector: ReceiveConnector) -> bool:
        return self.starttls_context(connector) is not None

    def has_internal_certificate(self) -> bool:
        return self._anon_server is not None

    async def judge_certificate(self, chain: Sequence[bytes]) -> ChainVerdict:
        return await self.judge.judge(chain)

    def client_tls_context(self) -> HopTls | None:
        return self._anon_client

    def session_log(self, connector: ReceiveConnector, session_id: str, local: str,
                    remote: str) -> ProtocolLogSession | None:
        if connector.protocol_logging_level is ProtocolLoggingLevel.NONE:
            return None
        return self.receive_log.session(connector.identity, session_id, local, remote)

    def next_session_id(self) -> str:
        self._session_counter += 1
        return new_session_id(self._session_counter, self._started)

    def find_mailbox(self, login: str) -> Mailbox | None:
        return self._logins.get(login.strip().lower())

    def ntlm_acceptor(self) -> Any:
        return WindowsNtlmAcceptor(self._ntlm_identity,
                                   self.lab.organization.lm_compatibility_level, self.clock.utc())

    def message_handler(self, role: Role) -> MessageHandler:
        return self.handlers[role]

    def configured_port(self, listening_port: int) -> int:
        return listening_port - self.port_offset

    def connection_counts(self, connector: ReceiveConnector, source: str) -> tuple[int, int]:
        """Sessions already admitted on this connector: in all, and from this address."""
        return (self._admitted[connector.identity],
                self._admitted_from[(connector.identity, source)])

    def admit(self, connector: ReceiveConnector, source: str) -> None:
        """Count a session against its connector's limits until it is released."""
        self._admitted[connector.identity] += 1
        self._admitted_from[(connector.identity, source)] += 1

    def release(self, connector: ReceiveConnector, source: str) -> None:
        self._admitted[connector.identity] -= 1
        key = (connector.identity, source)
        self._admitted_from[key] -= 1
        if not self._admitted_from[key]:
            del self._admitted_from[key]

    def message_rates(self, connector: ReceiveConnector) -> MessageRateWindow:
        window = self._message_rates.get(connector.identity)
        if window is None:
            window = self._message_rates[connector.identity] = MessageRateWindow()
        return window

    def track(self, session: ExchangeSession, opened: bool) -> None:
        if opened:
            self.sessions.add(session)
            return
        self.sessions.discard(session)
        if self.frontend is not None:
            self.frontend.session_closed(session.core.session_id)

    # --- listeners -------------------------------------------------------------------------

    def listen_backlog(self, port: int) -> int:
        """The listen queue of a port (offset applied): room for every connection its
        connectors admit (MaxInboundConnection, 5000 by default; the largest, or
        DEFAULT_BACKLOG when one is unlimited). The kernel caps it (net.core.somaxconn)."""
        limits = [c.max_inbound_connection for c in self.index.connectors
                  if any(b.port + self.port_offset == port for b in c.bindings)]
        if not limits or None in limits:
            return DEFAULT_BACKLOG
        return max(limit for limit in limits if limit is not None)

    def endpoints(self) -> list[tuple[str, int]]:
        """Where this server listens: each binding on the server's own address."""
        return listen_endpoints(self.lab, self.server, self.service, self.port_offset)


def _session_factory(node: ServerNode) -> Callable[[], ExchangeSession]:
    return lambda: ExchangeSession(node)


async def _partner_failed(daemon: LabDaemon) -> None:
    await daemon.failed.wait()  # the lab stops with the partner's failure
    raise RuntimeError(f"partner {daemon.lab.organization.name}: {daemon.failure}")


class LabDaemon:
    def __init__(
        self,
        lab: Lab,
        data_dir: Path,
        *,
        port_offset: int = 0,
        clock: Clock = SYSTEM_CLOCK,
        only: str | None = None,
        run_sink: bool = True,
        partner: bool = False,
        service: Service | None = None,
        hosts: Hosts | None = None,
    ) -> None:
        self.lab = lab
        self.hosts = hosts  # --hosts: applied again when the config is reloaded (reload.py)
        self.data_dir = data_dir
        self.port_offset = port_offset
        self.clock = clock
        self.only = only
        self.service = service  # serve --service: one service of the server (services.py)
        self.run_sink = run_sink
        self.partner = partner  # the servers of a Lab.Partners config, run by the lab's daemon
        self.partners: list[LabDaemon] = []
        self.nodes: dict[str, ServerNode] = {}
        self.queues: dict[str, MessageQueue] = {}
        self.agents: dict[str, DeliveryAgent] = {}
        self.listeners: list[Listener] = []
        self.sink: SinkHandler | None = None
        self.lab_ca: LabCa | None = None  # with run_sink: the lab CA, its CRLs served
        self.crl_server: CrlServer | None = None
        self.pieces = LabPieces()  # with run_sink: the sink and the CRL server
        self._servers: list[asyncio.Server] = []
        self._by_endpoint: dict[tuple[str, int], tuple[asyncio.Server, Callable[[], Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.restart_policy = RestartPolicy()  # for the delivery agents (transport/restart.py)
        self.failure: str | None = None  # why a task the daemon needs has stopped
        self.failed = asyncio.Event()
        self.control: ControlServer | None = None  # exchsim queue (transport/queuecontrol.py)
        self.reloader = ConfigReloader(self)  # the config file's routing changes (reload.py)

    def servers_to_run(self) -> list[Server]:
        if self.only is None:
            return list(self.lab.servers)
        return [self.lab.server(self.only)]

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        # Queue files hold whole messages, Maildirs are mailboxes, logs name users: everything
        # the lab writes is its own (files 0600, directories 0700), whoever runs it.
        os.umask(PRIVATE_UMASK)
        allocator.keep_large_blocks_returnable()
        loop = asyncio.get_running_loop()
        pki = self.data_dir / "pki"
        now = self.clock.utc()
        certificates = {
            s.name: await asyncio.to_thread(ensure_server_certificate, pki, s.name, s.fqdn, now)
            for s in self.lab.servers
        }
        if not self.partner:  # NTLM_USER_FILE is the process's: the lab's own users
            write_ntlm_users(self.lab, ntlm_users_path(self.data_dir, self.only, self.service))
        await asyncio.to_thread(ensure_lab_certificates, pki, self.lab, self.servers_to_run(),
                                certificates, now, self.port_offset)
        store_seen = await asyncio.to_thread(file_version, store_path(pki))
        for server in self.servers_to_run():
            node = ServerNode(
                self.lab, server, clock=self.clock, data_dir=self.data_dir,
                port_offset=self.port_offset, certificates=certificates,
                smtp_certificates=await asyncio.to_thread(
                    smtp_certificates, pki, server.name, certificates[server.name]),
                service=self.service,
            )
            await start_services(self, node, server)
            self.nodes[server.name] = node
            for host, port in node.endpoints():
                factory = _session_factory(node)
                srv = await loop.create_server(factory, host, port, reuse_address=True,
                                               backlog=node.listen_backlog(port))
                self._servers.append(srv)
                self._by_endpoint[(host, port)] = (srv, factory)
                self.listeners.append(Listener(server.name, host, port))
        # A partner's daemon answers exchsim queue for its servers as `serve --server` would.
        only = self.lab.servers[0].name if self.partner else self.only
        if self.agents:  # the queue's owner: the Transport service (services.py)
            self.control = ControlServer(control_path(self.data_dir, only), {
                name: QueueAdmin(self.lab, self.lab.server(name), self.queues[name], agent)
                for name, agent in self.agents.items()})
            await self.control.start()
        self.spawn(self.reloader.watch(), "config reload")
        if not self.partner:
            self.spawn(self._trim_memory(), "memory trim")
        self.spawn(self._watch_certificate_store(pki, certificates, store_seen),
                    "certificate store")
        if self.run_sink:  # the lab's own pieces (labpieces.py)
            await start_sink(self.pieces, self.lab, self.data_dir, self.port_offset)
            await start_crl_server(self.pieces, self.lab, pki, self.port_offset, now)
            self.sink, self.lab_ca = self.pieces.sink, self.pieces.lab_ca
            self.crl_server = self.pieces.crl_server
            self.listeners.extend(Listener(*entry) for entry in self.pieces.listeners)
            for partner in self.lab.partners:  # README "The partner organization"
                daemon = LabDaemon(partner, self.data_dir, port_offset=self.port_offset,
                                   clock=self.clock, run_sink=False, partner=True,
                                   hosts=self.hosts)
                self.partners.append(daemon)
                await daemon.start()
                self.listeners.extend(daemon.listeners)
                self.spawn(_partner_failed(daemon), f"partner {partner.organization.name}")

    async def pause_listener(self, host: str, port: int) -> None:
        """Close one listener (the port as configured, without offset): a hub going down."""
        srv, _ = self._by_endpoint[(host, port + self.port_offset)]
        srv.close()
        await srv.wait_closed()

    async def resume_listener(self, host: str, port: int) -> None:
        key = (host, port + self.port_offset)
        old, factory = self._by_endpoint[key]
        node = next(n for n in self.nodes.values() if (host, key[1]) in n.endpoints())
        srv = await asyncio.get_running_loop().create_server(
            factory, key[0], key[1], reuse_address=True, backlog=node.listen_backlog(key[1]))
        self._servers[self._servers.index(old)] = srv
        self._by_endpoint[key] = (srv, factory)

    async def _watch_certificate_store(self, pki: Path,
                                       setup: Mapping[str, CertificateFiles],
                                       seen: tuple[int, int, int] | None) -> None:
        """Certificates enabled while the lab runs: when ``DATA/pki/store.json`` changes, each
        server's SMTP certificates are read again (tls/certstore.py)."""
        path = store_path(pki)
        while True:
            await asyncio.sleep(STORE_POLL)
            version = await asyncio.to_thread(file_version, path)
            if version == seen:
                continue
            seen = version
            for name, node in self.nodes.items():
                try:
                    found = await asyncio.to_thread(smtp_certificates, pki, name, setup[name])
                except (PkiError, OSError) as exc:
                    log.warning("%s: %s; STARTTLS on %s keeps its certificates", path, exc, name)
                    continue
                node.set_smtp_certificates(found)

    async def _trim_memory(self) -> None:
        """After a burst of large messages, give the freed memory back (allocator.py)."""
        while True:
            await asyncio.sleep(TRIM_INTERVAL)
            await asyncio.to_thread(allocator.trim)

    def spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, GaveUp):
                log.error("task %s failed", task.get_name(), exc_info=exc)
            self.failure = self.failure or str(exc) or f"task {task.get_name()} failed"
            self.failed.set()  # the CLI stops the process with a non-zero exit status

    async def stop(self) -> None:
        for partner in self.partners:
            await partner.stop()
        self.partners.clear()
        if self.control is not None:
            await self.control.stop()
            self.control = None
        await self.pieces.stop()
        self.crl_server = None
        for srv in self._servers:
            srv.close()
        for node in self.nodes.values():
            for session in list(node.sessions):
                session.close_transport()
        for srv in self._servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(srv.wait_closed(), 5.0)
        self._servers.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for queue in self.queues.values():
            await queue.close()
        self.queues.clear()
        for node in self.nodes.values():
            delivery = node.handlers.get(Role.MAILBOX_DELIVERY)
            if isinstance(delivery, MailboxDeliveryReceiver):
                await delivery.close()
            node.receive_log.close()
            node.send_log.close()
            node.tracking.close()
            await node.judge.close()
        self.sink = None
