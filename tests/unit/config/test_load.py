"""Loading a config: default connectors, overrides, new connectors and every rule of exchange.md §3.4."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import yaml

from exchsim.config.load import (
    EXTENDED_RIGHTS,
    ConfigError,
    Issue,
    load_config,
    load_config_text,
)
from exchsim.config.model import (
    MB,
    AuthMechanism,
    Lab,
    MessageRateSource,
    PermissionGroup,
    ProtocolLoggingLevel,
    ReceiveConnector,
    SizeEnabled,
    TransportRole,
)
from exchsim.config.syntax import format_ip_range

ROOT = Path(__file__).resolve().parents[3]
A = AuthMechanism
PG = PermissionGroup

EXAMPLE = r"""
Organization:
  Name: Contoso
  AcceptedDomains:
    - {DomainName: contoso.com, DomainType: Authoritative, Default: true}
  TransportConfig: {MaxReceiveSize: 10MB, MaxSendSize: 10MB}
  Mailboxes:
    - {PrimarySmtpAddress: alice@contoso.com, UserPrincipalName: alice@contoso.com,
       Password: "P@ssw0rd!", Server: EX01}
    - {PrimarySmtpAddress: bob@contoso.com, UserPrincipalName: bob@contoso.com,
       Password: "P@ssw0rd!", Server: EX01}
Servers:
  - {Name: EX01, Role: Mailbox, Fqdn: ex01.contoso.com, Address: 127.0.10.1, Version: "15.2"}
ReceiveConnectors:
  - {Name: SMTP Relay EX01, Server: EX01, TransportRole: FrontendTransport, Usage: Custom,
     Bindings: ["0.0.0.0:25"], RemoteIPRanges: ["127.0.21.75"], MaxMessageSize: 1MB,
     AuthMechanism: [Tls, ExternalAuthoritative], PermissionGroups: [ExchangeServers]}
  - {Name: Anonymous Relay EX01, Server: EX01, TransportRole: FrontendTransport, Usage: Custom,
     Bindings: ["0.0.0.0:25"], RemoteIPRanges: ["127.0.22.0/24"],
     AuthMechanism: [Tls], PermissionGroups: [AnonymousUsers], Banner: "220 relay ready"}
ADPermissions:
  - {Identity: "EX01\\Anonymous Relay EX01", User: "NT AUTHORITY\\ANONYMOUS LOGON",
     ExtendedRights: [ms-Exch-SMTP-Accept-Any-Recipient], Deny: false}
"""

ORG = """
Organization:
  Name: Contoso
  AcceptedDomains:
    - {DomainName: contoso.com, DomainType: Authoritative, Default: true}
  Mailboxes:
    - {PrimarySmtpAddress: alice@contoso.com, UserPrincipalName: alice@contoso.com, Server: EX01}
"""
EX01 = """
Servers:
  - {Name: EX01, Role: Mailbox, Fqdn: ex01.contoso.com, Address: 127.0.10.1}
"""
EDGE = """
Servers:
  - {Name: EX01, Role: Mailbox, Fqdn: ex01.contoso.com, Address: 127.0.10.1}
  - {Name: EDGE01, Role: Edge, Fqdn: edge01.contoso.com, Address: 127.0.10.9}
"""

MAILBOX_DEFAULTS = (
    "Default Frontend EX01",
    "Outbound Proxy Frontend EX01",
    "Client Frontend EX01",
    "Default EX01",
    "Client Proxy EX01",
    "Mailbox Delivery EX01",
)


def config(connectors: str = "", permissions: str = "", servers: str = EX01, org: str = ORG) -> str:
    text = org + servers
    if connectors:
        text += "ReceiveConnectors:\n" + connectors.strip("\n") + "\n"
    if permissions:
        text += "ADPermissions:\n" + permissions.strip("\n") + "\n"
    return text


def load(text: str) -> Lab:
    return load_config_text(text, "test.yaml")


def issues_of(text: str, source: str = "bad.yaml") -> tuple[Issue, ...]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, source)
    issues = info.value.issues
    assert issues, "a ConfigError must carry at least one issue"
    assert str(info.value) == "\n".join(str(issue) for issue in issues)
    return issues


def one_issue(text: str) -> Issue:
    issues = issues_of(text)
    assert len(issues) == 1, "\n".join(map(str, issues))
    return issues[0]


def by_name(lab: Lab) -> dict[str, ReceiveConnector]:
    return {c.name: c for c in lab.receive_connectors}


def ranges(connector: ReceiveConnector) -> list[str]:
    return [format_ip_range(r) for r in connector.remote_ip_ranges]


# --- the brief's example and the shipped files --------------------------------------------------


def test_the_example_loads_with_defaults_first_then_custom_connectors() -> None:
    lab = load_config_text(EXAMPLE, "example.yaml")
    assert lab.source == "example.yaml"
    names = [c.name for c in lab.receive_connectors]
    assert names == [*MAILBOX_DEFAULTS, "SMTP Relay EX01", "Anonymous Relay EX01"]
    relay, anonymous = by_name(lab)["SMTP Relay EX01"], by_name(lab)["Anonymous Relay EX01"]

    assert relay.transport_role is TransportRole.FRONTEND
    assert relay.auth_mechanism == {A.TLS, A.EXTERNAL_AUTHORITATIVE}
    assert relay.permission_groups == {PG.EXCHANGE_SERVERS}
    assert relay.max_message_size == 1 * MB
    assert ranges(relay) == ["127.0.21.75"]
    assert [b.format() for b in relay.bindings] == ["0.0.0.0:25"]
    # Not given: the documented defaults of a new connector (exchange.md §3.1), not setup's values.
    assert relay.max_hop_count == 30 and relay.max_local_hop_count == 8
    assert relay.protocol_logging_level is ProtocolLoggingLevel.NONE
    assert relay.fqdn is None and relay.banner is None

    assert anonymous.banner == "220 relay ready"
    assert anonymous.permission_groups == {PG.ANONYMOUS_USERS}
    assert anonymous.max_message_size == 36 * MB
    assert ranges(anonymous) == [format_ip_range(anonymous.remote_ip_ranges[0])]
    assert anonymous.remote_ip_ranges[0].size == 256

    assert len(lab.ad_permissions) == 1
    permission = lab.ad_permissions[0]
    assert permission.identity == "EX01\\Anonymous Relay EX01"
    assert permission.user == "NT AUTHORITY\\ANONYMOUS LOGON"
    assert permission.extended_rights == ("ms-Exch-SMTP-Accept-Any-Recipient",)
    assert permission.deny is False
    assert lab.organization.transport_config.max_receive_size == 10 * MB
    assert [m.primary_smtp_address for m in lab.organization.mailboxes] == [
        "alice@contoso.com",
        "bob@contoso.com",
    ]


def test_adpermission_spellings_are_normalised() -> None:
    text = EXAMPLE.replace(
        r'{Identity: "EX01\\Anonymous Relay EX01", User: "NT AUTHORITY\\ANONYMOUS LOGON",',
        r'{Identity: "ex01\\ANONYMOUS relay ex01", User: "nt authority\\anonymous logon",',
    ).replace("[ms-Exch-SMTP-Accept-Any-Recipient]", "[Ms-Exch-SMTP-Accept-Any-Recipient, "
              "MS-EXCH-BYPASS-ANTI-SPAM]")
    assert "ex01\\\\ANONYMOUS relay ex01" in text
    permission = load(text).ad_permissions[0]
    assert permission.identity == "EX01\\Anonymous Relay EX01"
    assert permission.user == "NT AUTHORITY\\ANONYMOUS LOGON"
    assert permission.extended_rights == (
        "ms-Exch-SMTP-Accept-Any-Recipient",
        "ms-Exch-Bypass-Anti-Spam",
    )


@pytest.mark.parametrize(
    "user, canonical",
    [
        ("contoso\\ALICE", "CONTOSO\\alice"),
        ("ALICE@contoso.com", "alice@contoso.com"),
        ("contoso\\exchange servers", "CONTOSO\\Exchange Servers"),
        ("contoso\\exchangelegacyinterop", "CONTOSO\\ExchangeLegacyInterop"),
        ("ms exchange\\partner servers", "MS Exchange\\Partner Servers"),
        ("nt authority\\authenticated users", "NT AUTHORITY\\Authenticated Users"),
    ],
)
def test_principals_are_normalised(user: str, canonical: str) -> None:
    text = config(
        permissions=f"  - {{Identity: 'EX01\\Default EX01', User: '{user}', "
        "ExtendedRights: ms-Exch-SMTP-Submit, Deny: true}"
    )
    permission = load(text).ad_permissions[0]
    assert permission.user == canonical
    assert permission.extended_rights == ("ms-Exch-SMTP-Submit",)
    assert permission.deny is True


# configs/*-hosts.yaml are hosts files (--hosts, config/hosts.py; tests/unit/config/test_hosts.py).
SHIPPED = sorted(p for p in [*ROOT.glob("configs/*.yaml"), *ROOT.glob("configs/examples/*.yaml")]
                 if not p.name.endswith("-hosts.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_loads(path: Path) -> None:
    lab = load_config(path)
    assert lab.source == str(path)
    first = lab.servers[0].name  # EX01, or PARTNER01 in configs/partner.yaml
    names = [c.name.replace(first, "EX01") for c in lab.connectors_of(first)]
    assert names[: len(MAILBOX_DEFAULTS)] == list(MAILBOX_DEFAULTS)


def test_the_shipped_configs_include_lab_yaml_and_both_examples() -> None:
    relative = {str(p.relative_to(ROOT)) for p in SHIPPED}
    assert {
        "configs/single-server.yaml",
        "configs/examples/most-specific-match.yaml",
        "configs/examples/relay-recipes.yaml",
    } <= relative


def test_lab_yaml_is_the_plain_lab() -> None:
    lab = load_config(ROOT / "configs" / "single-server.yaml")
    assert [c.name for c in lab.receive_connectors] == list(MAILBOX_DEFAULTS)
    assert lab.ad_permissions == ()
    assert lab.lab.internet_sink.address == "127.0.10.250"
    assert lab.lab.internet_sink.port == 25
    assert lab.server("EX01").address == "127.0.10.1"
    assert lab.server("EX01").fqdn == "ex01.contoso.com"
    assert lab.server("EX01").version == "15.2"
    assert lab.organization.default_domain == "contoso.com"
    assert {m.primary_smtp_address: m.password for m in lab.organization.mailboxes} == {
        "alice@contoso.com": "P@ssw0rd!",
        "bob@contoso.com": "P@ssw0rd!",
    }


def test_lab_yaml_runs_the_partner_organization_of_seed_001() -> None:
    lab = load_config(ROOT / "configs" / "single-server.yaml")
    (partner,) = lab.partners
    assert partner.source == str(ROOT / "configs" / "partner.yaml")
    server = partner.server("PARTNER01")
    assert (server.fqdn, server.address) == ("mail.partner.example", "127.0.10.60")
    assert server.exchsim_lab_certificate == ("mail.partner.example", "partner.example")
    assert lab.server("EX01").exchsim_lab_certificate == ("mail.contoso.com", "contoso.com")
    assert partner.organization.transport_config.tls_receive_domain_secure_list == (
        "contoso.com",)
    assert lab.organization.transport_config.tls_send_domain_secure_list == ("partner.example",)
    frontend = next(c for c in partner.connectors_of("PARTNER01")
                    if c.name == "Default Frontend PARTNER01")
    assert frontend.domain_secure_enabled
    assert [r.name_exchange for r in lab.dns.mx_of("partner.example")] == [
        "mail.partner.example"]
    endpoint = lab.dns.address_of("mail.partner.example")
    assert endpoint is not None and endpoint.address == "127.0.10.60"


def test_most_specific_match_example() -> None:
    lab = load_config(ROOT / "configs" / "examples" / "most-specific-match.yaml")
    custom = list(lab.receive_connectors[len(MAILBOX_DEFAULTS):])
    assert [(ranges(c), c.banner) for c in custom] == [
        (["127.0.20.0/24"], "220 Connector for 127.0.20.0/24"),
        (["127.0.20.75"], "220 Connector for 127.0.20.75"),
    ]
    for c in custom:
        assert c.transport_role is TransportRole.FRONTEND
        assert c.protocol_logging_level is ProtocolLoggingLevel.VERBOSE
        assert c.permission_groups == {PG.ANONYMOUS_USERS}
        assert [b.format() for b in c.bindings] == ["0.0.0.0:25"]


def test_relay_recipes_example() -> None:
    lab = load_config(ROOT / "configs" / "examples" / "relay-recipes.yaml")
    got = by_name(lab)
    assert got["SMTP Relay EX01"].auth_mechanism == {A.TLS, A.EXTERNAL_AUTHORITATIVE}
    assert ranges(got["SMTP Relay EX01"]) == ["127.0.21.75"]
    assert got["Anonymous Relay EX01"].banner == "220 relay ready"
    assert [p.identity for p in lab.ad_permissions] == ["EX01\\Anonymous Relay EX01"]


# --- defaults per server role (exchange.md §3.3) --------------------------------------------------


def test_mailbox_server_defaults() -> None:
    got = by_name(load(config()))
    assert list(got) == list(MAILBOX_DEFAULTS)
    frontend = got["Default Frontend EX01"]
    assert frontend.transport_role is TransportRole.FRONTEND
    assert [b.format() for b in frontend.bindings] == ["0.0.0.0:25", "[::]:25"]
    assert frontend.auth_mechanism == {
        A.TLS, A.INTEGRATED, A.BASIC_AUTH, A.BASIC_AUTH_REQUIRE_TLS, A.EXCHANGE_SERVER
    }
    assert frontend.permission_groups == {
        PG.ANONYMOUS_USERS, PG.EXCHANGE_SERVERS, PG.EXCHANGE_LEGACY_SERVERS
    }
    assert frontend.protocol_logging_level is ProtocolLoggingLevel.VERBOSE
    assert frontend.domain_secure_enabled is True
    assert frontend.max_recipients_per_message == 200
    assert (frontend.max_hop_count, frontend.max_local_hop_count) == (60, 5)
    assert frontend.max_message_size == 36 * MB

    assert [b.port for b in got["Outbound Proxy Frontend EX01"].bindings] == [717, 717]
    assert got["Outbound Proxy Frontend EX01"].permission_groups == {PG.EXCHANGE_SERVERS}

    client = got["Client Frontend EX01"]
    assert [b.port for b in client.bindings] == [587, 587]
    assert client.fqdn == "ex01.contoso.com"
    assert client.enable_auth_gssapi is True
    assert client.message_rate_limit == 5
    assert client.message_rate_source is MessageRateSource.USER
    assert A.EXCHANGE_SERVER not in client.auth_mechanism

    hub = got["Default EX01"]
    assert hub.transport_role is TransportRole.HUB
    assert [b.port for b in hub.bindings] == [2525, 2525]
    assert hub.max_recipients_per_message == 5000
    assert hub.max_inbound_connection_per_source is None
    assert hub.max_inbound_connection_percentage_per_source == 100
    assert hub.size_enabled is SizeEnabled.ENABLED_WITHOUT_VALUE
    assert hub.protocol_logging_level is ProtocolLoggingLevel.NONE

    proxy = got["Client Proxy EX01"]
    assert [b.port for b in proxy.bindings] == [465, 465]
    assert proxy.permission_groups == {PG.EXCHANGE_USERS, PG.EXCHANGE_SERVERS}

    delivery = got["Mailbox Delivery EX01"]
    assert delivery.transport_role is TransportRole.MAILBOX_DELIVERY
    assert [b.port for b in delivery.bindings] == [475, 475]
    assert delivery.auth_mechanism == {A.EXCHANGE_SERVER}


def test_edge_server_defaults() -> None:
    lab = load(config(servers=EDGE))
    edge = lab.connectors_of("EDGE01")
    assert [c.name for c in edge] == ["Default internal receive connector EDGE01"]
    c = edge[0]
    assert c.transport_role is TransportRole.EDGE
    assert [b.format() for b in c.bindings] == ["0.0.0.0:25"]
    assert c.auth_mechanism == {A.TLS, A.EXCHANGE_SERVER}
    assert c.permission_groups == {PG.ANONYMOUS_USERS, PG.EXCHANGE_SERVERS, PG.PARTNERS}
    assert c.connection_timeout == datetime.timedelta(minutes=5)
    assert c.connection_inactivity_timeout == datetime.timedelta(minutes=1)
    assert c.message_rate_limit == 600
    # Connectors keep the per-server order of the Servers list.
    assert [c.server for c in lab.receive_connectors] == ["EX01"] * 6 + ["EDGE01"]


# --- overrides and new connectors ---------------------------------------------------------------


def test_an_override_disables_default_frontend() -> None:
    lab = load(config("  - {Name: Default Frontend EX01, Server: EX01, Enabled: false}"))
    assert [c.name for c in lab.receive_connectors] == list(MAILBOX_DEFAULTS)
    frontend = by_name(lab)["Default Frontend EX01"]
    assert frontend.enabled is False
    # Everything else stays as setup made it.
    assert frontend.protocol_logging_level is ProtocolLoggingLevel.VERBOSE
    assert [b.format() for b in frontend.bindings] == ["0.0.0.0:25", "[::]:25"]
    assert frontend.max_hop_count == 60


def test_overrides_match_case_insensitively_and_keep_exchange_spelling() -> None:
    lab = load(config("  - {Name: default ex01, Server: ex01, ProtocolLoggingLevel: verbose}"))
    assert [c.name for c in lab.receive_connectors] == list(MAILBOX_DEFAULTS)
    hub = by_name(lab)["Default EX01"]
    assert hub.server == "EX01"
    assert hub.protocol_logging_level is ProtocolLoggingLevel.VERBOSE
    assert hub.max_recipients_per_message == 5000


def test_new_connector_on_a_mailbox_server_defaults_to_hub_transport_and_usage_defaults() -> None:
    lab = load(config("""
  - {Name: Internal EX01, Server: ex01, Usage: Internal, Bindings: ["0.0.0.0:2526"]}
  - {Name: Plain EX01, Server: EX01, Bindings: ["127.0.10.1:2527"]}
"""))
    got = by_name(lab)
    internal, plain = got["Internal EX01"], got["Plain EX01"]
    assert internal.server == "EX01"
    assert internal.transport_role is TransportRole.HUB
    assert internal.permission_groups == {PG.EXCHANGE_SERVERS, PG.EXCHANGE_LEGACY_SERVERS}
    assert internal.auth_mechanism == {A.TLS, A.EXCHANGE_SERVER}
    assert internal.size_enabled is SizeEnabled.ENABLED_WITHOUT_VALUE
    assert plain.transport_role is TransportRole.HUB
    assert plain.permission_groups == {
        PG.EXCHANGE_USERS, PG.EXCHANGE_SERVERS, PG.EXCHANGE_LEGACY_SERVERS
    }
    assert A.BASIC_AUTH_REQUIRE_TLS in plain.auth_mechanism


def test_new_connector_on_an_edge_server() -> None:
    lab = load(config("""
  - {Name: Inbound EDGE01, Server: EDGE01, Bindings: ["0.0.0.0:2526"]}
  - {Name: Internal EDGE01, Server: EDGE01, Usage: Internal, Bindings: ["0.0.0.0:2527"]}
""", servers=EDGE))
    got = by_name(lab)
    inbound = got["Inbound EDGE01"]
    assert inbound.transport_role is TransportRole.EDGE
    assert inbound.permission_groups == {PG.ANONYMOUS_USERS, PG.EXCHANGE_SERVERS, PG.PARTNERS}
    assert inbound.auth_mechanism == {A.TLS, A.EXCHANGE_SERVER}
    assert got["Internal EDGE01"].permission_groups == {PG.EXCHANGE_SERVERS}


def test_yaml_11_traps_are_avoided() -> None:
    # 10:00:00 would be the base-60 number 36000 in YAML 1.1; Version 15.2 a float.
    text = config("""
  - {Name: Default EX01, Server: EX01, ConnectionTimeout: 10:00:00}
""", servers="""
Servers:
  - {Name: EX01, Role: Mailbox, Fqdn: ex01.contoso.com, Address: 127.0.10.1, Version: 15.0}
""")
    lab = load(text)
    assert by_name(lab)["Default EX01"].connection_timeout == datetime.timedelta(hours=10)
    assert lab.server("EX01").version == "15.0"


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(EXAMPLE, encoding="utf-8")
    assert load_config(str(path)).source == str(path)
    assert len(load_config(path).receive_connectors) == 8


def test_extended_rights_match_the_permission_table() -> None:
    from exchsim.policy.permissions import Right

    assert set(EXTENDED_RIGHTS) == {right.value for right in Right}
    assert len(EXTENDED_RIGHTS) == 19


# --- exchange.md §3.4 rules, one connector at a time ----------------------------------------------

R = "ReceiveConnectors[0] (R)"
NEW = '  - {Name: R, Server: EX01, Bindings: ["0.0.0.0:2600"], '


@pytest.mark.parametrize(
    "fields, key, value, words",
    [
        pytest.param("AuthMechanism: [None, Tls]}", "AuthMechanism", ["None", "Tls"],
                     "None must be alone", id="none-alone"),
        pytest.param("AuthMechanism: [Tls, BasicAuthRequireTLS]}", "AuthMechanism",
                     ["Tls", "BasicAuthRequireTLS"], "BasicAuthRequireTLS requires BasicAuth",
                     id="basic-require-tls"),
        pytest.param("AuthMechanism: [BasicAuth, BasicAuthRequireTLS]}", "AuthMechanism",
                     ["BasicAuth", "BasicAuthRequireTLS"], "requires BasicAuth and Tls",
                     id="basic-require-tls-without-tls"),
        pytest.param("AuthMechanism: [Integrated], RequireTLS: true}", "RequireTLS", True,
                     "RequireTLS requires Tls", id="require-tls"),
        pytest.param("AuthMechanism: [Tls, Integrated, ExternalAuthoritative], "
                     "PermissionGroups: [ExchangeServers]}", "AuthMechanism",
                     ["Tls", "Integrated", "ExternalAuthoritative"],
                     "ExternalAuthoritative may only be combined with Tls", id="extauth-alone"),
        pytest.param("AuthMechanism: [Tls, ExternalAuthoritative], "
                     "PermissionGroups: [AnonymousUsers]}", "PermissionGroups",
                     ["AnonymousUsers"], "must include ExchangeServers", id="extauth-pg"),
        pytest.param("AuthMechanism: [Integrated], DomainSecureEnabled: true}",
                     "DomainSecureEnabled", True, "DomainSecureEnabled requires Tls",
                     id="domain-secure-tls"),
        pytest.param("AuthMechanism: [Tls, ExternalAuthoritative], PermissionGroups: "
                     "[ExchangeServers], DomainSecureEnabled: true}", "DomainSecureEnabled",
                     True, "DomainSecureEnabled forbids ExternalAuthoritative",
                     id="domain-secure-extauth"),
        pytest.param('AuthMechanism: [Tls, ExchangeServer], Fqdn: "mail_relay contoso"}', "Fqdn",
                     "mail_relay contoso", "ExchangeServer authentication requires a valid FQDN",
                     id="exchange-server-fqdn"),
        pytest.param('ConnectionTimeout: "00:05:00", ConnectionInactivityTimeout: "00:05:00"}',
                     "ConnectionInactivityTimeout", "00:05:00",
                     "must be less than ConnectionTimeout", id="inactivity"),
        pytest.param("ChunkingEnabled: false}", "BinaryMimeEnabled", None,
                     "BinaryMimeEnabled requires ChunkingEnabled", id="binary-mime"),
        pytest.param("PermissionGroups: [AnonymousUsers, Custom]}", "PermissionGroups",
                     ["AnonymousUsers", "Custom"], "Custom permission group cannot be set",
                     id="custom-pg"),
        pytest.param('Banner: "250 hello"}', "Banner", "250 hello", "must start with 220",
                     id="banner"),
        pytest.param("MaxMessageSize: 1KB}", "MaxMessageSize", "1KB",
                     "MaxMessageSize must be", id="size-low"),
        pytest.param("MaxMessageSize: 3GB}", "MaxMessageSize", "3GB",
                     "MaxMessageSize must be", id="size-high"),
        pytest.param("TransportRole: EdgeTransport}", "TransportRole", "EdgeTransport",
                     "not allowed on Mailbox server EX01", id="edge-role-on-mailbox"),
    ],
)
def test_connector_rule(fields: str, key: str, value: object, words: str) -> None:
    issue = one_issue(config(NEW + fields))
    assert issue.file == "bad.yaml"
    assert issue.key_path == f"{R}.{key}"
    assert issue.value == value
    assert words in issue.message
    assert "exchange.md §3." in issue.message or "not allowed" in issue.message
    assert str(issue).startswith(f"bad.yaml: {R}.{key}: ")
    # The message shows the value as the file wrote it.
    if isinstance(value, list):
        assert ", ".join(value) + " is not allowed" in issue.message
    elif isinstance(value, bool):
        assert f"{key} {str(value).lower()} is not allowed" in issue.message
    elif value is not None:
        assert f"'{value}'" in issue.message


def test_name_with_a_backslash() -> None:
    issue = one_issue(config('  - {Name: "A\\\\B", Server: EX01, Bindings: ["0.0.0.0:2600"]}'))
    assert issue.key_path == "ReceiveConnectors[0] (A\\B).Name"
    assert issue.value == "A\\B"
    assert "backslash" in issue.message


def test_names_are_unique_per_server_case_insensitively() -> None:
    issue = one_issue(config("""
  - {Name: Relay, Server: EX01, Bindings: ["0.0.0.0:2600"]}
  - {Name: RELAY, Server: EX01, Bindings: ["0.0.0.0:2601"]}
"""))
    assert issue.key_path == "ReceiveConnectors[1] (RELAY).Name"
    assert issue.value == "RELAY"
    assert "ReceiveConnectors[0]" in issue.message and "unique per server" in issue.message


def test_two_overrides_of_one_default_are_a_duplicate() -> None:
    issue = one_issue(config("""
  - {Name: Default EX01, Server: EX01, Enabled: false}
  - {Name: default ex01, Server: EX01, Enabled: true}
"""))
    assert issue.key_path == "ReceiveConnectors[1] (default ex01).Name"


def test_bindings_are_required() -> None:
    issue = one_issue(config("  - {Name: R, Server: EX01, RemoteIPRanges: [127.0.30.1]}"))
    assert issue.key_path == f"{R}.Bindings"
    assert "Bindings is required" in issue.message


def test_a_specific_binding_must_be_the_servers_address() -> None:
    issue = one_issue(config(
        '  - {Name: R, Server: EX01, Bindings: ["0.0.0.0:2600", "127.0.10.2:2600"]}'
    ))
    assert issue.key_path == f"{R}.Bindings[1]"
    assert issue.value == "127.0.10.2:2600"
    assert (
        "must be a local IP address of server EX01 (127.0.10.1) or 0.0.0.0 / [::]"
        in issue.message
    )
    # The server's own address is fine.
    load(config('  - {Name: R, Server: EX01, Bindings: ["127.0.10.1:2600"]}'))


def test_server_must_exist_with_did_you_mean() -> None:
    issue = one_issue(config('  - {Name: R, Server: EX1, Bindings: ["0.0.0.0:2600"]}'))
    assert issue.key_path == f"{R}.Server"
    assert issue.value == "EX1"
    assert issue.suggestion == "EX01"
    assert "expected one of EX01" in issue.message
    assert str(issue).endswith("did you mean 'EX01'?")


def test_exchange_server_auth_needs_a_valid_server_fqdn() -> None:
    servers = """
Servers:
  - {Name: EX01, Role: Mailbox, Fqdn: "ex01 contoso", Address: 127.0.10.1}
"""
    issues = issues_of(config(NEW + "AuthMechanism: [Tls, ExchangeServer]}", servers=servers))
    assert [i.key_path for i in issues] == ["Servers[0] (EX01).Fqdn", f"{R}.AuthMechanism"]
    assert issues[0].value == "ex01 contoso"
    assert "ExchangeServer authentication requires a valid FQDN" in issues[1].message


@pytest.mark.parametrize(
    "fields, key, words",
    [
        ("TransportRole: EdgeTransport", "TransportRole", "have no TransportRole"),
        ("PermissionGroups: [ExchangeLegacyServers]", "PermissionGroups",
         "no ExchangeLegacyServers permission group on Edge"),
        ("LongAddressesEnabled: true", "LongAddressesEnabled", "Edge server EDGE01"),
        ("SuppressXAnonymousTls: true", "SuppressXAnonymousTls", "Edge server EDGE01"),
        ("Usage: Client", "Usage", "Mailbox servers only"),
    ],
)
def test_edge_rules(fields: str, key: str, words: str) -> None:
    entry = f'  - {{Name: R, Server: EDGE01, Bindings: ["0.0.0.0:2600"], {fields}}}'
    issue = one_issue(config(entry, servers=EDGE))
    assert issue.key_path == f"{R}.{key}"
    assert words in issue.message
    assert str(issue).startswith(f"bad.yaml: {R}.{key}: ")
    assert issue.value == yaml.safe_load("{" + fields + "}")[key]


def test_override_cannot_change_transport_role_or_usage() -> None:
    issues = issues_of(config(
        "  - {Name: Default EX01, Server: EX01, TransportRole: FrontendTransport, Usage: Custom}"
    ))
    assert [i.key_path for i in issues] == [
        "ReceiveConnectors[0] (Default EX01).Usage",
        "ReceiveConnectors[0] (Default EX01).TransportRole",
    ]


# --- exchange.md §3.4 binding / remote range conflicts --------------------------------------------


def conflict(a: str, b: str, c: str = "") -> tuple[Issue, ...]:
    return issues_of(config(a + "\n" + b + ("\n" + c if c else "")))


FE = "TransportRole: FrontendTransport"


def test_identical_range_on_the_same_binding() -> None:
    issues = conflict(
        f'  - {{Name: A, Server: EX01, {FE}, Bindings: ["0.0.0.0:25"], '
        "RemoteIPRanges: [127.0.30.0/24]}",
        f'  - {{Name: B, Server: EX01, {FE}, Bindings: ["0.0.0.0:25"], '
        "RemoteIPRanges: [127.0.31.1, 127.0.30.0-127.0.30.255]}",
    )
    assert len(issues) == 1
    issue = issues[0]
    assert issue.key_path == "ReceiveConnectors[1] (B).RemoteIPRanges[1]"
    assert "EX01\\A" in issue.message and "EX01\\B" in issue.message
    assert "binding 0.0.0.0:25" in issue.message
    assert "same range on the same binding" in issue.message
    assert issue.message.count("127.0.30.") >= 2


def test_partial_overlap_on_the_same_binding() -> None:
    issue = one_issue(config(
        f'  - {{Name: A, Server: EX01, {FE}, Bindings: ["0.0.0.0:25"], '
        "RemoteIPRanges: [127.0.30.0-127.0.30.100]}\n"
        f'  - {{Name: B, Server: EX01, {FE}, Bindings: ["0.0.0.0:25"], '
        "RemoteIPRanges: [127.0.30.50-127.0.30.200]}"
    ))
    assert issue.key_path == "ReceiveConnectors[1] (B).RemoteIPRanges[0]"
    assert "partially overlap" in issue.message
    assert "EX01\\A" in issue.message and "EX01\\B" in issue.message


def test_wildcard_versus_specific_binding() -> None:
    a = (f'  - {{Name: A, Server: EX01, {FE}, Bindings: ["0.0.0.0:25"], '
         "RemoteIPRanges: [127.0.30.0/24]}")
    # Identical range: allowed (the exact binding wins at runtime, exchange.md §3.5).
    load(config(a + "\n" + f'  - {{Name: B, Server: EX01, {FE}, Bindings: ["127.0.10.1:25"], '
                "RemoteIPRanges: [127.0.30.0/24]}"))
    # Partial overlap: not allowed.
    issue = one_issue(config(
        a + "\n" + f'  - {{Name: B, Server: EX01, {FE}, Bindings: ["127.0.10.1:25"], '
        "RemoteIPRanges: [127.0.30.128-127.0.31.10]}"
    ))
    assert issue.key_path == "ReceiveConnectors[1] (B).RemoteIPRanges[0]"
    assert "bindings 127.0.10.1:25 and 0.0.0.0:25" in issue.message


def test_a_catch_all_front_end_connector_conflicts_with_default_frontend() -> None:
    issues = issues_of(config(f'  - {{Name: A, Server: EX01, {FE}, Bindings: ["0.0.0.0:25"]}}'))
    assert [i.key_path for i in issues] == ["ReceiveConnectors[0] (A).RemoteIPRanges[0]"]
    assert "EX01\\Default Frontend EX01" in issues[0].message
    assert "0.0.0.0-255.255.255.255" in issues[0].message


def test_the_same_ranges_do_not_conflict_when_allowed() -> None:
    same = 'Bindings: ["0.0.0.0:25"], RemoteIPRanges: [127.0.30.0/24]'
    # Nested ranges.
    load(config(
        f"  - {{Name: A, Server: EX01, {FE}, {same}}}\n"
        f'  - {{Name: B, Server: EX01, {FE}, Bindings: ["0.0.0.0:25"], '
        "RemoteIPRanges: [127.0.30.7]}"
    ))
    # A disabled connector, another TransportRole, another port, another family.
    load(config(
        f"  - {{Name: A, Server: EX01, {FE}, {same}}}\n"
        f"  - {{Name: B, Server: EX01, {FE}, Enabled: false, {same}}}\n"
        f"  - {{Name: C, Server: EX01, TransportRole: HubTransport, {same}}}\n"
        f'  - {{Name: D, Server: EX01, {FE}, Bindings: ["0.0.0.0:26"], '
        "RemoteIPRanges: [127.0.30.0/24]}\n"
        f'  - {{Name: E, Server: EX01, {FE}, Bindings: ["[::]:26"], RemoteIPRanges: ["::/0"]}}'
    ))
    # Turning Default Frontend off frees its ranges.
    load(config(
        "  - {Name: Default Frontend EX01, Server: EX01, Enabled: false}\n"
        f'  - {{Name: A, Server: EX01, {FE}, Bindings: ["0.0.0.0:25"]}}'
    ))


# --- servers, organization, ADPermissions, Lab --------------------------------------------------


def test_server_rules() -> None:
    issues = issues_of(config(servers="""
Servers:
  - {Name: EX01, Role: Mailbox, Fqdn: ex01.contoso.com, Address: 127.0.10.1}
  - {Name: ex01, Role: Mailbox, Fqdn: ex02.contoso.com, Address: 127.0.10.2}
  - {Name: EX03, Role: Mailbox, Fqdn: ex03.contoso.com, Address: 127.0.10.1}
  - {Name: EX04, Role: Mailbox, Fqdn: ex04.contoso.com, Address: 127.0.10.300}
"""))
    assert [(i.key_path, i.value) for i in issues] == [
        ("Servers[1] (ex01).Name", "ex01"),
        ("Servers[2] (EX03).Address", "127.0.10.1"),
        ("Servers[3] (EX04).Address", "127.0.10.300"),
    ]
    assert "unique" in issues[0].message
    assert "Servers[0]" in issues[1].message
    assert "expected an IP address" in issues[2].message


def test_server_entry_errors_from_the_model() -> None:
    issues = issues_of(config(servers="""
Servers:
  - {Name: EX_01, Role: Mailbx, Fqdn: ex01.contoso.com, Address: 127.0.10.1}
"""))
    got = {i.key_path: i for i in issues}
    assert set(got) == {
        "Servers[0] (EX_01).Name",
        "Servers[0] (EX_01).Role",
        # The mailbox names EX01, which is not a (valid) server.
        "Organization.Mailboxes[0] (alice@contoso.com).Server",
    }
    assert "letters, digits and hyphens" in got["Servers[0] (EX_01).Name"].message
    assert got["Servers[0] (EX_01).Role"].suggestion == "Mailbox"


def test_accepted_domain_rules() -> None:
    org = """
Organization:
  Name: Contoso
  AcceptedDomains:
    - {DomainName: contoso.com, Default: true}
    - {DomainName: "*.contoso.com", DomainType: InternalRelay}
    - {DomainName: "bad..example", DomainType: ExternalRelay}
    - {DomainName: fabrikam.com, Default: true}
"""
    issues = issues_of(config(org=org))
    assert [(i.key_path, i.value) for i in issues] == [
        ("Organization.AcceptedDomains[2] (bad..example).DomainName", "bad..example"),
        ("Organization.AcceptedDomains[3] (fabrikam.com).Default", True),
    ]
    assert "exactly one accepted domain is the default" in issues[1].message


def test_without_a_default_domain_the_first_is_the_default() -> None:
    org = """
Organization:
  Name: Contoso
  AcceptedDomains:
    - {DomainName: contoso.com}
    - {DomainName: fabrikam.com}
"""
    assert load(config(org=org)).organization.default_domain == "contoso.com"


def test_mailbox_rules() -> None:
    org = """
Organization:
  Name: Contoso
  AcceptedDomains:
    - {DomainName: contoso.com, Default: true}
    - {DomainName: "*.sub.contoso.com"}
    - {DomainName: relay.contoso.com, DomainType: InternalRelay}
  Mailboxes:
    - {PrimarySmtpAddress: alice@contoso.com, Server: EX01,
       EmailAddresses: ["smtp:a@x.sub.contoso.com"]}
    - {PrimarySmtpAddress: bob@relay.contoso.com, Server: EX01}
    - {PrimarySmtpAddress: carol@contoso.com, Server: EX1}
    - {PrimarySmtpAddress: Alice@contoso.com, Server: EX01}
"""
    issues = issues_of(config(org=org))
    assert [(i.key_path, i.value) for i in issues] == [
        ("Organization.Mailboxes[1] (bob@relay.contoso.com).PrimarySmtpAddress",
         "bob@relay.contoso.com"),
        ("Organization.Mailboxes[2] (carol@contoso.com).Server", "EX1"),
        ("Organization.Mailboxes[3] (Alice@contoso.com).PrimarySmtpAddress", "Alice@contoso.com"),
    ]
    assert "Authoritative accepted domain" in issues[0].message
    assert issues[1].suggestion == "EX01"
    assert "Organization.Mailboxes[0]" in issues[2].message


def test_adpermission_identity_right_and_user_with_did_you_mean() -> None:
    permissions = r"""
  - {Identity: "EX01\\Anonymous Relay", User: "NT AUTHORITY\\ANONYMOUS LOGON",
     ExtendedRights: [ms-Exch-SMTP-Accept-Any-Recipient]}
  - {Identity: "EX01\\Anonymous Relay EX01", User: "NT AUTHORITY\\ANONYMOUS LOGIN",
     ExtendedRights: [ms-Exch-SMTP-Accept-Any-Recipent, ms-Exch-SMTP-Submit]}
  - {Identity: "EX01\\Anonymous Relay EX01", User: "FABRIKAM\\mallory",
     ExtendedRights: [ms-Exch-SMTP-Submit]}
"""
    text = EXAMPLE.split("ADPermissions:")[0] + "ADPermissions:" + permissions
    issues = issues_of(text)
    assert [(i.key_path, i.value, i.suggestion) for i in issues] == [
        ("ADPermissions[0] (EX01\\Anonymous Relay).Identity", "EX01\\Anonymous Relay",
         "EX01\\Anonymous Relay EX01"),
        ("ADPermissions[1] (EX01\\Anonymous Relay EX01).User", "NT AUTHORITY\\ANONYMOUS LOGIN",
         "NT AUTHORITY\\ANONYMOUS LOGON"),
        ("ADPermissions[1] (EX01\\Anonymous Relay EX01).ExtendedRights[0]",
         "ms-Exch-SMTP-Accept-Any-Recipent", "ms-Exch-SMTP-Accept-Any-Recipient"),
        ("ADPermissions[2] (EX01\\Anonymous Relay EX01).User", "FABRIKAM\\mallory", None),
    ]
    assert "SERVER\\Connector Name" in issues[0].message
    assert "CONTOSO\\Exchange Servers" in issues[3].message
    assert str(issues[0]).endswith("did you mean 'EX01\\Anonymous Relay EX01'?")


def test_lab_settings() -> None:
    lab = load(config() + "Lab: {InternetSink: {Address: 127.0.10.251, Port: 2500}, "
               "RetryInterval: '00:00:30'}\n")
    assert lab.lab.internet_sink.address == "127.0.10.251"
    assert lab.lab.retry_interval == datetime.timedelta(seconds=30)
    issue = one_issue(config() + "Lab: {InternetSink: {Address: 127.0.10.1}}\n")
    assert issue.key_path == "Lab.InternetSink.Address"
    assert "Servers[0] (EX01)" in issue.message
    issue = one_issue(config() + "Lab: {InternetSink: {Adress: 127.0.10.9}}\n")
    assert issue.key_path == "Lab.InternetSink.Adress"
    assert issue.suggestion == "Address"


def test_message_expiration_timeout() -> None:
    assert load(config()).lab.message_expiration_timeout == datetime.timedelta(days=2)
    lab = load(config() + "Lab: {MessageExpirationTimeout: '1.00:00:00'}\n")
    assert lab.lab.message_expiration_timeout == datetime.timedelta(days=1)
    issue = one_issue(config() + "Lab: {MessageExpirationTimeout: '00:00:01'}\n")
    assert issue.key_path == "Lab.MessageExpirationTimeout"


def test_crl_server_and_retrieval_timeout() -> None:
    lab = load(config())
    assert (lab.lab.crl_server.address, lab.lab.crl_server.port) == ("127.0.10.251", 80)
    assert lab.lab.crl_retrieval_timeout == datetime.timedelta(seconds=10)
    lab = load(config() + "Lab: {CrlServer: {Address: '::1', Port: 8080}, "
               "CrlRetrievalTimeout: '00:00:03'}\n")
    assert (lab.lab.crl_server.address, lab.lab.crl_server.port) == ("::1", 8080)
    assert lab.lab.crl_retrieval_timeout == datetime.timedelta(seconds=3)
    issue = one_issue(config() + "Lab: {CrlServer: {Address: 192.0.2.1}}\n")
    assert issue.key_path == "Lab.CrlServer.Address"
    assert "loopback only" in issue.message
    issue = one_issue(config() + "Lab: {CrlServer: {Address: 127.0.10.1}}\n")
    assert issue.key_path == "Lab.CrlServer.Address"
    assert "Servers[0] (EX01)" in issue.message
    issue = one_issue(config() + "Lab: {InternetSink: {Address: 127.0.10.250, Port: 80}, "
                      "CrlServer: {Address: 127.0.10.250}}\n")
    assert issue.key_path == "Lab.CrlServer.Port"
    assert "the internet sink listens on 127.0.10.250:80" in issue.message
    issue = one_issue(config() + "Lab: {CrlServer: {Port: 0}}\n")
    assert issue.key_path == "Lab.CrlServer.Port"
    issue = one_issue(config() + "Lab: {CrlRetrievalTimeout: '00:10:00'}\n")
    assert issue.key_path == "Lab.CrlRetrievalTimeout"


# --- many mistakes at once, did you mean, file-level problems -----------------------------------


def test_three_mistakes_give_exactly_three_issues() -> None:
    text = config("""
  - {Name: Relay, Server: EX01, TransportRole: FrontendTransport, Bindings: ["0.0.0.0:2600"],
     RemoteIpRange: ["127.0.0.1"], AuthMechanism: [Tls, BasicAuth]}
  - {Name: Other, Server: EX02, Bindings: ["0.0.0.0:2601"]}
  - {Name: Sized, Server: EX01, Bindings: ["0.0.0.0:2602"], MaxMessageSize: 12 parsecs}
""")
    issues = issues_of(text, "configs/bad.yaml")
    assert [(i.key_path, i.value) for i in issues] == [
        ("ReceiveConnectors[0] (Relay).RemoteIpRange", "RemoteIpRange"),
        ("ReceiveConnectors[1] (Other).Server", "EX02"),
        ("ReceiveConnectors[2] (Sized).MaxMessageSize", "12 parsecs"),
    ]
    assert all(i.file == "configs/bad.yaml" for i in issues)
    assert issues[0].suggestion == "RemoteIPRanges"
    assert issues[1].suggestion == "EX01"
    lines = str(ConfigError(issues)).splitlines()
    assert len(lines) == 3
    assert lines[0] == (
        "configs/bad.yaml: ReceiveConnectors[0] (Relay).RemoteIpRange: unknown key "
        "'RemoteIpRange' of a ReceiveConnector; did you mean 'RemoteIPRanges'?"
    )
    assert "'12 parsecs' is not allowed" in lines[2]


def test_problems_in_every_section_are_reported_together() -> None:
    text = r"""
Organization:
  Name: Contoso
  AcceptedDomains:
    - {DomainName: contoso.com, DomainType: Authoritative, Default: yes, Colour: blue}
Servers:
  - {Name: EX01, Role: Mailbox, Fqdn: ex01.contoso.com, Address: 127.0.10.1}
ReceiveConnectors:
  - {Name: R, Server: EX01, Bindings: ["0.0.0.0:2600"], Banner: "hello"}
ADPermissions:
  - {Identity: "EX01\\R", User: "NT AUTHORITY\\ANONYMOUS LOGON", ExtendedRights: [ms-Exch-Foo]}
Lab: {InternetSink: {Port: 0}}
Extra: 1
"""
    paths = [i.key_path for i in issues_of(text)]
    assert paths == [
        "Extra",
        "Organization.AcceptedDomains[0] (contoso.com).Colour",
        "ReceiveConnectors[0] (R).Banner",
        "ADPermissions[0] (EX01\\R).ExtendedRights[0]",
        "Lab.InternetSink.Port",
    ]


def test_did_you_mean_for_a_misspelt_key() -> None:
    issue = one_issue(config(
        '  - {Name: R, Server: EX01, Bindings: ["0.0.0.0:2600"], RemoteIpRange: [127.0.0.1]}'
    ))
    assert issue.key_path == f"{R}.RemoteIpRange"
    assert issue.suggestion == "RemoteIPRanges"


def test_did_you_mean_for_an_enum_value() -> None:
    issue = one_issue(config(
        '  - {Name: Relay EX01, Server: EX01, Bindings: ["0.0.0.0:2600"], AuthMechanism: [Tsl]}'
    ))
    assert str(issue) == (
        "bad.yaml: ReceiveConnectors[0] (Relay EX01).AuthMechanism: 'Tsl' is not allowed: "
        "expected one of None, Tls, Integrated, BasicAuth, BasicAuthRequireTLS, ExchangeServer, "
        "ExternalAuthoritative; did you mean 'Tls'?"
    )
    issue = one_issue(config(
        '  - {Name: R, Server: EX01, Bindings: ["0.0.0.0:2600"], ProtocolLoggingLevel: Verbos}'
    ))
    assert issue.key_path == f"{R}.ProtocolLoggingLevel"
    assert issue.suggestion == "Verbose"


def test_unknown_top_level_key_with_did_you_mean() -> None:
    issue = one_issue(config() + "ReceiveConnector: []\n")
    assert issue.key_path == "ReceiveConnector"
    assert issue.suggestion == "ReceiveConnectors"


def test_missing_sections_and_keys() -> None:
    issues = issues_of("Organization: {Name: Contoso}\n")
    assert [(i.key_path, i.message) for i in issues] == [
        ("Organization.AcceptedDomains", "required key is missing"),
        ("Servers", "required section Servers is missing"),
    ]


def test_bad_values_are_reported_with_their_list_index() -> None:
    issue = one_issue(config(
        '  - {Name: R, Server: EX01, Bindings: ["0.0.0.0:2600"], '
        "RemoteIPRanges: [127.0.30.1, 127.0.30.0/24, 127.0.30.999]}"
    ))
    assert issue.key_path == f"{R}.RemoteIPRanges[2]"
    assert issue.value == "127.0.30.999"


def test_yaml_syntax_error_names_line_and_column() -> None:
    issue = one_issue("Organization:\n  Name: Contoso\n Servers: [\n")
    assert issue.file == "bad.yaml"
    assert "YAML syntax error at line 3, column" in issue.message


def test_duplicate_keys_are_reported() -> None:
    text = config("  - {Name: R, Server: EX01, Bindings: ['0.0.0.0:2600'], Enabled: true, "
                  "Enabled: false}")
    issue = one_issue(text)
    assert issue.value == "Enabled"
    assert "duplicate key 'Enabled' at line" in issue.message


@pytest.mark.parametrize("text, words", [
    ("", "the file is empty"),
    ("- a\n- b\n", "expected a mapping with the keys Organization, Servers"),
    ("just text\n", "expected a mapping"),
])
def test_a_file_that_is_not_a_mapping(text: str, words: str) -> None:
    assert words in one_issue(text).message


def test_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    (issue,) = info.value.issues
    assert issue.file == str(missing)
    assert "file not found" in str(issue)


def test_issue_text() -> None:
    issue = Issue("f.yaml", "A.B", 1, "1 is not allowed: expected 2")
    assert str(issue) == "f.yaml: A.B: 1 is not allowed: expected 2"
    assert str(Issue("f.yaml", "", None, "oops", "X")) == "f.yaml: oops; did you mean 'X'?"


def test_rules_still_run_on_a_connector_with_a_bad_value() -> None:
    issues = issues_of(config(
        '  - {Name: R, Server: EX01, Bindings: ["0.0.0.0:2600", "127.0.10.9:2600"], '
        "AuthMechanism: [None, Tls], Enabled: maybe, ConnectionTimeout: soon, "
        'ConnectionInactivityTimeout: "00:20:00"}'
    ))
    assert [i.key_path for i in issues] == [
        f"{R}.Enabled",
        f"{R}.ConnectionTimeout",
        f"{R}.AuthMechanism",
        f"{R}.Bindings[1]",
    ]
    # ConnectionInactivityTimeout is not compared with a ConnectionTimeout the file did not
    # manage to give, nor the other way round.
    issue = one_issue(config(
        '  - {Name: R, Server: EX01, Bindings: ["0.0.0.0:2600"], '
        'ConnectionTimeout: "00:01:00", ConnectionInactivityTimeout: "25:00:00"}'
    ))
    assert issue.key_path == f"{R}.ConnectionInactivityTimeout"
    assert "hours must be 0 to 23" in issue.message


def test_nested_keys_are_named_with_their_section() -> None:
    text = config(permissions=r'  - {Identity: "EX01\\Default EX01", User: "CONTOSO\\alice"}',
                  org=ORG.replace("  Mailboxes:", "  TransportConfig: {MaxRecieveSize: 10MB}\n"
                                  "  Mailboxes:"))
    issues = issues_of(text)
    assert [(i.key_path, i.suggestion) for i in issues] == [
        ("Organization.TransportConfig.MaxRecieveSize", "MaxReceiveSize"),
        ("ADPermissions[0] (EX01\\Default EX01).ExtendedRights", None),
    ]
    assert issues[1].message == "required key is missing"


def _partner_lab(tmp_path: Path, partner: str, *, lab_text: str | None = None) -> str:
    """Issues of a lab config naming partner.yaml (both written to tmp_path), or ''."""
    (tmp_path / "partner.yaml").write_text(partner, encoding="utf-8")
    config = tmp_path / "lab.yaml"
    config.write_text(lab_text or (ROOT / "configs" / "single-server.yaml").read_text("utf-8"),
                      encoding="utf-8")
    try:
        load_config(config)
    except ConfigError as err:
        return str(err)
    return ""


PARTNER_YAML = (ROOT / "configs" / "partner.yaml").read_text("utf-8")


def test_a_partner_config_is_loaded_relative_to_the_lab_config(tmp_path: Path) -> None:
    assert _partner_lab(tmp_path, PARTNER_YAML) == ""
    missing = (ROOT / "configs" / "single-server.yaml").read_text("utf-8").replace(
        "Config: partner.yaml", "Config: partners/nothere.yaml")
    text = _partner_lab(tmp_path, PARTNER_YAML, lab_text=missing)
    assert "lab.yaml: Lab.Partners[0].Config: 'partners/nothere.yaml' is not allowed: no such " \
           "file" in text


def test_a_partner_configs_own_issues_name_its_file(tmp_path: Path) -> None:
    text = _partner_lab(tmp_path, PARTNER_YAML.replace("Version: \"15.2\"", "Version: \"14.3\""))
    assert f"{tmp_path / 'partner.yaml'}: Servers[0] (PARTNER01).Version" in text


def test_partner_servers_need_their_own_names_and_addresses(tmp_path: Path) -> None:
    text = _partner_lab(tmp_path, PARTNER_YAML.replace("Name: PARTNER01", "Name: EX01")
                        .replace("Server: PARTNER01", "Server: EX01")
                        .replace("127.0.10.60", "127.0.10.1"))
    assert "its server EX01 has the Name of a server of this file" in text
    assert "its server EX01 has the address 127.0.10.1 of EX01 of this file" in text


def test_a_partner_names_no_partners_of_its_own(tmp_path: Path) -> None:
    (tmp_path / "third.yaml").write_text(PARTNER_YAML.replace("PARTNER01", "THIRD01")
                                         .replace("127.0.10.60", "127.0.10.61"), "utf-8")
    nested = PARTNER_YAML + "Lab:\n  Partners: [{Config: third.yaml}]\n"
    text = _partner_lab(tmp_path, nested)
    assert "that config names partners of its own (Lab.Partners); a partner's config may " \
           "not" in text


def test_lab_certificate_names_are_host_names(tmp_path: Path) -> None:
    text = _partner_lab(tmp_path, PARTNER_YAML.replace(
        "ExchsimLabCertificate: [mail.partner.example, partner.example]",
        "ExchsimLabCertificate: [mail.partner.example, 'bad name']"))
    assert "Servers[0] (PARTNER01).ExchsimLabCertificate" in text
    assert "'bad name' is not allowed: expected host names" in text
