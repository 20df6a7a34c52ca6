"""``exchsim queue`` on a running lab shows Exchange's LastError for a next hop that refuses the
connection (exchange.md §8.5, policy/lasterror.py): Exchange 2016's queue form for the
intra-organization hops (Mailbox Transport Delivery, another server's Transport service), the
failover sentence with the Winsock error for a send connector's destinations."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import FAST, RunningLab, start_lab, with_connectors
from tests.integration.sendlab import lab_text, submit
from tests.integration.test_queue_cli import SLOW_RETRY, queue_json

EX02 = '  - {Name: EX02, Role: Mailbox, Fqdn: ex02.contoso.com, Address: 127.0.10.2, Version: "15.2"}'
SMART_HOST = """
  - Name: Via Smarthost
    AddressSpaces: ["fabrikam.example"]
    SmartHosts: [smarthost.lab.example, "[127.0.10.71]"]SOURCE
"""
DNS = """
  A:
    smarthost.lab.example: 127.0.10.70
"""
SLOW = ('Address: 127.0.10.1, Version: "15.2"}',
        'Address: 127.0.10.1, Version: "15.2", TransientFailureRetryInterval: "00:01:00", '
        'MessageRetryInterval: "00:01:00"}')


class _Labs:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.running: list[RunningLab] = []

    async def start(self, text: str) -> tuple[RunningLab, Path]:
        config = self.tmp / "lab.yaml"
        config.write_text(text, encoding="utf-8")
        running = await start_lab(text, self.tmp / "data")
        self.running.append(running)
        return running, config


@pytest.fixture
async def labs(tmp_path: Path) -> Any:
    made = _Labs(tmp_path)
    yield made
    for running in made.running:
        await running.daemon.stop()


async def _retry_queue(running: RunningLab, config: Path) -> dict[str, Any]:
    for _ in range(200):
        found = [q for q in await queue_json(running, config, "get") if q["Status"] == "Retry"]
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no queue in Retry")


async def test_a_refused_mailbox_delivery_hop_shows_exchange_2016s_form(labs: _Labs) -> None:
    running, config = await labs.start(with_connectors(SLOW_RETRY, FAST))
    await running.daemon.pause_listener("127.0.10.1", 475)  # Mailbox Transport Delivery down
    await submit(running.port(587), "alice@contoso.com", "to a mailbox")
    queue = await _retry_queue(running, config)
    assert queue["DeliveryType"] == "SmtpDeliveryToMailbox"
    assert queue["LastError"] == (
        "{LED=451 4.4.397 Error communicating with target host. -> 421 4.2.1 Unable to connect "
        "-> SocketConnectionRefused: Socket error code 10061};{MSG=};{FQDN=ex01.contoso.com};"
        "{IP=127.0.10.1};")
    [message] = await queue_json(running, config, "messages", "--queue", queue["Identity"])
    assert message["LastError"] == queue["LastError"]


async def test_a_refused_source_server_shows_exchange_2016s_form(labs: _Labs) -> None:
    text = lab_text(SMART_HOST.replace("SOURCE", "\n    SourceTransportServers: [EX02]"), DNS,
                    extra_servers=EX02).replace(*SLOW)
    running, config = await labs.start(text)
    await running.daemon.pause_listener("127.0.10.2", 2525)  # EX02's Transport service down
    await submit(running.port(587), "someone@fabrikam.example", "through ex02")
    queue = await _retry_queue(running, config)
    assert queue["DeliveryType"] == "SmtpRelayToConnectorSourceServers"
    assert queue["LastError"] == (
        "{LED=451 4.4.397 Error communicating with target host. -> 421 4.2.1 Unable to connect "
        "-> SocketConnectionRefused: Socket error code 10061};{MSG=};{FQDN=ex02.contoso.com};"
        "{IP=127.0.10.2};")


async def test_refused_smart_hosts_show_the_failover_sentence_with_the_winsock_error(
        labs: _Labs) -> None:
    running, config = await labs.start(lab_text(SMART_HOST.replace("SOURCE", ""), DNS)
                                       .replace(*SLOW))
    await submit(running.port(587), "someone@fabrikam.example", "to nobody")  # nothing listens
    queue = await _retry_queue(running, config)
    assert queue["DeliveryType"] == "SmartHostConnectorDelivery"
    assert queue["LastError"] == (
        '441 4.4.1 Error encountered while communicating with primary target IP address: '
        '"Failed to connect. Winsock error code: 10061, Win32 error code: 10061." Attempted '
        "failover to alternate host, but that did not succeed. Either there are no alternate "
        "hosts, or delivery failed to all alternate hosts. The last endpoint attempted was "
        f"127.0.10.71:{running.port(25)}")
