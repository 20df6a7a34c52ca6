"""A small lab PKI: EX01 and EX02 of the organization, and OUTSIDER which is not published."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import pytest

from exchsim.tls.pki import CertificateFiles, ensure_server_certificate

NOW = datetime.datetime(2025, 3, 4, 5, 6, 7, tzinfo=datetime.UTC)


@dataclass(frozen=True, slots=True)
class LabPki:
    ex01: CertificateFiles
    ex02: CertificateFiles
    outsider: CertificateFiles


@pytest.fixture
def lab_pki(tmp_path: Path) -> LabPki:
    now = datetime.datetime.now(datetime.UTC)  # handshakes check validity against the real clock
    return LabPki(
        ex01=ensure_server_certificate(tmp_path / "pki", "EX01", "ex01.contoso.com", now),
        ex02=ensure_server_certificate(tmp_path / "pki", "EX02", "ex02.contoso.com", now),
        outsider=ensure_server_certificate(tmp_path / "other-pki", "EX02", "ex02.contoso.com", now),
    )
