"""The client side of an Exchange-to-Exchange hop (exchange.md §7.2-§7.5, §4.1).

EHLO, ``X-ANONYMOUSTLS`` (presenting this server's own certificate as the TLS client
certificate), EHLO again, ``X-EXPS EXCHANGEAUTH SHA256 <blob>`` bound to the TLS session, then
the hop's own command (XPROXYFROM, XPROXY or XSESSIONPARAMS) and mail with ``BDAT <n> LAST``.

aiosmtplib is the project's general SMTP client (the internet sink relay, the tests); it
hard-codes the ``STARTTLS`` verb and has no BDAT, so this hop protocol has its own small
client on asyncio streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from exchsim.policy.replies import Reply
from exchsim.tls.directtrust import make_exchangeauth_blob


class HopError(Exception):
    """The hop could not be set up or broke; ``reply`` is what the server said, if anything."""

    def __init__(self, message: str, reply: Reply | None = None) -> None:
        super().__init__(message)
        self.reply = reply


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


class HopClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 timeout: float) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.extensions: set[str] = set()
        self.broken = False

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        helo: str,
        tls_context: ssl.SSLContext,
        timeout: float = 30.0,
        source: str | None = None,
    ) -> HopClient:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host, port, local_addr=(source, 0) if source else None, limit=65536
                ),
                timeout,
            )
        except (OSError, TimeoutError) as exc:
            raise HopError(f"cannot connect to {host}:{port}: {exc}") from exc
        client = cls(reader, writer, timeout)
        try:
            await client._expect(await client.read_reply(), 220)
            await client.ehlo(helo)
            if "X-ANONYMOUSTLS" not in client.extensions:
                raise HopError(f"{host}:{port} does not offer X-ANONYMOUSTLS")
            await client._expect(await client.command("X-ANONYMOUSTLS"), 220)
            await writer.start_tls(tls_context, ssl_handshake_timeout=timeout)
            await client.ehlo(helo)
            ssl_object = writer.get_extra_info("ssl_object")
            unique = ssl_object.get_channel_binding("tls-unique") if ssl_object else None
            if unique is None:
                raise HopError("no tls-unique channel binding")
            blob = make_exchangeauth_blob(helo, unique)
            await client._expect(await client.command(f"X-EXPS EXCHANGEAUTH SHA256 {blob}"), 235)
        except BaseException:
            client.abort()
            raise
        return client

    async def read_reply(self) -> Reply:
        lines: list[str] = []
        try:
            while True:
                async with asyncio.timeout(self.timeout):
                    raw = await self.reader.readuntil(b"\n")
                text = raw.decode("utf-8", "replace").rstrip("\r\n")
                if len(text) < 3 or not text[:3].isdigit():
                    raise HopError(f"malformed reply {text!r}")
                lines.append(text[4:])
                if text[3:4] != "-":
                    return parse_reply(int(text[:3]), lines)
        except (OSError, TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as exc:
            self.broken = True
            raise HopError(f"connection lost: {exc!r}") from exc

    async def command(self, line: str) -> Reply:
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
        *, partial: bool = True,
    ) -> HopResult:
        """MAIL, RCPT and ``BDAT <n> LAST``; refusals come back as values.

        ``partial`` (the hub's delivery agent): the message goes to the recipients the server
        accepts and the others are reported in ``refused``; MAIL, RCPT and BDAT go in one write
        (RFC 2920, RFC 3030 §4.2). When every recipient is refused the server answers the BDAT
        with an error and discards the chunk. ``partial=False`` (the Front End, whose client was
        told 250 for every recipient already): all recipients or none. The data is sent only
        after every RCPT was accepted; otherwise the transaction is reset and the first
        refusal is the result. With one recipient both are the same, and pipelined.
        """
        params = f" {mail_params}" if mail_params else ""
        lines = [f"MAIL FROM:<{mail_from}>{params}"] + [f"RCPT TO:<{r}>" for r in recipients]
        pipelined = partial or len(recipients) == 1
        head = ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")
        bdat = f"BDAT {len(data)} LAST\r\n".encode() + data
        self.writer.write(head + bdat if pipelined else head)
        mail_reply = await self.read_reply()
        rcpt_replies = [await self.read_reply() for _ in recipients]
        final = await self.read_reply() if pipelined else None
        if mail_reply.code != 250:
            return HopResult(mail_reply)
        refused = tuple((r, rep) for r, rep in zip(recipients, rcpt_replies, strict=True)
                        if rep.code != 250)
        if refused and (len(refused) == len(recipients) or not partial):
            if not pipelined:
                await self.command("RSET")
            return HopResult(refused[0][1], refused)
        if final is None:
            self.writer.write(bdat)
            final = await self.read_reply()
        return HopResult(final, refused)

    def abort(self) -> None:
        self.broken = True
        self.writer.close()

    async def quit(self) -> None:
        if not self.broken:
            with contextlib.suppress(HopError, TimeoutError):
                await asyncio.wait_for(self.command("QUIT"), 2.0)
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)
