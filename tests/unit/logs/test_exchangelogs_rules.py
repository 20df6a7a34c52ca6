"""tests/exchangelogs.py reads a log as ExchangeLogs does, quirks included (exchange.md §12.7)."""

from __future__ import annotations

import datetime
from pathlib import Path

from tests import exchangelogs

HEADER = ("#Software: Microsoft Exchange Server\r\n#Version: 15.0.0.0\r\n"
          "#Log-type: SMTP Receive Protocol Log\r\n#Date: 2024-03-13T09:00:00.000Z\r\n"
          "#Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,"
          "remote-endpoint,event,data,context\r\n")


def _lines(sid: str, rows: list[tuple[str, str, str]], first: int = 0) -> str:
    return "".join(
        f"2024-03-13T09:59:59.{n:03d}Z,EX01\\Default Frontend EX01,{sid},{first + n},"
        f"10.0.0.1:25,10.0.0.2:5000,{event},{data},{context}\r\n"
        for n, (event, data, context) in enumerate(rows))


def test_rules_and_quirks(tmp_path: Path) -> None:
    a = [("+", "", ""), (">", '"220 ex01.contoso.com Microsoft ESMTP MAIL Service ready at x"', ""),
         ("<", "ehlo client.example", ""), ("<", "MAIL FROM:<a@b.example> SIZE=1", ""),
         ("*", "Tarpit for '0.00:01:05' due to 'DelayedAck'", "Delivered"),
         ("<", "rcpt to:<c@d.example>", ""),
         (">", '"250 2.6.0 <0abc@ex01> [InternalId=42, Hostname=ex01] 12 bytes in 0.1, 1 KB/sec '
               'Queued mail for delivery"', "")]
    b = [("+", "", ""), ("<", "EHLO EHLO.example.ORG", "")]
    (tmp_path / "RECV2024031309-1.LOG").write_text(
        HEADER + _lines("A", a) + _lines("B", b) + _lines("C", [("+", "", "")]), newline="")
    (tmp_path / "RECV2024031310-1.LOG").write_text(
        HEADER + _lines("A", [("-", "", "Local")], len(a))
        + _lines("B", [("-", "", "Remote(ConnectionReset)")], len(b)), newline="")
    found, fragments = exchangelogs.sessions(tmp_path)
    assert fragments == ["C"]  # no `-` line: skipped
    first, second = sorted(found, key=lambda s: s.session_id)
    assert first.server_name_helo == "ex01.contoso.com"
    assert first.client_name_helo == "ehlo client.example"  # Trim("EHLO ") is case-sensitive
    assert (first.mail_from, first.rcpt_to) == ("a@b.example", "c@d.example")
    assert (first.smtp_id, first.internal_id, first.mail_size) == ("abc@ex01", "42", 12)
    assert first.tarpit_duration == datetime.timedelta(seconds=5)  # TimeSpan.Seconds
    assert first.tarpit_message == "DelayedAck"
    assert first.final_status == "OK" and first.sequence_count == len(a) + 1
    assert second.client_name_helo == ".example.ORG"  # the characters of "EHLO " trimmed
    assert second.final_status == "Remote(ConnectionReset)"
