"""The send side of the protocol log (exchange.md §6.1): lines, redaction, the switch."""

from __future__ import annotations

import csv
import datetime
from pathlib import Path

import pytest

from exchsim.config.enums import ProtocolLoggingLevel
from exchsim.logs.protocol import ProtocolLog
from exchsim.logs.sendlog import (
    INTRA_ORG_CONNECTOR,
    REDACTED,
    SendProtocolLog,
    redact_command,
)

NOW = datetime.datetime(2024, 3, 13, 9, 1, 18, 723000, tzinfo=datetime.UTC)


def _log(tmp_path: Path) -> SendProtocolLog:
    ids = iter(range(1, 100))
    return SendProtocolLog(ProtocolLog(tmp_path, "SmtpSend", lambda: NOW),
                           lambda: f"08DC42C8FF2{next(ids):05X}")


def _records(tmp_path: Path) -> list[list[str]]:
    [path] = tmp_path.iterdir()
    assert path.name == "SEND2024031309-1.LOG"
    lines = path.read_bytes().decode().split("\r\n")
    assert lines[:3] == ["#Software: Microsoft Exchange Server", "#Version: 15.0.0.0",
                         "#Log-type: SMTP Send Protocol Log"]
    return list(csv.reader(line for line in lines if line[:1].isdigit()))


@pytest.mark.parametrize(("line", "shown", "auth"), [
    ("MAIL FROM:<a@b.example> SIZE=10", "MAIL FROM:<a@b.example> SIZE=10", False),
    ("AUTH LOGIN", "AUTH LOGIN", True),
    ("AUTH LOGIN YWxpY2U=", f"AUTH LOGIN {REDACTED}", True),
    ("AUTH PLAIN AGFsaWNlAHB3", f"AUTH PLAIN {REDACTED}", True),
    ("auth plain AGFsaWNlAHB3", f"auth plain {REDACTED}", True),
    ("X-EXPS EXCHANGEAUTH SHA256 c2VjcmV0", f"X-EXPS EXCHANGEAUTH SHA256 {REDACTED}", True),
    ("X-EXPS GSSAPI YIIG", f"X-EXPS GSSAPI {REDACTED}", True),
])
def test_commands_show_their_mechanism_never_their_secret(line: str, shown: str,
                                                           auth: bool) -> None:
    assert redact_command(line) == (shown, auth)


def test_a_session_in_exchanges_order_and_fields(tmp_path: Path) -> None:
    log = _log(tmp_path)
    s = log.session(INTRA_ORG_CONNECTOR, "127.0.10.2", 475, ProtocolLoggingLevel.VERBOSE)
    assert s is not None
    s.attempting()
    s.connected("127.0.10.1:41000")
    s.received("220 ex02 Microsoft ESMTP MAIL Service ready")
    s.sent("EHLO ex01.contoso.com")
    s.received("250-ex02 Hello [127.0.10.1]\n250-SIZE 37748736\n250 CHUNKING")
    s.sent("AUTH LOGIN")
    s.received("334 VXNlcm5hbWU6")
    s.sent_redacted()
    s.received("334 UGFzc3dvcmQ6")
    s.sent_redacted()
    s.received("235 2.7.0 Authentication successful")
    s.sending_message(27359308677121, "<m@contoso.com>")
    s.sent("MAIL FROM:<alice@contoso.com> SIZE=10")
    s.received("250 2.1.0 Sender OK")
    s.disconnect("Remote")
    s.disconnect("Local")  # written once
    log.close()
    rows = _records(tmp_path)
    assert {r[1] for r in rows} == {INTRA_ORG_CONNECTOR}
    assert {r[2] for r in rows} == {"08DC42C8FF200001"}
    assert [r[3] for r in rows] == [str(n) for n in range(len(rows))]
    assert rows[0][4:] == ["", "127.0.10.2:475", "*", "", "attempting to connect"]
    assert rows[1][4:] == ["127.0.10.1:41000", "127.0.10.2:475", "+", "", ""]
    assert [(r[6], r[7], r[8]) for r in rows[2:]] == [
        ("<", "220 ex02 Microsoft ESMTP MAIL Service ready", ""),
        (">", "EHLO ex01.contoso.com", ""),
        ("<", "250  ex02 Hello [127.0.10.1] SIZE 37748736 CHUNKING", ""),
        (">", "AUTH LOGIN", ""),
        ("<", "334 <authentication response>", ""),
        (">", REDACTED, ""),
        ("<", "334 <authentication response>", ""),
        (">", REDACTED, ""),
        ("<", "235 2.7.0 Authentication successful", ""),
        ("*", "", "sending message with RecordId 27359308677121 and InternetMessageId "
                  "<m@contoso.com>"),
        (">", "MAIL FROM:<alice@contoso.com> SIZE=10", ""),
        ("<", "250 2.1.0 Sender OK", ""),
        ("-", "", "Remote"),
    ]


def test_a_proof_blob_in_235_is_hidden(tmp_path: Path) -> None:
    log = _log(tmp_path)
    s = log.session("Outbound", "127.0.10.2", 25, ProtocolLoggingLevel.VERBOSE)
    assert s is not None
    s.sent("X-EXPS EXCHANGEAUTH SHA256 c2VjcmV0")
    s.received("235 c2VydmVyIHByb29m")
    s.received("250 2.1.0 Sender OK")  # after the exchange: as is
    log.close()
    assert [r[7] for r in _records(tmp_path)] == [
        f"X-EXPS EXCHANGEAUTH SHA256 {REDACTED}", f"235 {REDACTED}", "250 2.1.0 Sender OK"]


def test_level_none_gives_no_session(tmp_path: Path) -> None:
    log = _log(tmp_path)
    assert log.session("Outbound", "127.0.10.2", 25, ProtocolLoggingLevel.NONE) is None
    log.close()
    assert list(tmp_path.iterdir()) == []


def test_tls_lines_name_the_client_side(tmp_path: Path) -> None:
    log = _log(tmp_path)
    s = log.session("Outbound", "::1", 25, ProtocolLoggingLevel.VERBOSE)
    assert s is not None
    s.tls_established("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384", None, None, presented=False)
    s.tls_failed("SSLError: [SSL: WRONG_VERSION_NUMBER] wrong version number")
    log.close()
    rows = _records(tmp_path)
    assert rows[0][5] == "[::1]:25"
    assert rows[0][8] == (
        "TLS protocol SP_PROT_TLS1_2_CLIENT negotiation succeeded using bulk encryption "
        "algorithm CALG_AES_256 with strength 256 bits, MAC hash algorithm CALG_SHA_384 with "
        "strength 0 bits and key exchange algorithm CALG_ECDH_EPHEM with strength 255 bits")
    assert rows[1][8].startswith("TLS negotiation failed with error ")
