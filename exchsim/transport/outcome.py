"""What a failed delivery attempt means, and when the next one is (exchange.md §8.4).

The hub's delivery agent (transport/delivery.py) sorts every failure into one of four kinds:

- **permanent**: the next hop answered 5xx (to MAIL, to a recipient, to the data), or the
  address cannot be put on an SMTP command line at all (the client library refuses it with
  ``ValueError``, or exchsim's own address syntax does). The recipient is done: an NDR goes to
  the sender, or nothing for the null sender ``<>`` (one log line either way).
- **transient**: the next hop answered 4xx, or the connection broke or timed out during the
  transaction (the reason: ``421 4.4.2 Connection dropped due to SocketError`` or ``421 4.4.1
  Connection timed out``, or for an intra-organization hop the queue form of
  policy/lasterror.py that transport/nexthop.py gives the HopError). The recipients stay
  queued; the next attempt is MessageRetryInterval later (policy/retry.py, exchange.md §8.5).
- **unreachable**: the next hop could not be reached or the session could not be set up
  (connect, TLS, EXCHANGEAUTH, XSESSIONPARAMS, XPROXYTO). That is the destination's problem, not the
  message's: like an Exchange queue in Retry state, the destination is retried after
  TransientFailureRetryInterval TransientFailureRetryCount times, then every
  OutboundConnectionFailureRetryInterval, so what waits for it goes at its next retry (or at
  once on Retry-Queue). While it is known to be down, messages for it are deferred to its next
  retry without a connection each.
- **crash**: anything else -- an unexpected exception in exchsim's own code for this message
  (:func:`classify` returns None). The message is retried once after MessageRetryInterval; a second
  crash puts it in the Poison queue (transport/queue.py), where nothing retries it.

Transient and unreachable failures end with an NDR too once the message is older than
MessageExpirationTimeout (Lab.MessageExpirationTimeout, 2 days as in Exchange):
``550 4.4.7 QUEUE.Expired; message expired``.

Nothing is retried without a schedule: every kind above either finishes the recipient or sets a
next attempt in the future.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import aiosmtplib

from exchsim.policy import replies
from exchsim.policy.lasterror import CONNECTION_DROPPED, CONNECTION_TIMED_OUT, Winsock, winsock
from exchsim.policy.replies import Reply
from exchsim.transport.hopclient import HopError, parse_reply

__all__ = ["Failure", "Kind", "Unreachable", "Unsendable", "classify", "socket_error",
           "summary"]


class Kind(enum.Enum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    UNREACHABLE = "unreachable"


class Unreachable(Exception):
    """The next hop could not be reached, or the session with it could not be set up."""


class Unsendable(Exception):
    """The message's addresses cannot be sent by the SMTP client (its ValueError)."""


@dataclass(frozen=True, slots=True)
class Failure:
    kind: Kind
    reason: str
    """One line: what happened (for the log and the queue's last_error)."""
    reply: Reply | None = None
    """For a permanent failure: the diagnostic the NDR gives."""


def socket_error(exc: BaseException) -> Winsock:
    """The socket error behind a failed connection (exchange.md §8.5): the first ``errno``
    found along the exception's causes, or a timeout."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, TimeoutError | aiosmtplib.SMTPTimeoutError):
            return winsock(None, timed_out=True)
        if isinstance(seen, OSError) and seen.errno is not None:
            return winsock(seen.errno)
        seen = seen.__cause__ or seen.__context__
    return winsock(None)


def summary(exc: BaseException) -> str:
    """``Type: text`` on one line, at most 300 characters of text."""
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def classify(exc: BaseException) -> Failure | None:
    """The kind of a delivery failure; None when it is a crash (see the module docstring)."""
    if isinstance(exc, Unreachable):
        # Exchange's LastError texts run to about 400 characters (exchange.md §8.5); the
        # bound keeps a remote's long reply quoted in them to one queue line.
        return Failure(Kind.UNREACHABLE, " ".join(str(exc).split())[:1000])
    if isinstance(exc, Unsendable):
        return Failure(Kind.PERMANENT, summary(exc), replies.UNSENDABLE_ADDRESS)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        reply = parse_reply(exc.code, [" ".join(exc.message.split())])
        kind = Kind.PERMANENT if exc.code >= 500 else Kind.TRANSIENT
        return Failure(kind, reply.render().strip(), reply if kind is Kind.PERMANENT else None)
    if isinstance(exc, HopError):
        return Failure(Kind.TRANSIENT, exc.last_error or exc.what or summary(exc))
    # A transaction that broke (exchange.md §8.5): Exchange's words, not the exception's.
    if isinstance(exc, TimeoutError | aiosmtplib.SMTPTimeoutError):
        return Failure(Kind.TRANSIENT, CONNECTION_TIMED_OUT)
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | OSError):
        return Failure(Kind.TRANSIENT, CONNECTION_DROPPED)
    if isinstance(exc, aiosmtplib.SMTPException):
        return Failure(Kind.TRANSIENT, summary(exc))
    return None
