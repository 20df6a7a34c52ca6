"""The checks of a mail transaction, in Exchange's order (exchange.md §1.9).

Each check takes the session's facts and returns a :class:`Decision`: the reply to send and
why. Refusals are values, never exceptions. Nothing here reads a clock, a socket or a file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from exchsim.config.model import (
    DomainType,
    Mailbox,
    Organization,
    ReceiveConnector,
    Server,
)
from exchsim.config.vocabulary import (
    domain_of as domain_of,
    match_accepted_domain as match_accepted_domain,
)
from exchsim.policy import replies
from exchsim.policy.dialect import Dialect
from exchsim.policy.permissions import Identity, IdentityKind, Right, Rights
from exchsim.policy.replies import Reply


@dataclass(frozen=True, slots=True)
class Decision:
    reply: Reply
    reason: str

    @property
    def accepted(self) -> bool:
        return self.reply.code < 400


def accept(reply: Reply, reason: str = "accepted") -> Decision:
    return Decision(reply, reason)


def refuse(reply: Reply, reason: str) -> Decision:
    return Decision(reply, reason)


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What a decision may depend on; the session builds it, the core only reads it."""

    org: Organization
    server: Server
    connector: ReceiveConnector
    identity: Identity
    rights: Rights
    tls_active: bool = False
    mailbox: Mailbox | None = None
    local_servers: frozenset[str] = field(default_factory=frozenset)  # org server FQDNs

    def has(self, right: Right) -> bool:
        return right in self.rights


# --- MAIL / RCPT argument syntax (exchange.md §1.8) -----------------------------------------------

_MAIL_PARAMS = {"SIZE", "BODY", "RET", "ENVID", "AUTH", "SMTPUTF8"}
_INTERNAL_MAIL_PARAMS = {"XATTRDIRECT", "XATTRORGID", "XMESSAGECONTEXT", "XSHADOW"}
_RCPT_PARAMS = {"NOTIFY", "ORCPT", "RDST", "ORAR"}
_BODY_TYPES = {"7BIT", "8BITMIME", "BINARYMIME"}
_ADDRESS = re.compile(r'^(?:"[^"\r\n]*"|[^\s@<>()\[\]\\,;:"]+)@[A-Za-z0-9.\-\[\]:_]+$')
# Control characters (C0, DEL, C1) are in no RFC 5321 / 6531 address, quoted or not.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class MailCommand:
    address: str  # "" for the null sender
    params: dict[str, str | None]

    @property
    def size(self) -> int | None:
        value = self.params.get("SIZE")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def body(self) -> str:
        return (self.params.get("BODY") or "7BIT").upper()


@dataclass(frozen=True, slots=True)
class RcptCommand:
    address: str
    params: dict[str, str | None]


def _split_path(arg: str, keyword: str) -> tuple[str, str] | None:
    """``FROM:<a@b> SIZE=1`` -> ("a@b", "SIZE=1"); angle brackets optional (exchange.md §1.8)."""
    head, sep, rest = arg.partition(":")
    if not sep or head.strip().upper() != keyword:
        return None
    rest = rest.strip()
    if rest.startswith("<"):
        end = rest.find(">")
        if end < 0:
            return None
        return rest[1:end].strip(), rest[end + 1 :].strip()
    address, _, params = rest.partition(" ")
    return address.strip(), params.strip()


def _params(text: str) -> dict[str, str | None] | None:
    out: dict[str, str | None] = {}
    for token in text.split():
        name, sep, value = token.partition("=")
        if not name:
            return None
        out[name.upper()] = value if sep else None
    return out


def _strip_source_route(address: str) -> str:
    # "@a,@b:user@dom" -> "user@dom" (RFC 5321 §4.1.2 allows and ignores source routes).
    if address.startswith("@") and ":" in address:
        return address.split(":", 1)[1]
    return address


def valid_address(address: str) -> bool:
    """Syntax only. Bytes that are not UTF-8 (kept as surrogates by the session) never are."""
    if not address.isascii():
        try:
            address.encode("utf-8")
        except UnicodeEncodeError:
            return False
    if _CONTROL.search(address):
        return False
    return bool(_ADDRESS.match(address)) and len(address) <= 571


def _path_and_params(arg: str | None, keyword: str) -> tuple[str, dict[str, str | None]] | None:
    """``FROM:<path> PARAMS`` / ``TO:<path> PARAMS``, source route dropped; None when malformed."""
    split = _split_path(arg or "", keyword)
    if split is None:
        return None
    params = _params(split[1])
    if params is None:
        return None
    return _strip_source_route(split[0]), params


def parse_mail(arg: str | None) -> MailCommand | Reply:
    parsed = _path_and_params(arg, "FROM")
    if parsed is None:
        return replies.INVALID_ARGUMENTS
    address, params = parsed
    if address and not valid_address(address):
        return replies.INVALID_SENDER_ADDRESS
    if not address.isascii() and "SMTPUTF8" not in params:
        # exchange.md §2.1 gives the SMTPUTF8 family of replies without a confirmed text;
        # exchsim answers a UTF-8 address outside an SMTPUTF8 transaction with the confirmed
        # "Invalid address".
        return replies.INVALID_SENDER_ADDRESS
    for name, value in params.items():
        if name not in _MAIL_PARAMS | _INTERNAL_MAIL_PARAMS:
            return replies.UNRECOGNIZED_PARAMETER
        if name == "SIZE" and (value is None or not value.isdigit()):
            return replies.INVALID_ARGUMENTS
        if name == "BODY" and (value or "").upper() not in _BODY_TYPES:
            return replies.UNSUPPORTED_BODY
        if name == "RET" and (value or "").upper() not in {"FULL", "HDRS"}:
            return replies.INVALID_ARGUMENTS
    return MailCommand(address, params)


def parse_rcpt(arg: str | None, *, smtputf8: bool = False) -> RcptCommand | Reply:
    """RCPT TO; ``smtputf8``: the transaction's MAIL FROM carried SMTPUTF8 (RFC 6531)."""
    parsed = _path_and_params(arg, "TO")
    if parsed is None:
        return replies.INVALID_ARGUMENTS
    address, params = parsed
    if not address or not valid_address(address):
        return replies.INVALID_RECIPIENT_ADDRESS
    if not address.isascii() and not smtputf8:
        return replies.INVALID_RECIPIENT_ADDRESS  # see parse_mail
    for name, value in params.items():
        if name not in _RCPT_PARAMS:
            return replies.UNRECOGNIZED_PARAMETER
        # RFC 3461 §4.1, §4.2; refused like a bad RET (exchsim's choice: exchange.md §12.6).
        if name == "NOTIFY" and _notify_words(value) is None:
            return replies.INVALID_ARGUMENTS
        if name == "ORCPT" and not _orcpt_shape(value):
            return replies.INVALID_ARGUMENTS
    return RcptCommand(address, params)


def _notify_words(value: str | None) -> set[str] | None:
    """``NEVER`` alone or a list of SUCCESS, FAILURE, DELAY (policy/dsn.py reads them)."""
    words = {w.upper() for w in (value or "").split(",")}
    if words == {"NEVER"} or (words and words <= {"SUCCESS", "FAILURE", "DELAY"}):
        return words
    return None


def _orcpt_shape(value: str | None) -> bool:
    """``addr-type;xtext`` (``rfc822;alice@contoso.com``)."""
    kind, sep, address = (value or "").partition(";")
    return bool(sep and address and kind and kind.replace("-", "").isalnum())


# --- accepted domains (exchange.md §8.1; matching is exchsim.config.vocabulary's) ------------


def is_internal_domain(org: Organization, domain: str) -> bool:
    """Authoritative and InternalRelay domains are internal for sender checks (exchange.md §8.1)."""
    entry = match_accepted_domain(org.accepted_domains, domain)
    return entry is not None and entry.domain_type in (
        DomainType.AUTHORITATIVE,
        DomainType.INTERNAL_RELAY,
    )


# --- checks ----------------------------------------------------------------------------------


def check_mail(facts: SessionFacts, mail: MailCommand) -> Decision:
    """MAIL FROM (exchange.md §1.9 step 4)."""
    if not facts.has(Right.SUBMIT):
        if facts.identity.authenticated:
            return refuse(replies.NO_SUBMIT_PERMISSION, "identity lacks ms-Exch-SMTP-Submit")
        return refuse(replies.NOT_AUTHENTICATED, "anonymous session lacks ms-Exch-SMTP-Submit")
    if facts.connector.require_tls and not facts.tls_active:
        return refuse(replies.STARTTLS_REQUIRED, "RequireTLS and no TLS")
    size = mail.size
    if (
        size is not None
        and size > facts.connector.max_message_size
        and not facts.has(Right.BYPASS_MESSAGE_SIZE_LIMIT)
    ):
        return refuse(
            replies.MESSAGE_TOO_BIG,
            f"SIZE={size} over MaxMessageSize {facts.connector.max_message_size}",
        )
    return accept(replies.SENDER_OK)


def check_rcpt(facts: SessionFacts, rcpt: RcptCommand, accepted_so_far: int) -> Decision:
    """RCPT TO (exchange.md §1.9 step 5): relay by accepted domain, then MaxRecipientsPerMessage."""
    domain = domain_of(rcpt.address)
    entry = match_accepted_domain(facts.org.accepted_domains, domain)
    if entry is None and not facts.has(Right.ACCEPT_ANY_RECIPIENT):
        return refuse(
            replies.unable_to_relay(Dialect.of(facts.server.version)),
            f"{domain} is not an accepted domain and the session lacks "
            "ms-Exch-SMTP-Accept-Any-Recipient",
        )
    if accepted_so_far >= facts.connector.max_recipients_per_message:
        return refuse(replies.TOO_MANY_RECIPIENTS, "MaxRecipientsPerMessage reached")
    reason = f"accepted domain {entry.domain_name}" if entry else "relay permitted"
    return accept(replies.RECIPIENT_OK, reason)


def check_size(facts: SessionFacts, size: int) -> Decision | None:
    """Message size during or at the end of data (exchange.md §1.9 step 6)."""
    if size > facts.connector.max_message_size and not facts.has(
        Right.BYPASS_MESSAGE_SIZE_LIMIT
    ):
        return refuse(replies.MESSAGE_TOO_BIG, f"{size} bytes over MaxMessageSize")
    return None


def check_headers(
    facts: SessionFacts,
    header_size: int,
    received: Sequence[str],
    mail_from: str,
    header_senders: Sequence[str],
    mail_auth_null: bool = False,
) -> Decision | None:
    """End of headers (exchange.md §1.9 step 6): header size, hop counts, sender authorization."""
    connector = facts.connector
    if header_size > connector.max_header_size:
        return refuse(replies.HEADER_TOO_BIG, f"{header_size} header bytes")
    if len(received) > connector.max_hop_count:
        return refuse(replies.HOP_COUNT_EXCEEDED, f"{len(received)} Received headers")
    if connector.max_local_hop_count:
        local = sum(1 for r in received if _stamped_by(r, facts.local_servers))
        if local > connector.max_local_hop_count:
            return refuse(replies.HOP_COUNT_EXCEEDED, f"{local} local hops")
    for sender in [mail_from, *header_senders]:
        if sender and not may_send_as(facts, sender):
            reply = (
                replies.SEND_AS_DENIED
                if facts.identity.authenticated
                else replies.ANONYMOUS_SEND_AS_DENIED
            )
            return refuse(reply, f"may not send as {sender}")
    return None


def over_organization_limits(facts: SessionFacts, sender: str, recipients: Sequence[str],
                             size: int) -> list[str]:
    """The recipients that the organization's size limits (exchange.md §8.3) refuse a message
    of ``size`` bytes: all of them when the sender is a mailbox of the organization and the
    message is over MaxSendSize; otherwise each mailbox of the organization when it is over
    MaxReceiveSize. Applied by the hub after the SMTP session (an NDR, not a reply)."""
    config = facts.org.transport_config
    internal = {address for mailbox in facts.org.mailboxes for address in mailbox.addresses}
    if sender.lower() in internal and size > config.max_send_size:
        return list(recipients)
    if size <= config.max_receive_size:
        return []
    return [r for r in recipients if r.lower() in internal]


def check_content(content_type: str | None) -> Decision | None:
    """Content Exchange refuses at the end of headers: a top-level ``message/partial`` (RFC
    2046 fragments, which Exchange never reassembles) gets ``554 5.6.1``.

    exchsim's reading (exchange.md §2.4): the sources give the reply, not the trigger; the
    reply's own words name it. Only the message's own Content-Type counts, not a part's.
    """
    if content_type is None:
        return None
    media = content_type.split(";", 1)[0].split("(", 1)[0].strip().lower()
    if media == "message/partial":
        return refuse(replies.MESSAGE_PARTIAL_NOT_SUPPORTED, "Content-Type message/partial")
    return None


def _stamped_by(received: str, fqdns: frozenset[str]) -> bool:
    match = re.search(r"\bby\s+([^\s;()]+)", received, re.IGNORECASE)
    return bool(match) and match.group(1).lower().rstrip(".") in fqdns  # type: ignore[union-attr]


def may_send_as(facts: SessionFacts, sender: str) -> bool:
    """Sender authorization (exchange.md §5.5) for one address (MAIL FROM or From/Sender)."""
    domain = domain_of(sender)
    mailbox = facts.mailbox
    if facts.identity.kind is IdentityKind.USER and mailbox and sender.lower() in mailbox.addresses:
        return True
    if facts.identity.kind is IdentityKind.PARTNER and domain == facts.identity.name.lower():
        return True
    if is_internal_domain(facts.org, domain):
        return facts.has(Right.ACCEPT_AUTHORITATIVE_DOMAIN_SENDER)
    return facts.has(Right.ACCEPT_ANY_SENDER)


def auth_as(facts: SessionFacts, mail_auth_null: bool = False) -> str:
    """The AuthAs category SMTP receive stamps (exchange.md §5.2): Partner, Internal, Anonymous."""
    if facts.identity.kind is IdentityKind.PARTNER:
        return "Partner"
    if mail_auth_null:
        return "Anonymous"
    if facts.identity.authenticated:
        sender_rights = facts.has(Right.ACCEPT_ANY_SENDER) or facts.has(
            Right.ACCEPT_AUTHORITATIVE_DOMAIN_SENDER
        )
        if not sender_rights or facts.has(Right.ACCEPT_AUTHENTICATION_FLAG):
            return "Internal"
    return "Anonymous"


def check_connection_limits(
    connector: ReceiveConnector, active: int, active_from_source: int
) -> Decision | None:
    """Connection limits before the banner (exchange.md §1.9 step 2).

    The counts exclude the new connection. The per-source limit is the smaller of
    MaxInboundConnectionPerSource and MaxInboundConnectionPercentagePerSource percent of
    MaxInboundConnection (at least one).
    """
    total_limit = connector.max_inbound_connection
    if total_limit is not None and active >= total_limit:
        return refuse(replies.TOO_MANY_CONNECTIONS_SERVER, f"{active} connections on the connector")
    limits = []
    if connector.max_inbound_connection_per_source is not None:
        limits.append(connector.max_inbound_connection_per_source)
    if total_limit is not None:
        share = total_limit * connector.max_inbound_connection_percentage_per_source // 100
        limits.append(max(share, 1))
    if limits and active_from_source >= min(limits):
        return refuse(replies.TOO_MANY_CONNECTIONS_SOURCE,
                      f"{active_from_source} connections from this source")
    return None
