"""The I/O edge of a session: moves bytes between a TCP connection and :class:`SessionCore`.

aiosmtpd's ``SMTP`` (an ``asyncio.StreamReaderProtocol``) stays the session base: it owns the
connection bookkeeping (``connection_made`` starts the session task, ``eof_received`` and
``connection_lost`` end it) and the STARTTLS upgrade of the transport, including the RFC 3207
discard of anything the client sent in plain text before the handshake (CVE-2024-34083).
Everything the session says and decides is the core's; this module only carries out its
actions: write, wait (tarpit), upgrade to TLS, hand a message to the transport, read with one
read timer (``readtimer.py``), close.

aiosmtpd internals this module still touches, and why:
- ``SMTP.__init__`` is not called: it builds per-session tables with ``inspect.getmembers``
  (handler hooks, AUTH methods, ``smtp_*`` verbs) that exchsim does not use and that cost
  about 0.13 ms of CPU per connection. :meth:`ExchangeSession.__init__` sets the attributes
  that aiosmtpd's ``connection_made`` / ``connection_lost`` / ``eof_received`` read
  (``_timeout_duration``, ``_timeout_handle``, ``_tls_protocol``, ``_original_transport``,
  ``_tls_handshake_okay``, ``_handler_coroutine``, ``_handle_hooks``, ``session``,
  ``envelope``, ``transport``, ``loop``, ``event_handler``).
- ``_handle_client`` is overridden: it is the session task aiosmtpd starts.
- ``_reader`` / ``_writer``: aiosmtpd's names for the stream pair (read with the public
  ``StreamReader.read``; no peeking into its buffer).
- The upgrade builds ``asyncio.sslproto.SSLProtocol`` and takes its ``_app_transport`` the way
  aiosmtpd's own ``smtp_STARTTLS`` does (that method answers with its own reply text and reads
  the context from the constructor): this is what makes aiosmtpd's ``connection_made`` swap
  the streams to TLS and drop the buffered plain text at the right moment.

Every session closes its transport when it ends, however it ends (QUIT, client EOF without
QUIT, a reset, a timeout, an error, cancellation at shutdown), so no socket stays in
CLOSE-WAIT.

Before the core connects, the server's ``ProxyGate`` (``proxyread.py``) names the client: the
TCP peer, or on an ``ExchsimProxyProtocol`` port the PROXY header's source (or refuses the
connection, which then ends without a greeting); what followed the header is the first read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
from asyncio import sslproto
from collections.abc import Sequence
from typing import Any, Protocol, cast

from aiosmtpd.smtp import SMTP as AioSMTP

from exchsim.config.model import ReceiveConnector, TransportRole
from exchsim.smtp.actions import (
    Action,
    Close,
    Deliver,
    Receive,
    Send,
    ServerContext,
    StartTls,
    Tarpit,
)
from exchsim.smtp.message import LocalCertificate, MessageHandler, TlsInfo
from exchsim.smtp.protocol import SessionCore
from exchsim.smtp.proxyread import ProxyGate
from exchsim.smtp.readtimer import ReadTimer
from exchsim.tls.judged import JudgedServerContext, JudgedSSLObject
from exchsim.tls.pki import CertificateFiles
from exchsim.tls.validation import ChainVerdict

log = logging.getLogger(__name__)

_READ_SIZE = 64 * 1024
_STREAM_LIMIT = 64 * 1024  # the StreamReader pauses the socket past twice this


class ServerRuntime(ServerContext, Protocol):
    """What the adapter needs of its server beyond the core's :class:`ServerContext`."""

    proxy: ProxyGate  # who the client is: a PROXY header's source (smtp/proxyread.py)

    def starttls_context(self, connector: ReceiveConnector) -> JudgedServerContext | None: ...
    def anonymous_tls_context(self) -> JudgedServerContext | None: ...
    def message_handler(self, role: TransportRole) -> MessageHandler: ...
    def configured_port(self, listening_port: int) -> int: ...
    def track(self, session: ExchangeSession, opened: bool) -> None: ...
    async def judge_certificate(self, chain: Sequence[bytes]) -> ChainVerdict: ...


class ExchangeSession(AioSMTP):
    def __init__(self, runtime: ServerRuntime) -> None:
        # Not AioSMTP.__init__ (see the module docstring): the StreamReaderProtocol it sets
        # up, and the attributes aiosmtpd's connection callbacks read.
        loop = asyncio.get_running_loop()
        asyncio.StreamReaderProtocol.__init__(
            self, asyncio.StreamReader(limit=_STREAM_LIMIT, loop=loop),
            client_connected_cb=self._cb_client_connected, loop=loop)
        self.loop = loop
        self.event_handler = None
        self._timeout_duration = 24 * 3600.0  # aiosmtpd's own idle timer; the core's rule
        self._timeout_handle = None
        self._tls_handshake_okay = True
        self._tls_protocol: sslproto.SSLProtocol | None = None
        self._original_transport: asyncio.BaseTransport | None = None
        self._handler_coroutine: asyncio.Task[None] | None = None
        self._handle_hooks: dict[str, Any] = {}
        self.session = None
        self.envelope = None
        self.transport: asyncio.BaseTransport | None = None
        self.runtime = runtime
        self.core = SessionCore(runtime)
        self._lost_context: str | None = None  # how the transport said the connection ended
        self._pending = b""  # what came after a PROXY header: the client's first bytes

    async def _handle_client(self) -> None:
        self.runtime.track(self, True)
        self._timer = ReadTimer(self.loop)
        context = "Remote"
        try:
            await self._serve()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            context = "Remote(ConnectionReset)"
        except asyncio.CancelledError:
            raise  # the client went away (eof_received / connection_lost) or shutdown
        except Exception:
            log.exception("session %s failed", self.core.session_id)
            context = "Local"
            for action in self.core.failed():
                if isinstance(action, Send):
                    self._write(action.data)
        finally:
            self._timer.close()
            if context == "Remote" and self._lost_context is not None:
                context = self._lost_context
            self.core.connection_lost(context)
            self.close_transport()
            self.runtime.track(self, False)

    async def _serve(self) -> None:
        assert self.transport is not None
        sock = self.transport.get_extra_info("sockname")
        peer = self.transport.get_extra_info("peername")
        port = self.runtime.configured_port(sock[1])
        proxied = await self.runtime.proxy.admit(self._reader, self._timer, sock[:2], peer[:2],
                                                 port)
        if proxied is None:
            return  # refused before the greeting (smtp/proxyread.py)
        client, self._pending = proxied.client, proxied.leftover
        actions: list[Action] | None = self.core.connect(
            sock[0], port, client[0], client[1], self.runtime.clock.monotonic(),
            listening_port=sock[1])
        while actions is not None:
            actions = await self._perform(actions)

    async def _perform(self, actions: list[Action]) -> list[Action] | None:
        """Carry out the actions in order; the last one may lead to the next batch."""
        core = self.core
        clock = self.runtime.clock
        for action in actions:
            if isinstance(action, Send):
                self._write(action.data)
                await self._writer.drain()
            elif isinstance(action, Receive):
                data = await self._read(action)
                if data is None:
                    return core.timed_out(clock.monotonic())
                if not data:
                    return None  # EOF
                return core.feed(data, clock.monotonic())
            elif isinstance(action, Tarpit):
                await asyncio.sleep(action.seconds)
            elif isinstance(action, Deliver):
                assert core.connector is not None
                handler = self.runtime.message_handler(core.connector.transport_role)
                reply = await handler(action.message)
                return core.delivered(reply, clock.monotonic())
            elif isinstance(action, StartTls):
                return await self._start_tls(action.anonymous)
            elif isinstance(action, Close):
                self.close_transport()
                return None
        return None

    async def _read(self, receive: Receive) -> bytes | None:
        """What the client sent next (b"" at EOF), or None when the time ran out."""
        if self._pending:
            pending, self._pending = self._pending, b""
            return pending
        wait = receive.idle
        if receive.deadline is not None:
            wait = min(wait, receive.deadline - self.runtime.clock.monotonic())
        try:
            with self._timer.limit(self.loop.time() + max(wait, 0.0)):
                data: bytes = await self._reader.read(_READ_SIZE)
        except TimeoutError:
            return None
        return data

    async def _start_tls(self, anonymous: bool) -> list[Action] | None:
        core = self.core
        assert core.connector is not None
        context = (self.runtime.anonymous_tls_context() if anonymous
                   else self.runtime.starttls_context(core.connector))
        assert context is not None  # the verb is not offered without one
        certificate = _local_certificate(context.certificate)
        await self._writer.drain()
        waiter = self.loop.create_future()
        self._tls_protocol = sslproto.SSLProtocol(self.loop, self, context, waiter,
                                                  server_side=True)
        self._original_transport = self.transport
        assert self._original_transport is not None
        self._original_transport.set_protocol(self._tls_protocol)
        self.transport = self._tls_protocol._app_transport
        self._tls_protocol.connection_made(self._original_transport)
        try:
            await waiter
        except asyncio.CancelledError:
            raise
        except Exception as error:
            return core.tls_failed(f"{type(error).__name__}: {error}",
                                   self.runtime.clock.monotonic(), certificate)
        assert self.transport is not None
        ssl_object = cast(JudgedSSLObject, self.transport.get_extra_info("ssl_object"))
        cipher = ssl_object.cipher()
        info = TlsInfo(
            protocol=ssl_object.version(),
            cipher=cipher[0] if cipher else None,
            anonymous=anonymous,
            peer_der=ssl_object.getpeercert(binary_form=True),
            tls_unique=ssl_object.get_channel_binding("tls-unique"),
            peer_chain=ssl_object.peer_chain_der(),
            group=ssl_object.group_name(),
            local_certificate=certificate,
        )
        chain = info.peer_chain or ((info.peer_der,) if info.peer_der else ())
        if chain and not anonymous:
            # Judged now, CRLs fetched within their bound, so that the core decides on values
            # (exchange.md §4.8).
            verdict = await self.runtime.judge_certificate(chain)
            info = dataclasses.replace(info, peer_chain=tuple(chain), verdict=verdict)
        return core.tls_established(info, self.runtime.clock.monotonic())

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self._writer.write(data)

    def connection_lost(self, error: Exception | None) -> None:
        """The protocol log's disconnect context (exchange.md §6.1): a reset is
        ``Remote(ConnectionReset)``, another socket error ``Remote(SocketError)``."""
        if isinstance(error, ConnectionResetError):
            self._lost_context = "Remote(ConnectionReset)"
        elif isinstance(error, OSError):
            self._lost_context = "Remote(SocketError)"
        super().connection_lost(error)

    def close_transport(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()


def _local_certificate(cert: CertificateFiles) -> LocalCertificate:
    return LocalCertificate(cert.subject, cert.issuer, cert.serial, cert.thumbprint,
                            cert.not_before, cert.not_after, cert.dns_names, cert.key_bits)
