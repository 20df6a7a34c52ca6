"""Golden transcripts of the session core, without sockets: client lines in, exact replies and
actions out, for each setup connector and each verb's sequence errors.

Each transcript is fed whole, line by line and byte by byte; the server's output must be the
same every way (the core frames the input itself). Timeouts and tarpits are driven by the
time the test passes in: nothing here sleeps.
"""

from __future__ import annotations

import pytest

from exchsim.policy.permissions import Identity, IdentityKind
from exchsim.policy.verbs import VERBS
from exchsim.smtp.protocol import Mode
from tests.unit.policy.test_ehlo import (
    CLIENT_FRONTEND_2019,
    DEFAULT_FRONTEND_2019,
    HUB_DEFAULT_2016,
)
from tests.unit.smtp.harness import BANNER_DATE, PORTS, Runtime, Transcript, lab_with

HUB_DEFAULT_2019 = [*HUB_DEFAULT_2016[:12], "SMTPUTF8", *HUB_DEFAULT_2016[12:]]
CLIENT_PROXY_2019 = [k if k != "AUTH NTLM" else "AUTH GSSAPI NTLM" for k in HUB_DEFAULT_2019]
CLIENT_PROXY_2019[0] = "SIZE 37748736"
MAILBOX_DELIVERY_2019 = [
    "SIZE 37748736", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "X-ANONYMOUSTLS",
    "X-EXPS GSSAPI NTLM", "8BITMIME", "BINARYMIME", "CHUNKING", "XEXCH50", "SMTPUTF8",
]
EHLO = {
    "Default Frontend EX01": DEFAULT_FRONTEND_2019,
    "Client Frontend EX01": CLIENT_FRONTEND_2019,
    "Outbound Proxy Frontend EX01": DEFAULT_FRONTEND_2019,
    "Default EX01": HUB_DEFAULT_2019,
    "Client Proxy EX01": CLIENT_PROXY_2019,
    "Mailbox Delivery EX01": MAILBOX_DELIVERY_2019,
}

# Five protocol errors (the setup connectors allow five), every greeting, then QUIT.
SCRIPT = [
    "MAIL FROM:<someone@fabrikam.example>",
    "AUTH LOGIN",
    "HELO client.example",
    "RCPT TO:<alice@contoso.com>",
    "DATA",
    "EHLO client.example",
    "NOOP",
    "XPROXYFROM SID=1 IP=192.0.2.9 PORT=1 DOMAIN=x PERMS=0 AUTHSRC=Anonymous",
    "RSET",
    "QUIT",
]


def expected(name: str) -> str:
    modern_475 = name.startswith("Mailbox Delivery")
    hello = "503 5.5.1 Bad sequence of commands" if modern_475 else "503 5.5.2 Send hello first"
    need_mail = "503 5.5.1 Bad sequence of commands" if modern_475 else "503 5.5.2 Need mail command"
    text = f"Microsoft ESMTP MAIL Service ready at {BANNER_DATE}"
    banner = f"ex01.contoso.com {text.upper() if modern_475 else text}"
    keywords = EHLO[name]
    ehlo = ["250-ex01.contoso.com Hello [127.0.0.1]",
            *(f"250-{k}" for k in keywords[:-1]), f"250 {keywords[-1]}"]
    lines = [
        f"220 {banner}",
        hello,
        hello,
        "250 ex01.contoso.com Hello [127.0.0.1]",
        need_mail,
        need_mail,
        *ehlo,
        "250 2.0.0 OK",
        "500 5.3.3 Unrecognized command 'XPROXYFROM'",
        "250 2.0.0 Resetting",
        "221 2.0.0 Service closing transmission channel",
    ]
    return "".join(f"{line}\r\n" for line in lines)


LAB = lab_with()


@pytest.fixture
def runtime() -> Runtime:
    return Runtime(LAB)


@pytest.mark.parametrize("name", list(PORTS))
@pytest.mark.parametrize("feeding", ["whole", "lines", "bytes"])
def test_golden_transcript_of_each_setup_connector(runtime: Runtime, name: str,
                                                    feeding: str) -> None:
    t = Transcript(runtime, PORTS[name])
    script = "".join(f"{line}\r\n" for line in SCRIPT).encode()
    if feeding == "whole":
        t.feed(script)
    elif feeding == "lines":
        for line in SCRIPT:
            t.say(line)
    else:
        t.feed(script, piece=1)
    assert t.output.decode() == expected(name)
    assert t.closed and t.core.mode is Mode.CLOSED
    # Five errors, each tarpitted (TarpitInterval 5 s on every setup connector), none slept.
    assert t.tarpits == [5.0] * 5
    # Pipelined as one group: the replies go out together, except that the replies before a
    # tarpitted one are sent before its wait (none is held for another's delay).
    if feeding == "whole":
        assert t.kinds == ["Send", "Receive", "Tarpit", *["Send", "Tarpit"] * 4, "Send", "Close"]


SEQUENCE_CASES = [
    # MAIL: needs a greeting, refused inside a transaction
    ([], "MAIL FROM:<a@fabrikam.example>", "503 5.5.2 Send hello first"),
    (["EHLO c", "MAIL FROM:<a@fabrikam.example>"], "MAIL FROM:<b@fabrikam.example>",
     "503 5.5.2 Sender already specified"),
    # RCPT: needs MAIL
    ([], "RCPT TO:<alice@contoso.com>", "503 5.5.2 Send hello first"),
    (["EHLO c"], "RCPT TO:<alice@contoso.com>", "503 5.5.2 Need mail command"),
    # DATA: needs MAIL and a recipient, not after BDAT chunks
    ([], "DATA", "503 5.5.2 Send hello first"),
    (["EHLO c"], "DATA", "503 5.5.2 Need mail command"),
    (["EHLO c", "MAIL FROM:<a@fabrikam.example>"], "DATA", "503 5.5.2 Need rcpt command"),
    (["EHLO c", "MAIL FROM:<a@fabrikam.example>", "RCPT TO:<alice@contoso.com>", "BDAT 0"],
     "DATA", "503 5.5.1 Bad sequence of commands"),
    # BDAT: the same, after its arguments
    (["EHLO c"], "BDAT 0", "503 5.5.2 Need mail command"),  # (a chunk is read first)
    (["EHLO c"], "BDAT ten", "501 5.5.4 Invalid arguments"),
    # AUTH: needs EHLO (HELO is not enough), refused inside a transaction
    ([], "AUTH LOGIN", "503 5.5.2 Send hello first"),
    (["HELO c"], "AUTH LOGIN", "503 5.5.2 Send hello first"),
    (["EHLO c", "MAIL FROM:<a@fabrikam.example>"], "AUTH LOGIN",
     "503 5.5.1 Bad sequence of commands"),
    (["EHLO c"], "AUTH PLAIN", "504 5.7.4 Unrecognized authentication type"),
    # X-EXPS: needs EHLO
    (["HELO c"], "X-EXPS GSSAPI", "503 5.5.2 Send hello first"),
    # Exchange-only verbs from an anonymous client: unknown
    (["EHLO c"], "XPROXY SID=1 IP=1.2.3.4", "500 5.3.3 Unrecognized command 'XPROXY'"),
    (["EHLO c"], "XSESSIONPARAMS", "500 5.3.3 Unrecognized command 'XSESSIONPARAMS'"),
    # XPROXYTO only inside X-ANONYMOUSTLS on Outbound Proxy Frontend, for Exchange servers
    (["EHLO c"], "XPROXYTO DESTINATIONS=[127.0.0.1]:25 LAST=True",
     "500 5.3.3 Unrecognized command 'XPROXYTO'"),
    # XEXCH50 is not offered on the Front End
    (["EHLO c"], "XEXCH50 16 2", "500 5.3.3 Unrecognized command 'XEXCH50'"),
    # STARTTLS with an argument; unknown verbs
    (["EHLO c"], "STARTTLS now", "500 5.3.3 Unrecognized command 'STARTTLS'"),
    ([], "VERB", "500 5.3.3 Unrecognized command 'VERB'"),
    ([], "HELO bad_name!", "501 5.5.4 Invalid domain name"),
    # verbs without preconditions
    ([], "NOOP", "250 2.0.0 OK"),
    ([], "RSET", "250 2.0.0 Resetting"),
    ([], "VRFY alice", "252 2.1.5 Cannot VRFY user"),
    ([], "EXPN list", "502 5.3.3 Command not implemented"),
]


@pytest.mark.parametrize(("setup", "line", "reply"), SEQUENCE_CASES)
def test_sequence_errors_of_each_verb(runtime: Runtime, setup: list[str], line: str,
                                      reply: str) -> None:
    t = Transcript(runtime, 25)
    t.say(*setup)
    assert t.say(line) == reply + "\r\n"


def test_every_verb_of_the_table_has_a_sequence_case() -> None:
    covered = {line.split()[0] for _, line, _ in SEQUENCE_CASES}
    covered |= {"HELO", "EHLO", "QUIT", "HELP", "STARTTLS", "X-ANONYMOUSTLS", "XPROXYFROM"}
    assert set(VERBS) <= covered


def test_xexch50_on_the_hub_checks_arguments_and_right_before_sequence(runtime: Runtime) -> None:
    t = Transcript(runtime, 2525)
    t.say("EHLO c")
    assert t.say("XEXCH50 sixteen") == "501 5.5.4 Invalid arguments\r\n"
    assert t.say("XEXCH50 16 2") == "504 5.7.1 Not authorized\r\n"


def test_max_protocol_errors_closes_after_the_limit(runtime: Runtime) -> None:
    t = Transcript(runtime, 25)
    out = t.say(*["FOO"] * 7)
    assert out.count("500 5.3.3") == 5
    assert out.endswith(
        "421 4.7.0 Too many errors on this connection, closing transmission channel\r\n")
    assert t.closed


def test_tarpit_is_an_action_and_trusted_peers_skip_it() -> None:
    rt = Runtime(lab_with('  - {Name: Default Frontend EX01, Server: EX01, '
                          'TarpitInterval: "00:00:07"}'))
    t = Transcript(rt, 25)
    t.say("FOO")
    assert t.tarpits == [7.0]
    log = rt.logs[-1].events
    assert ("*", "Tarpit for '0.00:00:07'", "") in log  # in the data field (exchange.md §12.7)
    # An Exchange server (or a partner) is never tarpitted (exchange.md §1.9).
    t.core.set_identity(Identity(IdentityKind.EXCHANGE_SERVER, "ex02.contoso.com", "0c"))
    t.say("FOO")
    assert t.tarpits == [7.0]
    assert t.output.decode().count("500 5.3.3") == 2


def test_inactivity_and_connection_timeouts_by_the_injected_clock() -> None:
    rt = Runtime(lab_with('  - {Name: Default Frontend EX01, Server: EX01, '
                          'ConnectionInactivityTimeout: "00:00:30", '
                          'ConnectionTimeout: "00:02:00"}'))
    t = Transcript(rt, 25)
    assert t.receive is not None and t.receive.idle == 30.0 and t.receive.deadline == 120.0
    t.now = 30.0
    t._take(t.core.timed_out(t.now))
    assert t.output.decode().endswith("451 4.7.0 Timeout waiting for client input\r\n")
    assert t.closed

    t = Transcript(rt, 25)
    t.now = 100.0
    t.say("EHLO c")
    assert t.receive is not None and t.receive.deadline == 120.0
    t.now = 120.0
    t._take(t.core.timed_out(t.now))
    assert t.output.decode().endswith("421 4.4.1 Connection timed out\r\n")


def test_connection_timeout_holds_in_data_and_bdat_too() -> None:
    # Issue 7: one byte every few seconds used to keep a DATA session open past ConnectionTimeout.
    rt = Runtime(lab_with('  - {Name: Default Frontend EX01, Server: EX01, '
                          'ConnectionInactivityTimeout: "00:00:30", '
                          'ConnectionTimeout: "00:02:00"}'))
    for start in ("DATA", "BDAT 100"):
        t = Transcript(rt, 25)
        t.say("EHLO c", "MAIL FROM:<a@fabrikam.example>", "RCPT TO:<alice@contoso.com>", start)
        assert t.core.mode in (Mode.DATA, Mode.CHUNK)
        assert t.receive is not None and t.receive.deadline == 120.0 and t.receive.idle == 30.0
        t.now = 100.0
        t.feed(b"x")  # a byte now and then: inactivity restarts, the deadline does not move
        assert t.receive is not None and t.receive.deadline == 120.0
        t.now = 120.0
        t._take(t.core.timed_out(t.now))
        assert t.output.decode().endswith("421 4.4.1 Connection timed out\r\n") and t.closed


@pytest.mark.parametrize("piece", [0, 1, 3, 7])
def test_data_message_is_handed_over_with_its_context(runtime: Runtime, piece: int) -> None:
    t = Transcript(runtime, 25)
    out = t.feed(b"EHLO client.example\r\nMAIL FROM:<a@fabrikam.example>\r\n"
                 b"RCPT TO:<alice@contoso.com>\r\nDATA\r\nSubject: x\r\n\r\n..dot\r\n.\r\n"
                 b"QUIT\r\n", piece=piece)
    assert "354 Start mail input; end with <CRLF>.<CRLF>\r\n" in out
    assert "250 2.6.0 <m@x>" in out and out.endswith("221 2.0.0 Service closing "
                                                     "transmission channel\r\n")
    [message] = t.delivered
    assert message.data == b"Subject: x\r\n\r\n.dot\r\n"
    assert message.recipients == ("alice@contoso.com",)
    assert message.context.helo == "client.example" and message.context.sequence == 1
    assert message.context.local.port == 25 and message.context.peer.ip == "127.0.0.1"
    assert message.context.connector.name == "Default Frontend EX01"


@pytest.mark.parametrize("piece", [0, 1, 5])
def test_bdat_chunks_pipelined_in_any_pieces(runtime: Runtime, piece: int) -> None:
    t = Transcript(runtime, 25)
    out = t.feed(b"EHLO c\r\nMAIL FROM:<a@fabrikam.example>\r\nRCPT TO:<alice@contoso.com>\r\n"
                 b"BDAT 5\r\nab\r\ncBDAT 4 LAST\r\nde\r\n", piece=piece)
    assert "250 2.6.0 CHUNK received OK, 5 octets\r\n" in out
    [message] = t.delivered
    assert message.data == b"ab\r\ncde\r\n"


def test_a_pipelined_group_gets_one_write_with_the_transport_reply(runtime: Runtime) -> None:
    # How the hop client talks to the hub: MAIL, RCPT and BDAT LAST in one write.
    t = Transcript(runtime, 25)
    t.say("EHLO c")
    before = len(t.kinds)
    out = t.feed(b"MAIL FROM:<a@fabrikam.example>\r\nRCPT TO:<alice@contoso.com>\r\n"
                 b"BDAT 4 LAST\r\nab\r\n")
    assert t.kinds[before:] == ["Deliver", "Send", "Receive"]
    assert out == ("250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n"
                   "250 2.6.0 <m@x> [InternalId=1, Hostname=ex01.contoso.com] 0 bytes in 0.000, "
                   "0.000 KB/sec Queued mail for delivery\r\n")


def test_past_the_recipient_limit_one_wait_per_transaction_and_no_held_replies() -> None:
    # Issue 7: 10,000 pipelined RCPTs past the limit used to wait 5 s each before any reply.
    rt = Runtime(lab_with("  - {Name: Default Frontend EX01, Server: EX01, "
                          "MaxRecipientsPerMessage: 2}"))
    t = Transcript(rt, 25)
    t.say("EHLO c")
    before = len(t.kinds)
    rcpts = "".join(f"RCPT TO:<r{n}@contoso.com>\r\n" for n in range(10))
    out = t.feed(f"MAIL FROM:<a@fabrikam.example>\r\n{rcpts}".encode())
    assert out.count("250 2.1.5 Recipient OK") == 2
    assert out.count("452 4.5.3 Too many recipients") == 8
    assert t.tarpits == [5.0]
    # The replies before the delayed one went out before the wait.
    assert t.kinds[before:] == ["Send", "Tarpit", "Send", "Receive"]
    # A new transaction waits again, once.
    t.say("RSET", "MAIL FROM:<a@fabrikam.example>", *(f"RCPT TO:<r{n}@contoso.com>"
                                                      for n in range(4)))
    assert t.tarpits == [5.0, 5.0]


@pytest.mark.parametrize("empty", [b"BDAT 0 LAST\r\n", b"DATA\r\n.\r\n"])
def test_an_empty_message_is_refused(runtime: Runtime, empty: bytes) -> None:
    t = Transcript(runtime, 25)
    t.say("EHLO c", "MAIL FROM:<a@fabrikam.example>", "RCPT TO:<alice@contoso.com>")
    out = t.feed(empty)
    assert out.endswith("554 5.6.0 Invalid message content\r\n")
    assert t.delivered == []
    assert t.say("MAIL FROM:<a@fabrikam.example>") == "250 2.1.0 Sender OK\r\n"


def test_memory_of_a_session_is_bounded_whatever_the_client_sends() -> None:
    # Issue 7, finding 3: a DATA line without CRLF was kept whole before the size was checked;
    # a BDAT chunk declared far over the limit was read into memory.
    rt = Runtime(lab_with("  - {Name: Default Frontend EX01, Server: EX01, "
                          "MaxMessageSize: 1MB}"))
    t = Transcript(rt, 25)
    t.say("EHLO c", "MAIL FROM:<a@fabrikam.example>", "RCPT TO:<alice@contoso.com>", "DATA")
    for _ in range(40):  # 10 MB in one line, no line end
        t.feed(b"x" * 256 * 1024)
        assert t.core._data is not None and t.core._data.held <= 1024 * 1024 + 256 * 1024
    assert t.core._data.overflow and t.core._data.held <= 4
    assert t.feed(b"\r\n.\r\n").endswith(
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n")

    t.say("MAIL FROM:<a@fabrikam.example>", "RCPT TO:<alice@contoso.com>")
    t.feed(b"BDAT 100000000000000000000 LAST\r\n")
    for _ in range(40):
        t.feed(b"y" * 256 * 1024)
    assert t.core.txn is not None and t.core.txn.chunks == bytearray()
    assert len(t.core._buf) == 0  # read and dropped as it comes
    assert t.delivered == []


def test_refused_bdat_chunk_is_read_and_dropped(runtime: Runtime) -> None:
    t = Transcript(runtime, 25)
    out = t.feed(b"EHLO c\r\nBDAT 6\r\nNOOP\r\nNOOP\r\n")
    assert out.endswith("503 5.5.2 Need mail command\r\n250 2.0.0 OK\r\n")


def test_starttls_discards_what_was_pipelined_in_plain_text(runtime: Runtime) -> None:
    t = Transcript(runtime, 25)
    out = t.feed(b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<injected@fabrikam.example>\r\n")
    assert out.endswith("220 2.0.0 SMTP server ready\r\n")
    assert t.kinds[-2:] == ["StartTls", "Receive"]
    assert t.core.tls is not None and t.core.greeting is None
    assert t.say("MAIL FROM:<a@fabrikam.example>") == "503 5.5.2 Send hello first\r\n"
    t.say("EHLO c")
    assert t.say("STARTTLS") == "503 5.5.2 Only one STARTTLS command can be issued per session\r\n"


def test_auth_login_is_a_state_of_the_core() -> None:
    rt = Runtime(lab_with('  - {Name: Client Frontend EX01, Server: EX01, '
                          'AuthTarpitInterval: "00:00:03"}'))
    t = Transcript(rt, 587)
    t.feed(b"EHLO c\r\nSTARTTLS\r\n")
    t.say("EHLO c")
    assert t.say("AUTH LOGIN") == "334 VXNlcm5hbWU6\r\n"
    assert t.core.mode is Mode.AUTH
    assert t.say("YWxpY2VAY29udG9zby5jb20=") == "334 UGFzc3dvcmQ6\r\n"
    assert t.say("d3Jvbmc=") == "535 5.7.3 Authentication unsuccessful\r\n"
    assert t.tarpits == [3.0]
    # The log shows the challenges redacted and none of the client's AUTH lines (exchange.md §1.7).
    events = rt.logs[-1].events
    auth = [e for e in events[events.index(("<", "AUTH LOGIN", "")):] if e[0] in "<>"]
    assert auth == [("<", "AUTH LOGIN", ""), (">", "334 <authentication response>", ""),
                    (">", "334 <authentication response>", ""),
                    (">", "535 5.7.3 Authentication unsuccessful", "")]
    assert t.say("AUTH LOGIN YWxpY2VAY29udG9zby5jb20=") == "334 UGFzc3dvcmQ6\r\n"
    assert t.say("UEBzc3cwcmQh") == "235 2.7.0 Authentication successful\r\n"
    assert t.core.identity.name == "alice@contoso.com"
    assert t.say("AUTH LOGIN") == "503 5.5.2 Auth command already specified\r\n"


def test_command_too_long_closes(runtime: Runtime) -> None:
    t = Transcript(runtime, 25)
    out = t.feed(b"NOOP " + b"x" * 5000)  # no line end yet: the core does not wait for one
    assert out == "500 5.5.2 Command too long\r\n" and t.closed


def test_an_endless_auth_line_is_refused_and_not_logged(runtime: Runtime) -> None:
    t = Transcript(runtime, 25)
    t.feed(b"EHLO c\r\nSTARTTLS\r\n")
    assert t.say("EHLO c", "AUTH LOGIN").endswith("334 VXNlcm5hbWU6\r\n")
    secret = b"c2VjcmV0" * 5000  # 40,000 bytes of a would-be token, no line end
    assert t.feed(secret) == "500 5.5.2 Command too long\r\n" and t.closed
    logged = " ".join(data for _, data, _ in runtime.logs[-1].events)
    assert "c2VjcmV0" not in logged and "334 <authentication response>" in logged


def test_lines_after_a_refused_auth_are_not_logged(runtime: Runtime) -> None:
    t = Transcript(runtime, 25)
    t.say("EHLO c", "AUTH PLAIN", "c2VjcmV0", "NOOP", "other")
    events = runtime.logs[-1].events
    assert not any("C2VJCMV0" in data.upper() for _, data, _ in events)
    assert ("<", "<authentication information>", "") in events
    assert (">", "500 5.3.3 Unrecognized command '<authentication information>'", "") in events
    assert ("<", "other", "") in events  # after a command, lines are logged again


def test_connection_limit_refuses_before_the_banner() -> None:
    rt = Runtime(lab_with("  - {Name: Default Frontend EX01, Server: EX01, "
                          "MaxInboundConnectionPerSource: 1}"))
    first = Transcript(rt, 25)
    second = Transcript(rt, 25)
    assert second.output.decode().startswith("421 4.3.2 The maximum number of concurrent "
                                             "connections has exceeded a limit")
    assert second.closed and not first.closed
    second.core.connection_lost()
    first.core.connection_lost()
    assert sum(rt.admitted.values()) == 0


# Odd input (exchange.md §1.8.1): what an unknown verb's reply quotes, and a lone LF.
ODD_VERBS = [
    (b"FOO bar", "500 5.3.3 Unrecognized command 'FOO'"),  # printable: the verb, not the line
    (b"", "500 5.3.3 Unrecognized command 'unknown'"),  # an empty line
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "500 5.3.3 Unrecognized command 'unknown'"),
    ("ÉHLO c".encode(), "500 5.3.3 Unrecognized command 'unknown'"),  # not ASCII
    (b"NO\x00OP", "500 5.3.3 Unrecognized command 'unknown'"),  # a NUL
]


@pytest.mark.parametrize(("line", "reply"), ODD_VERBS)
@pytest.mark.parametrize("feeding", ["whole", "bytes"])
def test_an_unknown_verb_is_quoted_only_when_printable(runtime: Runtime, line: bytes,
                                                       reply: str, feeding: str) -> None:
    t = Transcript(runtime, 25)
    assert t.feed(line + b"\r\n", piece=1 if feeding == "bytes" else 0) == reply + "\r\n"
    # The protocol log keeps what came; the reply never echoes the client's bytes.
    assert ("<", line.decode("utf-8", "surrogateescape"), "") in runtime.logs[-1].events


def test_a_lone_lf_does_not_end_a_command_line(runtime: Runtime) -> None:
    t = Transcript(runtime, 25)
    # Exchange Online answered this line (a PROXY v2 header's tail, then EHLO) once, after
    # the tarpit, and did not quit (exchange.md §1.8.1).
    line = b"QUIT\n!\x11\x00\x0c\xac\x12\x00\x01\xac\x12\x00\x08\xd4p\x00\x19EHLO [192.0.2.1]\r\n"
    assert t.feed(line) == "500 5.3.3 Unrecognized command 'unknown'\r\n"
    assert not t.closed and t.tarpits == [5.0]
    # LF-only line endings: nothing is a command until a CRLF comes.
    assert t.feed(b"EHLO c\nNOOP\n") == ""
    assert t.feed(b"\r\n") == "501 5.5.4 Invalid domain name\r\n"
    t.say("EHLO c")
    assert t.feed(b"MAIL FROM:<a@fabrikam.example>\nRCPT TO:<alice@contoso.com>\r\n") == (
        "501 5.5.4 Unrecognized parameter\r\n")
    assert t.core.txn is None  # no transaction was opened by the smuggled line
    assert t.say("NOOP") == "250 2.0.0 OK\r\n"


def test_tarpitted_replies_of_a_pipelined_group_come_each_after_its_own_delay(
        runtime: Runtime) -> None:
    t = Transcript(runtime, 25)
    t.say("EHLO c")
    start, first = len(t.kinds), len(t.sends)
    t.say("MAIL FROM:<a@fabrikam.example>", "RCPT TO:<x@fabrikam.example>",
          "RCPT TO:<y@fabrikam.example>", "RCPT TO:<alice@contoso.com>")
    # The 250 is not held for the first 550's delay; each 550 waits its own TarpitInterval;
    # the 250 after the last 550 goes with it.
    assert t.kinds[start:] == ["Send", "Tarpit", "Send", "Tarpit", "Send", "Receive"]
    relay = b"550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain\r\n"
    assert t.sends[first:] == [b"250 2.1.0 Sender OK\r\n", relay, relay + b"250 2.1.5 Recipient OK\r\n"]
    # The protocol log: the group as read, each reply when it goes out (exchange.md §12.7).
    events = [(e, d) for e, d, _ in runtime.logs[-1].events[-11:]]
    assert events == [
        ("<", "MAIL FROM:<a@fabrikam.example>"), ("*", events[1][1]),
        ("<", "RCPT TO:<x@fabrikam.example>"), ("*", "Tarpit for '0.00:00:05'"),
        (">", "250 2.1.0 Sender OK"),
        ("<", "RCPT TO:<y@fabrikam.example>"), ("*", "Tarpit for '0.00:00:05'"),
        (">", relay.decode().rstrip()),
        ("<", "RCPT TO:<alice@contoso.com>"),
        (">", relay.decode().rstrip()), (">", "250 2.1.5 Recipient OK"),
    ]
