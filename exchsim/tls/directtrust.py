"""exchsim's stand-in for X-EXPS EXCHANGEAUTH (Exchange-to-Exchange authentication).

Real Exchange authenticates one transport server to another inside X-ANONYMOUSTLS with
``X-EXPS EXCHANGEAUTH``: a Kerberos-derived hash bound to the TLS channel (exchange.md §4.1).
The lab has no Kerberos, so exchsim uses the servers' published certificates instead
(Direct Trust style), bound to the TLS channel the same way:

1. The connecting server sends ``X-ANONYMOUSTLS`` and, in the TLS 1.2 handshake, presents its
   own server certificate as the TLS **client** certificate. The handshake proves it holds the
   private key. The receiving server completes the handshake with any certificate
   (:class:`exchsim.tls.judged.JudgedServerContext`) and judges it after: one that is not a
   published server certificate gets ``454 4.7.0`` at the next EHLO and the connection closes
   (exchange.md §4.1 item 3).
2. After the new EHLO it sends ``X-EXPS EXCHANGEAUTH SHA256 <blob>`` where
   ``blob = base64("<server-fqdn>:" + hex(sha256(b"exchsim-exchangeauth\\0" + tls_unique +
   fqdn.encode())))`` and ``tls_unique = ssl_object.get_channel_binding("tls-unique")``
   (identical on both sides of a TLS 1.2 session, different for every session).
3. The receiver (:func:`verify_exchangeauth`) accepts only if the blob decodes, names a server
   of the organization, the certificate presented in the handshake is exactly (DER) the one
   published for that server, and the hash matches its own ``tls_unique``. A blob captured from
   another session (a replay) fails the hash; a server cannot claim another server's name,
   because its certificate is not the one published for that name.

The receiver answers ``235`` with a blob of its own (same construction, its own FQDN), so the
connecting side may check the server too. Everything here is pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

MECHANISM = "EXCHANGEAUTH"
HASH_NAME = "SHA256"
_LABEL = b"exchsim-exchangeauth\0"


@dataclass(frozen=True, slots=True)
class ExchangeAuthResult:
    ok: bool
    server_fqdn: str | None  # the FQDN the blob claims (as written), None if undecodable
    reason: str  # for the protocol log / trace, on success too


def _digest(fqdn: str, tls_unique: bytes) -> str:
    return hashlib.sha256(_LABEL + tls_unique + fqdn.encode("ascii")).hexdigest()


def _check_fqdn(fqdn: str) -> None:
    if not fqdn or not fqdn.isascii() or ":" in fqdn or any(c.isspace() for c in fqdn):
        raise ValueError(f"not a usable FQDN for EXCHANGEAUTH: {fqdn!r}")


def _thumbprint(der: bytes) -> str:
    return hashlib.sha1(der).hexdigest().upper()


def make_exchangeauth_blob(fqdn: str, tls_unique: bytes) -> str:
    """The base64 (ASCII) argument of ``X-EXPS EXCHANGEAUTH SHA256``."""
    _check_fqdn(fqdn)
    if not tls_unique:
        raise ValueError("tls_unique must not be empty")
    return base64.b64encode(f"{fqdn}:{_digest(fqdn, tls_unique)}".encode("ascii")).decode("ascii")


def _fail(reason: str, fqdn: str | None = None) -> ExchangeAuthResult:
    return ExchangeAuthResult(False, fqdn, reason)


def verify_exchangeauth(
    blob: str,
    tls_unique: bytes | None,
    peer_cert_der: bytes | None,
    published: Mapping[str, bytes],
) -> ExchangeAuthResult:
    """Check an EXCHANGEAUTH blob against this session's channel binding and client cert.

    ``published`` maps each organization server's FQDN (compared case-insensitively) to the
    DER of its published certificate.
    """
    text = blob.strip()
    if not text:
        return _fail("no EXCHANGEAUTH blob")
    try:
        decoded = base64.b64decode(text, validate=True).decode("ascii")
    except (binascii.Error, ValueError):
        return _fail("EXCHANGEAUTH blob is not base64 of ASCII text")
    fqdn, sep, digest = decoded.rpartition(":")
    if not sep or not fqdn:
        return _fail("EXCHANGEAUTH blob is not '<fqdn>:<sha256 hex>'")
    try:
        _check_fqdn(fqdn)
    except ValueError:
        return _fail(f"EXCHANGEAUTH blob names an invalid FQDN {fqdn!r}")
    digest = digest.lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        return _fail("EXCHANGEAUTH hash is not 64 hex digits", fqdn)
    certs = {name.lower(): der for name, der in published.items()}
    expected_der = certs.get(fqdn.lower())
    if expected_der is None:
        return _fail(f"{fqdn} is not an Exchange server of this organization", fqdn)
    if not tls_unique:
        return _fail("no tls-unique channel binding (X-ANONYMOUSTLS over TLS 1.2 needed)", fqdn)
    if peer_cert_der is None:
        return _fail("no client certificate was presented in the TLS handshake", fqdn)
    if peer_cert_der != expected_der:
        return _fail(
            f"client certificate {_thumbprint(peer_cert_der)} is not the certificate "
            f"published for {fqdn} ({_thumbprint(expected_der)})",
            fqdn,
        )
    if not hmac.compare_digest(digest, _digest(fqdn, tls_unique)):
        return _fail("EXCHANGEAUTH hash does not match this TLS session (replayed?)", fqdn)
    return ExchangeAuthResult(
        True, fqdn, f"authenticated {fqdn} by certificate {_thumbprint(peer_cert_der)}"
    )
