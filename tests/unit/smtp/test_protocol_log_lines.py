"""Protocol-log lines the session core writes as Exchange does (exchange.md §6.1, §12.7)."""

from __future__ import annotations

import datetime

from tests.unit.smtp.harness import NOW, FixedClock, Runtime, Transcript, lab_with

MESSAGE = "Subject: x\r\n\r\nbody\r\n.\r\n"


class SteppingClock(FixedClock):
    """The wall clock moves on a second at every read."""

    def __init__(self) -> None:
        self.reads = 0

    def utc(self) -> datetime.datetime:
        self.reads += 1
        return NOW + datetime.timedelta(seconds=self.reads)


def test_receiving_message_names_the_session_start_and_the_message_number() -> None:
    rt = Runtime(lab_with())
    rt.clock = SteppingClock()
    t = Transcript(rt, 25)
    t.say("EHLO client.example.org")
    for _ in range(2):
        t.say("MAIL FROM:<a@fabrikam.example>", "RCPT TO:<alice@contoso.com>", "DATA")
        t.feed(MESSAGE.encode())
    events = rt.logs[-1].events
    started = (NOW + datetime.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    assert [data for _, data, context in events if context == "receiving message"] == [
        f"{t.core.session_id};{started};1", f"{t.core.session_id};{started};2"]
    assert t.core.started == NOW + datetime.timedelta(seconds=1)  # read once, at connect
    assert len(t.delivered) == 2
