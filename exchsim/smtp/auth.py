"""AUTH (LOGIN, NTLM) and X-EXPS (Exchange server authentication) as states of the core.

An AUTH exchange spans several lines: each step sends a 334 and leaves a continuation with the
core (:meth:`SessionCore.expect_continuation`), which hands it the next line instead of reading
a command. The replies are exchange.md §1.7's; failures count toward MaxLogonFailures and wait
AuthTarpitInterval (exchange.md §1.9).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from exchsim.config.model import Mailbox
from exchsim.policy import ehlo, replies
from exchsim.policy.permissions import Identity, IdentityKind
from exchsim.tls.directtrust import make_exchangeauth_blob, verify_exchangeauth

if TYPE_CHECKING:
    from exchsim.smtp.protocol import SessionCore

Continuation = Callable[["SessionCore", str], None]


def auth(s: SessionCore, arg: str | None) -> None:
    if s.identity.kind in (IdentityKind.USER, IdentityKind.EXCHANGE_SERVER):
        s.protocol_error(replies.AUTH_ALREADY)
        return
    mechanism, _, initial = (arg or "").partition(" ")
    mechanism = mechanism.upper()
    offered = ehlo.auth_mechanisms(s.ehlo_context())
    if mechanism not in offered or mechanism == "GSSAPI":
        s.reply(replies.AUTH_UNRECOGNIZED)
        return
    token = initial.strip() or None
    if mechanism == "LOGIN":
        if token is None:
            s.reply(replies.AUTH_LOGIN_USERNAME)
            s.expect_continuation(_login_user)
        else:
            _login_user(s, token)
    else:
        acceptor = s.runtime.ntlm_acceptor()
        if token is None:
            s.reply(replies.AUTH_NTLM_SUPPORTED)
            s.expect_continuation(_ntlm_step(acceptor))
        else:
            _ntlm_step(acceptor)(s, token)


def _login_user(s: SessionCore, user_b64: str) -> None:
    if user_b64 == "*":
        s.reply(replies.AUTH_CANCELLED)
        return
    s.reply(replies.AUTH_LOGIN_PASSWORD)
    s.expect_continuation(lambda s2, line: _login_password(s2, user_b64, line))


def _login_password(s: SessionCore, user_b64: str, password_b64: str) -> None:
    if password_b64 == "*":
        s.reply(replies.AUTH_CANCELLED)
        return
    try:
        user = base64.b64decode(user_b64, validate=True).decode("utf-8")
        password = base64.b64decode(password_b64, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        s.protocol_error(replies.INVALID_ARGUMENTS)
        return
    mailbox = s.runtime.find_mailbox(user)
    if mailbox is None or mailbox.password is None or mailbox.password != password:
        s.info("", "Inbound AUTH LOGIN failed because of LogonDenied")
        # Exchange logs the user name as typed; a password typed into that field would then
        # be in the log. exchsim writes it only when it is a known logon name.
        shown = user if mailbox is not None else "(not a known logon name)"
        s.info("", f"User Name: {shown}")
        _logon_failed(s)
        return
    mechanism = "06" if s.tls is not None else "07"
    _authenticated(s, Identity(IdentityKind.USER, mailbox.primary_smtp_address, mechanism),
                   mailbox)


def _ntlm_step(acceptor: Any) -> Continuation:
    def step(s: SessionCore, token: str) -> None:
        if token == "*":
            s.reply(replies.AUTH_CANCELLED)
            return
        try:
            out = acceptor.step(base64.b64decode(token, validate=True))
        except binascii.Error:
            s.protocol_error(replies.INVALID_ARGUMENTS)
            return
        except Exception:
            s.info("", "Inbound AUTH NTLM failed because of LogonDenied")
            _logon_failed(s)
            return
        if not acceptor.complete:
            s.reply(replies.auth_challenge(base64.b64encode(out or b"").decode()))
            s.expect_continuation(step)
            return
        mailbox = s.runtime.find_mailbox(str(acceptor.client_principal))
        if mailbox is None:
            _logon_failed(s)
            return
        _authenticated(s, Identity(IdentityKind.USER, mailbox.primary_smtp_address, "0a"),
                       mailbox)
    return step


def _authenticated(s: SessionCore, identity: Identity, mailbox: Mailbox) -> None:
    s.set_identity(identity, mailbox)
    s.info(mailbox.user_name, "authenticated")
    s.reply(replies.AUTH_OK)


def _logon_failed(s: SessionCore) -> None:
    assert s.connector is not None
    s.logon_failures += 1
    s.tarpit(s.connector.auth_tarpit_interval)
    if s.logon_failures > s.connector.max_logon_failures:
        s.reply(replies.TOO_MANY_ERRORS, tarpit=False)
        return
    s.reply(replies.AUTH_FAILED, tarpit=False)


def exps(s: SessionCore, arg: str | None) -> None:
    """X-EXPS: Exchange server authentication (the lab's Direct Trust, docs/architecture.md)."""
    parts = (arg or "").split()
    mechanism = parts[0].upper() if parts else ""
    if mechanism not in ehlo.exps_mechanisms(s.ehlo_context()):
        s.reply(replies.AUTH_UNRECOGNIZED)
        return
    if s.identity.kind is IdentityKind.EXCHANGE_SERVER:
        s.protocol_error(replies.AUTH_ALREADY)
        return
    blob = parts[2] if mechanism == "EXCHANGEAUTH" and len(parts) == 3 else ""
    tls = s.tls
    result = verify_exchangeauth(
        blob,
        tls.tls_unique if tls else None,
        tls.peer_der if tls else None,
        s.runtime.published_certs,
    )
    if not result.ok or result.server_fqdn is None:
        s.info("", f"Inbound Exchange authentication failed: {result.reason}")
        s.reply(replies.AUTH_TEMPORARY_FAILURE)
        return
    s.set_identity(Identity(IdentityKind.EXCHANGE_SERVER, result.server_fqdn, "0c"))
    s.info(result.server_fqdn, "authenticated")
    assert tls is not None and tls.tls_unique is not None
    s.reply(replies.exchange_auth_ok(make_exchangeauth_blob(s.fqdn, tls.tls_unique)))
