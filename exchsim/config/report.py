"""Human-readable views of a loaded config and of its problems.

``format_connectors`` prints every receive connector with its effective settings the way
``Get-ReceiveConnector | Format-List`` does: one block per connector, ``Key : Value`` lines with
the key column padded to a common width, multi-valued parameters as ``{a, b}``, flags in their
declaration order, sizes as ``36 MB (37,748,736 bytes)``, timespans as ``00:05:00`` and
``Unlimited`` for limits without a value. ``format_issues`` prints a ``ConfigError``.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Iterable

from exchsim.config.load import ConfigError
from exchsim.config.model import (
    AuthMechanism,
    Lab,
    PermissionGroup,
    ReceiveConnector,
)
from exchsim.config.syntax import (
    Binding,
    IPRange,
    format_byte_size,
    format_ip_range,
    format_timespan,
)

_BYTE_FIELDS = frozenset({"max_message_size", "max_header_size"})
_LIMIT_FIELDS = frozenset(
    {
        "max_inbound_connection",
        "max_inbound_connection_per_source",
        "max_protocol_errors",
        "message_rate_limit",
    }
)


def _flags(chosen: Iterable[enum.Enum], order: type[enum.Enum]) -> str:
    """Flag sets in the enum's declaration order, ``None`` when empty (PowerShell's [Flags])."""
    members = set(chosen)
    return ", ".join(str(m.value) for m in order if m in members) or "None"


def _value(connector: ReceiveConnector, field: str, fqdn: str) -> str:
    value: object = getattr(connector, field)
    if field == "fqdn":
        return connector.fqdn or fqdn
    if field == "auth_mechanism":
        return _flags(connector.auth_mechanism, AuthMechanism)
    if field == "permission_groups":
        return _flags(connector.permission_groups, PermissionGroup)
    if field in _BYTE_FIELDS and isinstance(value, int):
        return format_byte_size(value)
    if field in _LIMIT_FIELDS:
        return "Unlimited" if value is None else f"{value}"
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, datetime.timedelta):
        return format_timespan(value)
    if isinstance(value, tuple):
        return "{" + ", ".join(_item(v) for v in value) + "}"
    return str(value)


def _item(value: object) -> str:
    if isinstance(value, Binding):
        return value.format()
    if isinstance(value, IPRange):
        return format_ip_range(value)
    return str(value)


def connector_lines(connector: ReceiveConnector, server_fqdn: str) -> list[tuple[str, str]]:
    """(key, value) pairs of one connector: Identity, then every parameter in model order."""
    pairs = [("Identity", connector.identity)]
    for name, info in ReceiveConnector.model_fields.items():
        pairs.append((info.alias or name, _value(connector, name, server_fqdn)))
    return pairs


def _block(pairs: list[tuple[str, str]]) -> str:
    width = max(len(key) for key, _ in pairs)
    return "\n".join(f"{key:<{width}} : {value}".rstrip() for key, value in pairs)


def format_connectors(lab: Lab) -> str:
    """Every receive connector of the lab, like ``Get-ReceiveConnector | Format-List``."""
    fqdns = {server.name.lower(): server.fqdn for server in lab.servers}
    blocks = [
        _block(connector_lines(c, fqdns.get(c.server.lower(), "")))
        for c in lab.receive_connectors
    ]
    return "\n\n".join(blocks)


def format_issues(err: ConfigError) -> str:
    """A ConfigError for people: a count, then one issue per line."""
    count = len(err.issues)
    files = sorted({issue.file for issue in err.issues})
    where = files[0] if len(files) == 1 else "the config"
    noun = "problem" if count == 1 else "problems"
    lines = [f"exchsim: {where}: {count} {noun}"]
    lines += [f"  {issue}" for issue in err.issues]
    return "\n".join(lines)
