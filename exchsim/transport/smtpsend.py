"""The client side of a send connector: one message to its next hop outside the organization
(exchange.md §8.2, §4.3).

Entry point (stable; branches that build on it call only this)::

    sender = SmtpSender(SendContext(server=..., dns=lab.dns, port_offset=..., certificate=...,
                                    judge=..., protocol_log=...))
    result = await sender.send(connector, domain, mail_from, recipients, data,
                               domain_secure=False, dsn=policy.dsn.passed_on(metadata, rcpts))
    # result.refused: [(recipient, Reply)]; result.host / result.address: who took it;
    # result.reply: the remote's reply to the data; result.dsn_passed: the remote offered DSN
    # and got the DSN parameters
    # sender.send_to(connector, domain, destinations, ...): the same, hosts already resolved
    # (the Front End's outbound proxy, XPROXYTO)

What it does, in order:

1. **Destinations** (``policy/outbound.destinations``): the smart hosts, or the MX records of the
   recipient domain by preference (then its A record), from the config's ``Dns`` map; the port is
   the record's, else the connector's Port, and the lab's port offset is added to every one (the
   lab's "internet" runs on offset ports like its Exchange servers). No host known to the lab's
   DNS: ``451 4.4.0 DNS query failed ... SMTPSEND.DNS.NonExistentDomain`` and the message waits
   for the next retry (exchange.md §8.2).
2. **Each destination in turn** until one takes the message: a host that cannot be reached, whose
   greeting or EHLO is not positive, or whose TLS or authentication fails, is left for the next
   one, as Exchange fails over to the next MX or smart host. The connection comes from the
   server's own address; EHLO (HELO with ForceHELO, or after a 5xx reply to EHLO) says the
   connector's Fqdn, else the server's; every command waits at most ConnectionInactivityTimeOut.
3. **TLS**: STARTTLS when offered, unless IgnoreSTARTTLS, with Schannel's client profile
   (tls/contexts.client_context_starttls), presenting the certificate the connector's
   TlsCertificateName names, else the server's certificate for the connector's FQDN, else the
   server's own. RequireTLS (and Domain Security, and BasicAuthRequireTLS): STARTTLS not offered
   or a failed handshake is a failure of that host, never a message sent in clear. Without
   RequireTLS a failed handshake is retried once on a new connection without STARTTLS (the
   opportunistic fallback other MTAs make; exchsim's choice, exchange.md §4.3). The remote
   certificate is then judged per TlsAuthLevel (``policy/outbound.judge_remote_certificate``,
   with the chain judged by the runtime's ``judge``: the lab's trust stores and CRLs, as on the
   receive side; Python 3.11's ``ssl`` gives only the leaf, so the path is built with the
   intermediates the lab knows).
4. **Authentication** to a smart host: SmartHostAuthMechanism BasicAuth / BasicAuthRequireTLS
   with AuthenticationCredential, AUTH LOGIN when offered, else AUTH PLAIN.
5. **The message**: MAIL FROM (``<>`` for an NDR) with SIZE when offered (SMTPUTF8 when an
   address needs it; RET and ENVID, and on each RCPT NOTIFY and ORCPT, as the queue kept them
   when the remote advertises DSN: policy/dsn.passed_on, RFC 3461 §6.2.1(a)), RCPT per recipient
   (a refused recipient is reported, the others go), DATA with the header firewall applied
   (``policy/headers.send_firewall``: no organization or forest header leaves,
   exchange.md §12.5), QUIT.

Every failure before MAIL raises :class:`~exchsim.transport.outcome.Unreachable` with the
queue's reason in Exchange's form (policy/lasterror.py, exchange.md §8.5: ``451 4.4.0 Primary
target IP address responded with: "..." Attempted failover to alternate host, ...``, or ``441
4.4.1 Error encountered while communicating with primary target IP address: "Failed to connect.
Winsock error code: ..."`` when the first host could not be connected to; the first host's
failure quoted, the last endpoint named); a refusal of MAIL or DATA raises aiosmtplib's error
for transport/outcome.py.

Hooks for the branches built on this module:

- **Protocol log** (SmtpSend, exchange.md §6.1): ``SendContext.protocol_log(connector, session)``
  returns a :class:`SendLog` (or None; the daemon gives transport/smtplog.ConnectorLog, writing
  the server's send log under the connector's name when its ProtocolLoggingLevel is Verbose);
  the client calls ``watch`` once connected (from then on every command line as written and
  every reply as read is logged by the connection's own hook, transport/smtplog.watch: AUTH's
  334 exchanges with the credentials left out, DATA, its 354 and the reply to the data),
  ``tls_established`` (the handshake), ``sending_message`` (before MAIL, with the queue's
  RecordId and the InternetMessageId ``send`` was given), ``info`` (other facts) and ``closed``
  on it.
- **Domain Security** (TLSSendDomainSecureList with DomainSecureEnabled, exchange.md §4.3): the
  ``domain_secure`` argument of :meth:`SmtpSender.send`, which the delivery agent sets with
  ``policy/sendsecure.domain_secure``. When True, TLS is required and the remote certificate must
  be trusted and name the recipient domain; the failures are ``policy/sendsecure.judge_remote``'s.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import aiosmtplib

from exchsim.config.model import Server
from exchsim.config.sendconnector import DnsMap, SendConnector, SmartHostAuthMechanism
from exchsim.policy.dsn import DsnParameters
from exchsim.policy.headers import send_firewall
from exchsim.policy.lasterror import CONNECTION_DROPPED, connection_failed, failover
from exchsim.policy.outbound import (
    Destination,
    destinations,
    dns_failure,
    judge_remote_certificate,
    tls_required,
)
from exchsim.policy.replies import Reply
from exchsim.policy.sendsecure import judge_remote
from exchsim.tls.contexts import client_context_starttls
from exchsim.tls.pki import CertificateFiles
from exchsim.tls.validation import ChainStatus, ChainVerdict
from exchsim.transport.hopclient import parse_reply
from exchsim.transport.outcome import Unreachable, Unsendable, socket_error, summary

__all__ = ["SendContext", "SendLog", "SendResult", "SmtpSender", "failover_reason"]

CONNECT_TIMEOUT = 30.0  # seconds for the TCP connection and the greeting


class SendLog(Protocol):
    """What the SmtpSend protocol log is told of one session (module docstring)."""

    def watch(self, smtp: aiosmtplib.SMTP, banner: aiosmtplib.SMTPResponse) -> None: ...
    def info(self, text: str) -> None: ...
    def tls_established(self, protocol: str | None, cipher: str | None, peer_der: bytes | None,
                        local_der: bytes | None) -> None: ...
    def sending_message(self, record_id: int, message_id: str) -> None: ...
    def closed(self, reason: str) -> None: ...


class _NoLog:
    def watch(self, smtp: aiosmtplib.SMTP, banner: aiosmtplib.SMTPResponse) -> None:
        pass

    def info(self, text: str) -> None:
        pass

    def tls_established(self, protocol: str | None, cipher: str | None, peer_der: bytes | None,
                        local_der: bytes | None) -> None:
        pass

    def sending_message(self, record_id: int, message_id: str) -> None:
        pass

    def closed(self, reason: str) -> None:
        pass


def _no_log(connector: SendConnector, destination: str) -> SendLog | None:
    return None


@dataclass(frozen=True)
class SendContext:
    """What the client needs of its server and of the lab."""

    server: Server
    dns: DnsMap
    port_offset: int
    certificate: Callable[[SendConnector], CertificateFiles | None] = field(
        default=lambda connector: None)
    """The client certificate for a connector (None: none to present; with TlsCertificateName
    set, the certificate it names is missing and TLS fails)."""
    judge: Callable[[Sequence[bytes]], Awaitable[ChainVerdict]] | None = None
    """Judges the remote chain (leaf first, DER) with the lab's trust stores and CRLs (None:
    no trust store, every chain is untrusted)."""
    protocol_log: Callable[[SendConnector, str], SendLog | None] = field(default=_no_log)
    source: str | None = None
    """The address connections leave from (None: the server's Address; config/serviceaddr.py)."""


@dataclass(frozen=True, slots=True)
class SendResult:
    refused: list[tuple[str, Reply]]
    host: str  # the host name that took the message (its address for an [address] smart host)
    address: str
    reply: Reply | None = None  # the remote's reply to the data (None: every RCPT refused)
    dsn_passed: bool = False  # the remote advertised DSN and got the DSN parameters


class _HostFailed(Exception):
    """This destination did not take the message; try the next (the text is the reason;
    ``connect``: it could not be connected to)."""

    def __init__(self, reason: str, *, connect: bool = False) -> None:
        super().__init__(reason)
        self.connect = connect


class _TlsFailed(_HostFailed):
    """The TLS handshake failed (an opportunistic connection may retry without it)."""


def failover_reason(first: str, last_endpoint: str, *, connect_failure: bool = False) -> str:
    """The queue's reason after every destination failed (Exchange's LastError form,
    exchange.md §8.5)."""
    return failover(first, last_endpoint, connect_failure=connect_failure)


class SmtpSender:
    """Sends messages through send connectors for one server (module docstring)."""

    def __init__(self, context: SendContext) -> None:
        self.context = context
        self._tls: dict[str, ssl.SSLContext] = {}  # by client certificate thumbprint

    def _tls_context(self, cert: CertificateFiles | None) -> ssl.SSLContext:
        key = cert.thumbprint if cert is not None else ""
        ctx = self._tls.get(key)
        if ctx is None:
            ctx = self._tls[key] = client_context_starttls(cert)
        return ctx

    async def send(self, connector: SendConnector, domain: str, mail_from: str,
                   recipients: Sequence[str], data: bytes, *,
                   domain_secure: bool = False,
                   message: tuple[int, str] | None = None,
                   dsn: DsnParameters | None = None) -> SendResult:
        """Send one message to ``recipients`` (all in ``domain``) through ``connector``;
        ``message`` is its (RecordId, InternetMessageId) for the protocol log."""
        hosts, missing = destinations(connector, domain, self.context.dns)
        if not hosts:
            raise Unreachable(dns_failure(missing or domain))
        return await self.send_to(connector, domain, hosts, mail_from, recipients, data,
                                  domain_secure=domain_secure, message=message, dsn=dsn)

    async def send_to(self, connector: SendConnector, domain: str,
                      hosts: Sequence[Destination], mail_from: str,
                      recipients: Sequence[str], data: bytes, *,
                      domain_secure: bool = False,
                      message: tuple[int, str] | None = None,
                      dsn: DsnParameters | None = None) -> SendResult:
        """:meth:`send` to destinations already resolved (the Front End's outbound proxy: the
        hub resolved them and named them in XPROXYTO)."""
        # Not an Exchange server of the organization (exchange.md §12.5).
        data = send_firewall(data, exchange_of_organization=False)
        first: _HostFailed | None = None
        last = ""
        for destination in hosts:
            last = f"{destination.address}:{destination.port + self.context.port_offset}"
            try:
                try:
                    return await self._session(connector, domain, destination, mail_from,
                                               recipients, data, domain_secure, use_tls=True,
                                               message=message, dsn=dsn)
                except _TlsFailed:
                    if tls_required(connector, domain_secure):
                        raise
                # Opportunistic TLS failed: once more in clear (module docstring).
                return await self._session(connector, domain, destination, mail_from,
                                           recipients, data, domain_secure, use_tls=False,
                                           message=message, dsn=dsn)
            except _HostFailed as failed:
                first = first or failed
        assert first is not None
        raise Unreachable(failover_reason(str(first), last, connect_failure=first.connect))

    async def _session(self, connector: SendConnector, domain: str, destination: Destination,
                       mail_from: str, recipients: Sequence[str], data: bytes,
                       domain_secure: bool, *, use_tls: bool,
                       message: tuple[int, str] | None = None,
                       dsn: DsnParameters | None = None) -> SendResult:
        ctx = self.context
        port = destination.port + ctx.port_offset
        where = f"{destination.host or destination.address}[{destination.address}:{port}]"
        timeout = connector.connection_inactivity_timeout.total_seconds()
        log = ctx.protocol_log(connector, where) or _NoLog()
        helo_name = connector.fqdn or ctx.server.fqdn
        smtp = aiosmtplib.SMTP(hostname=destination.address, port=port,
                               local_hostname=helo_name,
                               source_address=(ctx.source or ctx.server.address, 0),
                               start_tls=False, use_tls=False, timeout=timeout)
        closed = "Local"
        try:
            try:
                greeting = await smtp.connect(timeout=min(timeout, CONNECT_TIMEOUT))
            except aiosmtplib.SMTPConnectResponseError as exc:
                closed = "Remote"
                raise _HostFailed(f"{exc.code} {' '.join(exc.message.split())}") from exc
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                closed = f"Remote ({summary(exc)})"
                raise _HostFailed(connection_failed(socket_error(exc)), connect=True) from exc
            log.watch(smtp, greeting)
            await self._hello(smtp, connector, helo_name)
            secured = False
            required = tls_required(connector, domain_secure)
            offered = smtp.supports_extension("starttls")
            if use_tls and offered and not connector.ignore_starttls:
                await self._starttls(smtp, connector, domain, destination, where,
                                     domain_secure, log)
                secured = True
                await self._hello(smtp, connector, helo_name)
            elif required:
                refused = judge_remote(domain, starttls_offered=False, tls_error=None,
                                       verdict=None) if domain_secure else None
                if refused is not None:  # policy/sendsecure.py's words
                    raise _HostFailed(f"{refused.text} ({where})")
                why = ("STARTTLS was not offered" if not offered or connector.ignore_starttls
                       else "TLS was not used")
                raise _HostFailed(
                    f"{why} by {where}, and send connector '{connector.name}' requires TLS "
                    "(SmtpSendTLSRequiredFailed)")
            await self._authenticate(smtp, connector, where, secured)
            if message is not None:
                log.sending_message(*message)
            passed = dsn if dsn is not None and smtp.supports_extension("dsn") else None
            result, final = await self._transaction(smtp, mail_from, recipients, data, passed)
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await smtp.quit()  # its reply is not logged (exchange.md §6.1)
                closed = "Remote"
            return SendResult(result, destination.host or destination.address,
                              destination.address, final, dsn_passed=passed is not None)
        except _HostFailed as failed:
            log.info(str(failed))
            raise
        except aiosmtplib.SMTPServerDisconnected as exc:
            closed = "Remote"
            raise _HostFailed(CONNECTION_DROPPED) from exc
        finally:
            smtp.close()
            log.closed(closed)

    async def _hello(self, smtp: aiosmtplib.SMTP, connector: SendConnector, name: str) -> None:
        """EHLO (HELO with ForceHELO); a 5xx reply to EHLO (500, 501, 502, 550: a server without
        extensions) is answered with HELO, as RFC 5321 §3.2 lets a client do and Exchange's
        send side does (exchange.md §8.2); a 4xx reply fails the host."""
        try:
            if connector.force_helo:
                await smtp.helo(hostname=name)
            else:
                try:
                    await smtp.ehlo(hostname=name)
                except aiosmtplib.SMTPHeloError as exc:
                    if not 500 <= exc.code < 600:
                        raise
                    await smtp.helo(hostname=name)
        except aiosmtplib.SMTPHeloError as exc:
            raise _HostFailed(f"{exc.code} {' '.join(exc.message.split())}") from exc
        except (OSError, TimeoutError) as exc:
            raise _HostFailed(CONNECTION_DROPPED) from exc

    async def _starttls(self, smtp: aiosmtplib.SMTP, connector: SendConnector, domain: str,
                        destination: Destination, where: str, domain_secure: bool,
                        log: SendLog) -> None:
        cert = self.context.certificate(connector)
        if cert is None and connector.tls_certificate_name:
            raise _HostFailed("454 4.7.5 The certificate specified in TlsCertificateName of "
                              "the SendConnector could not be found.")
        try:
            await smtp.starttls(tls_context=self._tls_context(cert),
                                           server_hostname=destination.host)
        except aiosmtplib.SMTPResponseException as exc:
            raise _TlsFailed(f"STARTTLS refused by {where}: {exc.code} "
                             f"{' '.join(exc.message.split())}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError) as exc:
            raise _TlsFailed(f"TLS negotiation with {where} failed: {summary(exc)}") from exc
        ssl_object = smtp.get_transport_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        cipher = ssl_object.cipher() if ssl_object is not None else None
        log.tls_established(ssl_object.version() if ssl_object is not None else None,
                            cipher[0] if cipher else None, der,
                            cert.load_der() if cert is not None else None)
        needs_chain = judge_remote_certificate(connector, domain, None, (),
                                               domain_secure=domain_secure) is not None
        if not needs_chain:
            return
        status: ChainStatus | None = None
        names: tuple[str, ...] = ()
        verdict: ChainVerdict | None = None
        if der:
            if self.context.judge is None:
                status = ChainStatus.UNTRUSTED_ROOT
                verdict = ChainVerdict(status)
            else:
                verdict = await self.context.judge([der])
                status, names = verdict.status, verdict.names
            log.info(f"Remote certificate chain validation status: '{status.value}'")
        if domain_secure:  # policy/sendsecure.py: the recipient's domain, whatever TlsAuthLevel
            failure = judge_remote(domain, starttls_offered=True, tls_error=None,
                                   verdict=verdict)
            if failure is not None:
                raise _HostFailed(f"{failure.text} ({where})")
            return
        problem = judge_remote_certificate(connector, domain, status, names,
                                           domain_secure=domain_secure)
        if problem is not None:
            level = "Domain Security" if domain_secure else \
                f"TlsAuthLevel {connector.tls_auth_level.value if connector.tls_auth_level else ''}"
            raise _HostFailed(f"TLS with {where}: {problem} ({level})")

    async def _authenticate(self, smtp: aiosmtplib.SMTP, connector: SendConnector, where: str,
                            secured: bool) -> None:
        mechanism = connector.smart_host_auth_mechanism
        if mechanism not in (SmartHostAuthMechanism.BASIC_AUTH,
                             SmartHostAuthMechanism.BASIC_AUTH_REQUIRE_TLS):
            return
        credential = connector.authentication_credential
        assert credential is not None  # the config's rules (validate/sendconnector.py)
        if mechanism is SmartHostAuthMechanism.BASIC_AUTH_REQUIRE_TLS and not secured:
            raise _HostFailed(f"{where} is not secured by TLS, and send connector "
                              f"'{connector.name}' authenticates with BasicAuthRequireTLS")
        methods = smtp.supported_auth_methods
        if not smtp.supports_extension("auth") or not {"login", "plain"} & set(methods):
            raise _HostFailed(f"{where} offers no basic authentication (AUTH LOGIN or PLAIN), "
                              f"which send connector '{connector.name}' uses")
        try:
            if "login" in methods:
                await smtp.auth_login(credential.user_name, credential.password)
            else:
                await smtp.auth_plain(credential.user_name, credential.password)
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise _HostFailed(f"{exc.code} {' '.join(exc.message.split())}") from exc

    async def _transaction(self, smtp: aiosmtplib.SMTP, mail_from: str,
                           recipients: Sequence[str], data: bytes,
                           dsn: DsnParameters | None = None,
                           ) -> tuple[list[tuple[str, Reply]], Reply | None]:
        utf8 = not (mail_from.isascii() and all(r.isascii() for r in recipients))
        options = [f"SIZE={len(data)}"] if smtp.supports_extension("size") else []
        encoding = "ascii"
        if utf8:
            if not smtp.supports_extension("smtputf8"):
                raise Unsendable("the next hop does not offer SMTPUTF8")
            options.append("SMTPUTF8")
            encoding = "utf-8"
        if dsn is not None:  # the remote offers DSN: the request travels on
            options.extend(dsn.mail)
        try:
            await smtp.mail(mail_from, options=options, encoding=encoding)
        except ValueError as exc:
            raise Unsendable(str(exc)) from exc
        refused: list[tuple[str, Reply]] = []
        for rcpt in recipients:
            rcpt_options = list(dsn.of(rcpt)) if dsn is not None else []
            try:
                await smtp.rcpt(rcpt, options=rcpt_options, encoding=encoding)
            except aiosmtplib.SMTPRecipientRefused as exc:
                refused.append((rcpt, parse_reply(exc.code, [" ".join(exc.message.split())])))
            except ValueError as exc:
                raise Unsendable(str(exc)) from exc
        if len(refused) == len(recipients):
            with contextlib.suppress(aiosmtplib.SMTPException):
                await smtp.rset()
            return refused, None
        response = await smtp.data(data)
        return refused, parse_reply(response.code, [" ".join(response.message.split())])

