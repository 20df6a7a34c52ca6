"""MessageQueue.note: facts added to a queued message's metadata (the delay DSN sent for some
recipients, transport/notify.py), kept across a reopen like the message itself."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from exchsim.transport.queue import MessageQueue

T0 = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)


async def test_note_merges_into_the_metadata_and_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "queue" / "EX01.sqlite"
    queue = await MessageQueue.open(path)
    try:
        item = await queue.enqueue(message_id="<m@contoso.com>", sender="a@contoso.com",
                                   recipients=["b@fabrikam.example"], data=b"Subject: x\r\n\r\n",
                                   metadata={"envid": "E1"}, now=T0)
        await queue.note(item.internal_id, {"delay_dsn": "b@fabrikam.example"})
        with pytest.raises(KeyError):
            await queue.note(item.internal_id + 1, {"delay_dsn": "x"})
    finally:
        await queue.close()
    queue = await MessageQueue.open(path)
    try:
        got = await queue.get(item.internal_id)
        assert got is not None
        assert dict(got.metadata) == {"envid": "E1", "delay_dsn": "b@fabrikam.example"}
        [due] = await queue.due(T0)
        assert due.metadata["delay_dsn"] == "b@fabrikam.example"
    finally:
        await queue.close()
