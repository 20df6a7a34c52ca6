"""The values the session core and its runtime exchange: actions out, server context in.

The actions are what :class:`exchsim.smtp.protocol.SessionCore` asks the I/O adapter to do;
:class:`ServerContext` is what the core may ask of its server (in-memory state only, no I/O).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from exchsim.clock import Clock
from exchsim.config.model import Lab, Mailbox, ReceiveConnector, Server
from exchsim.policy.connectors import ConnectorIndex
from exchsim.policy.permissions import ConnectorAcl
from exchsim.policy.rates import MessageRateWindow
from exchsim.smtp.message import AcceptedMessage


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes


@dataclass(frozen=True, slots=True)
class Tarpit:
    seconds: float


@dataclass(frozen=True, slots=True)
class StartTls:
    anonymous: bool  # X-ANONYMOUSTLS (the server's own certificate, judged client certificate)


@dataclass(frozen=True, slots=True)
class Deliver:
    message: AcceptedMessage


@dataclass(frozen=True, slots=True)
class Receive:
    idle: float  # seconds of silence allowed from when the read starts
    deadline: float | None  # monotonic time by which input must have come (ConnectionTimeout)


@dataclass(frozen=True, slots=True)
class Close:
    pass


Action = Send | Tarpit | StartTls | Deliver | Receive | Close


class SessionLog(Protocol):
    """The protocol log of one session (exchsim.logs.protocol.ProtocolLogSession)."""

    def connect(self, when: datetime.datetime | None = None) -> None: ...
    def sent(self, line: str) -> None: ...
    def received(self, line: str) -> None: ...
    def received_redacted(self, placeholder: str = ...) -> None: ...
    def info(self, data: str, context: str = "") -> None: ...
    def disconnect(self, context: str = "Local") -> None: ...


class ServerContext(Protocol):
    """What a session needs of its server; in-memory state only (the daemon's ServerNode)."""

    lab: Lab
    server: Server
    index: ConnectorIndex
    clock: Clock
    published_certs: Mapping[str, bytes]
    direct_trust_certs: Mapping[str, bytes]
    """FQDN -> certificate of the servers a session authenticates with by Direct Trust alone
    (an Edge and the Mailbox servers of its subscription, policy/edgetrust.py)."""
    local_fqdns: frozenset[str]

    def acl(self, connector: ReceiveConnector) -> ConnectorAcl: ...
    def has_starttls_certificate(self, connector: ReceiveConnector) -> bool: ...
    def has_internal_certificate(self) -> bool: ...
    def session_log(
        self, connector: ReceiveConnector, session_id: str, local: str, remote: str
    ) -> SessionLog | None: ...
    def next_session_id(self) -> str: ...
    def find_mailbox(self, login: str) -> Mailbox | None: ...
    def ntlm_acceptor(self) -> Any: ...
    def connection_counts(self, connector: ReceiveConnector, source: str) -> tuple[int, int]: ...
    def admit(self, connector: ReceiveConnector, source: str) -> None: ...
    def release(self, connector: ReceiveConnector, source: str) -> None: ...
    def message_rates(self, connector: ReceiveConnector) -> MessageRateWindow: ...
