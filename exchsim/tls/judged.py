"""Server-side TLS that completes the handshake with any client certificate, to judge it after.

Exchange accepts the TLS handshake of X-ANONYMOUSTLS with any client certificate and decides
afterwards: a certificate that is not a known Exchange server's gets ``454 4.7.0 Temporary
authentication failure`` at the next EHLO (exchange.md §4.1, item 3). Python's ``ssl`` has no
verify callback: a requested client certificate that does not verify fails the handshake.
pyOpenSSL has one, so the handshake here runs on a pyOpenSSL ``Connection`` with memory BIOs.

:class:`JudgedServerContext` stands in for the ``ssl.SSLContext`` that asyncio's
``SSLProtocol`` is given: SSLProtocol only calls ``wrap_bio(incoming, outgoing, ...)`` on it
and then drives the returned object through the ``ssl.SSLObject`` calls below, with the same
exceptions (``ssl.SSLWantReadError`` and friends). Everything else of asyncio's TLS (flow
control, shutdown, timeouts) stays as it is.

Every listener uses it, for STARTTLS too: the certificate is requested, never required, and
the handshake completes whatever certificate comes (an Internet sender presenting a bad one is
not locked out); the session and the Domain Security checks judge it afterwards. The TLS
profile (versions, cipher suites, groups, options) is Windows Server 2016/2019's, from
:mod:`exchsim.tls.schannel`. TLS 1.2 (so ``tls-unique`` is defined), no renegotiation.

Session resumption (exchange.md §4.10), as a Schannel server does it: a session-id cache in
each context (OpenSSL's internal cache, bounded at its default 20,480 sessions, near Schannel's
MaximumCacheSize of 20,000, the oldest dropped first), sessions kept for Schannel's
ServerCacheTime (10 hours), no session tickets, and a session id context (derived from the
certificate unless given); a session is only resumed by the context that made it (each
context has its own cache). The peer's certificate and chain are part of the session, so a
resumed session is judged on the certificate of the handshake that made it. A session whose
handshake did not negotiate the Extended Master Secret (RFC 7627) is never resumed: OpenSSL
itself refuses to resume a session with EMS without it, and to resume a session without EMS
for a client that offers it; a session made without EMS by a client without EMS is marked
unresumable after its handshake (see ``_refuse_resumption``).

``tls-unique`` (RFC 5929 §3.1) is the first Finished message of the latest handshake: the
client's on a full handshake, the server's own on a resumed one (the server sends its Finished
first there). :meth:`JudgedSSLObject.get_channel_binding` takes the one that applies, as
Python's ``ssl`` does on both sides.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Callable
from typing import Any, TypeVar

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL, crypto
from OpenSSL._util import ffi as _ffi, lib as _lib

from exchsim.tls.pki import CertificateFiles
from exchsim.tls.schannel import LegacyProtocols, apply_server_profile

__all__ = ["JudgedSSLObject", "JudgedServerContext"]

T = TypeVar("T")
_BIO_CHUNK = 64 * 1024
SERVER_CACHE_TIME = 10 * 3600  # seconds: Schannel's ServerCacheTime default (exchange.md §4.10)


def _accept_any(conn: SSL.Connection, cert: crypto.X509, errnum: int, depth: int,
                ok: int) -> bool:
    return True  # judged after the handshake, by the session


class JudgedServerContext(ssl.SSLContext):
    """Presents ``cert``; asks for a client certificate and accepts any (or none).

    An ``ssl.SSLContext`` only so that asyncio (``loop.start_tls``, ``StreamWriter.start_tls``,
    ``SSLProtocol``) takes it: the one method they call, :meth:`wrap_bio`, is answered by
    pyOpenSSL. The inherited ``ssl`` settings are never used; ``wrap_socket`` is refused.
    """

    _judged: SSL.Context

    def __new__(cls, cert: CertificateFiles, legacy: LegacyProtocols | None = None, *,
                session_id_context: bytes | None = None) -> JudgedServerContext:
        return super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)

    def __init__(self, cert: CertificateFiles, legacy: LegacyProtocols | None = None, *,
                 session_id_context: bytes | None = None) -> None:
        self.certificate = cert
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        apply_server_profile(ctx, legacy)  # versions, suites, DH, options (tls/schannel.py)
        ctx.set_options(SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_TICKET)
        # Session-id resumption (module docstring): at most 32 bytes of id context.
        ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
        ctx.set_session_id(hashlib.sha256(
            session_id_context if session_id_context is not None
            else b"exchsim judged " + cert.load_der()).digest())
        ctx.set_timeout(SERVER_CACHE_TIME)
        ctx.use_certificate_chain_file(str(cert.cert_path))
        ctx.use_privatekey_file(str(cert.key_path))
        ctx.check_privatekey()
        ctx.set_verify(SSL.VERIFY_PEER, _accept_any)
        self._judged = ctx
        # Handshakes completed, for tests and the benchmark.
        self.full_handshakes = 0
        self.resumed_handshakes = 0

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,  # type: ignore[override]
                 server_side: bool = False, server_hostname: str | bytes | None = None,
                 session: ssl.SSLSession | None = None) -> JudgedSSLObject:
        if not server_side:
            raise ValueError("JudgedServerContext is for the server side only")
        return JudgedSSLObject(self._judged, incoming, outgoing, self)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        raise NotImplementedError("JudgedServerContext only wraps memory BIOs (asyncio)")


class JudgedSSLObject:
    """The ``ssl.SSLObject`` calls asyncio's SSLProtocol and the session make, over pyOpenSSL."""

    server_side = True
    server_hostname = None

    def __init__(self, ctx: SSL.Context, incoming: ssl.MemoryBIO,
                 outgoing: ssl.MemoryBIO, owner: JudgedServerContext | None = None) -> None:
        self._conn = SSL.Connection(ctx, None)
        self._conn.set_accept_state()
        self._incoming = incoming
        self._outgoing = outgoing
        self._eof_passed = False
        self._owner = owner
        self._reused = False

    # -- moving bytes between asyncio's memory BIOs and OpenSSL's ------------------------------

    def _call(self, operation: Callable[..., T], *args: Any) -> T:
        data = self._incoming.read()
        if data:
            self._conn.bio_write(data)
        if self._incoming.eof and not self._eof_passed:
            self._eof_passed = True
            self._conn.bio_shutdown()
        try:
            return operation(*args)
        except SSL.WantReadError:
            raise ssl.SSLWantReadError("The operation did not complete (read)") from None
        except SSL.WantWriteError:
            raise ssl.SSLWantWriteError("The operation did not complete (write)") from None
        except SSL.ZeroReturnError:
            raise ssl.SSLZeroReturnError("TLS/SSL connection has been closed (EOF)") from None
        except SSL.SysCallError as exc:
            raise ssl.SSLEOFError(f"EOF occurred in violation of protocol: {exc}") from None
        except SSL.Error as exc:
            raise ssl.SSLError(f"TLS error: {exc}") from None
        finally:
            self._flush_outgoing()

    def _flush_outgoing(self) -> None:
        while True:
            try:
                chunk = self._conn.bio_read(_BIO_CHUNK)
            except SSL.WantReadError:
                return
            if not chunk:
                return
            self._outgoing.write(chunk)

    # -- ssl.SSLObject ------------------------------------------------------------------------

    def do_handshake(self) -> None:
        self._call(self._conn.do_handshake)
        ssl_ptr = self._conn._ssl  # pyOpenSSL's SSL*, for what pyOpenSSL does not wrap
        self._reused = bool(_lib.SSL_session_reused(ssl_ptr))
        if not self._reused and _lib.SSL_get_extms_support(ssl_ptr) != 1:
            _refuse_resumption(ssl_ptr)
        if self._owner is not None:
            if self._reused:
                self._owner.resumed_handshakes += 1
            else:
                self._owner.full_handshakes += 1

    @property
    def session_reused(self) -> bool:
        """Whether the handshake resumed a cached session (as ``ssl.SSLObject``)."""
        return self._reused

    def read(self, size: int = 1024, buffer: bytearray | memoryview | None = None) -> Any:
        try:
            data: bytes = self._call(self._conn.recv, size)
        except ssl.SSLZeroReturnError:
            data = b""  # close_notify: ssl.SSLObject reports it as end of data
        if buffer is None:
            return data
        buffer[: len(data)] = data
        return len(data)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        sent: int = self._call(self._conn.send, bytes(data))
        return sent

    def unwrap(self) -> None:
        if not self._call(self._conn.shutdown):
            # close_notify sent; like ssl.SSLObject, wait for the peer's.
            self._call(self._conn.shutdown)

    def pending(self) -> int:
        count: int = self._conn.pending()
        return count

    def getpeercert(self, binary_form: bool = False) -> Any:
        cert = self._conn.get_peer_certificate(as_cryptography=True)
        if binary_form:
            return None if cert is None else cert.public_bytes(Encoding.DER)
        return {}  # not verified here: judged by the caller, as ssl gives {} for CERT_NONE

    def cipher(self) -> tuple[str, str, int] | None:
        name = self._conn.get_cipher_name()
        if name is None:
            return None
        return name, self._conn.get_cipher_version() or "", self._conn.get_cipher_bits() or 0

    def version(self) -> str | None:
        return self._conn.get_protocol_version_name() or None

    def compression(self) -> None:
        return None

    def selected_alpn_protocol(self) -> None:
        return None

    def peer_chain_der(self) -> tuple[bytes, ...]:
        """The chain the client presented, leaf first, as DER (empty without a certificate)."""
        leaf = self._conn.get_peer_certificate(as_cryptography=True)
        if leaf is None:
            return ()
        # On the server side OpenSSL's chain leaves the peer's own certificate out.
        rest = self._conn.get_peer_cert_chain(as_cryptography=True) or []
        ders = [leaf.public_bytes(Encoding.DER)]
        ders += [c.public_bytes(Encoding.DER) for c in rest]
        return tuple(ders[:1] + [d for d in ders[1:] if d != ders[0]])

    def group_name(self) -> str | None:
        """The key exchange group of an (EC)DHE handshake, OpenSSL's name (``x25519``)."""
        if not _lib.Cryptography_HAS_SSL_GET0_GROUP_NAME:
            return None  # an OpenSSL before 3.2: the log then shows strength 0 for ECDHE
        name = _lib.SSL_get0_group_name(self._conn._ssl)
        return None if name == _ffi.NULL else _ffi.string(name).decode("ascii")

    def get_channel_binding(self, cb_type: str = "tls-unique") -> bytes | None:
        if cb_type != "tls-unique":
            raise ValueError(f"{cb_type!r} channel binding type not implemented")
        # RFC 5929 §3.1: the first Finished of the latest handshake. On a full handshake the
        # client sends the first (the peer's here); on a resumed one the server does (ours).
        finished: bytes | None = (self._conn.get_finished() if self._reused
                                  else self._conn.get_peer_finished())
        return finished


def _refuse_resumption(ssl_ptr: Any) -> None:
    """Make the session of a handshake without the Extended Master Secret unresumable.

    cryptography's binding offers neither ``SSL_CTX_remove_session`` nor a session's id
    context setter. OpenSSL resumes a cached session only for a handshake of the session's
    own protocol version (``ssl_get_prev_session``: otherwise a cache miss, a full handshake),
    so the cached session is given a version no handshake here can have (SSL 3.0: the context
    speaks TLS 1.2 only). The connection that made it is unaffected: its version is its own.
    """
    session = _lib.SSL_get_session(ssl_ptr)
    if session != _ffi.NULL:
        _lib.SSL_SESSION_set_protocol_version(session, _lib.SSL3_VERSION)
