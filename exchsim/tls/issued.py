"""Certificates the lab CA issued (or that were imported), and their revocation.

``DATA/pki/issued/<THUMBPRINT>.pem`` (leaf, then its chain up to, not including, the root) and
``.key`` (0600) keep every certificate :func:`issue_certificate` made or
:mod:`exchsim.tls.certstore` imported, so that ``exchsim pki enable`` can bind one to a server
by thumbprint. ``issued/index.json`` records, per thumbprint: the name it was issued for, the CA
that signed it (``issuing``, ``untrusted``, or null for an imported certificate), the serial
(upper-case hex), the dates, and when it was revoked (with the reason, if given). The CRLs of
:mod:`exchsim.tls.labca` are made from it.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from exchsim.tls.labca import (
    CERT_FILE_MODE,
    ISSUING,
    KEY_FILE_MODE,
    REASONS,
    UNTRUSTED,
    LabCa,
    PkiError,
    _publish,
    cert_pem,
    issued_index_path,
    key_pem,
    leaf_certificate,
    read_json,
    validity_for,
    write_json,
)
from exchsim.tls.pki import (
    CertificateFiles,
    atomic_write,
    format_dn,
    load_certificate_files,
    pki_lock,
)

__all__ = ["IssuedRecord", "issue_certificate", "issued_records", "revoke", "write_out"]

# A host name, or a wildcard covering its first label: what --name and --dns-name accept.
_HOST = re.compile(r"^(\*\.)?([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*"
                   r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


def check_host_name(value: str, what: str = "name") -> str:
    """``value`` if it is a host name (``*.`` allowed in front), else :class:`PkiError`."""
    if len(value) > 253 or not _HOST.match(value):
        raise PkiError(f"{what} {value!r} is not a host name (letters, digits, hyphens and dots; "
                       "'*.' allowed in front)")
    return value


@dataclass(frozen=True, slots=True)
class IssuedRecord:
    """One entry of ``issued/index.json``."""

    thumbprint: str
    name: str
    ca: str | None  # "issuing", "untrusted", or None for an imported certificate
    serial: str  # upper-case hex
    subject: str
    issuer: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    revoked: datetime.datetime | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "ca": self.ca, "serial": self.serial, "subject": self.subject,
            "issuer": self.issuer, "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "revoked": None if self.revoked is None else self.revoked.isoformat(),
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, thumbprint: str, raw: dict[str, Any]) -> IssuedRecord:
        revoked = raw.get("revoked")
        return cls(
            thumbprint=thumbprint, name=str(raw["name"]), ca=raw.get("ca"),
            serial=str(raw["serial"]), subject=str(raw.get("subject", "")),
            issuer=str(raw.get("issuer", "")),
            not_before=datetime.datetime.fromisoformat(raw["not_before"]),
            not_after=datetime.datetime.fromisoformat(raw["not_after"]),
            revoked=None if revoked is None else datetime.datetime.fromisoformat(revoked),
            reason=raw.get("reason"),
        )


def issued_dir(pki_dir: Path) -> Path:
    return pki_dir / "issued"


def _index_path(pki_dir: Path) -> Path:
    return issued_index_path(pki_dir)


def _read_index(pki_dir: Path) -> dict[str, dict[str, Any]]:
    raw = read_json(_index_path(pki_dir), {})
    if not isinstance(raw, dict):
        raise PkiError(f"{_index_path(pki_dir)} is damaged (not a JSON object)")
    return raw


def issued_records(pki_dir: Path) -> list[IssuedRecord]:
    """Every certificate of ``issued/index.json``, oldest first."""
    try:
        records = [IssuedRecord.from_json(t, raw) for t, raw in _read_index(pki_dir).items()]
    except (KeyError, TypeError, ValueError) as exc:
        raise PkiError(f"{_index_path(pki_dir)} is damaged ({exc})") from exc
    return sorted(records, key=lambda r: (r.not_before, r.thumbprint))


def _thumbprint(cert: x509.Certificate) -> str:
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()


def _even_hex(value: int) -> str:
    text = f"{value:X}"
    return text if len(text) % 2 == 0 else "0" + text


def _serial_value(text: str) -> int:
    try:
        return int(text.strip().replace(":", "").replace(" ", ""), 16)
    except ValueError as exc:
        raise PkiError(f"serial number {text!r} is not hexadecimal") from exc


def record_for(cert: x509.Certificate, name: str, ca: str | None) -> IssuedRecord:
    return IssuedRecord(
        thumbprint=_thumbprint(cert), name=name, ca=ca, serial=_even_hex(cert.serial_number),
        subject=format_dn(cert.subject), issuer=format_dn(cert.issuer),
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
    )


def store_files(pki_dir: Path, record: IssuedRecord, chain_pem: bytes, private_key_pem: bytes
                ) -> CertificateFiles:
    """Keep a certificate under ``issued/`` and add it to the index (the caller holds the lock)."""
    directory = issued_dir(pki_dir)
    key_path = directory / f"{record.thumbprint}.key"
    cert_path = directory / f"{record.thumbprint}.pem"
    atomic_write(key_path, private_key_pem, KEY_FILE_MODE)
    atomic_write(cert_path, chain_pem, CERT_FILE_MODE)
    index = _read_index(pki_dir)
    index.setdefault(record.thumbprint, record.to_json())
    write_json(_index_path(pki_dir), index)
    return load_certificate_files(cert_path, key_path)


def issued_files(pki_dir: Path, thumbprint: str) -> CertificateFiles:
    """The certificate and key kept under ``issued/`` for ``thumbprint``."""
    thumbprint = thumbprint.strip().upper()
    if not re.fullmatch(r"[0-9A-F]{40}", thumbprint):
        raise PkiError(f"thumbprint {thumbprint!r} is not 40 hexadecimal digits")
    path = issued_dir(pki_dir) / f"{thumbprint}.pem"
    if not path.exists():
        raise PkiError(f"no certificate with thumbprint {thumbprint} under {issued_dir(pki_dir)}")
    try:
        return load_certificate_files(path, path.with_suffix(".key"))
    except (OSError, ValueError) as exc:
        raise PkiError(f"{path}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """What :func:`issue_certificate` made: the files under ``issued/`` and the index entry."""

    files: CertificateFiles
    record: IssuedRecord
    certificate: x509.Certificate
    chain_pem: bytes  # leaf, then its chain up to, not including, the root
    key_pem: bytes


def issue_certificate(
    lab_ca: LabCa,
    name: str,
    now: datetime.datetime,
    *,
    dns_names: Sequence[str] = (),
    expired: bool = False,
    not_yet_valid: bool = False,
    server_auth: bool = True,
    untrusted: bool = False,
    days: int | None = None,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> IssuedCertificate:
    """Issue a certificate for ``name`` (subject ``CN=<name>``) and keep it under ``issued/``.

    ``dns_names`` replaces the SAN (default: ``name`` alone), for certificates whose names do
    not fit the domain they are used for. ``expired`` / ``not_yet_valid`` / ``days`` pick the
    dates (:func:`exchsim.tls.labca.validity_for`); ``not_before`` / ``not_after`` set them
    exactly (tests that pin ``now``). ``server_auth=False``: EKU clientAuth only.
    ``untrusted``: signed by the CA no lab server trusts (``lab_ca`` must have it:
    :func:`exchsim.tls.labca.ensure_lab_ca` with ``untrusted=True``).
    """
    check_host_name(name)
    names = tuple(check_host_name(n, "DNS name") for n in dns_names) or (name,)
    validity = validity_for(now, expired=expired, not_yet_valid=not_yet_valid, days=days)
    if not_before is not None or not_after is not None:
        validity = type(validity)(not_before or validity.not_before,
                                  not_after or validity.not_after)
        if validity.not_after <= validity.not_before:
            raise PkiError("NotAfter must come after NotBefore")
    ca_name = UNTRUSTED if untrusted else ISSUING
    ca = lab_ca.ca(ca_name)
    cert, key = leaf_certificate(ca, name, names, validity, server_auth=server_auth,
                                 crl_url=lab_ca.crl_url(ca_name))
    chain = cert_pem(cert) + (b"" if untrusted else cert_pem(lab_ca.issuing.cert))
    private = key_pem(key)
    record = record_for(cert, name, ca_name)
    with pki_lock(lab_ca.pki_dir):
        files = store_files(lab_ca.pki_dir, record, chain, private)
    return IssuedCertificate(files, record, cert, chain, private)


def write_out(issued: IssuedCertificate, out_dir: Path, stem: str) -> tuple[Path, Path]:
    """``out_dir/<stem>.pem`` (certificate and chain) and ``.key`` (0600), written atomically."""
    pem_path, key_path = out_dir / f"{stem}.pem", out_dir / f"{stem}.key"
    atomic_write(key_path, issued.key_pem, KEY_FILE_MODE)
    atomic_write(pem_path, issued.chain_pem, CERT_FILE_MODE)
    return pem_path, key_path


def revoke(lab_ca: LabCa, now: datetime.datetime, *, name: str | None = None,
           serial: str | None = None, reason: str | None = None) -> list[IssuedRecord]:
    """Revoke every unrevoked lab-issued certificate of ``name`` (or the one of ``serial``),
    then publish new CRLs. :class:`PkiError` when nothing matches."""
    if (name is None) == (serial is None):
        raise PkiError("name exactly one certificate: a name or a serial number")
    if reason is not None and reason not in REASONS:
        raise PkiError(f"reason {reason!r} is not one of: {', '.join(sorted(REASONS))}")
    wanted_serial = None if serial is None else _serial_value(serial)
    when = now.astimezone(datetime.UTC).replace(microsecond=0)
    with pki_lock(lab_ca.pki_dir):
        index = _read_index(lab_ca.pki_dir)
        records = [IssuedRecord.from_json(t, raw) for t, raw in index.items()]
        matches = [r for r in records if r.ca is not None and (
            (name is not None and r.name.casefold() == name.casefold())
            or (wanted_serial is not None and int(r.serial, 16) == wanted_serial))]
        if not matches:
            what = f"named {name!r}" if name is not None else f"with serial {serial}"
            raise PkiError(f"the lab CA issued no certificate {what}")
        fresh = [r for r in matches if r.revoked is None]
        if not fresh:
            raise PkiError(f"every certificate of {name or serial} is already revoked")
        done = []
        for record in fresh:
            entry = index[record.thumbprint]
            entry["revoked"] = when.isoformat()
            entry["reason"] = reason
            done.append(IssuedRecord.from_json(record.thumbprint, entry))
        write_json(_index_path(lab_ca.pki_dir), index)
        _publish(lab_ca, now, sorted({r.ca for r in done if r.ca is not None}))
    return done
