"""Helpers for send connector tests: the lab config with given SendConnectors and Dns, MTAs of
the lab's "internet" (plain aiosmtpd servers, optionally with STARTTLS on a lab-PKI certificate
and AUTH), and alice's submission on 587."""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import aiosmtplib
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from exchsim.tls.pki import CertificateFiles
from tests.integration.conftest import FAST, FAST_LAB_YAML, with_connectors

BASE = with_connectors(FAST_LAB_YAML.split("\nSendConnectors:")[0], FAST)


def lab_text(send_connectors: str | None, dns: str = "", extra_servers: str = "") -> str:
    """lab.yaml (fast) with these SendConnectors (None: no key at all) and Dns sections."""
    text = BASE
    if extra_servers:
        text = text.replace(
            '  - {Name: EX01, Role: Mailbox, Fqdn: ex01.contoso.com, Address: 127.0.10.1, '
            'Version: "15.2"}',
            '  - {Name: EX01, Role: Mailbox, Fqdn: ex01.contoso.com, Address: 127.0.10.1, '
            'Version: "15.2"}\n' + extra_servers.rstrip("\n"))
    if send_connectors is not None and send_connectors.strip() == "[]":
        text += "\nSendConnectors: []\n"
    elif send_connectors is not None:
        text += "\nSendConnectors:\n" + send_connectors.strip("\n") + "\n"
    if dns:
        text += "\nDns:\n" + dns.strip("\n") + "\n"
    return text


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    auth: Any
    peer: str


@dataclass
class _Handler:
    messages: list[Received] = field(default_factory=list)
    helo: list[str] = field(default_factory=list)
    dsn: bool = False  # advertise DSN in the EHLO answer
    ehlo_refusal: str | None = None  # answer EHLO with this (a 5xx) instead

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        self.helo.append(f"EHLO {hostname}")
        if self.ehlo_refusal is not None:
            session.extended_smtp = False
            return [self.ehlo_refusal]
        session.host_name = hostname
        if self.dsn:
            responses.insert(len(responses) - 1, "250-DSN")
        return responses

    async def handle_HELO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str) -> str:
        self.helo.append(f"HELO {hostname}")
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert envelope.content is not None
        data = envelope.content if isinstance(envelope.content, bytes) else \
            envelope.content.encode()
        self.messages.append(Received(envelope.mail_from or "", list(envelope.rcpt_tos), data,
                                      session.ssl is not None, session.auth_data,
                                      str(session.peer[0])))
        return "250 2.0.0 OK queued"


_DSN_PARAMETER = re.compile(r"\s+((?:RET|ENVID|NOTIFY|ORCPT)=\S*)", re.IGNORECASE)


class _RecordingSMTP(SMTP):
    """aiosmtpd's server taking the DSN parameters off MAIL and RCPT (aiosmtpd implements no
    DSN and refuses them) and recording them as sent: ``(verb, address part, [params])``."""

    def __init__(self, *args: Any, record: list[tuple[str, str, list[str]]],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._record = record

    def _take(self, verb: str, arg: str | None) -> str | None:
        if arg is None:
            return arg
        params = _DSN_PARAMETER.findall(arg)
        rest = _DSN_PARAMETER.sub("", arg)
        self._record.append((verb, rest.split()[0] if rest.split() else "", params))
        return rest

    async def smtp_MAIL(self, arg: str | None) -> None:
        await super().smtp_MAIL(self._take("MAIL", arg))

    async def smtp_RCPT(self, arg: str | None) -> None:
        await super().smtp_RCPT(self._take("RCPT", arg))


class Mta:
    """An MTA of the lab's internet on ``address``:``port``: stores what it receives.

    ``dsn``: advertises DSN and records the MAIL and RCPT parameters in :attr:`commands`;
    ``ehlo_refusal``: answers EHLO with that reply (HELO still works)."""

    def __init__(self, address: str, port: int, *, name: str = "mta.lab.example",
                 certificate: CertificateFiles | None = None,
                 credentials: tuple[str, str] | None = None, dsn: bool = False,
                 ehlo_refusal: str | None = None) -> None:
        self.address, self.port, self.name = address, port, name
        self.certificate = certificate
        self.credentials = credentials
        self.handler = _Handler(dsn=dsn, ehlo_refusal=ehlo_refusal)
        self.server: asyncio.Server | None = None
        self.peer_certificates: list[bytes | None] = []
        self.commands: list[tuple[str, str, list[str]]] = []

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and self.credentials is not None
              and (auth_data.login.decode(), auth_data.password.decode()) == self.credentials)
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def _factory(self) -> SMTP:
        context = None
        if self.certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.certificate.cert_path, self.certificate.key_path)
        kwargs: dict[str, Any] = {}
        if self.credentials is not None:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        return _RecordingSMTP(self.handler, hostname=self.name, tls_context=context,
                              require_starttls=False, record=self.commands, **kwargs)

    async def start(self) -> Mta:
        self.server = await asyncio.get_running_loop().create_server(
            self._factory, self.address, self.port, reuse_address=True)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    async def restart(self, *, certificate: CertificateFiles | None) -> None:
        """The test hook "fixing the smart host": the same MTA again with this certificate."""
        await self.stop()
        self.certificate = certificate
        await self.start()


async def submit(port: int, to: str, subject: str = "through a send connector",
                 sender: str = "alice@contoso.com") -> None:
    """alice submits on 587 (STARTTLS, AUTH LOGIN) to ``to``."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message.set_content("hello\n")
    await aiosmtplib.send(message, hostname="127.0.10.1", port=port, start_tls=True,
                          validate_certs=False, username="alice@contoso.com",
                          password="P@ssw0rd!", timeout=30)
