"""Which receive connectors a config means: setup's connectors per server, plus the file's.

``resolve_connectors`` is a pure function: the valid servers and the file's
``ReceiveConnectors`` list in, the connector specs to validate out (raw mappings in Exchange's
spelling, each with the server it belongs to and where the file wrote it), together with the
findings about the list itself. It validates nothing; ``validate.connector`` does that.

Resolution (exchange.md §3.2, §3.3): every server gets the connectors setup creates for its Role
(``defaults.default_connectors``). A ``ReceiveConnectors`` entry whose Server and Name equal a
default connector's is an override, laid key by key over the default. Any other entry is a new
connector: ``USAGE_DEFAULTS[Usage]`` (``EDGE_NO_USAGE_DEFAULTS`` on an Edge server without
Usage), TransportRole HubTransport on a Mailbox server (exchange.md §3.1) and EdgeTransport on
an Edge server, then the entry's own keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from exchsim.config.defaults import EDGE_NO_USAGE_DEFAULTS, USAGE_DEFAULTS, default_connectors
from exchsim.config.issues import Finding, did_you_mean, label, place, show
from exchsim.config.model import Server, ServerRole, TransportRole, Usage

__all__ = ["ConnectorSpec", "Orphan", "Resolution", "resolve_connectors"]

_SECTION = "ReceiveConnectors"


@dataclass(frozen=True, slots=True)
class ConnectorSpec:
    """One connector to validate: the merged raw spec and where it comes from."""

    raw: Mapping[str, Any]
    server: Server
    index: int | None  # ReceiveConnectors[index], or None: a default connector left as set up
    given: frozenset[str]  # keys the file itself wrote for this connector


@dataclass(frozen=True, slots=True)
class Orphan:
    """A ``ReceiveConnectors`` entry naming no server of the config, with New-ReceiveConnector's
    defaults: it is still validated on its own, so that its own mistakes are reported."""

    raw: Mapping[str, Any]
    index: int

    def prefix(self) -> str:
        return f"{_SECTION}[{self.index}]{label(self.raw, _SECTION)}"


@dataclass(slots=True)
class Resolution:
    """The connectors of the lab in order (per server: setup's, then the file's new ones), the
    entries that name no server, the identity of every connector the file means (lower-cased
    (server, name) -> ``SERVER\\Name``), and what was wrong with the list itself."""

    specs: list[ConnectorSpec] = field(default_factory=list)
    orphans: list[Orphan] = field(default_factory=list)
    identities: dict[tuple[str, str], str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


def _usage_of(value: object) -> Usage | None:
    if isinstance(value, str):
        for usage in Usage:
            if usage.value.lower() == value.strip().lower():
                return usage
    return None


def _find(servers: Sequence[Server], name: object) -> Server | None:
    if not isinstance(name, str):
        return None
    return next((s for s in servers if s.name.lower() == name.lower()), None)


def resolve_connectors(servers: Sequence[Server], raw: object) -> Resolution:
    """The connectors ``raw`` (the file's ``ReceiveConnectors``) means on ``servers``."""
    out = Resolution()
    items: list[object] = []
    if isinstance(raw, list):
        items = raw
    elif raw is not None:
        out.findings.append(Finding(
            _SECTION, raw, f"{show(raw)} is not allowed: expected a list of receive connectors",
            order=place(_SECTION),
        ))

    defaults: dict[str, list[dict[str, Any]]] = {}
    default_index: dict[tuple[str, str], tuple[str, int]] = {}
    for server in servers:
        specs = default_connectors(server.name, server.role, server.fqdn)
        defaults[server.name.lower()] = [dict(spec) for spec in specs]
        for k, spec in enumerate(specs):
            spec_key = (server.name.lower(), str(spec["Name"]).lower())
            default_index[spec_key] = (server.name.lower(), k)
            out.identities[spec_key] = f"{server.name}\\{spec['Name']}"

    overrides: dict[tuple[str, int], tuple[int, dict[str, Any]]] = {}
    custom: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    seen_names: dict[tuple[str, str], int] = {}
    server_names = [s.name for s in servers]

    for i, item in enumerate(items):
        at = place(_SECTION, i)
        if not isinstance(item, dict):
            out.findings.append(Finding(
                f"{_SECTION}[{i}]", item,
                f"{show(item)} is not allowed: expected a mapping with Name, Server, Bindings, ...",
                order=at,
            ))
            continue
        name, server_name = item.get("Name"), item.get("Server")
        prefix = f"{_SECTION}[{i}]{label(item, _SECTION)}"
        target = _find(servers, server_name)
        if target is None:
            if isinstance(server_name, str):
                out.findings.append(Finding(
                    f"{prefix}.Server", server_name,
                    f"{show(server_name)} is not a server of this config: expected one of "
                    f"{', '.join(server_names) or '(no valid server)'}",
                    did_you_mean(server_name, server_names),
                    order=at,
                    needs=(("ServerName", server_name),),
                ))
            out.orphans.append(Orphan({**USAGE_DEFAULTS[None], **item}, i))
            continue
        key = (target.name.lower(), name.lower()) if isinstance(name, str) else None
        if key is not None and key in seen_names:
            out.findings.append(Finding(
                f"{prefix}.Name", name,
                f"{show(name)} is already {_SECTION}[{seen_names[key]}] on server "
                f"{target.name}: connector names are unique per server (exchange.md §3.4)",
                order=at,
            ))
            continue
        if key is not None:
            seen_names[key] = i
        if key is not None and key in default_index:
            overrides[default_index[key]] = (i, item)
        else:
            if key is not None:
                out.identities[key] = f"{target.name}\\{name}"
            custom.setdefault(target.name.lower(), []).append((i, item))

    for server in servers:
        lower = server.name.lower()
        for k, spec in enumerate(defaults[lower]):
            override = overrides.get((lower, k))
            if override is None:
                out.specs.append(ConnectorSpec(spec, server, None, frozenset()))
                continue
            i, item = override
            out.findings.extend(_override_findings(spec, i, item))
            merged = {**spec, **item, "Name": spec["Name"], "Server": server.name}
            out.specs.append(ConnectorSpec(merged, server, i, frozenset(item)))
        for i, item in custom.get(lower, []):
            merged = _new_connector(server, item)
            out.specs.append(ConnectorSpec(merged, server, i, frozenset(item)))
    return out


def _override_findings(spec: Mapping[str, Any], i: int, item: Mapping[str, Any]) -> list[Finding]:
    """What an override of a setup connector may not change."""
    found: list[Finding] = []
    prefix = f"{_SECTION}[{i}] ({spec['Name']})"
    if "Usage" in item:
        found.append(Finding(
            f"{prefix}.Usage", item["Usage"],
            "Usage is not allowed on a default connector: it only applies when "
            "New-ReceiveConnector creates a connector (exchange.md §3.2)",
            order=place(_SECTION, i),
        ))
    role = item.get("TransportRole")
    if role is not None and str(role).lower() != str(spec["TransportRole"]).lower():
        found.append(Finding(
            f"{prefix}.TransportRole", role,
            f"{show(role)} is not allowed: the TransportRole of {spec['Name']} is "
            f"{spec['TransportRole']} and cannot be changed after creation",
            order=place(_SECTION, i),
        ))
    return found


def _new_connector(server: Server, item: Mapping[str, Any]) -> dict[str, Any]:
    """What New-ReceiveConnector would create from ``item`` on ``server`` (exchange.md §3.2)."""
    usage = _usage_of(item.get("Usage"))
    if server.role is ServerRole.EDGE:
        base = dict(EDGE_NO_USAGE_DEFAULTS if usage is None else USAGE_DEFAULTS[usage])
        if usage is Usage.INTERNAL:
            # exchange.md §3.2: Edge has no legacy permission group
            base["PermissionGroups"] = ["ExchangeServers"]
        role_default = TransportRole.EDGE.value
    else:
        base = dict(USAGE_DEFAULTS[usage])
        # A Client Access server hosts the Front End Transport service only (exchange.md §7.9).
        role_default = (TransportRole.FRONTEND.value if server.role is ServerRole.CLIENT_ACCESS
                        else TransportRole.HUB.value)
    return {**base, "TransportRole": role_default, **item, "Server": server.name}
