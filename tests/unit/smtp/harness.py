"""Run the session core without sockets: a server context in memory and a fixed clock.

The context is built from the real lab config (configs/single-server.yaml) and the real policy core
(connector index, ACLs, rate windows); only the I/O is absent. A :class:`Transcript` plays the
adapter's part: it feeds client bytes, answers StartTls and Deliver, and collects what the
server sent.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exchsim.clock import Clock
from exchsim.config.load import load_config_text
from exchsim.config.model import Lab, Mailbox, ReceiveConnector
from exchsim.config.vocabulary import logon_table
from exchsim.policy import replies
from exchsim.policy.connectors import ConnectorIndex
from exchsim.policy.dialect import Dialect
from exchsim.policy.permissions import ConnectorAcl, connector_acl
from exchsim.policy.rates import MessageRateWindow
from exchsim.policy.replies import Reply
from exchsim.smtp.actions import (
    Action,
    Close,
    Deliver,
    Receive,
    Send,
    StartTls,
    Tarpit,
)
from exchsim.smtp.message import AcceptedMessage, TlsInfo
from exchsim.smtp.protocol import SessionCore
from tests.labyaml import LAB_YAML  # Contoso alone

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime.datetime(2026, 11, 29, 3, 0, 0, tzinfo=datetime.UTC)
BANNER_DATE = "Sun, 29 Nov 2026 03:00:00 +0000"

PORTS = {
    "Default Frontend EX01": 25,
    "Client Frontend EX01": 587,
    "Outbound Proxy Frontend EX01": 717,
    "Default EX01": 2525,
    "Client Proxy EX01": 465,
    "Mailbox Delivery EX01": 475,
}


@dataclass
class FixedClock(Clock):
    """Wall clock fixed at NOW (UTC as the local zone); the monotonic time is the caller's."""

    def utc(self) -> datetime.datetime:
        return NOW

    def local(self, zone: datetime.tzinfo | None = None) -> datetime.datetime:
        return NOW if zone is None else NOW.astimezone(zone)

    def monotonic(self) -> float:
        raise AssertionError("the core must be given the time, not read it")


@dataclass
class RecordingLog:
    events: list[tuple[str, str, str]] = field(default_factory=list)

    def connect(self, when: datetime.datetime | None = None) -> None:
        self.events.append(("+", "", ""))

    def sent(self, line: str) -> None:
        self.events.append((">", line, ""))

    def received(self, line: str) -> None:
        self.events.append(("<", line, ""))

    def received_redacted(self, placeholder: str = "<authentication information>") -> None:
        self.events.append(("<", placeholder, ""))

    def info(self, data: str, context: str = "") -> None:
        self.events.append(("*", data, context))

    def disconnect(self, context: str = "Local") -> None:
        self.events.append(("-", "", context))


class Runtime:
    """A ServerContext in memory for one server of a lab config."""

    def __init__(self, lab: Lab, server: str = "EX01",
                 published_certs: Mapping[str, bytes] | None = None) -> None:
        self.lab = lab
        self.server = lab.server(server)
        self.index = ConnectorIndex.build(lab.connectors_of(server))
        self.clock: Clock = FixedClock()
        self.published_certs: Mapping[str, bytes] = published_certs or {}
        self.direct_trust_certs: Mapping[str, bytes] = {}
        self.local_fqdns = frozenset(s.fqdn.lower() for s in lab.servers)
        self.logs: list[RecordingLog] = []
        self.admitted: Counter[tuple[str, str]] = Counter()
        self._rates: dict[str, MessageRateWindow] = {}
        self._logins = logon_table(lab.organization)
        self._sessions = 0

    def acl(self, connector: ReceiveConnector) -> ConnectorAcl:
        return connector_acl(connector, self.lab.ad_permissions, self.lab.organization.netbios)

    def has_starttls_certificate(self, connector: ReceiveConnector) -> bool:
        return True

    def has_internal_certificate(self) -> bool:
        return True

    def session_log(self, connector: ReceiveConnector, session_id: str, local: str,
                    remote: str) -> RecordingLog:
        log = RecordingLog()
        self.logs.append(log)
        return log

    def next_session_id(self) -> str:
        self._sessions += 1
        return f"08DE0000000000{self._sessions:02X}"

    def find_mailbox(self, login: str) -> Mailbox | None:
        return self._logins.get(login.strip().lower())

    def ntlm_acceptor(self) -> Any:
        raise AssertionError("no NTLM in transcripts")

    def connection_counts(self, connector: ReceiveConnector, source: str) -> tuple[int, int]:
        total = sum(n for (c, _), n in self.admitted.items() if c == connector.identity)
        return total, self.admitted[(connector.identity, source)]

    def admit(self, connector: ReceiveConnector, source: str) -> None:
        self.admitted[(connector.identity, source)] += 1

    def release(self, connector: ReceiveConnector, source: str) -> None:
        self.admitted[(connector.identity, source)] -= 1

    def message_rates(self, connector: ReceiveConnector) -> MessageRateWindow:
        return self._rates.setdefault(connector.identity, MessageRateWindow())


def lab_with(connectors: str = "") -> Lab:
    text = LAB_YAML
    if connectors:
        text = text.rstrip("\n") + "\nReceiveConnectors:\n" + connectors.strip("\n") + "\n"
    return load_config_text(text, "lab.yaml")


TLS = TlsInfo(protocol="TLSv1.2", cipher="ECDHE-RSA-AES256-GCM-SHA384", anonymous=False,
              peer_der=None, tls_unique=b"u" * 12)


class Transcript:
    """One session on the core; ``now`` is moved by the test (the injected clock)."""

    def __init__(self, runtime: Runtime, port: int, peer: str = "127.0.0.1",
                 answer: Reply | None = None, tls: TlsInfo = TLS) -> None:
        self.runtime = runtime
        self.core = SessionCore(runtime)
        self.now = 0.0
        self.answer = answer or replies.queued("<m@x>", 1, "ex01.contoso.com", size=0,
                                               seconds=0.0, dialect=Dialect.of(runtime.server.version))
        self.tls = tls
        self.delivered: list[AcceptedMessage] = []
        self.output = bytearray()
        self.kinds: list[str] = []  # the actions' class names, in order (Send and Receive too)
        self.tarpits: list[float] = []
        self.sends: list[bytes] = []  # each Send's bytes (one write each)
        self.closed = False
        self.receive: Receive | None = None  # the last read the core asked for
        self._take(self.core.connect("127.0.10.1", port, peer, 40000, self.now))

    def _take(self, actions: list[Action]) -> None:
        while actions:
            follow: list[Action] = []
            for action in actions:
                self.kinds.append(type(action).__name__)
                if isinstance(action, Send):
                    self.output += action.data
                    self.sends.append(action.data)
                elif isinstance(action, Tarpit):
                    self.tarpits.append(action.seconds)
                elif isinstance(action, Close):
                    self.closed = True
                elif isinstance(action, StartTls):
                    follow = self.core.tls_established(
                        dataclasses.replace(self.tls, anonymous=action.anonymous), self.now)
                elif isinstance(action, Deliver):
                    self.delivered.append(action.message)
                    follow = self.core.delivered(self.answer, self.now)
                else:
                    assert isinstance(action, Receive)
                    self.receive = action
            actions = follow

    def feed(self, data: bytes, *, piece: int = 0) -> str:
        """Send bytes (in pieces of ``piece`` bytes, or whole); returns what came back."""
        start = len(self.output)
        size = piece or max(len(data), 1)
        for pos in range(0, len(data), size):
            self._take(self.core.feed(data[pos : pos + size], self.now))
        return self.output[start:].decode("utf-8", "surrogateescape")

    def say(self, *lines: str) -> str:
        return self.feed("".join(f"{line}\r\n" for line in lines).encode())

    def banner(self) -> str:
        return self.output.split(b"\r\n", 1)[0].decode()


def play(runtime: Runtime, port: int, segments: Iterable[bytes], piece: int = 0,
         peer: str = "127.0.0.1") -> Transcript:
    """A whole session: each segment is fed (whole or in pieces) after the previous one's
    answers; a STARTTLS line must end its segment (what follows it in the same segment is
    discarded, as RFC 3207 says)."""
    t = Transcript(runtime, port, peer)
    for segment in segments:
        t.feed(segment, piece=piece)
    return t
