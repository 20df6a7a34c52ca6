"""The hosts overlay (config/hosts.py), ExchsimServiceAddresses (config/serviceaddr.py) and
the hub's Outbound Proxy Front End (services.py ``outbound_frontend``)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from exchsim.config.hosts import Hosts, apply_hosts, load_hosts, parse_hosts, translate, unused
from exchsim.config.load import ConfigError, load_config, load_config_text
from exchsim.config.model import Server, TransportRole
from exchsim.services import Service, address_of, listen_address, outbound_frontend
from tests.labyaml import CONFIGS, LAB_YAML

MAP = {ipaddress.ip_address("127.0.10.1"): "198.51.100.11",
       ipaddress.ip_address("::1"): "2001:db8::5"}


@pytest.mark.parametrize(("value", "expected"), [
    ("127.0.10.1", "198.51.100.11"),
    ("[127.0.10.1]", "[198.51.100.11]"),
    ("127.0.10.1:2525", "198.51.100.11:2525"),
    ("[::1]:25", "[2001:db8::5]:25"),
    ("::1", "2001:db8::5"),
    ("[::1]", "[2001:db8::5]"),
    ("127.0.10.10", "127.0.10.10"),        # not mapped
    ("127.0.10.1/32", "127.0.10.1/32"),    # a range is left alone
    ("127.0.10.1-127.0.10.5", "127.0.10.1-127.0.10.5"),
    ("0.0.0.0:25", "0.0.0.0:25"),
    ("ex01.contoso.com", "ex01.contoso.com"),
    ("127.0.10.1:port", "127.0.10.1:port"),
])
def test_translate_exact_bracketed_and_with_port(value: str, expected: str) -> None:
    assert translate(value, MAP) == expected


def test_apply_walks_nested_lists_and_mappings_and_keeps_the_input() -> None:
    data = {"Lab": {"InternetSink": {"Address": "127.0.10.1", "Port": 25}},
            "SendConnectors": [{"SmartHosts": ["[127.0.10.1]", "relay.lab"], "Port": 25}],
            "Dns": {"A": {"mail.partner.example": "127.0.10.1:2525"}, "127.0.10.1": "key"},
            "Other": [[["127.0.10.1"]], 127, None, True]}
    out = apply_hosts(data, Hosts(MAP))
    assert out == {"Lab": {"InternetSink": {"Address": "198.51.100.11", "Port": 25}},
                   "SendConnectors": [{"SmartHosts": ["[198.51.100.11]", "relay.lab"],
                                       "Port": 25}],
                   "Dns": {"A": {"mail.partner.example": "198.51.100.11:2525"},
                           "198.51.100.11": "key"},
                   "Other": [[["198.51.100.11"]], 127, None, True]}
    assert data["Lab"] == {"InternetSink": {"Address": "127.0.10.1", "Port": 25}}


def test_services_set_the_key_by_name_case_insensitively_and_replace_one_given() -> None:
    data = {"Servers": [{"Name": "EX01", "Address": "127.0.10.1",
                         "ExchsimServiceAddresses": {"FrontEnd": "127.0.10.7"}},
                        {"Name": "EX02", "Address": "127.0.10.2"}]}
    hosts = Hosts(MAP, {"ex01": {"Transport": "198.51.100.12"}, "EX09": {"FrontEnd": "1.2.3.4"}})
    out = apply_hosts(data, hosts)
    assert isinstance(out, dict)
    assert out["Servers"] == [
        {"Name": "EX01", "Address": "198.51.100.11",
         "ExchsimServiceAddresses": {"Transport": "198.51.100.12"}},
        {"Name": "EX02", "Address": "127.0.10.2"}]
    assert unused(hosts, {"a.yaml": data}) == [
        "Addresses.::1: no config has this address (ignored)",
        "Services.EX09: no config has a server of this Name (ignored)"]


def test_parse_collects_every_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_hosts({"Addresses": {"x": "127.0.0.1", "127.0.0.2": "y"}, "Extra": 1,
                     "Services": {"EX01": {"Frontend": "127.0.0.3"}, "EX02": "127.0.0.4"}},
                    "h.yaml")
    text = str(caught.value)
    assert "h.yaml: Addresses.x: 'x' is not allowed" in text
    assert "h.yaml: Addresses.127.0.0.2: 'y' is not allowed: expected an IP address" in text
    assert "h.yaml: Extra: unknown key 'Extra'" in text
    assert "h.yaml: Services.EX01.Frontend: unknown service 'Frontend'" in text
    assert "did you mean 'FrontEnd'?" in text
    assert "h.yaml: Services.EX02: '127.0.0.4' is not allowed: expected a mapping" in text


@pytest.mark.parametrize("target", ["8.8.8.8", "192.0.2.50", "10.0.0.5", "0.0.0.0",
                                    "198.51.101.1", "::1", "2001:db8::5", "::ffff:127.0.0.1"])
def test_a_host_outside_the_labs_networks_is_refused(target: str) -> None:
    """The hosts' addresses become addresses the lab connects to (config/labnet.py): only
    loopback and the documentation networks 198.51.100.0/24 and 203.0.113.0/24, IPv4."""
    for data in ({"Addresses": {"127.0.10.250": target}},
                 {"Services": {"EX01": {"Transport": target}}}):
        with pytest.raises(ConfigError) as caught:
            parse_hosts(data, "h.yaml")
        assert (f"'{target}' is not allowed: expected an IPv4 address in 127.0.0.0/8, "
                "198.51.100.0/24, 203.0.113.0/24") in str(caught.value)
    hosts = parse_hosts({"Addresses": {"127.0.10.1": "127.0.20.1", "127.0.10.2": "198.51.100.21",
                                       "::1": "203.0.113.9"}}, "h.yaml")
    assert hosts.targets() == {"127.0.20.1", "198.51.100.21", "203.0.113.9"}


@pytest.mark.parametrize(("service", "target", "expected"), [
    ("Transport", "127.0.10.250", "lab.yaml: Lab.InternetSink.Address: '127.0.10.250' is not "
     "allowed: it is the Transport address (ExchsimServiceAddresses) of Servers[0] (EX01); the "
     "internet sink needs its own"),
    ("MailboxDelivery", "127.0.10.251", "lab.yaml: Lab.CrlServer.Address: '127.0.10.251' is not "
     "allowed: it is the MailboxDelivery address (ExchsimServiceAddresses) of Servers[0] (EX01); "
     "the CRL server needs its own"),
    ("Transport", "127.0.10.60", "its server PARTNER01 has the address 127.0.10.60 of EX01 of "
     "this file; every server of the lab needs its own addresses"),
])
def test_a_service_address_is_no_other_pieces(tmp_path: Path, service: str, target: str,
                                             expected: str) -> None:
    """A service's own address is its server's, as its Address is: not the internet sink's, the
    CRL server's or a partner server's (their listeners would share an address; the partner's
    2525 and 465 would be taken at start)."""
    for name, copy in (("single-server.yaml", "lab.yaml"), ("partner.yaml", "partner.yaml")):
        (tmp_path / copy).write_text((CONFIGS / name).read_text(encoding="utf-8"),
                                     encoding="utf-8")
    hosts = parse_hosts({"Services": {"EX01": {service: target}}}, "h.yaml")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "lab.yaml", hosts)
    assert expected in str(caught.value), str(caught.value)


def test_a_config_and_its_partner_configs_get_the_hosts(tmp_path: Path) -> None:
    """configs/single-server.yaml as shipped with configs/partner.yaml: both files are
    translated."""
    for name, copy in (("single-server.yaml", "lab.yaml"), ("partner.yaml", "partner.yaml")):
        (tmp_path / copy).write_text((CONFIGS / name).read_text(encoding="utf-8"),
                                     encoding="utf-8")
    hosts = parse_hosts({"Addresses": {"127.0.10.1": "198.51.100.11",
                                       "127.0.10.60": "198.51.100.60",
                                       "127.0.10.250": "198.51.100.50",
                                       "127.0.10.251": "198.51.100.50"},
                         "Services": {"EX01": {"Transport": "198.51.100.12"}}}, "h.yaml")
    lab = load_config(tmp_path / "lab.yaml", hosts)
    ex01 = lab.server("EX01")
    assert ex01.address == "198.51.100.11"
    assert address_of(ex01, Service.TRANSPORT) == "198.51.100.12"
    assert address_of(ex01, Service.FRONTEND) == "198.51.100.11"
    assert listen_address(ex01, TransportRole.HUB) == "198.51.100.12"
    assert ex01.addresses == {"198.51.100.11", "198.51.100.12"}
    assert lab.dns.a["mail.partner.example"].address == "198.51.100.60"
    assert lab.lab.crl_server.address == "198.51.100.50"
    (partner,) = lab.partners
    assert partner.servers[0].address == "198.51.100.60"
    assert partner.dns.a["mail.contoso.com"].address == "198.51.100.11"
    assert "198.51.100.60" in lab.hosts and "198.51.100.12" in partner.hosts
    # Without the hosts file those addresses are outside the lab: refused.
    moved = (tmp_path / "lab.yaml").read_text().replace("127.0.10.60", "198.51.100.60")
    with pytest.raises(ConfigError, match=r"198\.51\.100\.60 is not a loopback address"):
        load_config_text(moved, str(tmp_path / "lab.yaml"))


def test_a_service_address_is_the_servers_own() -> None:
    text = LAB_YAML.replace(
        'Address: 127.0.10.1, Version: "15.2"}',
        'Address: 127.0.10.1, Version: "15.2", ExchsimServiceAddresses: {Transport: 127.0.10.2}}'
        '\n  - {Name: EX02, Role: Mailbox, Fqdn: ex02.contoso.com, Address: 127.0.10.2}')
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "x.yaml")
    assert ("x.yaml: Servers[1] (EX02).Address: '127.0.10.2' is already an address of "
            "Servers[0]: each server owns its own addresses") in str(caught.value)
    with pytest.raises(ConfigError, match=r"ExchsimServiceAddresses.MailboxDelivery: 'x' is "):
        load_config_text(LAB_YAML.replace(
            'Address: 127.0.10.1, Version: "15.2"}',
            'Address: 127.0.10.1, Version: "15.2", ExchsimServiceAddresses: '
            '{MailboxDelivery: x}}'), "x.yaml")


def _server(name: str, role: str, version: str) -> Server:
    return Server.model_validate({"Name": name, "Role": role, "Fqdn": f"{name}.contoso.com",
                                  "Address": "127.0.10.9", "Version": version})


def test_the_hubs_outbound_proxy_front_end() -> None:
    ex13, cas = _server("EX13", "Mailbox", "15.0"), _server("CAS01", "ClientAccess", "15.0")
    ex19 = _server("EX19", "Mailbox", "15.2")
    assert outbound_frontend([ex13, cas], ex13) is cas
    assert outbound_frontend([ex13], ex13) is ex13
    assert outbound_frontend([ex19, cas], ex19) is ex19


def test_the_shipped_hosts_file_has_the_compose_plan() -> None:
    hosts = load_hosts(CONFIGS / "compose-hosts.yaml")
    assert {str(k): v for k, v in hosts.addresses.items()} == {
        "127.0.10.1": "198.51.100.11", "127.0.10.2": "198.51.100.21",
        "127.0.10.10": "198.51.100.31", "127.0.10.250": "198.51.100.50",
        "127.0.10.251": "198.51.100.50", "127.0.10.60": "198.51.100.60"}
    assert hosts.services == {"EX01": {"FrontEnd": "198.51.100.11", "Transport": "198.51.100.12",
                                       "MailboxDelivery": "198.51.100.13"}}


@pytest.mark.parametrize(("entry", "expected"), [
    ('Address: 8.8.4.4, Version: "15.2"', "Servers[0] (EX01).Address: '8.8.4.4' is not allowed"),
    ('Address: 127.0.10.1, ExchsimServiceAddresses: {Transport: 192.0.2.12}, Version: "15.2"',
     "Servers[0] (EX01).ExchsimServiceAddresses.Transport: '192.0.2.12' is not allowed"),
])
def test_a_server_outside_the_lab_is_refused(entry: str, expected: str) -> None:
    """The other servers' hops connect to a server's addresses: loopback, or a host of
    --hosts, never an address the lab does not own."""
    text = LAB_YAML.replace('Address: 127.0.10.1, Version: "15.2"', entry, 1)
    assert text != LAB_YAML
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "lab.yaml", base=CONFIGS)
    assert f"lab.yaml: {expected}: expected a loopback address (127.0.0.0/8 or ::1) or a " \
        "host of --hosts" in str(caught.value), str(caught.value)
    hosts = parse_hosts({"Addresses": {"8.8.4.4": "198.51.100.11"},
                         "Services": {"EX01": {"Transport": "198.51.100.12"}}}, "h.yaml")
    lab = load_config_text(text, "lab.yaml", base=CONFIGS, hosts=hosts)
    assert address_of(lab.server("EX01"), Service.TRANSPORT) == "198.51.100.12"


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("InternetSink: {Address: 127.0.10.250", "InternetSink: {Address: 8.8.8.8",
     "Lab.InternetSink.Address: '8.8.8.8' is not allowed: the internet sink listens on loopback "
     "only (127.0.0.0/8 or ::1, or a host of --hosts)"),
    ("SendConnectors:\n", 'SendConnectors:\n  - {Name: Out, AddressSpaces: ["out.example"], '
     'SmartHosts: ["[192.0.2.25]"], DNSRoutingEnabled: false}\n',
     "SendConnectors[0] (Out).SmartHosts[0]: '[192.0.2.25]' is not allowed: 192.0.2.25 is not a "
     "loopback address (nor a host of --hosts)"),
])
def test_the_sink_and_smart_hosts_stay_in_the_lab(old: str, new: str, expected: str) -> None:
    """The send connectors deliver to the internet sink and to their smart hosts: an address
    outside loopback and the hosts of --hosts would send the lab's mail out (a Dns answer was
    refused already, an [address] smart host and the sink were not)."""
    text = LAB_YAML.replace(old, new, 1)
    assert text != LAB_YAML
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "lab.yaml", base=CONFIGS)
    assert f"lab.yaml: {expected}" in str(caught.value), str(caught.value)
    moved = "198.51.100.50" if "InternetSink" in old else "198.51.100.70"
    hosts = parse_hosts({"Addresses": {"8.8.8.8" if "InternetSink" in old else "192.0.2.25":
                                       moved}}, "h.yaml")
    lab = load_config_text(text, "lab.yaml", base=CONFIGS, hosts=hosts)
    assert moved in {lab.lab.internet_sink.address,
                     *(h for c in lab.send_connectors for h in c.smart_hosts),
                     *(h[1:-1] for c in lab.send_connectors for h in c.smart_hosts)}
