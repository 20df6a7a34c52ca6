"""The lab's CRL distribution point (an aiohttp server) and the CRL fetcher (an aiohttp client).

**Server.** While the lab runs, :class:`CrlServer` answers ``GET /crl/<ca>.crl`` on the
config's ``Lab.CrlServer`` address (loopback; port plus the lab's port offset) with the file
``DATA/pki/crl/<ca>.crl`` as it is at that moment (read for every request, so a CRL that
``exchsim pki revoke`` or ``exchsim pki crl`` publishes while the lab runs is served on the next
fetch), ``Content-Type: application/pkix-crl``. Any other path is 404.

**Fetcher.** :class:`CrlFetcher` is what a certificate validator's caller uses to get the CRLs
of a chain (:func:`distribution_points` lists a certificate's HTTP CDP URLs): one aiohttp
client session, a bounded total time per fetch (Exchange's URL retrieval timeout for revocation
is about 10 s, exchange.md §4.2; the lab's is ``Lab.CrlRetrievalTimeout``), at most
:data:`MAX_CRL_BYTES` read, and a small cache keyed by URL that keeps a CRL until its
nextUpdate (a CRL without nextUpdate is not cached); callers that want the same CRL at the same
time share one request, each within its own bound. Any failure (timeout, refused connection,
HTTP status other than 200, a body that is not a CRL) raises :class:`CrlFetchError` with a
one-line reason; what to do then is the caller's setting.

The fetcher connects to **loopback** (an address literal in 127.0.0.0/8 or ``::1``, or
``localhost``) and to the hosts it is given: the lab's own CRL server (``Lab.CrlServer``'s
address, which ``--hosts`` may move to a host of its own, config/hosts.py), nothing else. The
URLs come from certificates that clients present, and the lab never opens a connection (or a
DNS lookup) anywhere else. Any other host is refused at once, without a connection, as a CRL
that cannot be had (so a real-world certificate presented by an ordinary sender costs no
wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from cryptography import x509

from exchsim.clock import Clock

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/pkix-crl"
DEFAULT_TIMEOUT = 10.0  # seconds (exchange.md §4.2)
MAX_CRL_BYTES = 1 << 20
CACHE_ENTRIES = 32
_NAME = re.compile(r"^[a-z0-9_-]{1,64}$")


class CrlServer:
    """Serves ``crl_dir/<name>.crl`` at ``http://host:port/crl/<name>.crl``."""

    def __init__(self, crl_dir: Path, host: str, port: int) -> None:
        self.crl_dir = crl_dir
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/crl/{name}", self._crl)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _crl(self, request: web.Request) -> web.Response:
        file_name = request.match_info["name"]
        stem, dot, ext = file_name.rpartition(".")
        if not dot or ext != "crl" or not _NAME.match(stem):
            raise web.HTTPNotFound()
        try:
            body = await asyncio.to_thread((self.crl_dir / file_name).read_bytes)
        except FileNotFoundError:
            raise web.HTTPNotFound() from None
        return web.Response(body=body, content_type=CONTENT_TYPE)


def distribution_points(cert: x509.Certificate) -> tuple[str, ...]:
    """The HTTP(S) URLs of ``cert``'s CRL distribution points, in order (none: empty)."""
    try:
        cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return ()
    urls = []
    for point in cdp:
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier) and \
                    urlsplit(name.value).scheme.lower() in ("http", "https"):
                urls.append(name.value)
    return tuple(urls)


def is_loopback_url(url: str) -> bool:
    """Whether ``url``'s host is loopback: 127.0.0.0/8, ``::1`` or ``localhost`` (no lookup)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _normal(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return host.lower()


def _url_host(url: str) -> str | None:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return None if host is None else _normal(host)


class CrlFetchError(Exception):
    """A CRL that could not be had; ``reason`` is one line (``timed out after 10 s``, ...)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Cached:
    crl: x509.CertificateRevocationList
    next_update: datetime.datetime


class CrlFetcher:
    """Fetches CRLs over HTTP with a bounded time, caching each until its nextUpdate."""

    def __init__(self, clock: Clock, *, timeout: float = DEFAULT_TIMEOUT,
                 max_entries: int = CACHE_ENTRIES, max_bytes: int = MAX_CRL_BYTES,
                 hosts: Iterable[str] = ()) -> None:
        self.clock = clock
        self.hosts = frozenset(_normal(host) for host in hosts)  # allowed beside loopback
        self.timeout = timeout
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._session: aiohttp.ClientSession | None = None
        self._inflight: dict[str, asyncio.Future[x509.CertificateRevocationList]] = {}
        self.fetches = 0  # requests actually sent (the cache's hits are not counted)

    async def __aenter__(self) -> CrlFetcher:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        for download in list(self._inflight.values()):
            download.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def cached(self, url: str) -> x509.CertificateRevocationList | None:
        """The cached CRL of ``url`` if its nextUpdate is still ahead, else None."""
        entry = self._cache.get(url)
        if entry is None:
            return None
        if self.clock.utc() >= entry.next_update:
            del self._cache[url]
            return None
        self._cache.move_to_end(url)
        return entry.crl

    async def fetch(self, url: str, *, timeout: float | None = None
                    ) -> x509.CertificateRevocationList:
        """The CRL at ``url`` (from the cache while its nextUpdate is ahead).

        ``timeout`` (default: the fetcher's) bounds the whole request: connect, headers, body.
        """
        hit = self.cached(url)
        if hit is not None:
            return hit
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            raise CrlFetchError(url, "not an HTTP URL")
        if not (is_loopback_url(url) or _url_host(url) in self.hosts):
            raise CrlFetchError(url, "not a loopback address nor the lab's CRL server (the lab "
                                     "fetches CRLs from nowhere else)")
        bound = self.timeout if timeout is None else timeout
        download = self._inflight.get(url)
        if download is None:  # callers that want the same CRL at once share one request
            download = asyncio.ensure_future(self._download(url, bound))
            self._inflight[url] = download
            download.add_done_callback(lambda done: self._settled(url, done))
        try:
            async with asyncio.timeout(bound):
                return await asyncio.shield(download)
        except TimeoutError:
            raise CrlFetchError(url, f"timed out after {bound:g} s") from None

    def _settled(self, url: str, download: asyncio.Future[x509.CertificateRevocationList]
                 ) -> None:
        if self._inflight.get(url) is download:
            del self._inflight[url]
        if not download.cancelled():
            download.exception()  # retrieved: a caller that gave up leaves no warning behind

    async def _download(self, url: str, bound: float) -> x509.CertificateRevocationList:
        self.fetches += 1
        try:
            async with asyncio.timeout(bound):
                body = await self._get(url)
        except TimeoutError:
            raise CrlFetchError(url, f"timed out after {bound:g} s") from None
        except aiohttp.ClientError as exc:
            raise CrlFetchError(url, f"{type(exc).__name__}: {exc}") from None
        crl = _parse(url, body)
        next_update = crl.next_update_utc
        if next_update is not None and self.clock.utc() < next_update:
            self._cache[url] = _Cached(crl, next_update)
            self._cache.move_to_end(url)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return crl

    async def fetch_all(self, urls: Iterable[str], *, timeout: float | None = None
                        ) -> dict[str, x509.CertificateRevocationList | CrlFetchError]:
        """Fetch several CRLs at once, all within one ``timeout``; a failure is its value."""
        unique = list(dict.fromkeys(urls))
        results = await asyncio.gather(*(self.fetch(u, timeout=timeout) for u in unique),
                                       return_exceptions=True)
        out: dict[str, x509.CertificateRevocationList | CrlFetchError] = {}
        for url, result in zip(unique, results, strict=True):
            if isinstance(result, CrlFetchError | x509.CertificateRevocationList):
                out[url] = result
            elif isinstance(result, BaseException):
                raise result
        return out

    async def _get(self, url: str) -> bytes:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None), trust_env=False)
        async with self._session.get(url, allow_redirects=False) as response:
            if response.status != 200:
                raise CrlFetchError(url, f"HTTP {response.status}")
            if response.content_length is not None and response.content_length > self.max_bytes:
                raise CrlFetchError(url, f"larger than {self.max_bytes} bytes")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > self.max_bytes:
                    raise CrlFetchError(url, f"larger than {self.max_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)


def _parse(url: str, body: bytes) -> x509.CertificateRevocationList:
    with contextlib.suppress(ValueError):
        return x509.load_der_x509_crl(body)
    with contextlib.suppress(ValueError):
        return x509.load_pem_x509_crl(body)
    raise CrlFetchError(url, "the answer is not a CRL (DER or PEM)")
