"""The TLS of a Windows Server 2016/2019 Exchange server, as data (exchange.md §4.6).

Pure: the cipher suites Schannel enables by default and their order, the groups Windows offers,
the names Exchange writes for them (IANA suite names in Received headers, ``SP_PROT_*`` and
``CALG_*`` names in the protocol log), and Schannel's error names for a failed handshake. The
TLS edge (``exchsim/tls/schannel.py``) turns this into OpenSSL settings.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Suite:
    """One TLS 1.2 cipher suite: its OpenSSL and IANA names and what Schannel reports for it."""

    openssl: str  # OpenSSL's name, e.g. "ECDHE-RSA-AES256-GCM-SHA384"
    iana: str  # "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
    key_exchange: str  # "ECDHE", "DHE" or "RSA"
    bulk_bits: int  # AES key size
    mac_hash: str  # the hash of the suite: "SHA1", "SHA_256" or "SHA_384"
    aead: bool  # GCM: no separate MAC (Schannel reports the MAC strength as 0 bits)


def _suite(openssl: str, iana: str) -> Suite:
    kx = iana.removeprefix("TLS_").split("_WITH_")[0].split("_")[0]
    cipher = iana.split("_WITH_")[1]
    bits = 256 if "AES_256" in cipher else 128
    aead = "_GCM_" in cipher
    mac = "SHA_384" if cipher.endswith("SHA384") else (
        "SHA_256" if cipher.endswith("SHA256") else "SHA1")
    return Suite(openssl, iana, kx, bits, mac, aead)


# "TLS Cipher Suites in Windows 10 v1809" (= Windows Server 2019), the suites enabled by
# default, in Schannel's priority order, less TLS_RSA_WITH_3DES_EDE_CBC_SHA (not in the
# OpenSSL exchsim runs on: built without weak ciphers) and the NULL suites (Schannel uses them
# only when an application asks for them, and Exchange does not). The ECDSA suites stay in the
# list, as on Windows: with the RSA certificate setup makes they are never chosen.
SUITES: tuple[Suite, ...] = tuple(_suite(o, i) for o, i in (
    ("ECDHE-ECDSA-AES256-GCM-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    ("ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    ("ECDHE-RSA-AES256-GCM-SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
    ("ECDHE-RSA-AES128-GCM-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    ("DHE-RSA-AES256-GCM-SHA384", "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"),
    ("DHE-RSA-AES128-GCM-SHA256", "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"),
    ("ECDHE-ECDSA-AES256-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384"),
    ("ECDHE-ECDSA-AES128-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"),
    ("ECDHE-RSA-AES256-SHA384", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"),
    ("ECDHE-RSA-AES128-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"),
    ("ECDHE-ECDSA-AES256-SHA", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"),
    ("ECDHE-ECDSA-AES128-SHA", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"),
    ("ECDHE-RSA-AES256-SHA", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"),
    ("ECDHE-RSA-AES128-SHA", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
    ("AES256-GCM-SHA384", "TLS_RSA_WITH_AES_256_GCM_SHA384"),
    ("AES128-GCM-SHA256", "TLS_RSA_WITH_AES_128_GCM_SHA256"),
    ("AES256-SHA256", "TLS_RSA_WITH_AES_256_CBC_SHA256"),
    ("AES128-SHA256", "TLS_RSA_WITH_AES_128_CBC_SHA256"),
    ("AES256-SHA", "TLS_RSA_WITH_AES_256_CBC_SHA"),
    ("AES128-SHA", "TLS_RSA_WITH_AES_128_CBC_SHA"),
))
BY_OPENSSL_NAME = {s.openssl: s for s in SUITES}

# The groups Windows 10 / Server 2016 and later offer by default, in order (curve25519,
# NistP256, NistP384), in OpenSSL's spelling; their strength as Schannel reports it.
GROUPS: tuple[str, ...] = ("X25519", "P-256", "P-384")
_GROUP_BITS = {"x25519": 255, "prime256v1": 256, "secp256r1": 256, "p-256": 256,
               "secp384r1": 384, "p-384": 384}

DH_BITS = 2048  # the DHE group exchsim uses (Windows' default minimum and size)

_PROTOCOLS = {"TLSv1.2": "SP_PROT_TLS1_2", "TLSv1.1": "SP_PROT_TLS1_1",
              "TLSv1": "SP_PROT_TLS1_0", "TLSv1.0": "SP_PROT_TLS1_0"}


def cipher_string(*, legacy: bool = False) -> str:
    """The OpenSSL cipher list, Schannel's order; ``legacy`` lowers OpenSSL's security level
    so that TLS 1.0/1.1 (MD5/SHA-1 handshake signatures) can be negotiated at all."""
    text = ":".join(s.openssl for s in SUITES)
    return f"{text}:@SECLEVEL=0" if legacy else text


def tls_names(protocol: str | None, cipher: str | None) -> tuple[str, str] | None:
    """Python's/OpenSSL's ("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384") in Exchange's spelling,
    ("TLS1_2", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"), for Received headers (exchange.md §5.4)."""
    if not protocol:
        return None
    proto = "TLS1_0" if protocol == "TLSv1" else protocol.replace("TLSv", "TLS").replace(".", "_")
    name = (cipher or "").upper()
    suite = BY_OPENSSL_NAME.get(name)
    return proto, suite.iana if suite else name.replace("-", "_")


def key_exchange_bits(suite: Suite, group: str | None, rsa_bits: int) -> int:
    """The key exchange strength Schannel reports: the curve's size, the DH group's, or the
    server's RSA key's."""
    if suite.key_exchange == "ECDHE":
        return _GROUP_BITS.get((group or "").lower(), 0)
    if suite.key_exchange == "DHE":
        return DH_BITS
    return rsa_bits


def negotiated_line(protocol: str | None, cipher: str | None, group: str | None,
                    rsa_bits: int, *, side: str = "SERVER") -> str:
    """The protocol-log line of a completed handshake, in Exchange's words (exchange.md §6.1):
    ``TLS protocol SP_PROT_TLS1_2_SERVER negotiation succeeded using bulk encryption algorithm
    CALG_AES_256 with strength 256 bits, MAC hash algorithm CALG_SHA_384 with strength 0 bits
    and key exchange algorithm CALG_ECDH_EPHEM with strength 255 bits``. ``side`` is
    ``CLIENT`` on the sending side: Schannel's flag names for a client handshake
    (``SP_PROT_TLS1_2_CLIENT``), exchange.md §6.1."""
    base = _PROTOCOLS.get(protocol or "", f"SP_PROT_{(protocol or 'UNKNOWN').upper()}")
    proto = f"{base}_{side}"
    suite = BY_OPENSSL_NAME.get((cipher or "").upper())
    if suite is None:  # not a suite exchsim offers; cannot happen with its own contexts
        return f"TLS protocol {proto} negotiation succeeded using cipher {cipher}"
    mac_bits = 0 if suite.aead else {"SHA1": 160, "SHA_256": 256, "SHA_384": 384}[suite.mac_hash]
    kx = {"ECDHE": "CALG_ECDH_EPHEM", "DHE": "CALG_DH_EPHEM", "RSA": "CALG_RSA_KEYX"}[
        suite.key_exchange]
    return (f"TLS protocol {proto} negotiation succeeded using bulk encryption algorithm "
            f"CALG_AES_{suite.bulk_bits} with strength {suite.bulk_bits} bits, MAC hash "
            f"algorithm CALG_{suite.mac_hash} with strength {mac_bits} bits and key exchange "
            f"algorithm {kx} with strength {key_exchange_bits(suite, group, rsa_bits)} bits")


# OpenSSL's reason for a failed server handshake -> the Schannel error name Exchange logs in
# ``TLS negotiation failed with error <name>`` (exchange.md §6.1). First match wins.
_FAILURES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("no shared cipher", "unsupported protocol", "no suitable",
      "version too low", "no protocols available", "inappropriate fallback",
      "no shared group", "no shared signature", "alert protocol version",
      "handshake failure"), "AlgorithmMismatch"),
    (("bad record mac", "decryption failed", "decrypt"), "MessageAltered"),
    (("eof", "reset", "broken pipe", "connection lost", "connectionerror"), "SocketError"),
    (("timeout", "timed out"), "Timeout"),
    (("record", "wrong version number", "unexpected message", "packet length",
      "http request", "length mismatch", "bad message", "decode error", "parse", "illegal",
      "unknown", "alert"),
     "IllegalMessage"),
)


def failure_name(error: str) -> str:
    """Schannel's name for a failed handshake, from the error's class name and text."""
    text = error.lower()
    for needles, name in _FAILURES:
        if any(n in text for n in needles):
            return name
    return "InternalError"
