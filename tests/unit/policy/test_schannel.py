"""Schannel's vocabulary: suite names, the log line, failure names (exchange.md §4.6, §6.1)."""

from __future__ import annotations

import ssl

import pytest

from exchsim.policy.schannel import (
    GROUPS,
    SUITES,
    cipher_string,
    failure_name,
    negotiated_line,
    tls_names,
)


def test_the_suites_are_windows_server_2019s_default_order_less_3des() -> None:
    assert [s.iana for s in SUITES][:6] == [
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"]
    assert len(SUITES) == 20 and SUITES[-1].iana == "TLS_RSA_WITH_AES_128_CBC_SHA"
    assert not any("CHACHA" in s.iana or "3DES" in s.iana or "NULL" in s.iana for s in SUITES)
    assert GROUPS == ("X25519", "P-256", "P-384")


def test_every_suite_is_known_to_openssl_by_that_name_and_in_that_order() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_ciphers(cipher_string())
    names = [c["name"] for c in ctx.get_ciphers() if c["protocol"] != "TLSv1.3"]
    assert names == [s.openssl for s in SUITES]
    assert cipher_string(legacy=True).endswith(":@SECLEVEL=0")


@pytest.mark.parametrize(("protocol", "cipher", "names"), [
    ("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384", ("TLS1_2", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384")),
    ("TLSv1.2", "AES128-SHA", ("TLS1_2", "TLS_RSA_WITH_AES_128_CBC_SHA")),
    ("TLSv1.2", "DHE-RSA-AES128-GCM-SHA256", ("TLS1_2", "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256")),
    ("TLSv1", "ECDHE-RSA-AES128-SHA", ("TLS1_0", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA")),
    ("TLSv1.1", "AES256-SHA", ("TLS1_1", "TLS_RSA_WITH_AES_256_CBC_SHA")),
])
def test_received_names_are_iana(protocol: str, cipher: str, names: tuple[str, str]) -> None:
    assert tls_names(protocol, cipher) == names
    assert tls_names(None, cipher) is None


def test_the_negotiation_line_matches_the_published_2016_2019_sample() -> None:
    # exchange.md §1.6: AES-128-GCM, SHA-256, ECDHE on P-256
    assert negotiated_line("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256", "prime256v1", 2048) == (
        "TLS protocol SP_PROT_TLS1_2_SERVER negotiation succeeded using bulk encryption "
        "algorithm CALG_AES_128 with strength 128 bits, MAC hash algorithm CALG_SHA_256 with "
        "strength 0 bits and key exchange algorithm CALG_ECDH_EPHEM with strength 256 bits")


@pytest.mark.parametrize(("cipher", "group", "tail"), [
    ("ECDHE-RSA-AES256-GCM-SHA384", "x25519",
     "CALG_AES_256 with strength 256 bits, MAC hash algorithm CALG_SHA_384 with strength 0 bits"
     " and key exchange algorithm CALG_ECDH_EPHEM with strength 255 bits"),
    ("ECDHE-RSA-AES256-SHA384", "secp384r1",
     "CALG_AES_256 with strength 256 bits, MAC hash algorithm CALG_SHA_384 with strength 384 "
     "bits and key exchange algorithm CALG_ECDH_EPHEM with strength 384 bits"),
    ("DHE-RSA-AES128-GCM-SHA256", "ffdhe2048",
     "CALG_AES_128 with strength 128 bits, MAC hash algorithm CALG_SHA_256 with strength 0 bits"
     " and key exchange algorithm CALG_DH_EPHEM with strength 2048 bits"),
    ("AES128-SHA", None,
     "CALG_AES_128 with strength 128 bits, MAC hash algorithm CALG_SHA1 with strength 160 bits"
     " and key exchange algorithm CALG_RSA_KEYX with strength 2048 bits"),
])
def test_the_negotiation_line_per_suite(cipher: str, group: str | None, tail: str) -> None:
    line = negotiated_line("TLSv1.2", cipher, group, 2048)
    assert line == ("TLS protocol SP_PROT_TLS1_2_SERVER negotiation succeeded using bulk "
                    f"encryption algorithm {tail}")


@pytest.mark.parametrize(("error", "name"), [
    ("SSLError: TLS error: [('SSL routines', '', 'no shared cipher')]", "AlgorithmMismatch"),
    ("SSLError: TLS error: [('SSL routines', '', 'unsupported protocol')]", "AlgorithmMismatch"),
    # The client's side of a server that takes no TLS 1.2: the peer's protocol_version alert.
    ("SSLError: [SSL: TLSV1_ALERT_PROTOCOL_VERSION] tlsv1 alert protocol version (_ssl.c:1006)",
     "AlgorithmMismatch"),
    ("SSLError: [SSL: SSLV3_ALERT_HANDSHAKE_FAILURE] sslv3 alert handshake failure",
     "AlgorithmMismatch"),
    ("SSLError: TLS error: [('SSL routines', '', 'wrong version number')]", "IllegalMessage"),
    ("SSLError: TLS error: [('SSL routines', '', 'decryption failed or bad record mac')]",
     "MessageAltered"),
    ("SSLError: TLS error: [('SSL routines', '', 'http request')]", "IllegalMessage"),
    ("SSLError: TLS error: [('SSL routines', '', 'record layer failure')]", "IllegalMessage"),
    ("SSLEOFError: EOF occurred in violation of protocol", "SocketError"),
    ("ConnectionResetError: [Errno 104] Connection reset by peer", "SocketError"),
    ("TimeoutError: ", "Timeout"),
    ("RuntimeError: something else", "InternalError"),
])
def test_failures_get_schannels_names(error: str, name: str) -> None:
    assert failure_name(error) == name
