"""The Windows Server 2016/2019 Schannel profile (exchange.md §4.6) applied to OpenSSL contexts.

Two OpenSSL libraries run in exchsim's process, and each needs its own way in:

* every listener (STARTTLS and X-ANONYMOUSTLS) is a pyOpenSSL context
  (:mod:`exchsim.tls.judged`), on the OpenSSL 3.5 that ``cryptography`` links statically.
  pyOpenSSL can set versions, the cipher list, options and DH parameters, but groups only one at
  a time (``set_tmp_ecdh``), and that OpenSSL's symbols are not exported for ctypes. Its groups
  therefore come from an OpenSSL configuration, ``exchsim/tls/openssl.cnf``, loaded into that
  library alone when the package is imported (``exchsim/__init__.py``); :func:`check_groups`
  proves with an in-memory handshake that it is in force.
* the client side of every hop (:mod:`exchsim.transport.hopclient`) is Python's ``ssl``, on the
  system's ``libssl.so.3``. ``SSLContext`` has no call for a list of groups either
  (``set_ecdh_curve`` takes one), so :func:`client_profile` calls ``SSL_CTX_ctrl`` of that very
  library through ctypes (``SSL_CTX_set1_groups_list`` is a macro over it) on the context's
  ``SSL_CTX``; the pointer is checked against ``SSL_CTX_get_options`` first.

The server profile: TLS 1.2 only (1.0 and 1.1 when the server's ``Tls10ServerEnabled`` /
``Tls11ServerEnabled`` say so), Schannel's cipher suites in Schannel's order with the server's
order deciding, DHE with the 2048-bit RFC 7919 group ``ffdhe2048``, no session tickets (Schannel
caches session ids), no encrypt-then-mac (Schannel does not do RFC 7366), no renegotiation.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import functools
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from exchsim.policy import schannel

__all__ = ["LegacyProtocols", "apply_server_profile", "check_groups", "client_profile"]

DH_PARAMETERS = Path(__file__).with_name("ffdhe2048.pem")
OP_NO_ENCRYPT_THEN_MAC = 1 << 19  # SSL_OP_NO_ENCRYPT_THEN_MAC (OpenSSL 1.1.1 and 3.x)
_SSL_CTRL_SET_GROUPS_LIST = 92  # SSL_CTRL_SET_GROUPS_LIST, what SSL_CTX_set1_groups_list calls


class LegacyProtocols:
    """Which of TLS 1.0 and 1.1 a server also accepts (both off by default)."""

    __slots__ = ("tls10", "tls11")

    def __init__(self, tls10: bool = False, tls11: bool = False) -> None:
        self.tls10 = tls10
        self.tls11 = tls11

    @property
    def any(self) -> bool:
        return self.tls10 or self.tls11


def apply_server_profile(ctx: SSL.Context, legacy: LegacyProtocols | None = None) -> None:
    """Versions, cipher suites, DH group and options of a Windows Server 2016/2019 listener."""
    check_groups()
    legacy = legacy or LegacyProtocols()
    if legacy.tls10:
        ctx.set_min_proto_version(SSL.TLS1_VERSION)
    elif legacy.tls11:
        ctx.set_min_proto_version(SSL.TLS1_1_VERSION)
    else:
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    options = (SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_TICKET | SSL.OP_NO_COMPRESSION
               | SSL.OP_NO_RENEGOTIATION | OP_NO_ENCRYPT_THEN_MAC)
    if legacy.tls10 and not legacy.tls11:
        options |= SSL.OP_NO_TLSv1_1  # Schannel enables each version on its own
    ctx.set_options(options)
    ctx.set_cipher_list(schannel.cipher_string(legacy=legacy.any).encode())
    ctx.load_tmp_dh(str(DH_PARAMETERS).encode())


@functools.cache
def check_groups() -> None:
    """Raise RuntimeError unless pyOpenSSL's server contexts offer exactly Windows' groups.

    In memory, with a throwaway Ed25519 key: a client offering only P-521 (not a Windows group)
    must find no shared group, and one offering only P-256 must get through.
    """
    if _handshake_ok(ec.SECP256R1()) and not _handshake_ok(ec.SECP521R1()):
        return
    raise RuntimeError(
        "the TLS groups of exchsim/tls/openssl.cnf are not in force: cryptography was "
        "imported before exchsim, so its OpenSSL did not read them; import exchsim first")


def _throwaway_server() -> SSL.Context:
    # Ed25519, not ECDSA: in TLS 1.2 an ECDSA certificate's own curve must be among the
    # client's groups, which would confound the check.
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "groups-check")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(minutes=5))
            .sign(key, None))
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.use_certificate(cert)
    ctx.use_privatekey(key)
    return ctx


def _handshake_ok(client_curve: ec.EllipticCurve) -> bool:
    server_ctx = _throwaway_server()
    client_ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    client_ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    client_ctx.set_cipher_list(b"ECDHE-ECDSA-AES128-GCM-SHA256")
    client_ctx.set_tmp_ecdh(client_curve)  # the client offers this one group only
    server = SSL.Connection(server_ctx, None)
    server.set_accept_state()
    client = SSL.Connection(client_ctx, None)
    client.set_connect_state()
    for _ in range(8):
        for this, other in ((client, server), (server, client)):
            try:
                this.do_handshake()
            except SSL.WantReadError:
                pass
            except SSL.Error:
                return False
            with contextlib.suppress(SSL.WantReadError):
                other.bio_write(this.bio_read(65536))
    return server.get_cipher_name() is not None and client.get_cipher_name() is not None


# --- the client side of a hop: Python's ssl on the system libssl ----------------------------


@functools.cache
def _libssl() -> ctypes.CDLL:
    import _ssl  # the extension module; its libssl is the one Python's ssl contexts live in

    # A shared _ssl module: its handle resolves libssl's symbols; one built into the
    # interpreter: libssl is then linked to the interpreter itself.
    lib = ctypes.CDLL(getattr(_ssl, "__file__", None))
    lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    lib.SSL_CTX_ctrl.restype = ctypes.c_long
    lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_get_options.restype = ctypes.c_uint64
    return lib


def _ssl_ctx_pointer(ctx: ssl.SSLContext) -> int:
    """The ``SSL_CTX *`` of an ``ssl.SSLContext``: CPython's PySSLContext starts with it, right
    after the object header. Checked: OpenSSL must report the options Python reports."""
    address = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not address or _libssl().SSL_CTX_get_options(address) != int(ctx.options):
        raise RuntimeError("cannot reach the SSL_CTX of an ssl.SSLContext on this Python")
    return address


def client_profile(ctx: ssl.SSLContext) -> None:
    """TLS 1.2, Schannel's suites in its order and Windows' groups for a hop's client side."""
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(schannel.cipher_string())
    groups = ":".join(schannel.GROUPS).encode()
    if _libssl().SSL_CTX_ctrl(_ssl_ctx_pointer(ctx), _SSL_CTRL_SET_GROUPS_LIST, 0,
                              groups) != 1:
        raise RuntimeError(f"OpenSSL refused the groups {groups.decode()}")
