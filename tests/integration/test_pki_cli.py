"""``exchsim pki ...`` as a user types it: every command as a process, and its bad input."""

from __future__ import annotations

import asyncio
import re
import stat
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.integration.conftest import ROOT

EXCHSIM = str(Path(sys.executable).with_name("exchsim"))  # the installed console script
CONFIG = str(ROOT / "configs" / "single-server.yaml")


async def pki(*args: str, cwd: Path = ROOT) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        EXCHSIM, "pki", *args, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


def field(out: str, name: str) -> str:
    match = re.search(rf"^{name}:\s+(\S+)", out, re.M)
    assert match, out
    return match.group(1)


def leaf_and_chain(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


async def test_issue_as_written(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    code, stdout, err = await pki("issue", "--data", str(data), "--name", "mail.partner.example",
                                  "--out", str(out))
    assert code == 0, err
    leaf, issuing = leaf_and_chain(out / "mail.partner.example.pem")
    assert leaf.subject.rfc4514_string() == "CN=mail.partner.example"
    assert issuing.subject == leaf.issuer
    assert stat.S_IMODE((out / "mail.partner.example.key").stat().st_mode) == 0o600
    assert field(stdout, "thumbprint") == leaf.fingerprint(hashes.SHA1()).hex().upper()
    for name in ("root", "issuing"):
        assert stat.S_IMODE((data / "pki" / "ca" / f"{name}.key").stat().st_mode) == 0o600
    code, root, _ = await pki("ca", "--data", str(data))
    assert code == 0 and Path(root.strip()) == data / "pki" / "ca" / "root.crt"


async def test_issue_flags(tmp_path: Path) -> None:
    data, out = str(tmp_path / "data"), tmp_path / "out"
    runs = {
        "expired.example": ["--expired"],
        "future.example": ["--not-yet-valid"],
        "client.example": ["--no-server-auth"],
        "untrusted.example": ["--untrusted"],
        "wrong.example": ["--dns-name", "other.example", "--dns-name", "*.other.example"],
        "short.example": ["--days", "2"],
    }
    for name, flags in runs.items():
        code, _, err = await pki("issue", "--data", data, "--name", name, "--out", str(out),
                                 *flags)
        assert code == 0, (name, err)
    certs = {name: leaf_and_chain(out / f"{name}.pem") for name in runs}
    ca_file = (tmp_path / "data" / "pki" / "ca" / "issuing.crt").read_bytes()
    issuing = x509.load_pem_x509_certificate(ca_file)
    (expired, _) = certs["expired.example"]
    assert expired.not_valid_after_utc.timestamp() < time.time()
    (future, _) = certs["future.example"]
    assert future.not_valid_before_utc.timestamp() > time.time()
    (client, _) = certs["client.example"]
    assert list(client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == \
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    (untrusted,) = certs["untrusted.example"]  # the leaf alone: its CA is a root
    assert untrusted.issuer != issuing.subject
    (wrong, _) = certs["wrong.example"]
    san = wrong.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["other.example", "*.other.example"]
    (short, _) = certs["short.example"]
    assert (short.not_valid_after_utc - short.not_valid_before_utc).days == 2


async def test_revoke_and_crl(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    code, stdout, _ = await pki("issue", "--data", data, "--name", "mail.partner.example",
                                "--out", str(tmp_path / "out"))
    serial = int(field(stdout, "serial"), 16)
    code, stdout, err = await pki("revoke", "--data", data, "--name", "mail.partner.example")
    assert code == 0, err
    assert "revoked CN=mail.partner.example" in stdout
    crl_path = tmp_path / "data" / "pki" / "crl" / "issuing.crl"
    crl = x509.load_der_x509_crl(crl_path.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    code, stdout, err = await pki("crl", "--data", data)
    assert code == 0, err
    again = x509.load_der_x509_crl(crl_path.read_bytes())
    number = again.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number == crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
    assert again.get_revoked_certificate_by_serial_number(serial) is not None
    assert "next update" in stdout


async def test_bad_input_is_one_line_and_non_zero(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    code, out, err = await pki("revoke", "--data", data, "--name", "nobody.example")
    assert code == 1 and out == ""
    assert err == "exchsim: the lab CA issued no certificate named 'nobody.example'\n"
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, out, err = await pki("issue", "--data", data, "--name", "x.example",
                               "--out", str(blocker / "sub"))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"exchsim: cannot write to --out {blocker}")
    code, _, err = await pki("issue", "--data", data, "--name", "not a host", "--out",
                             str(tmp_path))
    assert code == 1 and err.count("\n") == 1 and "is not a host name" in err
    code, _, err = await pki("issue", "--data", data, "--name", "x.example", "--expired",
                             "--not-yet-valid")
    assert code == 2 and "not allowed with argument" in err


async def test_get_enable_import(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    code, stdout, err = await pki("get", "--data", data, "--config", CONFIG, "--server", "EX01")
    assert code == 0, err
    header, dashes, setup_row = stdout.splitlines()
    assert header == "Thumbprint                                Services   Subject"
    assert dashes == "----------                                --------   -------"
    assert re.fullmatch(r"[0-9A-F]{40}  IP\.WS\.\.    CN=EX01", setup_row), setup_row
    _, issued, _ = await pki("issue", "--data", data, "--name", "mail.contoso.com",
                             "--out", str(tmp_path / "out"))
    thumb = field(issued, "thumbprint")
    code, stdout, err = await pki("enable", "--data", data, "--config", CONFIG,
                                  "--server", "EX01", "--thumbprint", thumb, "--services", "SMTP")
    assert code == 0, err
    _, stdout, _ = await pki("get", "--data", data, "--config", CONFIG, "--server", "EX01")
    assert f"{thumb}  ....S..    CN=mail.contoso.com" in stdout.splitlines()
    _, stdout, _ = await pki("get", "--data", data, "--config", CONFIG, "--server", "EX01",
                             "--thumbprint", thumb, "--format", "list")
    pairs = [line.split(" : ", 1) for line in stdout.splitlines() if " : " in line]
    listed = {key.strip(): value for key, value in pairs}
    expected = {
        "Issuer": "CN=exchsim Lab Issuing CA, O=exchsim lab", "Services": "SMTP",
        "Status": "Valid", "Subject": "CN=mail.contoso.com", "Thumbprint": thumb,
        "RootCAType": "ThirdParty", "IsSelfSigned": "False", "PublicKeySize": "2048",
        "CertificateDomains": "{mail.contoso.com}"}
    assert {k: listed.get(k) for k in expected} == expected
    assert re.fullmatch(r"\d+/\d+/\d{4} \d+:\d\d:\d\d [AP]M", listed["NotAfter"])
    _, other, _ = await pki("issue", "--data", data, "--name", "smtp.contoso.com",
                            "--out", str(tmp_path / "out"))
    code, stdout, err = await pki("import", "--data", data, "--config", CONFIG,
                                  "--server", "ex01", "--cert", str(tmp_path / "out" /
                                                                    "smtp.contoso.com.pem"),
                                  "--key", str(tmp_path / "out" / "smtp.contoso.com.key"),
                                  "--services", "SMTP")
    assert code == 0, err
    _, stdout, _ = await pki("get", "--data", data, "--config", CONFIG)
    assert stdout.startswith("Server: EX01\n")
    assert f"{field(other, 'thumbprint')}  ....S..    CN=smtp.contoso.com" in stdout


async def test_store_commands_refuse_unknown_server_and_thumbprint(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    code, _, err = await pki("enable", "--data", data, "--config", CONFIG, "--server", "EX09",
                             "--thumbprint", "AB" * 20, "--services", "SMTP")
    assert code == 2 and "has no server named 'EX09'; its servers are: EX01" in err
    code, _, err = await pki("enable", "--data", data, "--config", CONFIG, "--server", "EX01",
                             "--thumbprint", "AB" * 20, "--services", "SMTP")
    assert code == 1 and err.startswith(f"exchsim: no certificate with thumbprint {'AB' * 20}")
    code, _, err = await pki("enable", "--data", data, "--config", CONFIG, "--server", "EX01",
                             "--thumbprint", "AB" * 20, "--services", "UM")
    assert code == 1 and "'UM' is not one of" in err


async def test_help_of_every_pki_command_is_plain_text() -> None:
    markup = re.compile(r"``|:(?:class|func|meth|mod|attr):|`[^`\s][^`]*`|\*\*")
    for command in ([], ["issue"], ["revoke"], ["crl"], ["ca"], ["get"], ["enable"], ["import"]):
        code, out, err = await pki(*command, "--help")
        assert code == 0, (command, err)
        assert out.startswith("usage: exchsim pki"), out
        assert "Exit status:" in out and not markup.search(out), (command, out)
    _, out, _ = await pki("issue", "--help")
    flat = " ".join(out.split())
    for option in ("--expired", "--not-yet-valid", "--no-server-auth", "--untrusted",
                   "--dns-name NAME", "--days N", "--out OUTDIR"):
        assert option in flat, option
