"""The EHLO keyword list of a connector, in Exchange's fixed order (exchange.md §1.3, §1.4).

One table: each row is (keyword builder, condition). The order of the rows is the order on
the wire. Everything the choice depends on is in :class:`EhloContext`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from exchsim.config.model import (
    AuthMechanism,
    ReceiveConnector,
    SizeEnabled,
    TransportConfig,
    TransportRole,
)
from exchsim.policy.dialect import Dialect

A = AuthMechanism


@dataclass(frozen=True, slots=True)
class EhloContext:
    connector: ReceiveConnector
    version: str  # "15.0" | "15.1" | "15.2"
    transport: TransportConfig
    tls_active: bool = False  # STARTTLS or X-ANONYMOUSTLS done
    anonymous_tls: bool = False  # the TLS came from X-ANONYMOUSTLS
    has_certificate: bool = True  # a certificate for STARTTLS was found (exchange.md §4.5)
    has_internal_certificate: bool = True  # the server's own transport certificate

    @property
    def role(self) -> TransportRole:
        return self.connector.transport_role

    def has(self, mechanism: AuthMechanism) -> bool:
        return mechanism in self.connector.auth_mechanism

    @property
    def smtputf8(self) -> bool:
        enabled = self.connector.smtp_utf8_enabled
        if enabled is None:  # exchange.md §9.13: on by default from 15.2 on
            enabled = Dialect.of(self.version).smtputf8_by_default
        return enabled and (self.connector.eight_bit_mime_enabled or self.binarymime)

    @property
    def binarymime(self) -> bool:
        return self.connector.binary_mime_enabled and self.connector.chunking_enabled


def _size(ctx: EhloContext) -> str | None:
    if ctx.connector.size_enabled is SizeEnabled.DISABLED:
        return None
    if ctx.connector.size_enabled is SizeEnabled.ENABLED_WITHOUT_VALUE:
        return "SIZE"
    return f"SIZE {ctx.connector.max_message_size}"


def auth_mechanisms(ctx: EhloContext) -> list[str]:
    """AUTH mechanisms in Exchange's order: GSSAPI NTLM LOGIN (a subset)."""
    mechs = []
    if ctx.has(A.INTEGRATED) and ctx.connector.enable_auth_gssapi:
        mechs.append("GSSAPI")
    if ctx.has(A.INTEGRATED):
        mechs.append("NTLM")
    if ctx.has(A.BASIC_AUTH) and (not ctx.has(A.BASIC_AUTH_REQUIRE_TLS) or ctx.tls_active):
        mechs.append("LOGIN")
    return mechs


def exps_mechanisms(ctx: EhloContext) -> list[str]:
    """X-EXPS mechanisms in Exchange's order: EXCHANGEAUTH GSSAPI NTLM (a subset)."""
    if not ctx.has(A.EXCHANGE_SERVER):
        return []
    mechs = []
    not_edge = ctx.role is not TransportRole.EDGE
    if ctx.anonymous_tls and not_edge:
        mechs.append("EXCHANGEAUTH")
    if not_edge:
        mechs.append("GSSAPI")
    mechs.append("NTLM")
    return mechs


def _server_auth(ctx: EhloContext) -> bool:
    return ctx.has(A.EXCHANGE_SERVER) or ctx.has(A.EXTERNAL_AUTHORITATIVE)


def _joined(prefix: str, items: list[str]) -> str | None:
    return f"{prefix} {' '.join(items)}" if items else None


Row = Callable[[EhloContext], str | None]


def _when(keyword: str, condition: Callable[[EhloContext], bool]) -> Row:
    return lambda ctx: keyword if condition(ctx) else None


_HUB = TransportRole.HUB
_FE = TransportRole.FRONTEND
_MBX = TransportRole.MAILBOX_DELIVERY
_EDGE = TransportRole.EDGE

KEYWORDS: tuple[Row, ...] = (
    _size,
    _when("PIPELINING", lambda c: c.connector.pipelining_enabled),
    _when("DSN", lambda c: c.connector.delivery_status_notification_enabled),
    _when("ENHANCEDSTATUSCODES", lambda c: c.connector.enhanced_status_codes_enabled),
    _when("STARTTLS", lambda c: not c.tls_active and c.has(A.TLS) and c.has_certificate),
    _when(
        "X-ANONYMOUSTLS",
        lambda c: not c.tls_active
        and c.has(A.EXCHANGE_SERVER)
        and c.has_internal_certificate
        and not c.connector.suppress_x_anonymous_tls,
    ),
    lambda c: _joined("AUTH", auth_mechanisms(c)),
    lambda c: _joined("X-EXPS", exps_mechanisms(c)),
    _when("X-EXCHANGEAUTH SHA256", lambda c: "EXCHANGEAUTH" in exps_mechanisms(c)),
    _when("8BITMIME", lambda c: c.connector.eight_bit_mime_enabled),
    _when("BINARYMIME", lambda c: c.binarymime),
    _when("CHUNKING", lambda c: c.connector.chunking_enabled),
    _when(
        "XEXCH50",
        lambda c: c.transport.xexch50_enabled and _server_auth(c) and c.role is not _FE,
    ),
    _when("SMTPUTF8", lambda c: c.smtputf8),
    _when("XLONGADDR", lambda c: c.connector.long_addresses_enabled and c.role is _HUB),
    _when("XORAR", lambda c: c.connector.orar_enabled),
    _when("XRDST", lambda c: c.has(A.EXCHANGE_SERVER) and c.role in (_HUB, _FE)),
    _when(
        "XSHADOW",
        lambda c: c.transport.shadow_redundancy_enabled and _server_auth(c) and c.role is _EDGE,
    ),
    _when(
        "XSHADOWREQUEST",
        lambda c: c.transport.shadow_redundancy_enabled and _server_auth(c) and c.role is _HUB,
    ),
    _when("XPROXY", lambda c: c.anonymous_tls and c.role is _HUB),
    _when("XPROXYFROM", lambda c: c.anonymous_tls and c.role is _HUB),
    _when("XPROXYTO", lambda c: c.anonymous_tls and c.role is _FE),
    _when(
        "X-MESSAGECONTEXT ADRC-2.1.0.0 EPROP-1.2.0.0 FSTINDX-1.1.0.0",
        lambda c: c.anonymous_tls and c.role in (_HUB, _MBX),
    ),
    _when("XSESSIONPARAMS", lambda c: c.anonymous_tls and c.role is _MBX),
)


def keywords(ctx: EhloContext) -> list[str]:
    """The keyword lines after ``<fqdn> Hello [<ip>]``, in order."""
    return [kw for row in KEYWORDS if (kw := row(ctx)) is not None]
