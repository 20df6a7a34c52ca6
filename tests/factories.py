"""Small builders for config objects used across the unit tests."""

from __future__ import annotations

from typing import Any

from exchsim.config.defaults import default_connectors
from exchsim.config.model import (
    AcceptedDomain,
    Mailbox,
    Organization,
    ReceiveConnector,
    Server,
    ServerRole,
)


def connector(name: str = "Test", **fields: Any) -> ReceiveConnector:
    raw: dict[str, Any] = {"Name": name, "Server": "EX01", "Bindings": ["0.0.0.0:25"]}
    raw.update(fields)
    return ReceiveConnector.model_validate(raw)


def defaults(server: str = "EX01", role: ServerRole = ServerRole.MAILBOX) -> dict[str, ReceiveConnector]:
    out = {}
    for raw in default_connectors(server, role, f"{server.lower()}.contoso.com"):
        c = ReceiveConnector.model_validate(raw)
        out[c.name.replace(f" {server}", "")] = c
    return out


def organization(**fields: Any) -> Organization:
    raw: dict[str, Any] = {
        "Name": "Contoso",
        "AcceptedDomains": [
            AcceptedDomain.model_validate(
                {"DomainName": "contoso.com", "DomainType": "Authoritative", "Default": True}
            ),
            AcceptedDomain.model_validate(
                {"DomainName": "relay.contoso.com", "DomainType": "InternalRelay"}
            ),
        ],
        "Mailboxes": [
            Mailbox.model_validate(
                {"PrimarySmtpAddress": "alice@contoso.com", "UserPrincipalName": "alice@contoso.com",
                 "Password": "P@ssw0rd!", "Server": "EX01"}
            )
        ],
    }
    raw.update(fields)
    return Organization.model_validate(raw)


def server(version: str = "15.2", role: str = "Mailbox") -> Server:
    return Server.model_validate(
        {"Name": "EX01", "Role": role, "Fqdn": "ex01.contoso.com", "Address": "127.0.10.1",
         "Version": version}
    )
