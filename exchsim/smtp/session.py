"""One SMTP connection: aiosmtpd as the I/O edge, Exchange's behaviour from the policy core.

aiosmtpd gives the StreamReaderProtocol, the TLS upgrade (with the RFC 3207 buffer discard
that fixed CVE-2024-34083) and connection bookkeeping. Everything Exchange-specific is here:
the command loop (so every reply, limit and error counter is Exchange's), connector selection,
BDAT, X-ANONYMOUSTLS, X-EXPS, XPROXYFROM / XPROXY / XSESSIONPARAMS, the timers and tarpitting.
What happens to an accepted message is not decided here: the server's ``MessageHandler`` for
the connector's TransportRole (Front End proxy, hub queue, mailbox delivery) does that.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import ipaddress
import logging
import ssl
from asyncio import sslproto
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiosmtpd.smtp import SMTP as AioSMTP
from aiosmtpd.smtp import TLSSetupException

from exchsim.clock import Clock
from exchsim.config.model import (
    AuthMechanism,
    Lab,
    Mailbox,
    ReceiveConnector,
    Server,
    TransportRole,
)
from exchsim.logs.protocol import ProtocolLogSession
from exchsim.policy import ehlo, replies, rules
from exchsim.policy.connectors import ConnectorIndex, Selection
from exchsim.policy.headers import Field, received_field, tls_names
from exchsim.policy.permissions import (
    ANONYMOUS,
    EXTERNALLY_SECURED,
    ConnectorAcl,
    Identity,
    IdentityKind,
    Right,
    Rights,
    mask_to_rights,
    permission_tokens,
    principals,
)
from exchsim.policy.rates import MessageRateWindow, rate_keys
from exchsim.policy.replies import Reply
from exchsim.smtp import wire
from exchsim.smtp.readtimer import ReadTimer
from exchsim.tls.directtrust import make_exchangeauth_blob, verify_exchangeauth

log = logging.getLogger(__name__)

MAX_COMMAND_LINE = 4000  # §1.8 / §9.9: receive side reads command lines up to 4000 bytes
MAX_COMMAND_LINE_LONG = 8000  # with LongAddressesEnabled
# Replies a client waits for before it sends more: never held back behind pipelined input.
_SENT_AT_ONCE = frozenset({220, 334, 354})
READER_LIMIT = 32768  # §1.8: command buffer over 32768 bytes -> 500 5.5.2 Command too long


@dataclass(slots=True)
class TlsInfo:
    protocol: str | None
    cipher: str | None
    anonymous: bool  # X-ANONYMOUSTLS rather than STARTTLS
    peer_der: bytes | None
    tls_unique: bytes | None


@dataclass(slots=True)
class ProxiedClient:
    """The original client a Front End proxied to us (XPROXYFROM / XPROXY)."""

    ip: str
    port: int
    helo: str
    session_id: str


@dataclass(slots=True)
class Transaction:
    mail: rules.MailCommand
    recipients: list[str] = field(default_factory=list)
    bdat: bytearray | None = None
    bdat_failed: Reply | None = None
    started: float = 0.0


@dataclass(frozen=True, slots=True)
class AcceptedMessage:
    """What a MessageHandler gets: the envelope, the bytes, and who sent it."""

    mail_from: str
    mail_params: Mapping[str, str | None]
    recipients: tuple[str, ...]
    data: bytes  # CRLF line endings, no dot-stuffing
    facts: rules.SessionFacts
    client_ip: str
    client_port: int
    client_helo: str
    session_id: str
    tls: TlsInfo | None
    received_seconds: float


class MessageHandler(Protocol):
    async def __call__(self, session: ExchangeSMTP, message: AcceptedMessage) -> Reply: ...


class ServerRuntime(Protocol):
    """What a session needs from its server (built by the daemon)."""

    lab: Lab
    server: Server
    index: ConnectorIndex
    clock: Clock
    published_certs: Mapping[str, bytes]
    local_fqdns: frozenset[str]

    def acl(self, connector: ReceiveConnector) -> ConnectorAcl: ...
    def starttls_context(self, connector: ReceiveConnector) -> ssl.SSLContext | None: ...
    def anonymous_tls_context(self) -> ssl.SSLContext | None: ...
    def protocol_log(self, connector: ReceiveConnector | None) -> ProtocolLogBook | None: ...
    def next_session_id(self) -> str: ...
    def find_mailbox(self, login: str) -> Mailbox | None: ...
    def ntlm_acceptor(self) -> Any: ...
    def message_handler(self, role: TransportRole) -> MessageHandler: ...
    def configured_port(self, listening_port: int) -> int: ...
    def track(self, session: ExchangeSMTP, opened: bool) -> None: ...
    def connection_counts(self, connector: ReceiveConnector, source: str) -> tuple[int, int]: ...
    def admit(self, session: ExchangeSMTP) -> None: ...
    def message_rates(self, connector: ReceiveConnector) -> MessageRateWindow: ...


class ProtocolLogBook(Protocol):
    def session(
        self, connector_id: str, session_id: str, local_endpoint: str, remote_endpoint: str
    ) -> ProtocolLogSession: ...


class _NoHooks:
    """aiosmtpd wants a handler object; every hook is ours, so it is empty."""


Verb = Callable[[str | None], Awaitable[None]]


class ExchangeSMTP(AioSMTP):
    line_length_limit = READER_LIMIT

    def __init__(self, runtime: ServerRuntime) -> None:
        self.runtime = runtime
        self.server_config = runtime.server
        super().__init__(
            _NoHooks(),
            hostname=runtime.server.fqdn,
            ident="",
            data_size_limit=None,
            timeout=24 * 3600,
            auth_require_tls=False,
        )
        self.connector: ReceiveConnector | None = None
        self.selection: Selection | None = None
        self.local_ip = ""
        self.local_port = 0
        self.peer_ip = ""
        self.peer_port = 0
        self.session_id = ""
        self.helo_name: str | None = None
        self.extended = False
        self.tls: TlsInfo | None = None
        self.identity: Identity = ANONYMOUS
        self.rights: Rights = frozenset()
        self.mailbox: Mailbox | None = None
        self.proxied: ProxiedClient | None = None
        self.session_params = False
        self.txn: Transaction | None = None
        self.protocol_errors = 0
        self.logon_failures = 0
        self.messages = 0
        self.plog: ProtocolLogSession | None = None
        self.started = 0.0
        self.deadline = 0.0
        self.closing = False
        self.admitted = False  # counted against the connector's connection limits
        self.attachments: dict[str, object] = {}  # per-session state of handlers (hop client)
        self.verbs: dict[str, Verb] = {
            "HELO": self.verb_helo,
            "EHLO": self.verb_ehlo,
            "MAIL": self.verb_mail,
            "RCPT": self.verb_rcpt,
            "DATA": self.verb_data,
            "BDAT": self.verb_bdat,
            "RSET": self.verb_rset,
            "NOOP": self.verb_noop,
            "QUIT": self.verb_quit,
            "HELP": self.verb_help,
            "VRFY": self.verb_vrfy,
            "EXPN": self.verb_expn,
            "STARTTLS": self.verb_starttls,
            "X-ANONYMOUSTLS": self.verb_anonymous_tls,
            "AUTH": self.verb_auth,
            "X-EXPS": self.verb_exps,
            "XPROXYFROM": self.verb_xproxyfrom,
            "XPROXY": self.verb_xproxy,
            "XSESSIONPARAMS": self.verb_xsessionparams,
            "XEXCH50": self.verb_xexch50,
        }

    # ------------------------------------------------------------------ connection ------------

    @property
    def version(self) -> str:
        return self.server_config.version

    @property
    def role(self) -> TransportRole:
        assert self.connector is not None
        return self.connector.transport_role

    @property
    def client_ip(self) -> str:
        return self.proxied.ip if self.proxied else self.peer_ip

    @property
    def client_helo(self) -> str:
        if self.proxied:
            return self.proxied.helo
        return self.helo_name or ""

    def facts(self) -> rules.SessionFacts:
        assert self.connector is not None
        return rules.SessionFacts(
            org=self.runtime.lab.organization,
            server=self.server_config,
            connector=self.connector,
            identity=self.identity,
            rights=self.rights,
            tls_active=self.tls is not None,
            mailbox=self.mailbox,
            local_servers=self.runtime.local_fqdns,
        )

    def _set_identity(
        self, identity: Identity, mailbox: Mailbox | None = None, *, log: bool = True
    ) -> None:
        """Take on an identity and its rights on this connector.

        The protocol log's ``Set Session Permissions`` line is written after authentication;
        at connect only Exchange 2013 wrote it (reference §9.7: absent in 2016+ samples).
        """
        assert self.connector is not None
        netbios = self.runtime.lab.organization.netbios
        self.identity = identity
        self.mailbox = mailbox
        self.rights = self.runtime.acl(self.connector).rights_for(
            principals(identity, netbios, mailbox)
        )
        if log:
            self.info(permission_tokens(self.rights), "Set Session Permissions")

    def _base_identity(self) -> Identity:
        assert self.connector is not None
        if AuthMechanism.EXTERNAL_AUTHORITATIVE in self.connector.auth_mechanism:
            return EXTERNALLY_SECURED
        return ANONYMOUS

    async def _handle_client(self) -> None:
        self.runtime.track(self, True)
        self._read_timer = ReadTimer(self.loop)
        self._out: list[bytes] = []
        try:
            await self._serve()
        except (ConnectionError, asyncio.IncompleteReadError, TLSSetupException, ssl.SSLError):
            self._log_disconnect("Remote(ConnectionReset)")
        except asyncio.CancelledError:
            self._log_disconnect("Remote")
            raise
        except Exception:
            log.exception("session %s failed", self.session_id)
            self._log_disconnect("Local")
            if self.transport is not None and not self.transport.is_closing():
                self._writer.write(b"451 4.3.0 Local error in processing\r\n")
                self.transport.close()
        finally:
            self._read_timer.close()
            self.runtime.track(self, False)

    async def _serve(self) -> None:
        clock = self.runtime.clock
        self.started = clock.monotonic()
        assert self.transport is not None
        sock = self.transport.get_extra_info("sockname")
        peer = self.transport.get_extra_info("peername")
        self.local_ip, self.local_port = sock[0], self.runtime.configured_port(sock[1])
        self.peer_ip, self.peer_port = peer[0], peer[1]
        self.session_id = self.runtime.next_session_id()
        self.selection = self.runtime.index.select(
            ipaddress.ip_address(self.local_ip), self.local_port, ipaddress.ip_address(self.peer_ip)
        )
        self.connector = self.selection.connector
        book = self.runtime.protocol_log(self.connector)
        if book is not None:
            self.plog = book.session(
                self.connector.identity if self.connector else "",
                self.session_id,
                _endpoint(self.local_ip, sock[1]),
                _endpoint(self.peer_ip, self.peer_port),
            )
            self.plog.connect()
        if self.connector is None:
            await self.reply(replies.SERVICE_NOT_AVAILABLE)
            return
        active, from_source = self.runtime.connection_counts(self.connector, self.peer_ip)
        over = rules.check_connection_limits(self.connector, active, from_source)
        if over is not None:
            await self.reply(over.reply, tarpit=False)
            return
        self.runtime.admit(self)
        self.deadline = self.started + self.connector.connection_timeout.total_seconds()
        self._set_identity(self._base_identity(), log=self.version == "15.0")
        await self.reply(self._banner())
        while not self.closing and self.transport is not None:
            line = await self._read_command()
            if line is None:
                return
            await self._dispatch(line)

    def _banner(self) -> Reply:
        assert self.connector is not None
        if self.connector.banner:
            return replies.custom_banner(self.connector.banner)
        fqdn = self.connector.fqdn or self.server_config.fqdn
        modern = self.role is TransportRole.MAILBOX_DELIVERY and self.version == "15.2"
        return replies.banner(fqdn, self.runtime.clock.local(), uppercase=modern)

    @property
    def fqdn(self) -> str:
        assert self.connector is not None
        return self.connector.fqdn or self.server_config.fqdn

    async def _read_command(self) -> bytes | None:
        """One command line, or None when the session is over (timeouts answered here)."""
        assert self.connector is not None
        idle = self.connector.connection_inactivity_timeout.total_seconds()
        remaining = self.deadline - self.runtime.clock.monotonic()
        wait = min(idle, remaining)
        if self._out and b"\n" not in self._read_buffer():
            await self._flush_replies()
        try:
            with self._read_timer.limit(self.loop.time() + max(wait, 0.0)):
                line: bytes = await self._reader.readuntil(b"\n")
        except TimeoutError:
            timed_out = (
                replies.TIMEOUT_INACTIVITY if idle < remaining else replies.TIMEOUT_CONNECTION
            )
            await self.reply(timed_out)
            return None
        except asyncio.LimitOverrunError:
            await self.reply(replies.COMMAND_TOO_LONG)
            return None
        except asyncio.IncompleteReadError:
            self._log_disconnect("Remote")
            self.close_transport()
            return None
        return line

    async def _dispatch(self, raw: bytes) -> None:
        assert self.connector is not None
        line = raw.rstrip(b"\r\n")
        limit = MAX_COMMAND_LINE_LONG if self.connector.long_addresses_enabled else MAX_COMMAND_LINE
        if len(line) > limit:
            self.received(line[:200].decode("ascii", "replace"))
            await self.reply(replies.COMMAND_TOO_LONG)
            return
        text = line.decode("utf-8", "surrogateescape")
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        if verb in ("AUTH", "X-EXPS") and arg:
            self.received(f"{verb} {arg.split(' ', 1)[0]}")
        else:
            self.received(text)
        handler = self.verbs.get(verb)
        if handler is None or not verb.isascii():
            await self.protocol_error(replies.unrecognized(verb, self.version))
            return
        await handler(arg.strip() or None)

    # ------------------------------------------------------------------ replies ----------------

    async def reply(self, reply: Reply, *, tarpit: bool = True) -> None:
        """Send a reply; error replies to untrusted sessions wait TarpitInterval first (§1.9)."""
        if self.connector is not None and reply.is_error and tarpit:
            await self._tarpit(self.connector.tarpit_interval)
        enhanced = self.connector.enhanced_status_codes_enabled if self.connector else True
        text = reply.render(enhanced)
        if self.plog is not None:
            self.plog.sent(text)
        if self.transport is None or self.transport.is_closing():
            return
        self._out.append(text.encode("utf-8", "surrogateescape") + b"\r\n")
        # Pipelining (RFC 2920): while the client's next command is already here, hold the
        # reply and send the group's replies in one write when the next read would wait.
        # Replies the client waits on before it sends more (220 before TLS, 334, 354) and a
        # closing reply go out at once.
        if reply.close or reply.code in _SENT_AT_ONCE or b"\n" not in self._read_buffer():
            await self._flush_replies()
        if reply.close:
            self.closing = True
            self._log_disconnect("Local")
            self.close_transport()

    def _read_buffer(self) -> bytes | bytearray:
        # What the client sent that no read has taken yet (StreamReader keeps it here).
        buffered: bytes | bytearray = getattr(self._reader, "_buffer", b"")
        return buffered

    async def _flush_replies(self) -> None:
        if not self._out:
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        if self.transport is None or self.transport.is_closing():
            return
        self._writer.write(data)
        await self._writer.drain()

    async def _tarpit(self, interval: datetime.timedelta) -> None:
        seconds = interval.total_seconds()
        if seconds <= 0 or self.identity.kind in (
            IdentityKind.EXCHANGE_SERVER,
            IdentityKind.PARTNER,
        ):
            return
        self.info("", f"Tarpit for '{_dotnet_span(interval)}'")
        await asyncio.sleep(seconds)

    async def protocol_error(self, reply: Reply) -> None:
        """Unknown commands, bad syntax and bad sequence count toward MaxProtocolErrors."""
        assert self.connector is not None
        self.protocol_errors += 1
        limit = self.connector.max_protocol_errors
        if limit is not None and self.protocol_errors > limit:
            await self.reply(replies.TOO_MANY_ERRORS)
            return
        await self.reply(self._sequence_reply(reply))

    def _sequence_reply(self, reply: Reply) -> Reply:
        # 2019's modern delivery listener answers every sequence error the same way (§1.5).
        if (
            reply.code == 503
            and self.role is TransportRole.MAILBOX_DELIVERY
            and self.version == "15.2"
        ):
            return replies.BAD_SEQUENCE
        return reply

    def received(self, text: str) -> None:
        if self.plog is not None:
            self.plog.received(text)

    def info(self, data: str, context: str = "") -> None:
        if self.plog is not None:
            self.plog.info(data, context)

    def _log_disconnect(self, context: str) -> None:
        if self.plog is not None:
            self.plog.disconnect(context)
            self.plog = None

    def close_transport(self) -> None:
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # ------------------------------------------------------------------ HELO / EHLO -----------

    async def verb_helo(self, arg: str | None) -> None:
        await self._hello(arg, extended=False)

    async def verb_ehlo(self, arg: str | None) -> None:
        await self._hello(arg, extended=True)

    def _untrusted_server_certificate(self) -> bool:
        """X-ANONYMOUSTLS with a client certificate that is no published server certificate."""
        tls = self.tls
        return (tls is not None and tls.anonymous and tls.peer_der is not None
                and tls.peer_der not in self.runtime.published_certs.values())

    async def _hello(self, arg: str | None, *, extended: bool) -> None:
        assert self.connector is not None
        if self._untrusted_server_certificate():
            # §4.1 item 3: a certificate presented in X-ANONYMOUSTLS that is no Exchange
            # server's: the next EHLO gets 454 4.7.0 and the connection is dropped.
            await self.reply(replies.AUTH_TEMPORARY_FAILURE.closing())
            return
        if arg is None and self.connector.require_ehlo_domain:
            await self.protocol_error(
                replies.EHLO_REQUIRES_DOMAIN if extended else replies.HELO_REQUIRES_DOMAIN
            )
            return
        if arg is not None and not _valid_helo(arg):
            await self.protocol_error(replies.INVALID_DOMAIN)
            return
        self.helo_name = arg or ""
        self.extended = extended
        self.txn = None
        if not extended:
            await self.reply(replies.helo(self.fqdn, self.peer_ip))
            return
        await self.reply(replies.ehlo(self.fqdn, self.peer_ip, ehlo.keywords(self.ehlo_context())))

    def ehlo_context(self) -> ehlo.EhloContext:
        assert self.connector is not None
        return ehlo.EhloContext(
            connector=self.connector,
            version=self.version,
            transport=self.runtime.lab.organization.transport_config,
            tls_active=self.tls is not None,
            anonymous_tls=self.tls is not None and self.tls.anonymous,
            has_certificate=self.runtime.starttls_context(self.connector) is not None,
            has_internal_certificate=self.runtime.anonymous_tls_context() is not None,
        )

    def advertised(self, keyword: str) -> bool:
        return any(k.split(" ")[0] == keyword for k in ehlo.keywords(self.ehlo_context()))

    # ------------------------------------------------------------------ simple verbs ----------

    async def verb_noop(self, arg: str | None) -> None:
        await self.reply(replies.OK)

    async def verb_rset(self, arg: str | None) -> None:
        self.txn = None
        await self.reply(replies.RESETTING)

    async def verb_quit(self, arg: str | None) -> None:
        await self.reply(replies.CLOSING)

    async def verb_help(self, arg: str | None) -> None:
        await self.reply(replies.HELP)

    async def verb_vrfy(self, arg: str | None) -> None:
        await self.reply(replies.CANNOT_VRFY)

    async def verb_expn(self, arg: str | None) -> None:
        await self.reply(replies.NOT_IMPLEMENTED)

    # ------------------------------------------------------------------ TLS -------------------

    async def verb_starttls(self, arg: str | None) -> None:
        assert self.connector is not None
        if self.tls is not None:
            await self.protocol_error(replies.ONLY_ONE_STARTTLS)
            return
        context = self.runtime.starttls_context(self.connector)
        if context is None or not self.advertised("STARTTLS") or arg is not None:
            await self.protocol_error(replies.unrecognized("STARTTLS", self.version))
            return
        await self._start_tls(context, anonymous=False)

    async def verb_anonymous_tls(self, arg: str | None) -> None:
        if self.tls is not None:
            await self.protocol_error(replies.ONLY_ONE_STARTTLS)
            return
        context = self.runtime.anonymous_tls_context()
        if context is None or not self.advertised("X-ANONYMOUSTLS") or arg is not None:
            await self.protocol_error(replies.unrecognized("X-ANONYMOUSTLS", self.version))
            return
        await self._start_tls(context, anonymous=True)

    async def _start_tls(self, context: ssl.SSLContext, *, anonymous: bool) -> None:
        """aiosmtpd's STARTTLS upgrade with Exchange's reply; connection_made() then resets."""
        await self.reply(replies.TLS_READY)
        waiter = self.loop.create_future()
        self._tls_protocol = sslproto.SSLProtocol(
            self.loop, self, context, waiter, server_side=True
        )
        self._original_transport = self.transport
        assert self._original_transport is not None
        self._original_transport.set_protocol(self._tls_protocol)
        self.transport = self._tls_protocol._app_transport
        self._tls_protocol.connection_made(self._original_transport)
        try:
            await waiter
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.info("", f"TLS negotiation failed with error {type(error).__name__}")
            self.closing = True
            self._log_disconnect("Local")
            self.close_transport()
            return
        assert self.transport is not None
        ssl_object: Any = self.transport.get_extra_info("ssl_object")
        cipher = ssl_object.cipher() if ssl_object else None
        peer_der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        unique = None
        if ssl_object is not None:
            try:
                unique = ssl_object.get_channel_binding("tls-unique")
            except ValueError:
                unique = None
        self.tls = TlsInfo(
            protocol=ssl_object.version() if ssl_object else None,
            cipher=cipher[0] if cipher else None,
            anonymous=anonymous,
            peer_der=peer_der,
            tls_unique=unique,
        )
        self.info(
            "",
            f"TLS protocol {self.tls.protocol} negotiation succeeded using cipher "
            f"{self.tls.cipher}",
        )
        if self._untrusted_server_certificate():
            self.info("", "Inbound Exchange authentication failed: the client certificate "
                          "presented in X-ANONYMOUSTLS is not a published server certificate")
        # RFC 3207 §4.2: forget what the client said before TLS.
        self.helo_name = None
        self.extended = False
        self.txn = None
        self._set_identity(self._base_identity(), log=self.version == "15.0")

    # ------------------------------------------------------------------ AUTH ------------------

    async def verb_auth(self, arg: str | None) -> None:
        assert self.connector is not None
        if self.helo_name is None or not self.extended:
            await self.protocol_error(replies.SEND_HELLO_FIRST)
            return
        if self.identity.kind in (IdentityKind.USER, IdentityKind.EXCHANGE_SERVER):
            await self.protocol_error(replies.AUTH_ALREADY)
            return
        if self.txn is not None:
            await self.protocol_error(replies.BAD_SEQUENCE)
            return
        mechanism, _, initial = (arg or "").partition(" ")
        mechanism = mechanism.upper()
        offered = ehlo.auth_mechanisms(self.ehlo_context())
        if mechanism not in offered or mechanism == "GSSAPI":
            await self._tarpit(self.connector.tarpit_interval)
            await self.reply(replies.AUTH_UNRECOGNIZED, tarpit=False)
            return
        if mechanism == "LOGIN":
            await self._auth_login(initial.strip() or None)
        else:
            await self._auth_ntlm(initial.strip() or None)

    async def _read_auth_line(self) -> str | None:
        line = await self._read_command()
        if line is None:
            return None
        if self.plog is not None:
            self.plog.received_redacted()
        return line.rstrip(b"\r\n").decode("ascii", "replace").strip()

    async def _auth_login(self, initial: str | None) -> None:
        if initial is None:
            await self.reply(replies.AUTH_LOGIN_USERNAME)
            initial = await self._read_auth_line()
            if initial is None:
                return
        if initial == "*":
            await self.reply(replies.AUTH_CANCELLED)
            return
        await self.reply(replies.AUTH_LOGIN_PASSWORD)
        password_line = await self._read_auth_line()
        if password_line is None:
            return
        if password_line == "*":
            await self.reply(replies.AUTH_CANCELLED)
            return
        try:
            user = base64.b64decode(initial, validate=True).decode("utf-8")
            password = base64.b64decode(password_line, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            await self.protocol_error(replies.INVALID_ARGUMENTS)
            return
        mailbox = self.runtime.find_mailbox(user)
        if mailbox is None or mailbox.password is None or mailbox.password != password:
            self.info("", "Inbound AUTH LOGIN failed because of LogonDenied")
            self.info("", f"User Name: {user}")
            await self._logon_failed()
            return
        mechanism = "06" if self.tls is not None else "07"
        await self._authenticated(Identity(IdentityKind.USER, mailbox.primary_smtp_address,
                                           mechanism), mailbox)

    async def _auth_ntlm(self, initial: str | None) -> None:
        acceptor = self.runtime.ntlm_acceptor()
        token = initial
        if token is None:
            await self.reply(replies.AUTH_NTLM_SUPPORTED)
            token = await self._read_auth_line()
        while True:
            if token is None:
                return
            if token == "*":
                await self.reply(replies.AUTH_CANCELLED)
                return
            try:
                out = acceptor.step(base64.b64decode(token, validate=True))
            except binascii.Error:
                await self.protocol_error(replies.INVALID_ARGUMENTS)
                return
            except Exception:
                self.info("", "Inbound AUTH NTLM failed because of LogonDenied")
                await self._logon_failed()
                return
            if acceptor.complete:
                break
            await self.reply(Reply(334, None, base64.b64encode(out or b"").decode()))
            token = await self._read_auth_line()
        mailbox = self.runtime.find_mailbox(str(acceptor.client_principal))
        if mailbox is None:
            await self._logon_failed()
            return
        await self._authenticated(
            Identity(IdentityKind.USER, mailbox.primary_smtp_address, "0a"), mailbox
        )

    async def _authenticated(self, identity: Identity, mailbox: Mailbox) -> None:
        self._set_identity(identity, mailbox)
        self.info(mailbox.user_principal_name or mailbox.primary_smtp_address, "authenticated")
        await self.reply(replies.AUTH_OK)

    async def _logon_failed(self) -> None:
        assert self.connector is not None
        self.logon_failures += 1
        await self._tarpit(self.connector.auth_tarpit_interval)
        if self.logon_failures > self.connector.max_logon_failures:
            await self.reply(replies.TOO_MANY_ERRORS, tarpit=False)
            return
        await self.reply(replies.AUTH_FAILED, tarpit=False)

    async def verb_exps(self, arg: str | None) -> None:
        """X-EXPS: Exchange server authentication (lab Direct Trust, ARCHITECTURE.md)."""
        assert self.connector is not None
        if self.helo_name is None or not self.extended:
            await self.protocol_error(replies.SEND_HELLO_FIRST)
            return
        parts = (arg or "").split()
        mechanism = parts[0].upper() if parts else ""
        if mechanism not in ehlo.exps_mechanisms(self.ehlo_context()):
            await self.reply(replies.AUTH_UNRECOGNIZED)
            return
        if self.identity.kind is IdentityKind.EXCHANGE_SERVER:
            await self.protocol_error(replies.AUTH_ALREADY)
            return
        blob = parts[2] if mechanism == "EXCHANGEAUTH" and len(parts) == 3 else ""
        tls = self.tls
        result = verify_exchangeauth(
            blob,
            tls.tls_unique if tls else None,
            tls.peer_der if tls else None,
            self.runtime.published_certs,
        )
        if not result.ok or result.server_fqdn is None:
            self.info("", f"Inbound Exchange authentication failed: {result.reason}")
            await self.reply(replies.AUTH_TEMPORARY_FAILURE)
            return
        self._set_identity(Identity(IdentityKind.EXCHANGE_SERVER, result.server_fqdn, "0c"))
        self.info(result.server_fqdn, "authenticated")
        assert tls is not None and tls.tls_unique is not None
        await self.reply(Reply(235, None, make_exchangeauth_blob(self.fqdn, tls.tls_unique)))

    # ------------------------------------------------------------------ proxy verbs -----------

    async def verb_xproxyfrom(self, arg: str | None) -> None:
        """XPROXYFROM from a Front End (§7.2): the session now speaks for the original client.

        exchsim's parameters: SID, IP, PORT, DOMAIN (xtext), SEQNUM, PERMS (the rights the
        Front End evaluated, see permissions.rights_to_mask), AUTHSRC (the identity kind) and,
        for authenticated clients, AUTHNAME (xtext) and AUTHMECH.
        """
        if not self._may(Right.ACCEPT_XPROXYFROM, "XPROXYFROM"):
            await self.protocol_error(replies.unrecognized("XPROXYFROM", self.version))
            return
        params = wire.parse_keyword_args(arg)
        proxied = _proxied_client(params)
        try:
            rights = mask_to_rights(int(params.get("PERMS", "0")))
            kind = IdentityKind(params.get("AUTHSRC", "Anonymous"))
        except ValueError:
            proxied = None
        if proxied is None:
            await self.protocol_error(replies.INVALID_ARGUMENTS)
            return
        self.proxied = proxied
        name = wire.xtext_decode(params.get("AUTHNAME", ""))
        mailbox = self.runtime.find_mailbox(name) if kind is IdentityKind.USER else None
        self.identity = Identity(kind, name, params.get("AUTHMECH", "00"))
        self.mailbox = mailbox
        self.rights = rights
        self.info(permission_tokens(rights), "Set Session Permissions")
        await self.reply(replies.XPROXYFROM_ACCEPTED)

    async def verb_xproxy(self, arg: str | None) -> None:
        """XPROXY from Client Frontend (§7.3): the user the Front End authenticated."""
        if not self._may(Right.ACCEPT_XPROXYFROM, "XPROXY"):
            await self.protocol_error(replies.unrecognized("XPROXY", self.version))
            return
        params = wire.parse_keyword_args(arg)
        mailbox = self.runtime.find_mailbox(wire.xtext_decode(params.get("UNAME", "")))
        proxied = _proxied_client(params)
        if mailbox is None or proxied is None:
            await self.protocol_error(replies.INVALID_ARGUMENTS)
            return
        self.proxied = proxied
        mech = params.get("AUTHMECH", "06")
        self._set_identity(Identity(IdentityKind.USER, mailbox.primary_smtp_address, mech), mailbox)
        await self.reply(replies.XPROXY_ACCEPTED_AUTHENTICATED)

    async def verb_xsessionparams(self, arg: str | None) -> None:
        if not self._may(Right.ACCEPT_XSESSIONPARAMS, "XSESSIONPARAMS"):
            await self.protocol_error(replies.unrecognized("XSESSIONPARAMS", self.version))
            return
        self.session_params = True
        await self.reply(replies.XSESSIONPARAMS_OK)

    def _may(self, right: Right, keyword: str) -> bool:
        return (
            self.identity.kind is IdentityKind.EXCHANGE_SERVER
            and right in self.rights
            and self.advertised(keyword)
        )

    # ------------------------------------------------------------------ transaction -----------

    async def verb_mail(self, arg: str | None) -> None:
        if self.helo_name is None:
            await self.protocol_error(replies.SEND_HELLO_FIRST)
            return
        if self.txn is not None:
            await self.protocol_error(replies.SENDER_ALREADY_SPECIFIED)
            return
        parsed = rules.parse_mail(arg)
        if isinstance(parsed, Reply):
            await self.protocol_error(parsed)
            return
        decision = rules.check_mail(self.facts(), parsed)
        if decision.accepted:
            assert self.connector is not None
            user = self.identity.name if self.identity.kind is IdentityKind.USER else None
            keys = rate_keys(self.connector, self.client_ip, user)
            if keys:
                window = self.runtime.message_rates(self.connector)
                now = self.runtime.clock.monotonic()
                if window.over(keys, self.connector.message_rate_limit, now):
                    await self.reply(replies.MESSAGE_RATE_EXCEEDED)  # §1.9 step 4; closes
                    return
                window.record(keys, now)
            self.txn = Transaction(parsed, started=self.runtime.clock.monotonic())
            self.messages += 1
            start = self.runtime.clock.utc().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            self.info(f"{self.session_id};{start};{self.messages}", "receiving message")
        await self.reply(decision.reply)

    async def verb_rcpt(self, arg: str | None) -> None:
        if self.helo_name is None:
            await self.protocol_error(replies.SEND_HELLO_FIRST)
            return
        if self.txn is None:
            await self.protocol_error(replies.NEED_MAIL)
            return
        parsed = rules.parse_rcpt(arg, smtputf8="SMTPUTF8" in self.txn.mail.params)
        if isinstance(parsed, Reply):
            await self.protocol_error(parsed)
            return
        decision = rules.check_rcpt(self.facts(), parsed, len(self.txn.recipients))
        if decision.accepted:
            self.txn.recipients.append(parsed.address)
        await self.reply(decision.reply)

    def _data_sequence_error(self) -> Reply | None:
        if self.helo_name is None:
            return replies.SEND_HELLO_FIRST
        if self.txn is None:
            return replies.NEED_MAIL
        if not self.txn.recipients:
            return replies.NEED_RCPT
        return None

    async def verb_data(self, arg: str | None) -> None:
        error = self._data_sequence_error()
        if error is not None:
            await self.protocol_error(error)
            return
        assert self.txn is not None and self.connector is not None
        if self.txn.bdat is not None:
            await self.protocol_error(replies.BAD_SEQUENCE)
            return
        await self.reply(replies.START_MAIL_INPUT)
        limit = None
        if Right.BYPASS_MESSAGE_SIZE_LIMIT not in self.rights:
            limit = self.connector.max_message_size
        reader = wire.DataReader(limit=limit)
        idle = self.connector.connection_inactivity_timeout.total_seconds()
        while True:
            try:
                with self._read_timer.limit(self.loop.time() + idle):
                    line = await self._read_data_line()
            except TimeoutError:
                await self.reply(replies.TIMEOUT_INACTIVITY)
                return
            if line is None:
                return
            if reader.feed(line):
                break
        if reader.overflow:
            self.txn = None
            await self.reply(replies.MESSAGE_TOO_BIG)
            return
        await self._end_of_data(reader.message())

    async def _read_data_line(self) -> bytes | None:
        """A DATA line ending in CRLF; long lines are read in pieces; bare LF is data."""
        parts: list[bytes] = []
        while True:
            try:
                chunk: bytes = await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as exc:
                parts.append(await self._reader.readexactly(exc.consumed))
                continue
            except asyncio.IncompleteReadError:
                self._log_disconnect("Remote")
                self.close_transport()
                return None
            parts.append(chunk)
            return b"".join(parts)

    async def verb_bdat(self, arg: str | None) -> None:
        assert self.connector is not None
        parsed = wire.parse_bdat(arg)
        if parsed is None or not self.connector.chunking_enabled:
            if parsed is not None and not await self._discard(parsed[0]):
                return
            await self.protocol_error(
                replies.INVALID_ARGUMENTS
                if self.connector.chunking_enabled
                else replies.unrecognized("BDAT", self.version)
            )
            return
        size, last = parsed
        error = self._data_sequence_error()
        if error is not None:
            if await self._discard(size):
                await self.protocol_error(error)
            return
        assert self.txn is not None
        if self.txn.bdat is None:
            self.txn.bdat = bytearray()
        try:
            idle = self.connector.connection_inactivity_timeout.total_seconds()
            if self._out and len(self._read_buffer()) < size:
                await self._flush_replies()
            with self._read_timer.limit(self.loop.time() + idle):
                chunk = await self._reader.readexactly(size)
        except TimeoutError:
            await self.reply(replies.TIMEOUT_INACTIVITY)
            return
        if self.txn.bdat_failed is None:
            total = len(self.txn.bdat) + size
            if rules.check_size(self.facts(), total) is not None:
                self.txn.bdat_failed = replies.MESSAGE_TOO_BIG
                self.txn.bdat.clear()
            else:
                self.txn.bdat += chunk
        if not last:
            await self.reply(self.txn.bdat_failed or replies.chunk_received(size))
            return
        if self.txn.bdat_failed is not None:
            failed = self.txn.bdat_failed
            self.txn = None
            await self.reply(failed)
            return
        await self._end_of_data(bytes(self.txn.bdat or b""))

    async def verb_xexch50(self, arg: str | None) -> None:
        """``XEXCH50 <size> <checksum>``: a legacy Exchange server sends the current message's
        MAPI properties as a binary blob between RCPT and DATA (§2.3, §2.5).

        Answered where the connector advertises it: without ms-Exch-SMTP-Accept-Exch50
        ``504 5.7.1 Not authorized``; otherwise ``354 Send binary data``, the blob, and
        ``250 2.0.0 XEXCH50 OK``. exchsim has no MAPI properties to apply: it reads the blob and
        drops it. (Order of the checks, exchsim's choice: advertised, arguments, right, sequence.)
        """
        assert self.connector is not None
        if not self.advertised("XEXCH50"):
            await self.protocol_error(replies.unrecognized("XEXCH50", self.version))
            return
        parts = (arg or "").split()
        if len(parts) != 2 or not all(p.isdigit() and p.isascii() for p in parts):
            await self.protocol_error(replies.INVALID_ARGUMENTS)
            return
        if Right.ACCEPT_EXCH50 not in self.rights:
            await self.reply(replies.NOT_AUTHORIZED)
            return
        error = self._data_sequence_error()
        if error is not None:
            await self.protocol_error(error)
            return
        await self.reply(replies.XEXCH50_SEND_DATA)
        if await self._discard(int(parts[0])):
            await self.reply(replies.XEXCH50_OK)

    async def _discard(self, size: int) -> bool:
        """Read ``size`` bytes and drop them, in pieces (nothing is kept), each within
        ConnectionInactivityTimeout. False when the client went quiet (answered here)."""
        assert self.connector is not None
        if size <= 0:
            return True
        await self._flush_replies()
        idle = self.connector.connection_inactivity_timeout.total_seconds()
        try:
            while size > 0:
                piece = min(size, 64 * 1024)
                with self._read_timer.limit(self.loop.time() + idle):
                    await self._reader.readexactly(piece)
                size -= piece
        except TimeoutError:
            await self.reply(replies.TIMEOUT_INACTIVITY)
            return False
        return True

    async def _end_of_data(self, data: bytes) -> None:
        assert self.txn is not None and self.connector is not None
        txn, self.txn = self.txn, None
        facts = self.facts()
        normalized, had_bare = wire.normalize_line_endings(data)
        if had_bare and self.connector.bare_linefeed_rejection_enabled:
            await self.reply(replies.BARE_LINEFEEDS)
            return
        size_refusal = rules.check_size(facts, len(data))
        if size_refusal is not None:
            await self.reply(size_refusal.reply)
            return
        message = AcceptedMessage(
            mail_from=txn.mail.address,
            mail_params=txn.mail.params,
            recipients=tuple(txn.recipients),
            data=normalized,
            facts=facts,
            client_ip=self.client_ip,
            client_port=self.proxied.port if self.proxied else self.peer_port,
            client_helo=self.client_helo,
            session_id=self.proxied.session_id if self.proxied else self.session_id,
            tls=self.tls,
            received_seconds=self.runtime.clock.monotonic() - txn.started,
        )
        handler = self.runtime.message_handler(self.role)
        reply = await handler(self, message)
        await self.reply(reply)


def received_for(session: ExchangeSMTP, message: AcceptedMessage, via: str | None = None) -> Field:
    """The Received header this server stamps for a message of this session (§5.4)."""
    server = session.server_config
    return received_field(
        helo=message.client_helo,
        client_ip=message.client_ip,
        server_fqdn=server.fqdn,
        server_ip=session.local_ip,
        version_id=server.version_string,
        now=session.runtime.clock.local(),
        tls=tls_summary(message.tls),
        via=via,
    )


def _proxied_client(params: Mapping[str, str]) -> ProxiedClient | None:
    """IP (an address), PORT (0-65535), DOMAIN (xtext) and SID of XPROXYFROM / XPROXY."""
    try:
        ip = str(ipaddress.ip_address(params["IP"]))
        port = int(params.get("PORT", "0") or 0)
    except (KeyError, ValueError):
        return None
    if not 0 <= port <= 65535:
        return None
    return ProxiedClient(ip=ip, port=port, helo=wire.xtext_decode(params.get("DOMAIN", "")),
                         session_id=params.get("SID", ""))


def _endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _dotnet_span(interval: datetime.timedelta) -> str:
    """``0.00:00:05`` as Exchange writes the tarpit interval."""
    total = int(interval.total_seconds())
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{days}.{hours:02}:{minutes:02}:{seconds:02}"


def _valid_helo(name: str) -> bool:
    if name.startswith("[") and name.endswith("]"):
        inner = name[1:-1]
        if inner.lower().startswith("ipv6:"):
            inner = inner[5:]
        try:
            ipaddress.ip_address(inner)
        except ValueError:
            return False
        return True
    if len(name) > 255 or not name.isascii():
        return False
    return all(c.isalnum() or c in "-._" for c in name)


def tls_summary(tls: TlsInfo | None) -> tuple[str, str] | None:
    if tls is None:
        return None
    return tls_names(tls.protocol, tls.cipher)
