"""Every delivery failure is classified (transport/outcome.py); the schedule is
tests/unit/policy/test_retry.py."""

from __future__ import annotations

import aiosmtplib
import pytest

from exchsim.policy import replies
from exchsim.transport.hopclient import HopError
from exchsim.transport.outcome import Kind, Unreachable, Unsendable, classify


@pytest.mark.parametrize(("exc", "kind", "reply"), [
    (aiosmtplib.SMTPRecipientRefused(550, "5.1.1 User unknown", "x@y"), Kind.PERMANENT,
     "550 5.1.1 User unknown"),
    (aiosmtplib.SMTPDataError(554, "5.6.0 Invalid content"), Kind.PERMANENT,
     "554 5.6.0 Invalid content"),
    (aiosmtplib.SMTPSenderRefused(553, "5.1.3 Mailbox name not allowed", "a/b@y"),
     Kind.PERMANENT, "553 5.1.3 Mailbox name not allowed"),
    (aiosmtplib.SMTPResponseException(451, "4.3.0 Try later"), Kind.TRANSIENT, None),
    (aiosmtplib.SMTPServerDisconnected("gone"), Kind.TRANSIENT, None),
    (aiosmtplib.SMTPTimeoutError("slow"), Kind.TRANSIENT, None),
    (HopError("connection lost", data_sent=True), Kind.TRANSIENT, None),
    (ConnectionResetError("reset"), Kind.TRANSIENT, None),
    (TimeoutError(), Kind.TRANSIENT, None),
    (Unreachable("127.0.0.1:475: refused"), Kind.UNREACHABLE, None),
    (Unsendable("Address 'a\\x00b@y' contains characters not permitted"), Kind.PERMANENT,
     replies.UNSENDABLE_ADDRESS.render()),
])
def test_failures_are_classified(exc: BaseException, kind: Kind, reply: str | None) -> None:
    failure = classify(exc)
    assert failure is not None
    assert failure.kind is kind
    assert "\n" not in failure.reason and failure.reason
    if reply is None:
        assert failure.reply is None
    else:
        assert failure.reply is not None and failure.reply.render() == reply


@pytest.mark.parametrize("exc", [ValueError("a bug"), KeyError("x"), RuntimeError("boom"),
                                 AttributeError("no"), RecursionError()])
def test_anything_else_is_a_crash(exc: BaseException) -> None:
    assert classify(exc) is None


@pytest.mark.parametrize(("exc", "reason"), [
    (aiosmtplib.SMTPServerDisconnected("Connection lost"),
     "421 4.4.2 Connection dropped due to SocketError"),
    (ConnectionResetError(104, "Connection reset by peer"),
     "421 4.4.2 Connection dropped due to SocketError"),
    (aiosmtplib.SMTPTimeoutError("Timed out waiting for server response"),
     "421 4.4.1 Connection timed out"),
    (TimeoutError(), "421 4.4.1 Connection timed out"),
    (HopError("connection lost: IncompleteReadError(...)",
              what="421 4.4.2 Connection dropped due to SocketError"),
     "421 4.4.2 Connection dropped due to SocketError"),
])
def test_a_broken_transaction_is_said_in_exchanges_words(exc: BaseException, reason: str) -> None:
    failure = classify(exc)
    assert failure is not None and failure.kind is Kind.TRANSIENT
    assert failure.reason == reason
