"""The CHALLENGE a Windows server sends, checked against published captures (exchange.md §1.7.1)."""

from __future__ import annotations

import base64
import datetime
import struct

import pytest
from spnego._ntlm_raw.messages import AvId, Challenge

from exchsim.config.load import load_config_text
from exchsim.policy.ntlm import (
    NtlmIdentity,
    accepts_lm,
    accepts_ntlmv1,
    build_challenge,
    challenge_flags,
    filetime,
    identity_of,
    negotiate_flags,
)
from tests.unit.config.test_load import ORG

# System.Net.Mail's NEGOTIATE and the CHALLENGE of an Exchange server on Windows Server 2012 R2
# (EXCHANGE.devdiv.microsoft.com), from MailKit's unit tests (TestSystemNetMailNtlmNegotiation).
EXCHANGE_NEGOTIATE = "TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAKAO5CAAAADw=="
EXCHANGE_CHALLENGE = (
    "TlRMTVNTUAACAAAADAAMADgAAAAFgomi18THmUUjMM4AAAAAAAAAAMoAygBEAAAABgOAJQAAAA9EAEUAVgBEAEkAVgAC"
    "AAwARABFAFYARABJAFYAAQAQAEUAWABDAEgAQQBOAEcARQAEACgAZABlAHYAZABpAHYALgBtAGkAYwByAG8AcwBvAGYA"
    "dAAuAGMAbwBtAAMAOgBlAHgAYwBoAGEAbgBnAGUALgBkAGUAdgBkAGkAdgAuAG0AaQBjAHIAbwBzAG8AZgB0AC4AYwBv"
    "AG0ABQAoAGQAZQB2AGQAaQB2AC4AbQBpAGMAcgBvAHMAbwBmAHQALgBjAG8AbQAHAAgAS9aGGn7B1gEAAAAA"
)


def test_the_challenge_is_byte_for_byte_the_one_a_windows_exchange_server_sent() -> None:
    captured = base64.b64decode(EXCHANGE_CHALLENGE)
    parsed = Challenge.unpack(captured)
    when = parsed.target_info[AvId.timestamp]
    identity = NtlmIdentity("DEVDIV", "EXCHANGE", "devdiv.microsoft.com",
                            "exchange.devdiv.microsoft.com", "devdiv.microsoft.com", (6, 3, 9600))
    built = build_challenge(base64.b64decode(EXCHANGE_NEGOTIATE), identity,
                            parsed.server_challenge, when)
    # The timestamp is the last AV pair before MsvAvEOL; a datetime keeps microseconds, the
    # FILETIME counts tenths of them.
    stamp = len(captured) - 4 - 8
    assert built[:stamp] == captured[:stamp] and built[stamp + 8:] == captured[stamp + 8:]
    ours, theirs = (struct.unpack_from("<Q", m, stamp)[0] for m in (built, captured))
    assert ours == filetime(when) and 0 <= theirs - ours < 10


@pytest.mark.parametrize(("requested", "answered", "domain"), [
    (0xA2088207, 0xA2898205, True),   # System.Net.Mail -> Exchange (SMTP), MailKit's tests
    (0xE2088297, 0xE2898215, True),   # Windows 10 -> Windows Server 2022 DC (LDAP), Microsoft
    (0x00088207, 0x028A8205, False),  # a minimal client -> Windows Server 2012 R2 in a workgroup
])
def test_flags_are_what_windows_answered(requested: int, answered: int, domain: bool) -> None:
    assert challenge_flags(requested, domain_joined=domain) == answered


def test_oem_only_lm_key_and_no_charset() -> None:
    # Authen::NTLM (swaks): OEM and UNICODE, no extended session security.
    assert challenge_flags(0x0000A207) == 0x02818205
    assert challenge_flags(0x00000282) & 0x3 == 0x2  # OEM alone is answered in OEM
    assert challenge_flags(0x00088281) & 0x80 == 0  # LM_KEY gives way to ESS
    assert challenge_flags(0x00000281) & 0x80 == 0x80
    with pytest.raises(ValueError):
        challenge_flags(0x00000200)


def test_negotiate_is_checked() -> None:
    assert negotiate_flags(base64.b64decode(EXCHANGE_NEGOTIATE)) == 0xA2088207
    with pytest.raises(ValueError):
        negotiate_flags(base64.b64decode(EXCHANGE_CHALLENGE))
    with pytest.raises(ValueError):
        negotiate_flags(b"NTLMSSP")


def lab(servers: str, org: str = "") -> object:
    return load_config_text(ORG.replace("  Name: Contoso\n", "  Name: Contoso\n" + org)
                            + "Servers:\n" + servers, "x.yaml")


@pytest.mark.parametrize(("version", "os", "build"), [
    ("15.0", "", (6, 3, 9600)),
    ("15.1", "", (10, 0, 14393)),
    ("15.2", "", (10, 0, 17763)),
    ("15.2", ", OperatingSystem: windows server 2022", (10, 0, 20348)),
    ("15.1", ", OperatingSystem: Windows Server 2012 R2", (6, 3, 9600)),
])
def test_identity_of_a_mailbox_server(version: str, os: str, build: tuple[int, int, int]) -> None:
    config = lab(f'  - {{Name: ex01, Role: Mailbox, Fqdn: ex01.contoso.com, '
                 f'Address: 127.0.10.1, Version: "{version}"{os}}}\n')
    identity = identity_of(config.servers[0], config.organization)  # type: ignore[attr-defined]
    assert identity == NtlmIdentity("CONTOSO", "EX01", "contoso.com", "ex01.contoso.com",
                                    "contoso.com", build)
    assert identity.target_name == "CONTOSO" and identity.domain_joined


def test_an_edge_server_is_in_no_domain() -> None:
    config = lab("  - {Name: EX01, Role: Mailbox, Fqdn: ex01.contoso.com, Address: 127.0.10.1}\n"
                 "  - {Name: EDGE01, Role: Edge, Fqdn: edge01.perimeter.contoso.com, "
                 "Address: 127.0.10.9}\n")
    identity = identity_of(config.servers[1], config.organization)  # type: ignore[attr-defined]
    assert identity.target_name == "EDGE01" and not identity.domain_joined
    negotiate = base64.b64decode(EXCHANGE_NEGOTIATE)
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    parsed = Challenge.unpack(build_challenge(negotiate, identity, bytes(8), now))
    assert parsed.flags == 0xA28A8205  # TARGET_TYPE_SERVER
    assert list(parsed.target_info) == [AvId.nb_domain_name, AvId.nb_computer_name,
                                        AvId.dns_domain_name, AvId.dns_computer_name,
                                        AvId.timestamp, AvId.eol]


def test_the_lan_manager_level_default_and_what_each_level_accepts() -> None:
    config = lab("  - {Name: EX01, Role: Mailbox, Fqdn: ex01.contoso.com, Address: 127.0.10.1}\n")
    assert config.organization.lm_compatibility_level == 3  # type: ignore[attr-defined]
    assert [(accepts_lm(n), accepts_ntlmv1(n)) for n in range(6)] == [
        (True, True), (True, True), (True, True), (True, True), (False, True), (False, False)]
