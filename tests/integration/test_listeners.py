"""The six listeners of configs/single-server.yaml: banner, EHLO before and after STARTTLS (exchange.md §1.5)."""

from __future__ import annotations

import asyncio
import re
import shutil
import smtplib
import ssl

import pytest

from tests.integration.conftest import RawClient, RunningLab

HOST = "127.0.10.1"
FE_25 = ["SIZE 37748736", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "STARTTLS",
         "X-ANONYMOUSTLS", "AUTH NTLM", "X-EXPS GSSAPI NTLM", "8BITMIME", "BINARYMIME",
         "CHUNKING", "SMTPUTF8", "XRDST"]
FE_25_TLS = ["SIZE 37748736", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "AUTH NTLM LOGIN",
             "X-EXPS GSSAPI NTLM", "8BITMIME", "BINARYMIME", "CHUNKING", "SMTPUTF8", "XRDST"]
CLIENT_587 = ["SIZE 37748736", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "STARTTLS",
              "AUTH GSSAPI NTLM", "8BITMIME", "BINARYMIME", "CHUNKING", "SMTPUTF8"]
CLIENT_587_TLS = ["SIZE 37748736", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES",
                  "AUTH GSSAPI NTLM LOGIN", "8BITMIME", "BINARYMIME", "CHUNKING", "SMTPUTF8"]
HUB_2525 = ["SIZE", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "STARTTLS", "X-ANONYMOUSTLS",
            "AUTH NTLM", "X-EXPS GSSAPI NTLM", "8BITMIME", "BINARYMIME", "CHUNKING", "XEXCH50",
            "SMTPUTF8", "XRDST", "XSHADOWREQUEST"]
HUB_2525_TLS = ["SIZE", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "AUTH NTLM LOGIN",
                "X-EXPS GSSAPI NTLM", "8BITMIME", "BINARYMIME", "CHUNKING", "XEXCH50",
                "SMTPUTF8", "XRDST", "XSHADOWREQUEST"]
PROXY_465 = ["SIZE 37748736", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "STARTTLS",
             "X-ANONYMOUSTLS", "AUTH GSSAPI NTLM", "X-EXPS GSSAPI NTLM", "8BITMIME",
             "BINARYMIME", "CHUNKING", "XEXCH50", "SMTPUTF8", "XRDST", "XSHADOWREQUEST"]
PROXY_465_TLS = [k.replace("AUTH GSSAPI NTLM", "AUTH GSSAPI NTLM LOGIN") for k in PROXY_465
                 if k not in ("STARTTLS", "X-ANONYMOUSTLS")]
DELIVERY_475 = ["SIZE 37748736", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "X-ANONYMOUSTLS",
                "X-EXPS GSSAPI NTLM", "8BITMIME", "BINARYMIME", "CHUNKING", "XEXCH50", "SMTPUTF8"]

BANNER = re.compile(
    r"^ex01\.contoso\.com Microsoft ESMTP MAIL Service ready at "
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [1-9]\d? [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$"
)


def ehlo_lines(port: int, starttls: bool) -> tuple[str, list[str], list[str] | None]:
    """smtplib: banner, EHLO keyword lines, and after STARTTLS the second EHLO's lines."""
    with smtplib.SMTP(HOST, port, local_hostname="client.example", timeout=10) as client:
        code, msg = client.ehlo()
        assert code == 250
        lines = msg.decode().split("\n")
        assert lines[0] == "ex01.contoso.com Hello [127.0.0.1]"
        after = None
        if starttls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            code, text = client.starttls(context=ctx)
            assert (code, text) == (220, b"2.0.0 SMTP server ready")
            code, msg = client.ehlo()
            after = msg.decode().split("\n")[1:]
        return lines[0], lines[1:], after


@pytest.mark.parametrize(
    ("port", "before", "after"),
    [(25, FE_25, FE_25_TLS), (587, CLIENT_587, CLIENT_587_TLS), (717, FE_25, FE_25_TLS),
     (2525, HUB_2525, HUB_2525_TLS), (465, PROXY_465, PROXY_465_TLS), (475, DELIVERY_475, None)],
)
async def test_ehlo_before_and_after_starttls(
    lab: RunningLab, port: int, before: list[str], after: list[str] | None
) -> None:
    _, got_before, got_after = await asyncio.to_thread(
        ehlo_lines, lab.port(port), after is not None)
    assert got_before == before
    assert got_after == after


@pytest.mark.parametrize("port", [25, 587, 717, 2525, 465])
async def test_banner_is_exchanges(lab: RunningLab, port: int) -> None:
    client = await RawClient.connect(HOST, lab.port(port))
    banner = await client.reply()
    client.close()
    assert banner.startswith("220 ")
    assert BANNER.match(banner[4:]), banner


async def test_mailbox_delivery_banner_is_upper_case_on_2019(lab: RunningLab) -> None:
    client = await RawClient.connect(HOST, lab.port(475))
    banner = await client.reply()
    assert re.match(r"^220 ex01\.contoso\.com MICROSOFT ESMTP MAIL SERVICE READY AT [A-Z]{3}, ",
                    banner)
    assert await client.cmd("MAIL FROM:<a@b.example>") == "503 5.5.1 Bad sequence of commands"
    client.close()


@pytest.mark.parametrize("port", [2525, 465, 717])
async def test_non_exchange_client_on_internal_listeners(lab: RunningLab, port: int) -> None:
    client = await RawClient.connect(HOST, lab.port(port))
    await client.reply()
    assert await client.cmd("MAIL FROM:<a@b.example>") == "503 5.5.2 Send hello first"
    assert await client.cmd("RCPT TO:<a@b.example>") == "503 5.5.2 Send hello first"
    assert await client.cmd("FOO") == "500 5.3.3 Unrecognized command 'FOO'"
    client.close()


async def test_other_commands(lab: RunningLab) -> None:
    client = await RawClient.connect(HOST, lab.port(25))
    await client.reply()
    assert await client.cmd("HELO client.example") == "250 ex01.contoso.com Hello [127.0.0.1]"
    assert await client.cmd("NOOP") == "250 2.0.0 OK"
    assert await client.cmd("RSET") == "250 2.0.0 Resetting"
    assert await client.cmd("HELP") == (
        "214-This server supports the following commands:\r\n"
        "214 HELO EHLO STARTTLS RCPT DATA RSET MAIL QUIT HELP AUTH BDAT")
    assert await client.cmd("VRFY alice") == "252 2.1.5 Cannot VRFY user"
    assert await client.cmd("EXPN all") == "502 5.3.3 Command not implemented"
    assert await client.cmd("RCPT TO:<alice@contoso.com>") == "503 5.5.2 Need mail command"
    assert await client.cmd("DATA") == "503 5.5.2 Need mail command"
    assert await client.cmd("MAIL FROM:<a@b.example>") == "250 2.1.0 Sender OK"
    assert await client.cmd("MAIL FROM:<a@b.example>") == "503 5.5.2 Sender already specified"
    assert await client.cmd("DATA") == "503 5.5.2 Need rcpt command"
    assert await client.cmd("QUIT") == "221 2.0.0 Service closing transmission channel"
    assert await client.closed()


async def test_max_protocol_errors_closes_the_session(lab: RunningLab) -> None:
    client = await RawClient.connect(HOST, lab.port(25))
    await client.reply()
    for _ in range(5):
        assert (await client.cmd("BOGUS")).startswith("500 5.3.3")
    assert await client.cmd("BOGUS") == (
        "421 4.7.0 Too many errors on this connection, closing transmission channel")
    assert await client.closed()


async def test_command_too_long(lab: RunningLab) -> None:
    client = await RawClient.connect(HOST, lab.port(25))
    await client.reply()
    assert await client.cmd("NOOP " + "x" * 5000) == "500 5.5.2 Command too long"
    assert await client.closed()


async def s_client(lab: RunningLab, port: int, name: str, stdin: bytes) -> tuple[int, str]:
    """openssl s_client (Debian's openssl): STARTTLS, the server certificate checked against
    EX01's published lab certificate and ``name`` (-verify_return_error: any failure ends it
    with a non-zero exit), then ``stdin`` as SMTP inside TLS. Returns exit code and output."""
    assert shutil.which("openssl"), "openssl is required: apt-get install -y openssl"
    cert = lab.data / "pki" / "servers" / "EX01.crt"
    proc = await asyncio.create_subprocess_exec(
        "openssl", "s_client", "-connect", f"{HOST}:{lab.port(port)}", "-starttls", "smtp",
        "-name", "client.example", "-CAfile", str(cert), "-verify_hostname", name,
        "-verify_return_error", "-crlf", "-quiet",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(stdin), 30)
    return proc.returncode or 0, out.decode("utf-8", "replace")


@pytest.mark.parametrize(("port", "after"), [(25, FE_25_TLS), (587, CLIENT_587_TLS)])
async def test_openssl_s_client_starttls_verifies_the_server_certificate(
    lab: RunningLab, port: int, after: list[str]
) -> None:
    code, text = await s_client(lab, port, "ex01.contoso.com", b"EHLO client.example\nQUIT\n")
    assert code == 0, text
    assert "depth=0 CN = EX01" in text and "verify error" not in text, text
    lines = text.splitlines()
    start = lines.index("250-ex01.contoso.com Hello [127.0.0.1]")  # the EHLO inside TLS
    keywords = lines[start + 1:start + 1 + len(after)]
    assert [line[4:] for line in keywords] == after
    assert keywords[-1].startswith("250 ") and keywords[0].startswith("250-")
    assert lines[start + 1 + len(after)] == "221 2.0.0 Service closing transmission channel"


async def test_openssl_s_client_refuses_a_wrong_name(lab: RunningLab) -> None:
    # The same check can fail: the lab certificate does not carry another host's name.
    code, text = await s_client(lab, 25, "ex02.contoso.com", b"QUIT\n")
    assert code != 0
    assert "hostname mismatch" in text
