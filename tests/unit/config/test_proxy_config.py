"""``ExchsimProxyProtocol`` on a server and ``Lab.ComposeGateway`` (config/proxy.py,
validate/proxy.py): every bad value names the file, the key, the value and what is allowed."""

from __future__ import annotations

import datetime

import pytest

from exchsim.config.issues import ConfigError
from exchsim.config.load import load_config_text
from tests.labyaml import CONFIGS, LAB_YAML, SEED001_YAML

SERVER = '{Name: EX01, Role: Mailbox, Fqdn: ex01.contoso.com, Address: 127.0.10.1, Version: "15.2"}'
SINK = "  InternetSink: {Address: 127.0.10.250, Port: 25}"


def lab_with(proxy: str, lab: str = "") -> str:
    text = LAB_YAML.replace(SERVER, SERVER[:-1] + f", ExchsimProxyProtocol: {proxy}}}")
    assert text != LAB_YAML
    return text.replace(SINK, SINK + lab)


def issues(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "lab.yaml")
    return [str(issue) for issue in caught.value.issues]


def test_a_valid_key() -> None:
    lab = load_config_text(lab_with(
        '{Ports: [25, 587], TrustedProxies: [127.0.10.90, 10.0.0.0/8, "fd00::1-fd00::9"], '
        'HeaderTimeout: "00:00:00.5"}', "\n  ComposeGateway: 198.51.100.1"))
    proxy = lab.servers[0].exchsim_proxy_protocol
    assert proxy is not None
    assert proxy.ports == (25, 587)
    assert [r.text for r in proxy.trusted_proxies] == ["127.0.10.90", "10.0.0.0/8",
                                                       "fd00::1-fd00::9"]
    assert proxy.header_timeout == datetime.timedelta(milliseconds=500)
    assert lab.lab.compose_gateway == "198.51.100.1"


def test_defaults() -> None:
    lab = load_config_text(lab_with("{Ports: [25], TrustedProxies: [127.0.10.90]}"))
    proxy = lab.servers[0].exchsim_proxy_protocol
    assert proxy is not None and proxy.header_timeout == datetime.timedelta(seconds=5)
    assert load_config_text(LAB_YAML).servers[0].exchsim_proxy_protocol is None


KEY = "lab.yaml: Servers[0] (EX01).ExchsimProxyProtocol"


@pytest.mark.parametrize(("proxy", "expected"), [
    ("{Ports: [26], TrustedProxies: [127.0.10.90]}",
     f"{KEY}.Ports[0]: 26 is not allowed: EX01 listens on no such port; expected one of 25, "
     "465, 475, 587, 717, 2525 (the Bindings of its receive connectors, without "
     "--port-offset)"),
    ("{Ports: [0], TrustedProxies: [127.0.10.90]}",
     f"{KEY}.Ports[0]: 0 is not allowed: must be at least 1"),
    ("{Ports: [], TrustedProxies: [127.0.10.90]}", f"{KEY}.Ports: "),
    ("{TrustedProxies: [127.0.10.90]}", f"{KEY}.Ports: "),
    ("{Ports: [25], TrustedProxies: [127.0.10.300]}",
     f"{KEY}.TrustedProxies[0]: '127.0.10.300' is not allowed: expected a single IP address"),
    ("{Ports: [25], TrustedProxies: []}", f"{KEY}.TrustedProxies: "),
    ("{Ports: [25], TrustedProxies: [127.0.10.0/24]}",
     f"{KEY}.TrustedProxies[0]: '127.0.10.0/24' is not allowed: it holds 127.0.10.1, the "
     "Address of Servers[0] (EX01); a lab server's own connections carry no PROXY header and "
     "would be refused: trust the proxies' addresses only"),
    ('{Ports: [25], TrustedProxies: [127.0.10.90], HeaderTimeout: "00:00:00.05"}',
     f"{KEY}.HeaderTimeout: '00:00:00.0500000' is not allowed: expected 00:00:00.1000000 to "
     "00:05:00"),
    ('{Ports: [25], TrustedProxies: [127.0.10.90], HeaderTimeout: "01:00:00"}',
     f"{KEY}.HeaderTimeout: '01:00:00' is not allowed: expected"),
    ("{Ports: [25], TrustedProxies: [127.0.10.90], Optional: true}", f"{KEY}.Optional: "),
    ("[25]", f"{KEY}: [25] is not allowed: expected a mapping"),
])
def test_bad_values(proxy: str, expected: str) -> None:
    found = issues(lab_with(proxy))
    assert len(found) == 1, found
    assert found[0].startswith(expected), found[0]


def test_a_partner_server_is_no_proxy() -> None:
    # configs/single-server.yaml as shipped runs PARTNER01 (127.0.10.60) beside EX01: its To Contoso
    # connector sends to EX01's 25 without a PROXY header.
    server = ', Version: "15.2", ExchsimLabCertificate: [mail.contoso.com, contoso.com]}'
    text = SEED001_YAML.replace(server, server[:-1] + ", ExchsimProxyProtocol: {Ports: [25], "
                                "TrustedProxies: [127.0.10.60/31]}}")
    assert text != SEED001_YAML
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, str(CONFIGS / "single-server.yaml"))
    found = [str(issue) for issue in caught.value.issues]
    assert len(found) == 1, found
    assert "Servers[0] (EX01).ExchsimProxyProtocol.TrustedProxies[0]: '127.0.10.60/31' is not " \
        "allowed: it holds 127.0.10.60, the Address of PARTNER01 of " in found[0], found[0]


def test_a_bad_gateway() -> None:
    found = issues(lab_with("{Ports: [25], TrustedProxies: [127.0.10.90]}",
                            "\n  ComposeGateway: 198.51.100"))
    assert found == ["lab.yaml: Lab.ComposeGateway: '198.51.100' is not allowed: expected an IP "
                     "address like 127.0.10.250"]
