"""The organization as data: Exchange's objects and parameter names, typed and frozen.

Attribute names are snake_case; each field's alias is Exchange's own parameter name
(``remote_ip_ranges`` <- ``RemoteIPRanges``), which is what the YAML file uses.
Defaults come from ``docs/exchange.md``: §3.1 (receive connectors), §8.1 (accepted domains),
exchange.md §8.3 (transport config); the section is named next to each.

This module only describes values. Loading a file (``load.py``), merging connector overrides
onto the default connectors of a server (``resolve.py``) and the rules between objects
(``validate/``) live elsewhere.

A field's type says everything the rest of the package needs to know about one parameter:

* how it is parsed (a ``BeforeValidator``) and written back (a ``PlainSerializer``: ``exchsim
  check`` prints ``model_dump(mode="json")``, so sizes, limits, timespans and flags print the
  way Exchange prints them without a table elsewhere);
* ``Bounds(low, high)``: the range exchange.md §3.1 allows, checked once the object validated
  (so that an out-of-range value is reported beside the connector's other rules, in the value's
  own units);
* ``Shape(test, expected)``: a rule on the text of one value (a host name, an IP address, a
  domain name) checked once the object validated; the object stays usable by every rule that
  does not read that value.

Adding a connector parameter is one field here (plus its setup default in ``defaults.py``).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from functools import cached_property
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field

from exchsim.config.base import (  # re-exported: the model's building blocks
    MAX_INT32 as MAX_INT32,
    MB as MB,
    AuthMechanisms as AuthMechanisms,
    BindingValue as BindingValue,
    Bool as Bool,
    Bounds as Bounds,
    ByteLimit as ByteLimit,
    ByteSize as ByteSize,
    DomainCapabilitiesValue as DomainCapabilitiesValue,
    ExchangeObject as ExchangeObject,
    IPAddress as IPAddress,
    Limit as Limit,
    PermissionGroups as PermissionGroups,
    RemoteRange as RemoteRange,
    Role as Role,
    SecureDomain as SecureDomain,
    Shape as Shape,
    TimeSpan as TimeSpan,
    _bool_ps as _bool_ps,
    _enum_ci as _enum_ci,
    _enum_set_ci as _enum_set_ci,
    _ip_address as _ip_address,
    _split_list as _split_list,
    metadata_of as metadata_of,
    misshapen as misshapen,
    out_of_bounds as out_of_bounds,
    serializer_of as serializer_of,
)
from exchsim.config.capabilities import (
    RevocationOffline,
    client_certificate_name,
    one_or_list,
)
from exchsim.config.edgesync import EdgeSubscription
from exchsim.config.enums import (  # re-exported: Exchange's values are part of the model
    AuthMechanism as AuthMechanism,
    DomainType as DomainType,
    MessageRateSource as MessageRateSource,
    PermissionGroup as PermissionGroup,
    ProtocolLoggingLevel as ProtocolLoggingLevel,
    ServerRole as ServerRole,
    SizeEnabled as SizeEnabled,
    TransportRole as TransportRole,
    Usage as Usage,
)
from exchsim.config.proxy import ProxyProtocol
from exchsim.config.sendconnector import DnsMap, SendConnector
from exchsim.config.serviceaddr import SERVICE_KEYS, ServiceAddresses
from exchsim.config.syntax import (
    is_domain_name,
    is_host_name,
    is_ip_address,
    parse_ip_range,
    smtp_address,
)
from exchsim.config.versions import DEFAULT_VERSION, VersionValue
from exchsim.config.windows import DEFAULT_LM_COMPATIBILITY_LEVEL, DEFAULT_OS, WindowsServer
from exchsim.config.zones import TimeZoneName, zone_of

_CONNECTION_SPAN = Bounds(datetime.timedelta(seconds=1), datetime.timedelta(days=1))
_SECOND = datetime.timedelta(seconds=1)
_SERVER_FQDN = (
    "a host name like ex01.contoso.com (letters, digits, hyphens, dot-separated); "
    "ExchangeServer authentication and the banner use it (exchange.md §3.4)"
)
_DOMAIN_NAME = "a domain name like contoso.com or *.contoso.com (exchange.md §8.1)"

ALL_IPV4 = "0.0.0.0-255.255.255.255"
ALL_IPV6 = "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"


class ReceiveConnector(ExchangeObject):
    """A receive connector with every parameter exchsim models (exchange.md §3.1 defaults)."""

    name: str = Field(alias="Name", min_length=1, max_length=64)
    server: str = Field(alias="Server")
    transport_role: Role = Field(alias="TransportRole", default=TransportRole.HUB)
    usage: Annotated[Usage | None, _enum_ci(Usage)] = Field(alias="Usage", default=None)
    enabled: Bool = Field(alias="Enabled", default=True)
    bindings: tuple[BindingValue, ...] = Field(alias="Bindings", default=())
    remote_ip_ranges: tuple[RemoteRange, ...] = Field(
        alias="RemoteIPRanges",
        default_factory=lambda: (parse_ip_range(ALL_IPV4), parse_ip_range(ALL_IPV6)),
    )
    auth_mechanism: AuthMechanisms = Field(
        alias="AuthMechanism", default=frozenset({AuthMechanism.TLS})
    )
    permission_groups: PermissionGroups = Field(alias="PermissionGroups", default=frozenset())
    fqdn: str | None = Field(alias="Fqdn", default=None)
    banner: str | None = Field(alias="Banner", default=None)
    tls_certificate_name: str | None = Field(alias="TlsCertificateName", default=None)
    require_tls: Bool = Field(alias="RequireTLS", default=False)
    domain_secure_enabled: Bool = Field(alias="DomainSecureEnabled", default=False)
    enable_auth_gssapi: Bool = Field(alias="EnableAuthGSSAPI", default=False)
    suppress_x_anonymous_tls: Bool = Field(alias="SuppressXAnonymousTls", default=False)
    max_message_size: Annotated[ByteSize, Bounds(65536, MAX_INT32)] = Field(
        alias="MaxMessageSize", default=36 * MB
    )
    max_header_size: Annotated[ByteSize, Bounds(1, MAX_INT32)] = Field(
        alias="MaxHeaderSize", default=256 * 1024
    )
    max_recipients_per_message: int = Field(
        alias="MaxRecipientsPerMessage", default=200, ge=1, le=512000
    )
    max_hop_count: int = Field(alias="MaxHopCount", default=30, ge=1, le=500)
    max_local_hop_count: int = Field(alias="MaxLocalHopCount", default=8, ge=0, le=50)
    max_inbound_connection: Annotated[Limit, Bounds(1, MAX_INT32)] = Field(
        alias="MaxInboundConnection", default=5000
    )
    max_inbound_connection_per_source: Annotated[Limit, Bounds(1, 10000)] = Field(
        alias="MaxInboundConnectionPerSource", default=20
    )
    max_inbound_connection_percentage_per_source: int = Field(
        alias="MaxInboundConnectionPercentagePerSource", default=2, ge=1, le=100
    )
    max_protocol_errors: Annotated[Limit, Bounds(0, MAX_INT32)] = Field(
        alias="MaxProtocolErrors", default=5
    )
    max_logon_failures: int = Field(alias="MaxLogonFailures", default=3, ge=0, le=10)
    connection_timeout: Annotated[TimeSpan, _CONNECTION_SPAN] = Field(
        alias="ConnectionTimeout", default=datetime.timedelta(minutes=10)
    )
    connection_inactivity_timeout: Annotated[TimeSpan, _CONNECTION_SPAN] = Field(
        alias="ConnectionInactivityTimeout", default=datetime.timedelta(minutes=5)
    )
    tarpit_interval: TimeSpan = Field(
        alias="TarpitInterval", default=datetime.timedelta(seconds=5)
    )
    auth_tarpit_interval: TimeSpan = Field(
        alias="AuthTarpitInterval", default=datetime.timedelta(seconds=5)
    )
    message_rate_limit: Annotated[Limit, Bounds(1, MAX_INT32)] = Field(
        alias="MessageRateLimit", default=None
    )
    message_rate_source: Annotated[MessageRateSource, _enum_ci(MessageRateSource)] = Field(
        alias="MessageRateSource", default=MessageRateSource.IP_ADDRESS
    )
    protocol_logging_level: Annotated[ProtocolLoggingLevel, _enum_ci(ProtocolLoggingLevel)] = (
        Field(alias="ProtocolLoggingLevel", default=ProtocolLoggingLevel.NONE)
    )
    require_ehlo_domain: Bool = Field(alias="RequireEHLODomain", default=False)
    size_enabled: Annotated[SizeEnabled, _enum_ci(SizeEnabled)] = Field(
        alias="SizeEnabled", default=SizeEnabled.ENABLED
    )
    enhanced_status_codes_enabled: Bool = Field(alias="EnhancedStatusCodesEnabled", default=True)
    pipelining_enabled: Bool = Field(alias="PipeliningEnabled", default=True)
    chunking_enabled: Bool = Field(alias="ChunkingEnabled", default=True)
    binary_mime_enabled: Bool = Field(alias="BinaryMimeEnabled", default=True)
    eight_bit_mime_enabled: Bool = Field(alias="EightBitMimeEnabled", default=True)
    delivery_status_notification_enabled: Bool = Field(
        alias="DeliveryStatusNotificationEnabled", default=True
    )
    orar_enabled: Bool = Field(alias="OrarEnabled", default=False)
    long_addresses_enabled: Bool = Field(alias="LongAddressesEnabled", default=False)
    smtp_utf8_enabled: Bool | None = Field(alias="SmtpUtf8Enabled", default=None)
    bare_linefeed_rejection_enabled: Bool = Field(
        alias="BareLinefeedRejectionEnabled", default=False
    )
    comment: str | None = Field(alias="Comment", default=None)
    tls_domain_capabilities: Annotated[
        tuple[DomainCapabilitiesValue, ...], BeforeValidator(one_or_list)
    ] = Field(alias="TlsDomainCapabilities", default=())
    # exchsim's own extension, not an Exchange parameter (exchange.md §4.9): every session must
    # present a client certificate, valid against the lab's trust anchors, for this name.
    exchsim_require_client_certificate: Annotated[
        str | None, AfterValidator(lambda v: v if v is None else client_certificate_name(v))
    ] = Field(alias="ExchsimRequireClientCertificate", default=None)

    @property
    def identity(self) -> str:
        """``SERVER\\Name``, the connector-id of protocol logs and ADPermission identities."""
        return f"{self.server}\\{self.name}"


def _certificate_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """Host names (``*.`` allowed in front), lower-case, each once."""
    out: list[str] = []
    for name in names:
        clean = name.strip().lower()
        if not is_domain_name(clean):
            raise ValueError(f"{clean!r} is not allowed: expected host names like "
                             "mail.contoso.com or contoso.com, the first one the subject CN")
        if clean not in out:
            out.append(clean)
    return tuple(out)


class FrontendTransportService(ExchangeObject):
    """Set-FrontendTransportService of a server: what exchsim models of it (exchange.md §6.1)."""

    intra_org_connector_protocol_logging_level: Annotated[
        ProtocolLoggingLevel, _enum_ci(ProtocolLoggingLevel)] = Field(
        alias="IntraOrgConnectorProtocolLoggingLevel", default=ProtocolLoggingLevel.VERBOSE)


class Server(ExchangeObject):
    name: str = Field(alias="Name", min_length=1, max_length=15, pattern=r"^[A-Za-z0-9-]+$")
    role: Annotated[ServerRole, _enum_ci(ServerRole)] = Field(alias="Role")
    fqdn: Annotated[str, Shape(is_host_name, _SERVER_FQDN)] = Field(alias="Fqdn", min_length=1)
    address: Annotated[str, Shape(is_ip_address, "an IP address like 127.0.10.1")] = Field(
        alias="Address"
    )
    # Version and TimeZone: config/versions.py, config/zones.py (exchange.md §12.1).
    exchange_version: VersionValue = Field(alias="Version", default=DEFAULT_VERSION)
    time_zone: TimeZoneName = Field(alias="TimeZone", default="UTC")
    # The Windows Server it runs on (NTLM's Version field, exchange.md §1.7.1); None: the
    # default of its Version. validate/servers.py checks the pair against Exchange's matrix.
    operating_system: Annotated[WindowsServer, _enum_ci(WindowsServer)] | None = Field(
        alias="OperatingSystem", default=None)
    # Set-TransportService (and -FrontendTransportService, -MailboxTransportService) of this
    # server, exchange.md §6.1: exchsim keeps one receive protocol log per server, so one set.
    receive_protocol_log_max_file_size: ByteLimit = Field(
        alias="ReceiveProtocolLogMaxFileSize", default=10 * MB)
    receive_protocol_log_max_directory_size: ByteLimit = Field(
        alias="ReceiveProtocolLogMaxDirectorySize", default=250 * MB)
    receive_protocol_log_max_age: TimeSpan = Field(
        alias="ReceiveProtocolLogMaxAge", default=datetime.timedelta(days=30))
    # The send side (exchange.md §6.1): one SmtpSend log per server, its limits the Send*
    # twins of the above; the implicit intra-organization send connector's logging as
    # Set-TransportService sets it (the hub's hops to Mailbox Transport Delivery; default None)
    # and as Set-FrontendTransportService sets it (the Front End's hops to the hub; default
    # Verbose), the latter in the FrontendTransportService sub-object.
    send_protocol_log_max_file_size: ByteLimit = Field(
        alias="SendProtocolLogMaxFileSize", default=10 * MB)
    send_protocol_log_max_directory_size: ByteLimit = Field(
        alias="SendProtocolLogMaxDirectorySize", default=250 * MB)
    send_protocol_log_max_age: TimeSpan = Field(
        alias="SendProtocolLogMaxAge", default=datetime.timedelta(days=30))
    intra_org_connector_protocol_logging_level: Annotated[
        ProtocolLoggingLevel, _enum_ci(ProtocolLoggingLevel)] = Field(
        alias="IntraOrgConnectorProtocolLoggingLevel", default=ProtocolLoggingLevel.NONE)
    frontend_transport_service: FrontendTransportService = Field(
        alias="FrontendTransportService", default_factory=lambda: FrontendTransportService())
    # Set-TransportService's message tracking settings (exchange.md §6.2), with their defaults.
    message_tracking_log_enabled: Bool = Field(alias="MessageTrackingLogEnabled", default=True)
    message_tracking_log_max_file_size: ByteLimit = Field(
        alias="MessageTrackingLogMaxFileSize", default=10 * MB)
    message_tracking_log_max_directory_size: ByteLimit = Field(
        alias="MessageTrackingLogMaxDirectorySize", default=1000 * MB)
    message_tracking_log_max_age: TimeSpan = Field(
        alias="MessageTrackingLogMaxAge", default=datetime.timedelta(days=30))
    message_tracking_log_subject_logging_enabled: Bool = Field(
        alias="MessageTrackingLogSubjectLoggingEnabled", default=True)
    # The server's SCHANNEL\Protocols\TLS 1.0|1.1\Server "Enabled" values (exchange.md §4.6):
    # off, as Microsoft's Exchange TLS guidance has them; TLS 1.2 is always on.
    # Set-TransportService's notification and expiry timers (exchange.md §8.4): a delay DSN
    # once a message waited DelayNotificationTimeout (4 h, 1 s to 30 days); expiry after
    # MessageExpirationTimeout (unset: the lab-wide Lab.MessageExpirationTimeout, 2 days).
    delay_notification_timeout: TimeSpan = Field(
        alias="DelayNotificationTimeout", default=datetime.timedelta(hours=4),
        ge=datetime.timedelta(seconds=1), le=datetime.timedelta(days=30))
    message_expiration_timeout: TimeSpan | None = Field(
        alias="MessageExpirationTimeout", default=None,
        ge=datetime.timedelta(seconds=5), le=datetime.timedelta(days=90))
    tls10_server_enabled: Bool = Field(alias="Tls10ServerEnabled", default=False)
    tls11_server_enabled: Bool = Field(alias="Tls11ServerEnabled", default=False)
    # Set-TransportService's retry schedule (exchange.md §8.5), Exchange's defaults and ranges;
    # a value not given here is capped at Lab.RetryInterval (policy/retry.py).
    transient_failure_retry_count: int = Field(
        alias="TransientFailureRetryCount", default=6, ge=0, le=15)
    transient_failure_retry_interval: TimeSpan = Field(
        alias="TransientFailureRetryInterval", default=datetime.timedelta(minutes=5),
        ge=_SECOND, le=datetime.timedelta(hours=12))
    outbound_connection_failure_retry_interval: TimeSpan = Field(
        alias="OutboundConnectionFailureRetryInterval", default=datetime.timedelta(minutes=10),
        ge=_SECOND, le=datetime.timedelta(days=20))
    message_retry_interval: TimeSpan = Field(
        alias="MessageRetryInterval", default=datetime.timedelta(minutes=15),
        ge=_SECOND, le=datetime.timedelta(days=1))
    # exchsim's own (not Exchange's): the names of a certificate the lab CA issues this server
    # at its first start and enables for SMTP, as an admin would with a CA's certificate
    # (exchange.md §4.7); the first name is the subject CN. Domain Security needs one (§4.3).
    exchsim_lab_certificate: Annotated[
        tuple[str, ...], BeforeValidator(_split_list), AfterValidator(_certificate_names)
    ] = Field(alias="ExchsimLabCertificate", default=())
    # exchsim's own, not an Exchange parameter (exchange.md §3.5): the ports of this server
    # that take a PROXY protocol header, and from which proxies (config/proxy.py).
    exchsim_proxy_protocol: ProxyProtocol | None = Field(
        alias="ExchsimProxyProtocol", default=None)
    # exchsim's own: each transport service on a host of its own (config/serviceaddr.py).
    exchsim_service_addresses: ServiceAddresses | None = Field(
        alias="ExchsimServiceAddresses", default=None)

    def service_address(self, service: str) -> str:
        """The address of one of the server's services (SERVICE_KEYS): its own, else Address."""
        given = self.exchsim_service_addresses
        return (given.of(service) if given is not None else None) or self.address

    @property
    def addresses(self) -> frozenset[str]:
        """Every address of the server: its Address and each service's."""
        return frozenset({self.address, *(self.service_address(key) for key in SERVICE_KEYS)})

    @property
    def version(self) -> str:  # 15.0 | 15.1 | 15.2, what the dialect depends on
        return self.exchange_version.major

    @property
    def windows(self) -> WindowsServer:
        return self.operating_system or DEFAULT_OS[self.version]

    @property
    def zone(self) -> datetime.tzinfo | None:  # the zone of its dates; None: the host's
        return zone_of(self.time_zone)


class AcceptedDomain(ExchangeObject):
    domain_name: Annotated[str, Shape(is_domain_name, _DOMAIN_NAME)] = Field(
        alias="DomainName", min_length=1
    )
    domain_type: Annotated[DomainType, _enum_ci(DomainType)] = Field(
        alias="DomainType", default=DomainType.AUTHORITATIVE
    )
    default: Bool = Field(alias="Default", default=False)
    name: str | None = Field(alias="Name", default=None)


class TransportConfig(ExchangeObject):
    """Set-TransportConfig (exchange.md §8.3)."""

    max_receive_size: ByteSize = Field(alias="MaxReceiveSize", default=10 * MB)
    max_send_size: ByteSize = Field(alias="MaxSendSize", default=10 * MB)
    max_recipient_envelope_limit: Limit = Field(alias="MaxRecipientEnvelopeLimit", default=500)
    xexch50_enabled: Bool = Field(alias="Xexch50Enabled", default=True)
    shadow_redundancy_enabled: Bool = Field(alias="ShadowRedundancyEnabled", default=True)
    tls_receive_domain_secure_list: tuple[SecureDomain, ...] = Field(
        alias="TLSReceiveDomainSecureList", default=()
    )
    tls_send_domain_secure_list: tuple[SecureDomain, ...] = Field(
        alias="TLSSendDomainSecureList", default=()
    )
    external_postmaster_address: str | None = Field(
        alias="ExternalPostmasterAddress", default=None
    )
    # Whether delay DSNs are made for senders inside / outside the organization
    # (exchange.md §12.6; policy/dsn.py).
    internal_delay_dsn_enabled: Bool = Field(alias="InternalDelayDsnEnabled", default=True)
    external_delay_dsn_enabled: Bool = Field(alias="ExternalDelayDsnEnabled", default=True)


class Mailbox(ExchangeObject):
    primary_smtp_address: str = Field(alias="PrimarySmtpAddress", pattern=r"^[^@\s]+@[^@\s]+$")
    user_principal_name: str | None = Field(alias="UserPrincipalName", default=None)
    password: str | None = Field(alias="Password", default=None)
    server: str = Field(alias="Server")
    email_addresses: tuple[str, ...] = Field(alias="EmailAddresses", default=())
    sam_account_name: str | None = Field(alias="SamAccountName", default=None)

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every SMTP address of the mailbox, lower-cased, primary first."""
        out = [self.primary_smtp_address.lower()]
        for extra in self.email_addresses:
            address = smtp_address(extra)
            if address.lower() not in out:
                out.append(address.lower())
        return tuple(out)

    @property
    def user_name(self) -> str:
        """The name the user is shown by: the UPN, else the primary SMTP address."""
        return self.user_principal_name or self.primary_smtp_address

    @property
    def account(self) -> str:
        """The SAM account name: given, or the local part of the UPN / primary address."""
        if self.sam_account_name:
            return self.sam_account_name
        return self.user_name.split("@", 1)[0]


class Organization(ExchangeObject):
    name: str = Field(alias="Name", min_length=1)
    accepted_domains: tuple[AcceptedDomain, ...] = Field(alias="AcceptedDomains", min_length=1)
    transport_config: TransportConfig = Field(
        alias="TransportConfig", default_factory=TransportConfig
    )
    mailboxes: tuple[Mailbox, ...] = Field(alias="Mailboxes", default=())
    netbios_name: str | None = Field(alias="NetBIOSName", default=None)
    # The domain controllers' LAN Manager authentication level (exchange.md §1.7.1).
    lm_compatibility_level: int = Field(alias="LmCompatibilityLevel", ge=0, le=5,
                                        default=DEFAULT_LM_COMPATIBILITY_LEVEL)

    @property
    def default_domain(self) -> str:
        for domain in self.accepted_domains:
            if domain.default:
                return domain.domain_name
        return self.accepted_domains[0].domain_name

    @property
    def netbios(self) -> str:
        """The NetBIOS domain name (``CONTOSO``) used by NTLM logons."""
        return self.netbios_name or self.default_domain.split(".", 1)[0].upper()

    @cached_property
    def mailbox_servers(self) -> Mapping[str, str]:
        """Every mailbox address (lower case) -> the Name of the server holding the mailbox,
        built once (routing reads it for every recipient); the first mailbox with an address
        wins."""
        homes: dict[str, str] = {}
        for mailbox in self.mailboxes:
            for address in mailbox.addresses:
                homes.setdefault(address, mailbox.server)
        return homes


class ADPermission(ExchangeObject):
    """Add-ADPermission entry on a receive connector (exchange.md §3.6)."""

    identity: str = Field(alias="Identity")
    user: str = Field(alias="User")
    extended_rights: tuple[str, ...] = Field(alias="ExtendedRights", min_length=1)
    deny: Bool = Field(alias="Deny", default=False)


class InternetSink(ExchangeObject):
    """Where the lab's internet lives: an SMTP server that stores what it receives."""

    address: IPAddress = Field(alias="Address", default="127.0.10.250")
    port: int = Field(alias="Port", default=25, ge=1, le=65535)


class CrlServer(ExchangeObject):
    """Where the lab serves its CRLs over HTTP (``exchsim lab``; README "Lab PKI")."""

    address: IPAddress = Field(alias="Address", default="127.0.10.251")
    port: int = Field(alias="Port", default=80, ge=1, le=65535)


class PartnerConfig(ExchangeObject):
    """A server of another organization the lab runs beside its own (``Lab.Partners``): the
    config file of that organization, relative to the lab's config file."""

    config: str = Field(alias="Config", min_length=1)


class LabSettings(ExchangeObject):
    internet_sink: InternetSink = Field(alias="InternetSink", default_factory=InternetSink)
    crl_server: CrlServer = Field(alias="CrlServer", default_factory=CrlServer)
    """The lab CA's CRL distribution point: ``http://<Address>:<Port + offset>/crl/<ca>.crl``."""
    crl_retrieval_timeout: TimeSpan = Field(
        alias="CrlRetrievalTimeout", default=datetime.timedelta(seconds=10),
        ge=datetime.timedelta(seconds=1), le=datetime.timedelta(minutes=5))
    """How long one CRL fetch may take in all (Exchange's URL retrieval timeout, about 10 s,
    exchange.md §4.2)."""
    when_revocation_offline: Annotated[RevocationOffline, _enum_ci(RevocationOffline)] = Field(
        alias="WhenRevocationOffline", default=RevocationOffline.FAIL)
    """What a client certificate chain whose CRLs cannot be had gets (exchange.md §4.8)."""
    retry_interval: TimeSpan = Field(
        alias="RetryInterval", default=datetime.timedelta(seconds=10)
    )
    """The lab's time scale for delivery retries: every interval of a server's retry schedule
    that its config does not set is at most this long (exchange.md §8.5, policy/retry.py)."""
    message_expiration_timeout: TimeSpan = Field(
        alias="MessageExpirationTimeout", default=datetime.timedelta(days=2),
        ge=datetime.timedelta(seconds=5), le=datetime.timedelta(days=90))
    """Set-TransportService's MessageExpirationTimeout: a message still undelivered this long
    after it was queued is returned to its sender (exchange.md §8.4)."""
    partners: tuple[PartnerConfig, ...] = Field(alias="Partners", default=())
    """Other organizations' configs that ``exchsim lab`` runs in the same process, sharing the
    data directory and the lab PKI (README "The partner organization")."""
    compose_gateway: IPAddress | None = Field(alias="ComposeGateway", default=None)
    """The gateway of the network the lab's servers are on (a compose network's, where Docker's
    userland proxy and NAT connect from): a session from it without a PROXY header gets a
    warning in the log, as the client's own address is lost (smtp/proxyread.py)."""


class Lab(ExchangeObject):
    """A whole loaded configuration: the organization, its servers and connectors."""

    organization: Organization
    servers: tuple[Server, ...]
    receive_connectors: tuple[ReceiveConnector, ...]
    ad_permissions: tuple[ADPermission, ...] = ()
    lab: LabSettings = Field(default_factory=LabSettings)
    send_connectors: tuple[SendConnector, ...] = ()
    dns: DnsMap = Field(default_factory=DnsMap)
    partners: tuple[Lab, ...] = ()
    """The organizations of ``Lab.Partners``, loaded from their own files."""
    edge_subscriptions: tuple[EdgeSubscription, ...] = ()
    """``EdgeSubscriptions`` (config/edgesync.py): the Edge servers subscribed to the site."""
    source: str = "<memory>"
    hosts: frozenset[str] = frozenset()
    """The addresses of the lab's hosts when loaded with ``--hosts`` (config/labnet.py)."""

    def server(self, name: str) -> Server:
        for server in self.servers:
            if server.name.lower() == name.lower():
                return server
        raise KeyError(name)

    def connectors_of(self, server: str) -> tuple[ReceiveConnector, ...]:
        return tuple(c for c in self.receive_connectors if c.server.lower() == server.lower())
