"""AUTH NTLM on real sockets: the CHALLENGE names the organization and the Windows build
(exchange.md §1.7.1), nmap's smtp-ntlm-info reads it, swaks (Authen::NTLM, NTLMv1) passes or
fails by LmCompatibilityLevel, and an NTLMv2 client (pyspnego) logs on at every level."""

from __future__ import annotations

import asyncio
import base64
import datetime
import shutil
import struct
from pathlib import Path

import spnego
from spnego._ntlm_raw.messages import AvId, Challenge

from tests.integration.conftest import (
    FAST,
    FAST_LAB_YAML,
    RawClient,
    start_lab,
    swaks,
    with_connectors,
)

HOST = "127.0.10.1"
# System.Net.Mail's NEGOTIATE flags: UNICODE, OEM, REQUEST_TARGET, NTLM, ALWAYS_SIGN,
# EXTENDED_SESSIONSECURITY, VERSION, 128, 56. Exchange answered them with 0xa2898205.
NET_MAIL_FLAGS = 0xA2088207
NMAP_FLAGS = 0xA0088207  # smtp-ntlm-info's: the same without VERSION


def lab_yaml(server: str = "", level: int | None = None) -> str:
    # The Client Frontend logs, so that its AUTH failures can be read.
    text = with_connectors(FAST_LAB_YAML, FAST.replace(
        'Client Frontend EX01, Server: EX01,',
        'Client Frontend EX01, Server: EX01, ProtocolLoggingLevel: Verbose,'))
    if server:
        text = text.replace('Version: "15.2"}', server + "}")
    if level is not None:
        text = text.replace("  Name: Contoso\n", f"  Name: Contoso\n  LmCompatibilityLevel: {level}\n")
    return text


async def challenge_of(port: int, flags: int = NET_MAIL_FLAGS) -> bytes:
    client = await RawClient.connect(HOST, port)
    try:
        await client.reply()
        await client.cmd("EHLO client.example")
        assert await client.cmd("AUTH NTLM") == "334 NTLM supported"
        negotiate = b"NTLMSSP\0" + struct.pack("<II", 1, flags) + bytes(16)
        reply = await client.cmd(base64.b64encode(negotiate).decode())
        assert reply.startswith("334 ")
        return base64.b64decode(reply[4:])
    finally:
        client.close()


async def test_the_challenge_names_the_organization_and_the_windows_build(tmp_path: Path) -> None:
    lab = await start_lab(lab_yaml(), tmp_path / "data")
    try:
        before = datetime.datetime.now(datetime.UTC)
        for port in (25, 587, 2525):
            challenge = Challenge.unpack(await challenge_of(lab.port(port)))
            assert challenge.target_name == "CONTOSO"
            assert challenge.flags == 0xA2898205  # what Exchange answered this NEGOTIATE with
            info = challenge.target_info
            assert list(info) == [AvId.nb_domain_name, AvId.nb_computer_name,
                                  AvId.dns_domain_name, AvId.dns_computer_name,
                                  AvId.dns_tree_name, AvId.timestamp, AvId.eol]
            assert [info[a] for a in list(info)[:5]] == [
                "CONTOSO", "EX01", "contoso.com", "ex01.contoso.com", "contoso.com"]
            stamp = info[AvId.timestamp].replace(tzinfo=datetime.UTC)  # a FILETIME is UTC
            assert before - datetime.timedelta(seconds=1) <= stamp <= (
                datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1))
            version = challenge.version
            assert (version.major, version.minor, version.build, version.revision) == (
                10, 0, 17763, 15)  # Windows Server 2019, Exchange 2019's default
        # nmap does not ask for VERSION; Windows sends it all the same.
        challenge = Challenge.unpack(await challenge_of(lab.port(25), NMAP_FLAGS))
        assert challenge.flags == 0xA2898205 and challenge.version.build == 17763
        # A client that asks for signing, sealing and key exchange (Windows 10's NEGOTIATE).
        challenge = Challenge.unpack(await challenge_of(lab.port(587), 0xE2088297))
        assert challenge.flags == 0xE2898215
    finally:
        await lab.daemon.stop()


async def test_the_version_follows_the_configured_operating_system(tmp_path: Path) -> None:
    for server, build in (('Version: "15.1"', (10, 0, 14393)),
                          ('Version: "15.2", OperatingSystem: Windows Server 2022',
                           (10, 0, 20348))):
        lab = await start_lab(lab_yaml(server), tmp_path / f"data{build[2]}")
        try:
            version = Challenge.unpack(await challenge_of(lab.port(587))).version
            assert (version.major, version.minor, version.build) == build
        finally:
            await lab.daemon.stop()


async def test_nmap_smtp_ntlm_info_reads_the_organization(tmp_path: Path) -> None:
    assert shutil.which("nmap"), "nmap is required: apt-get install -y nmap"
    lab = await start_lab(lab_yaml(), tmp_path / "data")
    try:
        # '+' runs the script on a port that is not 25/465/587 (the lab's ports are offset).
        proc = await asyncio.create_subprocess_exec(
            "nmap", "-Pn", "-n", "-p", str(lab.port(587)), "--script", "+smtp-ntlm-info", HOST,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out = (await asyncio.wait_for(proc.communicate(), 60))[0].decode()
        lines = [line.strip("|_ ") for line in out.splitlines() if line.startswith("|")]
        assert lines == [
            "smtp-ntlm-info:",
            "Target_Name: CONTOSO",
            "NetBIOS_Domain_Name: CONTOSO",
            "NetBIOS_Computer_Name: EX01",
            "DNS_Domain_Name: contoso.com",
            "DNS_Computer_Name: ex01.contoso.com",
            "DNS_Tree_Name: contoso.com",
            "Product_Version: 10.0.17763",
        ], out
    finally:
        await lab.daemon.stop()


async def swaks_ntlm(port: int, password: str = "P@ssw0rd!") -> str:
    _, out = await swaks("--server", f"{HOST}:{port}", "--auth", "NTLM", "--auth-user",
                            "alice", "--auth-password", password, "--quit-after", "AUTH")
    return out


async def ntlmv2_logon(port: int) -> str:
    client = await RawClient.connect(HOST, port)
    try:
        await client.reply()
        await client.cmd("EHLO client.example")
        await client.cmd("AUTH NTLM")
        ntlm = spnego.client("CONTOSO\\alice", "P@ssw0rd!", protocol="ntlm")
        challenge = await client.cmd(base64.b64encode(ntlm.step() or b"").decode())
        answer = ntlm.step(base64.b64decode(challenge[4:]))
        return await client.cmd(base64.b64encode(answer or b"").decode())
    finally:
        client.close()


async def test_swaks_ntlmv1_logs_on_at_the_default_level(tmp_path: Path) -> None:
    lab = await start_lab(lab_yaml(), tmp_path / "data")
    try:
        out = await swaks_ntlm(lab.port(587))
        assert "<-  235 2.7.0 Authentication successful" in out, out
        out = await swaks_ntlm(lab.port(587), "wrong")
        assert "<** 535 5.7.3 Authentication unsuccessful" in out, out
        assert await ntlmv2_logon(lab.port(587)) == "235 2.7.0 Authentication successful"
    finally:
        await lab.daemon.stop()


async def test_level_4_refuses_lm_only_and_level_5_refuses_ntlmv1(tmp_path: Path) -> None:
    lab = await start_lab(lab_yaml(level=4), tmp_path / "data4")
    try:
        # Authen::NTLM sends an NTLM response beside its LM one: still accepted.
        assert "<-  235 2.7.0 Authentication successful" in await swaks_ntlm(lab.port(587))
    finally:
        await lab.daemon.stop()
    lab = await start_lab(lab_yaml(level=5), tmp_path / "data5")
    try:
        out = await swaks_ntlm(lab.port(587))
        assert "<** 535 5.7.3 Authentication unsuccessful" in out, out
        assert "Inbound AUTH NTLM failed because of LogonDenied" in lab.protocol_log()
        assert await ntlmv2_logon(lab.port(587)) == "235 2.7.0 Authentication successful"
    finally:
        await lab.daemon.stop()
