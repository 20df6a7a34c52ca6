"""TLS 1.2 session resumption on the hop client, as Schannel's client-side cache does it.

A Windows TLS client keeps, per server it talked to, the session of its last full handshake
and offers it on the next connection (an abbreviated handshake: no certificate, no key
exchange); the cache entry expires after ``ClientCacheTime``, 10 hours by default
(exchange.md §4.10). :class:`ClientSessionCache` does the same for exchsim's hop client
(Front End -> hub, hub -> Mailbox Transport Delivery, hub -> hub), one entry per destination
(next-hop address and port).

How the session gets into the handshake: asyncio's ``start_tls`` has no ``session``
argument; its ``SSLProtocol`` only calls ``wrap_bio(incoming, outgoing, server_side=...,
server_hostname=...)`` on the context it is given. :meth:`ClientSessionCache.context_for`
hands out, per destination, a :class:`SessionOfferingContext`: an ``ssl.SSLContext`` only so
that asyncio takes it, whose ``wrap_bio`` delegates to the hop's real client context with
``session=`` the destination's cached session (the way
:class:`exchsim.tls.judged.JudgedServerContext` stands in for an ``SSLContext`` on the server
side). The ``SSLObject`` and the session therefore always belong to that one real context, as
``ssl`` requires. (Python's ``ssl`` copies a session when it is set, serializing and parsing it
again with the server's certificate: about 0.17 ms of CPU here, which the saving of a resumed
handshake more than pays for; README, Benchmark.)

What is cached (exchsim's rules, exchange.md §4.10):

- Session ids, not tickets: exchsim's servers issue no tickets (judged.py), as Schannel
  servers resume by session id.
- TLS 1.2 only, and only a session whose handshake negotiated the Extended Master Secret
  (RFC 7627): without it a session's master secret is not bound to its handshake, and a
  resumed session could be a man-in-the-middle's (the triple-handshake attack), which would
  also let ``tls-unique`` be shared by two connections. Python's ``ssl`` does not say whether
  EMS was negotiated; the cache reads it from the server's ServerHello (extension 23) through
  the context's message callback (CPython's ``_msg_callback`` hook, set at the C level so that
  each record costs one small call). A session without EMS is never offered.
- Only after the hop was authenticated (EXCHANGEAUTH's 235): :meth:`remember` is called by
  the hop client then; a hop that fails after its handshake calls :meth:`forget`, so the next
  connection makes a full handshake.
- The lifetime runs from the full handshake that made the session; resuming it does not
  extend it (as a server's session timeout counts from the session's creation).
- At most ``max_destinations`` entries (least recently used dropped first).

A server that no longer knows the session (restarted, its cache full or expired) answers the
offer with a full handshake; the new session then replaces the old one.
"""

from __future__ import annotations

import ssl
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CLIENT_CACHE_TIME",
    "MAX_DESTINATIONS",
    "ClientSessionCache",
    "SessionOfferingContext",
    "server_hello_has_ems",
]

CLIENT_CACHE_TIME = 10 * 3600.0  # seconds: Schannel's ClientCacheTime default (exchange.md §4.10)
MAX_DESTINATIONS = 1024  # exchsim's bound; a hub has a few next hops per server of the lab

_HANDSHAKE = 22  # TLS ContentType handshake (RFC 5246 §6.2.1)
_SERVER_HELLO = 2  # HandshakeType server_hello (RFC 5246 §7.4)
_EXTENDED_MASTER_SECRET = 23  # ExtensionType extended_master_secret (RFC 7627 §5.1)

# CPython's ssl.SSLContext wraps the C-level _msg_callback in a Python function that turns
# every argument into an enum; the C property calls the callback with plain values.
_SET_RAW_MSG_CALLBACK = ssl.SSLContext.__mro__[1]._msg_callback.__set__  # type: ignore[attr-defined]


def server_hello_has_ems(message: bytes) -> bool:
    """Whether a TLS 1.2 ServerHello handshake message (with its 4-byte header) carries the
    extended_master_secret extension (RFC 5246 §7.4.1.3, RFC 7627 §5.1). A message too short
    for what it declares is read as far as it goes."""
    pos = 4 + 2 + 32  # header, server_version, random
    if len(message) <= pos:
        return False
    pos += 1 + message[pos] + 2 + 1  # session_id, cipher_suite, compression_method
    if len(message) < pos + 2:
        return False
    end = min(len(message), pos + 2 + int.from_bytes(message[pos:pos + 2], "big"))
    pos += 2
    while pos + 4 <= end:
        if int.from_bytes(message[pos:pos + 2], "big") == _EXTENDED_MASTER_SECRET:
            return True
        pos += 4 + int.from_bytes(message[pos + 2:pos + 4], "big")
    return False


@dataclass(slots=True)
class _Entry:
    session: ssl.SSLSession | None = None
    made: float = 0.0  # monotonic time of the full handshake that made ``session``


class SessionOfferingContext(ssl.SSLContext):
    """The ``ssl.SSLContext`` asyncio is given for one destination: offers its cached session.

    Only :meth:`wrap_bio` is used (by asyncio's ``SSLProtocol``); it delegates to the real
    client context. The inherited settings are never used; ``wrap_socket`` is refused.
    """

    _cache: ClientSessionCache
    _entry: _Entry

    def __new__(cls, cache: ClientSessionCache, entry: _Entry) -> SessionOfferingContext:
        return super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)

    def __init__(self, cache: ClientSessionCache, entry: _Entry) -> None:
        self._cache = cache
        self._entry = entry

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                 server_side: bool = False, server_hostname: str | bytes | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        if server_side:
            raise ValueError("SessionOfferingContext is for the client side only")
        if session is None:
            session = self._cache._offer(self._entry)
        return self._cache.context.wrap_bio(incoming, outgoing, server_side=False,
                                            server_hostname=server_hostname, session=session)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        raise NotImplementedError("SessionOfferingContext only wraps memory BIOs (asyncio)")


class ClientSessionCache:
    """The hop client's TLS sessions, one per destination (host, port).

    ``context`` is the hop's client context (TLS 1.2, its own certificate); the cache installs
    its message callback on it, so the context must not be shared with other users of that
    hook. ``monotonic`` is the clock (exchsim.clock) the lifetime is measured with.
    """

    def __init__(self, context: ssl.SSLContext, monotonic: Callable[[], float], *,
                 lifetime: float = CLIENT_CACHE_TIME,
                 max_destinations: int = MAX_DESTINATIONS) -> None:
        if max_destinations < 1:
            raise ValueError("max_destinations must be at least 1")
        self.context = context
        self.lifetime = lifetime
        self.max_destinations = max_destinations
        self._monotonic = monotonic
        self._destinations: OrderedDict[tuple[str, int], SessionOfferingContext] = OrderedDict()
        self._with_ems: weakref.WeakSet[ssl.SSLObject] = weakref.WeakSet()
        # Counters, for tests and the benchmark: handshakes completed on hops (remember()).
        self.full_handshakes = 0
        self.resumed_handshakes = 0
        _SET_RAW_MSG_CALLBACK(context, self._on_message)

    def _on_message(self, conn: Any, direction: str, version: int, content_type: int,
                    msg_type: int, data: bytes) -> None:
        # Called by OpenSSL for every record and handshake message; must never raise.
        if (content_type == _HANDSHAKE and msg_type == _SERVER_HELLO and direction == "read"
                and isinstance(conn, ssl.SSLObject) and server_hello_has_ems(data)):
            self._with_ems.add(conn)

    def context_for(self, host: str, port: int) -> SessionOfferingContext:
        """The context to hand to ``start_tls`` for a connection to ``host:port``."""
        key = (host.lower(), port)
        found = self._destinations.get(key)
        if found is None:
            found = SessionOfferingContext(self, _Entry())
            self._destinations[key] = found
            while len(self._destinations) > self.max_destinations:
                self._destinations.popitem(last=False)
        else:
            self._destinations.move_to_end(key)
        return found

    def _offer(self, entry: _Entry) -> ssl.SSLSession | None:
        if entry.session is not None and self._monotonic() - entry.made >= self.lifetime:
            entry.session = None  # ClientCacheTime is over
        return entry.session

    def session_for(self, host: str, port: int) -> ssl.SSLSession | None:
        """The session the next connection to ``host:port`` would offer, if any."""
        found = self._destinations.get((host.lower(), port))
        return None if found is None else self._offer(found._entry)

    def remember(self, host: str, port: int, ssl_object: ssl.SSLObject) -> None:
        """After a good hop (handshake and authentication): keep its session if it may be
        resumed (TLS 1.2 with EMS), else drop what was cached for the destination."""
        entry = self.context_for(host, port)._entry
        if ssl_object.session_reused:
            self.resumed_handshakes += 1
            return  # the cached session itself: its lifetime still runs from its full handshake
        self.full_handshakes += 1
        session = ssl_object.session
        if (session is not None and ssl_object.version() == "TLSv1.2"
                and ssl_object in self._with_ems):
            entry.session, entry.made = session, self._monotonic()
        else:
            entry.session = None

    def forget(self, host: str, port: int) -> None:
        """Drop the destination's session (a hop that failed after its handshake)."""
        found = self._destinations.get((host.lower(), port))
        if found is not None:
            found._entry.session = None
