"""One receive connector: its pydantic validation and the rules of exchange.md §3.4 on it alone.

``validate_connector`` takes a raw spec (Exchange's parameter names, as resolved from the file,
or as ``Set-ReceiveConnector`` would leave the connector) and the server it belongs to; every
problem goes to the given ``IssueLog``. A key whose value is wrong is reported, recorded as
failed (``("ReceiveConnector", identity, key)``) and left out, and the connector is validated
again without it so that the rules that do not read that key still run; the rules that read it
name it in ``needs`` and the log drops them (the cascade rule of ``issues.py``).
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from exchsim.config.capabilities import duplicate_domains
from exchsim.config.issues import IssueLog, Subject, label, place, show
from exchsim.config.model import (
    AuthMechanism,
    PermissionGroup,
    ReceiveConnector,
    Server,
    ServerRole,
    TransportRole,
    Usage,
    out_of_bounds,
    serializer_of,
)
from exchsim.config.prose import report
from exchsim.config.syntax import format_flags, is_host_name, is_ip_address

__all__ = ["connector_path", "validate_connector"]

A = AuthMechanism
PG = PermissionGroup
_SECTION = "ReceiveConnectors"


def connector_path(name: str, server: str, index: int | None, key: str = "") -> str:
    """``ReceiveConnectors[3] (Relay).Key``, or ``EX01\\Name (default connector of EX01).Key``
    for a setup connector the file did not write."""
    if index is not None:
        base = f"{_SECTION}[{index}] ({name})"
    else:
        base = f"{server}\\{name} (default connector of {server})"
    return f"{base}.{key}" if key else base


def subject(connector: ReceiveConnector, key: str | None = None) -> Subject:
    """The connector (or one key of it) as a subject of the issue log."""
    return ("ReceiveConnector", connector.identity) + ((key,) if key else ())


def validate_connector(
    spec: Mapping[str, Any],
    server: Server,
    log: IssueLog,
    *,
    index: int | None = None,
    given: Iterable[str] | None = None,
) -> ReceiveConnector | None:
    """Validate one connector of ``server`` and check exchange.md §3.4's rules on it; return it.

    ``index`` is its position in the file's ``ReceiveConnectors`` (None: a setup connector the
    file did not write); ``given`` the keys the file wrote (default: every key of ``spec``),
    which decides whether a value is shown as written or as effective. The connector returned
    may lack keys that failed (see the module docstring); ``log`` says whether anything did.
    Returns None when it cannot be built at all.
    """
    given_keys = frozenset(spec if given is None else given)
    order = place(_SECTION, index)
    if index is None:
        prefix = f"{server.name}\\{spec.get('Name')} (default connector of {server.name})"
    else:
        prefix = f"{_SECTION}[{index}]{label(spec, _SECTION)}"
    try:
        connector = ReceiveConnector.model_validate(spec)
        used: Mapping[str, Any] = spec
    except ValidationError as exc:
        report(exc, ReceiveConnector, spec, prefix, log, order=order)
        failed = frozenset(str(error["loc"][0]) for error in exc.errors() if error["loc"])
        if not failed or failed & {"Name", "Server"}:
            return None
        used = {key: value for key, value in spec.items() if key not in failed}
        try:
            connector = ReceiveConnector.model_validate(used)
        except ValidationError:
            return None
        for key in sorted(failed):
            log.fail(*subject(connector, key))
    _Rules(connector, server, log, index, used, given_keys).run()
    return connector


class _Rules:
    """exchange.md §3.4's rules on one validated connector."""

    def __init__(
        self,
        connector: ReceiveConnector,
        server: Server,
        log: IssueLog,
        index: int | None,
        raw: Mapping[str, Any],
        given: frozenset[str],
    ) -> None:
        self.c, self.server, self.log = connector, server, log
        self.index, self.raw, self.given = index, raw, given

    def add(
        self,
        key: str,
        value: object,
        message: str,
        uses: tuple[str, ...] = (),
        server_uses: tuple[str, ...] = (),
    ) -> None:
        """An issue on ``key``; it reads ``key`` and ``uses`` of this connector, and
        ``server_uses`` of its server."""
        needs = [subject(self.c, k) for k in (key.split("[", 1)[0], *uses)]
        needs += [("Server", self.server.name, k) for k in server_uses]
        self.log.add(
            connector_path(self.c.name, self.server.name, self.index, key),
            value,
            message,
            order=place(_SECTION, self.index),
            needs=needs,
        )

    def value(self, key: str) -> object:
        return self.raw.get(key)

    def written(self, key: str, effective: str) -> str:
        """The value as the file wrote it, or the effective value when the file did not."""
        return show(self.raw[key]) if key in self.given and key in self.raw else effective

    def run(self) -> None:
        self.auth()
        self.fqdn()
        self.protocol()
        self.bounds()
        self.bindings()
        self.role()

    def auth(self) -> None:
        c = self.c
        auth, groups = c.auth_mechanism, c.permission_groups
        auth_value = self.value("AuthMechanism")
        auth_text = format_flags(auth, AuthMechanism)
        if A.NONE in auth and len(auth) > 1:
            self.add("AuthMechanism", auth_value,
                     f"{auth_text} is not allowed: None cannot be combined with other "
                     "mechanisms (exchange.md §3.4: None must be alone)")
        if A.BASIC_AUTH_REQUIRE_TLS in auth and not {A.BASIC_AUTH, A.TLS} <= auth:
            self.add("AuthMechanism", auth_value,
                     f"{auth_text} is not allowed: BasicAuthRequireTLS requires BasicAuth and "
                     "Tls (exchange.md §3.4)")
        if c.require_tls and A.TLS not in auth:
            self.add("RequireTLS", self.value("RequireTLS"),
                     f"RequireTLS true is not allowed with AuthMechanism {auth_text}: "
                     "RequireTLS requires Tls (exchange.md §3.4)", ("AuthMechanism",))
        if A.EXTERNAL_AUTHORITATIVE in auth:
            if not auth <= {A.EXTERNAL_AUTHORITATIVE, A.TLS}:
                self.add("AuthMechanism", auth_value,
                         f"{auth_text} is not allowed: ExternalAuthoritative may only be "
                         "combined with Tls (exchange.md §3.4)")
            if PG.EXCHANGE_SERVERS not in groups:
                self.add("PermissionGroups", self.value("PermissionGroups"),
                         f"{format_flags(groups, PermissionGroup)} is not allowed with "
                         "AuthMechanism ExternalAuthoritative: PermissionGroups must include "
                         "ExchangeServers (exchange.md §3.4)", ("AuthMechanism",))
        if c.domain_secure_enabled:
            if A.TLS not in auth:
                self.add("DomainSecureEnabled", self.value("DomainSecureEnabled"),
                         f"DomainSecureEnabled true is not allowed with AuthMechanism "
                         f"{auth_text}: DomainSecureEnabled requires Tls (exchange.md §3.4)",
                         ("AuthMechanism",))
            if A.EXTERNAL_AUTHORITATIVE in auth:
                self.add("DomainSecureEnabled", self.value("DomainSecureEnabled"),
                         "DomainSecureEnabled true is not allowed with AuthMechanism "
                         "ExternalAuthoritative (exchange.md §3.4: DomainSecureEnabled forbids "
                         "ExternalAuthoritative)", ("AuthMechanism",))

        for domain in duplicate_domains(c.tls_domain_capabilities):
            self.add("TlsDomainCapabilities", self.value("TlsDomainCapabilities"),
                     f"{domain} is named twice: one entry per domain, with all its "
                     "capabilities after the colon (exchange.md §4.4)")
        if c.exchsim_require_client_certificate and A.TLS not in auth:
            self.add("ExchsimRequireClientCertificate",
                     self.value("ExchsimRequireClientCertificate"),
                     f"a client certificate cannot be required with AuthMechanism {auth_text}: "
                     "it needs Tls (exchange.md §4.9)", ("AuthMechanism",))

    def fqdn(self) -> None:
        c, server = self.c, self.server
        auth = c.auth_mechanism
        if c.fqdn is not None and not is_host_name(c.fqdn):
            why = " (exchange.md §3.4: ExchangeServer authentication requires a valid FQDN)" if (
                A.EXCHANGE_SERVER in auth) else " (exchange.md §3.1)"
            # A setup connector's Fqdn copied from its server reads the server's Fqdn.
            inherited = "Fqdn" not in self.given and c.fqdn == server.fqdn
            self.add("Fqdn", c.fqdn,
                     f"{show(c.fqdn)} is not allowed: expected a host name like "
                     f"mail.contoso.com{why}", ("AuthMechanism",), ("Fqdn",) if inherited else ())
        elif c.fqdn is None and A.EXCHANGE_SERVER in auth and not is_host_name(server.fqdn) and (
            self.index is not None
        ):
            self.add("AuthMechanism", self.value("AuthMechanism"),
                     f"{format_flags(auth, AuthMechanism)} is not allowed: ExchangeServer "
                     "authentication requires a valid FQDN, and the connector has no Fqdn while "
                     f"server {server.name}'s Fqdn {show(server.fqdn)} is not a host name "
                     "(exchange.md §3.4)",
                     ("Fqdn",))

    def protocol(self) -> None:
        c = self.c
        if c.connection_inactivity_timeout >= c.connection_timeout:
            inactivity = _shown("connection_inactivity_timeout", c.connection_inactivity_timeout)
            self.add("ConnectionInactivityTimeout", self.value("ConnectionInactivityTimeout"),
                     f"{self.written('ConnectionInactivityTimeout', inactivity)} is not allowed: "
                     "ConnectionInactivityTimeout must be less than ConnectionTimeout "
                     f"({_shown('connection_timeout', c.connection_timeout)}) (exchange.md §3.4)",
                     ("ConnectionTimeout",))
        if c.binary_mime_enabled and not c.chunking_enabled:
            self.add("BinaryMimeEnabled", self.value("BinaryMimeEnabled"),
                     "BinaryMimeEnabled true is not allowed with ChunkingEnabled false: "
                     "BinaryMimeEnabled requires ChunkingEnabled (exchange.md §3.4)",
                     ("ChunkingEnabled",))
        if PG.CUSTOM in c.permission_groups:
            self.add("PermissionGroups", self.value("PermissionGroups"),
                     f"{format_flags(c.permission_groups, PermissionGroup)} is not allowed: the "
                     "Custom permission group cannot be set, Exchange only shows it when ACEs "
                     "were edited by hand; use ADPermissions (exchange.md §3.4)")
        if "\\" in c.name:
            self.add("Name", c.name,
                     f"{show(c.name)} is not allowed: a connector name cannot contain a "
                     "backslash (exchange.md §3.4)")
        if c.banner is not None and not c.banner.startswith("220"):
            self.add("Banner", c.banner,
                     f"{show(c.banner)} is not allowed: a Banner must start with 220 "
                     "(exchange.md §3.1), like '220 relay ready'")

    def bounds(self) -> None:
        """Every field whose type carries ``Bounds``, in the value's own units."""
        for name, value, bounds in out_of_bounds(self.c):
            key = ReceiveConnector.model_fields[name].alias or name
            shown = _shown(name, value)
            allowed = f"{_shown(name, bounds.low)} to {_shown(name, bounds.high)}"
            written = self.written(key, shown)
            extra = ""
            if not isinstance(value, datetime.timedelta) and written not in {shown, show(shown)}:
                extra = f" = {shown}"
            self.add(key, self.value(key),
                     f"{written}{extra} is not allowed: {key} must be {allowed} (exchange.md §3.1)")

    def bindings(self) -> None:
        c, server = self.c, self.server
        if not c.bindings:
            self.add("Bindings", self.value("Bindings"),
                     "Bindings is required: at least one IP:port, like 0.0.0.0:25 or [::]:25 "
                     "(exchange.md §3.2)")
        own = ipaddress.ip_address(server.address) if is_ip_address(server.address) else None
        for k, binding in enumerate(c.bindings):
            if not binding.is_wildcard and binding.address != own:
                self.add(f"Bindings[{k}]", binding.format(),
                         f"'{binding.format()}' is not allowed: the IP address must be a local "
                         f"IP address of server {server.name} ({server.address}) or 0.0.0.0 / "
                         "[::] (exchange.md §3.1)", server_uses=("Address",))

    def role(self) -> None:
        c, server = self.c, self.server
        if server.role is ServerRole.EDGE:
            if "TransportRole" in self.given:
                self.add("TransportRole", self.value("TransportRole"),
                         "TransportRole is not allowed on an Edge server's connector: Edge "
                         "connectors have no TransportRole (exchange.md §3.4); remove the key")
            if PG.EXCHANGE_LEGACY_SERVERS in c.permission_groups:
                self.add("PermissionGroups", self.value("PermissionGroups"),
                         f"{format_flags(c.permission_groups, PermissionGroup)} is not allowed "
                         f"on Edge server {server.name}: no ExchangeLegacyServers permission "
                         "group on Edge (exchange.md §3.4)")
            if c.long_addresses_enabled:
                self.add("LongAddressesEnabled", self.value("LongAddressesEnabled"),
                         f"LongAddressesEnabled true is not allowed on Edge server {server.name} "
                         "(exchange.md §3.4)")
            if c.suppress_x_anonymous_tls:
                self.add("SuppressXAnonymousTls", self.value("SuppressXAnonymousTls"),
                         "SuppressXAnonymousTls true is not allowed on Edge server "
                         f"{server.name} (exchange.md §3.4)")
            if c.usage is Usage.CLIENT:
                self.add("Usage", self.value("Usage"),
                         f"'Client' is not allowed on Edge server {server.name}: Client "
                         "connectors exist on Mailbox servers only (exchange.md §3.2)")
        elif server.role is ServerRole.CLIENT_ACCESS:
            if c.transport_role is not TransportRole.FRONTEND:
                self.add("TransportRole", self.value("TransportRole"),
                         f"'{c.transport_role.value}' is not allowed on Client Access server "
                         f"{server.name}: expected FrontendTransport (a Client Access server "
                         "runs the Front End Transport service only, exchange.md §7.9)")
        elif c.transport_role is TransportRole.EDGE:
            self.add("TransportRole", self.value("TransportRole"),
                     f"'{c.transport_role.value}' is not allowed on Mailbox server "
                     f"{server.name}: expected one of FrontendTransport, HubTransport, "
                     "MailboxDelivery")


def _shown(name: str, value: object) -> str:
    """A value of connector field ``name`` as its own serializer writes it (``36 MB (...)``,
    ``00:05:00``); a number without one is written with thousands separators."""
    serialize = serializer_of(ReceiveConnector, name)
    out = serialize(value) if serialize is not None else value
    return out if isinstance(out, str) else f"{out:,}"
