"""Each server's certificate store: Get-ExchangeCertificate and Enable-ExchangeCertificate.

An Exchange server keeps its certificates in its computer's store (LocalMachine\\My) and records
the services each one is enabled for (exchange.md §4.7). The lab keeps, per server:

* the setup certificate, ``DATA/pki/servers/<Name>.crt`` (:mod:`exchsim.tls.pki`), enabled for
  IMAP, POP, IIS and SMTP as setup enables it (``IP.WS..``); it is always there;
* the certificates imported into the server or enabled on it: their files stay under
  ``DATA/pki/issued/<THUMBPRINT>.pem|.key`` (:mod:`exchsim.tls.issued`), and
  ``DATA/pki/store.json`` records which server holds which thumbprint with which services::

      {"version": 1, "servers": {"EX01": {"<THUMBPRINT>": ["SMTP"]}}}

Enabling is additive, as with the cmdlet: services already recorded stay. Enabling a
certificate the server does not hold yet imports it first (the lab's shortcut for
Import-ExchangeCertificate then Enable-ExchangeCertificate). Only SMTP changes what the lab
does: STARTTLS selects among the SMTP-enabled certificates (:func:`smtp_certificates`,
exchange.md §4.5); X-ANONYMOUSTLS keeps the setup certificate. The running lab reads the store
again when ``store.json`` changes (exchsim/daemon.py, within a second).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from exchsim.tls.issued import (
    IssuedRecord,
    check_host_name,
    issued_files,
    issued_records,
    record_for,
    store_files,
)
from exchsim.tls.labca import (
    ISSUING,
    UNTRUSTED,
    LabCa,
    PkiError,
    read_json,
    write_json,
)
from exchsim.tls.pki import (
    CertificateFiles,
    certificate_matches_fqdn,
    dn_equal,
    format_dn,
    load_certificate_files,
    pki_lock,
)

# Enable-ExchangeCertificate's services the lab records, with their letter in the Services
# column of Get-ExchangeCertificate's table (exchange.md §4.7). UM, UMCallRouter and
# Federation are not modelled.
SERVICE_LETTERS = {"IMAP": (0, "I"), "POP": (1, "P"), "IIS": (3, "W"), "SMTP": (4, "S")}
SERVICE_ORDER = ("IMAP", "POP", "IIS", "SMTP")
SETUP_SERVICES = frozenset(SERVICE_ORDER)
FLAG_WIDTH = 7


def parse_services(text: str) -> frozenset[str]:
    """``"SMTP"`` or ``"IIS,SMTP"`` (case-insensitive) -> the set; ``None`` -> empty set."""
    out: set[str] = set()
    for part in text.split(","):
        word = part.strip()
        if word.casefold() == "none":
            continue
        match = next((s for s in SERVICE_ORDER if s.casefold() == word.casefold()), None)
        if match is None:
            raise PkiError(f"service {word!r} is not one of: None, {', '.join(SERVICE_ORDER)}")
        out.add(match)
    return frozenset(out)


def services_flags(services: frozenset[str]) -> str:
    """The Services column of Get-ExchangeCertificate's table: ``....S..`` for SMTP."""
    flags = ["."] * FLAG_WIDTH
    for service in services:
        position, letter = SERVICE_LETTERS[service]
        flags[position] = letter
    return "".join(flags)


def services_text(services: frozenset[str]) -> str:
    """The Services property in Format-List: ``IMAP, POP, IIS, SMTP`` or ``None``."""
    return ", ".join(s for s in SERVICE_ORDER if s in services) or "None"


@dataclass(frozen=True, slots=True)
class StoreEntry:
    """One certificate of a server's store."""

    server: str
    files: CertificateFiles
    services: frozenset[str]
    setup: bool  # the server's self-signed setup certificate
    record: IssuedRecord | None  # its entry in issued/index.json, if any

    @property
    def root_ca_type(self) -> str:
        """Get-ExchangeCertificate's RootCAType: Registry for the setup certificate."""
        if self.setup:
            return "Registry"
        return "None" if self.files.self_signed else "ThirdParty"

    def status(self, now: datetime.datetime, lab_ca: LabCa | None) -> str:
        """Get-ExchangeCertificate's Status: Valid, DateInvalid, Revoked or Untrusted."""
        if self.record is not None and self.record.revoked is not None:
            return "Revoked"
        if not self.files.valid_at(now):
            return "DateInvalid"
        if self.setup:
            return "Valid"
        if self.record is not None and self.record.ca == UNTRUSTED:
            return "Untrusted"
        if self.record is not None and self.record.ca == ISSUING:
            return "Valid"
        if lab_ca is not None and dn_equal(self.files.issuer,
                                           format_dn(lab_ca.issuing.cert.subject)):
            return "Valid"
        return "Untrusted"


def file_version(path: Path) -> tuple[int, int, int] | None:
    """What changes when a file is replaced or written: inode, size, mtime; None if absent."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def store_path(pki_dir: Path) -> Path:
    """``DATA/pki/store.json``: which server holds which certificate for which services."""
    return pki_dir / "store.json"


_store_path = store_path


def _read_store(pki_dir: Path) -> dict[str, Any]:
    raw = read_json(_store_path(pki_dir), {"version": 1, "servers": {}})
    if not isinstance(raw, dict) or not isinstance(raw.get("servers"), dict):
        raise PkiError(f"{_store_path(pki_dir)} is damaged (no servers object)")
    return raw


def _server_key(servers: dict[str, Any], server: str) -> str:
    return next((k for k in servers if k.casefold() == server.casefold()), server)


def store_entries(pki_dir: Path, server: str, setup: CertificateFiles) -> list[StoreEntry]:
    """The certificates of ``server``: its setup certificate first, then the others by
    NotBefore. A certificate whose files went missing is left out."""
    servers = _read_store(pki_dir)["servers"]
    held = servers.get(_server_key(servers, server), {})
    records = {r.thumbprint: r for r in issued_records(pki_dir)}
    entries = [StoreEntry(server, setup, SETUP_SERVICES, True, None)]
    others = []
    for thumbprint, services in held.items():
        if thumbprint == setup.thumbprint:
            continue
        try:
            files = issued_files(pki_dir, thumbprint)
        except PkiError:
            continue
        others.append(StoreEntry(server, files, frozenset(services), False,
                                 records.get(thumbprint)))
    return entries + sorted(others, key=lambda e: (e.files.not_before, e.files.thumbprint))


def smtp_certificates(pki_dir: Path, server: str, setup: CertificateFiles
                      ) -> list[CertificateFiles]:
    """The certificates STARTTLS may select on ``server``: those enabled for SMTP."""
    return [e.files for e in store_entries(pki_dir, server, setup) if "SMTP" in e.services]


def by_domain_name(entries: list[StoreEntry], fqdn: str, now: datetime.datetime
                   ) -> list[StoreEntry]:
    """``Get-ExchangeCertificate -DomainName <fqdn>``: the certificates naming ``fqdn``, the one
    STARTTLS would select for a connector of that Fqdn first (exchange.md §4.5): usable (SMTP,
    valid at ``now``) before the rest, CA-issued before self-signed, newest NotBefore first."""
    named = [e for e in entries if certificate_matches_fqdn(e.files, fqdn)]
    return sorted(named, key=lambda e: ("SMTP" in e.services and e.files.valid_at(now),
                                        not e.files.self_signed, e.files.not_before),
                  reverse=True)


def _add(pki_dir: Path, server: str, thumbprint: str, services: frozenset[str]) -> None:
    """Record ``services`` for ``thumbprint`` on ``server`` (the caller holds the lock)."""
    store = _read_store(pki_dir)
    servers = store["servers"]
    key = _server_key(servers, server)
    held = servers.setdefault(key, {})
    held[thumbprint] = sorted(set(held.get(thumbprint, ())) | services,
                              key=SERVICE_ORDER.index)
    write_json(_store_path(pki_dir), store)


def enable(pki_dir: Path, server: str, thumbprint: str, services: frozenset[str],
           setup: CertificateFiles) -> StoreEntry:
    """Enable-ExchangeCertificate -Server ``server`` -Thumbprint ``thumbprint`` -Services ...

    The certificate must be one the lab issued or imported (kept under ``issued/``), or the
    server's setup certificate (already enabled for every service the lab knows).
    """
    if thumbprint.strip().upper() == setup.thumbprint:
        return StoreEntry(server, setup, SETUP_SERVICES, True, None)
    files = issued_files(pki_dir, thumbprint)
    with pki_lock(pki_dir):
        _add(pki_dir, server, files.thumbprint, services)
    return _entry(pki_dir, server, files.thumbprint, setup)


def import_certificate(pki_dir: Path, server: str, cert_path: Path, key_path: Path,
                       services: frozenset[str], setup: CertificateFiles,
                       name: str | None = None) -> StoreEntry:
    """Import-ExchangeCertificate: a PEM certificate (chain may follow) and its private key into
    ``server``'s store, enabled for ``services`` (may be empty)."""
    try:
        files = load_certificate_files(cert_path, key_path)
        chain = cert_path.read_bytes()
        private = key_path.read_bytes()
    except (OSError, ValueError) as exc:
        raise PkiError(f"cannot import {cert_path}: {exc}") from exc
    cert = x509.load_pem_x509_certificate(chain)
    label = name or (files.dns_names[0] if files.dns_names else files.subject)
    with pki_lock(pki_dir):
        known = {r.thumbprint for r in issued_records(pki_dir)}
        if files.thumbprint not in known:
            with_names = check_host_name(label) if name else label
            store_files(pki_dir, record_for(cert, with_names, None), chain, private)
        _add(pki_dir, server, files.thumbprint, services)
    return _entry(pki_dir, server, files.thumbprint, setup)


def _entry(pki_dir: Path, server: str, thumbprint: str, setup: CertificateFiles) -> StoreEntry:
    return next(e for e in store_entries(pki_dir, server, setup)
                if e.files.thumbprint == thumbprint)
