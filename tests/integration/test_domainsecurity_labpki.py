"""Domain Security and the hub-mtls example with the lab's own PKI, as a user runs them:
`exchsim pki issue` / `exchsim pki revoke` against a running lab, whose CA was made at start and
whose CRLs it serves itself (exchange.md §4.2, §4.8, §4.9)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from exchsim.policy.headers import parse_message
from tests.integration.conftest import (
    FAST,
    FAST_LAB_YAML,
    ROOT,
    RunningLab,
    start_lab,
    swaks,
    with_connectors,
)

HOST = "127.0.10.1"
EXCHSIM = str(Path(sys.executable).with_name("exchsim"))
SECURE = FAST_LAB_YAML.replace(
    "TransportConfig: {MaxReceiveSize: 10MB, MaxSendSize: 10MB}",
    "TransportConfig: {MaxReceiveSize: 10MB, MaxSendSize: 10MB, "
    "TLSReceiveDomainSecureList: [partner.example]}")
EXAMPLE = (ROOT / "configs" / "examples" / "hub-mtls.yaml").read_text(encoding="utf-8")


async def pki(lab: RunningLab, *args: str, out_dir: str = "certs") -> Path:
    """`exchsim pki <args> --data DATA --out DATA/../<out_dir>`; the certificate's PEM path."""
    out = lab.data.parent / out_dir
    proc = await asyncio.create_subprocess_exec(
        EXCHSIM, "pki", *args, "--data", str(lab.data),
        *(["--out", str(out)] if args[0] == "issue" else []),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    text, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, text.decode()
    return out / f"{args[args.index('--name') + 1]}.pem"


async def send(lab: RunningLab, port: int, sender: str, to: str, cert: Path | None,
               source: str = "127.0.0.1") -> str:
    args = ["--server", f"{HOST}:{lab.port(port)}", "--local-interface", source, "--tls",
            "--from", sender, "--to", to]
    if cert is not None:
        args += ["--tls-cert", str(cert), "--tls-key", str(cert.with_suffix(".key"))]
    _, out = await swaks(*args)
    return out


async def test_domain_security_with_the_lab_pki(tmp_path: Path) -> None:
    lab = await start_lab(with_connectors(SECURE, FAST), tmp_path / "data")
    try:
        good = await pki(lab, "issue", "--name", "partner.example")
        out = await send(lab, 25, "user@partner.example", "alice@contoso.com", good)
        assert "250 2.6.0" in out, out
        await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)
        headers = parse_message(lab.mailbox("alice@contoso.com")[0])
        assert headers.values("X-MS-Exchange-Organization-AuthAs") == ["Partner"]
        failure = "454 4.7.5 Certificate validation failure"
        for flags in (["--expired"], ["--untrusted"], ["--no-server-auth"],
                      ["--dns-name", "mail.fabrikam.example"]):
            cert = await pki(lab, "issue", "--name", "partner.example", *flags,
                             out_dir=flags[0].strip("-"))
            out = await send(lab, 25, "user@partner.example", "alice@contoso.com", cert)
            assert failure in out, (flags, out)
            # A sender outside the list is not concerned by the same certificate.
            out = await send(lab, 25, "someone@fabrikam.example", "alice@contoso.com", cert)
            assert "250 2.6.0" in out, (flags, out)
        log = lab.protocol_log()
        for status in ("UntrustedTime", "UntrustedRoot", "WrongUsage"):
            assert f"Client certificate chain validation status: '{status}'" in log, status
        assert "530 5.7.1 Not authenticated" in await send(
            lab, 25, "user@partner.example", "alice@contoso.com", None)
        # Revoked while the lab runs: the next session sees the new CRL.
        await pki(lab, "revoke", "--name", "partner.example")
        out = await send(lab, 25, "user@partner.example", "alice@contoso.com", good)
        assert failure in out, out
        assert "Client certificate chain validation status: 'Revoked'" in lab.protocol_log()
    finally:
        await lab.daemon.stop()


async def test_hub_mtls_with_the_lab_pki(tmp_path: Path) -> None:
    lab = await start_lab(with_connectors(EXAMPLE, FAST), tmp_path / "data")
    try:
        relay = await pki(lab, "issue", "--name", "relay.contoso.com")
        other = await pki(lab, "issue", "--name", "app.contoso.com")
        out = await send(lab, 2525, "app@contoso.com", "user@fabrikam.example", relay,
                         "127.0.24.10")
        assert "250 2.6.0" in out, out
        await lab.wait_for(lambda: len(lab.internet("user@fabrikam.example")) == 1)
        for cert, source, reply in [
            (None, "127.0.24.10", "530 5.7.1 Not authenticated"),
            (other, "127.0.24.10", "454 4.7.5 Certificate validation failure"),
            (relay, "127.0.25.10", "530 5.7.1 Client was not authenticated"),
        ]:
            out = await send(lab, 2525, "app@contoso.com", "user@fabrikam.example", cert, source)
            assert reply in out, (source, out)
        out = await send(lab, 25, "someone@fabrikam.example", "alice@contoso.com", None)
        assert "250 2.6.0" in out, out
    finally:
        await lab.daemon.stop()
