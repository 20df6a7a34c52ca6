"""What the SMTP session core hands to the transport: an accepted message and its context.

The transport (Front End proxy, hub queue, mailbox delivery) never sees the session: it gets
an :class:`AcceptedMessage` whose :class:`MessageContext` carries what it may depend on, and
answers with the final reply. Nothing here does I/O.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from exchsim.config.model import ReceiveConnector
from exchsim.policy import outbound, rules, schannel
from exchsim.policy.headers import tls_names
from exchsim.policy.permissions import Identity, Rights
from exchsim.policy.replies import Reply
from exchsim.tls.validation import ChainVerdict

SENDING_CERTIFICATE = ("Sending certificate Subject Issuer name Serial number Thumbprint "
                       "Not before Not after Subject alternate names")


@dataclass(frozen=True, slots=True)
class LocalCertificate:
    """The certificate this server presented, as the protocol log shows it (exchange.md §6.1)."""

    subject: str  # "CN=EX01"
    issuer: str
    serial: str  # upper-case hex
    thumbprint: str  # SHA-1, upper-case hex
    not_before: datetime.datetime  # aware, UTC
    not_after: datetime.datetime
    dns_names: tuple[str, ...]
    key_bits: int  # the RSA key's size (the key exchange strength of TLS_RSA_* suites)

    def log_line(self) -> tuple[str, str]:
        """The ``Sending certificate`` information line: (data, context). Exchange starts the
        data with a space (`` CN=...``; parsers of its logs find TLS sessions by it,
        exchange.md §12.7)."""
        def when(t: datetime.datetime) -> str:
            return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        data = (f" {self.subject} {self.issuer} {self.serial} {self.thumbprint} "
                f"{when(self.not_before)} {when(self.not_after)} {';'.join(self.dns_names)}")
        return data, SENDING_CERTIFICATE


@dataclass(frozen=True, slots=True)
class TlsInfo:
    protocol: str | None
    cipher: str | None  # OpenSSL's suite name
    anonymous: bool  # X-ANONYMOUSTLS rather than STARTTLS
    peer_der: bytes | None  # the client's certificate (the leaf), DER
    tls_unique: bytes | None
    peer_chain: tuple[bytes, ...] = ()  # every certificate the client presented, leaf first, DER
    group: str | None = None  # the (EC)DHE group, OpenSSL's name ("x25519")
    local_certificate: LocalCertificate | None = None  # what this server presented
    verdict: ChainVerdict | None = None  # the runtime's judgement of peer_chain (STARTTLS)

    def names(self) -> tuple[str, str] | None:
        """(protocol, cipher) in Exchange's spelling, for Received headers."""
        return tls_names(self.protocol, self.cipher)

    def log_lines(self) -> list[tuple[str, str]]:
        """The protocol-log information lines of the handshake, (data, context) each."""
        cert = self.local_certificate
        negotiated = schannel.negotiated_line(self.protocol, self.cipher, self.group,
                                              cert.key_bits if cert else 2048)
        return [*([cert.log_line()] if cert else []), ("", negotiated)]


def tls_failure_lines(error: str, cert: LocalCertificate | None) -> list[tuple[str, str]]:
    """The protocol-log lines of a failed handshake: the certificate offered, then Schannel's
    name for the failure (``TLS negotiation failed with error AlgorithmMismatch``)."""
    failed = f"TLS negotiation failed with error {schannel.failure_name(error)}"
    return [*([cert.log_line()] if cert else []), ("", failed)]


@dataclass(frozen=True, slots=True)
class ProxiedClient:
    """The original client a Front End proxied to us (XPROXYFROM / XPROXY)."""

    ip: str
    port: int
    helo: str
    session_id: str


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    port: int  # as configured (without the lab's port offset)


@dataclass(frozen=True, slots=True)
class MessageContext:
    """The session a message came in on, as the transport may see it."""

    session_id: str
    connector: ReceiveConnector
    identity: Identity
    rights: Rights
    peer: Endpoint  # the TCP peer
    local: Endpoint  # the listener, as configured
    helo: str  # what the TCP peer said in HELO / EHLO
    sequence: int  # this message's number in the session (1, 2, ...)
    tls: TlsInfo | None
    proxied: ProxiedClient | None
    log: Callable[[str, str], None]  # a protocol-log information line: (data, context)
    proxy_to: outbound.ProxyTo | None = None  # XPROXYTO (exchange.md §7.4)


@dataclass(frozen=True, slots=True)
class AcceptedMessage:
    """What a MessageHandler gets: the envelope, the bytes, and who sent them."""

    mail_from: str
    mail_params: Mapping[str, str | None]
    recipients: tuple[str, ...]
    data: bytes  # CRLF line endings, no dot-stuffing
    facts: rules.SessionFacts
    context: MessageContext
    received_seconds: float
    # The DSN parameters given on RCPT (NOTIFY, ORCPT; RFC 3461), by recipient; a recipient
    # without any is not in it.
    rcpt_params: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)

    @property
    def client_ip(self) -> str:
        """The original client: the proxied one on a hub, else the TCP peer."""
        proxied = self.context.proxied
        return proxied.ip if proxied else self.context.peer.ip

    @property
    def client_port(self) -> int:
        proxied = self.context.proxied
        return proxied.port if proxied else self.context.peer.port

    @property
    def client_helo(self) -> str:
        proxied = self.context.proxied
        return proxied.helo if proxied else self.context.helo

    @property
    def session_id(self) -> str:
        proxied = self.context.proxied
        return proxied.session_id if proxied else self.context.session_id


class MessageHandler(Protocol):
    """The transport's side of the seam: the final reply to an accepted message."""

    async def __call__(self, message: AcceptedMessage) -> Reply: ...

    def session_closed(self, session_id: str) -> None:
        """The session is over: drop what was kept for it (a hop session, say)."""
        ...
