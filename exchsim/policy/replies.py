"""Every SMTP reply exchsim sends, written once.

Texts come from ``docs/exchange.md`` §1 and §2 (the status column there says how sure we
are). Session code never contains a reply literal: it picks a constant or calls a builder here.

Decisions on the unconfirmed items of exchange.md §9 (each used below):
- Anonymous submit denial (exchange.md §9.1): ``530 5.7.1 Client was not authenticated`` for
  every version.
- Send-as denial (exchange.md §9.2): ``550 5.7.1 Client does not have permissions to send as
  this sender`` (the text observed on-prem) for every version.
- STARTTLS when not offered (exchange.md §9.11): answered as an unrecognized command
  (``500 5.3.3``).
- Relay denial: ``550 5.7.1 Unable to relay`` for 15.0, ``550 5.7.54 SMTP; Unable to relay
  recipient in non-accepted domain`` for 15.1 and 15.2 (both observed).
- Unknown verb: 15.2 appends `` '<VERB>'`` (observed on 2019); 15.0/15.1 do not. A verb that
  is not printable ASCII is quoted as ``'unknown'`` (seen only on Exchange Online,
  exchange.md §1.8.1).
- Proxy failure when the hub cannot be reached: ``PRX4`` (the one seen live, exchange.md §2.5).
- The Message-ID echoed in the end-of-data reply (exchange.md §1.8, §2.5) comes from the
  client's header, which may be as long as MaxHeaderSize allows. The sources show only short
  ids; exchsim echoes at most :data:`ECHOED_ID_MAX` characters (a longer id is cut and ends in
  ``...``) and shows control characters as ``?``, so the reply is one line of at most about
  1,400 bytes (a 256-character id of 4-byte UTF-8 and a 255-character host name), and within
  RFC 5321's 512 octets (§4.5.3.1.5) for an ASCII id and a usual host name. The message keeps
  its header untouched; only the echo is shortened.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from exchsim.policy.dialect import Dialect


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply. ``text`` may hold several lines separated by ``\\n``."""

    code: int
    enhanced: str | None
    text: str
    close: bool = False

    def lines(self, enhanced_codes: bool = True) -> list[str]:
        parts = self.text.split("\n")
        if self.enhanced and enhanced_codes:
            parts[0] = f"{self.enhanced} {parts[0]}"
        out = []
        for i, part in enumerate(parts):
            sep = " " if i == len(parts) - 1 else "-"
            out.append(f"{self.code}{sep}{part}")
        return out

    def render(self, enhanced_codes: bool = True) -> str:
        """The reply as it goes on the wire, without the final CRLF."""
        return "\r\n".join(self.lines(enhanced_codes))

    def closing(self) -> Reply:
        return Reply(self.code, self.enhanced, self.text, close=True)

    @property
    def is_error(self) -> bool:
        return self.code >= 400


def _r(code: int, enhanced: str | None, text: str, close: bool = False) -> Reply:
    return Reply(code, enhanced, text, close)


# --- session / greeting (exchange.md §2.1) --------------------------------------------------------
SERVICE_NOT_AVAILABLE = _r(421, "4.3.2", "Service not available", close=True)
SERVICE_NOT_ACTIVE = _r(421, "4.3.2", "Service not active", close=True)
TOO_MANY_CONNECTIONS_SERVER = _r(
    421,
    "4.3.2",
    "The maximum number of concurrent server connections has exceeded a limit, "
    "closing transmission channel",
    close=True,
)
TOO_MANY_CONNECTIONS_SOURCE = _r(
    421,
    "4.3.2",
    "The maximum number of concurrent connections has exceeded a limit, "
    "closing transmission channel",
    close=True,
)
MESSAGE_PARTIAL_NOT_SUPPORTED = _r(
    554, "5.6.1", "Messages of type message/partial are not supported"
)
MESSAGE_RATE_EXCEEDED = _r(
    421,
    "4.4.2",
    "Message submission rate for this client has exceeded the configured limit",
    close=True,
)
EHLO_REQUIRES_DOMAIN = _r(501, "5.0.0", "EHLO requires domain address")
HELO_REQUIRES_DOMAIN = _r(501, "5.0.0", "HELO requires domain address")
INVALID_DOMAIN = _r(501, "5.5.4", "Invalid domain name")
OK = _r(250, "2.0.0", "OK")
RESETTING = _r(250, "2.0.0", "Resetting")
CLOSING = _r(221, "2.0.0", "Service closing transmission channel", close=True)
HELP = _r(
    214,
    None,
    "This server supports the following commands:\n"
    "HELO EHLO STARTTLS RCPT DATA RSET MAIL QUIT HELP AUTH BDAT",
)
CANNOT_VRFY = _r(252, "2.1.5", "Cannot VRFY user")
NOT_IMPLEMENTED = _r(502, "5.3.3", "Command not implemented")
COMMAND_TOO_LONG = _r(500, "5.5.2", "Command too long", close=True)
SEND_HELLO_FIRST = _r(503, "5.5.2", "Send hello first")
NEED_MAIL = _r(503, "5.5.2", "Need mail command")
NEED_RCPT = _r(503, "5.5.2", "Need rcpt command")
SENDER_ALREADY_SPECIFIED = _r(503, "5.5.2", "Sender already specified")
BAD_SEQUENCE = _r(503, "5.5.1", "Bad sequence of commands")
INVALID_ARGUMENTS = _r(501, "5.5.4", "Invalid arguments")
UNRECOGNIZED_PARAMETER = _r(501, "5.5.4", "Unrecognized parameter")
UNSUPPORTED_BODY = _r(501, "5.5.4", "Unsupported BODY type")
INVALID_SENDER_ADDRESS = _r(501, "5.1.7", "Invalid address")
INVALID_RECIPIENT_ADDRESS = _r(501, "5.1.3", "Invalid address")
TOO_MANY_ERRORS = _r(
    421, "4.7.0", "Too many errors on this connection, closing transmission channel", close=True
)
TIMEOUT_INACTIVITY = _r(451, "4.7.0", "Timeout waiting for client input", close=True)
TIMEOUT_CONNECTION = _r(421, "4.4.1", "Connection timed out", close=True)

# --- TLS / authentication (exchange.md §2.2) ------------------------------------------------------
TLS_READY = _r(220, "2.0.0", "SMTP server ready")
ONLY_ONE_STARTTLS = _r(503, "5.5.2", "Only one STARTTLS command can be issued per session")
TLS_INIT_FAILED = _r(554, "5.7.3", "Unable to initialize security subsystem")
STARTTLS_REQUIRED = _r(451, "5.7.3", "STARTTLS is required to send mail", close=True)
AUTH_LOGIN_USERNAME = _r(334, None, "VXNlcm5hbWU6")
AUTH_LOGIN_PASSWORD = _r(334, None, "UGFzc3dvcmQ6")
AUTH_NTLM_SUPPORTED = _r(334, None, "NTLM supported")
AUTH_GSSAPI_SUPPORTED = _r(334, None, "GSSAPI supported")
AUTH_OK = _r(235, "2.7.0", "Authentication successful")
AUTH_FAILED = _r(535, "5.7.3", "Authentication unsuccessful")
AUTH_UNRECOGNIZED = _r(504, "5.7.4", "Unrecognized authentication type")
AUTH_CANCELLED = _r(501, "5.5.4", "Authentication cancelled")
AUTH_ALREADY = _r(503, "5.5.2", "Auth command already specified")
AUTH_TEMPORARY_FAILURE = _r(454, "4.7.0", "Temporary authentication failure")
EXCHANGE_AUTH_IMPOSSIBLE = _r(451, "5.7.3", "Cannot achieve Exchange Server authentication")
# Domain Security at MAIL FROM (exchange.md §2.3, §4.2); none of them closes the connection.
SECURE_DOMAIN_DISALLOWED = _r(
    451, "4.7.3", "The admin has temporarily disallowed this secure domain"
)
SECURE_DOMAIN_NOT_AUTHENTICATED = _r(530, "5.7.1", "Not authenticated")
CERTIFICATE_VALIDATION_FAILURE = _r(454, "4.7.5", "Certificate validation failure")

# --- authorization / relay / sender (exchange.md §2.3) --------------------------------------------
NOT_AUTHENTICATED = _r(530, "5.7.1", "Client was not authenticated", close=True)
NO_SUBMIT_PERMISSION = _r(
    550, "5.7.1", "Client does not have permissions to submit to this server", close=True
)
UNABLE_TO_RELAY_2013 = _r(550, "5.7.1", "Unable to relay")
UNABLE_TO_RELAY = _r(550, "5.7.54", "SMTP; Unable to relay recipient in non-accepted domain")
SEND_AS_DENIED = _r(550, "5.7.1", "Client does not have permissions to send as this sender")
ANONYMOUS_SEND_AS_DENIED = _r(
    550, "5.7.1", "Anonymous client does not have permissions to send as this sender"
)
NOT_AUTHORIZED = _r(504, "5.7.1", "Not authorized")
COMMAND_NOT_ALLOWED = _r(550, "5.7.1", "Command not allowed")

# --- limits / content (exchange.md §2.4) ----------------------------------------------------------
MESSAGE_TOO_BIG = _r(552, "5.3.4", "Message size exceeds fixed maximum message size")
HEADER_TOO_BIG = _r(552, "5.3.4", "Header size exceeds fixed maximum size")
TOO_MANY_RECIPIENTS = _r(452, "4.5.3", "Too many recipients")
HOP_COUNT_EXCEEDED = _r(554, "5.4.6", "Hop count exceeded - possible mail loop")
BARE_LINEFEEDS = _r(554, "5.6.0", "Invalid message content, contains bare linefeeds")
INVALID_CONTENT = _r(554, "5.6.0", "Invalid message content")
IO_ERROR = _r(451, "4.3.0", "I/O error reading message body")
# exchsim's answer when its own code fails mid-session (a bug, logged with its traceback).
LOCAL_ERROR = _r(451, "4.3.0", "Local error in processing", close=True)
INSUFFICIENT_RESOURCES = _r(452, "4.3.1", "Insufficient system resources")

# The diagnostic an NDR gives for a recipient of an Authoritative domain with no mailbox
# (exchange.md §8.1, §12.6).
RECIPIENT_NOT_FOUND = _r(550, "5.1.1", "RESOLVER.ADR.RecipNotFound; not found")
# The diagnostic of a message still undelivered after MessageExpirationTimeout (exchange.md §8.4;
# Exchange writes it with the 550 code and the 4.4.7 status).
MESSAGE_EXPIRED = _r(550, "4.4.7", "QUEUE.Expired; message expired")
# The diagnostic of a delay DSN, for each recipient still waiting after DelayNotificationTimeout
# (exchange.md §12.6).
MESSAGE_DELAYED = _r(400, "4.4.7", "Message delayed")

# The diagnostic of a message an admin removed from a queue (Remove-Message, exchange.md §8.5;
# the 4.3.2 status is documented, the text is exchsim's choice in QUEUE.Expired's pattern).
QUEUE_ADMIN_REMOVED = _r(550, "4.3.2", "QUEUE.Admin; message deleted by administrative action")
# The diagnostic when an address in the queue cannot be put on an SMTP command line at all
# (control characters, spaces, angle brackets): RFC 3463 X.1.3, bad address syntax, with the
# text of the RCPT refusal. Exchange's own NDR for this case is not documented (exchange.md §8.4).
UNSENDABLE_ADDRESS = _r(550, "5.1.3", "Invalid address")
# ... for a message over the organization's MaxReceiveSize or MaxSendSize (exchange.md §8.3 and
# exchange.md §12.6; Exchange 2007's KB 960775 shows the same text for MaxSendSize).
RECIPIENT_SIZE_LIMIT = _r(550, "5.2.3", "RESOLVER.RST.RecipSizeLimit; message too large for this "
                          "recipient")
# ... for a message that a send connector's address space matches but whose MaxMessageSize it
# exceeds, with no other connector to take it (exchange.md §8.2: Routing.SizeLimit in the NDR's
# diagnostic; the rest of the text is exchsim's choice).
ROUTING_SIZE_LIMIT = _r(550, "5.3.4", "ROUTING.SizeLimit; message size exceeds fixed maximum "
                        "size for route")

# --- success (exchange.md §2.5) -------------------------------------------------------------------
SENDER_OK = _r(250, "2.1.0", "Sender OK")
RECIPIENT_OK = _r(250, "2.1.5", "Recipient OK")
START_MAIL_INPUT = _r(354, None, "Start mail input; end with <CRLF>.<CRLF>")
XSESSIONPARAMS_OK = _r(250, "2.0.0", "XSESSIONPARAMS OK")
XEXCH50_SEND_DATA = _r(354, None, "Send binary data")
XEXCH50_OK = _r(250, "2.0.0", "XEXCH50 OK")
XPROXYFROM_ACCEPTED = _r(250, None, "XProxyFrom accepted")
XPROXY_ACCEPTED_AUTHENTICATED = _r(250, None, "XProxy accepted and authenticated")
XPROXYTO_ACCEPTED = _r(250, None, "XProxyTo accepted")

# The last line the Outbound Proxy Frontend adds to a remote's positive reply when the remote
# offered DSN and got the message's DSN request (exchsim's own, exchange.md §7.4): the hub then
# sends no relay DSN, as after a direct send to such a remote.
DSN_PASSED_ON_LINE = "X-DSN-PASSED-ON"


def with_dsn_passed_on(reply: Reply) -> Reply:
    """The Front End's answer to the hub: the remote's reply and :data:`DSN_PASSED_ON_LINE`."""
    return Reply(reply.code, reply.enhanced, f"{reply.text}\n{DSN_PASSED_ON_LINE}", reply.close)


def dsn_passed_on(reply: Reply) -> tuple[Reply, bool]:
    """The hub's reading of the Front End's answer: the remote's reply, and whether the Front
    End passed the DSN request on (:func:`with_dsn_passed_on`)."""
    head, sep, last = reply.text.rpartition("\n")
    if sep and last.strip() == DSN_PASSED_ON_LINE:
        return Reply(reply.code, reply.enhanced, head, reply.close), True
    return reply, False


def banner(fqdn: str, now: datetime.datetime, *, uppercase: bool = False) -> Reply:
    """``220 <fqdn> Microsoft ESMTP MAIL Service ready at <date>`` (exchange.md §1.1).

    ``now`` is the server's local time with its offset; the day of month is not zero padded.
    """
    text = f"Microsoft ESMTP MAIL Service ready at {rfc2822_date(now)}"
    if uppercase:
        text = text.upper()
    return Reply(220, None, f"{fqdn} {text}")


def custom_banner(banner_text: str) -> Reply:
    """A connector's Banner: it starts with ``220``; several lines are allowed."""
    body = banner_text[3:].lstrip(" -")
    return Reply(220, None, body)


def rfc2822_date(now: datetime.datetime) -> str:
    """``Fri, 5 Aug 2016 16:24:41 -0700``: day not zero padded, numeric offset."""
    key = (now.replace(microsecond=0, tzinfo=None), now.utcoffset())
    cached = _last_date.get(key)
    if cached is not None:
        return cached  # banners and Received headers of the same second
    offset = now.strftime("%z") or "+0000"
    text = f"{now.strftime('%a')}, {now.day} {now.strftime('%b %Y %H:%M:%S')} {offset}"
    _last_date.clear()  # one entry: the current second
    _last_date[key] = text
    return text


_last_date: dict[tuple[datetime.datetime, datetime.timedelta | None], str] = {}


def helo(fqdn: str, client_ip: str) -> Reply:
    return Reply(250, None, f"{fqdn} Hello [{client_ip}]")


def ehlo(fqdn: str, client_ip: str, keywords: list[str]) -> Reply:
    return Reply(250, None, "\n".join([f"{fqdn} Hello [{client_ip}]", *keywords]))


UNKNOWN_VERB = "unknown"  # quoted for a verb that is not printable ASCII (exchange.md §1.8.1)


def unrecognized(verb: str, dialect: Dialect) -> Reply:
    """``500 5.3.3 Unrecognized command`` (15.2 appends the verb in quotes, exchange.md §1.8).

    The verb is quoted only when it is printable ASCII (``!`` to ``~``); an empty verb, or one
    with a control character, a byte of binary or a non-ASCII letter, is quoted as
    ``'unknown'``, as Exchange Online does (exchange.md §1.8.1). The client's bytes are never
    echoed: a lone LF among them would otherwise split the reply.
    """
    if dialect.unrecognized_names_verb:
        shown = verb if verb and all("!" <= c <= "~" for c in verb) else UNKNOWN_VERB
        return Reply(500, "5.3.3", f"Unrecognized command '{shown}'")
    return Reply(500, "5.3.3", "Unrecognized command")


def unable_to_relay(dialect: Dialect) -> Reply:
    return UNABLE_TO_RELAY_2013 if dialect.relay_refusal_2013 else UNABLE_TO_RELAY


def chunk_received(octets: int) -> Reply:
    return Reply(250, "2.6.0", f"CHUNK received OK, {octets} octets")


ECHOED_ID_MAX = 256  # characters of a Message-ID echoed in the queued reply


def echoed_id(message_id: str) -> str:
    """The Message-ID as the queued reply shows it: one short line (see the docstring above)."""
    text = "".join("?" if ord(c) < 0x20 or ord(c) == 0x7F else c
                   for c in message_id[:ECHOED_ID_MAX + 1])
    if len(text) > ECHOED_ID_MAX:
        text = text[:ECHOED_ID_MAX - 3] + "..."
    return text


def queued(
    message_id: str,
    internal_id: int,
    hostname: str,
    *,
    size: int,
    seconds: float,
    dialect: Dialect,
) -> Reply:
    """The end-of-data acceptance (exchange.md §1.8, §2.5), the id bounded by ``echoed_id``.

    2016+ add ``<bytes> bytes in <s.sss>, <rate> KB/sec``. Exchange formats the numbers with
    the server locale; exchsim uses the invariant (en-US) form, ``0.102`` and ``109.173``.
    """
    head = f"{echoed_id(message_id)} [InternalId={internal_id}, Hostname={hostname}]"
    if not dialect.queued_with_rate:
        return Reply(250, "2.6.0", f"{head} Queued mail for delivery")
    seconds = max(seconds, 0.0)
    rate = (size / 1024.0) / seconds if seconds > 0 else float(size) / 1024.0 * 1000.0
    return Reply(
        250,
        "2.6.0",
        f"{head} {size} bytes in {seconds:.3f}, {rate:.3f} KB/sec Queued mail for delivery",
    )


def auth_challenge(token: str) -> Reply:
    """``334 <base64>``: the next step of an AUTH exchange (NTLM's challenge, exchange.md §1.7)."""
    return Reply(334, None, token)


def exchange_auth_ok(blob: str) -> Reply:
    """``235 <blob>``: X-EXPS EXCHANGEAUTH accepted, with the server's proof (exchange.md §1.7)."""
    return Reply(235, None, blob)


def proxy_failure(n: int) -> Reply:
    """The Front End's reply when it cannot hand the message to a hub (exchange.md §2.5, §7.2)."""
    return Reply(451, "4.7.0", f"Temporary server error. Please try again later. PRX{n}")
