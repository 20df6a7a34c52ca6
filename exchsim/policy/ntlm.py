"""NTLM as a Windows server speaks it: the CHALLENGE message and the LAN Manager level.

What the CHALLENGE of a Windows domain member carries (exchange.md §1.7.1):

- TargetName: the NetBIOS domain name (``CONTOSO``), flagged NTLMSSP_TARGET_TYPE_DOMAIN;
- TargetInfo, in this order: MsvAvNbDomainName, MsvAvNbComputerName, MsvAvDnsDomainName,
  MsvAvDnsComputerName, MsvAvDnsTreeName, MsvAvTimestamp, MsvAvEOL;
- Version: the Windows build of the server's operating system, NTLM revision 15;
- NegotiateFlags: what the client asked for among what Windows supports (UNICODE chosen over
  OEM; LM_KEY dropped when extended session security is negotiated; 56, 128, KEY_EXCH, SIGN and
  SEAL echoed), plus REQUEST_TARGET, NTLM, ALWAYS_SIGN, TARGET_INFO, VERSION and the target
  type. Captured Windows challenges: NEGOTIATE 0xa2088207 gets 0xa2898205, 0xe2088297 gets
  0xe2898215; a workgroup server answers 0x00088207 with 0x028a8205.

An Edge Transport server is in no domain (exchange.md §1.7.1): it names itself as the target,
NTLMSSP_TARGET_TYPE_SERVER, and sends no DNS tree name.

Pure: the server challenge and the time are passed in.
"""

from __future__ import annotations

import datetime
import enum
import struct
from dataclasses import dataclass

from exchsim.config.model import Organization, Server, ServerRole

__all__ = [
    "NTLM_REVISION",
    "Flag",
    "NtlmIdentity",
    "accepts_lm",
    "accepts_ntlmv1",
    "build_challenge",
    "challenge_flags",
    "filetime",
    "identity_of",
    "negotiate_flags",
]

SIGNATURE = b"NTLMSSP\0"
NTLM_REVISION = 15  # NTLMSSP_REVISION_W2K3, what every Windows since Server 2003 sends
_HEADER = 56  # a CHALLENGE with its Version field; the payload starts here
_FILETIME_EPOCH = datetime.datetime(1601, 1, 1, tzinfo=datetime.UTC)


class Flag(enum.IntFlag):
    """NegotiateFlags, MS-NLMP 2.2.2.5."""

    UNICODE = 0x00000001
    OEM = 0x00000002
    REQUEST_TARGET = 0x00000004
    SIGN = 0x00000010
    SEAL = 0x00000020
    LM_KEY = 0x00000080
    NTLM = 0x00000200
    ALWAYS_SIGN = 0x00008000
    TARGET_TYPE_DOMAIN = 0x00010000
    TARGET_TYPE_SERVER = 0x00020000
    EXTENDED_SESSIONSECURITY = 0x00080000
    TARGET_INFO = 0x00800000
    VERSION = 0x02000000
    KEY_128 = 0x20000000
    KEY_EXCH = 0x40000000
    KEY_56 = 0x80000000


# Asked for by the client and answered by Windows when asked (the charset and LM_KEY aside).
_ECHOED = (Flag.SIGN | Flag.SEAL | Flag.EXTENDED_SESSIONSECURITY | Flag.KEY_128
           | Flag.KEY_EXCH | Flag.KEY_56)
# Always in a Windows server's CHALLENGE.
_ALWAYS = Flag.REQUEST_TARGET | Flag.NTLM | Flag.ALWAYS_SIGN | Flag.TARGET_INFO | Flag.VERSION


class AvId(enum.IntEnum):
    EOL = 0
    NB_COMPUTER_NAME = 1
    NB_DOMAIN_NAME = 2
    DNS_COMPUTER_NAME = 3
    DNS_DOMAIN_NAME = 4
    DNS_TREE_NAME = 5
    TIMESTAMP = 7


@dataclass(frozen=True, slots=True)
class NtlmIdentity:
    """Who the server says it is in a CHALLENGE."""

    netbios_domain: str
    netbios_computer: str
    dns_domain: str
    dns_computer: str
    dns_tree: str | None  # None: in no domain (Edge)
    version: tuple[int, int, int]

    @property
    def domain_joined(self) -> bool:
        return self.dns_tree is not None

    @property
    def target_name(self) -> str:
        return self.netbios_domain if self.domain_joined else self.netbios_computer


def identity_of(server: Server, organization: Organization) -> NtlmIdentity:
    """A Mailbox server is a member of the organization's domain; an Edge server is not.

    The DNS domain is the server's primary DNS suffix: its Fqdn without the host label (the
    organization's default domain for a one-label Fqdn); the forest has one domain, so the DNS
    tree name is the same.
    """
    computer = server.name.upper()
    suffix = server.fqdn.partition(".")[2]
    dns_domain = suffix or organization.default_domain
    if server.role is ServerRole.EDGE:
        return NtlmIdentity(computer, computer, dns_domain, server.fqdn, None,
                            server.windows.build)
    return NtlmIdentity(organization.netbios, computer, dns_domain, server.fqdn, dns_domain,
                        server.windows.build)


def negotiate_flags(message: bytes) -> int:
    """The NegotiateFlags of a NEGOTIATE message; ValueError if it is not one."""
    if len(message) < 16 or not message.startswith(SIGNATURE):
        raise ValueError("not an NTLM message")
    message_type, flags = struct.unpack_from("<II", message, 8)
    if message_type != 1:
        raise ValueError(f"NTLM message type {message_type}, expected NEGOTIATE (1)")
    return int(flags)


def challenge_flags(requested: int, *, domain_joined: bool = True) -> int:
    """The CHALLENGE's NegotiateFlags that Windows answers a NEGOTIATE's ``requested`` with."""
    flags = _ALWAYS | (Flag.TARGET_TYPE_DOMAIN if domain_joined else Flag.TARGET_TYPE_SERVER)
    if requested & Flag.UNICODE:
        flags |= Flag.UNICODE
    elif requested & Flag.OEM:
        flags |= Flag.OEM
    else:
        raise ValueError("the NEGOTIATE asks for neither UNICODE nor OEM strings")
    flags |= requested & _ECHOED
    if requested & Flag.LM_KEY and not requested & Flag.EXTENDED_SESSIONSECURITY:
        flags |= Flag.LM_KEY
    return int(flags)


def build_challenge(negotiate: bytes, identity: NtlmIdentity, server_challenge: bytes,
                    now: datetime.datetime) -> bytes:
    """The CHALLENGE message answering ``negotiate``, laid out as Windows lays it out."""
    if len(server_challenge) != 8:
        raise ValueError("the server challenge is 8 bytes")
    flags = challenge_flags(negotiate_flags(negotiate), domain_joined=identity.domain_joined)
    charset = "utf-16-le" if flags & Flag.UNICODE else "ascii"
    target = identity.target_name.encode(charset)
    pairs: list[tuple[AvId, str]] = [
        (AvId.NB_DOMAIN_NAME, identity.netbios_domain),
        (AvId.NB_COMPUTER_NAME, identity.netbios_computer),
        (AvId.DNS_DOMAIN_NAME, identity.dns_domain),
        (AvId.DNS_COMPUTER_NAME, identity.dns_computer),
    ]
    if identity.dns_tree is not None:
        pairs.append((AvId.DNS_TREE_NAME, identity.dns_tree))
    info = b"".join(_av(av, value.encode("utf-16-le")) for av, value in pairs)
    info += _av(AvId.TIMESTAMP, struct.pack("<Q", filetime(now))) + _av(AvId.EOL, b"")
    major, minor, build = identity.version
    header = (
        SIGNATURE
        + struct.pack("<IHHII", 2, len(target), len(target), _HEADER, flags)
        + server_challenge
        + bytes(8)
        + struct.pack("<HHI", len(info), len(info), _HEADER + len(target))
        + struct.pack("<BBH3xB", major, minor, build, NTLM_REVISION)
    )
    return header + target + info


def filetime(moment: datetime.datetime) -> int:
    """100-nanosecond intervals since 1601-01-01 UTC (MsvAvTimestamp)."""
    delta = moment.astimezone(datetime.UTC) - _FILETIME_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


def _av(av: AvId, value: bytes) -> bytes:
    return struct.pack("<HH", av, len(value)) + value


def accepts_lm(level: int) -> bool:
    """Domain controllers accept an LM response below level 4 ("Refuse LM")."""
    return level < 4


def accepts_ntlmv1(level: int) -> bool:
    """Domain controllers accept an NTLM (v1) response below level 5 ("Refuse LM & NTLM")."""
    return level < 5
