"""Every ``ssl.SSLContext`` exchsim uses is built here, and only here.

Contexts are built from :class:`~exchsim.tls.pki.CertificateFiles` with a bare
``ssl.SSLContext(PROTOCOL_TLS_SERVER/CLIENT)`` rather than ``ssl.create_default_context``: the
latter loads the system CA store into server-side contexts, and X-ANONYMOUSTLS must trust
exactly the organization's published server certificates and nothing else.

Trust anchors for X-ANONYMOUSTLS (measured on this machine, CPython 3.11.7 with OpenSSL
3.0.19, asyncio ``start_tls`` over 127.0.0.1): the servers' self-signed certificates are *leaf*
certificates (basicConstraints CA:FALSE, keyUsage without keyCertSign). Loaded with
``load_verify_locations(cadata=...)`` they **are** accepted as trust anchors as they are:
OpenSSL trusts a self-signed certificate that is byte-for-byte present in the trust store,
without ``VERIFY_X509_PARTIAL_CHAIN`` and without CA:TRUE. All eight combinations of
CA:FALSE/CA:TRUE x keyCertSign yes/no x partial-chain flag on/off gave the same result, and so
did CA:FALSE and CA:TRUE with ``VERIFY_X509_STRICT``. So exchsim keeps CA:FALSE (what a leaf
is) and sets no extra verify flags. Further measurements with that setup:

* a certificate not in the store fails even if it has the same subject *and the same key* as a
  trusted one (``certificate verify failed: self-signed certificate``): trust is per
  certificate, not per name or key;
* a CA-issued client certificate whose CA is not loaded fails with ``unable to get local issuer
  certificate``;
* a client certificate with EKU serverAuth only fails with ``unsuitable certificate purpose``,
  which is why the lab certificates also carry clientAuth;
* with TLS 1.2 (forced here) a rejected client certificate fails the handshake itself. The
  server's ``start_tls`` raises ``ssl.SSLCertVerificationError``; asyncio then aborts the
  connection without flushing the alert, so the client's ``start_tls`` raised
  ``ConnectionResetError`` (100 of 100 runs). The same holds the other way round: when a
  verifying client rejects the server, the client gets ``SSLCertVerificationError`` and the
  server ``ConnectionResetError``. With TLS 1.3 the client would only notice on its first read
  (reference environment.md §2).

X-ANONYMOUSTLS contexts are capped at TLS 1.2 because ``tls-unique`` (the channel binding that
:mod:`exchsim.tls.directtrust` hashes) is only defined up to TLS 1.2. Renegotiation is disabled
on them, since it would change ``tls-unique`` mid-session.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path

from exchsim.tls.pki import CertificateFiles

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


def _server_base(cert: CertificateFiles) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MINIMUM_VERSION
    ctx.load_cert_chain(cert.cert_path, cert.key_path)
    return ctx


def server_context_starttls(cert: CertificateFiles) -> ssl.SSLContext:
    """Opportunistic TLS on a Receive connector: presents ``cert``, asks for no client cert."""
    ctx = _server_base(cert)
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def server_context_anonymous_tls(
    cert: CertificateFiles, trusted_server_certs: Sequence[CertificateFiles]
) -> ssl.SSLContext:
    """The receiving side of X-ANONYMOUSTLS.

    Presents ``cert``, requests a client certificate (CERT_OPTIONAL: a client without one still
    gets a session), and trusts exactly ``trusted_server_certs`` (the organization's published,
    self-signed server certificates). A client certificate that is not one of them fails the
    handshake. TLS 1.2 only, so ``tls-unique`` is defined.
    """
    ctx = _server_base(cert)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    ders: list[bytes] = []
    for trusted in trusted_server_certs:
        der = trusted.load_der()
        if der not in ders:
            ders.append(der)
    if ders:
        ctx.load_verify_locations(cadata=b"".join(ders))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def client_context_anonymous_tls(own: CertificateFiles) -> ssl.SSLContext:
    """The connecting Exchange server's side of X-ANONYMOUSTLS.

    Presents ``own`` as the client certificate; does not verify the server (anonymous TLS: the
    peer is authenticated afterwards by X-EXPS EXCHANGEAUTH). TLS 1.2 only.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = MINIMUM_VERSION
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
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
