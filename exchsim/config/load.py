"""Load a lab config: YAML -> raw mappings -> default connectors merged -> validated ``Lab``.

The file has five top-level keys, in Exchange's spelling: ``Organization``, ``Servers``,
``ReceiveConnectors``, ``ADPermissions`` and (optional) ``Lab``.

Resolution (``reference/exchange-transport.md`` §3.2, §3.3): every server gets the connectors
setup creates for its Role (``defaults.default_connectors``). A ``ReceiveConnectors`` entry whose
Server and Name equal a default connector's is an override, laid key by key over the default.
Any other entry is a new connector: ``USAGE_DEFAULTS[Usage]`` (``EDGE_NO_USAGE_DEFAULTS`` on an
Edge server without Usage), TransportRole HubTransport on a Mailbox server (§3.1) and
EdgeTransport on an Edge server, then the entry's own keys.

Every problem of the whole file is collected as an ``Issue`` (file, key path, value, what is
allowed, a did-you-mean suggestion) and raised together in one ``ConfigError``, sorted in the
order of the file's sections: the pydantic errors of every object, the rules of §3.4 on each
connector and between connectors (binding / remote range conflicts), and the rules of the
servers, accepted domains, mailboxes, ADPermissions and lab settings. An object with a bad
value is still checked by the rules that do not depend on that value. Nothing starts from a
file with an issue.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import ipaddress
import re
import typing
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from exchsim.config.defaults import EDGE_NO_USAGE_DEFAULTS, USAGE_DEFAULTS, default_connectors
from exchsim.config.model import (
    AcceptedDomain,
    ADPermission,
    AuthMechanism,
    DomainType,
    Lab,
    LabSettings,
    Mailbox,
    Organization,
    PermissionGroup,
    ReceiveConnector,
    Server,
    ServerRole,
    TransportRole,
    Usage,
)
from exchsim.config.syntax import (
    Binding,
    format_byte_size,
    format_ip_range,
    format_timespan,
)

__all__ = [
    "EXTENDED_RIGHTS",
    "TOP_LEVEL_KEYS",
    "ConfigError",
    "Issue",
    "load_config",
    "load_config_text",
]

TOP_LEVEL_KEYS: tuple[str, ...] = (
    "Organization",
    "Servers",
    "ReceiveConnectors",
    "ADPermissions",
    "Lab",
)

# The extended rights a receive connector ACE can grant (§3.6), in Exchange's spelling.
EXTENDED_RIGHTS: tuple[str, ...] = (
    "ms-Exch-SMTP-Submit",
    "ms-Exch-SMTP-Accept-Any-Recipient",
    "ms-Exch-SMTP-Accept-Any-Sender",
    "ms-Exch-SMTP-Accept-Authoritative-Domain-Sender",
    "ms-Exch-SMTP-Accept-Authentication-Flag",
    "ms-Exch-SMTP-Accept-Exch50",
    "ms-Exch-Bypass-Anti-Spam",
    "ms-Exch-Bypass-Message-Size-Limit",
    "ms-Exch-Accept-Headers-Routing",
    "ms-Exch-Accept-Headers-Forest",
    "ms-Exch-Accept-Headers-Organization",
    "ms-Exch-SMTP-Accept-XShadow",
    "ms-Exch-SMTP-Accept-XProxyFrom",
    "ms-Exch-SMTP-Accept-XSessionParams",
    "ms-Exch-SMTP-Accept-XSysProbe",
    "ms-Exch-SMTP-Accept-Xattr",
    "ms-Exch-SMTP-Send-XMessageContext-ADRecipientCache",
    "ms-Exch-SMTP-Send-XMessageContext-ExtendedProperties",
    "ms-Exch-SMTP-Send-XMessageContext-FastIndex",
)

# Principals that exist in every organization (§3.6); <NETBIOS>\... ones are added per config.
WELL_KNOWN_PRINCIPALS: tuple[str, ...] = (
    "NT AUTHORITY\\ANONYMOUS LOGON",
    "NT AUTHORITY\\Authenticated Users",
    "MS Exchange\\Externally Secured Servers",
    "MS Exchange\\Partner Servers",
    "MS Exchange\\Edge Transport Servers",
    "MS Exchange\\Hub Transport Servers",
)

_MAX_INT32 = 2_147_483_647
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")
_DOMAIN = re.compile(rf"^(?:\*\.)?{_LABEL}(?:\.{_LABEL})*$")
_ADDRESS = re.compile(r"^[^@\s]+@([^@\s]+)$")
# Where a list item is named after one of its keys in key paths: ``Servers[0] (EX01)``.
_LABEL_KEYS = {
    "Servers": "Name",
    "ReceiveConnectors": "Name",
    "ADPermissions": "Identity",
    "AcceptedDomains": "DomainName",
    "Mailboxes": "PrimarySmtpAddress",
}
# Flag sets: pydantic numbers their items after the set is built, not as the file lists them.
_SET_KEYS = frozenset({"AuthMechanism", "PermissionGroups"})
_PATTERN_TEXT = {
    r"^[A-Za-z0-9-]+$": "expected letters, digits and hyphens only (a NetBIOS computer name)",
    r"^[^@\s]+@[^@\s]+$": "expected an SMTP address like alice@contoso.com",
}


# --- issues -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem in a config file.

    ``message`` says what is wrong and what is allowed; ``suggestion`` is the closest allowed
    name (a key, enum value, server, connector identity, right or principal), printed as
    ``did you mean '...'?``.
    """

    file: str
    key_path: str
    value: object
    message: str
    suggestion: str | None = None

    def __str__(self) -> str:
        text = f"{self.file}: {self.key_path}: {self.message}" if self.key_path else (
            f"{self.file}: {self.message}"
        )
        if self.suggestion is not None:
            text += f"; did you mean '{self.suggestion}'?"
        return text


class ConfigError(Exception):
    """Every problem found in one config file; ``str()`` gives one issue per line."""

    issues: tuple[Issue, ...]

    def __init__(self, issues: Iterable[Issue]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)


def show(value: object) -> str:
    """A value as the file wrote it: strings quoted, lists in brackets, YAML's true/null."""
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, set | frozenset):
        return "[" + ", ".join(sorted(show(v) for v in value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    return str(value)


def did_you_mean(word: object, candidates: Iterable[str]) -> str | None:
    """The allowed name closest to ``word`` (case-insensitive), if any is close enough."""
    if not isinstance(word, str) or not word:
        return None
    by_lower: dict[str, str] = {}
    for candidate in candidates:
        by_lower.setdefault(candidate.lower(), candidate)
    matches = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[matches[0]] if matches else None


class _Issues:
    """The issues of one file, in the order they were found."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[Issue] = []

    def add(
        self, key_path: str, value: object, message: str, suggestion: str | None = None
    ) -> None:
        issue = Issue(self.file, key_path, value, message, suggestion)
        if issue not in self.items:
            self.items.append(issue)


# --- YAML ---------------------------------------------------------------------------------------

_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"


class _Loader(yaml.SafeLoader):
    """SafeLoader with two YAML 1.1 traps removed, and duplicate keys recorded.

    ``10:00:00`` stays a string (YAML 1.1 reads base-60 numbers: 36000) and ``0755`` stays a
    string (octal); a key given twice in one mapping is reported instead of the last one
    silently winning.
    """

    duplicates: list[tuple[str, int, int]]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[str] = set()
        for key_node, _value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    mark = key_node.start_mark
                    self.duplicates.append((key_node.value, mark.line + 1, mark.column + 1))
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _INT_TAG,
    re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _parse_yaml(text: str, issues: _Issues) -> object:
    loader = _Loader(text)
    loader.duplicates = []
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        issues.add("", None, f"YAML syntax error{where}: {what or 'not valid YAML'}")
        return None
    except yaml.YAMLError as exc:
        issues.add("", None, f"YAML syntax error: {exc}")
        return None
    finally:
        loader.dispose()
    for key, line, column in loader.duplicates:
        issues.add(
            "",
            key,
            f"duplicate key '{key}' at line {line}, column {column}: "
            "a key may appear once per mapping (the later value would silently win)",
        )
    return data


# --- pydantic errors -> issues ------------------------------------------------------------------

_M = TypeVar("_M", bound=BaseModel)


def _inner_model(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _model_at(model: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class that owns the mapping at ``loc`` (for the keys it allows)."""
    current = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = next(
            (f for name, f in current.model_fields.items() if (f.alias or name) == part), None
        )
        if field is None:
            return None
        inner = _inner_model(field.annotation)
        if inner is None:
            return None
        current = inner
    return current


def _keys_of(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _label(item: object, key: str) -> str:
    if isinstance(item, Mapping):
        value = item.get(_LABEL_KEYS.get(key, ""))
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return f" ({value})"
    return ""


def key_path(prefix: str, raw: object, loc: Sequence[str | int]) -> str:
    """``Organization.Mailboxes[1] (bob@contoso.com).Server`` for a pydantic ``loc``."""
    path = prefix
    current: object = raw
    parent_key = ""
    for part in loc:
        if isinstance(part, int):
            item: object = None
            if isinstance(current, list | tuple) and 0 <= part < len(current):
                item = current[part]
            path += f"[{part}]{_label(item, parent_key)}"
            current = item
        elif isinstance(current, Mapping) or current is None:
            path = f"{path}.{part}" if path else part
            current = current.get(part) if isinstance(current, Mapping) else None
            parent_key = part
        # else: a union member's tag (``int``, ``function-before[...]``): not a key of the file.
    return path


def _article(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "AEIOU" else f"a {noun}"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text else text


def _describe(
    error: Mapping[str, Any], model: type[BaseModel], loc: Sequence[str | int]
) -> tuple[str, str | None]:
    """(message, suggestion) for one pydantic error."""
    kind = str(error.get("type", ""))
    value = error.get("input")
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    msg = str(error.get("msg", ""))
    if kind == "missing":
        return "required key is missing", None
    if kind == "extra_forbidden":
        key = loc[-1] if loc else value
        owner = _model_at(model, list(loc[:-1]))
        allowed = _keys_of(owner) if owner is not None else []
        suggestion = did_you_mean(key, allowed)
        what = _article(owner.__name__) if owner is not None else "this object"
        if suggestion is not None or not allowed:
            return f"unknown key '{key}' of {what}", suggestion
        return f"unknown key '{key}': {what} has the keys {', '.join(allowed)}", None
    if kind in {"enum", "literal_error"}:
        allowed = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return (
            f"{show(value)} is not allowed: expected one of {', '.join(allowed)}",
            did_you_mean(value, allowed),
        )
    if kind in {"bool_parsing", "bool_type"}:
        return f"{show(value)} is not allowed: expected true or false ($true / $false)", None
    if kind in {"int_parsing", "int_type", "int_from_float"}:
        return f"{show(value)} is not allowed: expected a whole number", None
    if kind == "string_type":
        return f"{show(value)} is not allowed: expected a string (quote it)", None
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return f"{show(value)} is not allowed: expected a mapping of keys to values", None
    if kind in {"tuple_type", "list_type", "set_type", "frozen_set_type", "iterable_type"}:
        return f"{show(value)} is not allowed: expected a list", None
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        return f"{show(value)} is not allowed: {_PATTERN_TEXT.get(pattern, msg)}", None
    bounds = {"greater_than_equal": ("ge", "at least"), "less_than_equal": ("le", "at most"),
              "greater_than": ("gt", "more than"), "less_than": ("lt", "less than")}
    if kind in bounds:
        name, words = bounds[kind]
        return f"{show(value)} is not allowed: must be {words} {ctx.get(name)}", None
    if kind in {"string_too_long", "string_too_short"}:
        limit = ctx.get("max_length", ctx.get("min_length"))
        words = "at most" if kind == "string_too_long" else "at least"
        return f"{show(value)} is not allowed: must have {words} {limit} characters", None
    if kind == "value_error":
        reason = msg.removeprefix("Value error, ")
        return f"{show(value)} is not allowed: {reason}", None
    reason = msg.replace("Input should be", "expected")
    return f"{show(value)} is not allowed: {_lower_first(reason)}", None


def _report(
    exc: ValidationError, model: type[BaseModel], raw: object, prefix: str, issues: _Issues
) -> None:
    """Every error of ``exc`` as an Issue under ``prefix``, with the file's key path."""
    errors = exc.errors(include_url=False)
    for error in errors:
        loc: list[str | int] = list(error["loc"])
        if error["type"] == "too_short" and any(
            len(other["loc"]) > len(loc) and list(other["loc"][: len(loc)]) == loc
            for other in errors
        ):
            continue  # "at least 1 item" only because an item above failed
        if loc and loc[0] in _SET_KEYS and model is ReceiveConnector:
            loc = loc[:1]
        message, suggestion = _describe(error, model, loc)
        value = None if error["type"] == "missing" else error.get("input")
        if error["type"] == "extra_forbidden":
            value = loc[-1] if loc else value
        issues.add(key_path(prefix, raw, loc), value, message, suggestion)


def _validate(
    model: type[_M], raw: object, prefix: str, issues: _Issues, *, report: bool = True
) -> _M | None:
    """``model.model_validate(raw)``; every error becomes an Issue under ``prefix``."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        if report:
            _report(exc, model, raw, prefix, issues)
        return None


# --- small checks -------------------------------------------------------------------------------


def _is_hostname(value: str) -> bool:
    return len(value) <= 253 and _HOSTNAME.match(value) is not None


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _domain_of(address: str) -> str | None:
    match = _ADDRESS.match(address)
    return match.group(1).lower().rstrip(".") if match else None


def _domain_matches(domain: str, accepted: str) -> bool:
    """``contoso.com`` matches itself; ``*.contoso.com`` matches contoso.com and subdomains."""
    accepted = accepted.lower()
    if accepted.startswith("*."):
        base = accepted[2:]
        return domain == base or domain.endswith("." + base)
    return domain == accepted


def _as_list(value: object) -> list[object] | None:
    if isinstance(value, list):
        return value
    return None


def _netbios(raw_org: Mapping[str, Any], domains: Sequence[AcceptedDomain]) -> str | None:
    """Organization.netbios for an organization that may not have validated."""
    name = raw_org.get("NetBIOSName")
    if isinstance(name, str) and name:
        return name
    if not domains:
        return None
    default = next((d for d in domains if d.default), domains[0])
    return default.domain_name.split(".", 1)[0].upper()


# --- resolution ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    """A connector of the resolved lab and where it came from."""

    connector: ReceiveConnector
    server: Server
    index: int | None  # ReceiveConnectors[index], or None: a default connector left as set up
    raw: Mapping[str, Any]  # the merged spec that was validated
    given: frozenset[str]  # keys the file itself wrote for this connector
    # Keys whose value was wrong (already reported): the connector was validated without them,
    # so that the rules below can still check the rest; it takes no part in conflicts.
    failed: frozenset[str] = frozenset()

    def path(self, key: str = "") -> str:
        if self.index is not None:
            base = f"ReceiveConnectors[{self.index}] ({self.connector.name})"
        else:
            base = f"{self.connector.identity} (default connector of {self.server.name})"
        return f"{base}.{key}" if key else base

    def value(self, key: str) -> object:
        return self.raw.get(key)


@dataclass(slots=True)
class _State:
    issues: _Issues
    servers: list[tuple[int, Server]] = dataclasses.field(default_factory=list)
    broken_servers: set[str] = dataclasses.field(default_factory=set)
    # (server, name) lower-cased -> identity, for every connector the file means, valid or not
    identities: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)

    def server(self, name: object) -> Server | None:
        if not isinstance(name, str):
            return None
        for _, server in self.servers:
            if server.name.lower() == name.lower():
                return server
        return None


def _check_servers(raw: object, state: _State) -> None:
    issues = state.issues
    items = _as_list(raw)
    if items is None:
        issues.add("Servers", raw, f"{show(raw)} is not allowed: expected a list of servers")
        return
    if not items:
        issues.add("Servers", raw, "at least one server is required")
        return
    names: dict[str, int] = {}
    addresses: dict[str, int] = {}
    for i, item in enumerate(items):
        if isinstance(item, dict):
            if isinstance(item.get("Version"), int | float) and not isinstance(
                item.get("Version"), bool
            ):
                item = {**item, "Version": f"{float(item['Version']):.1f}"}
            if isinstance(item.get("Name"), str):
                state.broken_servers.add(item["Name"].lower())
        server = _validate(Server, item, f"Servers[{i}]{_label(item, 'Servers')}", issues)
        if server is None:
            continue
        path = f"Servers[{i}] ({server.name})"
        ok = True
        if server.name.lower() in names:
            issues.add(
                f"{path}.Name",
                server.name,
                f"'{server.name}' is already the name of Servers[{names[server.name.lower()]}]: "
                "server names must be unique",
            )
            ok = False
        if not _is_hostname(server.fqdn):
            issues.add(
                f"{path}.Fqdn",
                server.fqdn,
                f"{show(server.fqdn)} is not allowed: expected a host name like ex01.contoso.com "
                "(letters, digits, hyphens, dot-separated); ExchangeServer authentication and "
                "the banner use it (§3.4)",
            )
        ip = _ip(server.address)
        if ip is None:
            issues.add(
                f"{path}.Address",
                server.address,
                f"{show(server.address)} is not allowed: expected an IP address like 127.0.10.1",
            )
        else:
            key = str(ip)
            if key in addresses:
                issues.add(
                    f"{path}.Address",
                    server.address,
                    f"{show(server.address)} is already the Address of Servers[{addresses[key]}]:"
                    " each server owns its own address",
                )
                ok = False
            addresses.setdefault(key, i)
        if ok:
            names[server.name.lower()] = i
            state.servers.append((i, server))
            state.broken_servers.discard(server.name.lower())


def _check_organization(raw: object, state: _State) -> tuple[Organization | None, str | None]:
    """Validate Organization; return it (if valid) and the NetBIOS name (if known)."""
    issues = state.issues
    if not isinstance(raw, dict):
        issues.add(
            "Organization",
            raw,
            f"{show(raw)} is not allowed: expected a mapping with Name, AcceptedDomains, "
            "TransportConfig and Mailboxes",
        )
        return None, None
    organization = _validate(Organization, raw, "Organization", issues)
    # The rules below run on every item that is valid by itself, so that a bad item elsewhere
    # does not hide them.
    domains: list[tuple[int, AcceptedDomain]] = []
    for i, item in enumerate(_as_list(raw.get("AcceptedDomains")) or []):
        domain = _validate(AcceptedDomain, item, "", issues, report=False)
        if domain is not None:
            domains.append((i, domain))
    _check_accepted_domains(domains, issues)
    mailboxes: list[tuple[int, Mailbox]] = []
    for i, item in enumerate(_as_list(raw.get("Mailboxes")) or []):
        mailbox = _validate(Mailbox, item, "", issues, report=False)
        if mailbox is not None:
            mailboxes.append((i, mailbox))
    _check_mailboxes(mailboxes, [d for _, d in domains], state)
    if organization is not None:
        return organization, organization.netbios
    return None, _netbios(raw, [d for _, d in domains])


def _check_accepted_domains(domains: list[tuple[int, AcceptedDomain]], issues: _Issues) -> None:
    seen: dict[str, int] = {}
    default_at: int | None = None
    for i, domain in domains:
        path = f"Organization.AcceptedDomains[{i}] ({domain.domain_name})"
        name = domain.domain_name
        if len(name) > 253 or not _DOMAIN.match(name):
            issues.add(
                f"{path}.DomainName",
                name,
                f"{show(name)} is not allowed: expected a domain name like contoso.com or "
                "*.contoso.com (§8.1)",
            )
        lower = name.lower().rstrip(".")
        if lower in seen:
            issues.add(
                f"{path}.DomainName",
                name,
                f"{show(name)} is already Organization.AcceptedDomains[{seen[lower]}]: "
                "each accepted domain is listed once",
            )
        seen.setdefault(lower, i)
        if domain.default:
            if default_at is None:
                default_at = i
            else:
                issues.add(
                    f"{path}.Default",
                    True,
                    "Default: true is already set on Organization.AcceptedDomains"
                    f"[{default_at}]: exactly one accepted domain is the default (§8.1)",
                )


def _check_mailboxes(
    mailboxes: list[tuple[int, Mailbox]], domains: list[AcceptedDomain], state: _State
) -> None:
    issues = state.issues
    authoritative = [
        d.domain_name for d in domains if d.domain_type is DomainType.AUTHORITATIVE
    ]
    owners: dict[str, int] = {}
    upns: dict[str, int] = {}
    server_names = [s.name for _, s in state.servers]
    for i, mailbox in mailboxes:
        path = f"Organization.Mailboxes[{i}] ({mailbox.primary_smtp_address})"
        server = state.server(mailbox.server)
        if server is None and mailbox.server.lower() not in state.broken_servers:
            issues.add(
                f"{path}.Server",
                mailbox.server,
                f"{show(mailbox.server)} is not a server of this config: expected one of "
                f"{', '.join(server_names) or '(no valid server)'}",
                did_you_mean(mailbox.server, server_names),
            )
        elif server is not None and server.role is not ServerRole.MAILBOX:
            issues.add(
                f"{path}.Server",
                mailbox.server,
                f"{show(mailbox.server)} is an {server.role.value} server: mailboxes live on "
                "Mailbox servers",
            )
        listed = [("PrimarySmtpAddress", mailbox.primary_smtp_address)] + [
            (f"EmailAddresses[{k}]", extra) for k, extra in enumerate(mailbox.email_addresses)
        ]
        for key, written in listed:
            address = written.split(":", 1)[1] if written.lower().startswith("smtp:") else written
            domain = _domain_of(address)
            if domain is None:
                issues.add(
                    f"{path}.{key}",
                    written,
                    f"{show(written)} is not allowed: expected an SMTP address like "
                    "alice@contoso.com",
                )
                continue
            if domains and not any(_domain_matches(domain, a) for a in authoritative):
                issues.add(
                    f"{path}.{key}",
                    written,
                    f"{show(written)} is not allowed: its domain must be an Authoritative "
                    f"accepted domain ({', '.join(authoritative) or 'there is none'}) (§8.1)",
                )
            lower = address.lower()
            if lower in owners and owners[lower] != i:
                issues.add(
                    f"{path}.{key}",
                    written,
                    f"{show(written)} is already an address of Organization.Mailboxes"
                    f"[{owners[lower]}]: an address belongs to one mailbox",
                )
            owners.setdefault(lower, i)
        if mailbox.user_principal_name:
            upn = mailbox.user_principal_name.lower()
            if upn in upns:
                issues.add(
                    f"{path}.UserPrincipalName",
                    mailbox.user_principal_name,
                    f"{show(mailbox.user_principal_name)} is already the UserPrincipalName of "
                    f"Organization.Mailboxes[{upns[upn]}]: a UPN belongs to one user",
                )
            upns.setdefault(upn, i)


def _usage_of(value: object) -> Usage | None:
    if isinstance(value, str):
        for usage in Usage:
            if usage.value.lower() == value.strip().lower():
                return usage
    return None


def _resolve_connectors(raw: object, state: _State) -> list[_Entry]:
    issues = state.issues
    items: list[object]
    if raw is None:
        items = []
    elif isinstance(raw, list):
        items = raw
    else:
        issues.add(
            "ReceiveConnectors",
            raw,
            f"{show(raw)} is not allowed: expected a list of receive connectors",
        )
        items = []

    defaults: dict[str, list[dict[str, Any]]] = {}
    default_index: dict[tuple[str, str], tuple[str, int]] = {}
    for _, server in state.servers:
        specs = default_connectors(server.name, server.role, server.fqdn)
        defaults[server.name.lower()] = [dict(spec) for spec in specs]
        for k, spec in enumerate(specs):
            spec_key = (server.name.lower(), str(spec["Name"]).lower())
            default_index[spec_key] = (server.name.lower(), k)
            state.identities[spec_key] = f"{server.name}\\{spec['Name']}"

    overrides: dict[tuple[str, int], tuple[int, dict[str, Any]]] = {}
    custom: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    seen_names: dict[tuple[str, str], int] = {}
    server_names = [s.name for _, s in state.servers]

    for i, item in enumerate(items):
        if not isinstance(item, dict):
            issues.add(
                f"ReceiveConnectors[{i}]",
                item,
                f"{show(item)} is not allowed: expected a mapping with Name, Server, Bindings, ...",
            )
            continue
        name, server_name = item.get("Name"), item.get("Server")
        label = f"ReceiveConnectors[{i}]{_label(item, 'ReceiveConnectors')}"
        target = state.server(server_name)
        if target is None:
            if isinstance(server_name, str) and server_name.lower() not in state.broken_servers:
                issues.add(
                    f"{label}.Server",
                    server_name,
                    f"{show(server_name)} is not a server of this config: expected one of "
                    f"{', '.join(server_names) or '(no valid server)'}",
                    did_you_mean(server_name, server_names),
                )
            # Still report the entry's own mistakes.
            _validate(ReceiveConnector, {**USAGE_DEFAULTS[None], **item}, label, issues)
            continue
        key = (target.name.lower(), name.lower()) if isinstance(name, str) else None
        if key is not None and key in seen_names:
            issues.add(
                f"{label}.Name",
                name,
                f"{show(name)} is already ReceiveConnectors[{seen_names[key]}] on server "
                f"{target.name}: connector names are unique per server (§3.4)",
            )
            continue
        if key is not None:
            seen_names[key] = i
        if key is not None and key in default_index:
            overrides[default_index[key]] = (i, item)
        else:
            if key is not None:
                state.identities[key] = f"{target.name}\\{name}"
            custom.setdefault(target.name.lower(), []).append((i, item))

    entries: list[_Entry] = []
    for _, server in state.servers:
        lower = server.name.lower()
        for k, spec in enumerate(defaults[lower]):
            override = overrides.get((lower, k))
            if override is None:
                entries.extend(_build(spec, server, None, frozenset(), issues))
                continue
            i, item = override
            label = f"ReceiveConnectors[{i}] ({spec['Name']})"
            if "Usage" in item:
                issues.add(
                    f"{label}.Usage",
                    item["Usage"],
                    "Usage is not allowed on a default connector: it only applies when "
                    "New-ReceiveConnector creates a connector (§3.2)",
                )
            role = item.get("TransportRole")
            if role is not None and str(role).lower() != str(spec["TransportRole"]).lower():
                issues.add(
                    f"{label}.TransportRole",
                    role,
                    f"{show(role)} is not allowed: the TransportRole of {spec['Name']} is "
                    f"{spec['TransportRole']} and cannot be changed after creation",
                )
            merged = {**spec, **item, "Name": spec["Name"], "Server": server.name}
            entries.extend(_build(merged, server, i, frozenset(item), issues))
        for i, item in custom.get(lower, []):
            usage = _usage_of(item.get("Usage"))
            if server.role is ServerRole.EDGE:
                base = dict(EDGE_NO_USAGE_DEFAULTS if usage is None else USAGE_DEFAULTS[usage])
                if usage is Usage.INTERNAL:
                    base["PermissionGroups"] = ["ExchangeServers"]  # §3.2: Edge has no legacy PG
                role_default = TransportRole.EDGE.value
            else:
                base = dict(USAGE_DEFAULTS[usage])
                role_default = TransportRole.HUB.value
            merged = {**base, "TransportRole": role_default, **item, "Server": server.name}
            entries.extend(_build(merged, server, i, frozenset(item), issues))
    return entries


def _build(
    raw: dict[str, Any], server: Server, index: int | None, given: frozenset[str], issues: _Issues
) -> list[_Entry]:
    if index is None:
        prefix = f"{server.name}\\{raw.get('Name')} (default connector of {server.name})"
    else:
        prefix = f"ReceiveConnectors[{index}]{_label(raw, 'ReceiveConnectors')}"
    try:
        return [_Entry(ReceiveConnector.model_validate(raw), server, index, raw, given)]
    except ValidationError as exc:
        _report(exc, ReceiveConnector, raw, prefix, issues)
        failed = frozenset(str(error["loc"][0]) for error in exc.errors() if error["loc"])
    if not failed or failed & {"Name", "Server"}:
        return []
    rest = {key: value for key, value in raw.items() if key not in failed}
    try:
        connector = ReceiveConnector.model_validate(rest)
    except ValidationError:
        return []
    return [_Entry(connector, server, index, rest, given, failed)]


# --- §3.4 rules on one connector ----------------------------------------------------------------

A = AuthMechanism
PG = PermissionGroup


def _auth_text(mechanisms: Iterable[AuthMechanism]) -> str:
    chosen = set(mechanisms)
    return ", ".join(m.value for m in AuthMechanism if m in chosen) or "None"


def _check_connector(entry: _Entry, issues: _Issues) -> None:
    c, server = entry.connector, entry.server
    auth, groups = c.auth_mechanism, c.permission_groups
    auth_value = entry.value("AuthMechanism")

    def add(key: str, value: object, message: str, uses: tuple[str, ...] = ()) -> None:
        # A rule about a key whose value was wrong (or that depends on one) would only
        # repeat that mistake with a default in its place.
        if not entry.failed & {key.split("[", 1)[0], *uses}:
            issues.add(entry.path(key), value, message)

    if A.NONE in auth and len(auth) > 1:
        add("AuthMechanism", auth_value,
            f"{_auth_text(auth)} is not allowed: None cannot be combined with other "
            "mechanisms (§3.4: None must be alone)")
    if A.BASIC_AUTH_REQUIRE_TLS in auth and not {A.BASIC_AUTH, A.TLS} <= auth:
        add("AuthMechanism", auth_value,
            f"{_auth_text(auth)} is not allowed: BasicAuthRequireTLS requires BasicAuth and "
            "Tls (§3.4)")
    if c.require_tls and A.TLS not in auth:
        add("RequireTLS", entry.value("RequireTLS"),
            f"RequireTLS true is not allowed with AuthMechanism {_auth_text(auth)}: "
            "RequireTLS requires Tls (§3.4)", ("AuthMechanism",))
    if A.EXTERNAL_AUTHORITATIVE in auth:
        if not auth <= {A.EXTERNAL_AUTHORITATIVE, A.TLS}:
            add("AuthMechanism", auth_value,
                f"{_auth_text(auth)} is not allowed: ExternalAuthoritative may only be combined "
                "with Tls (§3.4)")
        if PG.EXCHANGE_SERVERS not in groups:
            add("PermissionGroups", entry.value("PermissionGroups"),
                f"{_groups_text(groups)} is not allowed with AuthMechanism ExternalAuthoritative: "
                "PermissionGroups must include ExchangeServers (§3.4)", ("AuthMechanism",))
    if c.domain_secure_enabled:
        if A.TLS not in auth:
            add("DomainSecureEnabled", entry.value("DomainSecureEnabled"),
                f"DomainSecureEnabled true is not allowed with AuthMechanism {_auth_text(auth)}: "
                "DomainSecureEnabled requires Tls (§3.4)", ("AuthMechanism",))
        if A.EXTERNAL_AUTHORITATIVE in auth:
            add("DomainSecureEnabled", entry.value("DomainSecureEnabled"),
                "DomainSecureEnabled true is not allowed with AuthMechanism "
                "ExternalAuthoritative (§3.4: DomainSecureEnabled forbids ExternalAuthoritative)",
                ("AuthMechanism",))
    inherited = "Fqdn" not in entry.given and c.fqdn == server.fqdn  # reported on the server
    if c.fqdn is not None and not inherited and not _is_hostname(c.fqdn):
        why = " (§3.4: ExchangeServer authentication requires a valid FQDN)" if (
            A.EXCHANGE_SERVER in auth) else " (§3.1)"
        add("Fqdn", c.fqdn,
            f"{show(c.fqdn)} is not allowed: expected a host name like mail.contoso.com{why}",
            ("AuthMechanism",))
    elif c.fqdn is None and A.EXCHANGE_SERVER in auth and not _is_hostname(server.fqdn) and (
        entry.index is not None
    ):
        add("AuthMechanism", auth_value,
            f"{_auth_text(auth)} is not allowed: ExchangeServer authentication requires a valid "
            f"FQDN, and the connector has no Fqdn while server {server.name}'s Fqdn "
            f"{show(server.fqdn)} is not a host name (§3.4)", ("Fqdn",))
    if c.connection_inactivity_timeout >= c.connection_timeout:
        inactivity = _timespan(c.connection_inactivity_timeout)
        add("ConnectionInactivityTimeout", entry.value("ConnectionInactivityTimeout"),
            f"{_written(entry, 'ConnectionInactivityTimeout', inactivity)} is not allowed: "
            "ConnectionInactivityTimeout must be less than ConnectionTimeout "
            f"({_timespan(c.connection_timeout)}) (§3.4)", ("ConnectionTimeout",))
    if c.binary_mime_enabled and not c.chunking_enabled:
        add("BinaryMimeEnabled", entry.value("BinaryMimeEnabled"),
            "BinaryMimeEnabled true is not allowed with ChunkingEnabled false: "
            "BinaryMimeEnabled requires ChunkingEnabled (§3.4)", ("ChunkingEnabled",))
    if PG.CUSTOM in groups:
        add("PermissionGroups", entry.value("PermissionGroups"),
            f"{_groups_text(groups)} is not allowed: the Custom permission group cannot be set, "
            "Exchange only shows it when ACEs were edited by hand; use ADPermissions (§3.4)")
    if "\\" in c.name:
        add("Name", c.name,
            f"{show(c.name)} is not allowed: a connector name cannot contain a backslash (§3.4)")
    if c.banner is not None and not c.banner.startswith("220"):
        add("Banner", c.banner,
            f"{show(c.banner)} is not allowed: a Banner must start with 220 (§3.1), "
            "like '220 relay ready'")
    _check_ranges(entry, add)
    if not c.bindings:
        add("Bindings", entry.value("Bindings"),
            "Bindings is required: at least one IP:port, like 0.0.0.0:25 or [::]:25 (§3.2)")
    own = _ip(server.address)
    for k, binding in enumerate(c.bindings):
        if not binding.is_wildcard and own is not None and binding.address != own:
            add(f"Bindings[{k}]", binding.format(),
                f"'{binding.format()}' is not allowed: the IP address must be a local IP address "
                f"of server {server.name} ({server.address}) or 0.0.0.0 / [::] (§3.1)")
    _check_role(entry, add)


def _groups_text(groups: Iterable[PermissionGroup]) -> str:
    chosen = set(groups)
    return ", ".join(g.value for g in PermissionGroup if g in chosen) or "None"


def _timespan(value: datetime.timedelta) -> str:
    return format_timespan(value)


def _written(entry: _Entry, key: str, effective: str) -> str:
    """The value as the file wrote it, or the effective value when the file did not."""
    return show(entry.raw[key]) if key in entry.given and key in entry.raw else effective


class _Add(Protocol):
    def __call__(
        self, key: str, value: object, message: str, uses: tuple[str, ...] = ...
    ) -> None: ...

# (attribute, key, lowest, highest) of the numeric limits §3.1 gives that model.py leaves open.
_LIMITS: tuple[tuple[str, str, int, int], ...] = (
    ("max_message_size", "MaxMessageSize", 65536, _MAX_INT32),
    ("max_header_size", "MaxHeaderSize", 1, _MAX_INT32),
    ("max_inbound_connection", "MaxInboundConnection", 1, _MAX_INT32),
    ("max_inbound_connection_per_source", "MaxInboundConnectionPerSource", 1, 10000),
    ("max_protocol_errors", "MaxProtocolErrors", 0, _MAX_INT32),
    ("message_rate_limit", "MessageRateLimit", 1, _MAX_INT32),
)
_TIMEOUTS: tuple[tuple[str, str], ...] = (
    ("connection_timeout", "ConnectionTimeout"),
    ("connection_inactivity_timeout", "ConnectionInactivityTimeout"),
)


def _check_ranges(entry: _Entry, add: _Add) -> None:
    c = entry.connector
    for attribute, key, low, high in _LIMITS:
        value = getattr(c, attribute)
        if value is None or low <= value <= high:
            continue
        if key in {"MaxMessageSize", "MaxHeaderSize"}:
            shown = format_byte_size(value)
            allowed = f"{format_byte_size(low)} to {format_byte_size(high)}"
        else:
            shown, allowed = f"{value:,}", f"{low:,} to {high:,}"
        written = _written(entry, key, shown)
        extra = f" = {shown}" if written not in {shown, show(shown)} else ""
        add(key, entry.value(key),
            f"{written}{extra} is not allowed: {key} must be {allowed} (§3.1)")
    for attribute, key in _TIMEOUTS:
        span: datetime.timedelta = getattr(c, attribute)
        if not datetime.timedelta(seconds=1) <= span <= datetime.timedelta(days=1):
            add(key, entry.value(key),
                f"{_written(entry, key, _timespan(span))} is not allowed: {key} must be "
                "00:00:01 to 1.00:00:00 (§3.1)")


def _check_role(entry: _Entry, add: _Add) -> None:
    c, server = entry.connector, entry.server
    role = c.transport_role
    if server.role is ServerRole.EDGE:
        if "TransportRole" in entry.given:
            add("TransportRole", entry.value("TransportRole"),
                "TransportRole is not allowed on an Edge server's connector: Edge connectors "
                "have no TransportRole (§3.4); remove the key")
        if PG.EXCHANGE_LEGACY_SERVERS in c.permission_groups:
            add("PermissionGroups", entry.value("PermissionGroups"),
                f"{_groups_text(c.permission_groups)} is not allowed on Edge server "
                f"{server.name}: no ExchangeLegacyServers permission group on Edge (§3.4)")
        if c.long_addresses_enabled:
            add("LongAddressesEnabled", entry.value("LongAddressesEnabled"),
                f"LongAddressesEnabled true is not allowed on Edge server {server.name} (§3.4)")
        if c.suppress_x_anonymous_tls:
            add("SuppressXAnonymousTls", entry.value("SuppressXAnonymousTls"),
                f"SuppressXAnonymousTls true is not allowed on Edge server {server.name} (§3.4)")
        if c.usage is Usage.CLIENT:
            add("Usage", entry.value("Usage"),
                f"'Client' is not allowed on Edge server {server.name}: Client connectors "
                "exist on Mailbox servers only (§3.2)")
    elif role is TransportRole.EDGE:
        add("TransportRole", entry.value("TransportRole"),
            f"'{role.value}' is not allowed on Mailbox server {server.name}: expected one of "
            "FrontendTransport, HubTransport, MailboxDelivery")


# --- §3.4 binding / remote range conflicts ------------------------------------------------------


def _relation(
    a: ReceiveConnector, b: ReceiveConnector, family: int
) -> tuple[str, Binding, Binding] | None:
    """How two connectors' bindings of one IP family meet: ``same`` (identical IP:port, or both
    wildcard on a port) beats ``mixed`` (wildcard vs specific IP on a port)."""
    mixed: tuple[str, Binding, Binding] | None = None
    for x in a.bindings:
        for y in b.bindings:
            if x.port != y.port or x.address.version != family or y.address.version != family:
                continue
            if x.address == y.address:
                return "same", x, y
            if (x.is_wildcard or y.is_wildcard) and mixed is None:
                mixed = ("mixed", x, y)
    return mixed


def _check_conflicts(entries: Sequence[_Entry], issues: _Issues) -> None:
    enabled = [e for e in entries if e.connector.enabled and not e.failed]
    for j, later in enumerate(enabled):
        for earlier in enabled[:j]:
            a, b = earlier.connector, later.connector
            if a.server.lower() != b.server.lower() or a.transport_role != b.transport_role:
                continue
            relations = {family: _relation(a, b, family) for family in (4, 6)}
            for ka, ra in enumerate(a.remote_ip_ranges):
                for kb, rb in enumerate(b.remote_ip_ranges):
                    relation = relations.get(ra.version)
                    if ra.version != rb.version or relation is None:
                        continue
                    kind, bind_a, bind_b = relation
                    if ra == rb and kind == "same":
                        why = "the same range on the same binding is not allowed"
                    elif ra.partially_overlaps(rb):
                        why = "the ranges partially overlap; one must contain the other"
                    else:
                        continue
                    _conflict(earlier, ka, bind_a, later, kb, bind_b, why, issues)


def _conflict(
    earlier: _Entry,
    ka: int,
    bind_a: Binding,
    later: _Entry,
    kb: int,
    bind_b: Binding,
    why: str,
    issues: _Issues,
) -> None:
    # Report on the connector the file wrote, preferring the later one.
    if later.index is None and earlier.index is not None:
        here, k, other, ko, b_here, b_other = earlier, ka, later, kb, bind_a, bind_b
    else:
        here, k, other, ko, b_here, b_other = later, kb, earlier, ka, bind_b, bind_a
    mine = format_ip_range(here.connector.remote_ip_ranges[k])
    theirs = format_ip_range(other.connector.remote_ip_ranges[ko])
    where = (
        f"binding {b_here.format()}"
        if b_here.format() == b_other.format()
        else f"bindings {b_here.format()} and {b_other.format()}"
    )
    issues.add(
        here.path(f"RemoteIPRanges[{k}]"),
        mine,
        f"'{mine}' of {here.connector.identity} conflicts with '{theirs}' of "
        f"{other.connector.identity} ({here.connector.transport_role.value}, {where}): {why} "
        "(§3.4 binding/remote range conflict)",
    )


# --- ADPermissions ------------------------------------------------------------------------------


def _principals(netbios: str | None, mailboxes: Sequence[Mailbox]) -> dict[str, str]:
    """Every principal an ACE may name, lower-cased -> canonical spelling."""
    names = list(WELL_KNOWN_PRINCIPALS)
    if netbios is not None:
        names += [f"{netbios}\\Exchange Servers", f"{netbios}\\ExchangeLegacyInterop"]
        names += [f"{netbios}\\{m.account}" for m in mailboxes]
    for mailbox in mailboxes:
        names.append(mailbox.primary_smtp_address)
        if mailbox.user_principal_name:
            names.append(mailbox.user_principal_name)
    out: dict[str, str] = {}
    for name in names:
        out.setdefault(name.lower(), name)
    return out


def _check_permissions(
    raw: object,
    state: _State,
    entries: Sequence[_Entry],
    organization: Organization | None,
    netbios: str | None,
    raw_org: object,
) -> list[ADPermission]:
    issues = state.issues
    if raw is None:
        return []
    if not isinstance(raw, list):
        issues.add("ADPermissions", raw, f"{show(raw)} is not allowed: expected a list")
        return []
    mailboxes: list[Mailbox] = list(organization.mailboxes) if organization else []
    if organization is None and isinstance(raw_org, dict):
        for item in _as_list(raw_org.get("Mailboxes")) or []:
            mailbox = _validate(Mailbox, item, "", issues, report=False)
            if mailbox is not None:
                mailboxes.append(mailbox)
    principals = _principals(netbios, mailboxes)
    rights = {right.lower(): right for right in EXTENDED_RIGHTS}
    identities = dict(state.identities)
    for e in entries:
        identities[(e.connector.server.lower(), e.connector.name.lower())] = e.connector.identity
    by_identity = {identity.lower(): identity for identity in identities.values()}

    out: list[ADPermission] = []
    for i, item in enumerate(raw):
        if isinstance(item, dict) and isinstance(item.get("ExtendedRights"), str):
            item = {**item, "ExtendedRights": [
                part.strip() for part in item["ExtendedRights"].split(",") if part.strip()
            ]}
        prefix = f"ADPermissions[{i}]{_label(item, 'ADPermissions')}"
        permission = _validate(ADPermission, item, prefix, issues)
        if permission is None:
            continue
        path = f"ADPermissions[{i}] ({permission.identity})"
        identity = by_identity.get(permission.identity.lower())
        if identity is None:
            known = list(by_identity.values())
            issues.add(
                f"{path}.Identity",
                permission.identity,
                f"{show(permission.identity)} is not allowed: expected SERVER\\Connector Name of "
                "a receive connector of this config",
                did_you_mean(permission.identity, known),
            )
        user = principals.get(permission.user.lower())
        if user is None and netbios is not None:
            issues.add(
                f"{path}.User",
                permission.user,
                f"{show(permission.user)} is not a known principal: expected one of "
                f"{', '.join(WELL_KNOWN_PRINCIPALS)}, {netbios}\\Exchange Servers, "
                f"{netbios}\\ExchangeLegacyInterop, or a mailbox as {netbios}\\<account>, "
                "its UserPrincipalName or its PrimarySmtpAddress",
                did_you_mean(permission.user, principals.values()),
            )
        canonical_rights: list[str] = []
        for k, right in enumerate(permission.extended_rights):
            canonical = rights.get(right.strip().lower())
            if canonical is None:
                issues.add(
                    f"{path}.ExtendedRights[{k}]",
                    right,
                    f"{show(right)} is not an extended right of a receive connector: expected "
                    "one of " + ", ".join(EXTENDED_RIGHTS),
                    did_you_mean(right, EXTENDED_RIGHTS),
                )
            elif canonical not in canonical_rights:
                canonical_rights.append(canonical)
        if identity is not None and user is not None and len(canonical_rights) == len(
            {r.strip().lower() for r in permission.extended_rights}
        ):
            out.append(
                ADPermission.model_validate(
                    {
                        "Identity": identity,
                        "User": user,
                        "ExtendedRights": canonical_rights,
                        "Deny": permission.deny,
                    }
                )
            )
    return out


# --- Lab ----------------------------------------------------------------------------------------


def _check_lab(raw: object, state: _State) -> LabSettings | None:
    issues = state.issues
    settings = _validate(LabSettings, {} if raw is None else raw, "Lab", issues)
    if settings is None:
        return None
    sink = settings.internet_sink
    ip = _ip(sink.address)
    path = "Lab.InternetSink.Address"
    if ip is None:
        issues.add(path, sink.address,
                   f"{show(sink.address)} is not allowed: expected an IP address like "
                   "127.0.10.250")
    else:
        for i, server in state.servers:
            if _ip(server.address) == ip:
                issues.add(path, sink.address,
                           f"{show(sink.address)} is not allowed: it is the Address of "
                           f"Servers[{i}] ({server.name}); the internet sink needs its own")
    return settings


def _file_order(issue: Issue) -> tuple[int, int]:
    """Sort key: file-wide issues first, then sections in TOP_LEVEL_KEYS order, then by index."""
    if "(default connector of " in issue.key_path:
        return TOP_LEVEL_KEYS.index("ReceiveConnectors"), -1
    match = re.match(r"^([A-Za-z]+)(?:\[(\d+)\])?(?=$|[ .\[])", issue.key_path)
    if match is None or match.group(1) not in TOP_LEVEL_KEYS:
        return -1, 0
    return TOP_LEVEL_KEYS.index(match.group(1)), int(match.group(2) or -1)


# --- entry points -------------------------------------------------------------------------------


def load_config(path: Path | str) -> Lab:
    """Read and resolve a config file; raise ``ConfigError`` listing every problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Issue(source, "", source, "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Issue(source, "", source, f"cannot read the file: {exc}")]) from None
    return load_config_text(text, source)


def load_config_text(text: str, source: str = "<memory>") -> Lab:
    """Parse and resolve a config given as text; ``source`` names it in issues."""
    issues = _Issues(source)
    data = _parse_yaml(text, issues)
    if issues.items and data is None:
        raise ConfigError(issues.items)
    if not isinstance(data, dict):
        what = "the file is empty" if data is None else f"{show(data)} is not allowed"
        keys = ", ".join(TOP_LEVEL_KEYS)
        issues.add("", data, f"{what}: expected a mapping with the keys {keys}")
        raise ConfigError(issues.items)

    for key in data:
        if key not in TOP_LEVEL_KEYS:
            suggestion = did_you_mean(key, TOP_LEVEL_KEYS)
            issues.add(
                str(key),
                key,
                f"unknown top-level key '{key}': expected one of {', '.join(TOP_LEVEL_KEYS)}",
                suggestion,
            )
    for key in ("Organization", "Servers"):
        if key not in data:
            issues.add(key, None, f"required section {key} is missing")

    state = _State(issues)
    if "Servers" in data:
        _check_servers(data["Servers"], state)
    organization: Organization | None = None
    netbios: str | None = None
    if "Organization" in data:
        organization, netbios = _check_organization(data["Organization"], state)

    entries = _resolve_connectors(data.get("ReceiveConnectors"), state)
    for entry in entries:
        _check_connector(entry, issues)
    _check_conflicts(entries, issues)
    permissions = _check_permissions(
        data.get("ADPermissions"), state, entries, organization, netbios, data.get("Organization")
    )
    settings = _check_lab(data.get("Lab"), state)

    if issues.items or organization is None or settings is None:
        raise ConfigError(sorted(issues.items, key=_file_order))
    return Lab(
        organization=organization,
        servers=tuple(server for _, server in state.servers),
        receive_connectors=tuple(entry.connector for entry in entries),
        ad_permissions=tuple(permissions),
        lab=settings,
        source=source,
    )

