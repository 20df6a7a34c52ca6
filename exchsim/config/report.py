"""Human-readable views of a loaded config and of its problems.

``format_connectors`` prints every receive connector with its effective settings the way
``Get-ReceiveConnector | Format-List`` does: one block per connector, ``Key : Value`` lines with
the key column padded to a common width, multi-valued parameters as ``{a, b}``, flags in their
declaration order, sizes as ``36 MB (37,748,736 bytes)``, timespans as ``00:05:00`` and
``Unlimited`` for limits without a value. ``format_issues`` prints a ``ConfigError``.
"""

from __future__ import annotations

from exchsim.config.issues import ConfigError
from exchsim.config.model import Lab, ReceiveConnector, ServerRole
from exchsim.config.sendconnector import SendConnector


def _text(value: object) -> str:
    """A serialized value as Format-List writes it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list):
        return "{" + ", ".join(_text(v) for v in value) + "}"
    return str(value)


def connector_lines(connector: ReceiveConnector, server_fqdn: str) -> list[tuple[str, str]]:
    """(key, value) pairs of one connector: Identity, then every parameter in model order.

    Values come from the model's own serializers (``model_dump(mode="json")``): each field's
    type says how it is written (sizes, limits, timespans, flags), so a new parameter needs
    nothing here. The one effective value: a connector without Fqdn shows its server's.
    """
    dumped = connector.model_dump(mode="json", by_alias=True)
    if connector.fqdn is None:
        dumped["Fqdn"] = server_fqdn
    return [("Identity", connector.identity)] + [(key, _text(v)) for key, v in dumped.items()]


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


def send_connector_lines(
    connector: SendConnector, mailbox_servers: tuple[str, ...]
) -> list[tuple[str, str]]:
    """(key, value) pairs of one send connector in Get-SendConnector | Format-List's order
    (the parameters sorted by name, Identity among them). Effective values: DNSRoutingEnabled
    (true when the file gave no SmartHosts and did not say), SourceTransportServers (every
    Mailbox server when the file named none); AuthenticationCredential prints as PowerShell
    prints a PSCredential, never the password; an empty TlsAuthLevel or Fqdn prints empty;
    Usage (a template of New-SendConnector, not a stored property) is not printed."""
    dumped = connector.model_dump(mode="json", by_alias=True)
    dumped["DNSRoutingEnabled"] = connector.uses_dns
    dumped["SourceTransportServers"] = list(
        connector.source_transport_servers or mailbox_servers)
    if connector.authentication_credential is not None:
        dumped["AuthenticationCredential"] = "System.Management.Automation.PSCredential"
    dumped["Identity"] = connector.identity
    del dumped["Usage"]  # New-SendConnector's template switch, not a property Get- shows
    return [(key, _text(dumped[key])) for key in sorted(dumped, key=str.lower)]


def format_send_connectors(lab: Lab) -> str:
    """Every send connector of the lab, like ``Get-SendConnector | Format-List``."""
    mailbox = tuple(s.name for s in lab.servers if s.role is ServerRole.MAILBOX)
    return "\n\n".join(_block(send_connector_lines(c, mailbox)) for c in lab.send_connectors)


def format_issues(err: ConfigError) -> str:
    """A ConfigError for people: a count, then one issue per line."""
    count = len(err.issues)
    files = sorted({issue.file for issue in err.issues})
    where = files[0] if len(files) == 1 else "the config"
    noun = "problem" if count == 1 else "problems"
    lines = [f"exchsim: {where}: {count} {noun}"]
    lines += [f"  {issue}" for issue in err.issues]
    return "\n".join(lines)
