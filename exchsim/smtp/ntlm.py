"""The NTLM acceptor of AUTH NTLM: Windows' CHALLENGE, pyspnego's verification.

pyspnego's acceptor (``spnego.server(protocol="ntlm")``) names the Linux host in its CHALLENGE
(``socket.gethostname()``, NetBIOS domain ``WORKSTATION``, no DNS domain or tree, its own
version) and offers no option to change that; which responses it accepts comes from the
process-wide ``LM_COMPAT_LEVEL`` environment variable. This subclass replaces the one step
that builds the CHALLENGE with :func:`exchsim.policy.ntlm.build_challenge` (the message a
Windows server sends, exchange.md §1.7.1) and sets the LAN Manager level per acceptor. The
AUTHENTICATE is still verified by pyspnego: NTLMv2 and NTLMv1 responses, the MIC over the three
messages, the session key, the users of ``NTLM_USER_FILE`` (:func:`write_ntlm_users`).

It reaches into pyspnego's acceptor where that has no public hook: ``_step_accept_negotiate``
(replaced), ``_temp_negotiate`` / ``_temp_challenge`` (the messages the MIC is computed over)
and ``_lm`` / ``_nt_v1`` (which responses are accepted). pyproject.toml pins pyspnego to the
minor version these names were read from, and tests/integration/test_ntlm.py fails if they
change meaning.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from spnego._ntlm import NTLMProxy
from spnego._ntlm_raw.messages import Challenge, Negotiate

from exchsim.config.model import Lab
from exchsim.policy.ntlm import NtlmIdentity, accepts_lm, accepts_ntlmv1, build_challenge

__all__ = ["WindowsNtlmAcceptor"]


class WindowsNtlmAcceptor(NTLMProxy):
    """One AUTH NTLM exchange on a server with ``identity``, under LmCompatibilityLevel
    ``level``; ``now`` is the time the CHALLENGE's timestamp carries."""

    def __init__(self, identity: NtlmIdentity, level: int, now: datetime.datetime) -> None:
        super().__init__(usage="accept", protocol="ntlm")
        self._identity = identity
        self._now = now
        self._lm = accepts_lm(level)
        self._nt_v1 = accepts_ntlmv1(level)

    def _step_accept_negotiate(self, token: bytes) -> bytes:
        challenge = build_challenge(token, self._identity, os.urandom(8), self._now)
        self._temp_negotiate = Negotiate.unpack(token)
        self._temp_challenge = Challenge.unpack(challenge)
        return challenge


def write_ntlm_users(lab: Lab, path: Path) -> None:
    """pyspnego's NTLM acceptor reads DOMAIN:USER:PASSWORD lines from NTLM_USER_FILE."""
    netbios = lab.organization.netbios
    lines = []
    for mailbox in lab.organization.mailboxes:
        if mailbox.password is None:
            continue
        for domain, user in (
            (netbios, mailbox.account),
            ("", mailbox.account),
            ("", mailbox.user_name),
        ):
            lines.append(f"{domain}:{user}:{mailbox.password}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: services started on one data directory (services.py) never
    # see a half-written file another one is writing.
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.chmod(0o600)
    os.replace(tmp, path)
    os.environ["NTLM_USER_FILE"] = str(path)
