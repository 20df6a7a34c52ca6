"""The CRL distribution point and the CRL fetcher (tls/crlhttp.py) over real loopback HTTP."""

from __future__ import annotations

import asyncio
import datetime
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509

from exchsim.clock import Clock
from exchsim.tls.crlhttp import (
    CrlFetcher,
    CrlFetchError,
    CrlServer,
    distribution_points,
    is_loopback_url,
)
from exchsim.tls.issued import issue_certificate, revoke
from exchsim.tls.labca import CRL_VALIDITY, LabCa, crl_base_url, ensure_lab_ca

HOST = "127.0.0.1"


@dataclass(slots=True)
class SetClock(Clock):
    """A wall clock the test moves."""

    now: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))

    def utc(self) -> datetime.datetime:
        return self.now


@dataclass
class Served:
    lab_ca: LabCa
    server: CrlServer
    clock: SetClock


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    clock = SetClock()
    server = CrlServer(tmp_path / "pki" / "crl", HOST, 0)
    for port in range(18081, 18200):  # a free one
        server.port = port
        try:
            await server.start()
            break
        except OSError:
            continue
    lab_ca = await asyncio.to_thread(ensure_lab_ca, tmp_path / "pki", clock.now,
                                     crl_base_url=crl_base_url(HOST, server.port))
    yield Served(lab_ca, server, clock)
    await server.stop()


def urllib_get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, "", b""


async def test_the_served_crl_is_the_file_of_the_moment(served: Served) -> None:
    lab_ca = served.lab_ca
    issued = await asyncio.to_thread(issue_certificate, lab_ca, "mail.partner.example",
                                     served.clock.now)
    (url,) = distribution_points(issued.certificate)
    assert url == lab_ca.crl_url("issuing")
    status, content_type, body = await asyncio.to_thread(urllib_get, url)
    assert (status, content_type) == (200, "application/pkix-crl")
    assert len(x509.load_der_x509_crl(body)) == 0
    await asyncio.to_thread(revoke, lab_ca, served.clock.now, name="mail.partner.example")
    _, _, body = await asyncio.to_thread(urllib_get, url)  # no restart: read per request
    crl = x509.load_der_x509_crl(body)
    assert crl.get_revoked_certificate_by_serial_number(issued.certificate.serial_number)


@pytest.mark.parametrize("path", ["/crl/nothing.crl", "/crl/..%2Fca%2Froot.key",
                                  "/crl/root.key", "/", "/ca/root.crt"])
async def test_anything_else_is_404(served: Served, path: str) -> None:
    status, _, _ = await asyncio.to_thread(urllib_get, f"http://{HOST}:{served.server.port}{path}")
    assert status == 404


async def test_fetcher_caches_until_next_update(served: Served) -> None:
    url = served.lab_ca.crl_url("issuing")
    async with CrlFetcher(served.clock, timeout=5) as fetcher:
        first = await fetcher.fetch(url)
        assert await fetcher.fetch(url) == first
        assert fetcher.fetches == 1
        next_update = first.next_update_utc
        assert next_update is not None
        served.clock.now = next_update - datetime.timedelta(seconds=1)
        await fetcher.fetch(url)
        assert fetcher.fetches == 1
        served.clock.now = next_update  # the CRL is due: asked again
        await fetcher.fetch(url)
        assert fetcher.fetches == 2
        assert datetime.timedelta(days=7) == CRL_VALIDITY


async def test_concurrent_fetches_share_one_request(served: Served) -> None:
    url = served.lab_ca.crl_url("issuing")
    async with CrlFetcher(served.clock, timeout=5) as fetcher:
        crls = await asyncio.gather(*(fetcher.fetch(url) for _ in range(5)))
    assert fetcher.fetches == 1
    assert all(crl is crls[0] for crl in crls)


async def test_fetch_all_reports_each_failure(served: Served) -> None:
    good = served.lab_ca.crl_url("root")
    missing = f"http://{HOST}:{served.server.port}/crl/missing.crl"
    async with CrlFetcher(served.clock, timeout=5) as fetcher:
        results = await fetcher.fetch_all([good, missing, good, "ldap://x/cn=crl"])
    assert isinstance(results[good], x509.CertificateRevocationList)
    assert isinstance(results[missing], CrlFetchError)
    assert results[missing].reason == "HTTP 404"
    assert results["ldap://x/cn=crl"].reason == "not an HTTP URL"  # type: ignore[union-attr]


async def test_fetch_gives_up_within_its_bound() -> None:
    """A distribution point that accepts the connection and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with CrlFetcher(Clock(), timeout=10) as fetcher:
            started = time.monotonic()
            with pytest.raises(CrlFetchError, match=r"timed out after 0\.5 s"):
                await fetcher.fetch(f"http://{HOST}:{port}/crl/issuing.crl", timeout=0.5)
            assert time.monotonic() - started < 2
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_refused_and_not_a_crl() -> None:
    async def not_a_crl(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(not_a_crl, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    server_closed = await asyncio.start_server(not_a_crl, HOST, 0)
    refused_port = server_closed.sockets[0].getsockname()[1]
    server_closed.close()
    await server_closed.wait_closed()
    try:
        async with CrlFetcher(Clock(), timeout=5) as fetcher:
            with pytest.raises(CrlFetchError, match="not a CRL"):
                await fetcher.fetch(f"http://{HOST}:{port}/x.crl")
            with pytest.raises(CrlFetchError, match="ClientConnectorError"):
                await fetcher.fetch(f"http://{HOST}:{refused_port}/x.crl")
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("url", [
    "http://192.0.2.1/x.crl",
    "http://198.51.100.7:8080/x.crl",
    "http://crl.example.com/x.crl",
    "https://[2001:db8::1]/x.crl",
    "http://127.0.0.1.example.com/x.crl",
])
async def test_the_fetcher_never_leaves_loopback(url: str) -> None:
    async with CrlFetcher(Clock(), timeout=30) as fetcher:
        started = time.monotonic()
        with pytest.raises(CrlFetchError, match="not a loopback address"):
            await fetcher.fetch(url)
        assert time.monotonic() - started < 1.0  # refused at once: no connection, no lookup


@pytest.mark.parametrize(("url", "loopback"), [
    ("http://127.0.10.251:10080/crl/issuing.crl", True),
    ("http://127.255.255.254/x.crl", True),
    ("http://[::1]:80/x.crl", True),
    ("http://LOCALHOST/x.crl", True),
    ("http://128.0.0.1/x.crl", False),
    ("http:///x.crl", False),
])
def test_is_loopback_url(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


async def test_the_fetcher_reaches_only_the_crl_server_it_is_given_beside_loopback() -> None:
    """``hosts`` (the lab's CRL server of --hosts) opens that address, not its neighbours."""
    async with CrlFetcher(Clock(), timeout=30, hosts=["198.51.100.50",
                                                      "[2001:db8::50]"]) as fetcher:
        assert fetcher.hosts == {"198.51.100.50", "2001:db8::50"}
        for url in ("http://198.51.100.51/x.crl", "http://198.51.100.5/x.crl",
                    "https://[2001:db8::51]/x.crl"):
            started = time.monotonic()
            with pytest.raises(CrlFetchError, match="not a loopback address nor the lab's CRL "
                                                    "server"):
                await fetcher.fetch(url)
            assert time.monotonic() - started < 1.0
