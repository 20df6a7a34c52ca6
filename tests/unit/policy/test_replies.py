"""The end-of-data reply echoes a bounded Message-ID (exchange.md §1.8, §2.5)."""

from __future__ import annotations

from exchsim.policy import replies
from exchsim.policy.dialect import Dialect
from exchsim.policy.replies import ECHOED_ID_MAX, echoed_id, queued, unrecognized

DIALECT = Dialect.of("15.2.1118.7")


def test_a_usual_id_is_echoed_as_it_is() -> None:
    reply = queued("<e6c29c88@Exchange.contoso.com>", 5, "ex01.contoso.com", size=11511,
                   seconds=0.102, dialect=DIALECT)
    assert reply.render() == (
        "250 2.6.0 <e6c29c88@Exchange.contoso.com> [InternalId=5, Hostname=ex01.contoso.com] "
        "11511 bytes in 0.102, 110.208 KB/sec Queued mail for delivery")


def test_a_long_id_is_cut_and_the_reply_stays_one_short_line() -> None:
    long_id = "<" + "a" * 70_000 + "@fabrikam.example>"
    shown = echoed_id(long_id)
    assert len(shown) == ECHOED_ID_MAX and shown == long_id[:ECHOED_ID_MAX - 3] + "..."
    reply = queued(long_id, 5, "ex01.contoso.com", size=70_100, seconds=0.5, dialect=DIALECT)
    [line] = reply.lines()
    assert len(line.encode()) < 512


def test_an_id_of_exactly_the_bound_is_not_cut() -> None:
    exact = "<" + "b" * (ECHOED_ID_MAX - 2) + ">"
    assert echoed_id(exact) == exact


def test_control_characters_are_not_echoed() -> None:
    assert echoed_id("<a\x00b\x1bc\x7f@x>") == "<a?b?c?@x>"


def test_an_unknown_verb_is_quoted_only_on_15_2_and_only_when_printable() -> None:
    modern, older = Dialect.of("15.2"), Dialect.of("15.1")
    assert unrecognized("FOO", modern).render() == "500 5.3.3 Unrecognized command 'FOO'"
    for verb in ("", "QUIT\n!", "NO\x00OP", "ÉHLO", "A B", "\udcfc"):
        reply = unrecognized(verb, modern)
        assert reply.render() == "500 5.3.3 Unrecognized command 'unknown'"
        assert reply.lines() == [reply.render()]  # one line: nothing of the client's echoed
    assert unrecognized("QUIT\n!", older).render() == "500 5.3.3 Unrecognized command"


def test_the_front_ends_dsn_line_round_trips_and_is_only_read_as_the_last_line() -> None:
    remote = replies.Reply(250, "2.0.0", "OK queued")
    marked = replies.with_dsn_passed_on(remote)
    assert marked.render() == "250-2.0.0 OK queued\r\n250 X-DSN-PASSED-ON"
    assert replies.dsn_passed_on(marked) == (remote, True)
    assert replies.dsn_passed_on(remote) == (remote, False)
    odd = replies.Reply(250, None, "X-DSN-PASSED-ON")  # a one-line reply is the remote's own
    assert replies.dsn_passed_on(odd) == (odd, False)
