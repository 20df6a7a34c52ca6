"""Validation of a client certificate chain, as Domain Security needs it (exchange.md §4.2, §4.8).

Pure: no I/O and no clock. The caller passes ``now``, the trust anchors and the CRLs it has
already fetched (DER or PEM bytes or a parsed CRL; ``None`` for a distribution point that could
not be fetched); the runtime does the fetching (``exchsim/tls/revocation.py``) and calls
:func:`validate_chain` once it has them.

What is checked, in this order, the first failure giving the status (Windows reports every
error of a chain at once; Exchange logs one status, exchange.md §4.8 says which name exchsim
gives each):

1. **A path** from the presented leaf to a trust anchor, with the other presented certificates
   and the intermediates the server knows as candidate issuers. An issuer must carry the
   leaf's issuer name as its subject, be a CA (BasicConstraints CA:TRUE, keyCertSign when
   KeyUsage is present) and have signed the certificate. No path: ``UntrustedRoot``; a path
   whose only candidate issuer did not sign it: ``SignatureFailure``. A self-signed leaf that
   is itself a trust anchor is ``ValidSelfSigned`` when the rest passes.
2. **Dates** of every certificate of the path, anchor included, inclusive at both ends
   (``notBefore <= now <= notAfter``): ``UntrustedTime``.
3. **Usage**: an extended key usage extension, where present (on the leaf or a CA of the path),
   must allow serverAuth (1.3.6.1.5.5.7.3.1) or anyExtendedKeyUsage: ``WrongUsage``. A
   certificate without the extension is good for every usage, as in Windows.
4. **Revocation** of every certificate of the path except the root (the anchor): a CRL from one
   of its distribution points, signed by its issuer and current at ``now``. Listed:
   ``Revoked``; no usable CRL (none fetched, no distribution point, a bad signature, past its
   nextUpdate): ``RevocationOffline``, which fails the chain unless ``offline`` is
   ``Accept`` (``Lab.WhenRevocationOffline``; exchange.md §4.8: Exchange fails it).

Names (:func:`matches_domain`) are checked apart, against the sender's domain at MAIL FROM:
every SAN dNSName, or the subject's CN when there is none, case-insensitive;
``*.example.com`` matches any name below ``example.com``, at any depth (the "multi-level"
reading of exchange.md §4.8), never ``example.com`` itself.
"""

from __future__ import annotations

import datetime
import enum
import functools
import hashlib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchsim.config.capabilities import RevocationOffline as OfflineAction

__all__ = [
    "ChainStatus",
    "ChainVerdict",
    "OfflineAction",
    "certificate_names",
    "describe",
    "load_anchors",
    "matches_domain",
    "revocation_urls",
    "validate_chain",
]

MAX_DEPTH = 8


class ChainStatus(enum.StrEnum):
    """The chain validation status the protocol log writes (exchange.md §4.8)."""

    VALID = "Valid"
    VALID_SELF_SIGNED = "ValidSelfSigned"
    EMPTY_CERTIFICATE = "EmptyCertificate"
    SUBJECT_MISMATCH = "SubjectMismatch"
    SIGNATURE_FAILURE = "SignatureFailure"
    UNTRUSTED_ROOT = "UntrustedRoot"
    UNTRUSTED_TIME = "UntrustedTime"
    WRONG_USAGE = "WrongUsage"
    REVOKED = "Revoked"
    REVOCATION_OFFLINE = "RevocationOffline"

    @property
    def trusted(self) -> bool:
        return self in (ChainStatus.VALID, ChainStatus.VALID_SELF_SIGNED)


@dataclass(frozen=True, slots=True)
class ChainVerdict:
    """The status of a presented chain and what the session needs of its leaf."""

    status: ChainStatus
    names: tuple[str, ...] = ()  # the leaf's CN and SAN dNSNames, lower-case
    leaf: bytes | None = None  # DER
    revocation_unchecked: bool = False  # OfflineAction.ACCEPT let an offline check pass

    @property
    def trusted(self) -> bool:
        return self.status.trusted

    def status_for(self, domain: str) -> ChainStatus:
        """The status for a sender of ``domain``: the chain's, or SubjectMismatch."""
        if self.trusted and not matches_domain(self.names, domain):
            return ChainStatus.SUBJECT_MISMATCH
        return self.status


EMPTY = ChainVerdict(ChainStatus.EMPTY_CERTIFICATE)


# --- names --------------------------------------------------------------------------------------

def certificate_names(cert: x509.Certificate) -> tuple[str, ...]:
    """The names a certificate is for: its SAN dNSNames, or its subject CN when it has none
    (RFC 6125 §6.4.4), lower-case, without a trailing dot, each once."""
    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names.extend(san.get_values_for_type(x509.DNSName))
    except (x509.ExtensionNotFound, ValueError):
        pass
    if not names:
        for attribute in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
            value = attribute.value
            if isinstance(value, str):
                names.append(value)
    out: list[str] = []
    for name in names:
        clean = name.strip().rstrip(".").lower()
        if clean and clean not in out:
            out.append(clean)
    return tuple(out)


def matches_domain(names: Sequence[str], domain: str) -> bool:
    """Whether one of ``names`` is ``domain`` or a wildcard above it (module docstring)."""
    wanted = domain.strip().rstrip(".").lower()
    if not wanted:
        return False
    for raw in names:
        name = raw.strip().rstrip(".").lower()
        if name == wanted:
            return True
        if name.startswith("*.") and len(name) > 2 and wanted.endswith(name[1:]):
            return True
    return False


# --- the chain ------------------------------------------------------------------------------------

def _load(der: bytes) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        return None


def load_anchors(pem_or_der: Sequence[bytes]) -> tuple[x509.Certificate, ...]:
    """Certificates from PEM bundles or DER blobs (what a trust anchor file holds)."""
    out: list[x509.Certificate] = []
    for blob in pem_or_der:
        if b"-----BEGIN" in blob:
            out.extend(x509.load_pem_x509_certificates(blob))
        else:
            cert = _load(blob)
            if cert is not None:
                out.append(cert)
    return tuple(out)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    if not basic.ca:
        return False
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return usage.key_cert_sign


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def _build_path(chain: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate],
                intermediates: Sequence[x509.Certificate] = ()
                ) -> tuple[tuple[x509.Certificate, ...], ChainStatus | None]:
    """(path leaf first, ending at an anchor) or ((), the failure status)."""
    anchor_ders = {_der(a) for a in anchors}
    leaf = chain[0]
    path = [leaf]
    pool = [*chain[1:], *intermediates]
    signature_failure = False
    for _ in range(MAX_DEPTH):
        current = path[-1]
        if _der(current) in anchor_ders:
            return tuple(path), None
        if current.issuer == current.subject and _signed_by(current, current):
            break  # a self-signed certificate that is no anchor: the path ends untrusted
        candidates = [c for c in (*anchors, *pool) if c.subject == current.issuer and _is_ca(c)]
        issuer = next((c for c in candidates if _signed_by(current, c)), None)
        if issuer is None:
            signature_failure = bool(candidates)
            break
        path.append(issuer)
        if issuer in pool:
            pool.remove(issuer)
    return (), ChainStatus.SIGNATURE_FAILURE if signature_failure else ChainStatus.UNTRUSTED_ROOT


def _valid_at(cert: x509.Certificate, now: datetime.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _usage_allows_server_auth(cert: x509.Certificate) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    except ValueError:  # an extension that cannot be read (an empty EKU): no usage is shown
        return False
    return (ExtendedKeyUsageOID.SERVER_AUTH in eku
            or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku)


def _distribution_points(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except (x509.ExtensionNotFound, ValueError):
        return ()
    urls: list[str] = []
    for point in points:
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier):
                urls.append(name.value)
    return tuple(urls)


def _load_crl(data: bytes) -> x509.CertificateRevocationList | None:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError:
        return None


class _Revocation(enum.Enum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


CrlInput = bytes | x509.CertificateRevocationList | None  # as fetched; None: unavailable


def _revocation(cert: x509.Certificate, issuer: x509.Certificate, now: datetime.datetime,
                crls: Mapping[str, CrlInput]) -> _Revocation:
    for url in _distribution_points(cert):
        data = crls.get(url)
        crl = data if isinstance(data, x509.CertificateRevocationList) else (
            _load_crl(data) if data else None)
        if crl is None or crl.issuer != issuer.subject:
            continue
        try:
            if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                continue
        except (TypeError, UnsupportedAlgorithm):
            continue
        next_update = crl.next_update_utc
        if crl.last_update_utc > now or (next_update is not None and now > next_update):
            continue  # not current: as if it could not be fetched
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None and entry.revocation_date_utc <= now:
            return _Revocation.REVOKED
        return _Revocation.GOOD
    return _Revocation.UNKNOWN


def _parse_chain(chain: Sequence[bytes]) -> list[x509.Certificate] | None:
    certs = [_load(der) for der in chain]
    if not certs or certs[0] is None:
        return None
    return [c for c in certs if c is not None]


def revocation_urls(chain: Sequence[bytes], anchors: Sequence[x509.Certificate],
                    intermediates: Sequence[x509.Certificate] = ()) -> tuple[str, ...]:
    """The CRL distribution points to fetch for ``chain``: those of every certificate of its
    path but the root. Empty when there is no path (nothing to fetch: the chain fails anyway)."""
    certs = _parse_chain(chain)
    if certs is None:
        return ()
    path, failure = _build_path(certs, anchors, intermediates)
    if failure is not None:
        return ()
    urls: list[str] = []
    for cert in path[:-1]:
        urls.extend(u for u in _distribution_points(cert) if u not in urls)
    return tuple(urls)


def validate_chain(
    chain: Sequence[bytes],
    anchors: Sequence[x509.Certificate],
    now: datetime.datetime,
    crls: Mapping[str, CrlInput],
    offline: OfflineAction = OfflineAction.FAIL,
    intermediates: Sequence[x509.Certificate] = (),
) -> ChainVerdict:
    """The status of a presented chain (leaf first, DER) at ``now`` (module docstring).
    ``intermediates``: CA certificates the server knows besides the anchors (Windows'
    Intermediate Certification Authorities store), for clients that present only their leaf."""
    if not chain:
        return EMPTY
    certs = _parse_chain(chain)
    if certs is None:
        return ChainVerdict(ChainStatus.UNTRUSTED_ROOT, leaf=chain[0])
    leaf = certs[0]
    names = certificate_names(leaf)

    def verdict(status: ChainStatus, unchecked: bool = False) -> ChainVerdict:
        return ChainVerdict(status, names, chain[0], unchecked)

    path, failure = _build_path(certs, anchors, intermediates)
    if failure is not None:
        return verdict(failure)
    if not all(_valid_at(c, now) for c in path):
        return verdict(ChainStatus.UNTRUSTED_TIME)
    if not all(_usage_allows_server_auth(c) for c in path):
        return verdict(ChainStatus.WRONG_USAGE)
    unknown = False
    for cert, issuer in itertools.pairwise(path):
        state = _revocation(cert, issuer, now, crls)
        if state is _Revocation.REVOKED:
            return verdict(ChainStatus.REVOKED)
        unknown = unknown or state is _Revocation.UNKNOWN
    if unknown and offline is OfflineAction.FAIL:
        return verdict(ChainStatus.REVOCATION_OFFLINE)
    status = ChainStatus.VALID_SELF_SIGNED if len(path) == 1 else ChainStatus.VALID
    return verdict(status, unknown)


# --- the protocol log's picture of a certificate -----------------------------------------------

@functools.lru_cache(maxsize=256)
def describe(der: bytes) -> str:
    """``<subject> <issuer> <serial> <thumbprint> <notBefore> <notAfter> <SAN1>;<SAN2>``, the data
    of the protocol log's certificate lines (exchange.md §1.6), for a certificate in DER.

    Cached by the DER bytes: every hop between the lab's servers logs the same few certificates
    (about 0.35 ms a line to build, a tenth of a hop's CPU), and a client's certificate logged
    again is the same text. 256 entries of a few hundred bytes bound the cache."""
    cert = _load(der)
    if cert is None:
        return ""
    subject = ", ".join(r.rfc4514_string() for r in reversed(cert.subject.rdns))
    issuer = ", ".join(r.rfc4514_string() for r in reversed(cert.issuer.rdns))
    serial = format(cert.serial_number, "X")
    if len(serial) % 2:
        serial = "0" + serial
    thumbprint = hashlib.sha1(der).hexdigest().upper()  # Windows' thumbprint
    stamp = "%Y-%m-%dT%H:%M:%S.000Z"
    sans: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = san.get_values_for_type(x509.DNSName)
    except (x509.ExtensionNotFound, ValueError):
        pass
    return (f"{subject} {issuer} {serial} {thumbprint} "
            f"{cert.not_valid_before_utc.strftime(stamp)} "
            f"{cert.not_valid_after_utc.strftime(stamp)} {';'.join(sans)}").rstrip()
