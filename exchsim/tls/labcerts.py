"""A server's certificate from the lab CA, issued at start: ``ExchsimLabCertificate``.

What an Exchange admin does once per server with a CA (New-ExchangeCertificate for the names,
the CA issues it, Import-ExchangeCertificate, Enable-ExchangeCertificate -Services SMTP;
exchange.md §4.7), the lab does at start for a server whose config entry names the
certificate's host names: unless the server's store (:mod:`exchsim.tls.certstore`) already holds
a certificate of the lab's issuing CA for exactly those names that is neither revoked nor out of
its dates, the lab CA issues one (subject CN the first name, SAN every name;
:func:`exchsim.tls.issued.issue_certificate`) and enables it for SMTP. Afterwards it is an
ordinary certificate of the store: ``exchsim pki get`` lists it, ``exchsim pki revoke`` revokes
it (a revoked or expired one is replaced at the next start).

Domain Security needs such a certificate on both sides (exchange.md §4.2, §4.3): the sending
server presents it as its client certificate and the receiving one checks that it names the
sender's domain; the receiving server presents it on STARTTLS and the sender checks that it
names the recipient's domain.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path

from exchsim.config.model import Lab, Server
from exchsim.tls.certstore import StoreEntry, enable, store_entries
from exchsim.tls.issued import issue_certificate
from exchsim.tls.labca import ISSUING, LabCa, crl_base_url, ensure_lab_ca
from exchsim.tls.pki import CertificateFiles

__all__ = ["ensure_lab_certificate", "ensure_lab_certificates"]


def ensure_lab_certificates(pki_dir: Path, lab: Lab, servers: Sequence[Server],
                            setup: Mapping[str, CertificateFiles], now: datetime.datetime,
                            port_offset: int) -> None:
    """:func:`ensure_lab_certificate` for every server of ``servers`` with an
    ExchsimLabCertificate, the lab CA made first if need be (its CRLs at ``lab``'s CrlServer,
    port plus ``port_offset``)."""
    wanted = [s for s in servers if s.exchsim_lab_certificate]
    if not wanted:
        return
    crl = lab.lab.crl_server
    lab_ca = ensure_lab_ca(pki_dir, now, crl_base_url=crl_base_url(crl.address,
                                                                   crl.port + port_offset))
    for server in wanted:
        ensure_lab_certificate(lab_ca, server.name, server.exchsim_lab_certificate,
                               setup[server.name], now)


def ensure_lab_certificate(lab_ca: LabCa, server: str, names: Sequence[str],
                           setup: CertificateFiles, now: datetime.datetime) -> StoreEntry | None:
    """The module docstring's rule for ``server``; the new store entry, or None when the store
    already holds a usable one."""
    wanted = {n.lower() for n in names}
    for entry in store_entries(lab_ca.pki_dir, server, setup):
        record = entry.record
        if (record is not None and record.ca == ISSUING and record.revoked is None
                and entry.files.valid_at(now) and "SMTP" in entry.services
                and {n.lower() for n in entry.files.dns_names} == wanted):
            return None
    issued = issue_certificate(lab_ca, names[0], now, dns_names=list(names))
    return enable(lab_ca.pki_dir, server, issued.files.thumbprint, frozenset({"SMTP"}), setup)
