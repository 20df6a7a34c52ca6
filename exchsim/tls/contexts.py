"""Every ``ssl.SSLContext`` exchsim uses is built here, and only here.

Contexts are built from :class:`~exchsim.tls.pki.CertificateFiles` with a bare
``ssl.SSLContext(PROTOCOL_TLS_SERVER/CLIENT)`` rather than ``ssl.create_default_context``: the
latter loads the system CA store, and the lab trusts only what it is told to.

No receiving side (STARTTLS, X-ANONYMOUSTLS) is an ``ssl`` context: it must request a client
certificate, complete the handshake with whatever comes and judge it afterwards
(exchange.md §4.1 and exchange.md §4.2), which Python's ``ssl`` cannot (no verify callback; a
requested certificate that does not verify fails the handshake). It is
:class:`exchsim.tls.judged.JudgedServerContext`, on pyOpenSSL, with Windows Server 2016/2019's
TLS profile (:mod:`exchsim.tls.schannel`, exchange.md §4.6); the hop client's context gets the
same profile through :func:`exchsim.tls.schannel.client_profile`.

X-ANONYMOUSTLS contexts are capped at TLS 1.2 because ``tls-unique`` (the channel binding that
:mod:`exchsim.tls.directtrust` hashes) is only defined up to TLS 1.2. Renegotiation is disabled
on them, since it would change ``tls-unique`` mid-session.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from exchsim.tls.judged import JudgedServerContext
from exchsim.tls.pki import CertificateFiles
from exchsim.tls.schannel import LegacyProtocols, client_profile

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


def server_context_starttls(cert: CertificateFiles,
                            legacy: LegacyProtocols | None = None) -> JudgedServerContext:
    """STARTTLS on a Receive connector: presents ``cert`` with Windows' TLS profile, requests a
    client certificate and completes the handshake whatever comes, to be judged after
    (exchange.md §4.2)."""
    return JudgedServerContext(cert, legacy)


def client_context_anonymous_tls(own: CertificateFiles) -> ssl.SSLContext:
    """The connecting Exchange server's side of X-ANONYMOUSTLS.

    Presents ``own`` as the client certificate; does not verify the server (anonymous TLS: the
    peer is authenticated afterwards by X-EXPS EXCHANGEAUTH). TLS 1.2 only.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_profile(ctx)  # TLS 1.2, Schannel's suites and groups (tls/schannel.py)
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(own.cert_path, own.key_path)
    return ctx


def client_context_starttls(own: CertificateFiles | None) -> ssl.SSLContext:
    """The client side of a send connector's STARTTLS (transport/smtpsend.py, exchange.md §4.3).

    Schannel's client profile, as the hop client (TLS 1.2, its suites and groups), presenting
    ``own`` (the server's certificate or the connector's TlsCertificateName; none when None) as
    the client certificate. The server's certificate is not verified here: the handshake
    completes with whatever comes and the chain is judged afterwards by the connector's
    TlsAuthLevel, with the lab's trust stores and CRLs (tls/revocation.py), as the receive side
    judges clients.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_profile(ctx)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if own is not None:
        ctx.load_cert_chain(own.cert_path, own.key_path)
    return ctx


def client_context_verify(
    cafile: Path | None = None, *, check_hostname: bool = True
) -> ssl.SSLContext:
    """An ordinary TLS client (tests, the internet sink's peers).

    Without ``cafile``: no verification at all (CERT_NONE, no hostname check). With ``cafile``:
    the server certificate must chain to (or be) a certificate in ``cafile``, and unless
    ``check_hostname`` is False its name must match the ``server_hostname`` used to connect.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = MINIMUM_VERSION
    if cafile is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx.load_verify_locations(cafile=cafile)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = check_hostname
    return ctx
