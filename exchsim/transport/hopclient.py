"""The client side of an Exchange-to-Exchange hop (exchange.md §7.2-§7.5, §4.1).

EHLO, ``X-ANONYMOUSTLS`` (presenting this server's own certificate as the TLS client
certificate), EHLO again, ``X-EXPS EXCHANGEAUTH SHA256 <blob>`` bound to the TLS session, then
the hop's own command (XPROXYFROM, XPROXY or XSESSIONPARAMS) and mail with ``BDAT <n> LAST``.

aiosmtplib is the project's general SMTP client (the internet sink relay, the tests); it
hard-codes the ``STARTTLS`` verb and has no BDAT, so this hop protocol has its own small
client on asyncio streams.

Replies are read line by line up to :data:`MAX_REPLY_LINE` bytes a line and
:data:`MAX_REPLY_LINES` lines a reply. RFC 5321 §4.5.3.1.5 allows a reply line of 512 octets;
exchsim's own servers stay well under it (the hub bounds the Message-ID it echoes in its
``250 2.6.0`` reply, policy/replies.py), and the bounds leave room for a server that is more
generous. A reply over either bound is a protocol error (:class:`HopError`): the client is
marked broken and its connection closed, never read from again, so the rest of an over-long
line can never be taken for the next reply. A server can therefore not make the client buffer
more than about twice the line bound (the stream's read limit).

:meth:`HopClient.send_message` records whether the message data was written
(``HopError.data_sent``): a failure before it (connect, EHLO, TLS, EXCHANGEAUTH, the hop's own
command, a connection lost before MAIL was answered) leaves nothing committed on the server and
may be retried; after it the server may have committed the message, and a caller that must not
duplicate it does not send it again (transport/frontend.py).

With a :class:`~exchsim.logs.sendlog.SendLogSession` (``log=``) the client writes the hop to the
server's send protocol log as it goes (exchange.md §6.1): the connection, every command it sends
(the pipelined ones in the order written), every reply as read, the TLS handshake, the
``sending message`` line the caller asks for with :meth:`HopClient.log_message`, and the end of
the connection (``Local`` when this side closes, ``Remote`` when the server had closed or after
QUIT, ``Remote(ConnectionReset)`` / ``Remote(SocketError)`` when the connection broke).

Every :class:`HopError` says in ``what`` what went wrong in Exchange's words (the table of
policy/lasterror.py, exchange.md §8.5): the reply of a peer that refused, ``451 5.7.3 Cannot
achieve Exchange Server authentication`` when X-ANONYMOUSTLS is not offered, ``421 4.2.1 Unable
to connect -> ...`` for the TCP connect or the TLS handshake, ``421 4.4.2 Connection dropped due
to SocketError`` for a connection the peer closed or broke, ``421 4.4.1 Connection timed out``
for a reply that did not come within the timeout. The exception's own text is for exchsim's log;
the queue's LastError and the Front End's protocol log take ``what``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from exchsim.logs.sendlog import SendLogSession, endpoint
from exchsim.policy.lasterror import (
    CONNECTION_DROPPED,
    CONNECTION_TIMED_OUT,
    EXCHANGE_AUTH_FAILED,
    one_line,
    tls_failed,
    unable_to_connect,
    winsock,
)
from exchsim.policy.replies import Reply
from exchsim.policy.schannel import failure_name
from exchsim.tls.directtrust import make_exchangeauth_blob
from exchsim.tls.resumption import ClientSessionCache

HopTls = ssl.SSLContext | ClientSessionCache
"""What a hop's TLS is made with: a client context, or a session cache around one."""

MAX_REPLY_LINE = 4096  # bytes in one reply line, CRLF included (RFC 5321's 512, eight times)
MAX_REPLY_LINES = 100  # lines in one multi-line reply (an EHLO answer has about 20)


class HopError(Exception):
    """The hop could not be set up or broke; ``reply`` is what the server said, if anything.

    ``data_sent``: the message data had been written when it broke, so the server may have
    committed the message (the outcome is unknown); False means it cannot have. ``what``: the
    failure in Exchange's words (module docstring); the reply itself when there is one.
    """

    def __init__(self, message: str, reply: Reply | None = None, *,
                 data_sent: bool = False, connect: bool = False,
                 what: str | None = None) -> None:
        super().__init__(message)
        self.reply = reply
        self.data_sent = data_sent
        self.connect = connect  # the TCP connection itself could not be made
        self.what = what or (one_line(reply.render()) if reply is not None else None)
        # The queue's LastError, when the caller knows the hop (transport/nexthop.py).
        self.last_error: str | None = None


@dataclass(frozen=True, slots=True)
class HopResult:
    reply: Reply  # the final reply for the message
    refused: tuple[tuple[str, Reply], ...] = ()  # recipients the next hop refused


def parse_reply(code: int, lines: Sequence[str]) -> Reply:
    """Turn wire lines (without the code) into a Reply, splitting an enhanced code off."""
    first = lines[0] if lines else ""
    enhanced = None
    head, _, rest = first.partition(" ")
    if head.count(".") == 2 and all(p.isdigit() for p in head.split(".")):
        enhanced, first = head, rest
    return Reply(code, enhanced, "\n".join([first, *lines[1:]]))


class _ProtocolError(Exception):
    """A reply the client cannot read as SMTP (internal to read_reply)."""


class HopClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 timeout: float, log: SendLogSession | None = None) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.extensions: set[str] = set()
        self.broken = False
        self.log = log
        self._quiet = False  # the reply to QUIT is not logged (exchange.md §6.1)

    @classmethod
    async def open(cls, host: str, port: int, *, timeout: float = 30.0,
                   source: str | None = None, log: SendLogSession | None = None) -> HopClient:
        """The TCP connection alone, its reads bounded by MAX_REPLY_LINE (see connect)."""
        if log is not None:
            log.attempting()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host, port, local_addr=(source, 0) if source else None,
                    limit=MAX_REPLY_LINE,
                ),
                timeout,
            )
        except (OSError, TimeoutError) as exc:
            error = winsock(None if isinstance(exc, TimeoutError) else exc.errno,
                            timed_out=isinstance(exc, TimeoutError))
            raise HopError(f"cannot connect to {host}:{port}: {exc}", connect=True,
                           what=unable_to_connect(error)) from exc
        if log is not None:
            local = writer.get_extra_info("sockname")
            log.connected(endpoint(local[0], local[1]) if local else "")
        return cls(reader, writer, timeout, log)

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        helo: str,
        tls_context: HopTls,
        timeout: float = 30.0,
        source: str | None = None,
        log: SendLogSession | None = None,
        direct_trust: bool = False,
        trusted: Collection[bytes] = (),
    ) -> HopClient:
        """A hop session ready for the hop's own command (module docstring).

        ``direct_trust``: a hop between an Edge server and a Mailbox server (exchange.md §4.1
        item 3; exchange.md §7.6): the certificate presented in X-ANONYMOUSTLS authenticates
        the session and no X-EXPS follows (the Edge offers no EXCHANGEAUTH); a server that
        does not take the certificate answers the EHLO after the handshake with ``454 4.7.0``.
        The authentication is mutual (exchange.md §7.6): the server's certificate must be one
        of ``trusted`` (the DER of the Direct Trust peers' certificates), else the hop ends
        right after the handshake, before anything is sent, with ``451 5.7.3 Cannot achieve
        Exchange Server authentication`` (a peer that is no Exchange server of the subscription
        gets no message).

        With a :class:`ClientSessionCache` the handshake offers the session cached for
        ``host:port`` (TLS session resumption, tls/resumption.py); the session is kept once
        EXCHANGEAUTH succeeded and dropped if the hop fails after its handshake.
        """
        sessions: ClientSessionCache | None = None
        context: ssl.SSLContext
        if isinstance(tls_context, ClientSessionCache):
            sessions, context = tls_context, tls_context.context_for(host, port)
        else:
            context = tls_context
        client = await cls.open(host, port, timeout=timeout, source=source, log=log)
        writer = client.writer
        handshake_done = False
        try:
            await client._expect(await client.read_reply(), 220)
            await client.ehlo(helo)
            if "X-ANONYMOUSTLS" not in client.extensions:
                raise HopError(f"{host}:{port} does not offer X-ANONYMOUSTLS",
                               what=EXCHANGE_AUTH_FAILED)
            await client._expect(await client.command("X-ANONYMOUSTLS"), 220)
            try:
                await writer.start_tls(context, ssl_handshake_timeout=timeout)
            except (OSError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                if log is not None:
                    log.tls_failed(error)
                raise HopError(f"TLS handshake with {host}:{port} failed: {error}",
                               what=tls_failed(failure_name(error))) from exc
            handshake_done = True
            client._log_tls()
            ssl_object = writer.get_extra_info("ssl_object")
            if direct_trust and (ssl_object is None or ssl_object.getpeercert(
                    binary_form=True) not in trusted):
                raise HopError(f"{host}:{port} presented a certificate of no Direct Trust peer",
                               what=EXCHANGE_AUTH_FAILED)
            await client.ehlo(helo)
            if not direct_trust:
                unique = ssl_object.get_channel_binding("tls-unique") if ssl_object else None
                if unique is None:
                    raise HopError("no tls-unique channel binding", what=EXCHANGE_AUTH_FAILED)
                blob = make_exchangeauth_blob(helo, unique)
                await client._expect(
                    await client.command(f"X-EXPS EXCHANGEAUTH SHA256 {blob}"), 235)
        except BaseException:
            if sessions is not None and handshake_done:
                sessions.forget(host, port)
            client.abort()
            raise
        if sessions is not None:
            sessions.remember(host, port, ssl_object)
        return client

    def _log_tls(self) -> None:
        if self.log is None:
            return
        ssl_object = self.writer.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        cipher = ssl_object.cipher()
        self.log.tls_established(ssl_object.version(), cipher[0] if cipher else None, None,
                                 ssl_object.getpeercert(binary_form=True), presented=True)

    def log_message(self, record_id: int, message_id: str) -> None:
        """The ``sending message with RecordId ... and InternetMessageId ...`` line, written
        before the message's MAIL command."""
        if self.log is not None:
            self.log.sending_message(record_id, message_id)

    @property
    def session_reused(self) -> bool:
        """Whether this hop's TLS session was resumed (an abbreviated handshake)."""
        ssl_object = self.writer.get_extra_info("ssl_object")
        return bool(ssl_object is not None and ssl_object.session_reused)

    async def read_reply(self) -> Reply:
        """One whole reply, or HopError (and the client broken, its connection closed)."""
        lines: list[str] = []
        wire: list[str] = []
        try:
            while True:
                async with asyncio.timeout(self.timeout):
                    raw = await self.reader.readuntil(b"\n")
                if len(raw) > MAX_REPLY_LINE:  # the stream's limit is a bound on the search
                    raise _ProtocolError(f"reply line over {MAX_REPLY_LINE} bytes")
                text = raw.decode("utf-8", "replace").rstrip("\r\n")
                if len(text) < 3 or not text[:3].isdigit() or text[3:4] not in ("", " ", "-"):
                    raise _ProtocolError(f"malformed reply {text[:80]!r}")
                lines.append(text[4:])
                wire.append(text)
                if text[3:4] != "-":
                    if self.log is not None and not self._quiet:
                        self.log.received("\n".join(wire))
                    return parse_reply(int(text[:3]), lines)
                if len(lines) >= MAX_REPLY_LINES:
                    raise _ProtocolError(f"reply of more than {MAX_REPLY_LINES} lines")
        except asyncio.LimitOverrunError as exc:
            self.abort()
            raise HopError(f"protocol error: reply line over {MAX_REPLY_LINE} bytes",
                           what=CONNECTION_DROPPED) from exc
        except _ProtocolError as exc:
            self.abort()
            raise HopError(f"protocol error: {exc}", what=CONNECTION_DROPPED) from exc
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            self.abort(_lost_context(exc))
            what = CONNECTION_TIMED_OUT if isinstance(exc, TimeoutError) else CONNECTION_DROPPED
            raise HopError(f"connection lost: {exc!r}", what=what) from exc

    async def command(self, line: str) -> Reply:
        if self.log is not None:
            self.log.sent(line)
        self.writer.write(line.encode("utf-8", "surrogateescape") + b"\r\n")
        return await self.read_reply()

    async def ehlo(self, helo: str) -> None:
        reply = await self.command(f"EHLO {helo}")
        await self._expect(reply, 250)
        self.extensions = {line.split(" ")[0].upper() for line in reply.text.split("\n")[1:]}

    async def _expect(self, reply: Reply, code: int) -> None:
        if reply.code != code:
            self.broken = True
            raise HopError(f"expected {code}, got {reply.render()}", reply)

    async def send_message(
        self, mail_from: str, mail_params: str, recipients: Sequence[str], data: bytes,
        *, partial: bool = True, rcpt_params: Mapping[str, str] | None = None,
    ) -> HopResult:
        """MAIL, RCPT and ``BDAT <n> LAST``; refusals come back as values.

        ``partial`` (the hub's delivery agent): the message goes to the recipients the server
        accepts and the others are reported in ``refused``; MAIL, RCPT and BDAT go in one write
        (RFC 2920, RFC 3030 §4.2). When every recipient is refused the server answers the BDAT
        with an error and discards the chunk. ``partial=False`` (the Front End, whose client was
        told 250 for every recipient already): all recipients or none. The data is sent only
        after every RCPT was accepted; otherwise the transaction is reset and the first
        refusal is the result. With one recipient both are the same, and pipelined.

        A HopError raised here says in ``data_sent`` whether the data had been written: a
        pipelined transaction has written it before the first reply, so only a failure of the
        unpipelined MAIL/RCPT step is known to have left nothing on the server. Check
        :attr:`usable` before reusing a session: a server that closed it while it was idle is
        then found before anything is sent.
        """
        params = f" {mail_params}" if mail_params else ""
        extra = rcpt_params or {}  # a recipient's RCPT parameters (NOTIFY, ORCPT)
        lines = [f"MAIL FROM:<{mail_from}>{params}"] + [
            f"RCPT TO:<{r}> {extra[r]}" if extra.get(r) else f"RCPT TO:<{r}>"
            for r in recipients]
        pipelined = partial or len(recipients) == 1
        head = ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")
        bdat_line = f"BDAT {len(data)} LAST"
        bdat = f"{bdat_line}\r\n".encode() + data
        if self.log is not None:
            for line in [*lines, *([bdat_line] if pipelined else [])]:
                self.log.sent(line)
        self.writer.write(head + bdat if pipelined else head)
        try:
            mail_reply = await self.read_reply()
            rcpt_replies = [await self.read_reply() for _ in recipients]
            final = await self.read_reply() if pipelined else None
        except HopError as exc:
            exc.data_sent = pipelined
            raise
        if mail_reply.code != 250:
            return HopResult(mail_reply)
        refused = tuple((r, rep) for r, rep in zip(recipients, rcpt_replies, strict=True)
                        if rep.code != 250)
        if refused and (len(refused) == len(recipients) or not partial):
            if not pipelined:
                await self.command("RSET")
            return HopResult(refused[0][1], refused)
        if final is None:
            if self.log is not None:
                self.log.sent(bdat_line)
            self.writer.write(bdat)
            try:
                final = await self.read_reply()
            except HopError as exc:
                exc.data_sent = True
                raise
        return HopResult(final, refused)

    @property
    def usable(self) -> bool:
        """Fit for another transaction: not broken, and the server has not closed its end (an
        idle session timed out or the server went away: its TLS close or FIN has arrived).
        Over TLS, as every hop session runs, the transport closes when the server's close
        arrives, even after an unasked ``421``; over plain TCP only a bare FIN is seen."""
        return not (self.broken or self.writer.is_closing() or self.reader.at_eof())

    def abort(self, context: str | None = None) -> None:
        """Close the connection at once; ``context`` is the send log's reason (``Local``, or
        ``Remote`` when the server's close had already arrived)."""
        self.broken = True
        if self.log is not None:
            remote = self.reader.at_eof() or self.writer.is_closing()
            self.log.disconnect(context or ("Remote" if remote else "Local"))
        self.writer.close()

    async def quit(self) -> None:
        context = "Local"
        if not self.broken:
            self._quiet = True
            with contextlib.suppress(HopError, TimeoutError):
                await asyncio.wait_for(self.command("QUIT"), 2.0)
                context = "Remote"  # the server ends the session after QUIT (exchange.md §6.1)
        if self.log is not None:
            self.log.disconnect(context)
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)


def _lost_context(exc: BaseException) -> str:
    """The send log's disconnect context for a connection that broke while reading."""
    if isinstance(exc, ConnectionResetError):
        return "Remote(ConnectionReset)"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "Remote"
    if isinstance(exc, OSError):
        return "Remote(SocketError)"
    return "Local"  # the reply did not come in time: this side gives up
