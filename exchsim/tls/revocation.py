"""The I/O half of judging a client certificate: trust anchors from disk, CRLs over HTTP.

:class:`CertificateJudge` is what a server's sessions call right after a STARTTLS handshake in
which the client presented a certificate (exchange.md §4.8): it reads the trust anchors, builds
the chain's path to learn which CRLs it needs, fetches them all at once within one bound
(``Lab.CrlRetrievalTimeout``), and hands everything to the pure
:func:`exchsim.tls.validation.validate_chain` with the wall-clock time. A distribution point
that does not answer in time, answers with an error, or is not ``http://`` counts as
unavailable; what that means is the validator's (``Lab.WhenRevocationOffline``).

The trust anchors are the certificates in ``DATA/pki/trusted/`` (``*.pem``, ``*.crt``,
``*.cer``): the lab's stand-in for the Windows machine's Trusted Root Certification
Authorities. ``DATA/pki/intermediate/`` is its Intermediate Certification Authorities store:
CA certificates used to build a path (a client such as swaks presents only its leaf), never
trusted for themselves.

CRLs are fetched with the standard library's HTTP client in worker threads, the socket
timeout being the same bound, so a thread left behind by a server that never answers ends on
its own; nothing is cached (exchange.md §4.8).
"""

from __future__ import annotations

import asyncio
import logging
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509

from exchsim.clock import Clock
from exchsim.config.model import RevocationOffline
from exchsim.tls.validation import ChainVerdict, load_anchors, revocation_urls, validate_chain

log = logging.getLogger(__name__)

MAX_CRL_BYTES = 16 * 1024 * 1024
_ANCHOR_SUFFIXES = {".pem", ".crt", ".cer"}
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def read_anchors(directory: Path) -> tuple[x509.Certificate, ...]:
    """Every certificate of the files in ``directory`` (none when it does not exist)."""
    if not directory.is_dir():
        return ()
    blobs = []
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() in _ANCHOR_SUFFIXES and path.is_file():
            try:
                blobs.append(path.read_bytes())
            except OSError as exc:
                log.warning("trust anchor %s unreadable: %s", path, exc)
    try:
        return load_anchors(blobs)
    except ValueError as exc:
        log.warning("trust anchors in %s unreadable: %s", directory, exc)
        return ()


def _get(url: str, timeout: float) -> bytes | None:
    if not url.lower().startswith("http://"):
        return None
    try:
        with _NO_PROXY.open(url, timeout=timeout) as response:
            if response.status != 200:
                return None
            data: bytes = response.read(MAX_CRL_BYTES + 1)
    except (OSError, ValueError) as exc:
        log.info("CRL %s not fetched: %s", url, exc)
        return None
    return data if len(data) <= MAX_CRL_BYTES else None


async def fetch_crls(urls: Iterable[str], bound: float) -> dict[str, bytes | None]:
    """Each URL's body, or None for those that failed or did not come within ``bound``
    seconds (all fetched at once: the whole call takes at most about ``bound``)."""
    results: dict[str, bytes | None] = dict.fromkeys(urls)
    if not results:
        return results
    tasks = {asyncio.create_task(asyncio.to_thread(_get, url, bound)): url for url in results}
    done, pending = await asyncio.wait(tasks, timeout=bound)
    for task in pending:
        task.cancel()  # the thread itself ends when its socket times out
        log.info("CRL %s not fetched within %.1f s", tasks[task], bound)
    for task in done:
        if not task.cancelled() and task.exception() is None:
            results[tasks[task]] = task.result()
    return results


class CertificateJudge:
    """Judges presented chains for one lab (see the module docstring)."""

    def __init__(self, anchors_dir: Path, clock: Clock, *, timeout: float,
                 offline: RevocationOffline = RevocationOffline.FAIL,
                 intermediates_dir: Path | None = None) -> None:
        self.anchors_dir = anchors_dir
        self.intermediates_dir = intermediates_dir or anchors_dir.parent / "intermediate"
        self.timeout = timeout
        self.offline = offline
        self.clock = clock

    async def judge(self, chain: Sequence[bytes]) -> ChainVerdict:
        anchors = await asyncio.to_thread(read_anchors, self.anchors_dir)
        known = await asyncio.to_thread(read_anchors, self.intermediates_dir)
        urls = revocation_urls(chain, anchors, known)
        crls = await fetch_crls(urls, self.timeout)
        return validate_chain(chain, anchors, self.clock.utc(), crls, self.offline, known)
