"""The SMTP send protocol log (``SmtpSend``): the client side of every hop (exchange.md §6.1).

The file handling is :class:`~exchsim.logs.protocol.ProtocolLog`'s (``SENDyyyymmddHH-n.LOG``,
``#Log-type: SMTP Send Protocol Log``, the same ``#Fields`` line, rotation, the size and age
limits, CSV escaping); this module adds what differs on the sending side:

- The connector-id is the send connector's name alone (no ``SERVER\\`` prefix), and for the
  hops inside the organization the implicit connector's, ``Intra-Organization SMTP Send
  Connector`` (:data:`INTRA_ORG_CONNECTOR`).
- ``>`` is what this server sent (commands), ``<`` what it received (replies, a multi-line
  reply flattened as the receive log flattens it), ``*`` information, ``+`` / ``-`` the
  connection. A session starts with ``*,,attempting to connect`` (no local endpoint yet), then
  ``+`` once the connection stands.
- Before the MAIL command of each message, ``*,,sending message with RecordId <n> and
  InternetMessageId <id>`` (text in the context field).
- TLS: the certificate this server presented (``Sending certificate ...``, when it presented
  one), the remote one (``Remote certificate ...``), and ``TLS protocol SP_PROT_TLS1_2_CLIENT
  negotiation succeeded using ...``; a failed handshake ``TLS negotiation failed with error
  <name>``.
- Secrets never reach the file: ``AUTH`` and ``X-EXPS`` are written with their mechanism only
  and ``<authentication information>`` for the rest, the lines of an authentication exchange
  (AUTH LOGIN's user name and password) as ``<authentication information>``, the server's
  ``334`` challenges as ``334 <authentication response>`` and the blob of ``235 <blob>``
  (EXCHANGEAUTH's proof) as ``235 <authentication information>``.

A client uses one :class:`SendLogSession` per connection: ``attempting()``, ``connected(local)``,
``sent(command)`` / ``sent_redacted()``, ``received(reply)``, ``tls_established(...)`` /
``tls_failed(error)``, ``sending_message(record_id, message_id)``, ``info(data, context)`` and
``disconnect(context)`` (written once, whatever calls it again). :meth:`SendProtocolLog.session`
gives one, or None when the connector's level is ``None``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from exchsim.config.enums import ProtocolLoggingLevel
from exchsim.config.syntax import format_endpoint as endpoint
from exchsim.logs.protocol import ProtocolLog, ProtocolLogSession, flatten_reply
from exchsim.policy import schannel
from exchsim.smtp.message import SENDING_CERTIFICATE, LocalCertificate
from exchsim.tls.validation import describe

INTRA_ORG_CONNECTOR = "Intra-Organization SMTP Send Connector"
REDACTED = "<authentication information>"
CHALLENGE = "334 <authentication response>"
REMOTE_CERTIFICATE = ("Remote certificate Subject Issuer name Serial number Thumbprint "
                      "Not before Not after Subject alternate names")
DEFAULT_GROUP = schannel.GROUPS[0]
"""The key exchange group written when the TLS library cannot say which one was negotiated
(Python's ``ssl`` before 3.13): the first group a Windows client offers (X25519), which every
exchsim listener chooses when it is offered."""


def redact_command(line: str) -> tuple[str, bool]:
    """(what the log shows of a command, whether it opens an authentication exchange)."""
    verb, _, rest = line.partition(" ")
    if verb.upper() not in ("AUTH", "X-EXPS"):
        return line, False
    words = rest.split()
    if not words:
        return verb, True
    mechanism = words[0]
    if mechanism.upper() == "EXCHANGEAUTH" and len(words) > 1:
        mechanism += " " + words[1]  # the hash name, not a secret
        words = words[1:]
    shown = f"{verb} {mechanism}"
    return (f"{shown} {REDACTED}" if len(words) > 1 else shown), True

__all__ = ["INTRA_ORG_CONNECTOR", "SendLogSession", "SendProtocolLog", "endpoint",
           "redact_command"]


class SendLogSession(ProtocolLogSession):
    """One client connection's lines in the send log (module docstring)."""

    def __init__(self, log: ProtocolLog, connector_id: str, session_id: str,
                 remote_endpoint: str, local_certificate: LocalCertificate | None = None) -> None:
        super().__init__(log, connector_id, session_id, "", remote_endpoint)
        self.local_certificate = local_certificate
        self._in_auth = False
        self.closed = False

    @property
    def in_auth(self) -> bool:
        """An AUTH / X-EXPS exchange is under way: what is sent next is a secret."""
        return self._in_auth

    def attempting(self) -> None:
        self.info("", "attempting to connect")

    def connected(self, local_endpoint: str, when: datetime.datetime | None = None) -> None:
        self.local_endpoint = local_endpoint
        self.connect(when)

    def sent(self, line: str) -> None:
        shown, auth = redact_command(line)
        self._in_auth = auth
        self._event(">", shown)

    def sent_redacted(self) -> None:
        """A line of an authentication exchange (a user name, a password, a response)."""
        self._event(">", REDACTED)

    def received(self, line: str) -> None:
        """A reply, as read: its lines joined with LF (``250-a\\n250 b``) or one line."""
        text = flatten_reply(line)
        if self._in_auth:
            code, _, rest = text.partition(" ")
            if code == "334":
                text = CHALLENGE
            elif code == "235" and rest and not rest[:1].isdigit():
                text = f"235 {REDACTED}"  # a proof blob rather than "2.7.0 ..."
            if code != "334":
                self._in_auth = False
        self._event("<", text)

    def tls_established(self, protocol: str | None, cipher: str | None, group: str | None,
                        peer_der: bytes | None, *, presented: bool,
                        local_der: bytes | None = None) -> None:
        """The handshake's lines: the certificate this server presented (``local_der``, or
        with ``presented`` the server's own), the remote certificate, the negotiated protocol
        and algorithms as Schannel names them."""
        cert = self.local_certificate
        if local_der:
            self.info(" " + describe(local_der), SENDING_CERTIFICATE)
        elif presented and cert is not None:
            self.info(*cert.log_line())
        if peer_der:
            self.info(" " + describe(peer_der), REMOTE_CERTIFICATE)
        self.info("", schannel.negotiated_line(
            protocol, cipher, group or DEFAULT_GROUP, cert.key_bits if cert else 2048,
            side="CLIENT"))

    def tls_failed(self, error: str) -> None:
        self.info("", f"TLS negotiation failed with error {schannel.failure_name(error)}")

    def sending_message(self, record_id: int, message_id: str) -> None:
        self.info("", f"sending message with RecordId {record_id} and InternetMessageId "
                      f"{message_id}")

    def disconnect(self, context: str = "Local") -> None:
        if not self.closed:
            self.closed = True
            super().disconnect(context)


class SendProtocolLog:
    """A server's send log and the sessions of its clients."""

    def __init__(self, log: ProtocolLog, next_session_id: Callable[[], str],
                 local_certificate: LocalCertificate | None = None) -> None:
        assert log.kind == "SmtpSend"
        self.log = log
        self.next_session_id = next_session_id
        self.local_certificate = local_certificate

    def session(self, connector_id: str, host: str, port: int,
                level: ProtocolLoggingLevel) -> SendLogSession | None:
        """A new session's log towards ``host:port``, or None when ``level`` is None."""
        if level is ProtocolLoggingLevel.NONE:
            return None
        return SendLogSession(self.log, connector_id, self.next_session_id(),
                              endpoint(host, port), self.local_certificate)

    def close(self) -> None:
        self.log.close()

