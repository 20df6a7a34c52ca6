"""Judging a chain with its CRLs fetched within a bound (exchsim/tls/revocation.py), against
real loopback HTTP endpoints: one that serves CRLs and one that accepts and never answers."""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from pathlib import Path

from exchsim.config.capabilities import RevocationOffline
from exchsim.tls.revocation import CertificateJudge
from exchsim.tls.validation import ChainStatus
from tests.certfactory import T0, LabPki, black_hole, http_server, lab_pki


@dataclass
class PinnedClock:
    def utc(self) -> datetime.datetime:
        return T0

    def local(self) -> datetime.datetime:
        return T0

    def monotonic(self) -> float:
        return time.monotonic()


def pki_dir(tmp_path: Path, pki: LabPki) -> Path:
    """A DATA/pki with the test root trusted and no lab CA."""
    trusted = tmp_path / "pki" / "trusted"
    trusted.mkdir(parents=True)
    (trusted / "root.pem").write_bytes(pki.root.pem)
    return tmp_path / "pki"


async def test_crls_fetched_and_chain_valid(tmp_path: Path) -> None:
    bodies: dict[str, bytes] = {}
    async with http_server(bodies) as port:  # the handler reads ``bodies`` at each request
        pki = lab_pki(f"http://127.0.0.1:{port}/crl")
        leaf = pki.leaf("partner.example")
        crls = pki.crls()
        bodies["/crl/issuing.crl"] = crls[pki.crl_url] or b""
        bodies["/crl/root.crl"] = crls[pki.root_crl_url] or b""
        judge = CertificateJudge(pki_dir(tmp_path, pki), PinnedClock(), timeout=10.0)
        try:
            assert (await judge.judge(pki.chain(leaf))).status is ChainStatus.VALID
            # Only the leaf presented: the issuing CA is found in the intermediate store.
            assert (await judge.judge([leaf.der])).status is ChainStatus.UNTRUSTED_ROOT
            known = judge.pki_dir / "intermediate"
            known.mkdir()
            (known / "issuing.crt").write_bytes(pki.intermediate.pem)
            assert (await judge.judge([leaf.der])).status is ChainStatus.VALID
            # A new CRL counts at once (nothing cached).
            bodies["/crl/issuing.crl"] = pki.crls([leaf])[pki.crl_url] or b""
            assert (await judge.judge(pki.chain(leaf))).status is ChainStatus.REVOKED
        finally:
            await judge.close()


async def test_a_distribution_point_that_never_answers(tmp_path: Path) -> None:
    async with black_hole() as port:
        pki = lab_pki(f"http://127.0.0.1:{port}/crl")
        leaf = pki.leaf("partner.example")
        directory = pki_dir(tmp_path, pki)
        for offline, expected in [(RevocationOffline.FAIL, ChainStatus.REVOCATION_OFFLINE),
                                  (RevocationOffline.ACCEPT, ChainStatus.VALID)]:
            judge = CertificateJudge(directory, PinnedClock(), timeout=1.0, offline=offline)
            try:
                started = time.monotonic()
                verdict = await judge.judge(pki.chain(leaf))
                took = time.monotonic() - started
            finally:
                await judge.close()
            assert verdict.status is expected
            assert verdict.revocation_unchecked is (offline is RevocationOffline.ACCEPT)
            assert 0.9 < took < 2.0, took  # both CRLs together within the one bound
