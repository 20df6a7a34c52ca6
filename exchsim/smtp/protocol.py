"""The SMTP session of an Exchange receive connector, without I/O (sans-IO).

:class:`SessionCore` is fed what the client sent and answers with actions, values that the
I/O adapter (``exchsim/smtp/adapter.py``) carries out:

- :class:`Send`: bytes for the client (the replies of a pipelined group go out in one Send);
- :class:`Tarpit`: wait before what follows (TarpitInterval, AuthTarpitInterval, exchange.md §1.9);
- :class:`StartTls`: upgrade the connection (STARTTLS or X-ANONYMOUSTLS); the adapter answers
  with :meth:`SessionCore.tls_established` or :meth:`SessionCore.tls_failed`;
- :class:`Deliver`: hand an accepted message to the transport; the adapter answers with
  :meth:`SessionCore.delivered`;
- :class:`Receive`: read more input, within ``idle`` seconds and before ``deadline``; when the
  time runs out the adapter calls :meth:`SessionCore.timed_out`;
- :class:`Close`: close the connection.

The core frames the input itself (command lines, AUTH continuation lines, DATA up to
``CRLF.CRLF``, BDAT chunks of a declared size, blobs it reads and drops), so the adapter only
moves bytes. Where the dialogue stands is two enums: :class:`Mode` (what the next bytes are)
and :class:`~exchsim.policy.verbs.Phase` (HELO, MAIL, RCPT, chunks). What a verb needs before
its handler runs is a row of the verb table (``exchsim/policy/verbs.py``), checked by one
function; the handlers are in ``commands.py`` and ``auth.py``. Every reply comes from
``exchsim/policy/replies.py``; version quirks from one :class:`~exchsim.policy.dialect.Dialect`.

``now`` is the monotonic time in seconds, passed in by the caller; wall-clock text (the banner,
log timestamps) comes from the runtime's injected clock. Nothing here imports asyncio,
sockets, ssl or aiosmtpd.
"""

from __future__ import annotations

import datetime
import enum
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from exchsim.config.capabilities import Capability
from exchsim.config.model import AuthMechanism, Mailbox, ReceiveConnector, TransportRole as Role
from exchsim.config.syntax import format_endpoint, format_timespan
from exchsim.policy import ehlo, outbound, replies, rules
from exchsim.policy.dialect import Dialect
from exchsim.policy.domainsecure import capability_rights
from exchsim.policy.permissions import (
    ANONYMOUS,
    EXTERNALLY_SECURED,
    PARTNER_RIGHTS,
    Identity,
    IdentityKind,
    Rights,
    permission_tokens,
    principals,
)
from exchsim.policy.replies import Reply
from exchsim.policy.verbs import VERBS, Greeting, Phase, Standing, bdat_arguments, check
from exchsim.smtp import certauth, commands
from exchsim.smtp.actions import (
    Action,
    Close,
    Deliver,
    Receive,
    Send,
    ServerContext,
    SessionLog,
    StartTls,
    Tarpit,
)
from exchsim.smtp.auth import Continuation
from exchsim.smtp.message import (
    AcceptedMessage,
    Endpoint,
    LocalCertificate,
    MessageContext,
    ProxiedClient,
    TlsInfo,
    tls_failure_lines,
)
from exchsim.smtp.wire import DataCollector

MAX_COMMAND_LINE = 4000  # exchange.md §1.8 / §9.9: command lines are read up to 4000 bytes
MAX_COMMAND_LINE_LONG = 8000  # with LongAddressesEnabled
MAX_AUTH_LINE = 32768  # an AUTH continuation (an NTLM token) may be longer than a command
_SENT_AT_ONCE = frozenset({220, 334, 354})  # the client waits for these before it sends more
REDACTED = "<authentication information>"  # what the protocol log shows for credentials
AUTH_CHALLENGE_LOGGED = "334 <authentication response>"  # every 334 reply, in the log


class Mode(enum.Enum):
    """What the next bytes from the client are."""

    COMMAND = "command"
    AUTH = "auth"  # a continuation line of AUTH
    DATA = "data"  # message lines up to CRLF.CRLF
    CHUNK = "chunk"  # the bytes of a BDAT chunk
    DISCARD = "discard"  # bytes read and dropped (a refused BDAT chunk, an XEXCH50 blob)
    TLS = "tls"  # the TLS handshake runs; nothing is read
    HANDOFF = "handoff"  # the transport has the message; nothing is read
    CLOSED = "closed"


@dataclass(slots=True)
class Transaction:
    mail: rules.MailCommand
    started: float
    recipients: list[str] = field(default_factory=list)
    # The DSN parameters of each recipient's RCPT (NOTIFY, ORCPT; RFC 3461), by address.
    rcpt_params: dict[str, dict[str, str | None]] = field(default_factory=dict)
    chunks: bytearray | None = None  # BDAT
    chunks_refused: Reply | None = None  # a chunk went over the size limit
    over_recipient_limit: bool = False  # a RCPT got 452 4.5.3 Too many recipients


class SessionCore:
    """One SMTP session: bytes in, actions out (see the module docstring)."""

    def __init__(self, runtime: ServerContext) -> None:
        self.runtime = runtime
        self.server = runtime.server
        self.dialect = Dialect.of(runtime.server.version)
        self.mode = Mode.COMMAND
        self.phase = Phase.CONNECTED
        self.greeting: Greeting | None = None
        self.helo_name = ""
        self.connector: ReceiveConnector | None = None
        self.session_id = ""
        self.started: datetime.datetime | None = None  # wall clock (UTC) at connect
        self.local = Endpoint("", 0)
        self.peer = Endpoint("", 0)
        self.tls: TlsInfo | None = None
        self.identity: Identity = ANONYMOUS
        self.rights: Rights = frozenset()
        self.mailbox: Mailbox | None = None
        self.proxied: ProxiedClient | None = None
        self.proxy_to: outbound.ProxyTo | None = None  # XPROXYTO (Outbound Proxy Frontend)
        self.capabilities: frozenset[Capability] = frozenset()  # TlsDomainCapabilities granted
        self.capabilities_decided = False
        self.txn: Transaction | None = None
        self.messages = 0
        self.protocol_errors = 0
        self.logon_failures = 0
        self.auth: Continuation | None = None  # the AUTH exchange under way
        self.plog: SessionLog | None = None
        self.deadline: float | None = None  # ConnectionTimeout
        self.now = 0.0
        self._buf = bytearray()
        self._data: DataCollector | None = None
        self._remaining = 0  # bytes of the chunk / blob still to come
        self._after_bytes: Callable[[], None] | None = None
        self._out: list[bytes] = []
        self._out_log: list[str] = []  # the protocol log's lines for the replies in _out
        self._actions: list[Action] = []
        self._admitted = False
        self._after_auth = False  # lines since the last AUTH are no commands so far
        self._unlogged: str | None = None  # a credential the reply being sent may echo
        self._keywords: tuple[tuple[bool, bool], list[str]] | None = None

    # ------------------------------------------------------------------ events ---------------

    def connect(self, local_ip: str, local_port: int, peer_ip: str, peer_port: int,
                now: float, listening_port: int | None = None) -> list[Action]:
        """A client connected to ``local_port`` (as configured) on ``local_ip``."""
        self.now = now
        self.local = Endpoint(local_ip, local_port)
        self.peer = Endpoint(peer_ip, peer_port)
        self.session_id = self.runtime.next_session_id()
        self.started = self.runtime.clock.utc()
        connector = self.runtime.index.select(
            ipaddress.ip_address(local_ip), local_port, ipaddress.ip_address(peer_ip)).connector
        self.connector = connector
        if connector is not None:
            self.plog = self.runtime.session_log(
                connector, self.session_id,
                format_endpoint(local_ip, listening_port or local_port),
                format_endpoint(peer_ip, peer_port))
        if self.plog is not None:
            self.plog.connect(self.started)  # the `+` line's time is the session's start
        if connector is None:
            self.reply(replies.SERVICE_NOT_AVAILABLE)
            return self._done()
        active, from_source = self.runtime.connection_counts(connector, peer_ip)
        over = rules.check_connection_limits(connector, active, from_source)
        if over is not None:
            self.reply(over.reply, tarpit=False)
            return self._done()
        self.runtime.admit(connector, peer_ip)
        self._admitted = True
        self.deadline = now + connector.connection_timeout.total_seconds()
        self.set_identity(self.base_identity(), log=self.dialect.session_permissions_at_connect)
        self.reply(self._banner())
        return self._done()

    def feed(self, data: bytes, now: float) -> list[Action]:
        """Bytes from the client."""
        self.now = now
        if self.mode is not Mode.CLOSED:
            self._buf += data
            self._run()
        return self._done()

    def tls_established(self, info: TlsInfo, now: float) -> list[Action]:
        self.now = now
        self.tls = info
        for data, context in info.log_lines():
            self.info(data, context)
        certauth.tls_established(self)
        self.capabilities, self.capabilities_decided = frozenset(), False
        if self.untrusted_server_certificate():
            self.info("", "Inbound Exchange authentication failed: the client certificate "
                          "presented in X-ANONYMOUSTLS is not a published server certificate")
        # RFC 3207 §4.2: forget what the client said before TLS.
        self.phase, self.greeting, self.helo_name, self.txn = Phase.CONNECTED, None, "", None
        self._keywords = None
        self.set_identity(self.base_identity(), log=self.dialect.session_permissions_at_connect)
        certauth.direct_trust(self)
        self.mode = Mode.COMMAND
        self._run()
        return self._done()

    def tls_failed(self, error: str, now: float,
                   certificate: LocalCertificate | None = None) -> list[Action]:
        self.now = now
        for data, context in tls_failure_lines(error, certificate):
            self.info(data, context)
        self._close("Local")
        return self._done()

    def delivered(self, reply: Reply, now: float) -> list[Action]:
        """The transport's reply to the message of the last :class:`Deliver`."""
        self.now = now
        self.mode = Mode.COMMAND
        self.reply(reply)
        self._run()
        return self._done()

    def timed_out(self, now: float) -> list[Action]:
        """No input within the last :class:`Receive`'s limits."""
        self.now = now
        if self.deadline is not None and now >= self.deadline:
            self.reply(replies.TIMEOUT_CONNECTION)
        else:
            self.reply(replies.TIMEOUT_INACTIVITY)
        return self._done()

    def failed(self) -> list[Action]:
        """exchsim's own code failed in this session (the adapter logged the traceback)."""
        if self.mode is Mode.CLOSED:
            return []
        self._out.clear()
        self._out_log.clear()
        self._actions.clear()
        self.reply(replies.LOCAL_ERROR, tarpit=False)
        return self._done()

    def connection_lost(self, context: str = "Remote") -> None:
        """The connection is gone, whoever closed it; called exactly once, at the very end."""
        if self.plog is not None:
            self.plog.disconnect(context)
            self.plog = None
        self.mode = Mode.CLOSED
        if self._admitted and self.connector is not None:
            self._admitted = False
            self.runtime.release(self.connector, self.peer.ip)

    # ------------------------------------------------------------------ input framing --------

    def _run(self) -> None:
        while self.mode in _READING and self._step():
            pass

    def _step(self) -> bool:
        """Take one unit of input (a line, a piece of a chunk); False when more must come."""
        buf = self._buf
        mode = self.mode
        if mode is Mode.DATA:
            assert self._data is not None
            used = self._data.feed(buf)
            if used is None:
                buf.clear()
                return False
            del buf[:used]
            self._end_data()
            return True
        if mode in (Mode.CHUNK, Mode.DISCARD):
            if self._remaining and not buf:
                return False
            take = min(self._remaining, len(buf))
            if mode is Mode.CHUNK and self.txn is not None and self.txn.chunks_refused is None:
                assert self.txn.chunks is not None
                self.txn.chunks += buf[:take]
            del buf[:take]
            self._remaining -= take
            if self._remaining:
                return False
            self.mode = Mode.COMMAND
            then, self._after_bytes = self._after_bytes, None
            if then is not None:
                then()
            return True
        end = buf.find(b"\r\n")  # a lone LF is part of the line (exchange.md §1.8.1)
        if end < 0:
            limit = MAX_AUTH_LINE if mode is Mode.AUTH else self._command_limit()
            if len(buf) > limit + 2:
                if mode is not Mode.AUTH:  # an AUTH line is never logged (exchange.md §1.7)
                    self.received(bytes(buf[:200]).decode("ascii", "replace"))
                self.reply(replies.COMMAND_TOO_LONG)
            return False
        line = bytes(buf[:end])
        del buf[: end + 2]
        if mode is Mode.AUTH:  # the client's AUTH lines are not logged (exchange.md §1.7)
            self.mode = Mode.COMMAND
            auth, self.auth = self.auth, None
            assert auth is not None
            auth(self, line.decode("ascii", "replace").strip())
        else:
            self._command(line)
        return True

    def _command_limit(self) -> int:
        assert self.connector is not None
        return MAX_COMMAND_LINE_LONG if self.connector.long_addresses_enabled else MAX_COMMAND_LINE

    def _command(self, line: bytes) -> None:
        """One command line, without its CRLF."""
        if len(line) > self._command_limit():
            self.received(line[:200].decode("ascii", "replace"))
            self.reply(replies.COMMAND_TOO_LONG)
            return
        text = line.decode("utf-8", "surrogateescape")
        verb, _, rest = text.partition(" ")
        verb = verb.upper()
        rule = VERBS.get(verb) if verb.isascii() else None
        if rule is None and self._after_auth:
            # Not a command, after an AUTH: what a client sends as its credentials when the
            # AUTH was refused. Never written to the log, nor the reply's echo of it (15.2).
            if self.plog is not None:
                self.plog.received_redacted()
            self._unlogged = verb
        elif verb in ("AUTH", "X-EXPS") and rest:
            self.received(f"{verb} {rest.split(' ', 1)[0]}")
        else:
            self.received(text)
        self._after_auth = verb == "AUTH" or (rule is None and self._after_auth)
        if rule is None:
            self.protocol_error(replies.unrecognized(verb, self.dialect))
            self._unlogged = None
            return
        arg = rest.strip() or None
        refusal = check(rule, self.standing(), arg, self.dialect)
        if refusal is not None:
            payload = bdat_arguments(arg) if rule.payload else None
            if refusal.counts:
                self.read_and_drop(payload[0] if payload else 0,
                                   lambda: self.protocol_error(refusal.reply))
            else:
                self.read_and_drop(payload[0] if payload else 0,
                                   lambda: self.reply(refusal.reply))
            return
        commands.HANDLERS[verb](self, arg)

    # ------------------------------------------------------------------ used by handlers -----

    def standing(self) -> Standing:
        return Standing(self.phase, self.greeting, self.tls is not None, self.identity.kind,
                        self.rights, self.advertised)

    def reply(self, reply: Reply, *, tarpit: bool = True) -> None:
        """Send a reply; errors to untrusted sessions wait TarpitInterval (exchange.md §1.9)."""
        if self.mode is Mode.CLOSED:
            return
        connector = self.connector
        if connector is not None and reply.is_error and tarpit:
            self.tarpit(connector.tarpit_interval)
        enhanced = connector.enhanced_status_codes_enabled if connector else True
        text = reply.render(enhanced)
        if self.plog is not None:
            # Logged when it goes out (``_flush``): a pipelined group is logged as read, then
            # its replies (exchange.md §12.7).
            unlogged = self._unlogged
            if reply.code == 334:  # an AUTH challenge is logged redacted (exchange.md §1.7)
                self._out_log.append(AUTH_CHALLENGE_LOGGED)
            else:
                self._out_log.append(text.replace(unlogged, REDACTED) if unlogged else text)
        self._out.append(text.encode("utf-8", "surrogateescape") + b"\r\n")
        if reply.close:
            self._close("Local")
        elif reply.code in _SENT_AT_ONCE:
            self._flush()

    def tarpit(self, interval: datetime.timedelta) -> None:
        """Wait before the next reply, unless the peer is trusted (exchange.md §1.9)."""
        seconds = interval.total_seconds()
        if seconds <= 0 or self.identity.kind in (IdentityKind.EXCHANGE_SERVER,
                                                  IdentityKind.PARTNER):
            return
        self.info(f"Tarpit for '{format_timespan(interval, days=True)}'")  # the data field
        self._flush()  # the replies before this one are not held for its delay
        self._actions.append(Tarpit(seconds))

    def protocol_error(self, reply: Reply) -> None:
        """Unknown verbs, bad syntax and bad sequence count toward MaxProtocolErrors."""
        assert self.connector is not None
        self.protocol_errors += 1
        limit = self.connector.max_protocol_errors
        if limit is not None and self.protocol_errors > limit:
            self.reply(replies.TOO_MANY_ERRORS)
            return
        if (reply.code == 503 and self.dialect.modern_mailbox_delivery
                and self.connector.transport_role is Role.MAILBOX_DELIVERY):
            reply = replies.BAD_SEQUENCE  # one reply for all sequence errors (exchange.md §1.5)
        self.reply(reply)

    def received(self, text: str) -> None:
        if self.plog is not None:
            self.plog.received(text)

    def info(self, data: str, context: str = "") -> None:
        if self.plog is not None:
            self.plog.info(data, context)

    def set_identity(self, identity: Identity, mailbox: Mailbox | None = None, *,
                     rights: Rights | None = None, log: bool = True) -> None:
        """Take on an identity and its rights on this connector.

        The protocol log's ``Set Session Permissions`` line is written after authentication;
        at connect only Exchange 2013 wrote it (exchange.md §9.7: absent in 2016+ samples).
        """
        assert self.connector is not None
        self.identity = identity
        self.mailbox = mailbox
        if rights is None:
            netbios = self.runtime.lab.organization.netbios
            base = PARTNER_RIGHTS if identity.kind is IdentityKind.PARTNER else frozenset()
            rights = self.runtime.acl(self.connector).rights_for(
                principals(identity, netbios, mailbox), base)
        self.rights = rights | capability_rights(self.capabilities)
        if log:
            self.info(permission_tokens(rights), "Set Session Permissions")

    def base_identity(self) -> Identity:
        assert self.connector is not None
        if AuthMechanism.EXTERNAL_AUTHORITATIVE in self.connector.auth_mechanism:
            return EXTERNALLY_SECURED
        return ANONYMOUS

    @property
    def fqdn(self) -> str:
        assert self.connector is not None
        return self.connector.fqdn or self.server.fqdn

    @property
    def client_ip(self) -> str:
        return self.proxied.ip if self.proxied else self.peer.ip

    def ehlo_context(self) -> ehlo.EhloContext:
        assert self.connector is not None
        return ehlo.EhloContext(
            connector=self.connector,
            version=self.server.version,
            transport=self.runtime.lab.organization.transport_config,
            tls_active=self.tls is not None,
            anonymous_tls=self.tls is not None and self.tls.anonymous,
            has_certificate=self.runtime.has_starttls_certificate(self.connector),
            has_internal_certificate=self.runtime.has_internal_certificate(),
        )

    def keywords(self) -> list[str]:
        """The EHLO keywords offered now (they change only with TLS)."""
        state = (self.tls is not None, self.tls is not None and self.tls.anonymous)
        if self._keywords is None or self._keywords[0] != state:
            self._keywords = (state, ehlo.keywords(self.ehlo_context()))
        return self._keywords[1]

    def advertised(self, keyword: str) -> bool:
        return any(k.split(" ")[0] == keyword for k in self.keywords())

    def untrusted_server_certificate(self) -> bool:
        """X-ANONYMOUSTLS with a client certificate that is no published server certificate."""
        tls = self.tls
        return (tls is not None and tls.anonymous and tls.peer_der is not None
                and tls.peer_der not in self.runtime.published_certs.values())

    def begin_transaction(self, mail: rules.MailCommand) -> None:
        self.txn = Transaction(mail, started=self.now)
        self.phase = Phase.MAIL
        self.messages += 1

    def end_transaction(self) -> None:
        self.txn = None
        if self.phase.in_transaction:
            self.phase = Phase.READY

    def expect_continuation(self, step: Continuation) -> None:
        """The next line is not a command but the next step of an AUTH exchange."""
        self.auth = step
        self.mode = Mode.AUTH

    def expect_data(self, limit: int | None) -> None:
        self._data = DataCollector(limit)
        self.mode = Mode.DATA

    def expect_chunk(self, size: int, then: Callable[[], None]) -> None:
        self._remaining = size
        self._after_bytes = then
        self.mode = Mode.CHUNK

    def read_and_drop(self, size: int, then: Callable[[], None]) -> None:
        """Read ``size`` bytes and drop them (nothing is kept), then carry on with ``then``."""
        if size <= 0:
            then()
            return
        self._remaining = size
        self._after_bytes = then
        self.mode = Mode.DISCARD

    def start_tls(self, anonymous: bool) -> None:
        self.reply(replies.TLS_READY)
        self._buf.clear()  # RFC 3207 §4.2: nothing sent before the handshake is a command
        self.mode = Mode.TLS
        self._actions.append(StartTls(anonymous))

    def deliver(self, message: AcceptedMessage) -> None:
        """Hand the message over; replies held for a pipelined group (MAIL, RCPT, BDAT) go out
        with the transport's reply, in one write."""
        self.mode = Mode.HANDOFF
        self._actions.append(Deliver(message))

    def message_context(self) -> MessageContext:
        assert self.connector is not None
        return MessageContext(
            session_id=self.session_id, connector=self.connector, identity=self.identity,
            rights=self.rights, peer=self.peer, local=self.local, helo=self.helo_name,
            sequence=self.messages, tls=self.tls, proxied=self.proxied, log=self.info,
            proxy_to=self.proxy_to,
        )

    def facts(self) -> rules.SessionFacts:
        assert self.connector is not None
        return rules.SessionFacts(
            org=self.runtime.lab.organization, server=self.server, connector=self.connector,
            identity=self.identity, rights=self.rights, tls_active=self.tls is not None,
            mailbox=self.mailbox, local_servers=self.runtime.local_fqdns)

    # ------------------------------------------------------------------ internals ------------

    def _end_data(self) -> None:
        data, self._data = self._data, None
        assert data is not None
        self.mode = Mode.COMMAND
        if data.overflow:
            self.end_transaction()
            self.reply(replies.MESSAGE_TOO_BIG)
            return
        commands.end_of_data(self, data.message())

    def _banner(self) -> Reply:
        assert self.connector is not None
        if self.connector.banner:
            return replies.custom_banner(self.connector.banner)
        modern = (self.connector.transport_role is Role.MAILBOX_DELIVERY
                  and self.dialect.modern_mailbox_delivery)
        return replies.banner(self.fqdn, self.runtime.clock.local(self.server.zone),
                              uppercase=modern)

    def _flush(self) -> None:
        if self._out_log:
            if self.plog is not None:
                for text in self._out_log:
                    self.plog.sent(text)
            self._out_log = []
        if self._out:
            out = self._out
            self._actions.append(Send(out[0] if len(out) == 1 else b"".join(out)))
            self._out = []

    def _close(self, context: str) -> None:
        self._flush()
        if self.plog is not None:
            self.plog.disconnect(context)
            self.plog = None
        self.mode = Mode.CLOSED
        self._buf.clear()
        self._actions.append(Close())

    def _done(self) -> list[Action]:
        """The actions so far; replies held for a pipelined group go out when input runs dry."""
        if self.mode in _READING:
            self._flush()
            assert self.connector is not None
            idle = self.connector.connection_inactivity_timeout.total_seconds()
            self._actions.append(Receive(idle, self.deadline))
        actions, self._actions = self._actions, []
        return actions


_READING = frozenset({Mode.COMMAND, Mode.AUTH, Mode.DATA, Mode.CHUNK, Mode.DISCARD})
