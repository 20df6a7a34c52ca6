"""The lab's certification authorities: a root, an issuing CA, and a CA nobody trusts.

What an Exchange admin gets from a public or enterprise CA, the lab makes itself, under
``DATA/pki/`` (docs/architecture.md §6):

* ``ca/root.crt|.key``: the lab root CA (trustme, RSA 2048, ``OU=exchsim Lab Root CA,
  O=exchsim lab``). It is the one trust anchor of the lab's servers (:func:`trust_anchors`).
* ``ca/issuing.crt|.key``: the issuing (intermediate) CA, ``CN=exchsim Lab Issuing CA,
  O=exchsim lab``, signed by the root, path length 0, with a CRL distribution point at the
  root's CRL. It is built with ``cryptography``, not trustme, because trustme cannot put a CRL
  distribution point in a CA certificate, and revocation is checked for the whole chain except
  the root (exchange.md §4.2).
* ``ca/untrusted.crt|.key``: a self-signed CA (trustme) that no lab server trusts, for
  ``exchsim pki issue --untrusted``; made the first time it is needed.
* ``ca/state.json``: the CRL base URL the certificates point at, fixed when the CAs are made,
  and each CA's CRL number.
* ``crl/<ca>.crl``: each CA's current CRL (DER), published by :func:`publish_crls`: thisUpdate
  now, nextUpdate :data:`CRL_VALIDITY` later (a week, as a Windows CA's base CRL by default),
  CRL number one more than the last, the revoked serials of :mod:`exchsim.tls.issued`.
* ``issued/``: every certificate issued (or imported), see :mod:`exchsim.tls.issued`.

Leaves (:func:`issue_certificate`) look like a third-party CA's server certificate: RSA 2048,
subject ``CN=<name>``, SAN dNSName ``<name>`` (or the names given), EKU serverAuth + clientAuth
(clientAuth only with ``server_auth=False``), KeyUsage digitalSignature + keyEncipherment
(critical), BasicConstraints CA:FALSE (critical), SKI, AKI, and a CRL distribution point
``<base>/crl/issuing.crl`` (``untrusted.crl`` for the untrusted CA). The PEM file of a leaf
holds the leaf and its chain up to, not including, the root: leaf + issuing CA, or the leaf
alone for the untrusted CA (whose leaves it signs directly).

Every file is written atomically (temporary file, fsync, rename); keys are 0600. Changes take
an exclusive ``flock`` on ``DATA/pki/.lock``, so two ``exchsim pki`` commands, or a command and
the lab starting, never interleave their read-modify-write of the index files.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchsim.tls.pki import atomic_write, pki_lock

KEY_FILE_MODE = 0o600
CERT_FILE_MODE = 0o644
RSA_BITS = 2048
ORGANIZATION = "exchsim lab"
ROOT_UNIT = "exchsim Lab Root CA"
ISSUING_COMMON_NAME = "exchsim Lab Issuing CA"
UNTRUSTED_UNIT = "exchsim Untrusted CA"
ROOT, ISSUING, UNTRUSTED = "root", "issuing", "untrusted"
CA_NAMES = (ROOT, ISSUING, UNTRUSTED)
#: The lab's default CRL server (config ``Lab.CrlServer``): loopback, port 80 plus the offset.
DEFAULT_CRL_BASE_URL = "http://127.0.10.251:80"
#: nextUpdate - thisUpdate of every CRL the lab publishes.
CRL_VALIDITY = datetime.timedelta(days=7)
#: A CRL is published again at lab start when it is missing or ends within this margin.
CRL_REFRESH_MARGIN = datetime.timedelta(days=1)
#: Default validity of an issued certificate, and the clock-skew backdate of its NotBefore.
DEFAULT_VALIDITY = datetime.timedelta(days=365)
BACKDATE = datetime.timedelta(hours=1)
_CA_NOT_BEFORE = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
_CA_NOT_AFTER = datetime.datetime(2999, 12, 31, tzinfo=datetime.UTC)


class PkiError(Exception):
    """A lab PKI operation that cannot be done; the message is one line for the user."""


# --- files ------------------------------------------------------------------------------


def write_json(path: Path, value: Any) -> None:
    """An index or state file: private (0600), like everything the lab writes but
    certificates and CRLs, which are public by design."""
    atomic_write(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode(),
                 KEY_FILE_MODE)


def read_json(path: Path, default: Any) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return default
    try:
        return json.loads(text)
    except ValueError as exc:
        raise PkiError(f"{path} is damaged ({exc}); move it aside to start it anew") from exc


def key_pem(key: CertificateIssuerPrivateKeyTypes | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# --- the CAs -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaFiles:
    """One CA of the lab: its certificate and key on disk and loaded."""

    name: str  # "root", "issuing" or "untrusted"
    cert_path: Path
    key_path: Path
    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes


@dataclass(frozen=True, slots=True)
class LabCa:
    """The lab's CAs under ``pki_dir``, and where their CRLs are published and served."""

    pki_dir: Path
    root: CaFiles
    issuing: CaFiles
    untrusted: CaFiles | None  # made on first use (``exchsim pki issue --untrusted``)
    crl_base_url: str  # e.g. "http://127.0.10.251:80", no trailing slash

    @property
    def ca_names(self) -> tuple[str, ...]:
        """The CAs that exist, each with its CRL."""
        return CA_NAMES if self.untrusted is not None else (ROOT, ISSUING)

    @property
    def root_path(self) -> Path:
        """The lab root's PEM file: the CA file to give swaks, openssl or Python's ssl."""
        return self.root.cert_path

    def ca(self, name: str) -> CaFiles:
        found = {ROOT: self.root, ISSUING: self.issuing, UNTRUSTED: self.untrusted}[name]
        if found is None:
            raise PkiError(f"the lab has no {name} CA yet")
        return found

    def crl_url(self, ca_name: str) -> str:
        return f"{self.crl_base_url}/crl/{ca_name}.crl"

    def crl_path(self, ca_name: str) -> Path:
        return crl_dir(self.pki_dir) / f"{ca_name}.crl"


def ca_dir(pki_dir: Path) -> Path:
    return pki_dir / "ca"


def crl_dir(pki_dir: Path) -> Path:
    return pki_dir / "crl"


def _state_path(pki_dir: Path) -> Path:
    return ca_dir(pki_dir) / "state.json"


def _load_ca(pki_dir: Path, name: str) -> CaFiles:
    cert_path = ca_dir(pki_dir) / f"{name}.crt"
    key_path = ca_dir(pki_dir) / f"{name}.key"
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise PkiError(f"{exc.filename} is missing: the lab CA is incomplete; move "
                       f"{ca_dir(pki_dir)} aside to make a new one") from exc
    except ValueError as exc:
        raise PkiError(f"{cert_path} or {key_path} is damaged ({exc}); move "
                       f"{ca_dir(pki_dir)} aside to make a new one") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PkiError(f"{key_path} is not an RSA key")
    return CaFiles(name, cert_path, key_path, cert, key)


def _write_ca(pki_dir: Path, name: str, cert: x509.Certificate,
              key: CertificateIssuerPrivateKeyTypes) -> None:
    atomic_write(ca_dir(pki_dir) / f"{name}.key", key_pem(key), KEY_FILE_MODE)
    atomic_write(ca_dir(pki_dir) / f"{name}.crt", cert_pem(cert), CERT_FILE_MODE)


def _trustme_root(unit: str) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]:
    ca = trustme.CA(organization_name=ORGANIZATION, organization_unit_name=unit,
                    key_type=trustme.KeyType.RSA, path_length=1)
    cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return cert, key


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=not ca,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False,
    )


def _ski(cert: x509.Certificate) -> x509.SubjectKeyIdentifier:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value


def _cdp(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints([x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)], relative_name=None, reasons=None,
        crl_issuer=None)])


def _issuing_ca(root: CaFiles, crl_url: str) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                      x509.NameAttribute(NameOID.COMMON_NAME, ISSUING_COMMON_NAME)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_CA_NOT_BEFORE)
        .not_valid_after(_CA_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            _ski(root.cert)), critical=False)
        .add_extension(_cdp(crl_url), critical=False)
        .sign(root.key, hashes.SHA256())
    )
    return cert, key


def _has(pki_dir: Path, name: str) -> bool:
    return all((ca_dir(pki_dir) / f"{name}.{ext}").exists() for ext in ("crt", "key"))


def crl_base_url(address: str, port: int) -> str:
    """``http://<address>:<port>`` (IPv6 in brackets): where the lab serves its CRLs."""
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}"


def load_lab_ca(pki_dir: Path) -> LabCa:
    """The lab CA under ``pki_dir``; :class:`PkiError` when it was never made or is damaged."""
    if not (_has(pki_dir, ROOT) and _has(pki_dir, ISSUING)):
        raise PkiError(f"there is no lab CA under {pki_dir} yet")
    state = read_json(_state_path(pki_dir), {})
    base = state.get("crl_base_url") if isinstance(state, dict) else None
    if not isinstance(base, str):
        raise PkiError(f"{_state_path(pki_dir)} names no crl_base_url")
    untrusted = _load_ca(pki_dir, UNTRUSTED) if _has(pki_dir, UNTRUSTED) else None
    return LabCa(pki_dir, _load_ca(pki_dir, ROOT), _load_ca(pki_dir, ISSUING), untrusted, base)


def ensure_lab_ca(pki_dir: Path, now: datetime.datetime, *,
                  crl_base_url: str = DEFAULT_CRL_BASE_URL, untrusted: bool = False) -> LabCa:
    """The lab CA under ``pki_dir``, made on first use, with current CRLs.

    An existing CA is reused as it is (its CRL base URL included: certificates already issued
    point there). A missing CA is made: the root by trustme, the issuing CA signed by the root,
    every key 0600. The untrusted CA is made when first needed (``untrusted=True``). Missing
    CRLs, and CRLs that end within :data:`CRL_REFRESH_MARGIN` of ``now``, are published.
    """
    _aware(now)
    base = crl_base_url.rstrip("/")
    with pki_lock(pki_dir):
        if not (_has(pki_dir, ROOT) and _has(pki_dir, ISSUING)):
            root_cert, root_key = _trustme_root(ROOT_UNIT)
            _write_ca(pki_dir, ROOT, root_cert, root_key)
            root = CaFiles(ROOT, ca_dir(pki_dir) / "root.crt", ca_dir(pki_dir) / "root.key",
                           root_cert, root_key)
            issuing_cert, issuing_key = _issuing_ca(root, f"{base}/crl/{ROOT}.crl")
            _write_ca(pki_dir, ISSUING, issuing_cert, issuing_key)
            write_json(_state_path(pki_dir), {"version": 1, "crl_base_url": base,
                                              "crl_numbers": {}})
        if untrusted and not _has(pki_dir, UNTRUSTED):
            untrusted_cert, untrusted_key = _trustme_root(UNTRUSTED_UNIT)
            _write_ca(pki_dir, UNTRUSTED, untrusted_cert, untrusted_key)
        lab_ca = load_lab_ca(pki_dir)
        stale = [name for name in lab_ca.ca_names if _crl_stale(lab_ca.crl_path(name), now)]
        if stale:
            _publish(lab_ca, now, stale)
    return lab_ca


def trust_anchors(lab_ca: LabCa) -> tuple[x509.Certificate, ...]:
    """What the lab's servers trust for a CA-issued certificate (Domain Security): the lab root.

    Not the servers' own self-signed setup certificates: Exchange trusts those for its internal
    hops only (X-ANONYMOUSTLS, Direct Trust, exchange.md §4.1), never as the root of a partner's
    chain. Not the untrusted CA, by design.
    """
    return (lab_ca.root.cert,)


def _aware(now: datetime.datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")


# --- issuing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Validity:
    """NotBefore and NotAfter of a certificate to issue (aware datetimes)."""

    not_before: datetime.datetime
    not_after: datetime.datetime


def validity_for(now: datetime.datetime, *, expired: bool = False, not_yet_valid: bool = False,
                 days: int | None = None) -> Validity:
    """The dates ``exchsim pki issue`` uses.

    Default: from ``now`` - 1 hour (clock skew) for ``days`` (365) days. ``expired``: ended one
    day before ``now``, after ``days`` days. ``not_yet_valid``: starts one day after ``now``.
    """
    _aware(now)
    if expired and not_yet_valid:
        raise PkiError("a certificate cannot be both expired and not yet valid")
    span = DEFAULT_VALIDITY if days is None else datetime.timedelta(days=days)
    if span <= datetime.timedelta(0):
        raise PkiError(f"the validity must be at least one day, not {days}")
    start = now.astimezone(datetime.UTC).replace(microsecond=0)
    if expired:
        end = start - datetime.timedelta(days=1)
        return Validity(end - span, end)
    if not_yet_valid:
        begin = start + datetime.timedelta(days=1)
        return Validity(begin, begin + span)
    return Validity(start - BACKDATE, start + span)


def leaf_certificate(
    issuer: CaFiles,
    name: str,
    dns_names: tuple[str, ...],
    validity: Validity,
    *,
    server_auth: bool,
    crl_url: str,
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A third-party-style leaf signed by ``issuer`` (module docstring for its fields)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server_auth:
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]),
                       critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            _ski(issuer.cert)), critical=False)
        .add_extension(_cdp(crl_url), critical=False)
        .sign(issuer.key, hashes.SHA256())
    )
    return cert, key


# --- CRLs --------------------------------------------------------------------------------


def _crl_stale(path: Path, now: datetime.datetime) -> bool:
    try:
        crl = x509.load_der_x509_crl(path.read_bytes())
    except (OSError, ValueError):
        return True
    next_update = crl.next_update_utc
    return next_update is None or next_update - CRL_REFRESH_MARGIN <= now


def build_crl(ca: CaFiles, number: int, now: datetime.datetime,
              revoked: list[tuple[int, datetime.datetime, x509.ReasonFlags | None]]
              ) -> x509.CertificateRevocationList:
    """A CRL of ``ca``: thisUpdate ``now``, nextUpdate ``now`` + :data:`CRL_VALIDITY`."""
    this_update = now.astimezone(datetime.UTC).replace(microsecond=0)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(this_update)
        .next_update(this_update + CRL_VALIDITY)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            _ski(ca.cert)), critical=False)
    )
    for serial, when, reason in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(ca.key, hashes.SHA256())


def _publish(lab_ca: LabCa, now: datetime.datetime, names: list[str]) -> dict[str, Path]:
    """Publish the CRLs of ``names`` (the caller holds the lock)."""
    state = read_json(_state_path(lab_ca.pki_dir), {})
    numbers = state.setdefault("crl_numbers", {})
    revoked = revoked_by_ca(lab_ca.pki_dir)
    written: dict[str, Path] = {}
    for name in names:
        number = int(numbers.get(name, 0)) + 1
        crl = build_crl(lab_ca.ca(name), number, now, revoked.get(name, []))
        path = lab_ca.crl_path(name)
        atomic_write(path, crl.public_bytes(serialization.Encoding.DER), CERT_FILE_MODE)
        numbers[name] = number
        written[name] = path
    write_json(_state_path(lab_ca.pki_dir), state)
    return written


def issued_index_path(pki_dir: Path) -> Path:
    """``issued/index.json``: the certificates issued, kept by :mod:`exchsim.tls.issued`."""
    return pki_dir / "issued" / "index.json"


REASONS = {flag.value: flag for flag in x509.ReasonFlags
           if flag not in (x509.ReasonFlags.unspecified, x509.ReasonFlags.remove_from_crl)}
Revoked = list[tuple[int, datetime.datetime, x509.ReasonFlags | None]]


def revoked_by_ca(pki_dir: Path) -> dict[str, Revoked]:
    """The revoked serials of each CA, from ``issued/index.json``: what its CRL lists."""
    index = read_json(issued_index_path(pki_dir), {})
    out: dict[str, Revoked] = {}
    try:
        for entry in index.values():
            if entry.get("revoked") is None or entry.get("ca") is None:
                continue
            reason = REASONS.get(entry.get("reason") or "")
            when = datetime.datetime.fromisoformat(entry["revoked"])
            out.setdefault(entry["ca"], []).append((int(entry["serial"], 16), when, reason))
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise PkiError(f"{issued_index_path(pki_dir)} is damaged ({exc})") from exc
    return out


def publish_crls(lab_ca: LabCa, now: datetime.datetime) -> dict[str, Path]:
    """Publish a new CRL for every lab CA (``exchsim pki crl``); returns the files written."""
    _aware(now)
    with pki_lock(lab_ca.pki_dir):
        return _publish(lab_ca, now, list(lab_ca.ca_names))


def load_crl(path: Path) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(path.read_bytes())
