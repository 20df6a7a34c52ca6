"""The EXCHANGEAUTH stand-in: blob format, verification rules, and a real channel binding."""

from __future__ import annotations

import base64
import hashlib

import pytest

from exchsim.tls.contexts import client_context_anonymous_tls
from exchsim.tls.directtrust import (
    ExchangeAuthResult,
    make_exchangeauth_blob,
    verify_exchangeauth,
)
from exchsim.tls.judged import JudgedServerContext

from .conftest import LabPki
from .helpers import handshake

UNIQUE = bytes(range(12))
OTHER_UNIQUE = bytes(range(1, 13))
DER_EX01 = b"\x30\x03der-of-ex01"
DER_EX02 = b"\x30\x03der-of-ex02"
PUBLISHED = {"ex01.contoso.com": DER_EX01, "ex02.contoso.com": DER_EX02}


def test_blob_format() -> None:
    blob = make_exchangeauth_blob("EX02.contoso.com", UNIQUE)
    digest = hashlib.sha256(b"exchsim-exchangeauth\0" + UNIQUE + b"EX02.contoso.com").hexdigest()
    assert base64.b64decode(blob, validate=True) == f"EX02.contoso.com:{digest}".encode()
    assert blob.isascii()
    assert make_exchangeauth_blob("EX02.contoso.com", OTHER_UNIQUE) != blob


@pytest.mark.parametrize("fqdn", ["", "ex:02", "ex 02.contoso.com", "ëx02.contoso.com"])
def test_blob_needs_a_plain_fqdn(fqdn: str) -> None:
    with pytest.raises(ValueError):
        make_exchangeauth_blob(fqdn, UNIQUE)


def test_blob_needs_a_channel_binding() -> None:
    with pytest.raises(ValueError):
        make_exchangeauth_blob("ex02.contoso.com", b"")


def test_success() -> None:
    blob = make_exchangeauth_blob("EX02.contoso.com", UNIQUE)
    result = verify_exchangeauth(blob, UNIQUE, DER_EX02, PUBLISHED)
    assert result.ok
    assert result.server_fqdn == "EX02.contoso.com"
    assert "EX02.contoso.com" in result.reason
    assert hashlib.sha1(DER_EX02).hexdigest().upper() in result.reason
    # published keys are matched case-insensitively too
    mixed = {"EX02.Contoso.COM": DER_EX02}
    assert verify_exchangeauth(f"  {blob}\r\n", UNIQUE, DER_EX02, mixed).ok


def _failure(result: ExchangeAuthResult, fqdn: str | None, *words: str) -> None:
    assert not result.ok
    assert result.server_fqdn == fqdn
    assert result.reason
    for word in words:
        assert word in result.reason


def test_server_not_of_the_organization() -> None:
    blob = make_exchangeauth_blob("mx.fabrikam.com", UNIQUE)
    _failure(
        verify_exchangeauth(blob, UNIQUE, DER_EX02, PUBLISHED),
        "mx.fabrikam.com",
        "not an Exchange server",
    )


def test_replay_with_another_sessions_tls_unique() -> None:
    captured = make_exchangeauth_blob("ex02.contoso.com", OTHER_UNIQUE)
    _failure(
        verify_exchangeauth(captured, UNIQUE, DER_EX02, PUBLISHED),
        "ex02.contoso.com",
        "does not match this TLS session",
    )


def test_certificate_of_another_server() -> None:
    # EX01 authenticated the TLS handshake with its own certificate but claims to be EX02
    blob = make_exchangeauth_blob("ex02.contoso.com", UNIQUE)
    result = verify_exchangeauth(blob, UNIQUE, DER_EX01, PUBLISHED)
    _failure(
        result,
        "ex02.contoso.com",
        "not the certificate published for ex02.contoso.com",
        hashlib.sha1(DER_EX01).hexdigest().upper(),
    )


def test_no_client_certificate() -> None:
    blob = make_exchangeauth_blob("ex02.contoso.com", UNIQUE)
    _failure(
        verify_exchangeauth(blob, UNIQUE, None, PUBLISHED),
        "ex02.contoso.com",
        "no client certificate",
    )


@pytest.mark.parametrize("unique", [None, b""])
def test_no_channel_binding(unique: bytes | None) -> None:
    blob = make_exchangeauth_blob("ex02.contoso.com", UNIQUE)
    _failure(
        verify_exchangeauth(blob, unique, DER_EX02, PUBLISHED), "ex02.contoso.com", "tls-unique"
    )


def _b64(text: bytes) -> str:
    return base64.b64encode(text).decode()


GOOD_HEX = "a" * 64


@pytest.mark.parametrize(
    ("blob", "fqdn"),
    [
        ("", None),
        ("   ", None),
        ("!!!not base64!!!", None),
        ("QUJD=", None),  # bad padding
        (_b64(b"\xff\xfe:" + GOOD_HEX.encode()), None),  # not ASCII
        (_b64(b"no separator"), None),
        (_b64(b":" + GOOD_HEX.encode()), None),  # empty FQDN
        (_b64(b"ex 02:" + GOOD_HEX.encode()), None),
        (_b64(b"ex02.contoso.com:"), "ex02.contoso.com"),
        (_b64(b"ex02.contoso.com:abc"), "ex02.contoso.com"),
        (_b64(b"ex02.contoso.com:" + b"z" * 64), "ex02.contoso.com"),
        (_b64(b"ex02.contoso.com:" + GOOD_HEX.encode()), "ex02.contoso.com"),  # wrong hash
    ],
)
def test_garbage_blob(blob: str, fqdn: str | None) -> None:
    result = verify_exchangeauth(blob, UNIQUE, DER_EX02, PUBLISHED)
    _failure(result, fqdn)


def test_upper_case_hash_is_accepted() -> None:
    blob = make_exchangeauth_blob("ex02.contoso.com", UNIQUE)
    fqdn, _, digest = base64.b64decode(blob).decode().rpartition(":")
    upper = _b64(f"{fqdn}:{digest.upper()}".encode())
    assert verify_exchangeauth(upper, UNIQUE, DER_EX02, PUBLISHED).ok


# --- over real X-ANONYMOUSTLS handshakes -------------------------------------------------


async def test_end_to_end_over_real_sessions(lab_pki: LabPki) -> None:
    published = {
        "ex01.contoso.com": lab_pki.ex01.load_der(),
        "ex02.contoso.com": lab_pki.ex02.load_der(),
    }
    server_ctx = JudgedServerContext(lab_pki.ex01)
    session = await handshake(server_ctx, client_context_anonymous_tls(lab_pki.ex02))
    other = await handshake(server_ctx, client_context_anonymous_tls(lab_pki.ex02))
    assert session.client.tls_unique is not None and other.client.tls_unique is not None

    # EX02 authenticates with the binding it sees; EX01 checks it against its own view
    blob = make_exchangeauth_blob("ex02.contoso.com", session.client.tls_unique)
    result = verify_exchangeauth(
        blob, session.server.tls_unique, session.server.peer_der, published
    )
    assert result == ExchangeAuthResult(True, "ex02.contoso.com", result.reason)

    # and EX01's 235 blob verifies on EX02's side, with the server certificate it saw
    answer = make_exchangeauth_blob("ex01.contoso.com", session.server.tls_unique or b"")
    assert verify_exchangeauth(
        answer, session.client.tls_unique, session.client.peer_der, published
    ).ok

    # the same blob replayed into another session fails
    replay = verify_exchangeauth(blob, other.server.tls_unique, other.server.peer_der, published)
    assert not replay.ok and "does not match" in replay.reason

    # EX02 (authenticated by its certificate in the handshake) cannot claim to be EX01
    spoof = make_exchangeauth_blob("ex01.contoso.com", session.client.tls_unique)
    result = verify_exchangeauth(
        spoof, session.server.tls_unique, session.server.peer_der, published
    )
    assert not result.ok and "not the certificate published" in result.reason
