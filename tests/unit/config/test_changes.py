"""What a changed config changes on a running lab (config/changes.py): the routing parts are
taken, every other part is named for a restart."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from exchsim.config.changes import compare
from exchsim.config.implied import IMPLIED_NAME
from exchsim.config.load import load_config_text
from exchsim.config.model import Lab

BASE: dict[str, Any] = {
    "Organization": {
        "Name": "Contoso",
        "AcceptedDomains": [{"DomainName": "contoso.com", "DomainType": "Authoritative",
                             "Default": True}],
        "Mailboxes": [{"PrimarySmtpAddress": "alice@contoso.com", "Server": "EX01"}],
    },
    "Servers": [
        {"Name": "EX01", "Role": "Mailbox", "Fqdn": "ex01.contoso.com", "Address": "127.0.10.1"},
    ],
    "SendConnectors": [
        {"Name": "To Partner", "AddressSpaces": ["partner.example"]},
        {"Name": "To Internet", "AddressSpaces": ["*"], "SmartHosts": ["[127.0.10.250]"]},
    ],
    "Dns": {"A": {"mx.partner.example": "127.0.10.61"},
            "MX": {"partner.example": [{"Preference": 10,
                                        "NameExchange": "mx.partner.example"}]}},
}


def lab(change: Any = None) -> Lab:
    data = copy.deepcopy(BASE)
    if change is not None:
        change(data)
    return load_config_text(yaml.safe_dump(data), "lab.yaml")


def test_the_same_file_changes_nothing() -> None:
    found = compare(lab(), lab())
    assert not found.reloaded and found.restart == ()
    assert found.summary() == "nothing routing reads changed"
    assert found.routing == lab()


def test_send_connectors_added_changed_and_removed() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["SendConnectors"] = [
            {"Name": "To Partner", "AddressSpaces": ["partner.example"], "RequireTLS": True},
            {"Name": "To Fabrikam", "AddressSpaces": ["fabrikam.example"],
             "SmartHosts": ["[127.0.10.70]"]},
        ]

    running, loaded = lab(), lab(edit)
    found = compare(running, loaded)
    assert (found.added, found.changed, found.removed) == (
        ("To Fabrikam",), ("To Partner",), ("To Internet",))
    assert found.connectors == {"To Fabrikam", "To Partner", "To Internet"}
    assert found.reloaded and found.restart == ()
    assert found.routing.send_connectors == loaded.send_connectors
    assert found.summary() == ("send connector(s) added: To Fabrikam; send connector(s) "
                               "changed: To Partner; send connector(s) removed: To Internet")


def test_a_dns_change_concerns_every_connector() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["Dns"]["A"]["mx.partner.example"] = "127.0.10.62"

    found = compare(lab(), lab(edit))
    assert found.dns and not (found.added or found.changed or found.removed)
    assert found.connectors == {"To Partner", "To Internet"}
    assert found.routing.dns == lab(edit).dns
    assert found.summary() == "Dns changed"


def test_tls_send_domain_secure_list_is_taken_the_rest_of_transport_config_is_not() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["Organization"]["TransportConfig"] = {
            "TLSSendDomainSecureList": ["partner.example"], "MaxSendSize": "20MB"}

    running = lab()
    found = compare(running, lab(edit))
    transport = found.routing.organization.transport_config
    assert [str(d) for d in transport.tls_send_domain_secure_list] == ["partner.example"]
    assert transport.max_send_size == running.organization.transport_config.max_send_size
    assert found.secure_domains and found.reloaded
    assert found.restart == ("Organization.TransportConfig.MaxSendSize",)


def test_parts_read_at_start_are_named_for_a_restart_and_not_taken() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["Servers"][0]["Fqdn"] = "mail.contoso.com"
        data["Organization"]["Mailboxes"].append(
            {"PrimarySmtpAddress": "bob@contoso.com", "Server": "EX01"})
        data["Lab"] = {"RetryInterval": "00:00:05"}
        data["ReceiveConnectors"] = [{"Name": "Default EX01", "Server": "EX01",
                                      "MaxMessageSize": "20MB"}]

    running = lab()
    found = compare(running, lab(edit))
    assert not found.reloaded
    assert found.restart == ("Organization.Mailboxes", "Servers", "ReceiveConnectors",
                             "Lab.RetryInterval")
    assert found.routing == running  # nothing of it is taken


def test_the_implied_connector_gives_way_to_send_connectors() -> None:
    def without(data: dict[str, Any]) -> None:
        del data["SendConnectors"]

    found = compare(lab(without), lab())
    assert found.removed == (IMPLIED_NAME,)
    assert found.added == ("To Partner", "To Internet")
    back = compare(lab(), lab(without))
    assert back.added == (IMPLIED_NAME,) and back.routing.send_connectors[0].name == IMPLIED_NAME
