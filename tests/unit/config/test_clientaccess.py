"""Role ClientAccess: Exchange 2013's Client Access server, the Front End only
(exchange.md §7.9)."""

from __future__ import annotations

from exchsim.config.model import ServerRole, TransportRole
from exchsim.services import Service, missing_service_message, services_of
from tests.unit.config.test_load import ORG, config, issues_of, load

CAS = """
Servers:
  - {Name: EX01, Role: Mailbox, Fqdn: ex01.contoso.com, Address: 127.0.10.1, Version: "15.0"}
  - {Name: CAS01, Role: ClientAccess, Fqdn: cas01.contoso.com, Address: 127.0.10.5, Version: "15.0"}
"""


def test_a_client_access_server_gets_the_three_front_end_connectors_only() -> None:
    lab = load(config(servers=CAS))
    cas = lab.server("CAS01")
    assert cas.role is ServerRole.CLIENT_ACCESS
    connectors = {c.name: c for c in lab.connectors_of("CAS01")}
    assert sorted(connectors) == ["Client Frontend CAS01", "Default Frontend CAS01",
                                  "Outbound Proxy Frontend CAS01"]
    assert {c.transport_role for c in connectors.values()} == {TransportRole.FRONTEND}
    assert sorted(b.port for c in connectors.values() for b in c.bindings) == [
        25, 25, 587, 587, 717, 717]
    assert services_of(cas) == (Service.FRONTEND,)
    assert missing_service_message(cas, Service.FRONTEND) is None
    assert missing_service_message(cas, Service.TRANSPORT) == (
        "exchsim: CAS01 is a server of Role ClientAccess: it has no Transport service "
        "(its services: FrontEnd)")


def test_a_new_connector_on_a_client_access_server_is_a_front_end_connector() -> None:
    lab = load(config("  - {Name: Relay, Server: CAS01, Bindings: ['0.0.0.0:2600'], "
                      "RemoteIPRanges: [127.0.0.9], PermissionGroups: [AnonymousUsers], "
                      "AuthMechanism: [Tls]}", servers=CAS))
    relay = next(c for c in lab.connectors_of("CAS01") if c.name == "Relay")
    assert relay.transport_role is TransportRole.FRONTEND


def test_a_hub_connector_on_a_client_access_server_is_refused() -> None:
    issues = issues_of(config("  - {Name: Hub, Server: CAS01, TransportRole: HubTransport, "
                              "Bindings: ['0.0.0.0:2600']}", servers=CAS))
    assert [(i.key_path, i.value, i.message) for i in issues] == [(
        "ReceiveConnectors[0] (Hub).TransportRole", "HubTransport",
        "'HubTransport' is not allowed on Client Access server CAS01: expected "
        "FrontendTransport (a Client Access server runs the Front End Transport service only, "
        "exchange.md §7.9)")]


def test_client_access_needs_exchange_2013_and_a_mailbox_server() -> None:
    issues = issues_of(config(servers=CAS.replace(
        'Role: ClientAccess, Fqdn: cas01.contoso.com, Address: 127.0.10.5, Version: "15.0"',
        'Role: ClientAccess, Fqdn: cas01.contoso.com, Address: 127.0.10.5, Version: "15.2"')))
    assert [(i.key_path, i.value) for i in issues] == [("Servers[1] (CAS01).Role",
                                                        "ClientAccess")]
    assert "the Client Access role exists on Exchange 2013 (Version 15.0) only" in (
        issues[0].message)
    alone = ('\nServers:\n  - {Name: CAS01, Role: ClientAccess, Fqdn: cas01.contoso.com, '
             'Address: 127.0.10.5, Version: "15.0"}\n')
    issues = issues_of(config(servers=alone, org=ORG.replace("Server: EX01", "Server: CAS01")))
    messages = [i.message for i in issues]
    assert ("Client Access server CAS01 needs a Mailbox server in the config: its Front End "
            "proxies every message to a Mailbox server's hub (exchange.md §7.2)") in messages
    assert "'CAS01' is a server of Role ClientAccess: mailboxes live on Mailbox servers" in (
        messages)
