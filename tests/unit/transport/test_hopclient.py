"""The hop client against scripted servers on loopback: long replies, and what was sent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from exchsim.transport.hopclient import MAX_REPLY_LINE, MAX_REPLY_LINES, HopClient, HopError

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A one-connection SMTP server that follows a script, then closes its end."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.done = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self.script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.done.set()


async def client_closes(reader: asyncio.StreamReader) -> bool:
    """Whether the client closes the connection within 5 s, whatever it sends first."""
    try:
        async with asyncio.timeout(5.0):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


@asynccontextmanager
async def scripted(script: Script, timeout: float = 5.0) -> AsyncIterator[tuple[Server, HopClient]]:
    server = Server(script)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = await HopClient.open("127.0.0.1", port, timeout=timeout)
    try:
        yield server, client
    finally:
        client.abort()
        listener.close()
        await listener.wait_closed()


async def test_a_reply_line_at_the_bound_is_read_whole() -> None:
    text = "x" * (MAX_REPLY_LINE - len("250 2.6.0 \r\n"))

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"250 2.6.0 {text}\r\n".encode())
        await reader.readline()

    async with scripted(script) as (_, client):
        reply = await client.read_reply()
        assert (reply.code, reply.enhanced, reply.text) == (250, "2.6.0", text)
        assert not client.broken


@pytest.mark.parametrize("size", [MAX_REPLY_LINE + 1, 70_000, 1_000_000])
async def test_a_longer_reply_line_is_a_protocol_error_and_closes_the_hop(size: int) -> None:
    closed: list[bool] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"250 2.6.0 <" + b"a" * size + b"> queued\r\n250 2.0.0 OK\r\n")
        closed.append(await client_closes(reader))

    async with scripted(script) as (server, client):
        with pytest.raises(HopError, match="protocol error"):
            await client.read_reply()
        assert client.broken
        # Closed rather than read on: the rest of the line is never taken for a reply.
        await asyncio.wait_for(server.done.wait(), 6.0)
    assert closed == [True]


async def test_a_reply_of_too_many_lines_is_a_protocol_error() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(MAX_REPLY_LINES * 3):
            writer.write(b"250-PIPELINING\r\n")
        writer.write(b"250 OK\r\n")
        closed.append(await client_closes(reader))

    closed: list[bool] = []
    async with scripted(script) as (server, client):
        with pytest.raises(HopError, match="protocol error"):
            await client.read_reply()
        assert client.broken
        await asyncio.wait_for(server.done.wait(), 6.0)
    assert closed == [True]


async def test_a_multi_line_reply_under_the_bounds_is_read() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"250-ex01.contoso.com Hello\r\n" + b"250-SIZE\r\n" * 30 + b"250 CHUNKING\r\n")
        await reader.readline()

    async with scripted(script) as (_, client):
        reply = await client.read_reply()
        assert reply.code == 250 and len(reply.text.split("\n")) == 32


async def _answer_mail_and_rcpt(reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter, received: list[bytes]) -> None:
    for answer in (b"250 2.1.0 Sender OK\r\n", b"250 2.1.5 Recipient OK\r\n"):
        received.append(await reader.readline())
        writer.write(answer)
        await writer.drain()


async def test_a_drop_after_the_data_is_reported_as_data_sent() -> None:
    received: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _answer_mail_and_rcpt(reader, writer, received)
        received.append(await reader.readline())  # BDAT 6 LAST
        received.append(await reader.readexactly(6))
        # ... committed, and the connection drops before the reply.

    async with scripted(script) as (_, client):
        with pytest.raises(HopError) as raised:
            await client.send_message("a@x.example", "", ["b@y.example"], b"hello\n",
                                      partial=False)
        assert raised.value.data_sent
    assert received[2] == b"BDAT 6 LAST\r\n"


async def test_no_reply_after_the_data_is_reported_as_data_sent() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _answer_mail_and_rcpt(reader, writer, [])
        await reader.readline()
        await asyncio.sleep(2.0)  # longer than the client waits

    async with scripted(script, timeout=0.3) as (_, client):
        with pytest.raises(HopError) as raised:
            await client.send_message("a@x.example", "", ["b@y.example"], b"hello\n",
                                      partial=False)
        assert raised.value.data_sent


async def test_a_drop_before_mail_is_answered_sends_no_data() -> None:
    # All-or-none with several recipients (the Front End): the data waits for MAIL and RCPT,
    # so a hop found dead at MAIL has sent nothing the server could commit, and may be retried.
    received: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(3):
            received.append(await reader.readline())
        with contextlib.suppress(TimeoutError):  # anything more the client sends unanswered
            received.append(await asyncio.wait_for(reader.read(65536), 0.3))

    async with scripted(script) as (server, client):
        with pytest.raises(HopError) as raised:
            await client.send_message("a@x.example", "", ["b@y.example", "c@y.example"],
                                      b"hello\n", partial=False)
        assert not raised.value.data_sent
        await asyncio.wait_for(server.done.wait(), 5.0)
    assert received[:3] == [b"MAIL FROM:<a@x.example>\r\n", b"RCPT TO:<b@y.example>\r\n",
                            b"RCPT TO:<c@y.example>\r\n"]
    assert not any(b"BDAT" in line for line in received)


async def test_a_session_the_server_closed_is_not_usable() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pass  # closes at once: an idle session the server dropped

    async with scripted(script) as (server, client):
        assert client.usable
        await asyncio.wait_for(server.done.wait(), 5.0)
        await asyncio.sleep(0.1)
        assert not client.usable
