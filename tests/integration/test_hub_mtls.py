"""The seed scenario (configs/examples/hub-mtls.yaml, exchange.md §4.9): certificate-based trust
on a custom hub connector beside an untouched Default connector, and what breaks when the
Default connector itself is changed instead (README, "Mutual TLS on the hub")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.certfactory import LabPki, http_server, lab_pki
from tests.integration.conftest import (
    FAST,
    ROOT,
    RunningLab,
    start_lab,
    swaks,
    with_connectors,
)

HOST = "127.0.10.1"
EXAMPLE = (ROOT / "configs" / "examples" / "hub-mtls.yaml").read_text(encoding="utf-8")
PRX4 = "451 4.7.0 Temporary server error. Please try again later. PRX4"


def trust(data: Path, pki: LabPki) -> None:
    trusted = data / "pki" / "trusted"
    trusted.mkdir(parents=True, exist_ok=True)
    (trusted / "lab-root.pem").write_bytes(pki.root.pem)
    known = trusted.parent / "intermediate"  # swaks presents only its leaf
    known.mkdir(exist_ok=True)
    (known / "lab-issuing.pem").write_bytes(pki.intermediate.pem)


@pytest.fixture
async def crl_bodies() -> AsyncIterator[tuple[dict[str, bytes], int]]:
    bodies: dict[str, bytes] = {}
    async with http_server(bodies) as port:
        yield bodies, port


async def running(tmp_path: Path, text: str, pki: LabPki, bodies: dict[str, bytes]) -> RunningLab:
    crls = pki.current_crls()
    bodies["/crl/issuing.crl"] = crls[pki.crl_url] or b""
    bodies["/crl/root.crl"] = crls[pki.root_crl_url] or b""
    trust(tmp_path / "data", pki)
    return await start_lab(text, tmp_path / "data")


async def test_outside_the_range_and_mail_to_alice_use_the_default_connectors(
        tmp_path: Path, crl_bodies: tuple[dict[str, bytes], int]) -> None:
    bodies, port = crl_bodies
    pki = lab_pki(f"http://127.0.0.1:{port}/crl")
    lab = await running(tmp_path, with_connectors(EXAMPLE, FAST), pki, bodies)
    try:
        # From outside 127.0.24.0/24: Default EX01, where an anonymous client may not submit.
        rc, out = await swaks("--server", f"{HOST}:{lab.port(2525)}", "--local-interface",
                              "127.0.25.10", "--from", "app@contoso.com", "--to",
                              "user@fabrikam.example", "--quit-after", "MAIL")
        assert "530 5.7.1 Client was not authenticated" in out, out
        # Inside the range, without TLS: the connector requires its certificate.
        rc, out = await swaks("--server", f"{HOST}:{lab.port(2525)}", "--local-interface",
                              "127.0.24.10", "--from", "app@contoso.com", "--to",
                              "user@fabrikam.example", "--quit-after", "MAIL")
        assert "530 5.7.1 Not authenticated" in out, out
        # The Internet still reaches alice through Default Frontend and the proxy to Default.
        rc, out = await swaks("--server", f"{HOST}:{lab.port(25)}", "--from",
                              "someone@fabrikam.example", "--to", "alice@contoso.com")
        assert rc == 0, out
        await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)
    finally:
        await lab.daemon.stop()


async def test_changing_the_default_connector_breaks_the_front_end_proxy(
        tmp_path: Path, crl_bodies: tuple[dict[str, bytes], int]) -> None:
    """What the security team's first idea does: Default EX01 with Tls only (no Exchange
    server authentication, so no X-ANONYMOUSTLS / X-EXPS) and a required certificate."""
    bodies, port = crl_bodies
    pki = lab_pki(f"http://127.0.0.1:{port}/crl")
    changed = FAST.replace(
        "{Name: Default EX01, Server: EX01,",
        "{Name: Default EX01, Server: EX01, AuthMechanism: [Tls], "
        "ExchsimRequireClientCertificate: relay.contoso.com,")
    lab = await running(tmp_path, with_connectors(EXAMPLE, changed), pki, bodies)
    try:
        rc, out = await swaks("--server", f"{HOST}:{lab.port(25)}", "--from",
                              "someone@fabrikam.example", "--to", "alice@contoso.com")
        assert PRX4 in out, out
        assert lab.mailbox("alice@contoso.com") == []
    finally:
        await lab.daemon.stop()


async def test_the_relay_certificate_relays_and_others_cannot(
        tmp_path: Path, crl_bodies: tuple[dict[str, bytes], int]) -> None:
    bodies, port = crl_bodies
    pki = lab_pki(f"http://127.0.0.1:{port}/crl")
    lab = await running(tmp_path, with_connectors(EXAMPLE, FAST), pki, bodies)
    certs = tmp_path / "certs"
    certs.mkdir()
    relay = pki.write_client(pki.leaf_now("relay.contoso.com"), certs, "relay.contoso.com")
    other = pki.write_client(pki.leaf_now("partner.example"), certs, "partner.example")

    async def send(source: str, files: tuple[Path, Path] | None) -> str:
        args = ["--server", f"{HOST}:{lab.port(2525)}", "--local-interface", source, "--tls",
                "--from", "app@contoso.com", "--to", "user@fabrikam.example"]
        if files is not None:
            args += ["--tls-cert", str(files[0]), "--tls-key", str(files[1])]
        _, out = await swaks(*args)
        return out

    try:
        out = await send("127.0.24.10", relay)
        assert "250 2.6.0" in out, out
        await lab.wait_for(lambda: len(lab.internet("user@fabrikam.example")) == 1)
        assert "530 5.7.1 Not authenticated" in await send("127.0.24.10", None)
        assert "454 4.7.5 Certificate validation failure" in await send("127.0.24.10", other)
        # The same certificate from outside the range lands on Default EX01: no relay.
        assert "530 5.7.1 Client was not authenticated" in await send("127.0.25.10", relay)
        assert len(lab.internet("user@fabrikam.example")) == 1
    finally:
        await lab.daemon.stop()
