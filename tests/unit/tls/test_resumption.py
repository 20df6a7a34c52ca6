"""TLS 1.2 session resumption: the hop client's session cache and the judged server's cache.

Real handshakes on loopback: the hop client context (Python's ssl) against the judged
pyOpenSSL server, and each against an OpenSSL command-line peer (s_server / s_client), with
and without the Extended Master Secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from exchsim.tls.contexts import client_context_anonymous_tls
from exchsim.tls.judged import JudgedServerContext, JudgedSSLObject
from exchsim.tls.pki import CertificateFiles
from exchsim.tls.resumption import ClientSessionCache, server_hello_has_ems
from tests.unit.tls.conftest import LabPki
from tests.unit.tls.helpers import LOOPBACK, TIMEOUT

# ServerHello messages from `openssl s_server -tls1_2` (OpenSSL 3.0), with and without EMS.
HELLO_EMS = bytes.fromhex(
    "0200003d030355db91267cf81de6a490a4adb5495679fba8af6a1b882fc1ede6328e6e03192700c030000015"
    "ff01000100000b0004030001020023000000170000")
HELLO_NO_EMS = bytes.fromhex(
    "02000039030365b2a4232e08e21d122a266cb819504db6a3559491c2d342fd473d353fc4012800c030000011"
    "ff01000100000b00040300010200230000")
# An OpenSSL configuration that turns the Extended Master Secret off (OpenSSL 3.0's
# SSL_OP_NO_EXTENDED_MASTER_SECRET), for a peer that does not do EMS.
NO_EMS_CONF = """openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Options = -ExtendedMasterSecret
"""


def test_server_hello_extension_parsing() -> None:
    assert server_hello_has_ems(HELLO_EMS)
    assert not server_hello_has_ems(HELLO_NO_EMS)
    for cut in (0, 10, 38, 39, 45, 50, len(HELLO_EMS) - 2):
        assert not server_hello_has_ems(HELLO_EMS[:cut])


@dataclass
class Seen:
    """One handshake as each side saw it."""

    client_reused: bool
    client_unique: bytes | None
    server_reused: bool | None = None
    server_unique: bytes | None = None


@dataclass
class JudgedServer:
    """An asyncio TLS server on the judged context."""

    context: JudgedServerContext
    port: int = 0
    seen: list[tuple[bool, bytes | None]] = field(default_factory=list)
    peers: list[tuple[bytes | None, tuple[bytes, ...]]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def judged_server(context: JudgedServerContext,
                        port: int = 0) -> AsyncIterator[JudgedServer]:
    state = JudgedServer(context)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            obj: JudgedSSLObject = writer.get_extra_info("ssl_object")
            state.seen.append((obj.session_reused, obj.get_channel_binding("tls-unique")))
            state.peers.append((obj.getpeercert(binary_form=True), obj.peer_chain_der()))
            writer.write(b"ok\n")
            await asyncio.wait_for(reader.read(), TIMEOUT)
        except (OSError, ssl.SSLError, TimeoutError):
            pass
        finally:
            writer.close()

    # TLS from the first byte (a client such as s_client sends its hello at once).
    server = await asyncio.start_server(on_connect, LOOPBACK, port, reuse_address=True,
                                        ssl=context, ssl_handshake_timeout=TIMEOUT)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


async def connect(cache: ClientSessionCache, port: int, server: JudgedServer | None = None,
                  remember: bool = True) -> Seen:
    """One TLS connection through the cache, as the hop client makes it."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        await asyncio.wait_for(writer.start_tls(cache.context_for(LOOPBACK, port)), TIMEOUT)
        obj: ssl.SSLObject = writer.get_extra_info("ssl_object")
        if server is not None:
            assert await asyncio.wait_for(reader.readline(), TIMEOUT) == b"ok\n"
        if remember:
            cache.remember(LOOPBACK, port, obj)
        seen = Seen(obj.session_reused, obj.get_channel_binding("tls-unique"))
        if server is not None:
            seen.server_reused, seen.server_unique = server.seen[-1]
        return seen
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), TIMEOUT)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache_for(cert: CertificateFiles, clock: FakeClock | None = None) -> ClientSessionCache:
    return ClientSessionCache(client_context_anonymous_tls(cert), clock or FakeClock())


async def test_full_then_resumed_with_tls_unique_equal_on_both_sides(lab_pki: LabPki) -> None:
    cache = cache_for(lab_pki.ex01)
    context = JudgedServerContext(lab_pki.ex02)
    async with judged_server(context) as server:
        first = await connect(cache, server.port, server)
        second = await connect(cache, server.port, server)
        third = await connect(cache, server.port, server)
    assert (first.client_reused, first.server_reused) == (False, False)
    assert (second.client_reused, second.server_reused) == (True, True)
    assert (third.client_reused, third.server_reused) == (True, True)
    for seen in (first, second, third):
        assert seen.client_unique is not None and len(seen.client_unique) == 12
        assert seen.client_unique == seen.server_unique
    # Each handshake has its own Finished messages, so its own binding.
    assert len({first.client_unique, second.client_unique, third.client_unique}) == 3
    assert (context.full_handshakes, context.resumed_handshakes) == (1, 2)
    assert (cache.full_handshakes, cache.resumed_handshakes) == (1, 2)
    # A resumed session still shows the client certificate of the handshake that made it,
    # so it is judged the same (exchange.md §4.1, §4.2).
    client_der = lab_pki.ex01.load_der()
    assert server.peers == [(client_der, (client_der,))] * 3


async def test_on_a_resumed_handshake_tls_unique_is_the_servers_finished(
    lab_pki: LabPki,
) -> None:
    # RFC 5929 §3.1 by construction: check which Finished each side took.
    cache = cache_for(lab_pki.ex01)
    objects: list[JudgedSSLObject] = []
    context = JudgedServerContext(lab_pki.ex02)
    wrap = context.wrap_bio

    def keep(*args: object, **kwargs: object) -> JudgedSSLObject:
        obj = wrap(*args, **kwargs)  # type: ignore[arg-type]
        objects.append(obj)
        return obj

    context.wrap_bio = keep  # type: ignore[method-assign]
    async with judged_server(context) as server:
        full = await connect(cache, server.port, server)
        resumed = await connect(cache, server.port, server)
    full_conn, resumed_conn = objects[0]._conn, objects[1]._conn
    assert full.server_unique == full_conn.get_peer_finished()  # the client's Finished
    assert resumed.server_unique == resumed_conn.get_finished()  # the server's own
    assert resumed_conn.get_finished() != resumed_conn.get_peer_finished()


async def test_without_the_cache_every_handshake_is_full(lab_pki: LabPki) -> None:
    context = JudgedServerContext(lab_pki.ex02)
    async with judged_server(context) as server:
        for _ in range(2):
            cache = cache_for(lab_pki.ex01)  # a fresh cache each time: nothing to offer
            seen = await connect(cache, server.port, server)
            assert (seen.client_reused, seen.server_reused) == (False, False)
            assert seen.client_unique == seen.server_unique


async def test_a_restarted_server_falls_back_to_a_full_handshake(lab_pki: LabPki) -> None:
    cache = cache_for(lab_pki.ex01)
    async with judged_server(JudgedServerContext(lab_pki.ex02)) as server:
        await connect(cache, server.port, server)
        port = server.port
    offered = cache.session_for(LOOPBACK, port)
    assert offered is not None
    # The same address and port, a new server context (its cache empty), as after a restart.
    async with judged_server(JudgedServerContext(lab_pki.ex02), port) as server:
        again = await connect(cache, port, server)
        assert (again.client_reused, again.server_reused) == (False, False)
        assert again.client_unique == again.server_unique
        assert cache.session_for(LOOPBACK, port) not in (None, offered)
        after = await connect(cache, port, server)
        assert (after.client_reused, after.server_reused) == (True, True)


async def test_the_session_expires_after_the_client_cache_time(lab_pki: LabPki) -> None:
    clock = FakeClock()
    cache = ClientSessionCache(client_context_anonymous_tls(lab_pki.ex01), clock, lifetime=600)
    async with judged_server(JudgedServerContext(lab_pki.ex02)) as server:
        await connect(cache, server.port, server)
        clock.now += 599
        assert (await connect(cache, server.port, server)).client_reused
        clock.now += 1  # 600 s after the full handshake: resuming did not extend it
        expired = await connect(cache, server.port, server)
        assert (expired.client_reused, expired.server_reused) == (False, False)
        assert (await connect(cache, server.port, server)).client_reused


async def test_a_session_is_kept_only_once_remembered(lab_pki: LabPki) -> None:
    cache = cache_for(lab_pki.ex01)
    async with judged_server(JudgedServerContext(lab_pki.ex02)) as server:
        await connect(cache, server.port, server, remember=False)
        assert cache.session_for(LOOPBACK, server.port) is None
        assert not (await connect(cache, server.port, server)).client_reused
        assert (await connect(cache, server.port, server)).client_reused
        cache.forget(LOOPBACK, server.port)
        assert not (await connect(cache, server.port, server)).client_reused


def test_the_cache_holds_a_bounded_number_of_destinations(lab_pki: LabPki) -> None:
    cache = ClientSessionCache(client_context_anonymous_tls(lab_pki.ex01), FakeClock(),
                               max_destinations=3)
    first = cache.context_for("127.0.10.1", 2525)
    for port in (475, 465, 25):
        cache.context_for("127.0.10.1", port)
    assert cache.context_for("127.0.10.1", 2525) is not first  # dropped, made anew
    assert cache.context_for("127.0.10.1", 25) is cache.context_for("127.0.10.1", 25)
    with pytest.raises(ValueError):
        ClientSessionCache(client_context_anonymous_tls(lab_pki.ex01), FakeClock(),
                           max_destinations=0)


# --- peers without the Extended Master Secret ----------------------------------------------


@contextlib.contextmanager
def s_server(cert: CertificateFiles, port: int, env: dict[str, str]) -> Iterator[None]:
    proc = subprocess.Popen(
        ["openssl", "s_server", "-accept", f"{LOOPBACK}:{port}", "-cert", str(cert.cert_path),
         "-key", str(cert.key_path), "-tls1_2", "-no_ticket", "-quiet"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        yield None
    finally:
        proc.kill()
        proc.wait()


async def _wait_listening(port: int) -> None:
    for _ in range(100):
        try:
            _r, w = await asyncio.open_connection(LOOPBACK, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        w.close()
        return
    raise AssertionError("openssl s_server did not start")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("ems", [True, False])
async def test_the_client_never_resumes_a_session_without_ems(
    lab_pki: LabPki, tmp_path: Path, ems: bool,
) -> None:
    env = dict(os.environ)
    if not ems:
        (tmp_path / "no-ems.cnf").write_text(NO_EMS_CONF)
        env["OPENSSL_CONF"] = str(tmp_path / "no-ems.cnf")
    port = _free_port()
    cache = cache_for(lab_pki.ex01)
    with s_server(lab_pki.ex02, port, env):
        await _wait_listening(port)
        first = await connect(cache, port)
        second = await connect(cache, port)
    assert not first.client_reused
    # openssl s_server resumes whatever it is offered: only the client's rule stops it.
    assert second.client_reused is ems
    assert (cache.session_for(LOOPBACK, port) is not None) is ems


async def _s_client(port: int, env: dict[str, str], *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "openssl", "s_client", "-connect", f"{LOOPBACK}:{port}", "-tls1_2", *args,
        stdin=subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env=env)
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    return out.decode("utf-8", "replace")


@pytest.mark.parametrize("ems", [True, False])
async def test_the_judged_server_never_resumes_a_session_without_ems(
    lab_pki: LabPki, tmp_path: Path, ems: bool,
) -> None:
    env = dict(os.environ)
    if not ems:
        (tmp_path / "no-ems.cnf").write_text(NO_EMS_CONF)
        env["OPENSSL_CONF"] = str(tmp_path / "no-ems.cnf")
    sess = tmp_path / "session.pem"
    context = JudgedServerContext(lab_pki.ex02)
    async with judged_server(context) as server:
        first = await _s_client(server.port, env, "-sess_out", str(sess), "-no_ticket")
        second = await _s_client(server.port, env, "-sess_in", str(sess), "-no_ticket")
    assert "New, TLSv1.2" in first, first
    assert ("Extended master secret: yes" in first) is ems
    assert ("Reused, TLSv1.2" in second) is ems
    assert [reused for reused, _ in server.seen] == [False, ems]
    assert context.resumed_handshakes == int(ems)
