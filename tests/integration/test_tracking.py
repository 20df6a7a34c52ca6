"""The message tracking log on a running lab (exchange.md §6.2), read back with its own
``#Fields:`` line and searched with ``exchsim tracking`` run as a process."""

from __future__ import annotations

import asyncio
import csv
import sys
from pathlib import Path

from tests.integration.conftest import LAB_YAML, RunningLab, swaks
from tests.integration.test_mailflow import FORGED, HOST, send_smtplib

EXCHSIM = [sys.executable, "-m", "exchsim.cli"]
FIELDS = (
    "date-time,client-ip,client-hostname,server-ip,server-hostname,source-context,"
    "connector-id,source,event-id,internal-message-id,message-id,network-message-id,"
    "recipient-address,recipient-status,total-bytes,recipient-count,"
    "related-recipient-address,reference,message-subject,sender-address,return-path,"
    "message-info,directionality,tenant-id,original-client-ip,original-server-ip,custom-data,"
    "transport-traffic-type,log-id,schema-version"
)


def read_events(data: Path, server: str = "EX01") -> list[dict[str, str]]:
    """Every line of the server's tracking files, keyed by each file's own #Fields line."""
    events: list[dict[str, str]] = []
    folder = data / "logs" / server / "MessageTracking"
    for path in sorted(folder.glob("MSGTRK*.LOG")):
        text = path.read_text(encoding="utf-8")
        header = [line for line in text.splitlines() if line.startswith("#")]
        assert header[0] == "#Software: Microsoft Exchange Server"
        assert header[1].startswith("#Version: 15.0")
        assert header[2] == "#Log-type: Message Tracking Log"
        assert header[3].startswith("#Date: ") and header[3].endswith("Z")
        names = header[4].removeprefix("#Fields: ").split(",")
        rows = csv.reader(line for line in text.splitlines() if not line.startswith("#"))
        events += [dict(zip(names, row, strict=True)) for row in rows]
    events.sort(key=lambda e: e["date-time"])
    return events


async def _wait_events(lab: RunningLab, predicate) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    await lab.wait_for(lambda: predicate(read_events(lab.data)))
    return read_events(lab.data)


async def test_anonymous_message_is_received_then_delivered(lab: RunningLab) -> None:
    await asyncio.to_thread(send_smtplib, lab.port(25), "someone@fabrikam.example",
                            ["alice@contoso.com"], FORGED)
    events = await _wait_events(lab, lambda ev: any(e["event-id"] == "DELIVER" for e in ev))
    folder = lab.data / "logs" / "EX01" / "MessageTracking"
    first = sorted(folder.iterdir())[0].read_text(encoding="utf-8").splitlines()
    assert first[4] == f"#Fields: {FIELDS}"
    names = {p.name[:8].rstrip("0123456789") for p in folder.iterdir()}
    assert names == {"MSGTRK", "MSGTRKMD"}
    receive = next(e for e in events if e["event-id"] == "RECEIVE")
    deliver = next(e for e in events if e["event-id"] == "DELIVER")
    assert receive["source"] == "SMTP" and deliver["source"] == "STOREDRIVER"
    assert receive["message-id"] == deliver["message-id"] == "<anon-1@fabrikam.example>"
    assert receive["network-message-id"] == deliver["network-message-id"] != ""
    assert receive["connector-id"] == "EX01\\Default EX01"
    # the hub's peer is the Front End; the client it proxied is the original client
    assert receive["client-ip"] == HOST and receive["client-hostname"] == "ex01.contoso.com"
    assert receive["original-client-ip"].startswith("127.")
    assert receive["original-client-ip"] != HOST
    assert deliver["directionality"] == "Incoming"
    assert receive["sender-address"] == receive["return-path"] == "someone@fabrikam.example"
    assert receive["recipient-address"] == deliver["recipient-address"] == "alice@contoso.com"
    assert receive["recipient-count"] == "1"
    assert receive["message-subject"] == "anonymous test"
    assert receive["directionality"] == "Incoming"
    assert receive["internal-message-id"].isdigit()
    assert receive["schema-version"].startswith("15.0")
    assert receive["date-time"].endswith("Z")
    send = [e for e in events if e["event-id"] == "SEND"]  # the hub to Mailbox Delivery
    assert [e["recipient-address"] for e in send] == ["alice@contoso.com"]
    # the hub logs SEND when Mailbox Delivery's 250 comes back: after its DELIVER
    assert sorted(e["event-id"] for e in events) == ["DELIVER", "RECEIVE", "SEND"]


async def test_relayed_message_is_sent(lab: RunningLab) -> None:
    rc, out = await swaks(
        "--server", f"{HOST}:{lab.port(587)}", "--tls", "--auth", "LOGIN",
        "--auth-user", "alice@contoso.com", "--auth-password", "P@ssw0rd!",
        "--from", "alice@contoso.com", "--to", "user@fabrikam.example",
        "--header", "Subject: relayed by alice")
    assert rc == 0, out
    events = await _wait_events(lab, lambda ev: any(
        e["event-id"] == "SEND" and e["recipient-address"] == "user@fabrikam.example"
        for e in ev))
    receive = next(e for e in events if e["event-id"] == "RECEIVE")
    send = next(e for e in events if e["event-id"] == "SEND")
    assert receive["directionality"] == "Originating"
    assert receive["connector-id"] == "EX01\\Client Proxy EX01"
    assert send["source"] == "SMTP" and send["message-id"] == receive["message-id"]
    assert send["server-ip"] == lab.lab.lab.internet_sink.address
    assert send["message-subject"] == "relayed by alice"
    assert send["directionality"] == "Originating"


async def test_unknown_recipient_fails_with_a_dsn_and_tracking_finds_it(
        lab: RunningLab) -> None:
    data = ("Subject: to nobody\r\nMessage-ID: <to-nobody-1@fabrikam.example>\r\n\r\n"
            "body\r\n")
    await asyncio.to_thread(send_smtplib, lab.port(25), "someone@fabrikam.example",
                            ["nobody@contoso.com"], data)
    events = await _wait_events(lab, lambda ev: any(e["event-id"] == "DSN" for e in ev))
    fail = next(e for e in events if e["event-id"] == "FAIL")
    dsn = next(e for e in events if e["event-id"] == "DSN")
    assert fail["message-id"] == "<to-nobody-1@fabrikam.example>"
    assert fail["recipient-address"] == "nobody@contoso.com"
    assert fail["recipient-status"] == "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found"
    assert dsn["source"] == "DSN" and dsn["sender-address"] == ""
    assert dsn["recipient-address"] == "someone@fabrikam.example"
    assert dsn["related-recipient-address"] == "nobody@contoso.com"
    assert dsn["reference"] == "<to-nobody-1@fabrikam.example>"

    config = lab.data / "lab.yaml"
    config.write_text(LAB_YAML)
    proc = await asyncio.create_subprocess_exec(
        *EXCHSIM, "tracking", "--config", str(config), "--data", str(lab.data),
        "--message-id", "to-nobody-1@fabrikam.example",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    lines = out.decode().splitlines()
    assert lines[0].split() == ["Timestamp", "EventId", "Source", "Sender", "Recipients",
                                "MessageSubject"]
    events_found = [line.split()[2] for line in lines[2:]]
    assert events_found == ["RECEIVE", "FAIL"], out.decode()
    assert "{nobody@contoso.com}" in lines[2] and "to nobody" in lines[2]

    proc = await asyncio.create_subprocess_exec(
        *EXCHSIM, "tracking", "--config", str(config), "--data", str(lab.data),
        "--event-id", "dsn", "--recipients", "SOMEONE@fabrikam.example", "--format", "list",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    text = out.decode()
    assert "EventId                 : DSN" in text
    assert "Reference               : <to-nobody-1@fabrikam.example>" in text
    assert "RelatedRecipientAddress : nobody@contoso.com" in text


async def test_a_copy_sent_again_is_a_duplicatedeliver(lab: RunningLab) -> None:
    for _ in range(2):
        await asyncio.to_thread(send_smtplib, lab.port(25), "someone@fabrikam.example",
                                ["alice@contoso.com"], FORGED)
    events = await _wait_events(lab, lambda ev: any(
        e["event-id"] == "DUPLICATEDELIVER" for e in ev))
    dup = next(e for e in events if e["event-id"] == "DUPLICATEDELIVER")
    assert dup["source"] == "STOREDRIVER" and dup["recipient-address"] == "alice@contoso.com"
    assert [e["event-id"] for e in events].count("DELIVER") == 1


async def test_mailbox_delivery_down_is_a_defer(lab: RunningLab) -> None:
    await lab.daemon.pause_listener(HOST, 475)
    await asyncio.to_thread(send_smtplib, lab.port(25), "x@fabrikam.example",
                            ["alice@contoso.com"], "Subject: queued\r\n\r\nbody\r\n")
    events = await _wait_events(lab, lambda ev: any(e["event-id"] == "DEFER" for e in ev))
    defer = next(e for e in events if e["event-id"] == "DEFER")
    assert defer["recipient-address"] == "alice@contoso.com" and defer["recipient-status"]
    await lab.daemon.resume_listener(HOST, 475)
    await _wait_events(lab, lambda ev: any(e["event-id"] == "DELIVER" for e in ev))
