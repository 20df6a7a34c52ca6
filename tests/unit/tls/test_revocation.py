"""Fetching CRLs within a bound and judging a chain with them (exchsim/tls/revocation.py),
against real loopback HTTP endpoints: one that serves CRLs and one that accepts and never
answers."""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from pathlib import Path

from exchsim.config.model import RevocationOffline
from exchsim.tls.revocation import CertificateJudge, fetch_crls
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


def anchors(tmp_path: Path, pki: LabPki) -> Path:
    directory = tmp_path / "trusted"
    directory.mkdir()
    (directory / "root.pem").write_bytes(pki.root.pem)
    return directory


async def test_crls_fetched_and_chain_valid(tmp_path: Path) -> None:
    bodies: dict[str, bytes] = {}
    async with http_server(bodies) as port:  # the handler reads ``bodies`` at each request
        pki = lab_pki(f"http://127.0.0.1:{port}/crl")
        leaf = pki.leaf("partner.example")
        crls = pki.crls()
        bodies["/crl/issuing.crl"] = crls[pki.crl_url] or b""
        bodies["/crl/root.crl"] = crls[pki.root_crl_url] or b""
        judge = CertificateJudge(anchors(tmp_path, pki), PinnedClock(), timeout=10.0)
        assert (await judge.judge(pki.chain(leaf))).status is ChainStatus.VALID
        # A new CRL counts at once (nothing cached).
        bodies["/crl/issuing.crl"] = pki.crls([leaf])[pki.crl_url] or b""
        assert (await judge.judge(pki.chain(leaf))).status is ChainStatus.REVOKED


async def test_a_distribution_point_that_never_answers(tmp_path: Path) -> None:
    async with black_hole() as port:
        pki = lab_pki(f"http://127.0.0.1:{port}/crl")
        leaf = pki.leaf("partner.example")
        judge = CertificateJudge(anchors(tmp_path, pki), PinnedClock(), timeout=0.5)
        started = time.monotonic()
        verdict = await judge.judge(pki.chain(leaf))
        took = time.monotonic() - started
        assert verdict.status is ChainStatus.REVOCATION_OFFLINE
        assert 0.4 < took < 1.5, took
        accepting = CertificateJudge(judge.anchors_dir, PinnedClock(), timeout=0.5,
                                     offline=RevocationOffline.ACCEPT)
        verdict = await accepting.judge(pki.chain(leaf))
        assert verdict.status is ChainStatus.VALID and verdict.revocation_unchecked


async def test_fetch_crls_gives_up_within_its_bound() -> None:
    async with black_hole() as port, http_server({"/a": b"crl bytes"}) as good:
        urls = [f"http://127.0.0.1:{port}/x", f"http://127.0.0.1:{good}/a",
                f"http://127.0.0.1:{good}/missing", "ldap://example/crl"]
        started = time.monotonic()
        got = await fetch_crls(urls, 0.3)
        assert time.monotonic() - started < 1.0
    assert got == {urls[0]: None, urls[1]: b"crl bytes", urls[2]: None, urls[3]: None}
