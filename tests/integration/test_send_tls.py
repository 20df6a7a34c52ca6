"""Outbound TLS on send connectors (exchange.md §4.3) and the Unreachable queue and the relay to
a connector's source server (exchange.md §8.2), over real sockets: the smart host is an aiosmtpd
server with a certificate of the lab PKI (tests/integration/sendlab.py)."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from exchsim.policy.outbound import UNREACHABLE_REASON
from exchsim.tls.issued import issue_certificate
from exchsim.tls.pki import CertificateFiles
from exchsim.transport.queue import QueuedMessage
from exchsim.transport.queueadmin import QueueAdmin
from tests.integration.conftest import RunningLab, start_lab
from tests.integration.sendlab import Mta, lab_text, submit

SMARTHOST = "127.0.10.70"
DNS = """
  A:
    smarthost.lab.example: 127.0.10.70
"""


def smart_host_connector(**settings: str) -> str:
    extra = "".join(f"\n    {key}: {value}" for key, value in settings.items())
    return f"""
  - Name: Via Smarthost
    AddressSpaces: ["*"]
    SmartHosts: [smarthost.lab.example]{extra}
"""


class Harness:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.labs: list[RunningLab] = []
        self.mtas: list[Mta] = []

    async def lab(self, text: str) -> RunningLab:
        lab = await start_lab(text, self.data)
        self.labs.append(lab)
        return lab

    async def stop_lab(self, lab: RunningLab) -> None:
        await lab.daemon.stop()
        self.labs.remove(lab)

    async def mta(self, address: str, port: int, **kwargs: object) -> Mta:
        found = await Mta(address, port, **kwargs).start()  # type: ignore[arg-type]
        self.mtas.append(found)
        return found

    def certificate(self, lab: RunningLab, name: str) -> CertificateFiles:
        assert lab.daemon.lab_ca is not None
        now = datetime.datetime.now(datetime.UTC)
        return issue_certificate(lab.daemon.lab_ca, name, now).files


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    made = Harness(tmp_path / "data")
    yield made
    for mta in made.mtas:
        await mta.stop()
    for lab in made.labs:
        await lab.daemon.stop()


async def pending(lab: RunningLab, server: str = "EX01") -> list[QueuedMessage]:
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    return await lab.daemon.queues[server].due(later, limit=100)


async def deferred_with(lab: RunningLab, test: Callable[[str], bool],
                        timeout: float = 10.0) -> QueuedMessage:
    """The queued message whose last error passes ``test`` (waits for it)."""
    deadline = asyncio.get_running_loop().time() + timeout
    seen: list[str | None] = []
    while asyncio.get_running_loop().time() < deadline:
        found = await pending(lab)
        seen = [m.last_error for m in found]
        for message in found:
            if message.last_error and test(message.last_error):
                return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"no message deferred as expected; last errors: {seen}")


async def wait(lab: RunningLab, condition: Callable[[], bool] | Callable[[], Awaitable[bool]],
               timeout: float = 10.0) -> None:
    await lab.wait_for(condition, timeout)  # type: ignore[arg-type]


async def test_require_tls_without_starttls_stays_queued_then_the_fixed_host_gets_it(
        harness: Harness) -> None:
    lab = await harness.lab(lab_text(smart_host_connector(RequireTLS="true"), DNS))
    smarthost = await harness.mta(SMARTHOST, lab.port(25), name="smarthost.lab.example")
    await submit(lab.port(587), "user@fabrikam.example", "tls required")
    message = await deferred_with(lab, lambda e: "STARTTLS was not offered" in e)
    assert "451 4.4.0 Primary target IP address responded with" in (message.last_error or "")
    assert "requires TLS" in (message.last_error or "")
    await asyncio.sleep(1.5)  # at least one more retry: still not sent in clear
    assert smarthost.messages == []
    # Get-Queue: the smart host's queue is in Retry with the reason.
    queues = await QueueAdmin(lab.lab, lab.lab.server("EX01"), lab.daemon.queues["EX01"],
                              lab.daemon.agents["EX01"]).get_queues()
    (hop,) = [q for q in queues if q["DeliveryType"] == "SmartHostConnectorDelivery"]
    assert (hop["NextHopDomain"], hop["NextHopConnector"], hop["Status"],
            hop["MessageCount"]) == ("smarthost.lab.example", "Via Smarthost", "Retry", 1)
    assert "STARTTLS was not offered" in str(hop["LastError"])
    # The test hook: the smart host is fixed (STARTTLS with a lab-PKI certificate).
    await smarthost.restart(certificate=harness.certificate(lab, "smarthost.lab.example"))
    await wait(lab, lambda: len(smarthost.messages) == 1)
    assert smarthost.messages[0].tls
    assert await pending(lab) == []


async def test_domain_validation_against_a_certificate_of_another_host(
        harness: Harness) -> None:
    connector = smart_host_connector(RequireTLS="true", TlsAuthLevel="DomainValidation",
                                     TlsDomain="smarthost.lab.example")
    lab = await harness.lab(lab_text(connector, DNS))
    smarthost = await harness.mta(SMARTHOST, lab.port(25), name="smarthost.lab.example",
                                  certificate=harness.certificate(lab, "other.lab.example"))
    await submit(lab.port(587), "user@fabrikam.example", "domain validation")
    message = await deferred_with(lab, lambda e: "does not match the expected domain" in e)
    assert "smarthost.lab.example" in (message.last_error or "")
    assert "other.lab.example" in (message.last_error or "")
    assert smarthost.messages == []
    await smarthost.restart(certificate=harness.certificate(lab, "smarthost.lab.example"))
    await wait(lab, lambda: len(smarthost.messages) == 1)
    assert smarthost.messages[0].tls


async def test_certificate_validation_refuses_a_self_signed_certificate(
        harness: Harness) -> None:
    lab = await harness.lab(lab_text(
        smart_host_connector(RequireTLS="true", TlsAuthLevel="CertificateValidation"), DNS))
    # EX01's setup certificate is self-signed: not trusted.
    own = lab.daemon.nodes["EX01"].certificate
    smarthost = await harness.mta(SMARTHOST, lab.port(25), certificate=own)
    await submit(lab.port(587), "user@fabrikam.example")
    message = await deferred_with(lab, lambda e: "failed validation" in e)
    assert "UntrustedRoot" in (message.last_error or "")
    assert smarthost.messages == []


async def test_opportunistic_starttls_and_encryption_only(harness: Harness) -> None:
    lab = await harness.lab(lab_text(
        smart_host_connector(RequireTLS="true", TlsAuthLevel="EncryptionOnly"), DNS))
    own = lab.daemon.nodes["EX01"].certificate  # self-signed: fine for EncryptionOnly
    smarthost = await harness.mta(SMARTHOST, lab.port(25), certificate=own)
    await submit(lab.port(587), "user@fabrikam.example")
    await wait(lab, lambda: len(smarthost.messages) == 1)
    assert smarthost.messages[0].tls


async def test_ignore_starttls_sends_in_clear(harness: Harness) -> None:
    lab = await harness.lab(lab_text(smart_host_connector(IgnoreSTARTTLS="true"), DNS))
    smarthost = await harness.mta(SMARTHOST, lab.port(25),
                                  certificate=harness.certificate(lab, "smarthost.lab.example"))
    await submit(lab.port(587), "user@fabrikam.example")
    await wait(lab, lambda: len(smarthost.messages) == 1)
    assert not smarthost.messages[0].tls


async def test_no_connector_holds_the_message_until_one_is_added(harness: Harness) -> None:
    config = harness.data.parent / "lab.yaml"
    config.write_text(lab_text("[]", DNS), encoding="utf-8")
    lab = await start_lab(lab_text("[]", DNS), harness.data, source=str(config))
    harness.labs.append(lab)
    await submit(lab.port(587), "user@fabrikam.example", "unreachable")
    message = await deferred_with(lab, lambda e: e == UNREACHABLE_REASON)
    assert message.recipients == ("user@fabrikam.example",)
    queues = {q["Identity"]: q for q in await QueueAdmin(
        lab.lab, lab.lab.server("EX01"), lab.daemon.queues["EX01"],
        lab.daemon.agents["EX01"]).get_queues()}
    assert queues["EX01\\Unreachable"]["MessageCount"] == 1
    assert lab.internet("user@fabrikam.example") == []
    # A connector added to the config file: the running lab reloads it and the message goes
    # (exchsim/reload.py; tests/integration/test_reload.py has the rest).
    smarthost = await harness.mta(SMARTHOST, lab.port(25))
    config.write_text(lab_text(smart_host_connector(), DNS), encoding="utf-8")
    await wait(lab, lambda: len(smarthost.messages) == 1)
    assert smarthost.messages[0].rcpt_tos == ["user@fabrikam.example"]
    assert lab.daemon.reloader.reloads == 1


async def test_an_unreachable_message_is_sent_after_a_restart_with_a_connector(
        harness: Harness) -> None:
    lab = await harness.lab(lab_text("[]", DNS))
    await submit(lab.port(587), "user@fabrikam.example", "unreachable")
    await deferred_with(lab, lambda e: e == UNREACHABLE_REASON)
    # The lab restarts on the same data with a connector in its config: the queue file kept
    # the message, and the new configuration routes it.
    await harness.stop_lab(lab)
    lab = await harness.lab(lab_text(smart_host_connector(), DNS))
    smarthost = await harness.mta(SMARTHOST, lab.port(25))
    await wait(lab, lambda: len(smarthost.messages) == 1)
    assert smarthost.messages[0].rcpt_tos == ["user@fabrikam.example"]


EX02 = '  - {Name: EX02, Role: Mailbox, Fqdn: ex02.contoso.com, Address: 127.0.10.2, Version: "15.2"}'


async def test_a_connector_of_ex02_gets_mail_from_ex01_through_ex02(harness: Harness) -> None:
    connector = smart_host_connector(SourceTransportServers="[EX02]")
    lab = await harness.lab(lab_text(connector, DNS, extra_servers=EX02))
    smarthost = await harness.mta(SMARTHOST, lab.port(25))
    await submit(lab.port(587), "user@fabrikam.example", "relayed through ex02")
    await wait(lab, lambda: len(smarthost.messages) == 1)
    got = smarthost.messages[0]
    assert got.peer == "127.0.10.2"  # EX02 sent it out
    text = got.data.decode()
    assert "by ex02.contoso.com" in text  # EX02's hub took it from EX01 (a Received line)
    assert "X-MS-Exchange-Organization-" not in text  # stripped on the way out


async def test_basic_auth_require_tls_authenticates_inside_tls(harness: Harness) -> None:
    connector = smart_host_connector(
        SmartHostAuthMechanism="BasicAuthRequireTLS",
        AuthenticationCredential='{UserName: relay, Password: "Relay-P@ss1"}')
    lab = await harness.lab(lab_text(connector, DNS))
    smarthost = await harness.mta(SMARTHOST, lab.port(25), credentials=("relay", "Relay-P@ss1"))
    await submit(lab.port(587), "user@fabrikam.example")
    # No STARTTLS offered: the credentials are never sent in clear.
    await deferred_with(lab, lambda e: "STARTTLS was not offered" in e)
    assert smarthost.messages == []
    await smarthost.restart(certificate=harness.certificate(lab, "smarthost.lab.example"))
    await wait(lab, lambda: len(smarthost.messages) == 1)
    got = smarthost.messages[0]
    assert got.tls and got.auth is not None and got.auth.login == b"relay"


async def test_a_silent_smart_host_times_out_and_the_next_one_takes_it(
        harness: Harness) -> None:
    connector = """
  - Name: Via Smarthosts
    AddressSpaces: ["*"]
    SmartHosts: ["[127.0.10.71]", smarthost.lab.example]
    ConnectionInactivityTimeOut: "00:00:01"
"""
    lab = await harness.lab(lab_text(connector, DNS))
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # never greets

    server = await asyncio.start_server(silent, "127.0.10.71", lab.port(25))
    try:
        smarthost = await harness.mta(SMARTHOST, lab.port(25))
        started = asyncio.get_running_loop().time()
        await submit(lab.port(587), "user@fabrikam.example")
        await wait(lab, lambda: len(smarthost.messages) == 1)
        assert accepted, "the first smart host was not tried"
        assert asyncio.get_running_loop().time() - started < 8
    finally:
        server.close()
        for writer in accepted:
            writer.close()
        await server.wait_closed()


PROXY_LOGGED = ('  - {Name: Outbound Proxy Frontend EX01, Server: EX01, TarpitInterval: "00:00:00", '
                "ProtocolLoggingLevel: Verbose}")


def with_proxy_log(text: str) -> str:
    return text.replace(
        '  - {Name: Outbound Proxy Frontend EX01, Server: EX01, TarpitInterval: "00:00:00"}',
        PROXY_LOGGED)


async def test_frontend_proxy_enabled_goes_out_through_outbound_proxy_frontend(
        harness: Harness) -> None:
    connector = """
  - Name: To Partner
    AddressSpaces: ["partner.example"]
    FrontendProxyEnabled: true
"""
    dns = DNS + """
  MX:
    partner.example:
      - {Preference: 10, NameExchange: mx1.partner.example, Address: 127.0.10.61}
"""
    lab = await harness.lab(with_proxy_log(lab_text(connector, dns)))
    mx = await harness.mta("127.0.10.61", lab.port(25))
    await submit(lab.port(587), "bob@partner.example", "through the front end")
    await submit(lab.port(587), "carol@partner.example, dave@partner.example", "two")
    await wait(lab, lambda: len(mx.messages) == 3)
    assert sorted(r for m in mx.messages for r in m.rcpt_tos) == [
        "bob@partner.example", "carol@partner.example", "dave@partner.example"]
    assert all("X-MS-Exchange-Organization-" not in m.data.decode() for m in mx.messages)
    log = lab.protocol_log()
    assert "Outbound Proxy Frontend EX01" in log
    assert "XPROXYTO DESTINATIONS=mx1.partner.example[127.0.10.61]:25" in log
    assert "250 XProxyTo accepted" in log


async def test_frontend_proxy_keeps_require_tls(harness: Harness) -> None:
    connector = smart_host_connector(FrontendProxyEnabled="true", RequireTLS="true")
    lab = await harness.lab(lab_text(connector, DNS))
    smarthost = await harness.mta(SMARTHOST, lab.port(25))
    await submit(lab.port(587), "user@fabrikam.example")
    message = await deferred_with(lab, lambda e: "STARTTLS was not offered" in e)
    assert "Outbound proxy failed" in (message.last_error or "")
    assert smarthost.messages == []
    await smarthost.restart(certificate=harness.certificate(lab, "smarthost.lab.example"))
    await wait(lab, lambda: len(smarthost.messages) == 1)
    assert smarthost.messages[0].tls
