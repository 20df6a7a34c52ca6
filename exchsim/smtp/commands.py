"""The handlers of the verb table: what each verb does once its row's checks have passed.

Each handler takes the session core and the argument text (None when there is none). What the
verb needs before it runs (a greeting, a transaction, a right, an EHLO keyword) is not checked
here: the verb's row in ``exchsim/policy/verbs.py`` says it and the core checks it. AUTH and
X-EXPS are in ``auth.py``.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from exchsim.policy import outbound, replies, rules
from exchsim.policy.permissions import Identity, IdentityKind, Right, mask_to_rights
from exchsim.policy.rates import rate_keys
from exchsim.policy.replies import Reply
from exchsim.policy.verbs import Greeting, Phase, bdat_arguments, xexch50_arguments
from exchsim.smtp import auth, certauth, wire
from exchsim.smtp.message import AcceptedMessage, ProxiedClient

if TYPE_CHECKING:
    from exchsim.smtp.protocol import SessionCore

Continuation = auth.Continuation
Handler = Callable[["SessionCore", str | None], None]


# --- HELO / EHLO ------------------------------------------------------------------------------

def helo(s: SessionCore, arg: str | None) -> None:
    _hello(s, arg, Greeting.HELO)


def ehlo(s: SessionCore, arg: str | None) -> None:
    _hello(s, arg, Greeting.EHLO)


def _hello(s: SessionCore, arg: str | None, greeting: Greeting) -> None:
    assert s.connector is not None
    if s.untrusted_server_certificate():
        # exchange.md §4.1 item 3: a certificate presented in X-ANONYMOUSTLS that is no Exchange
        # server's: the next EHLO gets 454 4.7.0 and the connection is dropped.
        s.reply(replies.AUTH_TEMPORARY_FAILURE.closing())
        return
    if arg is None and s.connector.require_ehlo_domain:
        s.protocol_error(replies.EHLO_REQUIRES_DOMAIN if greeting is Greeting.EHLO
                         else replies.HELO_REQUIRES_DOMAIN)
        return
    if arg is not None and not valid_helo(arg):
        s.protocol_error(replies.INVALID_DOMAIN)
        return
    s.helo_name = arg or ""
    s.greeting = greeting
    s.end_transaction()
    s.phase = Phase.READY
    certauth.hello_after_tls(s)
    if greeting is Greeting.HELO:
        s.reply(replies.helo(s.fqdn, s.peer.ip))
    else:
        s.reply(replies.ehlo(s.fqdn, s.peer.ip, s.keywords()))


def valid_helo(name: str) -> bool:
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


# --- simple verbs -----------------------------------------------------------------------------

def _answer(reply: Reply) -> Handler:
    def handler(s: SessionCore, arg: str | None) -> None:
        s.reply(reply)
    return handler


def rset(s: SessionCore, arg: str | None) -> None:
    s.end_transaction()
    s.reply(replies.RESETTING)


# --- TLS --------------------------------------------------------------------------------------

def starttls(s: SessionCore, arg: str | None) -> None:
    if arg is not None:
        s.protocol_error(replies.unrecognized("STARTTLS", s.dialect))
        return
    s.start_tls(anonymous=False)


def anonymous_tls(s: SessionCore, arg: str | None) -> None:
    if arg is not None:
        s.protocol_error(replies.unrecognized("X-ANONYMOUSTLS", s.dialect))
        return
    s.start_tls(anonymous=True)


# --- proxy verbs (exchange.md §7.2, §7.3) ---------------------------------------------------------

def xproxyfrom(s: SessionCore, arg: str | None) -> None:
    """XPROXYFROM from a Front End (exchange.md §7.2): the session speaks for the original client.

    exchsim's parameters: SID, IP, PORT, DOMAIN (xtext), SEQNUM, PERMS (the rights the
    Front End evaluated, see permissions.rights_to_mask), AUTHSRC (the identity kind) and,
    for authenticated clients, AUTHNAME (xtext) and AUTHMECH.
    """
    params = wire.parse_keyword_args(arg)
    proxied = proxied_client(params)
    try:
        rights = mask_to_rights(int(params.get("PERMS", "0")))
        kind = IdentityKind(params.get("AUTHSRC", "Anonymous"))
    except ValueError:
        proxied = None
    if proxied is None:
        s.protocol_error(replies.INVALID_ARGUMENTS)
        return
    s.proxied = proxied
    name = wire.xtext_decode(params.get("AUTHNAME", ""))
    mailbox = s.runtime.find_mailbox(name) if kind is IdentityKind.USER else None
    s.set_identity(Identity(kind, name, params.get("AUTHMECH", "00")), mailbox, rights=rights)
    s.reply(replies.XPROXYFROM_ACCEPTED)


def xproxy(s: SessionCore, arg: str | None) -> None:
    """XPROXY from Client Frontend (exchange.md §7.3): the user the Front End authenticated."""
    params = wire.parse_keyword_args(arg)
    mailbox = s.runtime.find_mailbox(wire.xtext_decode(params.get("UNAME", "")))
    proxied = proxied_client(params)
    if mailbox is None or proxied is None:
        s.protocol_error(replies.INVALID_ARGUMENTS)
        return
    s.proxied = proxied
    mech = params.get("AUTHMECH", "06")
    s.set_identity(Identity(IdentityKind.USER, mailbox.primary_smtp_address, mech), mailbox)
    s.reply(replies.XPROXY_ACCEPTED_AUTHENTICATED)


def xproxyto(s: SessionCore, arg: str | None) -> None:
    """XPROXYTO from a hub on Outbound Proxy Frontend (exchange.md §7.4): where the session's
    messages go and the send connector's settings (policy/outbound.py); the Front End sends
    them out itself (transport/frontend.py)."""
    proxy_to = outbound.parse_xproxyto(wire.parse_keyword_args(arg), s.runtime.lab.hosts)
    if proxy_to is None:
        s.protocol_error(replies.INVALID_ARGUMENTS)
        return
    s.proxy_to = proxy_to
    s.reply(replies.XPROXYTO_ACCEPTED)


def xsessionparams(s: SessionCore, arg: str | None) -> None:
    s.reply(replies.XSESSIONPARAMS_OK)


def proxied_client(params: Mapping[str, str]) -> ProxiedClient | None:
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


# --- the transaction --------------------------------------------------------------------------

def mail(s: SessionCore, arg: str | None) -> None:
    parsed = rules.parse_mail(arg)
    if isinstance(parsed, Reply):
        s.protocol_error(parsed)
        return
    if certauth.mail(s, parsed):
        return
    decision = rules.check_mail(s.facts(), parsed)
    if decision.accepted:
        assert s.connector is not None
        user = s.identity.name if s.identity.kind is IdentityKind.USER else None
        keys = rate_keys(s.connector, s.client_ip, user)
        if keys:
            window = s.runtime.message_rates(s.connector)
            if window.over(keys, s.connector.message_rate_limit, s.now):
                s.reply(replies.MESSAGE_RATE_EXCEEDED)  # exchange.md §1.9 step 4; closes
                return
            window.record(keys, s.now)
        s.begin_transaction(parsed)
        s.info(receiving_message(s), "receiving message")
    s.reply(decision.reply)


def receiving_message(s: SessionCore) -> str:
    """The data of the ``receiving message`` line (exchange.md §12.7): the session id, the
    session's start (UTC, the time of its ``+`` line) and this message's number in the
    session, ``08DC42C8FF236A1F;2024-03-13T09:01:18.723Z;1``."""
    assert s.started is not None  # set at connect
    start = s.started.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return f"{s.session_id};{start};{s.messages}"


def rcpt(s: SessionCore, arg: str | None) -> None:
    assert s.txn is not None
    parsed = rules.parse_rcpt(arg, smtputf8="SMTPUTF8" in s.txn.mail.params)
    if isinstance(parsed, Reply):
        s.protocol_error(parsed)
        return
    decision = rules.check_rcpt(s.facts(), parsed, len(s.txn.recipients))
    if decision.accepted:
        s.txn.recipients.append(parsed.address)
        dsn = {k: v for k, v in parsed.params.items() if k in ("NOTIFY", "ORCPT")}
        if dsn:
            s.txn.rcpt_params[parsed.address] = dsn
        if s.phase is Phase.MAIL:
            s.phase = Phase.RCPT
    elif decision.reply is replies.TOO_MANY_RECIPIENTS:
        # Past MaxRecipientsPerMessage only the first refusal of a transaction waits
        # TarpitInterval (exchsim's choice): a wait for each would make the session last as
        # long as the client keeps sending RCPTs, 5 s per line.
        first = not s.txn.over_recipient_limit
        s.txn.over_recipient_limit = True
        s.reply(decision.reply, tarpit=first)
        return
    s.reply(decision.reply)


def data(s: SessionCore, arg: str | None) -> None:
    assert s.connector is not None
    s.reply(replies.START_MAIL_INPUT)
    limit = None
    if Right.BYPASS_MESSAGE_SIZE_LIMIT not in s.rights:
        limit = s.connector.max_message_size
    s.expect_data(limit)


def bdat(s: SessionCore, arg: str | None) -> None:
    parsed = bdat_arguments(arg)
    assert parsed is not None and s.txn is not None
    size, last = parsed
    txn = s.txn
    if txn.chunks is None:
        txn.chunks = bytearray()
        s.phase = Phase.CHUNKING
    if txn.chunks_refused is None and rules.check_size(s.facts(), len(txn.chunks) + size):
        txn.chunks_refused = replies.MESSAGE_TOO_BIG
        txn.chunks.clear()

    def chunk_read() -> None:
        if not last:
            s.reply(txn.chunks_refused or replies.chunk_received(size))
            return
        if txn.chunks_refused is not None:
            s.end_transaction()
            s.reply(txn.chunks_refused)
            return
        end_of_data(s, bytes(txn.chunks or b""))

    s.expect_chunk(size, chunk_read)


def xexch50(s: SessionCore, arg: str | None) -> None:
    """``XEXCH50 <size> <checksum>``: a legacy Exchange server sends the current message's
    MAPI properties as a binary blob between RCPT and DATA (exchange.md §2.3, §2.5).

    Answered where the connector advertises it: without ms-Exch-SMTP-Accept-Exch50
    ``504 5.7.1 Not authorized``; otherwise ``354 Send binary data``, the blob, and
    ``250 2.0.0 XEXCH50 OK``. exchsim has no MAPI properties to apply: it reads the blob and
    drops it. (Order of the checks, the verb table's: advertised, arguments, right, sequence.)
    """
    parsed = xexch50_arguments(arg)
    assert parsed is not None
    s.reply(replies.XEXCH50_SEND_DATA)
    s.read_and_drop(parsed[0], lambda: s.reply(replies.XEXCH50_OK))


def end_of_data(s: SessionCore, data: bytes) -> None:
    """The whole message is here (DATA or BDAT LAST): last checks, then the transport."""
    assert s.txn is not None and s.connector is not None
    txn = s.txn
    s.end_transaction()
    facts = s.facts()
    if not data:
        # No byte of content at all (``BDAT 0 LAST``, or DATA ended at once): nothing to
        # deliver, refused as invalid content (exchsim's choice; exchange.md §2.4's text).
        s.reply(replies.INVALID_CONTENT)
        return
    normalized, had_bare = wire.normalize_line_endings(data)
    if had_bare and s.connector.bare_linefeed_rejection_enabled:
        s.reply(replies.BARE_LINEFEEDS)
        return
    size_refusal = rules.check_size(facts, len(data))
    if size_refusal is not None:
        s.reply(size_refusal.reply)
        return
    s.deliver(AcceptedMessage(
        mail_from=txn.mail.address,
        mail_params=txn.mail.params,
        recipients=tuple(txn.recipients),
        rcpt_params=txn.rcpt_params,
        data=normalized,
        facts=facts,
        context=s.message_context(),
        received_seconds=s.now - txn.started,
    ))


HANDLERS: dict[str, Handler] = {
    "HELO": helo,
    "EHLO": ehlo,
    "MAIL": mail,
    "RCPT": rcpt,
    "DATA": data,
    "BDAT": bdat,
    "RSET": rset,
    "NOOP": _answer(replies.OK),
    "QUIT": _answer(replies.CLOSING),
    "HELP": _answer(replies.HELP),
    "VRFY": _answer(replies.CANNOT_VRFY),
    "EXPN": _answer(replies.NOT_IMPLEMENTED),
    "STARTTLS": starttls,
    "X-ANONYMOUSTLS": anonymous_tls,
    "AUTH": auth.auth,
    "X-EXPS": auth.exps,
    "XPROXYFROM": xproxyfrom,
    "XPROXY": xproxy,
    "XPROXYTO": xproxyto,
    "XSESSIONPARAMS": xsessionparams,
    "XEXCH50": xexch50,
}

