"""The verb table: what each SMTP verb needs before its handler runs (docs/exchange.md §1.9).

One row per verb Exchange answers. :func:`check` applies a row to where a session stands and
returns the refusal, if any, in one fixed order:

1. ``once_tls``: a second STARTTLS / X-ANONYMOUSTLS (``503 5.5.2 Only one STARTTLS ...``);
2. ``advertised`` / ``exchange_right``: a verb the connector does not offer, or an Exchange-only
   verb from a session that is not an Exchange server holding the right, is answered as an
   unknown verb (``500 5.3.3``);
3. ``arguments``: verbs whose arguments are judged before the sequence (XEXCH50, BDAT);
4. ``right``: a right without which the answer is ``504 5.7.1 Not authorized``;
5. ``hello``: HELO or EHLO (AUTH and X-EXPS: EHLO) must have been said;
6. ``transaction``: outside a transaction, inside one, after MAIL, after a recipient.

Every refusal here is an error reply, so it is tarpitted for untrusted sessions like any other
(exchange.md §1.9). ``counts`` on the refusal says whether it counts toward MaxProtocolErrors:
unknown verbs, bad arguments and sequence errors do; a missing right does not.

A new verb is one row here plus a handler in ``exchsim/smtp/commands.py`` (see
docs/architecture.md for a worked example).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from exchsim.policy import replies
from exchsim.policy.dialect import Dialect
from exchsim.policy.permissions import IdentityKind, Right, Rights
from exchsim.policy.replies import Reply


class Phase(enum.Enum):
    """Where a session stands in the SMTP dialogue."""

    CONNECTED = "connected"  # no HELO / EHLO yet (again after STARTTLS, RFC 3207 §4.2)
    READY = "ready"  # greeted, no transaction
    MAIL = "mail"  # MAIL accepted, no recipient yet
    RCPT = "rcpt"  # at least one recipient accepted
    CHUNKING = "chunking"  # BDAT chunks received, LAST not yet

    @property
    def in_transaction(self) -> bool:
        return self in (Phase.MAIL, Phase.RCPT, Phase.CHUNKING)


class Greeting(enum.Enum):
    HELO = "HELO"
    EHLO = "EHLO"


class Hello(enum.Enum):
    """What greeting a verb needs."""

    NONE = "none"
    ANY = "any"  # HELO or EHLO
    EHLO = "ehlo"  # EHLO only (AUTH, X-EXPS)


class Txn(enum.Enum):
    """What a verb needs of the mail transaction."""

    ANY = "any"
    OUTSIDE = "outside"  # refused inside a transaction (the row says with which reply)
    MAIL = "mail"  # needs MAIL
    RECIPIENTS = "recipients"  # needs MAIL and a recipient


@dataclass(frozen=True, slots=True)
class Standing:
    """The facts about a session that the table is checked against."""

    phase: Phase
    greeting: Greeting | None
    tls: bool
    identity: IdentityKind
    rights: Rights
    advertised: Callable[[str], bool]  # is this EHLO keyword offered right now?


@dataclass(frozen=True, slots=True)
class Refusal:
    reply: Reply
    counts: bool  # toward MaxProtocolErrors


@dataclass(frozen=True, slots=True)
class VerbRule:
    verb: str
    hello: Hello = Hello.NONE
    transaction: Txn = Txn.ANY
    in_transaction: Reply = replies.BAD_SEQUENCE  # the reply when Txn.OUTSIDE is broken
    during_chunks: Reply | None = None  # the reply while BDAT chunks are arriving
    advertised: str | None = None  # EHLO keyword without which the verb is unknown
    once_tls: bool = False
    exchange_right: Right | None = None  # unknown unless an Exchange server with this right
    arguments: Callable[[str | None], object | None] | None = None  # None result: 501 5.5.4
    right: Right | None = None  # 504 5.7.1 Not authorized without it
    payload: bool = False  # the client sends bytes after it, read (and dropped) when refused


def _xexch50_arguments(arg: str | None) -> tuple[int, int] | None:
    parts = (arg or "").split()
    if len(parts) != 2 or not all(p.isdigit() and p.isascii() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def bdat_arguments(arg: str | None) -> tuple[int, bool] | None:
    """``BDAT <size> [LAST]`` -> (size, last); None when the arguments are wrong."""
    parts = (arg or "").split()
    if not parts or len(parts) > 2 or not (parts[0].isdigit() and parts[0].isascii()):
        return None
    if len(parts) == 2 and parts[1].upper() != "LAST":
        return None
    return int(parts[0]), len(parts) == 2


xexch50_arguments = _xexch50_arguments

_ROWS = (
    VerbRule("HELO"),
    VerbRule("EHLO"),
    VerbRule("MAIL", hello=Hello.ANY, transaction=Txn.OUTSIDE,
             in_transaction=replies.SENDER_ALREADY_SPECIFIED),
    VerbRule("RCPT", hello=Hello.ANY, transaction=Txn.MAIL),
    VerbRule("DATA", hello=Hello.ANY, transaction=Txn.RECIPIENTS,
             during_chunks=replies.BAD_SEQUENCE),
    VerbRule("BDAT", hello=Hello.ANY, transaction=Txn.RECIPIENTS, advertised="CHUNKING",
             arguments=bdat_arguments, payload=True),
    VerbRule("RSET"),
    VerbRule("NOOP"),
    VerbRule("QUIT"),
    VerbRule("HELP"),
    VerbRule("VRFY"),
    VerbRule("EXPN"),
    VerbRule("STARTTLS", once_tls=True, advertised="STARTTLS"),
    VerbRule("X-ANONYMOUSTLS", once_tls=True, advertised="X-ANONYMOUSTLS"),
    VerbRule("AUTH", hello=Hello.EHLO, transaction=Txn.OUTSIDE),
    VerbRule("X-EXPS", hello=Hello.EHLO),
    VerbRule("XPROXYFROM", advertised="XPROXYFROM", exchange_right=Right.ACCEPT_XPROXYFROM),
    VerbRule("XPROXY", advertised="XPROXY", exchange_right=Right.ACCEPT_XPROXYFROM),
    # No right of its own is documented for XPROXYTO: exchsim asks for XPROXYFROM's.
    VerbRule("XPROXYTO", hello=Hello.EHLO, transaction=Txn.OUTSIDE, advertised="XPROXYTO",
             exchange_right=Right.ACCEPT_XPROXYFROM),
    VerbRule("XSESSIONPARAMS", advertised="XSESSIONPARAMS",
             exchange_right=Right.ACCEPT_XSESSIONPARAMS),
    VerbRule("XEXCH50", hello=Hello.ANY, transaction=Txn.RECIPIENTS, advertised="XEXCH50",
             arguments=_xexch50_arguments, right=Right.ACCEPT_EXCH50),
)

VERBS: dict[str, VerbRule] = {row.verb: row for row in _ROWS}


def check(rule: VerbRule, standing: Standing, arg: str | None, dialect: Dialect) -> Refusal | None:
    """The refusal a verb gets where the session stands, or None (the handler runs)."""
    if rule.once_tls and standing.tls:
        return Refusal(replies.ONLY_ONE_STARTTLS, counts=True)
    hidden = rule.advertised is not None and not standing.advertised(rule.advertised)
    if rule.exchange_right is not None and not (
        standing.identity is IdentityKind.EXCHANGE_SERVER and rule.exchange_right in standing.rights
    ):
        hidden = True
    if hidden:
        return Refusal(replies.unrecognized(rule.verb, dialect), counts=True)
    if rule.arguments is not None and rule.arguments(arg) is None:
        return Refusal(replies.INVALID_ARGUMENTS, counts=True)
    if rule.right is not None and rule.right not in standing.rights:
        return Refusal(replies.NOT_AUTHORIZED, counts=False)
    if rule.hello is Hello.ANY and standing.greeting is None:
        return Refusal(replies.SEND_HELLO_FIRST, counts=True)
    if rule.hello is Hello.EHLO and standing.greeting is not Greeting.EHLO:
        return Refusal(replies.SEND_HELLO_FIRST, counts=True)
    phase = standing.phase
    if rule.transaction is Txn.OUTSIDE and phase.in_transaction:
        return Refusal(rule.in_transaction, counts=True)
    if rule.transaction in (Txn.MAIL, Txn.RECIPIENTS) and not phase.in_transaction:
        return Refusal(replies.NEED_MAIL, counts=True)
    if rule.transaction is Txn.RECIPIENTS and phase is Phase.MAIL:
        return Refusal(replies.NEED_RCPT, counts=True)
    if rule.during_chunks is not None and phase is Phase.CHUNKING:
        return Refusal(rule.during_chunks, counts=True)
    return None
