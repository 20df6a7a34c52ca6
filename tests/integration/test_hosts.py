"""``--hosts FILE`` and ``exchsim sink``: EX01's three services each on an address of its own
(``ExchsimServiceAddresses``), the sink and the CRL server alone, all real ``exchsim``
processes talking over loopback (config/hosts.py, services.py, sinkcli.py)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import smtplib
import ssl
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509

from exchsim.cli import main
from tests.integration.conftest import FAST, FAST_LAB_YAML, ROOT, port_offset, with_connectors
from tests.integration.test_services import ENV, EXCHSIM, until

FE, HUB, MBX, SINK, CRL = "127.0.10.1", "127.0.10.3", "127.0.10.4", "127.0.10.252", "127.0.10.253"
HOSTS = f"""# EX01's services on three addresses; the sink and the CRL server moved.
Addresses:
  127.0.10.250: {SINK}
  127.0.10.251: {CRL}
  127.0.10.2: 127.0.10.22   # EX02: not in this config, ignored
Services:
  ex01: {{FrontEnd: {FE}, Transport: {HUB}, MailboxDelivery: {MBX}}}
  EDGE01: {{Transport: 127.0.10.31}}
"""
# The hub's hops are logged (its send log: IntraOrgConnectorProtocolLoggingLevel).
CONFIG = with_connectors(FAST_LAB_YAML, FAST).replace(
    'Address: 127.0.10.1, Version: "15.2"}',
    'Address: 127.0.10.1, Version: "15.2", IntraOrgConnectorProtocolLoggingLevel: Verbose}')


class Processes:
    """``exchsim`` processes on one config, hosts file and data directory."""

    def __init__(self, config: Path, hosts: Path, data: Path) -> None:
        self.config, self.hosts, self.data = config, hosts, data
        self.offset = port_offset()
        self.procs: list[asyncio.subprocess.Process] = []
        self.listening: dict[str, list[str]] = {}

    async def start(self, name: str, *args: str) -> None:
        """``exchsim ARGS --config --hosts --data --port-offset``; the first process moves to
        another offset when one of its ports is taken."""
        for _ in range(5):
            proc = await asyncio.create_subprocess_exec(
                *EXCHSIM, *args, "--config", str(self.config), "--hosts", str(self.hosts),
                "--data", str(self.data), "--port-offset", str(self.offset), cwd=ROOT, env=ENV,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            assert proc.stdout is not None
            seen: list[str] = []
            while True:
                line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
                if line == "exchsim: ready":
                    self.procs.append(proc)
                    self.listening[name] = sorted(
                        s.partition(" listening on ")[2] for s in seen if " listening on " in s)
                    return
                if not line:
                    await proc.wait()
                    break
                seen.append(line)
            assert not self.procs and any("address already in use" in s for s in seen), seen
            self.offset = port_offset()
        raise AssertionError("no free port offset found")

    def at(self, host: str, *ports: int) -> list[str]:
        return sorted(f"{host}:{port + self.offset}" for port in ports)

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.communicate(), 30)
        self.procs.clear()


@pytest.fixture
async def procs(tmp_path: Path) -> AsyncIterator[Processes]:
    config, hosts = tmp_path / "lab.yaml", tmp_path / "hosts.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    hosts.write_text(HOSTS, encoding="utf-8")
    running = Processes(config, hosts, tmp_path / "data")
    try:
        yield running
    finally:
        await running.stop()


def submit(host: str, port: int, to: str, subject: str) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the lab's own certificate; TLS is not tested here
    with smtplib.SMTP(host, port, timeout=30) as client:
        client.starttls(context=context)
        client.login("alice@contoso.com", "P@ssw0rd!")
        client.sendmail("alice@contoso.com", [to],
                        f"From: alice@contoso.com\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nhi\r\n")


def logs(folder: Path) -> str:
    return "".join(p.read_text() for p in sorted(folder.glob("*.LOG")))


def files(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.exists() else []


async def test_each_service_listens_sends_and_is_reached_on_its_own_address(
        procs: Processes) -> None:
    await procs.start("sink", "sink")
    await procs.start("MailboxDelivery", "serve", "--server", "EX01", "--service",
                      "MailboxDelivery")
    await procs.start("Transport", "serve", "--server", "EX01", "--service", "Transport")
    await procs.start("FrontEnd", "serve", "--server", "EX01", "--service", "FrontEnd")
    assert procs.listening == {
        "sink": sorted(procs.at(SINK, 25) + procs.at(CRL, 80)),
        "MailboxDelivery": procs.at(MBX, 475),
        "Transport": procs.at(HUB, 465, 2525),
        "FrontEnd": procs.at(FE, 25, 587, 717),
    }

    await asyncio.to_thread(submit, FE, 587 + procs.offset, "bob@contoso.com", "to bob")
    await asyncio.to_thread(submit, FE, 587 + procs.offset, "user@fabrikam.example", "out")
    bob = procs.data / "mailboxes" / "bob@contoso.com" / "new"
    # The implied smart host [127.0.10.250] of To Internet became [127.0.10.252].
    internet = procs.data / "internet" / "user@fabrikam.example" / "new"
    await until(lambda: len(files(bob)) == 1 and len(files(internet)) == 1, 30)

    base = procs.data / "logs" / "EX01"
    o = procs.offset
    hub_received = logs(base / "Hub" / "ProtocolLog" / "SmtpReceive")
    # local-endpoint,remote-endpoint: the Front End's hop arrives from its own address.
    assert re.search(rf",{re.escape(HUB)}:{465 + o},{re.escape(FE)}:\d+,", hub_received)
    hub_sent = logs(base / "Hub" / "ProtocolLog" / "SmtpSend")
    assert re.search(rf",{re.escape(HUB)}:\d+,{re.escape(MBX)}:{475 + o},", hub_sent)
    mailbox_received = logs(base / "Mailbox" / "ProtocolLog" / "SmtpReceive")
    assert re.search(rf",{re.escape(MBX)}:{475 + o},{re.escape(HUB)}:\d+,", mailbox_received)
    delivered = files(bob)[0].read_text().replace("\r\n ", " ")
    assert f"by ex01.contoso.com ({HUB})" in delivered  # the hub's own Received line


async def test_the_sink_alone_serves_the_internet_sink_and_the_crl(procs: Processes) -> None:
    await procs.start("sink", "sink")
    with smtplib.SMTP(SINK, 25 + procs.offset, timeout=30) as client:
        client.sendmail("a@contoso.com", ["someone@fabrikam.example"],
                        "Subject: to the sink\r\n\r\nhello\r\n")
    assert len(files(procs.data / "internet" / "someone@fabrikam.example" / "new")) == 1
    url = f"http://{CRL}:{80 + procs.offset}/crl/issuing.crl"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
    crl = x509.load_der_x509_crl(body)
    assert "exchsim Lab Issuing CA" in crl.issuer.rfc4514_string()
    # The lab CA's certificates point their CRL distribution points at the moved CRL server.
    issuing = x509.load_pem_x509_certificate(
        (procs.data / "pki" / "ca" / "issuing.crt").read_bytes())
    points = issuing.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    names = [n.value for point in points for n in point.full_name or ()]
    assert any(f"//{CRL}:{80 + procs.offset}/" in str(name) for name in names), names


def test_check_prints_the_translated_addresses(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    config, hosts = tmp_path / "lab.yaml", tmp_path / "hosts.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    hosts.write_text(HOSTS, encoding="utf-8")
    assert main(["check", "--config", str(config), "--hosts", str(hosts)]) == 0
    out = capsys.readouterr().out
    assert (f"EX01            Address 127.0.10.1  (FrontEnd {FE}, Transport {HUB}, "
            f"MailboxDelivery {MBX})") in out
    assert f"InternetSink    {SINK}:25" in out and f"CrlServer       {CRL}:80" in out
    assert f"SmartHosts                  : {{[{SINK}]}}" in out
    assert f"{hosts}: Addresses.127.0.10.2: no config has this address (ignored)" in out
    assert f"{hosts}: Services.EDGE01: no config has a server of this Name (ignored)" in out


def test_check_with_the_compose_hosts_file(capsys: pytest.CaptureFixture[str]) -> None:
    """configs/compose-hosts.yaml on configs/lab.yaml and its partner: the compose plan."""
    assert main(["check", "--config", str(ROOT / "configs" / "lab.yaml"), "--hosts",
                 str(ROOT / "configs" / "compose-hosts.yaml")]) == 0
    out = capsys.readouterr().out
    assert ("EX01            Address 198.51.100.11  (FrontEnd 198.51.100.11, Transport "
            "198.51.100.12, MailboxDelivery 198.51.100.13)") in out
    assert "PARTNER01       Address 198.51.100.60" in out
    assert "InternetSink    198.51.100.50:25" in out and "CrlServer       198.51.100.50:80" in out


def crl_points(cert: Path) -> list[str]:
    """The URLs of a certificate's CRL distribution points."""
    found = x509.load_pem_x509_certificate(cert.read_bytes())
    points = found.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    return [str(n.value) for point in points for n in point.full_name or ()]


def test_pki_with_hosts_points_a_new_lab_ca_at_the_moved_crl_server(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``exchsim pki --hosts``: a lab CA made by pki (before any lab ran) and what it issues
    name the CRL server's host, as ``exchsim sink --hosts`` would have made it."""
    config, hosts = tmp_path / "lab.yaml", tmp_path / "hosts.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    hosts.write_text(HOSTS, encoding="utf-8")
    data, out = tmp_path / "d", tmp_path / "out"
    assert main(["pki", "issue", "--name", "mx.fabrikam.example", "--out", str(out), "--data",
                 str(data), "--config", str(config), "--hosts", str(hosts),
                 "--port-offset", "1000"]) == 0
    issuing = data / "pki" / "ca" / "issuing.crt"
    assert crl_points(issuing) == [f"http://{CRL}:1080/crl/root.crl"]
    assert crl_points(out / "mx.fabrikam.example.pem") == [f"http://{CRL}:1080/crl/issuing.crl"]
    # Without --hosts, the config's own address (the CA above is kept: a new data directory).
    assert main(["pki", "ca", "--data", str(tmp_path / "plain"), "--config", str(config)]) == 0
    assert crl_points(tmp_path / "plain" / "pki" / "ca" / "issuing.crt") == [
        "http://127.0.10.251:80/crl/root.crl"]
    capsys.readouterr()


def test_pki_with_hosts_and_no_config_moves_the_default_crl_address(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no configs/lab.yaml here: the default CRL server
    assert main(["pki", "ca", "--data", "d", "--hosts",
                 str(ROOT / "configs" / "compose-hosts.yaml")]) == 0
    assert crl_points(tmp_path / "d" / "pki" / "ca" / "issuing.crt") == [
        "http://198.51.100.50:80/crl/root.crl"]


@pytest.mark.parametrize(("text", "expected"), [
    ("Services:\n  EX01: {Hub: 127.0.10.3}\n",
     "Services.EX01.Hub: unknown service 'Hub': expected one of FrontEnd, Transport, "
     "MailboxDelivery"),
    ("Addresses:\n  127.0.10.1: ex01.lab\n",
     "Addresses.127.0.10.1: 'ex01.lab' is not allowed: expected an IP address like "
     "198.51.100.11"),
    ("Addresses:\n  ex01: 127.0.10.9\n",
     "Addresses.ex01: 'ex01' is not allowed: expected an IP address of the config"),
    ("Adresses:\n  127.0.10.1: 127.0.10.9\n",
     "Adresses: unknown key 'Adresses': expected one of Addresses, Services; did you mean "
     "'Addresses'?"),
    ("Services:\n  EX01: {Transport: 300.1.1.1}\n",
     "Services.EX01.Transport: '300.1.1.1' is not allowed: expected an IP address"),
    ("- 127.0.10.1\n", "['127.0.10.1'] is not allowed: expected a mapping with the keys "
     "Addresses, Services"),
    ("Addresses:\n  127.0.10.250: 192.0.2.50\n",
     "Addresses.127.0.10.250: '192.0.2.50' is not allowed: expected an IPv4 address in "
     "127.0.0.0/8, 198.51.100.0/24, 203.0.113.0/24"),
])
def test_a_bad_hosts_file_is_refused_and_nothing_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str) -> None:
    config, hosts = tmp_path / "lab.yaml", tmp_path / "hosts.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    hosts.write_text(text, encoding="utf-8")
    for command in (["check"], ["serve", "--server", "EX01", "--data", str(tmp_path / "d")],
                    ["sink", "--data", str(tmp_path / "d")],
                    ["pki", "ca", "--data", str(tmp_path / "d")]):
        assert main([*command, "--config", str(config), "--hosts", str(hosts)]) == 2
        err = capsys.readouterr().err
        assert f"{hosts}: {expected}" in err, err
    assert not (tmp_path / "d").exists()


def test_an_unreadable_hosts_file_is_refused(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "lab.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    missing = tmp_path / "nowhere.yaml"
    assert main(["check", "--config", str(config), "--hosts", str(missing)]) == 2
    assert f"{missing}: hosts file not found" in capsys.readouterr().err
    assert main(["check", "--config", str(config), "--hosts", str(tmp_path)]) == 2
    assert f"{tmp_path}: cannot read the hosts file" in capsys.readouterr().err


def test_a_service_address_the_role_does_not_have_is_a_config_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A Client Access server (2013) has a FrontEnd service only."""
    lines = CONFIG.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  - {Name: EX01, Role:"))
    cas = ('  - {Name: CAS01, Role: ClientAccess, Fqdn: cas01.contoso.com, Address: 127.0.10.5, '
           'Version: "15.0"}')
    config, hosts = tmp_path / "lab.yaml", tmp_path / "hosts.yaml"
    config.write_text("\n".join([*lines[:at + 1], cas, *lines[at + 1:]]) + "\n",
                      encoding="utf-8")
    hosts.write_text("Services:\n  CAS01: {FrontEnd: 127.0.10.5, Transport: 127.0.10.6}\n",
                     encoding="utf-8")
    assert main(["check", "--config", str(config), "--hosts", str(hosts)]) == 2
    err = capsys.readouterr().err
    assert ("Servers[1] (CAS01).ExchsimServiceAddresses.Transport: a server of Role "
            "ClientAccess has no Transport service: expected only FrontEnd") in err, err
